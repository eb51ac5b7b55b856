//! Direct-mode counterfactual consistency: the training signal that sees what the guard measures.
//!
//! The guard reads the rating distribution right after the answer prefix (`Rating:`). For one
//! example, a [`RatingGroup`] holds the neutral prompt and K prompts that add one spurious
//! context each, every prompt followed by every label of the scale. One packed forward pass
//! ([`crate::model::TokenBatch::packed`]: the transcript once, each prompt tail once, each label
//! once) gives the summed log-prob `lp[j][k]` of label `k` after prompt `j`; renormalised over
//! the labels, exactly as the library scores, it is the distribution `q_j`.
//!
//! The loss of one group ([`group_loss`]):
//! - consistency `= mean_{j≥1} KL(sg(q_0) ‖ q_j)`: each context's distribution is pulled toward
//!   the neutral one, which is held fixed (stop-gradient) so the context cannot drag it along;
//! - SFT `= −mean_{j≥0} lp[j][gold]`: the gold label's log-prob before renormalising, after the
//!   neutral and every context prompt (it also teaches the answer format: label mass);
//! - `loss = consistency_weight · consistency + sft_weight · SFT`.

use crate::data::Example;
use crate::error::{Error, Result};
use crate::loss::read_f32;
use crate::model::ScoredSequence;
use crate::pairs::contexts::example_seed;
use burn::tensor::activation::log_softmax;
use burn::tensor::Tensor;
use debias_guard::guard::{Probe, ProbeCatalog, ProbeKind, SplitSelection};
use debias_guard::{Engine, PromptBuilder, Rubric, Transcript};
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most prompts (neutral + contexts) one group may hold.
pub const MAX_GROUP_PROMPTS: usize = 256;

/// How many `train` wordings each example gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextDraw {
    /// Wordings drawn per category (pole and wording at random, both poles equally likely).
    pub per_category: usize,
    /// Control sentences drawn per example (from the `train` controls).
    pub controls: usize,
    /// Seed of the draw (mixed with each example's id).
    pub seed: u64,
}

impl ContextDraw {
    /// The `train` wordings of one example: `per_category` of every category, then `controls`
    /// control sentences, each drawn without replacement.
    pub fn pick(&self, catalog: &ProbeCatalog, example_id: &str) -> Vec<Probe> {
        let mut by_category: BTreeMap<String, Vec<Probe>> = BTreeMap::new();
        let mut controls = Vec::new();
        for p in catalog.probes(SplitSelection::Train) {
            match &p.kind {
                ProbeKind::Category { category, .. } => {
                    by_category.entry(category.clone()).or_default().push(p)
                }
                ProbeKind::Control => controls.push(p),
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(example_seed(self.seed, example_id));
        let mut picked = Vec::new();
        for wordings in by_category.values() {
            picked.extend(
                wordings
                    .choose_multiple(&mut rng, self.per_category)
                    .cloned(),
            );
        }
        picked.extend(controls.choose_multiple(&mut rng, self.controls).cloned());
        picked
    }
}

/// One example in direct mode: the neutral prompt and its context prompts, each followed by
/// every label.
#[derive(Debug, Clone)]
pub struct RatingGroup {
    /// Id of the example.
    pub example_id: String,
    /// `prompts × labels` sequences, prompt-major; prompt 0 is the neutral one.
    pub sequences: Vec<ScoredSequence>,
    /// Number of prompts (1 neutral + contexts).
    pub prompts: usize,
    /// Number of labels of the scale.
    pub labels: usize,
    /// Index of the gold label.
    pub gold_index: usize,
    /// Numeric value of each label.
    pub values: Vec<f64>,
    /// Probe id of each context prompt (prompt `j` has `context_ids[j - 1]`).
    pub context_ids: Vec<String>,
}

/// Builds the rating group of every example with the library's one prompt builder and the
/// model's chat template (`engine` renders and tokenizes; its weights are not used).
pub fn build_groups(
    engine: &Engine,
    builder: &PromptBuilder,
    rubric: &Rubric,
    catalog: &ProbeCatalog,
    examples: &[Example],
    draw: &ContextDraw,
) -> Result<Vec<RatingGroup>> {
    examples
        .iter()
        .map(|ex| {
            let named = |m: String| Error::Config(format!("example `{}`: {m}", ex.id));
            let item = rubric
                .item(&ex.item)
                .ok_or_else(|| named(format!("rubric item `{}` is not in the rubric", ex.item)))?;
            let transcript = Transcript::new(&ex.transcript).map_err(|e| named(e.to_string()))?;
            let contexts = draw.pick(catalog, &ex.id);
            if contexts.is_empty() || contexts.len() + 1 > MAX_GROUP_PROMPTS {
                return Err(named(format!(
                    "{} contexts drawn; 1..{MAX_GROUP_PROMPTS} needed",
                    contexts.len()
                )));
            }
            let values = item.label_values();
            let gold_index = values
                .iter()
                .position(|&v| v == f64::from(ex.gold))
                .ok_or_else(|| named(format!("gold {} is not a label of the scale", ex.gold)))?;
            let texts = std::iter::once(None).chain(contexts.iter().map(|p| Some(p.text.as_str())));
            let mut sequences = Vec::with_capacity((contexts.len() + 1) * values.len());
            for context in texts {
                let prompt = engine.rubric_prompt(builder, &transcript, item, context, false)?;
                for label in &prompt.labels {
                    let answer = format!("{}{label}", prompt.separator);
                    sequences.push(
                        ScoredSequence::from_texts(engine.tokenizer(), &prompt.text, &answer)
                            .map_err(|e| named(e.to_string()))?,
                    );
                }
            }
            Ok(RatingGroup {
                example_id: ex.id.clone(),
                prompts: contexts.len() + 1,
                labels: values.len(),
                gold_index,
                values,
                context_ids: contexts.into_iter().map(|p| p.id).collect(),
                sequences,
            })
        })
        .collect()
}

/// Hyper-parameters of the consistency objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConsistencyWeights {
    /// Weight of the KL term.
    pub consistency: f64,
    /// Weight of the gold-label SFT term.
    pub sft: f64,
}

/// Summaries of one group's loss (host values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupStats {
    /// Mean KL(q_0 ‖ q_j) over the context prompts.
    pub consistency: f64,
    /// Mean negative log-prob of the gold label over all prompts.
    pub sft: f64,
    /// Mean |E_j − E_0| over the context prompts (scale points).
    pub context_shift: f64,
    /// Mean label mass over all prompts (0–1).
    pub label_mass: f64,
    /// Neutral expected score.
    pub neutral_expected: f64,
}

/// The loss of one group from its summed label log-probs `lp` (`[prompts · labels]`,
/// prompt-major, differentiable) and its summaries.
pub fn group_loss(
    lp: Tensor<1>,
    group: &RatingGroup,
    weights: &ConsistencyWeights,
) -> Result<(Tensor<1>, GroupStats)> {
    let (p, l) = (group.prompts, group.labels);
    if lp.dims()[0] != p * l || p < 2 {
        return Err(Error::Model(format!(
            "group `{}`: {} label log-probs for {p} prompts × {l} labels (2+ prompts needed)",
            group.example_id,
            lp.dims()[0]
        )));
    }
    let lp = lp.reshape([p, l]);
    let logq = log_softmax(lp.clone(), 1);
    let logq0 = logq.clone().narrow(0, 0, 1).detach();
    let q0 = logq0.clone().exp();
    let kl = (q0 * (logq0 - logq.clone().narrow(0, 1, p - 1)))
        .sum_dim(1)
        .mean();
    let sft = lp.clone().narrow(1, group.gold_index, 1).mean().neg();
    let loss = kl.clone().mul_scalar(weights.consistency) + sft.clone().mul_scalar(weights.sft);
    let stats = summarise(
        &read_f32(&lp)?,
        group,
        read_f32(&kl)?[0],
        read_f32(&sft)?[0],
    );
    Ok((loss, stats))
}

/// Host-side summaries of one group from its label log-probs.
fn summarise(lp: &[f32], group: &RatingGroup, kl: f32, sft: f32) -> GroupStats {
    let rows: Vec<(f64, f64)> = lp
        .chunks_exact(group.labels)
        .map(|row| expected_and_mass(row, &group.values))
        .collect();
    let e0 = rows[0].0;
    let shifts = rows[1..].iter().map(|(e, _)| (e - e0).abs());
    GroupStats {
        consistency: f64::from(kl),
        sft: f64::from(sft),
        context_shift: shifts.sum::<f64>() / (rows.len() - 1) as f64,
        label_mass: rows.iter().map(|r| r.1).sum::<f64>() / rows.len() as f64,
        neutral_expected: e0,
    }
}

/// Expected score of the renormalised distribution and the label mass of one prompt's label
/// log-probs.
pub fn expected_and_mass(lp: &[f32], values: &[f64]) -> (f64, f64) {
    let max = lp.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let w: Vec<f64> = lp.iter().map(|&x| f64::from(x - max).exp()).collect();
    let total: f64 = w.iter().sum();
    let expected = w.iter().zip(values).map(|(w, v)| w * v).sum::<f64>() / total;
    let mass = total * f64::from(max).exp();
    (expected, mass)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn group(prompts: usize, labels: usize, gold_index: usize) -> RatingGroup {
        RatingGroup {
            example_id: "e".into(),
            sequences: Vec::new(),
            prompts,
            labels,
            gold_index,
            values: (1..=labels).map(|v| v as f64).collect(),
            context_ids: (1..prompts).map(|j| format!("c{j}")).collect(),
        }
    }

    /// Label log-probs of 3 prompts × 3 labels (mass below 1, as after a real prompt).
    const LP: [f32; 9] = [-0.5, -1.5, -2.5, -1.0, -1.0, -2.0, -3.0, -0.7, -0.9];

    fn by_hand(weights: &ConsistencyWeights) -> (f64, f64, f64, f64) {
        let rows: Vec<Vec<f64>> = LP
            .chunks(3)
            .map(|r| r.iter().map(|&x| f64::from(x)).collect())
            .collect();
        let norm = |r: &[f64]| {
            let z: f64 = r.iter().map(|x| x.exp()).sum();
            r.iter().map(|x| x.exp() / z).collect::<Vec<f64>>()
        };
        let q: Vec<Vec<f64>> = rows.iter().map(|r| norm(r)).collect();
        let kl = |p: &[f64], r: &[f64]| p.iter().zip(r).map(|(a, b)| a * (a / b).ln()).sum::<f64>();
        let consistency = (kl(&q[0], &q[1]) + kl(&q[0], &q[2])) / 2.0;
        let sft = -(rows[0][1] + rows[1][1] + rows[2][1]) / 3.0;
        let e = |q: &[f64]| q[0] + 2.0 * q[1] + 3.0 * q[2];
        let shift = ((e(&q[1]) - e(&q[0])).abs() + (e(&q[2]) - e(&q[0])).abs()) / 2.0;
        (
            weights.consistency * consistency + weights.sft * sft,
            consistency,
            sft,
            shift,
        )
    }

    #[test]
    fn group_loss_matches_the_formula_by_hand() {
        let weights = ConsistencyWeights {
            consistency: 1.0,
            sft: 0.2,
        };
        let lp = Tensor::<1>::from_data(TensorData::new(LP.to_vec(), [9]), &Device::flex());
        let (loss, stats) = group_loss(lp, &group(3, 3, 1), &weights).unwrap();
        let (total, consistency, sft, shift) = by_hand(&weights);
        assert!((f64::from(read_f32(&loss).unwrap()[0]) - total).abs() < 1e-5);
        assert!((stats.consistency - consistency).abs() < 1e-5, "{stats:?}");
        assert!((stats.sft - sft).abs() < 1e-5);
        assert!((stats.context_shift - shift).abs() < 1e-5);
        let mass0: f64 = LP[..3].iter().map(|&x| f64::from(x).exp()).sum();
        assert!(stats.label_mass < 1.0 && stats.label_mass > 0.0);
        assert!((expected_and_mass(&LP[..3], &[1.0, 2.0, 3.0]).1 - mass0).abs() < 1e-6);
    }

    #[test]
    fn the_neutral_distribution_is_held_fixed() {
        let weights = ConsistencyWeights {
            consistency: 1.0,
            sft: 0.0,
        };
        let device = Device::flex().autodiff();
        let lp = Tensor::<1>::from_data(TensorData::new(LP.to_vec(), [9]), &device).require_grad();
        let (loss, _) = group_loss(lp.clone(), &group(3, 3, 0), &weights).unwrap();
        let grads = loss.backward();
        let g = read_f32(&lp.grad(&grads).unwrap()).unwrap();
        assert!(g[..3].iter().all(|&x| x == 0.0), "neutral row moved: {g:?}");
        assert!(
            g[3..].iter().any(|&x| x.abs() > 1e-3),
            "context rows fixed: {g:?}"
        );
    }

    #[test]
    fn a_group_without_contexts_is_an_error() {
        let weights = ConsistencyWeights {
            consistency: 1.0,
            sft: 1.0,
        };
        let lp = Tensor::<1>::from_data(TensorData::new(vec![-1.0f32; 3], [3]), &Device::flex());
        assert!(group_loss(lp, &group(1, 3, 0), &weights).is_err());
        let lp = Tensor::<1>::from_data(TensorData::new(LP.to_vec(), [9]), &Device::flex());
        assert!(group_loss(lp, &group(2, 3, 0), &weights).is_err());
    }

    #[test]
    fn every_category_gets_its_wordings_and_the_draw_is_stable() {
        let catalog = ProbeCatalog::builtin();
        let draw = ContextDraw {
            per_category: 1,
            controls: 1,
            seed: 3,
        };
        let a = draw.pick(&catalog, "ex-1");
        assert_eq!(a, draw.pick(&catalog, "ex-1"));
        let categories: std::collections::BTreeSet<_> = a
            .iter()
            .filter_map(|p| match &p.kind {
                ProbeKind::Category { category, .. } => Some(category.clone()),
                ProbeKind::Control => None,
            })
            .collect();
        assert_eq!(categories.len(), a.len() - 1);
        assert!(a
            .iter()
            .all(|p| p.split == debias_guard::guard::Split::Train));
        assert!(matches!(a.last().unwrap().kind, ProbeKind::Control));
    }
}
