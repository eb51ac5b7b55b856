//! Optimisation: AdamW over the LoRA factors, clipping by the global gradient norm, and a cosine
//! learning-rate schedule with linear warm-up and a floor.
//!
//! The schedule is a pure function of the step, so a resumed run needs only the step counter.
//! AdamW is burn's (`burn::optim::AdamW`, bias-corrected moments); burn clips each tensor on its
//! own, so the global-norm clipping (`‖g‖₂` over every factor, as `torch.nn.utils.clip_grad_norm_`)
//! is done here before the step.

use crate::error::{Error, Result};
use burn::module::{Module, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Hyper-parameters of the optimiser and schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    /// Peak learning rate (reached at the end of warm-up).
    pub lr: f64,
    /// Adam β₁.
    pub beta1: f64,
    /// Adam β₂.
    pub beta2: f64,
    /// Adam ε.
    pub epsilon: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Largest global gradient norm; larger gradients are scaled down to it (0 disables).
    pub max_grad_norm: f64,
    /// Fraction of the optimiser steps spent warming up linearly.
    pub warmup_fraction: f64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
}

impl Default for OptimConfig {
    /// Peak 1e-4 (LoRA), betas (0.9, 0.95), ε 1e-8, no weight decay, clip 1.0, 3% warm-up,
    /// floor 0.1 × peak.
    fn default() -> Self {
        Self {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.95,
            epsilon: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            warmup_fraction: 0.03,
            min_lr_ratio: 0.1,
        }
    }
}

impl OptimConfig {
    /// Checks every value's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: f64| Err(Error::Config(format!("{what} {v} is out of range")));
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr < 1.0) {
            return bad("learning rate", self.lr);
        }
        for (what, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(what, v);
            }
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return bad("epsilon", self.epsilon);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight decay", self.weight_decay);
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return bad("max grad norm", self.max_grad_norm);
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            return bad("warm-up fraction", self.warmup_fraction);
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("min lr ratio", self.min_lr_ratio);
        }
        Ok(())
    }
}

/// Learning rate per optimiser step: linear warm-up to the peak, then half a cosine down to
/// `min_lr_ratio × peak` at the last step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    peak: f64,
    floor: f64,
    warmup: usize,
    total: usize,
}

impl Schedule {
    /// The schedule of a run of `total_steps` optimiser steps (`ceil(warmup_fraction × total)`
    /// of them warm up).
    pub fn new(config: &OptimConfig, total_steps: usize) -> Self {
        let warmup = (config.warmup_fraction * total_steps as f64).ceil() as usize;
        Self {
            peak: config.lr,
            floor: config.lr * config.min_lr_ratio,
            warmup: warmup.min(total_steps),
            total: total_steps,
        }
    }

    /// Number of warm-up steps.
    pub fn warmup_steps(&self) -> usize {
        self.warmup
    }

    /// Learning rate of optimiser step `step` (0-based): `peak · (step + 1) / warmup` during
    /// warm-up, then `floor + (peak − floor) · ½ (1 + cos(π · p))` with `p` going from 0 at the
    /// first step after warm-up to 1 at the last step.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup + 1);
        let p = if span == 0 {
            0.0
        } else {
            ((step - self.warmup) as f64 / span as f64).min(1.0)
        };
        self.floor + (self.peak - self.floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
    }
}

/// Scales `grads` of the parameters `ids` so that their global L2 norm is at most `max_norm`
/// (factor `max_norm / (norm + 1e-6)` when above, as PyTorch does); returns the norm before
/// clipping. `max_norm == 0` only measures.
pub fn clip_global_norm(
    grads: &mut GradientsParams,
    ids: &[ParamId],
    max_norm: f64,
) -> Result<f64> {
    let mut total: Option<Tensor<1>> = None;
    for &id in ids {
        if let Some(g) = grads.get::<2>(id) {
            let sq = g.square().sum();
            total = Some(match total {
                Some(t) => t + sq,
                None => sq,
            });
        }
    }
    let Some(total) = total else {
        return Ok(0.0);
    };
    let norm = f64::from(crate::loss::read_f32(&total.sqrt())?[0]);
    if !norm.is_finite() {
        return Err(Error::Model(format!(
            "the gradient norm is {norm}; lower the learning rate or check the data"
        )));
    }
    if max_norm > 0.0 && norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        for &id in ids {
            if let Some(g) = grads.remove::<2>(id) {
                grads.register(id, g.mul_scalar(factor));
            }
        }
    }
    Ok(norm)
}

/// AdamW with the configured betas, ε and weight decay (no per-tensor clipping: see
/// [`clip_global_norm`]).
pub struct Optimiser {
    inner: ModuleOptimizer,
}

impl Optimiser {
    /// A fresh optimiser (empty moments).
    pub fn new(config: &OptimConfig) -> Self {
        let inner = AdamWConfig::new()
            .with_beta_1(config.beta1 as f32)
            .with_beta_2(config.beta2 as f32)
            .with_epsilon(config.epsilon as f32)
            .with_weight_decay(config.weight_decay as f32)
            .init();
        Self { inner }
    }

    /// One update of `module` with `grads` at learning rate `lr`.
    pub fn step<M: Module>(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        self.inner.step(lr, module, grads)
    }

    /// Writes the moments (burnpack file) to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner.save(path).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("cannot write optimiser state: {e:?}"),
        })
    }

    /// Restores the moments written by [`Optimiser::save`] (parameter ids must match, which they
    /// do for adapters of the same model and configuration).
    pub fn load(config: &OptimConfig, path: &Path) -> Result<Self> {
        let fresh = Self::new(config);
        let inner = fresh.inner.load(path).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("cannot read optimiser state: {e:?}"),
        })?;
        Ok(Self { inner })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn schedule_warms_up_peaks_and_decays_to_the_floor() {
        let config = OptimConfig::default();
        let s = Schedule::new(&config, 100);
        assert_eq!(s.warmup_steps(), 3);
        assert!((s.lr(0) - 1e-4 / 3.0).abs() < 1e-15);
        assert!((s.lr(2) - 1e-4).abs() < 1e-15);
        assert!((s.lr(3) - 1e-4).abs() < 1e-15);
        assert!((s.lr(99) - 1e-5).abs() < 1e-15);
        let mid = 3 + (99 - 3) / 2;
        assert!((s.lr(mid) - (1e-5 + 0.5 * 9e-5)).abs() < 1e-12);
        for k in 3..99 {
            assert!(s.lr(k + 1) <= s.lr(k), "step {k}");
        }
        assert!((s.lr(500) - 1e-5).abs() < 1e-15);
    }

    #[test]
    fn tiny_runs_have_a_valid_schedule() {
        let config = OptimConfig::default();
        let one = Schedule::new(&config, 1);
        assert_eq!(one.warmup_steps(), 1);
        assert!((one.lr(0) - 1e-4).abs() < 1e-15);
        let zero = Schedule::new(&config, 0);
        assert!(zero.lr(0).is_finite());
    }

    #[test]
    fn bad_values_are_rejected() {
        for f in [
            |c: &mut OptimConfig| c.lr = 0.0,
            |c: &mut OptimConfig| c.beta2 = 1.0,
            |c: &mut OptimConfig| c.max_grad_norm = f64::NAN,
            |c: &mut OptimConfig| c.warmup_fraction = 1.5,
        ] {
            let mut c = OptimConfig::default();
            f(&mut c);
            assert!(c.validate().is_err());
        }
    }

    #[test]
    fn global_norm_clipping_scales_all_tensors_together() {
        let device = Device::flex();
        let mut grads = GradientsParams::new();
        let (a, b) = (ParamId::from(1u64), ParamId::from(2u64));
        let t = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [1, 2]), &device);
        grads.register(a, t(vec![3.0, 0.0]));
        grads.register(b, t(vec![0.0, 4.0]));
        let norm = clip_global_norm(&mut grads, &[a, b], 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-5);
        let ga = crate::loss::read_f32(&grads.get::<2>(a).unwrap()).unwrap();
        let gb = crate::loss::read_f32(&grads.get::<2>(b).unwrap()).unwrap();
        assert!((ga[0] - 0.6).abs() < 1e-5 && (gb[1] - 0.8).abs() < 1e-5);
        let again = clip_global_norm(&mut grads, &[a, b], 1.0).unwrap();
        assert!((again - 1.0).abs() < 1e-4);
    }
}
