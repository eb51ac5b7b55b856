//! The evaluation report: per condition, bias (mean |Δ| on train and held-out wordings, noise
//! floor) and accuracy against gold (correlations, MAE, exact match), the changes against the
//! base model, and its Markdown table.

use super::measure::{ExampleMeasurement, ProbeGroup};
use super::metrics::{exact_match, mean, mean_absolute_error, pearson, percent_change, spearman};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Version of the report's JSON layout.
pub const EVAL_SCHEMA_VERSION: u32 = 1;

/// What is evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConditionKind {
    /// The base model, plain prompt.
    Base,
    /// The base model with the mitigation instruction in every prompt.
    PromptMitigation,
    /// The base model with a LoRA adapter active.
    Adapter {
        /// The adapter's directory.
        dir: String,
    },
}

/// Mean |Δ expected score| (scale points) per probe group, averaged over examples × wordings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BiasSummary {
    /// Category wordings of the `train` split.
    pub train_wordings: Option<f64>,
    /// Category wordings of the `heldout` split.
    pub heldout_wordings: Option<f64>,
    /// Every category wording.
    pub all_wordings: Option<f64>,
    /// Control sentences (the noise floor).
    pub controls: Option<f64>,
}

/// Accuracy of one score kind (expected or argmax) against gold on the neutral prompt.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AccuracySummary {
    /// Spearman rank correlation (ties averaged); `null` when undefined (constant scores).
    pub spearman: Option<f64>,
    /// Pearson correlation; `null` when undefined.
    pub pearson: Option<f64>,
    /// Mean absolute error (scale points).
    pub mae: Option<f64>,
    /// Share of examples whose rounded score equals gold (0–1).
    pub exact_match: Option<f64>,
}

impl AccuracySummary {
    /// Accuracy of `predicted` against `gold`.
    pub fn of(predicted: &[f64], gold: &[f64]) -> Self {
        Self {
            spearman: spearman(predicted, gold),
            pearson: pearson(predicted, gold),
            mae: mean_absolute_error(predicted, gold),
            exact_match: exact_match(predicted, gold),
        }
    }
}

/// Relative changes against the base condition, in percent (negative bias change = less bias).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChangeVsBase {
    /// Bias reduction on train wordings, % (positive = less bias than base).
    pub bias_reduction_train: Option<f64>,
    /// Bias reduction on held-out wordings, % (positive = less bias than base).
    pub bias_reduction_heldout: Option<f64>,
    /// Change of the Spearman correlation of the expected score, %.
    pub spearman_change: Option<f64>,
    /// Change of the Pearson correlation of the expected score, %.
    pub pearson_change: Option<f64>,
}

/// Results of one condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionResult {
    /// Display name (`base`, `prompt-mitigation`, or the adapter's name).
    pub name: String,
    /// What was evaluated.
    pub condition: ConditionKind,
    /// Bias per probe group.
    pub bias: BiasSummary,
    /// Mean |Δ| per category id (all wordings of that category).
    pub bias_by_category: BTreeMap<String, f64>,
    /// Accuracy of the expected score.
    pub accuracy_expected: AccuracySummary,
    /// Accuracy of the most probable label.
    pub accuracy_argmax: AccuracySummary,
    /// Mean label probability mass of the neutral prompts (0–1).
    pub mean_label_mass: Option<f64>,
    /// Changes against the base condition (`null` for the base itself).
    pub vs_base: Option<ChangeVsBase>,
    /// Wall time of this condition, in seconds.
    pub seconds: f64,
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// [`EVAL_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Base model file.
    pub model: String,
    /// Test set file.
    pub test_set: String,
    /// Examples evaluated.
    pub examples: usize,
    /// Probe wordings used per group (`train_wordings`, `heldout_wordings`, `controls`).
    pub probes: BTreeMap<String, usize>,
    /// One entry per condition, base first.
    pub conditions: Vec<ConditionResult>,
    /// Model loading time, in seconds.
    pub load_seconds: f64,
    /// Whole run, in seconds.
    pub total_seconds: f64,
}

/// The name of a probe group in reports.
pub fn group_name(group: ProbeGroup) -> &'static str {
    match group {
        ProbeGroup::TrainWording => "train_wordings",
        ProbeGroup::HeldoutWording => "heldout_wordings",
        ProbeGroup::Control => "controls",
    }
}

/// Summarises one condition's measurements; `groups[k]` and `categories[k]` describe the
/// `k`-th probe (`categories[k]` is `None` for controls).
pub fn summarise(
    name: &str,
    condition: ConditionKind,
    measurements: &[ExampleMeasurement],
    groups: &[ProbeGroup],
    categories: &[Option<String>],
    seconds: f64,
) -> ConditionResult {
    let collect = |keep: &dyn Fn(usize) -> bool| -> Vec<f64> {
        measurements
            .iter()
            .flat_map(|m| {
                m.abs_deltas
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| keep(*k))
                    .map(|(_, d)| *d)
            })
            .collect()
    };
    let group_mean = |g: ProbeGroup| mean(&collect(&|k| groups.get(k) == Some(&g)));
    let bias = BiasSummary {
        train_wordings: group_mean(ProbeGroup::TrainWording),
        heldout_wordings: group_mean(ProbeGroup::HeldoutWording),
        all_wordings: mean(&collect(&|k| groups.get(k) != Some(&ProbeGroup::Control))),
        controls: group_mean(ProbeGroup::Control),
    };
    let mut bias_by_category = BTreeMap::new();
    for cat in categories.iter().flatten() {
        if !bias_by_category.contains_key(cat) {
            let values = collect(&|k| categories.get(k).and_then(|c| c.as_ref()) == Some(cat));
            if let Some(m) = mean(&values) {
                bias_by_category.insert(cat.clone(), m);
            }
        }
    }
    let gold: Vec<f64> = measurements.iter().map(|m| m.gold).collect();
    let expected: Vec<f64> = measurements.iter().map(|m| m.neutral_expected).collect();
    let argmax: Vec<f64> = measurements.iter().map(|m| m.neutral_argmax).collect();
    let mass: Vec<f64> = measurements.iter().map(|m| m.neutral_label_mass).collect();
    ConditionResult {
        name: name.to_string(),
        condition,
        bias,
        bias_by_category,
        accuracy_expected: AccuracySummary::of(&expected, &gold),
        accuracy_argmax: AccuracySummary::of(&argmax, &gold),
        mean_label_mass: mean(&mass),
        vs_base: None,
        seconds,
    }
}

/// Fills `vs_base` of every condition after the first (the base).
pub fn compare_with_base(conditions: &mut [ConditionResult]) {
    let Some((base, rest)) = conditions.split_first_mut() else {
        return;
    };
    let reduction = |b: Option<f64>, n: Option<f64>| percent_change(b, n).map(|c| -c);
    for c in rest {
        c.vs_base = Some(ChangeVsBase {
            bias_reduction_train: reduction(base.bias.train_wordings, c.bias.train_wordings),
            bias_reduction_heldout: reduction(base.bias.heldout_wordings, c.bias.heldout_wordings),
            spearman_change: percent_change(
                base.accuracy_expected.spearman,
                c.accuracy_expected.spearman,
            ),
            pearson_change: percent_change(
                base.accuracy_expected.pearson,
                c.accuracy_expected.pearson,
            ),
        });
    }
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.digits$}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{x:+.0}%"))
}

/// The report as Markdown: a bias table and an accuracy table, one row per condition.
pub fn to_markdown(report: &EvalReport) -> String {
    let mut s = String::new();
    let count = |k: &str| report.probes.get(k).copied().unwrap_or(0);
    let _ = writeln!(
        s,
        "Test examples: {}; probe wordings: {} train, {} held-out, {} controls.\n",
        report.examples,
        count("train_wordings"),
        count("heldout_wordings"),
        count("controls")
    );
    s.push_str(
        "| condition | mean \\|Δ\\| train wordings | mean \\|Δ\\| held-out wordings | \
         controls (noise floor) | bias reduction train | bias reduction held-out |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for c in &report.conditions {
        let v = c.vs_base.as_ref();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            c.name,
            num(c.bias.train_wordings, 3),
            num(c.bias.heldout_wordings, 3),
            num(c.bias.controls, 3),
            pct(v.and_then(|v| v.bias_reduction_train)),
            pct(v.and_then(|v| v.bias_reduction_heldout)),
        );
    }
    s.push_str(
        "\n| condition | Spearman | Pearson | MAE | exact | Spearman (argmax) | MAE (argmax) | \
         exact (argmax) | Spearman change | label mass |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in &report.conditions {
        let (e, a) = (&c.accuracy_expected, &c.accuracy_argmax);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.name,
            num(e.spearman, 3),
            num(e.pearson, 3),
            num(e.mae, 2),
            num(e.exact_match, 2),
            num(a.spearman, 3),
            num(a.mae, 2),
            num(a.exact_match, 2),
            pct(c.vs_base.as_ref().and_then(|v| v.spearman_change)),
            num(c.mean_label_mass, 2),
        );
    }
    s
}
