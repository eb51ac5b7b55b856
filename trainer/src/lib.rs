//! Debiasing-DPO training of LoRA adapters for debias-guard scorers, on burn.
//!
//! Pipeline: `synth` (synthetic NCTE-format data) -> `pairs` (preference pairs from the model's own reasoning with
//! and without a spurious context) -> `train` (DPO + SFT on LoRA adapters) -> `export` (PEFT adapter) -> `eval`.

pub mod chart;
pub mod consistency;
pub mod data;
pub mod error;
pub mod eval;
pub mod inputs;
pub mod loss;
pub mod model;
pub mod optim;
pub mod pairs;
pub mod synth;
pub mod train;

pub use error::{Error, Result};
