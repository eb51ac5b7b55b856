//! Llama 2/3, SmolLM and other Llama-shaped decoders: no biases; llama.cpp's converter permutes
//! the q/k rows of GGUF files so RoPE rotates adjacent pairs.

use super::{Architecture, Family, RopeLayout, RopeScaling};

/// The Llama family.
pub const LLAMA: Family = Family {
    architecture: Architecture::Llama,
    gguf_name: "llama",
    hf_model_type: "llama",
    hf_class: "LlamaForCausalLM",
    qkv_bias: false,
    gguf_rope: RopeLayout::Pairs,
    hf_rope_scalings: &[RopeScaling::Linear, RopeScaling::Llama3],
};
