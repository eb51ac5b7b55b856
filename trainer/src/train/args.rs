//! The `train` command line and the run configuration it defines.

use super::device::DeviceChoice;
use super::MAX_BATCH;
use crate::consistency::ContextDraw;
use crate::error::{Error, Result};
use crate::inputs::InputFiles;
use crate::loss::{LossConfig, Objective};
use crate::model::{parse_target, LoraConfig};
use crate::optim::OptimConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Options of the `train` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Base model: a GGUF file or a Hugging Face model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Preference pairs (JSONL written by `pairs`; the DPO and SFT objectives).
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// Direct-mode rating groups: training examples, contexts and validation.
    #[command(flatten)]
    pub groups: GroupArgs,
    /// Do not append the end-of-turn token after chosen, rejected and the SFT target (the
    /// method's code appends it).
    #[arg(long)]
    pub no_eos: bool,
    /// Output directory: checkpoint/, adapter/, metrics.jsonl, plots/, run_config.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Training objective.
    #[arg(long, value_enum, default_value_t = Objective::Debias)]
    pub objective: Objective,
    /// DPO temperature β.
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// Weight of the SFT term (default: 0.1, or 1 for sft-only, 0 for dpo-only, 0.2 for
    /// consistency).
    #[arg(long)]
    pub sft_weight: Option<f64>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Passes over the pairs.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Pairs per forward/backward pass.
    #[arg(long, default_value_t = 1)]
    pub micro_batch: usize,
    /// Micro-batches per optimiser step (effective batch = micro-batch × grad-accum; 32 pairs as
    /// in the method's code).
    #[arg(long, default_value_t = 32)]
    pub grad_accum: usize,
    /// LoRA rank.
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    /// LoRA alpha (scale alpha / rank).
    #[arg(long, default_value_t = 32.0)]
    pub alpha: f64,
    /// Projections that get adapters, comma-separated PEFT names.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    )]
    pub targets: Vec<String>,
    /// Seed of the adapter initialisation and of the shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write a checkpoint every N optimiser steps (and always at the end).
    #[arg(long, default_value_t = 50)]
    pub checkpoint_every: usize,
    /// Continue from `{out}/checkpoint` (same options and pairs required).
    #[arg(long)]
    pub resume: bool,
    /// Device to train on.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
    /// Use only the first N pairs (or examples).
    #[arg(long)]
    pub max_pairs: Option<usize>,
    /// Stop (with a checkpoint) after this many optimiser steps in total, as if interrupted;
    /// the schedule still spans the whole run.
    #[arg(long)]
    pub stop_after_steps: Option<usize>,
    /// Skip the final plots and adapter export (checkpoints and metrics are still written).
    #[arg(long)]
    pub no_export: bool,
}

/// The options that define a run (saved as `run_config.json` and in every checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Base model path as given.
    pub model: String,
    /// Loss hyper-parameters.
    pub loss: LossConfig,
    /// Optimiser hyper-parameters.
    pub optim: OptimConfig,
    /// Passes over the pairs.
    pub epochs: usize,
    /// Pairs per forward/backward pass.
    pub micro_batch: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Adapter hyper-parameters.
    pub lora: LoraConfig,
    /// Shuffling seed.
    pub seed: u64,
    /// Pairs (or examples) trained on.
    pub pairs: usize,
    /// Whether the end-of-turn token follows chosen, rejected and the SFT target.
    #[serde(default)]
    pub append_eos: bool,
    /// Contexts of each training rating group (the `consistency` objective).
    #[serde(default)]
    pub draw: Option<ContextDraw>,
    /// Contexts of each validation group (with `--validation`).
    #[serde(default)]
    pub validation_draw: Option<ContextDraw>,
}

/// Options of the direct-mode rating groups: what the `consistency` objective trains on and what
/// validation measures.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct GroupArgs {
    /// Training examples (JSONL of records, e.g. `synth`'s train.jsonl) for `--objective
    /// consistency`.
    #[arg(long)]
    pub examples: Option<PathBuf>,
    /// Validation examples (transcripts not trained on): their direct-mode context shift is
    /// measured every `--validate-every` steps and the best adapter is kept (any objective).
    #[arg(long)]
    pub validation: Option<PathBuf>,
    /// Probe catalog, rubric and prompt layout files of the groups.
    #[command(flatten)]
    pub inputs: InputFiles,
    /// `train` wordings per category in each group (both poles equally likely).
    #[arg(long, default_value_t = 1)]
    pub contexts_per_category: usize,
    /// `train` control sentences in each group.
    #[arg(long, default_value_t = 1)]
    pub controls_per_example: usize,
    /// Weight of the consistency (KL) term.
    #[arg(long, default_value_t = 1.0)]
    pub consistency_weight: f64,
    /// Measure the validation set every N optimiser steps (and after the last).
    #[arg(long, default_value_t = 5)]
    pub validate_every: usize,
    /// Stop after N validations without a better validation shift.
    #[arg(long)]
    pub patience: Option<usize>,
    /// `train` wordings per category in each validation group.
    #[arg(long, default_value_t = 2)]
    pub validation_contexts_per_category: usize,
    /// `train` control sentences in each validation group.
    #[arg(long, default_value_t = 2)]
    pub validation_controls: usize,
    /// Seed of the validation groups' draw: fixed, whatever the run's `--seed`, so that runs
    /// with different seeds are judged on the same prompts.
    #[arg(long, default_value_t = 0)]
    pub validation_seed: u64,
}

impl GroupArgs {
    /// The contexts of every validation group.
    pub fn validation_draw(&self) -> ContextDraw {
        ContextDraw {
            per_category: self.validation_contexts_per_category,
            controls: self.validation_controls,
            seed: self.validation_seed,
        }
    }
}

impl Default for GroupArgs {
    fn default() -> Self {
        Self {
            examples: None,
            validation: None,
            inputs: InputFiles::default(),
            contexts_per_category: 1,
            controls_per_example: 1,
            consistency_weight: 1.0,
            validate_every: 5,
            patience: None,
            validation_contexts_per_category: 2,
            validation_controls: 2,
            validation_seed: 0,
        }
    }
}

impl TrainArgs {
    /// Checks the options and turns them into a [`RunConfig`] for `pairs` pairs.
    pub fn run_config(&self, pairs: usize) -> Result<RunConfig> {
        let mut loss = LossConfig::new(self.objective);
        loss.beta = self.beta;
        if let Some(w) = self.sft_weight {
            loss.sft_weight = w;
        }
        loss.consistency_weight = self.groups.consistency_weight;
        loss.validate()?;
        let optim = OptimConfig {
            lr: self.lr,
            ..OptimConfig::default()
        };
        optim.validate()?;
        for (name, v) in [
            ("--epochs", self.epochs),
            ("--micro-batch", self.micro_batch),
            ("--grad-accum", self.grad_accum),
        ] {
            if v == 0 || v > MAX_BATCH {
                return Err(Error::Config(format!(
                    "{name} {v} is outside 1..={MAX_BATCH}"
                )));
            }
        }
        if self.checkpoint_every == 0 || self.groups.validate_every == 0 {
            return Err(Error::Config(
                "--checkpoint-every and --validate-every must be at least 1".into(),
            ));
        }
        if self.groups.contexts_per_category + self.groups.controls_per_example == 0 {
            return Err(Error::Config(
                "--contexts-per-category and --controls-per-example are both 0".into(),
            ));
        }
        match (
            self.objective.needs_pairs(),
            &self.pairs,
            &self.groups.examples,
        ) {
            (true, None, _) => {
                return Err(Error::Config(format!(
                    "--objective {:?} trains on preference pairs: give --pairs",
                    self.objective
                )))
            }
            (false, _, None) => {
                return Err(Error::Config(
                    "--objective consistency trains on examples: give --examples".into(),
                ))
            }
            _ => {}
        }
        let targets = self
            .targets
            .iter()
            .map(|t| {
                parse_target(t)
                    .map_err(|_| Error::Config(format!("--targets: unknown projection `{t}`")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RunConfig {
            model: self.model.display().to_string(),
            loss,
            optim,
            epochs: self.epochs,
            micro_batch: self.micro_batch,
            grad_accum: self.grad_accum,
            lora: LoraConfig {
                rank: self.rank,
                alpha: self.alpha,
                use_rslora: false,
                targets,
                seed: self.seed,
            },
            seed: self.seed,
            pairs,
            append_eos: !self.no_eos && self.objective.needs_pairs(),
            draw: (!self.objective.needs_pairs() || self.groups.validation.is_some()).then_some(
                ContextDraw {
                    per_category: self.groups.contexts_per_category,
                    controls: self.groups.controls_per_example,
                    seed: self.seed,
                },
            ),
            validation_draw: self
                .groups
                .validation
                .is_some()
                .then(|| self.groups.validation_draw()),
        })
    }
}
