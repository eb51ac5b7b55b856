//! Measuring one condition (base, prompt mitigation or an adapter) on one test example: the
//! neutral score and the bias delta of every probe wording, from the library's prefix-shared
//! [`bias_deltas`] pass.

use crate::error::Result;
use debias_guard::guard::{bias_deltas, Probe, ProbeKind, Split};
use debias_guard::{Engine, PromptBuilder, RubricItem, Transcript};

/// What one condition gives on one example.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleMeasurement {
    /// Expected score of the neutral prompt (scale points).
    pub neutral_expected: f64,
    /// Value of the neutral prompt's most probable label.
    pub neutral_argmax: f64,
    /// Label probability mass of the neutral prompt before renormalisation (0–1).
    pub neutral_label_mass: f64,
    /// Gold rating of the example.
    pub gold: f64,
    /// |Δ expected score| of each probe, in the order of the probe list given.
    pub abs_deltas: Vec<f64>,
}

/// Scores `item` on `transcript` neutrally and under every probe wording in one pass;
/// `mitigate` adds the prompt-mitigation instruction to every prompt.
pub fn measure_example(
    engine: &Engine,
    builder: &PromptBuilder,
    transcript: &Transcript,
    item: &RubricItem,
    probes: &[Probe],
    mitigate: bool,
    gold: f64,
) -> Result<ExampleMeasurement> {
    let contexts: Vec<&str> = probes.iter().map(|p| p.text.as_str()).collect();
    let batch = bias_deltas(engine, builder, transcript, item, &contexts, mitigate)?;
    let values = item.label_values();
    Ok(ExampleMeasurement {
        neutral_expected: batch.neutral.expected,
        neutral_argmax: values[batch.neutral.argmax],
        neutral_label_mass: batch.neutral.label_mass,
        gold,
        abs_deltas: batch.deltas.iter().map(|d| d.abs_delta).collect(),
    })
}

/// Which group of probes a wording counts toward in the bias summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeGroup {
    /// A category wording of the `train` split (the contexts pairs are built from).
    TrainWording,
    /// A category wording of the `heldout` split (never seen in training).
    HeldoutWording,
    /// A control sentence (non-social; its mean |Δ| is the noise floor).
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
