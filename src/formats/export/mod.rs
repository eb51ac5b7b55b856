//! Writing models and adapters for other tools: Hugging Face directories, and llama.cpp's GGUF
//! for merged models and LoRA adapters.

mod gguf;
mod hf;

pub use gguf::{write_gguf_adapter, write_merged_gguf};
pub use hf::{write_hf_dir, HfWriteOptions};
