//! The `train` subcommand: LoRA adapters of a frozen base model, trained with Debiasing-DPO (on
//! preference pairs) or with direct-mode counterfactual consistency (on examples).
//!
//! 1. Read the training data: pairs — each pair's (chosen, rejected) texts picked for the
//!    objective ([`crate::loss::select_answers`]) and tokenized with the SFT target `Rating:
//!    {gold}`, the end-of-turn token after each ([`prepare`]) — or examples, each made into a
//!    rating group: the neutral prompt and K context prompts, each followed by every label
//!    ([`crate::consistency`]).
//! 2. Build the decoder from the base checkpoint (GGUF file or Hugging Face directory) on the
//!    chosen device ([`device`]) and a fresh adapter (`B = 0`, so the policy starts equal to the
//!    base) or the adapter of the checkpoint being resumed.
//! 3. Pairs only: reference log-probs (adapter off), computed once and cached ([`reference`]).
//! 4. Each micro-batch is one forward pass in which each pair or group is one packed row: its
//!    sequences share the transcript, which is computed once ([`step`]).
//! 5. Each optimiser step takes `micro_batch × grad_accum` items in the epoch's shuffled order
//!    (a pure function of seed and epoch), accumulates the gradients, clips by global norm, and
//!    applies AdamW with the scheduled learning rate. One metrics line per step.
//! 6. With `--validation`, the direct-mode context shift of validation transcripts (a draw of
//!    `train` wordings fixed by `--validation-seed`, not by the run's seed) is measured
//!    before training and every `--validate-every` steps ([`validation`]); the adapter with the
//!    smallest shift is kept as `{out}/adapter` (the last one as `{out}/last-adapter`), and
//!    `--patience` stops the run when the shift stops improving.
//! 7. Every `checkpoint_every` steps and at the end: a checkpoint (adapter, optimiser, step).
//!    `--resume` continues from it and gives the same final adapter as an uninterrupted run.
//! 8. At the end: plots of the metrics and the PEFT adapter.
//!
//! The device is a run-time choice (`--device cpu|vulkan|cuda`): burn 0.22 carries the backend in
//! the `Device`, so the GPU path is this same code.

mod args;
pub mod checkpoint;
mod device;
pub mod metrics;
pub mod plot;
mod prepare;
mod reference;
mod step;
pub mod validation;

pub use args::{GroupArgs, RunConfig, TrainArgs};
pub use device::DeviceChoice;
pub use prepare::{data_digest, load_base, tokenize_pairs, PreparedPair, TrainData};
pub use reference::{fill_reference, reference_cache_key};
pub use step::{
    adapter_param_ids, epoch_order, group_batch_loss, micro_batch_loss, steps_per_epoch, Trainer,
};

use crate::consistency::{build_groups, RatingGroup};
use crate::data::{load_examples, load_pairs};
use crate::error::{Error, Result};
use crate::model::{save_peft, Decoder, LoraAdapter};
use crate::optim::{Optimiser, Schedule};
use crate::train::metrics::{read_metrics, MetricsLog, StepLog, StepMetrics};
use debias_guard::{Engine, EngineOptions};
use std::path::{Path, PathBuf};
use validation::ValidationPoint;

/// Most pairs one run accepts (bounds the caches built before training).
pub const MAX_PAIRS: usize = 1_000_000;
/// Largest micro-batch, gradient accumulation and epoch count accepted.
pub const MAX_BATCH: usize = 4096;

/// Runs the `train` subcommand.
pub fn run(args: &TrainArgs) -> Result<()> {
    let summary = train(args)?;
    let saved = if summary.finished && !args.no_export {
        "adapter"
    } else {
        "checkpoint"
    };
    eprintln!(
        "trained {} of {} steps{}; {saved} in {}",
        summary.steps,
        summary.total_steps,
        if summary.steps < summary.total_steps && summary.finished {
            " (stopped early: validation shift no longer improving)"
        } else {
            ""
        },
        args.out.join(saved).display()
    );
    Ok(())
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Optimiser steps done in total.
    pub steps: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// Metrics of the steps done by this invocation.
    pub metrics: Vec<StepMetrics>,
    /// Validation measurements of the whole run (empty without `--validation`).
    pub validation: Vec<ValidationPoint>,
    /// Whether the run ended (all steps, or stopped early by `--patience`), as opposed to
    /// interrupted by `--stop-after-steps`.
    pub finished: bool,
}

/// The training and validation records as read from their files, before any model is loaded
/// (so a bad file fails fast).
struct Records {
    pairs: Option<Vec<crate::data::PreferencePair>>,
    examples: Option<Vec<crate::data::Example>>,
    validation: Option<(PathBuf, Vec<crate::data::Example>)>,
}

impl Records {
    /// Reads what the objective trains on (`--max-pairs` applied) and the validation records.
    fn read(args: &TrainArgs) -> Result<Self> {
        let limit = |n: usize| args.max_pairs.map_or(n, |k| n.min(k));
        let mut records = Self {
            pairs: None,
            examples: None,
            validation: None,
        };
        match (&args.pairs, &args.groups.examples) {
            (Some(path), _) if args.objective.needs_pairs() => {
                let mut pairs = load_pairs(path)?;
                pairs.truncate(limit(pairs.len()));
                records.pairs = Some(pairs);
            }
            (_, Some(path)) if !args.objective.needs_pairs() => {
                let mut examples = load_examples(path)?;
                examples.truncate(limit(examples.len()));
                records.examples = Some(examples);
            }
            // The run configuration names what is missing.
            _ => return Err(Error::Config("no training data for this objective".into())),
        }
        if let Some(path) = &args.groups.validation {
            let examples = load_examples(path)?;
            if examples.is_empty() {
                return Err(Error::File {
                    path: path.clone(),
                    message: "holds no examples".into(),
                });
            }
            records.validation = Some((path.clone(), examples));
        }
        Ok(records)
    }

    /// Number of pairs or examples trained on.
    fn len(&self) -> usize {
        self.pairs.as_ref().map_or(0, Vec::len) + self.examples.as_ref().map_or(0, Vec::len)
    }
}

/// Makes the records ready for the model: tokenized pairs, or rating groups (and the validation
/// groups). The engine that renders the groups' prompts is opened only when groups are needed
/// and dropped before training.
fn prepare_data(
    args: &TrainArgs,
    run: &RunConfig,
    tokenizer: &debias_guard::tokenizer::TextTokenizer,
    records: Records,
) -> Result<(TrainData, Vec<RatingGroup>)> {
    let Some(draw) = run.draw else {
        let pairs = records.pairs.unwrap_or_default();
        let prepared = tokenize_pairs(tokenizer, args.objective, &pairs, run.append_eos)?;
        return Ok((TrainData::Pairs(prepared), Vec::new()));
    };
    let inputs = args.groups.inputs.load()?;
    let engine = Engine::open(
        &args.model,
        &EngineOptions {
            threads: 1,
            ..EngineOptions::default()
        },
    )?;
    let groups = |examples: &[crate::data::Example]| {
        build_groups(
            &engine,
            &inputs.builder,
            &inputs.rubric,
            &inputs.catalog,
            examples,
            &draw,
        )
    };
    let data = match (records.pairs, records.examples) {
        (Some(pairs), _) => TrainData::Pairs(tokenize_pairs(
            tokenizer,
            args.objective,
            &pairs,
            run.append_eos,
        )?),
        (None, Some(examples)) => TrainData::Groups(groups(&examples)?),
        (None, None) => return Err(Error::Config("no training data for this objective".into())),
    };
    let validation = match &records.validation {
        Some((_, examples)) => build_groups(
            &engine,
            &inputs.builder,
            &inputs.rubric,
            &inputs.catalog,
            examples,
            &run.validation_draw
                .unwrap_or_else(|| args.groups.validation_draw()),
        )?,
        None => Vec::new(),
    };
    Ok((data, validation))
}

/// Keeps the adapter with the smallest validation shift: measures, logs, and saves the adapter
/// to `{out}/adapter` when it is the best so far.
struct Validator {
    groups: Vec<RatingGroup>,
    log: Option<StepLog<ValidationPoint>>,
    best: Option<ValidationPoint>,
    stale: usize,
    every: usize,
    patience: Option<usize>,
    chunk: usize,
}

impl Validator {
    fn new(args: &TrainArgs, groups: Vec<RatingGroup>, chunk: usize, step: usize) -> Result<Self> {
        let path = args.out.join("validation.jsonl");
        let log: Option<StepLog<ValidationPoint>> = match (groups.is_empty(), args.resume) {
            (true, _) => None,
            (false, true) => Some(StepLog::resume(&path, step)?),
            (false, false) => Some(StepLog::create(&path)?),
        };
        let best = log.as_ref().and_then(|l| {
            l.kept()
                .iter()
                .copied()
                .min_by(|a, b| a.context_shift.total_cmp(&b.context_shift))
        });
        Ok(Self {
            groups,
            log,
            best,
            stale: 0,
            every: args.groups.validate_every,
            patience: args.groups.patience,
            chunk,
        })
    }

    /// Measures after `step` when it is due (or `force`d); returns whether training should stop.
    fn after_step(
        &mut self,
        decoder: &Decoder,
        adapter: &LoraAdapter,
        step: usize,
        force: bool,
        dir: &Path,
        base_model: &str,
    ) -> Result<bool> {
        let Some(log) = self.log.as_mut() else {
            return Ok(false);
        };
        if !(force || step.is_multiple_of(self.every)) {
            return Ok(false);
        }
        let active = (step > 0).then_some(adapter);
        let point = validation::measure(decoder, active, &self.groups, self.chunk, step)?;
        log.append(&point)?;
        if self
            .best
            .is_none_or(|b| point.context_shift < b.context_shift)
        {
            self.best = Some(point);
            self.stale = 0;
            save_peft(adapter, dir, base_model)?;
        } else {
            self.stale += 1;
        }
        Ok(self.patience.is_some_and(|p| self.stale >= p))
    }
}

/// Trains as `args` says and returns a summary (the library entry point of `train`).
pub fn train(args: &TrainArgs) -> Result<TrainSummary> {
    // Options and files first: both fail fast, before the model is read.
    args.run_config(1)?;
    let records = Records::read(args)?;
    let n = records.len();
    if n == 0 || n > MAX_PAIRS {
        return Err(Error::Config(format!(
            "{n} pairs or examples to train on; 1..={MAX_PAIRS} needed"
        )));
    }
    let run = args.run_config(n)?;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let device = args.device.device()?;
    let (decoder, tokenizer) = load_base(&args.model, &device)?;
    run.lora.validate(decoder.config())?;
    let (mut data, validation_groups) = prepare_data(args, &run, &tokenizer, records)?;
    let digest = data.digest();
    let ckpt_dir = args.out.join("checkpoint");
    let (adapter, optimiser, step) = if args.resume {
        let dir = checkpoint::find(&ckpt_dir)?;
        let (adapter, optimiser, state) =
            checkpoint::load(&dir, decoder.config(), &run.optim, &device)?;
        if state.run != run {
            return Err(Error::Checkpoint {
                path: dir,
                message: "was written with different options; resume with the same ones".into(),
            });
        }
        if state.data_digest != digest {
            return Err(Error::Checkpoint {
                path: dir,
                message: "was trained on different pairs or another tokenizer".into(),
            });
        }
        (adapter, optimiser, state.step)
    } else {
        let adapter = LoraAdapter::init(&run.lora, decoder.config(), &device)?;
        (adapter, Optimiser::new(&run.optim), 0)
    };
    write_run_config(&args.out, &run)?;
    if let TrainData::Pairs(pairs) = &mut data {
        let key = reference_cache_key(&digest, &args.model);
        fill_reference(&decoder, pairs, &key, &args.out, run.micro_batch)?;
    }
    let total_steps = run.epochs * steps_per_epoch(data.len(), &run);
    let metrics_path = args.out.join("metrics.jsonl");
    let mut log = if args.resume {
        MetricsLog::resume(&metrics_path, step)?
    } else {
        MetricsLog::create(&metrics_path)?
    };
    let mut validator = Validator::new(args, validation_groups, run.micro_batch, step)?;
    let mut trainer = Trainer {
        decoder,
        adapter,
        optimiser,
        schedule: Schedule::new(&run.optim, total_steps),
        run,
        data,
        step,
        total_steps,
    };
    let stop_at = args
        .stop_after_steps
        .unwrap_or(total_steps)
        .min(total_steps);
    let best_dir = args.out.join("adapter");
    let base_model = args.model.display().to_string();
    if step == 0 {
        validator.after_step(
            &trainer.decoder,
            &trainer.adapter,
            0,
            true,
            &best_dir,
            &base_model,
        )?;
    }
    let bar = crate::inputs::progress_bar(
        true,
        total_steps as u64,
        "{elapsed_precise} [{bar:30}] {pos}/{len} steps (eta {eta}) {msg}",
    );
    bar.set_position(step as u64);
    let mut done = Vec::new();
    let mut stopped_early = false;
    while trainer.step < stop_at {
        let m = trainer.train_step()?;
        log.append(&m)?;
        bar.set_position(trainer.step as u64);
        bar.set_message(format!(
            "loss {:.4} margin {:+.3} shift {:.3}",
            m.stats.loss, m.stats.reward_margin, m.stats.context_shift
        ));
        done.push(m);
        stopped_early = validator.after_step(
            &trainer.decoder,
            &trainer.adapter,
            trainer.step,
            trainer.step == total_steps,
            &best_dir,
            &base_model,
        )?;
        if stopped_early {
            break;
        }
        if trainer.step.is_multiple_of(args.checkpoint_every) && trainer.step < stop_at {
            checkpoint::save(
                &ckpt_dir,
                &trainer.adapter,
                &trainer.optimiser,
                &trainer.state(&digest),
                &base_model,
            )?;
        }
    }
    bar.finish_and_clear();
    checkpoint::save(
        &ckpt_dir,
        &trainer.adapter,
        &trainer.optimiser,
        &trainer.state(&digest),
        &base_model,
    )?;
    let finished = trainer.step == total_steps || stopped_early;
    if finished && !args.no_export {
        let all = read_metrics(&metrics_path)?;
        crate::train::plot::write_training_plots(&args.out.join("plots"), &all)?;
        let last = if validator.log.is_some() {
            args.out.join("last-adapter")
        } else {
            best_dir
        };
        save_peft(&trainer.adapter, &last, &base_model)?;
    }
    let validation = match validator.log {
        Some(_) => crate::data::read_jsonl_checked(
            &args.out.join("validation.jsonl"),
            |_: &ValidationPoint| Ok(()),
        )?,
        None => Vec::new(),
    };
    Ok(TrainSummary {
        steps: trainer.step,
        total_steps,
        metrics: done,
        validation,
        finished,
    })
}

fn write_run_config(out: &Path, run: &RunConfig) -> Result<()> {
    let path = out.join("run_config.json");
    let text = serde_json::to_string_pretty(run)
        .map_err(|e| Error::Config(format!("cannot encode the run config: {e}")))?;
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}

/// Options of the `export` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Base model the adapter was trained on (GGUF file or Hugging Face directory).
    #[arg(long)]
    pub model: PathBuf,
    /// Checkpoint directory (`{out}/checkpoint` of a training run), or a PEFT adapter
    /// directory (e.g. `{out}/adapter`, to store it in another dtype).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Directory to write the PEFT adapter to.
    #[arg(long)]
    pub out: PathBuf,
    /// Storage type of the adapter weights (`f16` halves the file).
    #[arg(long, value_enum, default_value_t = AdapterDtype::F32)]
    pub dtype: AdapterDtype,
}

/// Storage type of an exported adapter's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdapterDtype {
    /// 32-bit floats (exact).
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

impl AdapterDtype {
    fn store(self) -> debias_guard::hf::StoreDtype {
        match self {
            Self::F32 => debias_guard::hf::StoreDtype::F32,
            Self::F16 => debias_guard::hf::StoreDtype::F16,
            Self::Bf16 => debias_guard::hf::StoreDtype::BF16,
        }
    }
}

/// Runs the `export` subcommand: checks a checkpoint's adapter against the base model and writes
/// it as a PEFT adapter directory.
pub fn export(args: &ExportArgs) -> Result<()> {
    let config = if debias_guard::hf::is_model_dir(&args.model) {
        debias_guard::hf::HfModelDir::open(&args.model)?
            .config
            .model
    } else {
        let file = debias_guard::gguf::GgufFile::open(&args.model)?;
        debias_guard::model::ModelConfig::from_gguf(&file)?
    };
    let is_peft = args
        .checkpoint
        .join(crate::model::ADAPTER_CONFIG_FILE)
        .exists()
        && !args.checkpoint.join(checkpoint::STATE_FILE).exists();
    let dir = if is_peft {
        args.checkpoint.clone()
    } else {
        checkpoint::find(&args.checkpoint)?
    };
    let device = DeviceChoice::Cpu.device()?;
    let adapter = crate::model::load_peft(&dir, &config, &device)?;
    crate::model::to_peft(&adapter, &args.model.display().to_string())?
        .save_as(&args.out, args.dtype.store())?;
    eprintln!("wrote the PEFT adapter to {}", args.out.display());
    Ok(())
}
