//! Writing models and adapters for other tools: Hugging Face directories, and llama.cpp's GGUF
//! for merged models and LoRA adapters.

mod hf;

pub use hf::{write_hf_dir, HfWriteOptions};
