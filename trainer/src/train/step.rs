//! One optimiser step: the batches of a step, their losses (pairs or rating groups), gradient
//! accumulation, clipping and the AdamW update.

use super::checkpoint;
use super::prepare::{tensor1, PreparedPair, TrainData};
use super::RunConfig;
use crate::consistency::{group_loss, ConsistencyWeights, RatingGroup};
use crate::error::{Error, Result};
use crate::loss::{self, LossConfig, LossInputs, LossStats, PairLogProbs};
use crate::model::{token_logprobs, Decoder, LoraAdapter, ScoredSequence, TokenBatch};
use crate::optim::{clip_global_norm, Optimiser, Schedule};
use crate::train::metrics::StepMetrics;
use burn::module::ParamId;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Tensor;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::time::Instant;

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

/// The `consistency` loss of one micro-batch of rating groups (each group one packed row: the
/// transcript once, each prompt tail once, each label once), under `adapter` (or the base model
/// with `None`), and the number of token cells it computed.
pub fn group_batch_loss(
    decoder: &Decoder,
    adapter: Option<&LoraAdapter>,
    loss_config: &LossConfig,
    batch: &[&RatingGroup],
) -> Result<(loss::LossOutput, usize)> {
    let rows: Vec<&[ScoredSequence]> = batch.iter().map(|g| g.sequences.as_slice()).collect();
    let tb = TokenBatch::packed(&rows, decoder.config())?;
    let sums = token_logprobs(decoder, &tb, adapter)?.per_sequence().sum;
    let weights = ConsistencyWeights {
        consistency: loss_config.consistency_weight,
        sft: loss_config.sft_weight,
    };
    let mut total: Option<Tensor<1>> = None;
    let mut parts = Vec::with_capacity(batch.len());
    let mut offset = 0;
    for group in batch {
        let n = group.sequences.len();
        let (l, g) = group_loss(sums.clone().narrow(0, offset, n), group, &weights)?;
        offset += n;
        total = Some(match total {
            Some(t) => t + l,
            None => l,
        });
        let stats = LossStats {
            sft_loss: g.sft,
            consistency_loss: g.consistency,
            context_shift: g.context_shift,
            label_mass: g.label_mass,
            loss: weights.consistency * g.consistency + weights.sft * g.sft,
            ..LossStats::default()
        };
        parts.push((stats, 1));
    }
    let loss = total
        .ok_or_else(|| Error::Model("an empty micro-batch".into()))?
        .div_scalar(batch.len() as f64);
    Ok((
        loss::LossOutput {
            loss,
            stats: LossStats::weighted_mean(&parts),
        },
        tb.cells(),
    ))
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
    /// Prepared pairs or rating groups.
    pub data: TrainData,
    /// Optimiser steps done.
    pub step: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
}

impl Trainer {
    /// The pairs of optimiser step `step` (0-based), in order.
    pub fn step_pairs(&self, step: usize) -> Vec<usize> {
        let n = self.data.len();
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
            let (out, t) = match &self.data {
                TrainData::Pairs(pairs) => {
                    let batch: Vec<&PreparedPair> = chunk.iter().map(|&i| &pairs[i]).collect();
                    micro_batch_loss(&self.decoder, &self.adapter, &self.run.loss, &batch)?
                }
                TrainData::Groups(groups) => {
                    let batch: Vec<&RatingGroup> = chunk.iter().map(|&i| &groups[i]).collect();
                    group_batch_loss(&self.decoder, Some(&self.adapter), &self.run.loss, &batch)?
                }
            };
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
        let spe = steps_per_epoch(self.data.len(), &self.run);
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
