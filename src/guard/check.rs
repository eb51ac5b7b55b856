//! Runtime check: score a transcript with the context the host supplies and, in the same
//! prefix-shared pass, without it; report both, their delta and a flag.
//!
//! A check has no controls, so there is no noise floor: the flag is `|Δ| ≥ abs_threshold`
//! (the audit's absolute threshold, 0.5 scale points by default). Run an audit to learn how
//! much an irrelevant sentence moves the score for this model and rubric.

use super::delta::BiasDelta;
use super::thresholds::DEFAULT_ABS_THRESHOLD;
use crate::engine::{Engine, ScoreDistribution};
use crate::error::{Error, Result};
use crate::prompt::{PromptBuilder, Transcript};
use crate::rubric::RubricItem;
use serde::{Deserialize, Serialize};

/// Options of a runtime check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckOptions {
    /// Flag when |Δ| reaches this many scale points (finite, ≥ 0).
    pub abs_threshold: f64,
    /// Add the mitigation instruction to both prompts.
    pub mitigate: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            abs_threshold: DEFAULT_ABS_THRESHOLD,
            mitigate: false,
        }
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
    /// `delta.abs_delta ≥ abs_threshold`.
    pub flagged: bool,
    /// The threshold used (scale points).
    pub abs_threshold: f64,
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

/// [`check`] for several rubric items at once: all 2 × `items.len()` prompts share one
/// prefix-shared pass, so the transcript is prefilled once. Results follow `items`' order.
pub fn check_items(
    engine: &Engine,
    builder: &PromptBuilder,
    transcript: &Transcript,
    items: &[RubricItem],
    context: &str,
    options: &CheckOptions,
) -> Result<Vec<CheckResult>> {
    let t = options.abs_threshold;
    if !(t.is_finite() && t >= 0.0) {
        return Err(Error::InvalidInput(format!(
            "abs_threshold must be a finite number ≥ 0, not {t}"
        )));
    }
    if items.is_empty() {
        return Err(Error::InvalidInput("no rubric items to check".into()));
    }
    let context = crate::prompt::validate_context(context)?;
    let mut prompts = Vec::with_capacity(2 * items.len());
    for item in items {
        prompts.push(engine.rubric_prompt(
            builder,
            transcript,
            item,
            Some(context),
            options.mitigate,
        )?);
        prompts.push(engine.rubric_prompt(builder, transcript, item, None, options.mitigate)?);
    }
    let (dists, _) = engine.score_many(&prompts)?;
    let mut dists = dists.into_iter();
    items
        .iter()
        .map(|item| {
            let (contextual, neutral) = match (dists.next(), dists.next()) {
                (Some(c), Some(n)) => (c, n),
                _ => unreachable!("two distributions per item"),
            };
            let delta = BiasDelta::between(&neutral, &contextual, &item.label_values())?;
            Ok(CheckResult {
                item_id: item.id.clone(),
                context: context.to_string(),
                contextual,
                neutral,
                delta,
                flagged: delta.abs_delta >= t,
                abs_threshold: t,
            })
        })
        .collect()
}
