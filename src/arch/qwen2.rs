//! Qwen2 / Qwen2.5: biases on the q, k and v projections; GGUF files keep Hugging Face's q/k row
//! order (RoPE over halves).

use super::{Architecture, Family, RopeLayout, RopeScaling};

/// The Qwen2 family.
pub const QWEN2: Family = Family {
    architecture: Architecture::Qwen2,
    gguf_name: "qwen2",
    hf_model_type: "qwen2",
    hf_class: "Qwen2ForCausalLM",
    qkv_bias: true,
    gguf_rope: RopeLayout::Halves,
    hf_rope_scalings: &[RopeScaling::Linear, RopeScaling::Llama3],
};
