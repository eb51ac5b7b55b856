//! debias-guard: score classroom transcripts with an in-process LLM and measure how much
//! irrelevant social context moves the score.
//!
//! Layers, each knowing only those below it (the folder tree is this order):
//! - [`arch`]: model families (one file each), hyper-parameters and tensor names;
//! - [`formats`]: GGUF, Hugging Face directories, tokenizer and chat template, dense weights,
//!   PEFT adapters and export (re-exported here by their short paths, e.g. [`gguf`]);
//! - [`model`]: the decoder (weights shared, per-call [`model::KvState`], run-time LoRA paths);
//! - [`rubric`], [`prompt`]: what is rated and the one prompt builder;
//! - [`engine`]: prompts → prefix tree → label distributions, and generation;
//! - [`guard`]: bias and adapter deltas, the probe catalog, audits, runtime checks, dataset
//!   audits and reports;
//! - [`stats`]: the cluster bootstrap behind every interval (dataset audits, the trainer's eval);
//! - [`ffi`]: the C ABI over all of the above (header `include/debias_guard.h`).
//!
//! [`limits`] holds the work limits of one call; [`error`] and [`textio`] sit under everything.
//!
//! Test models come from the dev-only `debias-guard-testkit` crate, never from here.

pub mod arch;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod formats;
pub mod guard;
pub mod limits;
pub mod model;
pub mod prompt;
pub mod rubric;
pub mod stats;
pub mod textio;

// The file-format modules by their short paths, kept for existing callers (trainer, tests).
#[doc(no_inline)]
pub use formats::{adapter, chat, export, gguf, hf, tokenizer, weights};

pub use engine::{
    Engine, EngineOptions, FinishReason, GenerateOptions, Generation, LabelPrompt,
    ScoreDistribution,
};
pub use error::{Error, Result};
pub use guard::{
    adapter_delta, audit, check, AdapterDelta, AuditMode, AuditOptions, AuditReport, AuditRequest,
    BiasDelta, CheckOptions, CheckResult, ProbeCatalog, ReasoningOptions, SplitSelection,
    Thresholds,
};
pub use prompt::{PromptBuilder, PromptLayout, Transcript};
pub use rubric::{Rubric, RubricItem};

/// Version of this library (from Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
