//! Runtime check: score a transcript with the context the host supplies and, in the same
//! prefix-shared pass, without it; report both, their delta and a flag.
//!
//! The flag follows the audit's rule ([`Thresholds`]): `|Δ| ≥ max(abs_threshold, k × floor)`,
//! where the noise floor is how far irrelevant sentences move the same item on the same
//! transcript. [`Calibration`] says where that floor comes from: measured on the fly from
//! control sentences (scored in the same pass, so the transcript is prefilled once), read from
//! a saved audit report, or none at all (the flat `|Δ| ≥ abs_threshold` of earlier versions).

use super::delta::BiasDelta;
use super::probes::{ProbeCatalog, ProbeKind, SplitSelection};
use super::report::{AuditReport, SourceInfo};
use super::thresholds::{Thresholds, DEFAULT_ABS_THRESHOLD, DEFAULT_NOISE_MULTIPLE};
use crate::engine::{Engine, Progress, ScoreDistribution};
use crate::error::{Error, Result};
use crate::prompt::{PromptBuilder, Transcript};
use crate::rubric::RubricItem;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a check's noise floor comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Calibration {
    /// No floor: flag when `|Δ| ≥ abs_threshold` (`k` is not used).
    Flat,
    /// Score these control sentences (irrelevant, non-social) in the same pass and take the
    /// mean of their |Δ| as the floor, as the audit does.
    Controls(Vec<String>),
    /// Floors saved by an audit of the same transcript.
    Saved(SavedFloors),
}

impl Calibration {
    /// The default floor: the built-in catalog's `heldout` control sentences.
    pub fn default_controls() -> Self {
        Self::controls_of(&ProbeCatalog::builtin(), SplitSelection::Heldout)
    }

    /// The control sentences of `catalog` in `split`, for [`Calibration::Controls`].
    pub fn controls_of(catalog: &ProbeCatalog, split: SplitSelection) -> Self {
        Self::Controls(
            catalog
                .probes(split)
                .into_iter()
                .filter(|p| p.kind == ProbeKind::Control)
                .map(|p| p.text)
                .collect(),
        )
    }

    /// The floors of a saved audit report ([`SavedFloors::from_report`]).
    pub fn from_report(report: &AuditReport) -> Self {
        Self::Saved(SavedFloors::from_report(report))
    }

    /// The name written in results: `flat`, `controls` or `saved`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Flat => "flat",
            Self::Controls(_) => "controls",
            Self::Saved(_) => "saved",
        }
    }
}

/// Noise floors an audit measured, per rubric item, for one transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedFloors {
    /// SHA-256 of the normalised transcript the audit scored (a check of another transcript
    /// is refused).
    pub transcript_sha256: String,
    /// Floor per item id, plain prompts (scale points).
    pub plain: BTreeMap<String, f64>,
    /// Floor per item id with the mitigation instruction (empty when the audit did not run it).
    pub mitigated: BTreeMap<String, f64>,
}

impl SavedFloors {
    /// The floors recorded in `report`.
    pub fn from_report(report: &AuditReport) -> Self {
        let mut plain = BTreeMap::new();
        let mut mitigated = BTreeMap::new();
        for item in &report.items {
            plain.insert(item.item_id.clone(), item.plain.noise_floor);
            if let Some(m) = &item.mitigated {
                mitigated.insert(item.item_id.clone(), m.noise_floor);
            }
        }
        Self {
            transcript_sha256: report.transcript.sha256.clone(),
            plain,
            mitigated,
        }
    }

    /// The floor of `item` (with or without the mitigation instruction).
    fn floor(&self, item: &str, mitigate: bool) -> Result<f64> {
        let table = if mitigate {
            &self.mitigated
        } else {
            &self.plain
        };
        table.get(item).copied().ok_or_else(|| {
            Error::InvalidInput(format!(
                "the calibration report has no {}noise floor for item `{item}`; audit that item{}",
                if mitigate { "mitigated " } else { "" },
                if mitigate { " with --mitigate" } else { "" }
            ))
        })
    }
}

/// Options of a runtime check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckOptions {
    /// Smallest |Δ| that is flagged, in scale points (finite, ≥ 0).
    pub abs_threshold: f64,
    /// With a floor: |Δ| must also reach `k × floor` (finite, ≥ 0).
    pub k: f64,
    /// Where the noise floor comes from (default: the built-in catalog's held-out controls).
    pub calibration: Calibration,
    /// Add the mitigation instruction to every prompt.
    pub mitigate: bool,
}

impl Default for CheckOptions {
    /// Calibrated on the built-in catalog's `heldout` controls (4 sentences no shipped adapter
    /// was trained on; they keep the check within ~1.2× of a flat one), audit thresholds.
    fn default() -> Self {
        Self {
            abs_threshold: DEFAULT_ABS_THRESHOLD,
            k: DEFAULT_NOISE_MULTIPLE,
            calibration: Calibration::default_controls(),
            mitigate: false,
        }
    }
}

impl CheckOptions {
    /// The uncalibrated check: flag when `|Δ| ≥ abs_threshold`.
    pub fn flat(abs_threshold: f64) -> Self {
        Self {
            abs_threshold,
            calibration: Calibration::Flat,
            ..Self::default()
        }
    }

    /// The audit thresholds these options stand for (`k` = 0 when flat).
    fn thresholds(&self) -> Result<Thresholds> {
        let k = match self.calibration {
            Calibration::Flat => 0.0,
            _ => self.k,
        };
        Thresholds::new(self.abs_threshold, k)
    }
}

/// Result of one runtime check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The rubric item.
    pub item_id: String,
    /// The context the host supplied (trimmed).
    pub context: String,
    /// The score the host asked for: with the context.
    pub contextual: ScoreDistribution,
    /// The score without the context.
    pub neutral: ScoreDistribution,
    /// Their difference.
    pub delta: BiasDelta,
    /// `delta.abs_delta ≥ flag_threshold`.
    pub flagged: bool,
    /// The absolute threshold of the options (scale points).
    pub abs_threshold: f64,
    /// Where the floor came from: `flat`, `controls` or `saved`.
    pub calibration: String,
    /// Mean |Δ| of the control sentences (scale points; `null` when flat).
    pub noise_floor: Option<f64>,
    /// `max(abs_threshold, k × noise_floor)` (just `abs_threshold` when flat), scale points.
    pub flag_threshold: f64,
}

/// Scores `item` with and without `context` in one pass and flags a large difference.
pub fn check(
    engine: &Engine,
    builder: &PromptBuilder,
    transcript: &Transcript,
    item: &RubricItem,
    context: &str,
    options: &CheckOptions,
) -> Result<CheckResult> {
    Ok(check_items(
        engine,
        builder,
        transcript,
        std::slice::from_ref(item),
        context,
        options,
    )?
    .remove(0))
}

/// [`check`] for several rubric items at once: all prompts (with context, neutral and, when
/// calibrating on controls, one per control sentence, per item) share one prefix-shared pass,
/// so the transcript is prefilled once. Results follow `items`' order.
pub fn check_items(
    engine: &Engine,
    builder: &PromptBuilder,
    transcript: &Transcript,
    items: &[RubricItem],
    context: &str,
    options: &CheckOptions,
) -> Result<Vec<CheckResult>> {
    check_items_with(
        engine,
        builder,
        transcript,
        items,
        context,
        options,
        Progress::NONE,
    )
}

/// [`check_items`], reporting tokens run through the model to `progress` (as
/// [`Engine::score_many_with`]) and stopping with [`Error::Cancelled`] between forward passes
/// when asked to.
pub fn check_items_with(
    engine: &Engine,
    builder: &PromptBuilder,
    transcript: &Transcript,
    items: &[RubricItem],
    context: &str,
    options: &CheckOptions,
    progress: Progress<'_>,
) -> Result<Vec<CheckResult>> {
    let thresholds = options.thresholds()?;
    if items.is_empty() {
        return Err(Error::InvalidInput("no rubric items to check".into()));
    }
    let context = crate::prompt::validate_context(context)?;
    let controls: &[String] = match &options.calibration {
        Calibration::Controls(c) if c.is_empty() => {
            return Err(Error::InvalidInput(
                "calibration on controls needs at least one control sentence".into(),
            ))
        }
        Calibration::Controls(c) => c,
        Calibration::Saved(saved) => {
            let sha = SourceInfo::of_text("", transcript.as_str()).sha256;
            if saved.transcript_sha256 != sha {
                return Err(Error::InvalidInput(
                    "the calibration report audited another transcript; audit this one \
                     (its noise floor depends on the transcript)"
                        .into(),
                ));
            }
            &[]
        }
        Calibration::Flat => &[],
    };
    for c in controls {
        crate::prompt::validate_context(c)?;
    }
    let block = 2 + controls.len();
    let mut prompts = Vec::with_capacity(block * items.len());
    for item in items {
        let mut push = |ctx: Option<&str>| -> Result<()> {
            prompts.push(engine.rubric_prompt(builder, transcript, item, ctx, options.mitigate)?);
            Ok(())
        };
        push(Some(context))?;
        push(None)?;
        for c in controls {
            push(Some(c))?;
        }
    }
    let (dists, _) = engine.score_many_with(&prompts, progress)?;
    let mut dists = dists.into_iter();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mut block: Vec<ScoreDistribution> = dists.by_ref().take(block).collect();
        let values = item.label_values();
        let control_dists = block.split_off(2);
        let (Some(neutral), Some(contextual)) = (block.pop(), block.pop()) else {
            unreachable!("two distributions per item");
        };
        let noise_floor = match &options.calibration {
            Calibration::Flat => None,
            Calibration::Saved(saved) => Some(saved.floor(&item.id, options.mitigate)?),
            Calibration::Controls(_) => {
                let mut sum = 0.0;
                for d in &control_dists {
                    sum += BiasDelta::between(&neutral, d, &values)?.abs_delta;
                }
                Some(sum / control_dists.len() as f64)
            }
        };
        let flag_threshold = thresholds.flag_threshold(noise_floor.unwrap_or(0.0));
        let delta = BiasDelta::between(&neutral, &contextual, &values)?;
        out.push(CheckResult {
            item_id: item.id.clone(),
            context: context.to_string(),
            contextual,
            neutral,
            delta,
            flagged: delta.abs_delta >= flag_threshold,
            abs_threshold: options.abs_threshold,
            calibration: options.calibration.kind().to_string(),
            noise_floor,
            flag_threshold,
        });
    }
    Ok(out)
}
