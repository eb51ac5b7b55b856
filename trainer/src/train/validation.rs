//! Validation while training: the direct-mode context shift on transcripts that are not trained
//! on, measured with the current adapter; the run keeps the adapter with the smallest shift.

use crate::consistency::{group_loss, ConsistencyWeights, RatingGroup};
use crate::error::Result;
use crate::model::{token_logprobs, Decoder, LoraAdapter, ScoredSequence, TokenBatch};
use burn::module::Module;
use serde::{Deserialize, Serialize};

/// One validation measurement (means over the validation groups).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValidationPoint {
    /// Optimiser steps done when it was measured (0 = the base model).
    pub step: usize,
    /// Mean |E(context) − E(neutral)| over every context prompt (scale points); the criterion.
    pub context_shift: f64,
    /// Mean |E(neutral) − gold| (scale points).
    pub mae: f64,
    /// Mean label mass over all prompts (0–1).
    pub label_mass: f64,
}

/// Measures `groups` with `adapter` (or the base model), `chunk` groups per forward pass.
pub fn measure(
    decoder: &Decoder,
    adapter: Option<&LoraAdapter>,
    groups: &[RatingGroup],
    chunk: usize,
    step: usize,
) -> Result<ValidationPoint> {
    let weights = ConsistencyWeights {
        consistency: 1.0,
        sft: 1.0,
    };
    // Parameters that require no gradient: the forward passes record no autodiff graph.
    let frozen = adapter.map(|a| a.clone().no_grad());
    let (mut shift, mut mae, mut mass) = (0.0, 0.0, 0.0);
    for part in groups.chunks(chunk.max(1)) {
        let rows: Vec<&[ScoredSequence]> = part.iter().map(|g| g.sequences.as_slice()).collect();
        let batch = TokenBatch::packed(&rows, decoder.config())?;
        let sums = token_logprobs(decoder, &batch, frozen.as_ref())?
            .per_sequence()
            .sum
            .detach();
        let mut offset = 0;
        for group in part {
            let n = group.sequences.len();
            let (_, s) = group_loss(sums.clone().narrow(0, offset, n), group, &weights)?;
            offset += n;
            shift += s.context_shift;
            mass += s.label_mass;
            mae += (s.neutral_expected - group.values[group.gold_index]).abs();
        }
    }
    let n = groups.len().max(1) as f64;
    Ok(ValidationPoint {
        step,
        context_shift: shift / n,
        mae: mae / n,
        label_mass: mass / n,
    })
}
