//! The Debiasing-DPO objective on burn tensors: DPO sigmoid loss against a frozen reference plus a
//! weighted SFT negative log-likelihood of the gold answer, and its variants.
//!
//! With per-pair summed log-probs `pc`, `pr` (policy, chosen/rejected) and `rc`, `rr` (reference):
//! `dpo = mean_b(-log σ(β · ((pc − rc) − (pr − rr))))`, `sft = −mean_b(mean_t log p(gold token))`,
//! `loss = dpo_weight · dpo + sft_weight · sft`. Rewards are `β · (policy − reference)`; the
//! reward margin is `chosen reward − rejected reward` and the reward accuracy the fraction of
//! pairs whose margin is positive (TRL's definitions).

use crate::data::PreferencePair;
use crate::error::{Error, Result};
use burn::tensor::activation::log_sigmoid;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Which training objective a run optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// Debiasing-DPO (default): DPO on (context-free, context-swayed) answers + SFT on the gold rating.
    Debias,
    /// The DPO term alone (no SFT anchor).
    DpoOnly,
    /// The SFT term alone (gold rating given the neutral prompt; no preference pairs needed).
    SftOnly,
    /// DPO + SFT where chosen is whichever answer's rating is closer to the gold rating.
    GtDpo,
    /// DPO + SFT where chosen is whichever answer's rating is closer to the model's own
    /// context-free (neutral) rating.
    SelfScoreDpo,
    /// Direct-mode counterfactual consistency (no pairs): KL of each context prompt's rating
    /// distribution to the stop-gradient neutral one, plus SFT of the gold label after every
    /// prompt ([`crate::consistency`]).
    Consistency,
}

impl Objective {
    /// Whether the DPO term is part of the loss.
    pub fn uses_dpo(self) -> bool {
        !matches!(self, Objective::SftOnly | Objective::Consistency)
    }

    /// Whether the objective trains on preference pairs (else on examples, in rating groups).
    pub fn needs_pairs(self) -> bool {
        !matches!(self, Objective::Consistency)
    }

    /// Whether the SFT term is part of the loss.
    pub fn uses_sft(self) -> bool {
        !matches!(self, Objective::DpoOnly)
    }

    /// Default SFT weight: 0.1 next to DPO, 1 when SFT is the whole loss, 0 without SFT.
    pub fn default_sft_weight(self) -> f64 {
        match self {
            Objective::SftOnly => 1.0,
            Objective::DpoOnly => 0.0,
            Objective::Consistency => 0.2,
            _ => 0.1,
        }
    }
}

/// Hyper-parameters of the loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    /// Which terms are used.
    pub objective: Objective,
    /// DPO temperature β (0.1 in the paper).
    pub beta: f64,
    /// Weight of the SFT term (0.1 in the paper).
    pub sft_weight: f64,
    /// Weight of the consistency (KL) term of the `consistency` objective.
    #[serde(default = "default_consistency_weight")]
    pub consistency_weight: f64,
}

fn default_consistency_weight() -> f64 {
    1.0
}

impl LossConfig {
    /// The objective with β 0.1 and its default SFT weight.
    pub fn new(objective: Objective) -> Self {
        Self {
            objective,
            beta: 0.1,
            sft_weight: objective.default_sft_weight(),
            consistency_weight: default_consistency_weight(),
        }
    }

    /// Checks β > 0 and a finite, non-negative SFT weight (positive when SFT is the whole loss).
    pub fn validate(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(Error::Config(format!(
                "beta {} must be positive",
                self.beta
            )));
        }
        if !(self.sft_weight.is_finite() && self.sft_weight >= 0.0) {
            return Err(Error::Config(format!(
                "SFT weight {} must be finite and >= 0",
                self.sft_weight
            )));
        }
        if !(self.consistency_weight.is_finite() && self.consistency_weight >= 0.0) {
            return Err(Error::Config(format!(
                "consistency weight {} must be finite and >= 0",
                self.consistency_weight
            )));
        }
        if self.objective == Objective::Consistency
            && self.consistency_weight == 0.0
            && self.sft_weight == 0.0
        {
            return Err(Error::Config(
                "consistency needs a positive consistency or SFT weight".into(),
            ));
        }
        if self.objective == Objective::SftOnly && self.sft_weight == 0.0 {
            return Err(Error::Config("sft-only needs a positive SFT weight".into()));
        }
        Ok(())
    }
}

/// Summed response log-probs of one micro-batch of pairs, each `[batch]`.
#[derive(Debug, Clone)]
pub struct PairLogProbs {
    /// Summed log-prob of the chosen answer under the policy (differentiable).
    pub policy_chosen: Tensor<1>,
    /// Summed log-prob of the rejected answer under the policy (differentiable).
    pub policy_rejected: Tensor<1>,
    /// Summed log-prob of the chosen answer under the reference (constant).
    pub reference_chosen: Tensor<1>,
    /// Summed log-prob of the rejected answer under the reference (constant).
    pub reference_rejected: Tensor<1>,
}

/// What one micro-batch contributes to the loss; a term the objective does not use may be `None`.
#[derive(Debug, Clone)]
pub struct LossInputs {
    /// Log-probs for the DPO term (required unless the objective is `sft-only`).
    pub pairs: Option<PairLogProbs>,
    /// Mean token log-prob of the gold answer given the neutral prompt under the policy, `[batch]`
    /// (required unless the objective is `dpo-only`).
    pub sft_token_mean: Option<Tensor<1>>,
}

/// Scalar summaries of one loss evaluation (means over the batch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LossStats {
    /// Total loss.
    pub loss: f64,
    /// DPO term (before weighting).
    pub dpo_loss: f64,
    /// SFT term (before weighting).
    pub sft_loss: f64,
    /// Mean of `chosen_reward − rejected_reward`.
    pub reward_margin: f64,
    /// Fraction of pairs with a positive margin.
    pub reward_accuracy: f64,
    /// Mean `β (pc − rc)`.
    pub chosen_reward: f64,
    /// Mean `β (pr − rr)`.
    pub rejected_reward: f64,
    /// Mean policy log-prob of the chosen answers.
    pub chosen_logp: f64,
    /// Mean policy log-prob of the rejected answers.
    pub rejected_logp: f64,
    /// Consistency term (mean KL of context to neutral rating distributions), before weighting.
    #[serde(default)]
    pub consistency_loss: f64,
    /// Mean |Δ expected score| between context and neutral prompts (direct mode, scale points).
    #[serde(default)]
    pub context_shift: f64,
    /// Mean probability mass on the labels after the prompts (direct mode, 0–1).
    #[serde(default)]
    pub label_mass: f64,
}

impl LossStats {
    /// Mean of several summaries, each weighted by its count (pairs or groups).
    pub fn weighted_mean(parts: &[(LossStats, usize)]) -> Self {
        let n: usize = parts.iter().map(|(_, k)| k).sum();
        let avg = |f: fn(&LossStats) -> f64| {
            parts.iter().map(|(s, k)| f(s) * *k as f64).sum::<f64>() / n.max(1) as f64
        };
        Self {
            loss: avg(|s| s.loss),
            dpo_loss: avg(|s| s.dpo_loss),
            sft_loss: avg(|s| s.sft_loss),
            reward_margin: avg(|s| s.reward_margin),
            reward_accuracy: avg(|s| s.reward_accuracy),
            chosen_reward: avg(|s| s.chosen_reward),
            rejected_reward: avg(|s| s.rejected_reward),
            chosen_logp: avg(|s| s.chosen_logp),
            rejected_logp: avg(|s| s.rejected_logp),
            consistency_loss: avg(|s| s.consistency_loss),
            context_shift: avg(|s| s.context_shift),
            label_mass: avg(|s| s.label_mass),
        }
    }
}

/// The loss tensor to back-propagate and its summaries.
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// Scalar loss, `[1]`.
    pub loss: Tensor<1>,
    /// Its summaries.
    pub stats: LossStats,
}

/// Copies a tensor to the host as `f32` values.
pub fn read_f32<const D: usize>(t: &Tensor<D>) -> Result<Vec<f32>> {
    t.try_to_vec_as::<f32>()
        .map_err(|e| Error::Model(format!("reading a tensor back failed: {e:?}")))
}

fn mean(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64
}

/// Evaluates the loss of one micro-batch.
pub fn compute(config: &LossConfig, inputs: LossInputs) -> Result<LossOutput> {
    let mut stats = LossStats::default();
    let mut loss: Option<Tensor<1>> = None;
    let pair_batch = inputs.pairs.as_ref().map(|p| p.policy_chosen.dims()[0]);
    if config.objective.uses_dpo() {
        let p = inputs
            .pairs
            .ok_or_else(|| Error::Model("the DPO term needs pair log-probs".into()))?;
        let b = p.policy_chosen.dims()[0];
        for (name, t) in [
            ("policy_rejected", &p.policy_rejected),
            ("reference_chosen", &p.reference_chosen),
            ("reference_rejected", &p.reference_rejected),
        ] {
            if t.dims()[0] != b {
                return Err(Error::Model(format!(
                    "loss input `{name}` has {} entries, policy_chosen has {b}",
                    t.dims()[0]
                )));
            }
        }
        let beta = config.beta;
        let chosen_reward = (p.policy_chosen.clone() - p.reference_chosen).mul_scalar(beta);
        let rejected_reward = (p.policy_rejected.clone() - p.reference_rejected).mul_scalar(beta);
        let margin = chosen_reward.clone() - rejected_reward.clone();
        let dpo = log_sigmoid(margin.clone()).neg().mean();
        let margins = read_f32(&margin)?;
        stats.dpo_loss = mean(&read_f32(&dpo)?);
        stats.reward_margin = mean(&margins);
        stats.reward_accuracy =
            margins.iter().filter(|&&m| m > 0.0).count() as f64 / margins.len().max(1) as f64;
        stats.chosen_reward = mean(&read_f32(&chosen_reward)?);
        stats.rejected_reward = mean(&read_f32(&rejected_reward)?);
        stats.chosen_logp = mean(&read_f32(&p.policy_chosen)?);
        stats.rejected_logp = mean(&read_f32(&p.policy_rejected)?);
        loss = Some(dpo);
    }
    if config.objective.uses_sft() {
        let t = inputs
            .sft_token_mean
            .ok_or_else(|| Error::Model("the SFT term needs gold-answer log-probs".into()))?;
        if let Some(b) = pair_batch.filter(|&b| b != t.dims()[0]) {
            return Err(Error::Model(format!(
                "loss input `sft_token_mean` has {} entries, policy_chosen has {b}",
                t.dims()[0]
            )));
        }
        let sft = t.mean().neg();
        stats.sft_loss = mean(&read_f32(&sft)?);
        let weighted = sft.mul_scalar(config.sft_weight);
        loss = Some(match loss {
            Some(l) => l + weighted,
            None => weighted,
        });
    }
    let loss = loss.ok_or_else(|| Error::Config("the objective has no loss term".into()))?;
    stats.loss = mean(&read_f32(&loss)?);
    Ok(LossOutput { loss, stats })
}

/// The `(chosen, rejected)` texts an objective trains on for `pair`.
///
/// - `debias`, `dpo-only`, `sft-only`: the pair as built (context-free answer preferred).
/// - `gt-dpo`: the answer whose rating is closer to the gold rating is preferred.
/// - `self-score-dpo`: the answer whose rating is closer to the model's own context-free
///   expected rating (`neutral_expected`) is preferred.
///
/// An answer's rating is the pair's `neutral_rating` / `biased_rating`, or else the last
/// `Rating: N` in its text. Ties keep the pair's order. A pair without the needed ratings is an
/// error naming it.
pub fn select_answers(objective: Objective, pair: &PreferencePair) -> Result<(&str, &str)> {
    let keep = (pair.chosen.as_str(), pair.rejected.as_str());
    let swap = (pair.rejected.as_str(), pair.chosen.as_str());
    let missing = |what: &str| Error::Config(format!("pair `{}` has no {what}", pair.id));
    let target = match objective {
        Objective::GtDpo => f64::from(pair.gold),
        Objective::SelfScoreDpo => pair
            .neutral_expected
            .ok_or_else(|| missing("`neutral_expected` (needed by self-score-dpo)"))?,
        _ => return Ok(keep),
    };
    let neutral = pair
        .neutral_rating
        .or_else(|| stated_rating(&pair.chosen))
        .ok_or_else(|| missing("rating in `chosen`"))?;
    let biased = pair
        .biased_rating
        .or_else(|| stated_rating(&pair.rejected))
        .ok_or_else(|| missing("rating in `rejected`"))?;
    let closer_biased = (f64::from(biased) - target).abs() < (f64::from(neutral) - target).abs();
    Ok(if closer_biased { swap } else { keep })
}

/// Reads the rating an answer states: the last `Rating: N` (N in 1..=7) in the text.
pub fn stated_rating(answer: &str) -> Option<u8> {
    answer.rmatch_indices("Rating:").find_map(|(i, m)| {
        let rest = answer[i + m.len()..].trim_start();
        let d = rest.chars().next()?.to_digit(10)?;
        (1..=7).contains(&d).then_some(d as u8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn t(v: &[f32]) -> Tensor<1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Device::flex())
    }

    fn inputs() -> LossInputs {
        LossInputs {
            pairs: Some(PairLogProbs {
                policy_chosen: t(&[-10.0, -20.0]),
                policy_rejected: t(&[-12.0, -18.0]),
                reference_chosen: t(&[-11.0, -20.0]),
                reference_rejected: t(&[-11.0, -19.0]),
            }),
            sft_token_mean: Some(t(&[-0.5, -1.5])),
        }
    }

    #[test]
    fn matches_the_formula_by_hand() {
        let out = compute(&LossConfig::new(Objective::Debias), inputs()).unwrap();
        // margins: 0.1*((1) - (-1)) = 0.2 ; 0.1*((0) - (1)) = -0.1
        let ls = |x: f64| -(1.0 + (-x).exp()).ln();
        let dpo = -(ls(0.2) + ls(-0.1)) / 2.0;
        assert!((out.stats.dpo_loss - dpo).abs() < 1e-6);
        assert!((out.stats.sft_loss - 1.0).abs() < 1e-6);
        assert!((out.stats.loss - (dpo + 0.1)).abs() < 1e-6);
        assert!((out.stats.reward_margin - 0.05).abs() < 1e-6);
        assert_eq!(out.stats.reward_accuracy, 0.5);
        let only = compute(&LossConfig::new(Objective::DpoOnly), inputs()).unwrap();
        assert!((only.stats.loss - dpo).abs() < 1e-6);
        let sft = compute(&LossConfig::new(Objective::SftOnly), inputs()).unwrap();
        assert!((sft.stats.loss - 1.0).abs() < 1e-6);
    }

    #[test]
    fn mismatched_batch_sizes_are_errors() {
        let mut i = inputs();
        i.sft_token_mean = Some(t(&[-1.0]));
        assert!(compute(&LossConfig::new(Objective::Debias), i).is_err());
        let mut i = inputs();
        i.pairs = None;
        assert!(compute(&LossConfig::new(Objective::Debias), i.clone()).is_err());
        assert!(compute(&LossConfig::new(Objective::SftOnly), i).is_ok());
    }

    #[test]
    fn answer_selection_follows_the_objective() {
        let pair = PreferencePair {
            id: "p".into(),
            example_id: "e".into(),
            context_id: "c".into(),
            prompt: "P".into(),
            chosen: "Because... Rating: 3".into(),
            rejected: "Because... Rating: 6".into(),
            neutral_prompt: "N".into(),
            gold: 6,
            neutral_rating: None,
            biased_rating: None,
            neutral_expected: Some(3.4),
            biased_expected: None,
        };
        let keep = (pair.chosen.as_str(), pair.rejected.as_str());
        let swap = (pair.rejected.as_str(), pair.chosen.as_str());
        assert_eq!(select_answers(Objective::Debias, &pair).unwrap(), keep);
        assert_eq!(select_answers(Objective::GtDpo, &pair).unwrap(), swap);
        assert_eq!(
            select_answers(Objective::SelfScoreDpo, &pair).unwrap(),
            keep
        );
        let mut bare = pair.clone();
        bare.neutral_expected = None;
        assert!(select_answers(Objective::SelfScoreDpo, &bare).is_err());
        bare.chosen = "no rating".into();
        assert!(select_answers(Objective::GtDpo, &bare).is_err());
        assert_eq!(stated_rating(&pair.rejected), Some(6));
        assert_eq!(stated_rating("Rating: 9"), None);
        assert_eq!(stated_rating("no rating"), None);
    }
}
