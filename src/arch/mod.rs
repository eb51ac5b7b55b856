//! Model families and hyper-parameters: everything that differs between architectures lives
//! here, one file per family, and every other module asks [`Architecture::family`] instead of
//! comparing architectures. No file I/O: the format readers (`crate::formats`) turn GGUF
//! metadata and `config.json` into a [`ModelConfig`].
//!
//! - [`Family`]: names in each format, q/k/v biases, RoPE layout of GGUF files (which is also
//!   the q/k row order), accepted RoPE scalings; `llama.rs` and `qwen2.rs` hold one each;
//! - [`ModelConfig`]: validated shapes and constants of one model;
//! - [`names`]: the projections of a block, their GGUF ↔ Hugging Face tensor names (shared by
//!   the Llama-shaped families) and the q/k row permutation between the two RoPE layouts.

mod config;
mod llama;
pub mod names;
mod qwen2;

pub use config::ModelConfig;
pub use names::Projection;

use crate::error::{Error, Result};

/// The model families this library implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 2/3, SmolLM, Mistral-style decoders (`general.architecture = llama`).
    Llama,
    /// Qwen2 / Qwen2.5 (biases on q, k, v projections).
    Qwen2,
}

/// How RoPE pairs the dimensions of a head, which is also the order of the q/k rows on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// Adjacent pairs `(2i, 2i+1)`: llama.cpp's converter permuted the q/k rows of the file.
    Pairs,
    /// Halves `(i, i + d/2)` (NeoX layout): rows as Hugging Face stores them.
    Halves,
}

/// A `rope_scaling` type of `config.json` (GGUF files carry scaling as `rope.scaling.*` keys and
/// a `rope_freqs` tensor, whatever the family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeScaling {
    /// Positions divided by `factor`.
    Linear,
    /// Llama 3 per-frequency factors.
    Llama3,
}

impl RopeScaling {
    /// The `rope_type` string of `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Llama3 => "llama3",
        }
    }
}

/// Everything that distinguishes one model family; every other property (tensor names, block
/// layout: RMS norm, grouped-query attention, gated SiLU MLP) is shared.
#[derive(Debug)]
pub struct Family {
    /// Which family.
    pub architecture: Architecture,
    /// `general.architecture` of GGUF files, also the prefix of their metadata keys.
    pub gguf_name: &'static str,
    /// `model_type` of `config.json`.
    pub hf_model_type: &'static str,
    /// `architectures[0]` of `config.json` (the transformers class).
    pub hf_class: &'static str,
    /// Whether the q, k and v projections carry a bias (`attention_bias: true` in a
    /// `config.json` is refused for families without).
    pub qkv_bias: bool,
    /// RoPE layout, and so q/k row order, of this family's GGUF files (Hugging Face files are
    /// always [`RopeLayout::Halves`]).
    pub gguf_rope: RopeLayout,
    /// `rope_scaling` types `config.json` may name.
    pub hf_rope_scalings: &'static [RopeScaling],
}

/// Every implemented family. Adding one: a new file with its `Family`, a variant of
/// [`Architecture`], and one line here and in [`Architecture::family`].
pub const FAMILIES: [&Family; 2] = [&llama::LLAMA, &qwen2::QWEN2];

impl Architecture {
    /// The properties of this family.
    pub fn family(self) -> &'static Family {
        match self {
            Self::Llama => &llama::LLAMA,
            Self::Qwen2 => &qwen2::QWEN2,
        }
    }

    /// Parses `general.architecture` of a GGUF file.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::find(name, |f| f.gguf_name)
    }

    /// Parses `model_type` of a `config.json`.
    pub fn from_hf_model_type(name: &str) -> Result<Self> {
        Self::find(name, |f| f.hf_model_type)
    }

    fn find(name: &str, key: impl Fn(&Family) -> &'static str) -> Result<Self> {
        FAMILIES
            .iter()
            .find(|f| key(f) == name)
            .map(|f| f.architecture)
            .ok_or_else(|| Error::UnsupportedArchitecture(name.to_string()))
    }

    /// The metadata key prefix used by GGUF for this architecture.
    pub fn key_prefix(self) -> &'static str {
        self.family().gguf_name
    }

    /// Whether this family's GGUF files rotate adjacent pairs (q/k rows permuted on disk).
    pub fn gguf_rope_interleaved(self) -> bool {
        self.family().gguf_rope == RopeLayout::Pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_found_by_its_names() {
        for f in FAMILIES {
            assert_eq!(f.architecture.family().gguf_name, f.gguf_name);
            assert_eq!(
                Architecture::from_name(f.gguf_name).unwrap(),
                f.architecture
            );
            assert_eq!(
                Architecture::from_hf_model_type(f.hf_model_type).unwrap(),
                f.architecture
            );
        }
        assert!(matches!(
            Architecture::from_name("gpt2"),
            Err(Error::UnsupportedArchitecture(_))
        ));
    }
}
