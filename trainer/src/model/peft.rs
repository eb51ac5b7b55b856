//! Adapters on disk in PEFT's format, through the library's [`PeftAdapter`]:
//! `adapter_config.json` plus `adapter_model.safetensors` with keys
//! `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight` (`[r, in]`) and
//! `…lora_B.weight` (`[out, r]`), f32. The same directories serve as training checkpoints:
//! values round-trip exactly, and the library's engine loads them as they are.

use super::lora::{parse_target, LoraAdapter, LoraConfig};
use crate::error::{Error, Result};
use burn::tensor::Device;
use debias_guard::adapter::{LoraMatrix, PeftAdapter, PeftConfig, TargetModules};
use debias_guard::arch::Projection;
use debias_guard::model::ModelConfig;
use debias_guard::weights::DenseTensor;
use std::collections::BTreeMap;
use std::path::Path;

/// File name of the adapter's hyper-parameters.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// File name of the adapter's tensors.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// PEFT key of one factor (`'A'` or `'B'`) of the adapter on `target` in block `layer`.
pub fn peft_key(layer: usize, target: Projection, factor: char) -> String {
    let matrix = if factor == 'A' {
        LoraMatrix::A
    } else {
        LoraMatrix::B
    };
    PeftAdapter::key(&module_path(layer, target), matrix)
}

/// Module path of a projection inside the causal LM (`model.layers.3.self_attn.q_proj`).
fn module_path(layer: usize, target: Projection) -> String {
    target.hf_path(layer)
}

/// The adapter as the library's PEFT representation, for `base_model`
/// (`base_model_name_or_path`).
pub fn to_peft(adapter: &LoraAdapter, base_model: &str) -> Result<PeftAdapter> {
    let c = &adapter.config;
    let modules: Vec<&str> = c.targets.iter().map(|t| t.hf_module()).collect();
    let mut config = PeftConfig::lora(c.rank, c.alpha, &modules);
    config.use_rslora = c.use_rslora;
    config.base_model_name_or_path = Some(base_model.to_string());
    let mut tensors = BTreeMap::new();
    for (layer, target, pair) in adapter.pairs() {
        for (factor, param) in [('A', &pair.a), ('B', &pair.b)] {
            let t = param.val();
            let shape = t.dims().to_vec();
            let data = t
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| Error::Model(format!("reading adapter values: {e:?}")))?;
            tensors.insert(peft_key(layer, target, factor), DenseTensor { shape, data });
        }
    }
    Ok(PeftAdapter { config, tensors })
}

/// Writes `adapter` into `dir` (created if needed) as a PEFT adapter for `base_model`; files
/// are written to temporary names and renamed into place.
pub fn save_peft(adapter: &LoraAdapter, dir: &Path, base_model: &str) -> Result<()> {
    Ok(to_peft(adapter, base_model)?.save(dir)?)
}

/// Reads a PEFT adapter from `dir` for a model of shape `model`. Supported: the projections of
/// every block as a list of module names, one rank and alpha (no per-module patterns, no layer
/// selection). The returned config has seed 0 (PEFT does not record one).
pub fn load_peft(dir: &Path, model: &ModelConfig, device: &Device) -> Result<LoraAdapter> {
    let peft = PeftAdapter::load(dir)?;
    from_peft(&peft, model, device).map_err(|e| match e {
        Error::Model(message) | Error::Config(message) => Error::Checkpoint {
            path: dir.to_path_buf(),
            message,
        },
        other => other,
    })
}

/// A trainable adapter holding the values of a PEFT adapter.
pub fn from_peft(peft: &PeftAdapter, model: &ModelConfig, device: &Device) -> Result<LoraAdapter> {
    let c = &peft.config;
    c.check_supported("adapter")?;
    if !c.rank_pattern.is_empty() || !c.alpha_pattern.is_empty() {
        return Err(Error::Model(
            "per-module rank_pattern / alpha_pattern is not supported for training".into(),
        ));
    }
    if c.layers_to_transform.is_some() {
        return Err(Error::Model(
            "layers_to_transform is not supported for training".into(),
        ));
    }
    let targets = match &c.target_modules {
        Some(TargetModules::List(names)) => names
            .iter()
            .map(|n| parse_target(n))
            .collect::<Result<Vec<_>>>()?,
        _ => {
            return Err(Error::Model(
                "target_modules must be a list of projection names".into(),
            ))
        }
    };
    let config = LoraConfig {
        rank: c.r,
        alpha: c.lora_alpha,
        use_rslora: c.use_rslora,
        targets,
        seed: 0,
    };
    let expected = model.n_layers * config.targets.len() * 2;
    if peft.tensors.len() != expected {
        return Err(Error::Model(format!(
            "the adapter holds {} tensors, expected {expected} (every layer, targets {:?})",
            peft.tensors.len(),
            config.targets
        )));
    }
    LoraAdapter::from_values(&config, model, device, |layer, target, _| {
        let take = |factor: char| -> Result<Vec<f32>> {
            let key = peft_key(layer, target, factor);
            peft.tensors
                .get(&key)
                .map(|t| t.data.clone())
                .ok_or_else(|| Error::Model(format!("`{key}` is missing")))
        };
        Ok((take('A')?, take('B')?))
    })
}
