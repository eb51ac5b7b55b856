//! Bias delta: how far one added context moves a rubric score away from the neutral prompt's.
//!
//! Every number compares two label distributions of the same scale: the neutral one (no
//! context) and the contextual one. Scores are in the scale's own units (points on 1–7).

use crate::engine::{Engine, LabelPrompt, ScoreDistribution, TreeStats};
use crate::error::{Error, Result};
use crate::prompt::{PromptBuilder, Transcript};
use crate::rubric::RubricItem;
use serde::{Deserialize, Serialize};

/// One prompt scored on the base model and with an adapter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdapterDelta {
    /// The adapter's name.
    pub adapter: String,
    /// Distribution on the base model.
    pub base: ScoreDistribution,
    /// Distribution with the adapter.
    pub adapted: ScoreDistribution,
    /// How the adapter moved the score (`neutral` = base, `contextual` = adapted).
    pub delta: BiasDelta,
}

/// Scores one prompt on the base model and with adapter `name` (loaded in `engine`), in one
/// call: how much the adapter moves this score.
pub fn adapter_delta(engine: &Engine, prompt: &LabelPrompt, name: &str) -> Result<AdapterDelta> {
    let with_adapter = engine.with_adapter(Some(name))?;
    let base = engine.with_adapter(None)?.score(prompt)?;
    let adapted = with_adapter.score(prompt)?;
    let delta = BiasDelta::between(&base, &adapted, &prompt.values)?;
    Ok(AdapterDelta {
        adapter: name.to_string(),
        base,
        adapted,
        delta,
    })
}

/// The effect of one context on one score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BiasDelta {
    /// Expected score without context (scale points).
    pub neutral_expected: f64,
    /// Expected score with the context (scale points).
    pub contextual_expected: f64,
    /// Signed change of the expected score, contextual − neutral (scale points).
    pub delta: f64,
    /// `|delta|` (scale points).
    pub abs_delta: f64,
    /// Wasserstein-1 (earth mover's) distance between the two label distributions, in scale
    /// points; 0 when the distributions are equal, at most the width of the scale.
    pub wasserstein: f64,
    /// Whether the most probable label differs.
    pub argmax_changed: bool,
    /// Label probability mass of the neutral prompt before renormalisation (0–1).
    pub neutral_label_mass: f64,
    /// Label probability mass of the contextual prompt before renormalisation (0–1).
    pub contextual_label_mass: f64,
}

impl BiasDelta {
    /// Compares two distributions over the same labels with numeric `values` (one per label).
    pub fn between(
        neutral: &ScoreDistribution,
        contextual: &ScoreDistribution,
        values: &[f64],
    ) -> Result<Self> {
        if neutral.labels != contextual.labels
            || neutral.probs.len() != values.len()
            || contextual.probs.len() != values.len()
        {
            return Err(Error::InvalidInput(
                "the two distributions are over different scales".into(),
            ));
        }
        let delta = contextual.expected - neutral.expected;
        Ok(Self {
            neutral_expected: neutral.expected,
            contextual_expected: contextual.expected,
            delta,
            abs_delta: delta.abs(),
            wasserstein: wasserstein1(&neutral.probs, &contextual.probs, values),
            argmax_changed: neutral.argmax != contextual.argmax,
            neutral_label_mass: neutral.label_mass,
            contextual_label_mass: contextual.label_mass,
        })
    }
}

/// Wasserstein-1 distance between two distributions on the same numeric support: the area
/// between their cumulative distribution functions. `values` need not be sorted.
pub fn wasserstein1(p: &[f64], q: &[f64], values: &[f64]) -> f64 {
    let n = values.len().min(p.len()).min(q.len());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let (mut cdf_p, mut cdf_q, mut total) = (0.0, 0.0, 0.0);
    for pair in order.windows(2) {
        cdf_p += p[pair[0]];
        cdf_q += q[pair[0]];
        total += (cdf_p - cdf_q).abs() * (values[pair[1]] - values[pair[0]]);
    }
    total
}

/// The neutral score and the score under each of several contexts, from one prefix-shared pass.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaBatch {
    /// Distribution without context.
    pub neutral: ScoreDistribution,
    /// Distribution under each context, in the order given.
    pub contextual: Vec<ScoreDistribution>,
    /// Delta of each context against `neutral`, in the order given.
    pub deltas: Vec<BiasDelta>,
    /// Work done by the prefix tree (tokens run vs. requested).
    pub stats: TreeStats,
}

/// Scores `item` on `transcript` without context and with each of `contexts`, all in one
/// prefix-shared evaluation, and returns each context's delta. `mitigate` adds the
/// prompt-mitigation instruction to every prompt, the neutral one included.
pub fn bias_deltas(
    engine: &Engine,
    builder: &PromptBuilder,
    transcript: &Transcript,
    item: &RubricItem,
    contexts: &[&str],
    mitigate: bool,
) -> Result<DeltaBatch> {
    let mut prompts = Vec::with_capacity(contexts.len() + 1);
    prompts.push(engine.rubric_prompt(builder, transcript, item, None, mitigate)?);
    for context in contexts {
        prompts.push(engine.rubric_prompt(builder, transcript, item, Some(context), mitigate)?);
    }
    let (mut dists, stats) = engine.score_many(&prompts)?;
    let neutral = dists.remove(0);
    let values = item.label_values();
    let deltas = dists
        .iter()
        .map(|d| BiasDelta::between(&neutral, d, &values))
        .collect::<Result<_>>()?;
    Ok(DeltaBatch {
        neutral,
        contextual: dists,
        deltas,
        stats,
    })
}
