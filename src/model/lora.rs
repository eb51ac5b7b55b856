//! A validated PEFT adapter laid out for the forward pass: per layer and projection, `Aᵀ` and
//! `scale · Bᵀ`, so a projection adds `(x · Aᵀ) · (scale · Bᵀ)` next to its base weight
//! (quantized or not) and the base is never copied.

use crate::arch::names::rows_halves_to_pairs;
use crate::arch::{ModelConfig, Projection};
use crate::error::Result;
use crate::formats::adapter::{validated_modules, ModuleLora, PeftAdapter};
use candle_core::{Device, Tensor};

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
