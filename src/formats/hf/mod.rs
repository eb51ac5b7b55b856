//! Hugging Face model directories: `config.json`, `model.safetensors` or a sharded
//! `model.safetensors.index.json`, `tokenizer.json` and `tokenizer_config.json` (chat template).
//! Weights keep Hugging Face's q/k row order, so the model runs RoPE over halves.

mod config;
mod paths;
mod safetensors;
mod tokenizer;

pub use config::HfConfig;
pub use safetensors::{
    write_atomically, write_safetensors, NamedTensor, SafetensorsFile, StoreDtype,
};

use crate::arch::names::{gguf_to_hf, hf_to_gguf};
use crate::error::{Error, Result};
use crate::formats::tokenizer::TextTokenizer;
use crate::formats::TensorSource;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use paths::{existing_file, resolve_inside};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest `model.safetensors.index.json` accepted.
const MAX_INDEX_BYTES: usize = 16 << 20;
/// Most shards a model may have.
const MAX_SHARDS: usize = 1024;

/// Whether `path` is a Hugging Face model directory (a folder with `config.json`).
pub fn is_model_dir(path: &Path) -> bool {
    path.is_dir() && path.join("config.json").is_file()
}

/// An opened Hugging Face model directory.
#[derive(Debug)]
pub struct HfModelDir {
    dir: PathBuf,
    /// What `config.json` says.
    pub config: HfConfig,
    shards: Vec<SafetensorsFile>,
    /// Hugging Face tensor name → index into `shards`.
    index: BTreeMap<String, usize>,
}

impl HfModelDir {
    /// Opens a directory: reads the config, maps every shard and checks that the index and the
    /// shards agree.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let config_path = existing_file(&dir, "config.json")?
            .ok_or_else(|| Error::model_file(&dir, "no config.json"))?;
        let config = HfConfig::load(&config_path)?;
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let (shards, index) = if index_path.is_file() {
            open_sharded(&dir, &index_path)?
        } else if single.is_file() {
            let file = SafetensorsFile::open(resolve_inside(&dir, &single)?)?;
            let index = file.names().into_iter().map(|n| (n, 0)).collect();
            (vec![file], index)
        } else {
            return Err(Error::model_file(
                &dir,
                "no model.safetensors or model.safetensors.index.json",
            ));
        };
        Ok(Self {
            dir,
            config,
            shards,
            index,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tokenizer from `tokenizer.json` and `tokenizer_config.json`.
    pub fn tokenizer(&self) -> Result<TextTokenizer> {
        tokenizer::load(&self.dir, &self.config)
    }

    /// The chat template of `tokenizer_config.json` (or `chat_template.jinja`), if any.
    pub fn chat_template(&self) -> Result<Option<String>> {
        tokenizer::chat_template(&self.dir)
    }

    /// A tensor by its Hugging Face name, as f32, with its shape.
    pub fn f32_tensor(&self, hf_name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let shard = self
            .index
            .get(hf_name)
            .ok_or_else(|| Error::tensor(hf_name, "missing from the model"))?;
        self.shards[*shard].f32_tensor(hf_name)
    }

    fn hf_name_for(&self, gguf_name: &str) -> Option<String> {
        let hf = gguf_to_hf(gguf_name)?;
        if hf == "lm_head.weight" && self.config.tie_word_embeddings {
            return None;
        }
        self.index.contains_key(&hf).then_some(hf)
    }
}

impl TensorSource for HfModelDir {
    fn tensor_dims(&self, name: &str) -> Option<Vec<usize>> {
        let hf = self.hf_name_for(name)?;
        let shard = &self.shards[self.index[&hf]];
        shard.info(&hf).map(|i| i.shape.clone())
    }

    fn load_tensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        let hf = self
            .hf_name_for(name)
            .ok_or_else(|| Error::tensor(name, "missing from the model"))?;
        let (shape, data) = self.f32_tensor(&hf)?;
        if let Some(bad) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::tensor(hf, format!("value {bad} is not finite")));
        }
        let tensor = Tensor::from_vec(data, shape, device)?;
        Ok(QTensor::quantize(&tensor, GgmlDType::F32)?)
    }

    fn names(&self) -> Vec<String> {
        self.index
            .keys()
            .filter_map(|n| hf_to_gguf(n))
            .filter(|n| self.hf_name_for(n).is_some())
            .collect()
    }
}

fn open_sharded(
    dir: &Path,
    index_path: &Path,
) -> Result<(Vec<SafetensorsFile>, BTreeMap<String, usize>)> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = crate::textio::read_text_file(index_path, MAX_INDEX_BYTES, "safetensors index")?;
    let parsed: Index = serde_json::from_str(&text)
        .map_err(|e| Error::model_file(index_path, format!("invalid index: {e}")))?;
    let mut files: Vec<String> = parsed.weight_map.values().cloned().collect();
    files.sort();
    files.dedup();
    if files.len() > MAX_SHARDS {
        return Err(Error::model_file(
            index_path,
            format!("{} shards (at most {MAX_SHARDS})", files.len()),
        ));
    }
    let mut shards = Vec::with_capacity(files.len());
    for f in &files {
        let plain = Path::new(f)
            .file_name()
            .is_some_and(|n| n == f.as_str() && f.ends_with(".safetensors"));
        if !plain {
            return Err(Error::model_file(
                index_path,
                format!("shard `{f}` must be a .safetensors file name inside the directory"),
            ));
        }
        shards.push(SafetensorsFile::open(resolve_inside(dir, &dir.join(f))?)?);
    }
    let mut index = BTreeMap::new();
    for (name, file) in &parsed.weight_map {
        let shard = files
            .binary_search(file)
            .expect("file list holds every shard");
        if shards[shard].info(name).is_none() {
            return Err(Error::model_file(
                index_path,
                format!("tensor `{name}` is listed in {file} but not stored there"),
            ));
        }
        index.insert(name.clone(), shard);
    }
    Ok((shards, index))
}
