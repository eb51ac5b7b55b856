//! PEFT adapter directories: `adapter_config.json` + `adapter_model.safetensors`, read with
//! bounded sizes and written atomically (temporary files renamed into place).

use super::config::PeftConfig;
use crate::error::{Error, Result};
use crate::formats::hf::{
    write_atomically, write_safetensors, NamedTensor, SafetensorsFile, StoreDtype,
};
use crate::formats::weights::DenseTensor;
use std::collections::BTreeMap;
use std::path::Path;

/// Largest `adapter_config.json` accepted.
const MAX_CONFIG_BYTES: usize = 1 << 20;
/// Prefix PEFT puts before every tensor key of a causal LM adapter.
pub const KEY_PREFIX: &str = "base_model.model.";

/// A LoRA adapter as PEFT stores it: configuration plus named `lora_A`/`lora_B` matrices.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftAdapter {
    /// The parsed `adapter_config.json`.
    pub config: PeftConfig,
    /// Tensors by PEFT key (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`).
    pub tensors: BTreeMap<String, DenseTensor>,
}

impl PeftAdapter {
    /// Reads an adapter directory.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let name = dir.display().to_string();
        let config_path = dir.join("adapter_config.json");
        let text =
            crate::textio::read_text_file(&config_path, MAX_CONFIG_BYTES, "adapter_config.json")?;
        let config: PeftConfig = serde_json::from_str(&text)
            .map_err(|e| Error::adapter(&name, format!("invalid adapter_config.json: {e}")))?;
        // Refuse unsupported settings before reading any weights.
        config.check_supported(&name)?;
        let weights = dir.join("adapter_model.safetensors");
        if !weights.is_file() {
            let reason = if dir.join("adapter_model.bin").is_file() {
                "adapter_model.bin (pickle) is not read; save the adapter with safetensors"
            } else {
                "adapter_model.safetensors is missing"
            };
            return Err(Error::adapter(&name, reason));
        }
        let file = SafetensorsFile::open(&weights).map_err(|e| match e {
            Error::ModelFile { reason, .. } => Error::adapter(&name, reason),
            other => other,
        })?;
        let mut tensors = BTreeMap::new();
        for key in file.names() {
            let (shape, data) = file.f32_tensor(&key)?;
            tensors.insert(key, DenseTensor { shape, data });
        }
        Ok(Self { config, tensors })
    }

    /// Writes the adapter into `dir` (created if needed): weights first, then the config, each
    /// through a temporary file and a rename.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.save_as(dir, StoreDtype::F32)
    }

    /// [`Self::save`] with the weights stored as `dtype` (F16 halves the file; values are
    /// rounded to the nearest representable one).
    pub fn save_as(&self, dir: impl AsRef<Path>, dtype: StoreDtype) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let named: Vec<NamedTensor<'_>> = self
            .tensors
            .iter()
            .map(|(k, t)| NamedTensor {
                name: k,
                shape: &t.shape,
                data: &t.data,
            })
            .collect();
        let metadata = [("format".to_string(), "pt".to_string())].into();
        write_safetensors(
            &dir.join("adapter_model.safetensors"),
            &named,
            dtype,
            Some(metadata),
        )?;
        let config = serde_json::to_vec_pretty(&self.config).expect("config serializes");
        write_atomically(&dir.join("adapter_config.json"), &config)
    }

    /// The PEFT key of a projection's `A` (`down = false`) or `B` matrix in a module path.
    pub fn key(module_path: &str, matrix: LoraMatrix) -> String {
        let m = match matrix {
            LoraMatrix::A => "lora_A",
            LoraMatrix::B => "lora_B",
        };
        format!("{KEY_PREFIX}{module_path}.{m}.weight")
    }
}

/// The two factors of a low-rank update `ΔW = B · A`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraMatrix {
    /// `[r, in]`, applied first.
    A,
    /// `[out, r]`, applied second.
    B,
}
