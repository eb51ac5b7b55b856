//! Files in and out: every file format the library reads or writes, below the decoder.
//!
//! - [`gguf`]: bounds-checked GGUF parsing (and `ModelConfig::from_gguf`), the GGUF writer;
//! - [`hf`]: Hugging Face model directories (`config.json`, safetensors, `tokenizer.json`);
//! - [`tokenizer`], [`chat`]: text ↔ tokens and the chat template, from the model's own files;
//!   [`template_guard`] and `template_fuel` bound what a template from a file can cost;
//! - [`TensorSource`]: what the decoder loads from, a GGUF file or an HF directory alike;
//! - [`weights`]: any model as dense f32 in Hugging Face names and layout;
//! - [`adapter`]: PEFT LoRA adapters (config, files, validation against a base, merging);
//! - [`finite`]: finite checks on raw tensor bytes (float values, quantized block scales);
//! - [`export`]: Hugging Face directories, llama.cpp GGUF adapters and merged GGUF models.
//!
//! Only `crate::arch` (families and shapes) lies below; the decoder (`crate::model`) loads
//! from here.

pub mod adapter;
pub mod chat;
pub mod export;
pub mod finite;
pub mod gguf;
pub mod hf;
mod source;
mod template_fuel;
pub mod template_guard;
pub mod tokenizer;
pub mod weights;

pub use source::TensorSource;

use crate::error::Result;
use std::path::Path;
use tokenizer::TextTokenizer;

impl TextTokenizer {
    /// The tokenizer of a model without its weights: a GGUF file's embedded vocabulary, or a
    /// Hugging Face directory's `tokenizer.json` and `tokenizer_config.json`. (Defined here,
    /// where both formats are known, so `tokenizer` does not depend on `hf`.)
    pub fn open(path: &Path) -> Result<Self> {
        if hf::is_model_dir(path) {
            hf::HfModelDir::open(path)?.tokenizer()
        } else {
            Self::from_gguf(&gguf::GgufFile::open(path)?)
        }
    }
}
