//! LoRA adapters: which projections they target, how they are initialised and scaled, and the
//! trainable factors themselves. The base weights live elsewhere ([`super::Decoder`]), so an
//! adapter is the whole trainable state and the optimiser sees nothing else.

use crate::error::{Error, Result};
use burn::module::{Module, Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};
use debias_guard::arch::Projection;
use debias_guard::model::ModelConfig;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Highest LoRA rank accepted (keeps a bad option from allocating huge factors).
pub const MAX_LORA_RANK: usize = 1024;

/// Parses a PEFT module name (`q_proj`, …) into the projection it names.
pub fn parse_target(name: &str) -> Result<Projection> {
    Projection::from_hf_module(name).ok_or_else(|| {
        Error::Config(format!(
            "unknown LoRA target `{name}` (expected one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"
        ))
    })
}

/// Hyper-parameters of a LoRA adapter (saved with checkpoints so a run can be reproduced).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank `r` of the factors.
    pub rank: usize,
    /// Scaling numerator `alpha`.
    pub alpha: f64,
    /// Rank-stabilised scaling: `alpha / sqrt(r)` instead of `alpha / r`.
    pub use_rslora: bool,
    /// Projections that get an adapter, in every block.
    pub targets: Vec<Projection>,
    /// Seed of the `A` initialisation.
    pub seed: u64,
}

impl Default for LoraConfig {
    /// Rank 16, alpha 32, every projection, seed 0.
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            use_rslora: false,
            targets: Projection::ALL.to_vec(),
            seed: 0,
        }
    }
}

impl LoraConfig {
    /// Factor applied to `B A x`: `alpha / sqrt(r)` with rsLoRA, else `alpha / r`.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// Whether `target` carries an adapter.
    pub fn targets(&self, target: Projection) -> bool {
        self.targets.contains(&target)
    }

    /// Checks the values against each other and against the model they will adapt.
    pub fn validate(&self, model: &ModelConfig) -> Result<()> {
        if self.rank == 0 || self.rank > MAX_LORA_RANK {
            return Err(Error::Config(format!(
                "LoRA rank {} is out of range 1..={MAX_LORA_RANK}",
                self.rank
            )));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::Config(format!(
                "LoRA alpha {} must be positive",
                self.alpha
            )));
        }
        if self.targets.is_empty() {
            return Err(Error::Config(
                "LoRA needs at least one target module".into(),
            ));
        }
        let mut seen = self.targets.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.targets.len() {
            return Err(Error::Config("LoRA target modules are repeated".into()));
        }
        for &t in &self.targets {
            let (out, inp) = t.shape(model);
            if self.rank > out.min(inp) {
                return Err(Error::Config(format!(
                    "LoRA rank {} exceeds the smaller side of {} ({out}×{inp})",
                    self.rank,
                    t.hf_module()
                )));
            }
        }
        Ok(())
    }
}

/// The two factors of one adapted projection: `delta(x) = scale · (x Aᵀ) Bᵀ`.
#[derive(Module, Debug)]
pub struct LoraPair {
    /// Down projection `A`, `[r, in]`.
    pub a: Param<Tensor<2>>,
    /// Up projection `B`, `[out, r]`.
    pub b: Param<Tensor<2>>,
}

impl LoraPair {
    /// `scale · (x Aᵀ) Bᵀ` for rows of `x` (`[n, in]` → `[n, out]`).
    pub fn delta(&self, x: Tensor<2>, scale: f64) -> Tensor<2> {
        let down = x.matmul(self.a.val().transpose()).mul_scalar(scale);
        down.matmul(self.b.val().transpose())
    }
}

/// The adapters of one block, one optional pair per [`Projection`] slot.
#[derive(Module, Debug)]
pub struct LoraLayer {
    /// Indexed by [`Projection::slot`]; `None` where the projection is not adapted.
    pub pairs: Vec<Option<LoraPair>>,
}

impl LoraLayer {
    /// The pair on `target`, if adapted.
    pub fn pair(&self, target: Projection) -> Option<&LoraPair> {
        self.pairs.get(target.slot()).and_then(Option::as_ref)
    }
}

/// A LoRA adapter for every block of a decoder: the only trainable state of a run.
///
/// Parameter ids are derived from (layer, target, factor), so two adapters built for the same
/// model line up parameter by parameter (an optimiser state saved with one applies to the other).
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// One entry per decoder block.
    pub layers: Vec<LoraLayer>,
    /// Hyper-parameters the factors were built with.
    #[module(skip)]
    pub config: LoraConfig,
}

impl LoraAdapter {
    /// A fresh adapter: `A` drawn like PEFT's default (Kaiming-uniform with `a = sqrt(5)`, i.e.
    /// `U(-1/sqrt(in), 1/sqrt(in))`) from `config.seed`, `B` zero, so the adapted model starts
    /// exactly equal to the base.
    pub fn init(config: &LoraConfig, model: &ModelConfig, device: &Device) -> Result<Self> {
        config.validate(model)?;
        let mut rng = StdRng::seed_from_u64(config.seed);
        Self::from_values(config, model, device, |_, _, (out, inp)| {
            let bound = 1.0 / (inp as f32).sqrt();
            let a: Vec<f32> = (0..config.rank * inp)
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            Ok((a, vec![0.0; out * config.rank]))
        })
    }

    /// Builds an adapter whose factors come from `values(layer, target, (out, in))`, which
    /// returns row-major `A` `[r, in]` and `B` `[out, r]` (lengths are checked).
    pub fn from_values(
        config: &LoraConfig,
        model: &ModelConfig,
        device: &Device,
        mut values: impl FnMut(usize, Projection, (usize, usize)) -> Result<(Vec<f32>, Vec<f32>)>,
    ) -> Result<Self> {
        config.validate(model)?;
        let r = config.rank;
        let mut layers = Vec::with_capacity(model.n_layers);
        for layer in 0..model.n_layers {
            let mut pairs = Vec::with_capacity(Projection::ALL.len());
            for target in Projection::ALL {
                if !config.targets(target) {
                    pairs.push(None);
                    continue;
                }
                let (out, inp) = target.shape(model);
                let (a, b) = values(layer, target, (out, inp))?;
                if a.len() != r * inp || b.len() != out * r {
                    return Err(Error::Model(format!(
                        "layer {layer} {}: LoRA factors have {} and {} values, expected {}×{inp} and {out}×{}",
                        target.hf_module(),
                        a.len(),
                        b.len(),
                        r,
                        r
                    )));
                }
                pairs.push(Some(LoraPair {
                    a: trainable(param_id(layer, target, 0), a, [r, inp], device),
                    b: trainable(param_id(layer, target, 1), b, [out, r], device),
                }));
            }
            layers.push(LoraLayer { pairs });
        }
        Ok(Self {
            layers,
            config: config.clone(),
        })
    }

    /// Factor applied to every delta.
    pub fn scale(&self) -> f64 {
        self.config.scale()
    }

    /// The pair of `target` in block `layer`, if adapted.
    pub fn pair(&self, layer: usize, target: Projection) -> Option<&LoraPair> {
        self.layers.get(layer).and_then(|l| l.pair(target))
    }

    /// Every adapted projection as `(layer, target, pair)`, in block then target order.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, Projection, &LoraPair)> {
        self.layers.iter().enumerate().flat_map(|(i, layer)| {
            Projection::ALL
                .into_iter()
                .filter_map(move |t| layer.pair(t).map(|p| (i, t, p)))
        })
    }
}

/// A stable id for one factor: a fixed tag, then layer, target slot and factor (0 = A, 1 = B).
fn param_id(layer: usize, target: Projection, factor: u64) -> ParamId {
    const TAG: u64 = 0x4C6F_5241 << 32; // "LoRA"
    ParamId::from(TAG | ((layer as u64) << 8) | ((target.slot() as u64) << 1) | factor)
}

/// A trainable parameter holding `values` in `shape` on `device`.
fn trainable(
    id: ParamId,
    values: Vec<f32>,
    shape: [usize; 2],
    device: &Device,
) -> Param<Tensor<2>> {
    let tensor = Tensor::<2>::from_data(TensorData::new(values, shape), device);
    Param::initialized(id, tensor).set_require_grad(true)
}
