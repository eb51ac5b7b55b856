//! A validated PEFT adapter laid out for the forward pass: per layer and projection, `Aᵀ` and
//! `scale · Bᵀ`, so a projection adds `(x · Aᵀ) · (scale · Bᵀ)` next to its base weight
//! (quantized or not) and the base is never copied.

use crate::arch::names::rows_halves_to_pairs;
use crate::arch::{ModelConfig, Projection};
use crate::error::Result;
use crate::formats::adapter::{validated_modules, ModuleLora, PeftAdapter};
use candle_core::{CpuStorage, DType, Device, InplaceOp2, Layout, Tensor};
use rayon::prelude::*;

/// The low-rank path of one projection.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// `Aᵀ`, `[in, r]`.
    pub(crate) a_t: Tensor,
    /// `scale · Bᵀ`, `[r, out]`, rows in the base model's order.
    pub(crate) b_t_scaled: Tensor,
    /// Rank of this path.
    pub rank: usize,
    /// Output scale (`alpha / r` or `alpha / sqrt(r)`).
    pub scale: f64,
}

impl LoraPair {
    /// `x · Aᵀ · scale · Bᵀ` for rows of `x`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.a_t)?.matmul(&self.b_t_scaled)
    }

    /// `base + x · Aᵀ · scale · Bᵀ`, where `base` is the base projection's output of `x`, which
    /// the caller owns alone: contiguous f32 on the CPU, the sum is written into it in one
    /// rayon pass (candle's add allocates, and runs large tensors on its own spinning thread
    /// pool beside ours).
    pub(crate) fn add_to(&self, base: Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
        let low = self.forward(x)?;
        let in_place =
            |t: &Tensor| t.dtype() == DType::F32 && t.device().is_cpu() && t.is_contiguous();
        if base.dims() != low.dims() || !in_place(&base) || !in_place(&low) {
            return base + low;
        }
        base.inplace_op2(&low, &AddInPlace)?;
        Ok(base)
    }
}

/// `a += b` element by element over contiguous f32 storages, in parallel chunks.
struct AddInPlace;

/// Values per parallel task of [`AddInPlace`].
const ADD_VALUES_PER_TASK: usize = 16 * 1024;

impl InplaceOp2 for AddInPlace {
    fn name(&self) -> &'static str {
        "lora-add"
    }

    fn cpu_fwd(
        &self,
        a: &mut CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(a), CpuStorage::F32(b)) = (a, b) else {
            candle_core::bail!("lora-add needs f32 tensors");
        };
        let (Some((a0, a1)), Some((b0, b1))) = (la.contiguous_offsets(), lb.contiguous_offsets())
        else {
            candle_core::bail!("lora-add needs contiguous tensors");
        };
        let (a, b) = (&mut a[a0..a1], &b[b0..b1]);
        if a.len() != b.len() {
            candle_core::bail!("lora-add needs tensors of one shape");
        }
        let add = |(a, b): (&mut [f32], &[f32])| a.iter_mut().zip(b).for_each(|(a, &b)| *a += b);
        if rayon::current_num_threads() > 1 && a.len() > ADD_VALUES_PER_TASK {
            a.par_chunks_mut(ADD_VALUES_PER_TASK)
                .zip(b.par_chunks(ADD_VALUES_PER_TASK))
                .for_each(add);
        } else {
            add((a, b));
        }
        Ok(())
    }
}

/// The low-rank paths of one block, indexed by [`Projection`] order.
#[derive(Debug, Clone, Default)]
pub struct LayerLora {
    paths: [Option<LoraPair>; 7],
}

impl LayerLora {
    /// The path of one projection, if adapted.
    pub fn get(&self, p: Projection) -> Option<&LoraPair> {
        self.paths[p as usize].as_ref()
    }
}

/// An adapter resolved against a base model, ready to run.
#[derive(Debug, Clone)]
pub struct LoraWeights {
    name: String,
    layers: Vec<LayerLora>,
    shape: (usize, usize),
    modules: usize,
}

impl LoraWeights {
    /// Checks `adapter` against the base `config` (see [`validated_modules`]) and lays it out
    /// on `device`.
    pub fn resolve(
        name: &str,
        adapter: &PeftAdapter,
        config: &ModelConfig,
        device: &Device,
    ) -> Result<Self> {
        let modules = validated_modules(name, adapter, config)?;
        let mut layers = vec![LayerLora::default(); config.n_layers];
        for m in &modules {
            layers[m.layer].paths[m.projection as usize] = Some(build_pair(m, config, device)?);
        }
        Ok(Self {
            name: name.to_string(),
            layers,
            shape: (config.hidden_size, config.n_layers),
            modules: modules.len(),
        })
    }

    /// The name the adapter was loaded under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The low-rank paths of block `layer`.
    pub fn layer(&self, layer: usize) -> Option<&LayerLora> {
        self.layers.get(layer)
    }

    /// Number of adapted projections.
    pub fn modules(&self) -> usize {
        self.modules
    }

    /// Whether this adapter was resolved for a model of this shape.
    pub fn fits(&self, config: &ModelConfig) -> bool {
        self.shape == (config.hidden_size, config.n_layers)
    }
}

fn build_pair(m: &ModuleLora<'_>, config: &ModelConfig, device: &Device) -> Result<LoraPair> {
    let (out, inp) = m.projection.shape(config);
    let r = m.rank;
    let b_rows = match m.projection.permuted_heads(config) {
        Some(heads) => rows_halves_to_pairs(&m.b.data, heads, r),
        None => m.b.data.clone(),
    };
    let a_t = Tensor::from_vec(m.a.data.clone(), (r, inp), device)?
        .t()?
        .contiguous()?;
    let b_t_scaled = (Tensor::from_vec(b_rows, (out, r), device)?
        .t()?
        .contiguous()?
        * m.scale)?;
    Ok(LoraPair {
        a_t,
        b_t_scaled,
        rank: r,
        scale: m.scale,
    })
}

#[cfg(test)]
mod tests {
    use super::LoraPair;
    use candle_core::{Device, Tensor};

    fn filled(rows: usize, cols: usize, seed: usize) -> Tensor {
        let data: Vec<f32> = (0..rows * cols)
            .map(|i| (((i * 37 + seed * 11) % 97) as f32 - 48.0) / 29.0)
            .collect();
        Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
    }

    #[test]
    fn add_to_equals_the_sum_in_place_and_not() {
        let pair = LoraPair {
            a_t: filled(24, 4, 1),
            b_t_scaled: filled(4, 40, 2),
            rank: 4,
            scale: 1.0,
        };
        // Several parallel tasks' worth of rows, and a strided base that candle adds instead.
        for rows in [3, 2000] {
            let x = filled(rows, 24, 3);
            let base = filled(rows, 40, 4);
            let want = (&base + pair.forward(&x).unwrap()).unwrap();
            let got = pair.add_to(base.copy().unwrap(), &x).unwrap();
            let diff = (got - &want).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "{rows} rows");
            let strided = filled(40, rows, 5).t().unwrap();
            let want = (&strided + pair.forward(&x).unwrap()).unwrap();
            let got = pair.add_to(strided, &x).unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(
                diff.to_scalar::<f32>().unwrap(),
                0.0,
                "strided, {rows} rows"
            );
        }
    }
}
