//! The trainable model: the library's Llama / Qwen2 decoder re-expressed on burn, with frozen base
//! weights and LoRA adapters as the only trainable state.
//!
//! Public API (everything a training loop needs):
//! - [`Decoder`]: frozen base weights. [`Decoder::from_checkpoint`] takes a
//!   `debias_guard::weights::DenseCheckpoint` (GGUF or Hugging Face directory);
//!   [`Decoder::hidden_states`], [`Decoder::logits_at`] and [`Decoder::logits`] run it with
//!   `Some(&adapter)` (policy) or `None` (reference model: same weights, adapter off, no graph).
//!   Its logits equal the library engine's (f32; ~1e-5 on tiny models, <1e-4 on SmolLM2).
//! - [`LoraConfig`], [`Projection`], [`LoraAdapter`]: adapter hyper-parameters and factors
//!   (`A` `[r, in]` Kaiming-uniform from a seed, `B` `[out, r]` zero, `y = base(x) + scale ·
//!   (x Aᵀ) Bᵀ`, scale `alpha/r` or `alpha/√r` with rsLoRA). The adapter is a burn `Module`
//!   whose parameters are exactly the factors, so `GradientsParams::from_grads(grads, &adapter)`
//!   and an optimiser over it train nothing else.
//! - [`ScoredSequence`] (prompt + response tokens, from text via the library's tokenizer) and
//!   [`TokenBatch`]: one right-padded row per sequence ([`TokenBatch::new`]), or sequences that
//!   share a prompt packed into one row, the prompt computed once ([`TokenBatch::packed`]; use
//!   it for a DPO pair's chosen and rejected answers).
//! - [`sequence_logprobs`] → [`SequenceLogProbs`] (`sum`, `mean` `[sequences]`, `count`) and
//!   [`token_logprobs`] → [`TokenLogProbs`] (per-token values for token-level losses).
//! - [`save_peft`] / [`load_peft`] (and [`to_peft`] / [`from_peft`] in memory): PEFT adapter
//!   directories through the library's `PeftAdapter` (also the checkpoint format; the engine's
//!   `load_adapter` reads them as they are).
//!
//! Devices: burn 0.22 selects the backend through [`burn::tensor::Device`] rather than a type
//! parameter; train on `Device::flex().autodiff()`, and build the decoder and adapter on that
//! same device.

mod batch;
mod decoder;
mod lora;
mod peft;
mod rope;
mod score;

pub use batch::{ScoredSequence, TokenBatch};
pub use debias_guard::arch::Projection;
pub use decoder::Decoder;
pub use lora::{parse_target, LoraAdapter, LoraConfig, LoraLayer, LoraPair, MAX_LORA_RANK};
pub use peft::{
    from_peft, load_peft, peft_key, save_peft, to_peft, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE,
};
pub use score::{sequence_logprobs, token_logprobs, SequenceLogProbs, TokenLogProbs};
