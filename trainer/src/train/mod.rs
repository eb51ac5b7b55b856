//! The `train` subcommand: Debiasing-DPO on LoRA adapters of a frozen base model.
//!
//! 1. Read the pairs; pick each pair's (chosen, rejected) texts for the objective
//!    ([`crate::loss::select_answers`]); tokenize chosen, rejected and the SFT target
//!    `Rating: {gold}` after their prompts.
//! 2. Build the decoder from the base checkpoint (GGUF file or Hugging Face directory) on the
//!    chosen device with autodiff, and a fresh adapter (`B = 0`, so the policy starts equal to
//!    the base) or the adapter of the checkpoint being resumed.
//! 3. Reference log-probs (adapter off) of every chosen/rejected answer, computed once and cached
//!    in `{out}/reference_logps.json`.
//! 4. Each micro-batch is one forward pass in which each pair is one packed row: its sequences
//!    share the transcript, which is computed once ([`TokenBatch::packed`]).
//! 5. Each optimiser step takes `micro_batch × grad_accum` pairs in the epoch's shuffled order
//!    (a pure function of seed and epoch), accumulates the gradients of the micro-batches (each
//!    loss scaled by its share of the step's pairs), clips by global norm, and applies AdamW
//!    with the scheduled learning rate. One metrics line per step.
//! 6. Every `checkpoint_every` steps and at the end: a checkpoint (adapter, optimiser, step).
//!    `--resume` continues from it and gives the same final adapter as an uninterrupted run.
//! 7. At the end: plots of the metrics and the PEFT adapter in `{out}/adapter`.
//!
//! The device is a run-time choice (`--device cpu|vulkan|cuda`): burn 0.22 carries the backend in
//! the `Device`, so the GPU path is this same code.

pub mod checkpoint;

use crate::data::{load_pairs, PreferencePair};
use crate::error::{Error, Result};
use crate::loss::{self, read_f32, LossConfig, LossInputs, LossStats, Objective, PairLogProbs};
use crate::metrics::{read_metrics, MetricsLog, StepMetrics};
use crate::model::{
    save_peft, sequence_logprobs, token_logprobs, Decoder, LoraAdapter, LoraConfig, LoraTarget,
    ScoredSequence, TokenBatch,
};
use crate::optim::{clip_global_norm, OptimConfig, Optimiser, Schedule};
use burn::module::ParamId;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use debias_guard::tokenizer::TextTokenizer;
use debias_guard::weights::DenseCheckpoint;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Most pairs one run accepts (bounds the caches built before training).
pub const MAX_PAIRS: usize = 1_000_000;
/// Largest micro-batch, gradient accumulation and epoch count accepted.
pub const MAX_BATCH: usize = 4096;

/// Where the tensors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// burn's pure-Rust `flex` CPU backend.
    Cpu,
    /// A GPU through Vulkan (cargo feature `vulkan`).
    Vulkan,
    /// An NVIDIA GPU through CUDA (cargo feature `cuda`).
    Cuda,
}

impl DeviceChoice {
    /// The autodiff-enabled device, or an error naming the cargo feature the build lacks.
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => cpu_device(),
            DeviceChoice::Vulkan => vulkan_device(),
            DeviceChoice::Cuda => cuda_device(),
        }
    }
}

fn missing_feature(device: &str) -> Error {
    Error::Config(format!(
        "--device {device} needs a build with `--features {}`",
        if device == "cpu" { "flex" } else { device }
    ))
}

#[cfg(feature = "flex")]
fn cpu_device() -> Result<Device> {
    Ok(Device::flex().autodiff())
}

#[cfg(not(feature = "flex"))]
fn cpu_device() -> Result<Device> {
    Err(missing_feature("cpu"))
}

#[cfg(feature = "vulkan")]
fn vulkan_device() -> Result<Device> {
    Ok(Device::vulkan(Default::default()).autodiff())
}

#[cfg(not(feature = "vulkan"))]
fn vulkan_device() -> Result<Device> {
    Err(missing_feature("vulkan"))
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    Ok(Device::cuda(0).autodiff())
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    Err(missing_feature("cuda"))
}

/// Options of the `train` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Base model: a GGUF file or a Hugging Face model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Preference pairs (JSONL written by `pairs`).
    #[arg(long)]
    pub pairs: PathBuf,
    /// Output directory: checkpoint/, adapter/, metrics.jsonl, plots/, run_config.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Training objective.
    #[arg(long, value_enum, default_value_t = Objective::Debias)]
    pub objective: Objective,
    /// DPO temperature β.
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// Weight of the SFT term (default: 0.1, or 1 for sft-only, 0 for dpo-only).
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
    /// Micro-batches per optimiser step (effective batch = micro-batch × grad-accum).
    #[arg(long, default_value_t = 8)]
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
    /// Use only the first N pairs.
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
    /// Pairs trained on.
    pub pairs: usize,
}

impl TrainArgs {
    /// Checks the options and turns them into a [`RunConfig`] for `pairs` pairs.
    pub fn run_config(&self, pairs: usize) -> Result<RunConfig> {
        let mut loss = LossConfig::new(self.objective);
        loss.beta = self.beta;
        if let Some(w) = self.sft_weight {
            loss.sft_weight = w;
        }
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
        if self.checkpoint_every == 0 {
            return Err(Error::Config(
                "--checkpoint-every must be at least 1".into(),
            ));
        }
        let targets = self
            .targets
            .iter()
            .map(|t| {
                LoraTarget::from_peft_name(t)
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
        })
    }
}

/// A pair ready to train on: token sequences and cached reference log-probs.
#[derive(Debug, Clone)]
pub struct PreparedPair {
    /// Prompt with context + the preferred answer.
    pub chosen: ScoredSequence,
    /// Prompt with context + the dispreferred answer.
    pub rejected: ScoredSequence,
    /// Neutral prompt + `Rating: {gold}`.
    pub sft: ScoredSequence,
    /// Summed reference log-probs of (chosen, rejected) answers.
    pub reference: (f32, f32),
}

/// Tokenizes the pairs for the objective (reference log-probs are filled in later).
pub fn tokenize_pairs(
    tokenizer: &TextTokenizer,
    objective: Objective,
    pairs: &[PreferencePair],
) -> Result<Vec<PreparedPair>> {
    pairs
        .iter()
        .map(|p| {
            let named = |e: Error| Error::Config(format!("pair `{}`: {e}", p.id));
            let (chosen, rejected) = loss::select_answers(objective, p)?;
            Ok(PreparedPair {
                chosen: ScoredSequence::from_texts(tokenizer, &p.prompt, chosen).map_err(named)?,
                rejected: ScoredSequence::from_texts(tokenizer, &p.prompt, rejected)
                    .map_err(named)?,
                sft: ScoredSequence::from_texts(tokenizer, &p.neutral_prompt, &p.sft_target())
                    .map_err(named)?,
                reference: (0.0, 0.0),
            })
        })
        .collect()
}

/// A stable 64-bit FNV-1a digest of the token sequences trained on (detects changed data on resume).
pub fn data_digest(prepared: &[PreparedPair]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        for b in x.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for p in prepared {
        for s in [&p.chosen, &p.rejected, &p.sft] {
            eat(s.tokens().len() as u64);
            eat(s.response_start() as u64);
            s.tokens().iter().for_each(|&t| eat(u64::from(t)));
        }
    }
    format!("{h:016x}")
}

/// Loads the base model: the decoder on `device` and the tokenizer.
pub fn load_base(path: &Path, device: &Device) -> Result<(Decoder, TextTokenizer)> {
    let tokenizer = TextTokenizer::open(path)?;
    let decoder = Decoder::from_checkpoint(DenseCheckpoint::load(path)?, device)?;
    Ok((decoder, tokenizer))
}

fn tensor1(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// Summed (chosen, rejected) response log-probs of each pair under the base model (adapter
/// off), `chunk` pairs per forward pass, each pair's shared prompt computed once.
fn reference_logps(
    decoder: &Decoder,
    pairs: &[PreparedPair],
    chunk: usize,
) -> Result<Vec<(f32, f32)>> {
    let mut out = Vec::with_capacity(pairs.len());
    for part in pairs.chunks(chunk.max(1)) {
        let groups: Vec<[ScoredSequence; 2]> = part
            .iter()
            .map(|p| [p.chosen.clone(), p.rejected.clone()])
            .collect();
        let rows: Vec<&[ScoredSequence]> = groups.iter().map(|g| g.as_slice()).collect();
        let batch = TokenBatch::packed(&rows, decoder.config())?;
        let lp = sequence_logprobs(decoder, &batch, None)?;
        let sums = read_f32(&lp.sum.detach())?;
        out.extend(sums.chunks_exact(2).map(|r| (r[0], r[1])));
    }
    Ok(out)
}

/// Key of the reference cache: the data digest, the base model path and its size, so a cache
/// left by a run on another model is not reused.
pub fn reference_cache_key(data_digest: &str, model: &Path) -> String {
    let size = std::fs::metadata(model).map(|m| m.len()).unwrap_or(0);
    format!("{data_digest}|{}|{size}", model.display())
}

/// Cache file of the reference log-probs.
#[derive(Debug, Serialize, Deserialize)]
struct ReferenceCache {
    key: String,
    chosen_rejected: Vec<(f32, f32)>,
}

/// Fills `reference` of every pair: from `{out}/reference_logps.json` when its key matches `key`
/// (see [`reference_cache_key`]), else computed with the adapter off (then cached).
pub fn fill_reference(
    decoder: &Decoder,
    prepared: &mut [PreparedPair],
    key: &str,
    out: &Path,
    chunk: usize,
) -> Result<()> {
    let path = out.join("reference_logps.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(cache) = serde_json::from_str::<ReferenceCache>(&text) {
            if cache.key == key && cache.chosen_rejected.len() == prepared.len() {
                for (p, r) in prepared.iter_mut().zip(cache.chosen_rejected) {
                    p.reference = r;
                }
                return Ok(());
            }
        }
    }
    let lp = reference_logps(decoder, prepared, chunk)?;
    for (p, r) in prepared.iter_mut().zip(lp) {
        p.reference = r;
    }
    let cache = ReferenceCache {
        key: key.to_string(),
        chosen_rejected: prepared.iter().map(|p| p.reference).collect(),
    };
    let text = serde_json::to_string(&cache)
        .map_err(|e| Error::Config(format!("cannot encode the reference cache: {e}")))?;
    let tmp = crate::data::temp_path(&path);
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

/// The order in which epoch `epoch` visits the `n` pairs (a pure function of seed and epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng =
        StdRng::seed_from_u64(seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    order
}

/// Optimiser steps per epoch for `n` pairs.
pub fn steps_per_epoch(n: usize, run: &RunConfig) -> usize {
    n.div_ceil(run.micro_batch * run.grad_accum)
}

/// Every trainable parameter id of an adapter.
pub fn adapter_param_ids(adapter: &LoraAdapter) -> Vec<ParamId> {
    adapter
        .pairs()
        .flat_map(|(_, _, p)| [p.a.id, p.b.id])
        .collect()
}

/// Column `k` of a `[rows × width]` row-major vector, `[rows]` (differentiable).
fn column(values: Tensor<1>, rows: usize, width: usize, k: usize) -> Tensor<1> {
    values
        .reshape([rows, width])
        .narrow(1, k, 1)
        .reshape([rows])
}

/// The loss of one micro-batch under the current adapter (differentiable) and the number of
/// tokens it scored (each sequence's full length, shared prompts counted once per sequence).
///
/// One forward pass: each pair is one packed row (see [`TokenBatch::packed`]) holding the
/// sequences the objective needs — chosen and rejected (DPO), then the gold answer after the
/// neutral prompt (SFT). The prompts differ only near their end (the context sentence), so the
/// transcript is computed once per pair instead of once per sequence.
pub fn micro_batch_loss(
    decoder: &Decoder,
    adapter: &LoraAdapter,
    loss_config: &LossConfig,
    batch: &[&PreparedPair],
) -> Result<(loss::LossOutput, usize)> {
    let device = decoder.device();
    let objective = loss_config.objective;
    let m = batch.len();
    let groups: Vec<Vec<ScoredSequence>> = batch
        .iter()
        .map(|p| {
            let mut g = Vec::with_capacity(3);
            if objective.uses_dpo() {
                g.extend([p.chosen.clone(), p.rejected.clone()]);
            }
            if objective.uses_sft() {
                g.push(p.sft.clone());
            }
            g
        })
        .collect();
    let width = groups.first().map_or(0, Vec::len);
    let tokens = groups.iter().flatten().map(|s| s.tokens().len()).sum();
    let rows: Vec<&[ScoredSequence]> = groups.iter().map(Vec::as_slice).collect();
    let tb = TokenBatch::packed(&rows, decoder.config())?;
    let scores = token_logprobs(decoder, &tb, Some(adapter))?.per_sequence();
    let mut inputs = LossInputs {
        pairs: None,
        sft_token_mean: None,
    };
    if objective.uses_dpo() {
        inputs.pairs = Some(PairLogProbs {
            policy_chosen: column(scores.sum.clone(), m, width, 0),
            policy_rejected: column(scores.sum.clone(), m, width, 1),
            reference_chosen: tensor1(batch.iter().map(|p| p.reference.0).collect(), device),
            reference_rejected: tensor1(batch.iter().map(|p| p.reference.1).collect(), device),
        });
    }
    if objective.uses_sft() {
        inputs.sft_token_mean = Some(column(scores.mean, m, width, width - 1));
    }
    Ok((loss::compute(loss_config, inputs)?, tokens))
}

/// Everything a training run holds while it steps.
pub struct Trainer {
    /// Frozen base model.
    pub decoder: Decoder,
    /// Trainable adapter.
    pub adapter: LoraAdapter,
    /// AdamW state.
    pub optimiser: Optimiser,
    /// The run's options.
    pub run: RunConfig,
    /// Learning-rate schedule of the whole run.
    pub schedule: Schedule,
    /// Prepared pairs.
    pub pairs: Vec<PreparedPair>,
    /// Optimiser steps done.
    pub step: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
}

impl Trainer {
    /// The pairs of optimiser step `step` (0-based), in order.
    pub fn step_pairs(&self, step: usize) -> Vec<usize> {
        let n = self.pairs.len();
        let spe = steps_per_epoch(n, &self.run);
        let (epoch, k) = (step / spe, step % spe);
        let eb = self.run.micro_batch * self.run.grad_accum;
        let order = epoch_order(n, self.run.seed, epoch);
        order[k * eb..((k + 1) * eb).min(n)].to_vec()
    }

    /// Does the next optimiser step and returns its metrics.
    pub fn train_step(&mut self) -> Result<StepMetrics> {
        let start = Instant::now();
        let indices = self.step_pairs(self.step);
        let total = indices.len();
        let mut accumulator = GradientsAccumulator::<LoraAdapter>::new();
        let mut parts: Vec<(LossStats, usize)> = Vec::new();
        let mut tokens = 0usize;
        for chunk in indices.chunks(self.run.micro_batch) {
            let batch: Vec<&PreparedPair> = chunk.iter().map(|&i| &self.pairs[i]).collect();
            let (out, t) = micro_batch_loss(&self.decoder, &self.adapter, &self.run.loss, &batch)?;
            tokens += t;
            let share = chunk.len() as f64 / total as f64;
            let grads = out.loss.mul_scalar(share).backward();
            accumulator.accumulate(
                &self.adapter,
                GradientsParams::from_grads(grads, &self.adapter),
            );
            parts.push((out.stats, chunk.len()));
        }
        let mut grads = accumulator.grads();
        let ids = adapter_param_ids(&self.adapter);
        let grad_norm = clip_global_norm(&mut grads, &ids, self.run.optim.max_grad_norm)?;
        let lr = self.schedule.lr(self.step);
        self.adapter = self.optimiser.step(lr, self.adapter.clone(), grads);
        self.step += 1;
        let spe = steps_per_epoch(self.pairs.len(), &self.run);
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        Ok(StepMetrics::from_parts(
            self.step,
            self.step as f64 / spe as f64,
            &parts,
            lr,
            grad_norm,
            tokens as f64 / secs,
        ))
    }

    /// The state saved with a checkpoint.
    pub fn state(&self, data_digest: &str) -> checkpoint::TrainState {
        checkpoint::TrainState {
            step: self.step,
            total_steps: self.total_steps,
            run: self.run.clone(),
            data_digest: data_digest.to_string(),
        }
    }
}

/// Runs the `train` subcommand.
pub fn run(args: &TrainArgs) -> Result<()> {
    let summary = train(args)?;
    let exported = summary.steps == summary.total_steps && !args.no_export;
    let saved = if exported { "adapter" } else { "checkpoint" };
    eprintln!(
        "trained {} of {} steps; {saved} in {}",
        summary.steps,
        summary.total_steps,
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
}

/// Trains as `args` says and returns a summary (the library entry point of `train`).
pub fn train(args: &TrainArgs) -> Result<TrainSummary> {
    let mut pairs = load_pairs(&args.pairs)?;
    if let Some(k) = args.max_pairs {
        pairs.truncate(k);
    }
    if pairs.is_empty() || pairs.len() > MAX_PAIRS {
        return Err(Error::Config(format!(
            "{} pairs to train on; 1..={MAX_PAIRS} needed",
            pairs.len()
        )));
    }
    let run = args.run_config(pairs.len())?;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let device = args.device.device()?;
    let (decoder, tokenizer) = load_base(&args.model, &device)?;
    run.lora.validate(decoder.config())?;
    let mut prepared = tokenize_pairs(&tokenizer, run.loss.objective, &pairs)?;
    let digest = data_digest(&prepared);
    let reference_key = reference_cache_key(&digest, &args.model);
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
    fill_reference(
        &decoder,
        &mut prepared,
        &reference_key,
        &args.out,
        run.micro_batch,
    )?;
    let total_steps = run.epochs * steps_per_epoch(prepared.len(), &run);
    let metrics_path = args.out.join("metrics.jsonl");
    let mut log = if args.resume {
        MetricsLog::resume(&metrics_path, step)?
    } else {
        MetricsLog::create(&metrics_path)?
    };
    let mut trainer = Trainer {
        decoder,
        adapter,
        optimiser,
        schedule: Schedule::new(&run.optim, total_steps),
        run,
        pairs: prepared,
        step,
        total_steps,
    };
    let stop_at = args
        .stop_after_steps
        .unwrap_or(total_steps)
        .min(total_steps);
    let bar = progress_bar(total_steps, step);
    let base_model = args.model.display().to_string();
    let mut done = Vec::new();
    while trainer.step < stop_at {
        let m = trainer.train_step()?;
        log.append(&m)?;
        bar.set_position(trainer.step as u64);
        bar.set_message(format!("loss {:.4} margin {:+.3}", m.loss, m.reward_margin));
        done.push(m);
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
    if trainer.step == total_steps && !args.no_export {
        let all = read_metrics(&metrics_path)?;
        crate::plot::write_training_plots(&args.out.join("plots"), &all)?;
        save_peft(&trainer.adapter, &args.out.join("adapter"), &base_model)?;
    }
    Ok(TrainSummary {
        steps: trainer.step,
        total_steps,
        metrics: done,
    })
}

fn write_run_config(out: &Path, run: &RunConfig) -> Result<()> {
    let path = out.join("run_config.json");
    let text = serde_json::to_string_pretty(run)
        .map_err(|e| Error::Config(format!("cannot encode the run config: {e}")))?;
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}

fn progress_bar(total: usize, done: usize) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} steps (eta {eta}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar.set_position(done as u64);
    bar
}

/// Options of the `export` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Base model the adapter was trained on (GGUF file or Hugging Face directory).
    #[arg(long)]
    pub model: PathBuf,
    /// Checkpoint directory (`{out}/checkpoint` of a training run).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Directory to write the PEFT adapter to.
    #[arg(long)]
    pub out: PathBuf,
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
    let dir = checkpoint::find(&args.checkpoint)?;
    let device = DeviceChoice::Cpu.device()?;
    let adapter = crate::model::load_peft(&dir, &config, &device)?;
    save_peft(&adapter, &args.out, &args.model.display().to_string())?;
    eprintln!("wrote the PEFT adapter to {}", args.out.display());
    Ok(())
}
