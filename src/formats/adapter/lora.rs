//! A PEFT adapter checked against one base model: which projections it adapts, with what rank
//! and scale, in Hugging Face row order. The decoder lays the result out for the forward pass
//! (`crate::model::LoraWeights`); merging and export read it as it is.

use super::peft::{PeftAdapter, KEY_PREFIX};
use crate::arch::{ModelConfig, Projection};
use crate::error::{Error, Result};
use crate::formats::weights::DenseTensor;
use std::collections::BTreeMap;

/// One adapted projection of a validated adapter, in Hugging Face row order.
#[derive(Debug, Clone, Copy)]
pub struct ModuleLora<'a> {
    /// Block index.
    pub layer: usize,
    /// Which projection.
    pub projection: Projection,
    /// `A`, `[r, in]`.
    pub a: &'a DenseTensor,
    /// `B`, `[out, r]`.
    pub b: &'a DenseTensor,
    /// Rank.
    pub rank: usize,
    /// Output scale.
    pub scale: f64,
}

impl ModuleLora<'_> {
    /// The dense update `scale · B · A`, `[out, in]`, in Hugging Face row order.
    pub fn delta(&self) -> Vec<f32> {
        let (out, inp, r) = (self.b.shape[0], self.a.shape[1], self.rank);
        let mut d = vec![0f32; out * inp];
        for o in 0..out {
            let row = &mut d[o * inp..(o + 1) * inp];
            for k in 0..r {
                let coef = self.b.data[o * r + k] as f64 * self.scale;
                let a_row = &self.a.data[k * inp..(k + 1) * inp];
                for (x, &a) in row.iter_mut().zip(a_row) {
                    *x += (coef * a as f64) as f32;
                }
            }
        }
        d
    }
}

/// Checks `adapter` against a base with `config` and lists its adapted projections. Every
/// tensor must belong to a targeted projection of the base with the configured rank and the
/// base's shape, every targeted projection must have both matrices, and all values must be
/// finite; anything else is an [`Error::Adapter`] or [`Error::UnsupportedAdapterFeature`].
pub fn validated_modules<'a>(
    name: &str,
    adapter: &'a PeftAdapter,
    config: &ModelConfig,
) -> Result<Vec<ModuleLora<'a>>> {
    adapter.config.check_supported(name)?;
    let selector = adapter.config.selector(name)?;
    let bad = |reason: String| Error::adapter(name, reason);
    let mut found: BTreeMap<(usize, Projection), [Option<&DenseTensor>; 2]> = BTreeMap::new();
    for (key, tensor) in &adapter.tensors {
        let (layer, p, matrix) = parse_key(name, key, config)?;
        let path = p.hf_path(layer);
        if !selector.targets(&path, layer) {
            return Err(bad(format!(
                "tensor {key} adapts {path}, which target_modules/layers_to_transform do not select"
            )));
        }
        found.entry((layer, p)).or_default()[matrix] = Some(tensor);
    }
    let mut modules = Vec::new();
    for layer in 0..config.n_layers {
        for p in Projection::ALL {
            let path = p.hf_path(layer);
            if !selector.targets(&path, layer) {
                continue;
            }
            let pair = found.get(&(layer, p));
            let (Some(a), Some(b)) = (pair.and_then(|m| m[0]), pair.and_then(|m| m[1])) else {
                return Err(bad(format!(
                    "{path} is targeted but lora_A and lora_B are not both present"
                )));
            };
            let (out, inp) = p.shape(config);
            let r = selector.rank(&path);
            if a.shape != [r, inp] || b.shape != [out, r] {
                return Err(bad(format!(
                    "{path}: lora_A {:?} and lora_B {:?} do not fit rank {r} and the base's [{out}, {inp}] (expected A [{r}, {inp}], B [{out}, {r}])",
                    a.shape, b.shape
                )));
            }
            for (m, t) in [("lora_A", a), ("lora_B", b)] {
                if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
                    return Err(bad(format!(
                        "{path}.{m} holds a non-finite value at index {i}"
                    )));
                }
            }
            let scale = selector.scale(&path);
            check_update_bound(&path, scale, a, b).map_err(bad)?;
            modules.push(ModuleLora {
                layer,
                projection: p,
                a,
                b,
                rank: r,
                scale,
            });
        }
    }
    if modules.is_empty() {
        return Err(bad("no projection of the base model is adapted".into()));
    }
    Ok(modules)
}

/// Largest accepted bound on one projection's update, `|scale| · ‖B‖_F · ‖A‖_F` (an upper
/// bound of the spectral norm of `scale · B · A`). Trained adapters stay below ~10³ (random
/// test adapters ≈ 20); 10⁵ leaves room for any of them while keeping `x · Aᵀ · scale·Bᵀ` far
/// from f32 overflow, so a hostile `lora_alpha = 1e308` or weights of 1e38 are refused at load
/// instead of turning every score into NaN.
pub const MAX_ADAPTER_UPDATE_NORM: f64 = 1e5;

/// Checks that a projection's scale is finite and its scaled update bounded by
/// [`MAX_ADAPTER_UPDATE_NORM`]; the error names the projection.
fn check_update_bound(
    path: &str,
    scale: f64,
    a: &DenseTensor,
    b: &DenseTensor,
) -> std::result::Result<(), String> {
    let norm = |t: &DenseTensor| {
        t.data
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt()
    };
    let bound = scale.abs() * norm(b) * norm(a);
    if !scale.is_finite() || !bound.is_finite() || bound > MAX_ADAPTER_UPDATE_NORM {
        return Err(format!(
            "{path}: scale {scale:e} × ‖lora_B‖ × ‖lora_A‖ = {bound:e} exceeds the bound of {MAX_ADAPTER_UPDATE_NORM:e} on one projection's update"
        ));
    }
    Ok(())
}

/// Splits a PEFT key into layer, projection and matrix (0 = A, 1 = B), naming what is wrong.
fn parse_key(name: &str, key: &str, config: &ModelConfig) -> Result<(usize, Projection, usize)> {
    let unsupported = |feature: String| Error::UnsupportedAdapterFeature {
        adapter: name.to_string(),
        feature,
    };
    let bad = |reason: String| Error::adapter(name, reason);
    if key.contains("lora_embedding_") || key.contains("embed_tokens") {
        return Err(unsupported(format!("LoRA on the embedding ({key})")));
    }
    if key.contains("lora_magnitude_vector") {
        return Err(unsupported(format!("DoRA magnitudes ({key})")));
    }
    if key.contains("lm_head") {
        return Err(unsupported(format!("LoRA on lm_head ({key})")));
    }
    let rest = key
        .strip_prefix(KEY_PREFIX)
        .ok_or_else(|| bad(format!("tensor {key} does not start with {KEY_PREFIX}")))?;
    let (path, matrix) = if let Some(p) = rest.strip_suffix(".lora_A.weight") {
        (p, 0)
    } else if let Some(p) = rest.strip_suffix(".lora_B.weight") {
        (p, 1)
    } else if rest.ends_with(".lora_B.bias") {
        return Err(unsupported(format!("lora_bias ({key})")));
    } else {
        return Err(bad(format!("tensor {key} is not a lora_A/lora_B weight")));
    };
    let parsed = path
        .strip_prefix("model.layers.")
        .and_then(|r| r.split_once('.'))
        .and_then(|(l, module)| {
            let layer: usize = l.parse().ok()?;
            let (_, m) = module.split_once('.')?;
            let p = Projection::from_hf_module(m)?;
            (p.hf_path(layer) == path).then_some((layer, p))
        });
    match parsed {
        Some((layer, p)) if layer < config.n_layers => Ok((layer, p, matrix)),
        Some((layer, _)) => Err(bad(format!(
            "tensor {key} is for layer {layer} but the base model has {} layers",
            config.n_layers
        ))),
        None => Err(bad(format!(
            "tensor {key} adapts `{path}`, which is not a projection of the base model"
        ))),
    }
}
