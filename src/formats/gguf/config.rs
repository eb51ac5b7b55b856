//! GGUF metadata → [`ModelConfig`]: the family from `general.architecture`, shapes from the
//! `<family>.*` keys, RoPE scaling from `rope.scaling.*` and the optional `rope_freqs` tensor.

use super::{GgufFile, MetadataExt};
use crate::arch::{Architecture, ModelConfig};
use crate::error::{Error, Result};

impl ModelConfig {
    /// Reads and validates the configuration of a GGUF model.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let md = &file.metadata;
        let architecture = Architecture::from_name(md.req_str("general.architecture")?)?;
        let p = architecture.key_prefix();
        let key = |k: &str| format!("{p}.{k}");
        let hidden_size = md.req_usize(&key("embedding_length"))?;
        let n_heads = md.req_usize(&key("attention.head_count"))?;
        let n_kv_heads = md
            .opt_usize(&key("attention.head_count_kv"))?
            .unwrap_or(n_heads);
        let head_dim = match md.opt_usize(&key("attention.key_length"))? {
            Some(d) => d,
            None if n_heads > 0 => hidden_size / n_heads,
            None => 0,
        };
        let vocab_size = match md.opt_usize(&key("vocab_size"))? {
            Some(v) => v,
            None => md.req_array("tokenizer.ggml.tokens")?.len(),
        };
        let rope_linear_scale = match md.opt_str(&key("rope.scaling.type"))? {
            None | Some("none") => 1.0,
            Some("linear") => md.opt_f64(&key("rope.scaling.factor"))?.unwrap_or(1.0),
            Some(other) => {
                return Err(Error::metadata(
                    key("rope.scaling.type"),
                    format!("RoPE scaling `{other}` is not supported (supported: none, linear, llama3 via rope_freqs)"),
                ))
            }
        };
        let config = Self {
            architecture,
            hidden_size,
            n_layers: md.req_usize(&key("block_count"))?,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_size: md.req_usize(&key("feed_forward_length"))?,
            vocab_size,
            context_length: md.req_usize(&key("context_length"))?,
            rms_eps: md
                .opt_f64(&key("attention.layer_norm_rms_epsilon"))?
                .unwrap_or(1e-6),
            rope_base: md.opt_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            rope_interleaved: architecture.gguf_rope_interleaved(),
            rope_linear_scale,
            rope_freq_factors: None,
        };
        config.validate()?;
        let factors = match file.tensor_info("rope_freqs.weight") {
            Some(info) if info.dims != [config.head_dim / 2] => {
                return Err(Error::tensor(
                    "rope_freqs.weight",
                    format!(
                        "shape {:?} does not match head width {}",
                        info.dims, config.head_dim
                    ),
                ))
            }
            Some(_) => Some(
                file.qtensor("rope_freqs.weight", &candle_core::Device::Cpu)?
                    .dequantize(&candle_core::Device::Cpu)?
                    .to_vec1::<f32>()?,
            ),
            None => None,
        };
        let config = Self {
            rope_freq_factors: factors,
            ..config
        };
        config.validate()?;
        Ok(config)
    }
}
