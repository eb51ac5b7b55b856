//! The projections of a decoder block and their names in each file format (the same for every
//! Llama-shaped family), plus the q/k row order of a file whose RoPE rotates adjacent pairs
//! (GGUF llama) versus halves (Hugging Face).

use super::{Architecture, ModelConfig};
use serde::{Deserialize, Serialize};

/// One linear projection inside a transformer block (serialised by its PEFT module name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Projection {
    /// Attention query.
    #[serde(rename = "q_proj")]
    Q,
    /// Attention key.
    #[serde(rename = "k_proj")]
    K,
    /// Attention value.
    #[serde(rename = "v_proj")]
    V,
    /// Attention output.
    #[serde(rename = "o_proj")]
    O,
    /// MLP gate (SiLU branch).
    #[serde(rename = "gate_proj")]
    Gate,
    /// MLP up.
    #[serde(rename = "up_proj")]
    Up,
    /// MLP down.
    #[serde(rename = "down_proj")]
    Down,
}

impl Projection {
    /// Every projection, in block order.
    pub const ALL: [Projection; 7] = [
        Self::Q,
        Self::K,
        Self::V,
        Self::O,
        Self::Gate,
        Self::Up,
        Self::Down,
    ];

    /// Position in [`Projection::ALL`].
    pub fn slot(self) -> usize {
        self as usize
    }

    /// The GGUF tensor stem (`blk.N.<stem>.weight`).
    pub fn gguf_stem(self) -> &'static str {
        match self {
            Self::Q => "attn_q",
            Self::K => "attn_k",
            Self::V => "attn_v",
            Self::O => "attn_output",
            Self::Gate => "ffn_gate",
            Self::Up => "ffn_up",
            Self::Down => "ffn_down",
        }
    }

    /// The Hugging Face module name (`q_proj`, …), what PEFT's `target_modules` lists.
    pub fn hf_module(self) -> &'static str {
        match self {
            Self::Q => "q_proj",
            Self::K => "k_proj",
            Self::V => "v_proj",
            Self::O => "o_proj",
            Self::Gate => "gate_proj",
            Self::Up => "up_proj",
            Self::Down => "down_proj",
        }
    }

    /// The Hugging Face module path inside layer `layer` (`model.layers.3.self_attn.q_proj`).
    pub fn hf_path(self, layer: usize) -> String {
        let parent = match self {
            Self::Q | Self::K | Self::V | Self::O => "self_attn",
            _ => "mlp",
        };
        format!("model.layers.{layer}.{parent}.{}", self.hf_module())
    }

    /// The projection named by a Hugging Face module name.
    pub fn from_hf_module(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.hf_module() == name)
    }

    /// `(out, in)` of the weight matrix for a model.
    pub fn shape(self, config: &ModelConfig) -> (usize, usize) {
        let (h, hd, f) = (config.hidden_size, config.head_dim, config.ffn_size);
        match self {
            Self::Q => (config.n_heads * hd, h),
            Self::K | Self::V => (config.n_kv_heads * hd, h),
            Self::O => (h, config.n_heads * hd),
            Self::Gate | Self::Up => (f, h),
            Self::Down => (h, f),
        }
    }

    /// Whether the architecture gives this projection a bias.
    pub fn has_bias(self, architecture: Architecture) -> bool {
        architecture.family().qkv_bias && matches!(self, Self::Q | Self::K | Self::V)
    }

    /// Heads whose rows a GGUF llama file permutes (q and k only), for a model whose RoPE
    /// rotates adjacent pairs.
    pub fn permuted_heads(self, config: &ModelConfig) -> Option<usize> {
        if !config.rope_interleaved {
            return None;
        }
        match self {
            Self::Q => Some(config.n_heads),
            Self::K => Some(config.n_kv_heads),
            _ => None,
        }
    }
}

/// The Hugging Face name of a tensor given its GGUF name (`blk.2.ffn_up.weight` →
/// `model.layers.2.mlp.up_proj.weight`); `None` for names outside the decoder.
pub fn gguf_to_hf(name: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (stem, kind) = rest.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let path = match stem {
        "attn_norm" if kind == "weight" => format!("model.layers.{layer}.input_layernorm"),
        "ffn_norm" if kind == "weight" => format!("model.layers.{layer}.post_attention_layernorm"),
        _ => Projection::ALL
            .into_iter()
            .find(|p| p.gguf_stem() == stem)?
            .hf_path(layer),
    };
    Some(format!("{path}.{kind}"))
}

/// The GGUF name of a tensor given its Hugging Face name (inverse of [`gguf_to_hf`]).
pub fn hf_to_gguf(name: &str) -> Option<String> {
    match name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (path, kind) = rest.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let stem = match path {
        "input_layernorm" if kind == "weight" => "attn_norm",
        "post_attention_layernorm" if kind == "weight" => "ffn_norm",
        _ => {
            let (_, module) = path.split_once('.')?;
            let p = Projection::from_hf_module(module)?;
            if p.hf_path(layer) != format!("model.layers.{layer}.{path}") {
                return None;
            }
            p.gguf_stem()
        }
    };
    Some(format!("blk.{layer}.{stem}.{kind}"))
}

/// Reorders the rows of a `[heads * head_dim, cols]` matrix from Hugging Face order (RoPE over
/// halves) to GGUF llama order (RoPE over adjacent pairs): within each head, row `s·d/2 + j`
/// moves to `2j + s`.
pub fn rows_halves_to_pairs(data: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    permute_rows(data, heads, cols, true)
}

/// The inverse of [`rows_halves_to_pairs`].
pub fn rows_pairs_to_halves(data: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    permute_rows(data, heads, cols, false)
}

fn permute_rows(data: &[f32], heads: usize, cols: usize, to_pairs: bool) -> Vec<f32> {
    let rows = data.len() / cols.max(1);
    let hd = rows / heads.max(1);
    let half = hd / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..heads {
        for s in 0..2 {
            for j in 0..half {
                let halves = h * hd + s * half + j;
                let pairs = h * hd + 2 * j + s;
                let (from, to) = if to_pairs {
                    (halves, pairs)
                } else {
                    (pairs, halves)
                };
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&data[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for gguf in [
            "token_embd.weight",
            "output.weight",
            "output_norm.weight",
            "blk.0.attn_norm.weight",
            "blk.11.ffn_norm.weight",
            "blk.3.attn_q.bias",
            "blk.3.attn_output.weight",
            "blk.29.ffn_down.weight",
        ] {
            let hf = gguf_to_hf(gguf).expect(gguf);
            assert_eq!(hf_to_gguf(&hf).as_deref(), Some(gguf), "{hf}");
        }
        assert_eq!(
            gguf_to_hf("blk.2.ffn_up.weight").as_deref(),
            Some("model.layers.2.mlp.up_proj.weight")
        );
        assert_eq!(hf_to_gguf("model.layers.2.self_attn.up_proj.weight"), None);
        assert_eq!(hf_to_gguf("model.rotary_emb.inv_freq"), None);
    }

    #[test]
    fn row_permutation_round_trips_and_moves_halves_to_pairs() {
        // 2 heads of width 4, 1 column: halves order [a0 a1 b0 b1] becomes pairs [a0 b0 a1 b1].
        let hf: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let pairs = rows_halves_to_pairs(&hf, 2, 1);
        assert_eq!(pairs, [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert_eq!(rows_pairs_to_halves(&pairs, 2, 1), hf);
    }
}
