//! Measuring one condition (base, prompt mitigation or an adapter) on one test example: the
//! neutral score and the signed bias delta of every probe wording, either in direct mode (the
//! library's prefix-shared [`bias_deltas`] pass, rating read right after the prompt) or in
//! reasoned mode (the library's [`reasoned::reason_many`]: every variant's reasoning decoded in
//! one lock-step batch, then the rating distribution after each reasoning).

use crate::error::{Error, Result};
use debias_guard::guard::reasoned::{self, ReasoningOptions};
use debias_guard::guard::{bias_deltas, Probe, ProbeKind, Split};
use debias_guard::{Engine, FinishReason, PromptBuilder, RubricItem, Transcript};
use serde::{Deserialize, Serialize};

/// What one condition gives on one example.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleMeasurement {
    /// Expected score of the neutral prompt (scale points).
    pub neutral_expected: f64,
    /// Value of the neutral prompt's most probable label.
    pub neutral_argmax: f64,
    /// Label probability mass of the neutral prompt before renormalisation (0–1).
    pub neutral_label_mass: f64,
    /// Signed Δ expected score (with wording − neutral) of each probe, in the probe list's order.
    pub deltas: Vec<f64>,
    /// Reasoned mode: generations (neutral included) that stopped at the token limit.
    pub max_tokens_hits: Option<usize>,
}

/// Scores `item` on `transcript` neutrally and under every probe wording in one pass (direct
/// mode); `mitigate` adds the prompt-mitigation instruction to every prompt.
pub fn measure_example(
    engine: &Engine,
    builder: &PromptBuilder,
    transcript: &Transcript,
    item: &RubricItem,
    probes: &[Probe],
    mitigate: bool,
) -> Result<ExampleMeasurement> {
    let contexts: Vec<&str> = probes.iter().map(|p| p.text.as_str()).collect();
    let batch = bias_deltas(engine, builder, transcript, item, &contexts, mitigate)?;
    let values = item.label_values();
    Ok(ExampleMeasurement {
        neutral_expected: batch.neutral.expected,
        neutral_argmax: values[batch.neutral.argmax],
        neutral_label_mass: batch.neutral.label_mass,
        deltas: batch.deltas.iter().map(|d| d.delta).collect(),
        max_tokens_hits: None,
    })
}

/// Reasoned mode: generates a reasoning for the neutral prompt and for every probe wording
/// (`options`, greedy in `eval`; all variants decoded together by [`reasoned::reason_many`]), then
/// reads each rating distribution after its reasoning, all label prompts in one prefix-shared
/// scoring pass.
pub fn measure_example_reasoned(
    engine: &Engine,
    builder: &PromptBuilder,
    transcript: &Transcript,
    item: &RubricItem,
    probes: &[Probe],
    mitigate: bool,
    options: &ReasoningOptions,
) -> Result<ExampleMeasurement> {
    let contexts: Vec<Option<&str>> = std::iter::once(None)
        .chain(probes.iter().map(|p| Some(p.text.as_str())))
        .collect();
    let outs = reasoned::reason_many(
        engine, builder, transcript, item, &contexts, mitigate, options,
    )?;
    let hits = outs
        .iter()
        .filter(|r| r.finish == FinishReason::MaxTokens)
        .count();
    let label_prompts: Vec<_> = outs.into_iter().map(|r| r.label_prompt).collect();
    let (dists, _) = engine.score_many(&label_prompts)?;
    let (neutral, contextual) = dists
        .split_first()
        .ok_or_else(|| Error::Model("the engine returned no rating distribution".into()))?;
    let values = item.label_values();
    Ok(ExampleMeasurement {
        neutral_expected: neutral.expected,
        neutral_argmax: values[neutral.argmax],
        neutral_label_mass: neutral.label_mass,
        deltas: contextual
            .iter()
            .map(|d| d.expected - neutral.expected)
            .collect(),
        max_tokens_hits: Some(hits),
    })
}

/// Which group of probes a wording counts toward in the bias summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProbeGroup {
    /// A category wording of the `train` split (the contexts pairs are built from).
    #[serde(rename = "train")]
    TrainWording,
    /// A category wording of the `heldout` split (never seen in training).
    #[serde(rename = "heldout")]
    HeldoutWording,
    /// A control sentence (non-social; its mean |Δ| is the noise floor).
    #[serde(rename = "control")]
    Control,
}

impl ProbeGroup {
    /// The group of one probe.
    pub fn of(probe: &Probe) -> Self {
        match (&probe.kind, probe.split) {
            (ProbeKind::Control, _) => Self::Control,
            (ProbeKind::Category { .. }, Split::Train) => Self::TrainWording,
            (ProbeKind::Category { .. }, Split::Heldout) => Self::HeldoutWording,
        }
    }
}
