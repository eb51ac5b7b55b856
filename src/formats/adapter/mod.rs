//! LoRA adapters in PEFT's format: `adapter_config.json` and the safetensors weights, checked
//! against a base model's shapes, and merged into dense weights. Adapters from TRL, OpenRLHF or
//! our trainer load unchanged; settings this library does not implement are refused by name.
//! The decoder runs a validated adapter next to its base weights (`crate::model::LoraWeights`).

mod config;
mod lora;
mod merge;
mod peft;

pub use config::{LayerSelection, ModuleSelector, PeftConfig, TargetModules, MAX_RANK};
pub use lora::{validated_modules, ModuleLora};
pub use merge::{merge_into, MergedSource};
pub use peft::{LoraMatrix, PeftAdapter, KEY_PREFIX};
