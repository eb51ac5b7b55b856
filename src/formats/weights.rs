//! Every weight of a decoder as dense f32 in Hugging Face names and layout, whatever file it
//! came from: what the trainer builds its differentiable copy of the model from, and what
//! merged-model export writes out. GGUF llama q/k rows are put back in Hugging Face order, so
//! the result always runs RoPE over halves (`config.rope_interleaved == false`).

use crate::arch::names::{gguf_to_hf, rows_pairs_to_halves};
use crate::arch::{ModelConfig, Projection};
use crate::error::{Error, Result};
use crate::formats::gguf::GgufFile;
use crate::formats::hf::HfModelDir;
use crate::formats::TensorSource;
use candle_core::Device;
use std::collections::BTreeMap;
use std::path::Path;

/// A dense row-major f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseTensor {
    /// Dimensions, outermost first (`[out, in]` for projections).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

/// All weights of a decoder in Hugging Face naming (`model.layers.0.self_attn.q_proj.weight`,
/// …; `lm_head.weight` absent when tied to the embedding).
#[derive(Debug, Clone)]
pub struct DenseCheckpoint {
    /// Hyper-parameters, with `rope_interleaved == false`.
    pub config: ModelConfig,
    /// Tensors by Hugging Face name.
    pub tensors: BTreeMap<String, DenseTensor>,
}

impl DenseCheckpoint {
    /// Loads a GGUF file (dequantizing every tensor) or a Hugging Face model directory.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if crate::formats::hf::is_model_dir(path) {
            let dir = HfModelDir::open(path)?;
            Self::from_source(dir.config.model.clone(), &dir)
        } else {
            let file = GgufFile::open(path)?;
            Self::from_source(ModelConfig::from_gguf(&file)?, &file)
        }
    }

    /// Reads every decoder tensor of a source, checking names and shapes against `config`.
    pub fn from_source(config: ModelConfig, source: &dyn TensorSource) -> Result<Self> {
        config.validate()?;
        let mut tensors = BTreeMap::new();
        for (gguf, shape) in expected_tensors(&config, source) {
            let hf = gguf_to_hf(&gguf).expect("expected names are decoder tensors");
            let found = source
                .tensor_dims(&gguf)
                .ok_or_else(|| Error::tensor(&gguf, "missing from the model"))?;
            if found != shape {
                return Err(Error::tensor(
                    &gguf,
                    format!("shape {found:?} does not match the configuration's {shape:?}"),
                ));
            }
            let mut data = source
                .load_tensor(&gguf, &Device::Cpu)?
                .dequantize(&Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            if let Some(p) = Projection::ALL.into_iter().find(|p| {
                gguf.ends_with(&format!(".{}.weight", p.gguf_stem()))
                    || gguf.ends_with(&format!(".{}.bias", p.gguf_stem()))
            }) {
                if let Some(heads) = p.permuted_heads(&config) {
                    let cols = if shape.len() == 2 { shape[1] } else { 1 };
                    data = rows_pairs_to_halves(&data, heads, cols);
                }
            }
            tensors.insert(hf, DenseTensor { shape, data });
        }
        Ok(Self {
            config: ModelConfig {
                rope_interleaved: false,
                ..config
            },
            tensors,
        })
    }

    /// A tensor by Hugging Face name.
    pub fn get(&self, name: &str) -> Result<&DenseTensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::tensor(name, "missing from the checkpoint"))
    }

    /// Whether the output projection is tied to the embedding (no `lm_head.weight`).
    pub fn tied_output(&self) -> bool {
        !self.tensors.contains_key("lm_head.weight")
    }
}

/// GGUF names and shapes of every tensor a decoder with `config` needs (the output projection
/// only when the source has one).
fn expected_tensors(config: &ModelConfig, source: &dyn TensorSource) -> Vec<(String, Vec<usize>)> {
    let (h, v) = (config.hidden_size, config.vocab_size);
    let mut out = vec![
        ("token_embd.weight".to_string(), vec![v, h]),
        ("output_norm.weight".to_string(), vec![h]),
    ];
    if source.tensor_dims("output.weight").is_some() {
        out.push(("output.weight".into(), vec![v, h]));
    }
    for layer in 0..config.n_layers {
        out.push((format!("blk.{layer}.attn_norm.weight"), vec![h]));
        out.push((format!("blk.{layer}.ffn_norm.weight"), vec![h]));
        for p in Projection::ALL {
            let (rows, cols) = p.shape(config);
            out.push((
                format!("blk.{layer}.{}.weight", p.gguf_stem()),
                vec![rows, cols],
            ));
            if p.has_bias(config.architecture) {
                out.push((format!("blk.{layer}.{}.bias", p.gguf_stem()), vec![rows]));
            }
        }
    }
    out
}
