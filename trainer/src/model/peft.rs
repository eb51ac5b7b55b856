//! Adapters on disk in PEFT's format: `adapter_config.json` plus `adapter_model.safetensors`
//! with keys `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight` (`[r, in]`) and
//! `…lora_B.weight` (`[out, r]`), f32. The same files serve as training checkpoints: values
//! round-trip exactly.
//!
//! Written here with `safetensors` and `serde_json`; to be replaced by the library's
//! `debias_guard::adapter::PeftAdapter` once that is on main.

use super::lora::{LoraAdapter, LoraConfig, LoraTarget};
use crate::error::{Error, Result};
use burn::tensor::Device;
use debias_guard::model::ModelConfig;
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the adapter's hyper-parameters.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// File name of the adapter's tensors.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// Bytes allowed in a safetensors file beyond its tensor data (the JSON header).
const HEADER_ALLOWANCE: u64 = 16 << 20;
/// Largest `adapter_config.json` accepted.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// PEFT key of one factor (`A` or `B`) of the adapter on `target` in block `layer`.
pub fn peft_key(layer: usize, target: LoraTarget, factor: char) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.lora_{factor}.weight",
        target.hf_path()
    )
}

/// Writes `adapter` into `dir` (created if needed) as a PEFT adapter for `base_model`
/// (`base_model_name_or_path`). Each file is written to a temporary name, then renamed.
pub fn save_peft(adapter: &LoraAdapter, dir: &Path, base_model: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (layer, target, pair) in adapter.pairs() {
        for (factor, param) in [('A', &pair.a), ('B', &pair.b)] {
            let t = param.val();
            let shape = t.dims().to_vec();
            let values = t
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| Error::Model(format!("reading adapter values: {e:?}")))?;
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.insert(peft_key(layer, target, factor), (shape, bytes));
        }
    }
    let views = tensors
        .iter()
        .map(|(k, (shape, bytes))| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Model(format!("adapter tensors: {e}")))?;
    let mut info = std::collections::HashMap::new();
    info.insert("format".to_string(), "pt".to_string());
    let bytes = safetensors::serialize(views, Some(info))
        .map_err(|e| Error::Model(format!("serialising the adapter: {e}")))?;
    write_atomic(&dir.join(ADAPTER_WEIGHTS_FILE), &bytes)?;
    let config = peft_config_json(&adapter.config, base_model);
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| Error::Model(format!("adapter config: {e}")))?;
    write_atomic(&dir.join(ADAPTER_CONFIG_FILE), text.as_bytes())
}

/// Reads a PEFT adapter from `dir` for a model of shape `model`: every block must carry the
/// configured targets, values must be f32. The returned config has seed 0 (PEFT does not
/// record one).
pub fn load_peft(dir: &Path, model: &ModelConfig, device: &Device) -> Result<LoraAdapter> {
    let config = read_peft_config(&dir.join(ADAPTER_CONFIG_FILE))?;
    config.validate(model)?;
    let path = dir.join(ADAPTER_WEIGHTS_FILE);
    let data_bytes: u64 = (0..model.n_layers)
        .flat_map(|_| config.targets.iter())
        .map(|t| {
            let (out, inp) = t.dims(model);
            4 * (config.rank * (out + inp)) as u64
        })
        .sum();
    let size = std::fs::metadata(&path)
        .map_err(|e| Error::io(&path, e))?
        .len();
    if size > data_bytes + HEADER_ALLOWANCE {
        return Err(checkpoint(
            &path,
            format!("{size} bytes is far more than the {data_bytes} bytes of tensors expected"),
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| checkpoint(&path, e.to_string()))?;
    let expected = model.n_layers * config.targets.len() * 2;
    if file.len() != expected {
        return Err(checkpoint(
            &path,
            format!(
                "holds {} tensors, expected {expected} (every layer, targets {:?})",
                file.len(),
                config.targets
            ),
        ));
    }
    LoraAdapter::from_values(&config, model, device, |layer, target, _| {
        let read = |factor: char| -> Result<Vec<f32>> {
            let key = peft_key(layer, target, factor);
            let view = file
                .tensor(&key)
                .map_err(|e| checkpoint(&path, format!("`{key}`: {e}")))?;
            if view.dtype() != Dtype::F32 {
                return Err(checkpoint(
                    &path,
                    format!(
                        "`{key}` is {:?}; only F32 adapters are read here",
                        view.dtype()
                    ),
                ));
            }
            Ok(view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        Ok((read('A')?, read('B')?))
    })
    .map_err(|e| match e {
        Error::Model(m) => checkpoint(&path, m),
        other => other,
    })
}

/// PEFT's `adapter_config.json` for a LoRA adapter on a causal LM.
fn peft_config_json(config: &LoraConfig, base_model: &str) -> Value {
    let targets: Vec<&str> = config.targets.iter().map(|t| t.peft_name()).collect();
    json!({
        "alpha_pattern": {},
        "base_model_name_or_path": base_model,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_to_transform": null,
        "lora_alpha": config.alpha,
        "lora_dropout": 0.0,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": config.rank,
        "rank_pattern": {},
        "target_modules": targets,
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": config.use_rslora,
    })
}

/// Reads the fields of `adapter_config.json` this adapter supports, rejecting the others.
fn read_peft_config(path: &Path) -> Result<LoraConfig> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if size > MAX_CONFIG_BYTES {
        return Err(checkpoint(path, format!("{size} bytes is too large")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| checkpoint(path, e.to_string()))?;
    let bad = |m: String| checkpoint(path, m);
    if v.get("peft_type").and_then(Value::as_str) != Some("LORA") {
        return Err(bad("`peft_type` is not LORA".into()));
    }
    let rank = v
        .get("r")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("`r` is missing or not a whole number".into()))?;
    let alpha = v
        .get("lora_alpha")
        .and_then(Value::as_f64)
        .ok_or_else(|| bad("`lora_alpha` is missing or not a number".into()))?;
    let use_rslora = v
        .get("use_rslora")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let targets = v
        .get("target_modules")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`target_modules` must be a list of module names".into()))?
        .iter()
        .map(|t| {
            t.as_str()
                .ok_or_else(|| bad("`target_modules` holds a non-string".into()))
                .and_then(LoraTarget::from_peft_name)
        })
        .collect::<Result<Vec<_>>>()?;
    for key in ["rank_pattern", "alpha_pattern"] {
        if v.get(key)
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
        {
            return Err(bad(format!("per-module `{key}` is not supported")));
        }
    }
    if v.get("layers_to_transform").is_some_and(|l| !l.is_null()) {
        return Err(bad("`layers_to_transform` is not supported".into()));
    }
    if v.get("use_dora").and_then(Value::as_bool) == Some(true) {
        return Err(bad("DoRA adapters are not supported".into()));
    }
    Ok(LoraConfig {
        rank: usize::try_from(rank).map_err(|_| bad("`r` is out of range".into()))?,
        alpha,
        use_rslora,
        targets,
        seed: 0,
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = PathBuf::from(path);
    tmp.set_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn checkpoint(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}
