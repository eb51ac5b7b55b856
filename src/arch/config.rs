//! Hyper-parameters of a decoder, validated before any tensor loads. The format readers fill
//! them: `ModelConfig::from_gguf` (GGUF metadata) and `HfConfig` (`config.json`).

use super::Architecture;
use crate::error::{Error, Result};

/// Upper bounds that keep a hostile file from requesting absurd allocations.
const MAX_LAYERS: usize = 512;
const MAX_HIDDEN: usize = 65_536;
const MAX_CONTEXT: usize = 1 << 21;

/// Shapes and constants of a decoder-only transformer.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Model family.
    pub architecture: Architecture,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Inner width of the gated MLP.
    pub ffn_size: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Longest sequence the model was trained for, in tokens.
    pub context_length: usize,
    /// Epsilon of the RMS norms.
    pub rms_eps: f64,
    /// RoPE base frequency.
    pub rope_base: f64,
    /// Whether RoPE rotates adjacent pairs (GGUF llama) or halves (NeoX layout: qwen2, HF files).
    pub rope_interleaved: bool,
    /// Linear position scaling factor (1.0 = none).
    pub rope_linear_scale: f64,
    /// Per-pair frequency divisors (llama3 RoPE scaling), `head_dim / 2` of them.
    pub rope_freq_factors: Option<Vec<f32>>,
}

impl ModelConfig {
    /// Parameters of the embedding and the blocks' projection matrices (norms, biases and an
    /// untied output matrix left out): the size a model is known by (SmolLM2-135M: ~135M).
    pub fn parameter_count(&self) -> u64 {
        let (h, f) = (self.hidden_size as u64, self.ffn_size as u64);
        let q = (self.n_heads * self.head_dim) as u64;
        let kv = (self.n_kv_heads * self.head_dim) as u64;
        let block = 2 * h * q + 2 * h * kv + 3 * h * f;
        self.vocab_size as u64 * h + self.n_layers as u64 * block
    }

    /// Inverse RoPE frequencies, one per rotated pair (`head_dim / 2`):
    /// `base^(-2i/d) / (linear_scale * factor_i)`. Every implementation (engine, trainer) uses
    /// these, so positions are encoded identically.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim;
        (0..d / 2)
            .map(|i| {
                let f = self.rope_base.powf(-((2 * i) as f64) / d as f64) / self.rope_linear_scale;
                let factor = self.rope_freq_factors.as_ref().map_or(1.0, |f| f[i] as f64);
                (f / factor) as f32
            })
            .collect()
    }

    /// Checks that the numbers are consistent and within sane bounds.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, reason: String| Err(Error::metadata(key, reason));
        if self.n_layers == 0 || self.n_layers > MAX_LAYERS {
            return bad(
                "block_count",
                format!("{} is out of range 1..={MAX_LAYERS}", self.n_layers),
            );
        }
        if self.hidden_size == 0 || self.hidden_size > MAX_HIDDEN {
            return bad(
                "embedding_length",
                format!("{} is out of range", self.hidden_size),
            );
        }
        if self.n_heads == 0
            || self.n_kv_heads == 0
            || !self.n_heads.is_multiple_of(self.n_kv_heads)
        {
            return bad(
                "attention.head_count_kv",
                format!(
                    "{} query heads cannot be grouped over {} kv heads",
                    self.n_heads, self.n_kv_heads
                ),
            );
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) || self.head_dim > 1024 {
            return bad(
                "attention.key_length",
                format!("head width {} must be even and positive", self.head_dim),
            );
        }
        if self.ffn_size == 0 || self.ffn_size > 16 * MAX_HIDDEN {
            return bad(
                "feed_forward_length",
                format!("{} is out of range", self.ffn_size),
            );
        }
        if self.vocab_size == 0 || self.vocab_size > 1 << 20 {
            return bad("vocab_size", format!("{} is out of range", self.vocab_size));
        }
        if self.context_length == 0 || self.context_length > MAX_CONTEXT {
            return bad(
                "context_length",
                format!("{} is out of range", self.context_length),
            );
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return bad(
                "attention.layer_norm_rms_epsilon",
                format!("{} is not positive", self.rms_eps),
            );
        }
        if !(self.rope_base.is_finite() && self.rope_base > 1.0) {
            return bad("rope.freq_base", format!("{} is not > 1", self.rope_base));
        }
        if !(self.rope_linear_scale.is_finite() && self.rope_linear_scale > 0.0) {
            return bad(
                "rope.scaling.factor",
                format!("{} is not positive", self.rope_linear_scale),
            );
        }
        if let Some(f) = &self.rope_freq_factors {
            if f.len() != self.head_dim / 2 || f.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                return bad(
                    "rope_freqs",
                    format!(
                        "{} factors for head width {} must all be positive",
                        f.len(),
                        self.head_dim
                    ),
                );
            }
        }
        Ok(())
    }
}
