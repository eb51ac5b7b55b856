//! LoRA adapters in PEFT's format, applied at run time: each adapted projection adds a
//! low-rank path next to its base weight, so one loaded base serves any number of adapters
//! without copying it. Adapters from TRL, OpenRLHF or our trainer load unchanged; settings this
//! library does not implement are refused by name.

mod config;
mod lora;
mod merge;
mod peft;

pub use config::{LayerSelection, ModuleSelector, PeftConfig, TargetModules, MAX_RANK};
pub use lora::{validated_modules, LayerLora, LoraPair, LoraWeights, ModuleLora};
pub use merge::merge_into;
pub use peft::{LoraMatrix, PeftAdapter, KEY_PREFIX};
