//! The evaluation report (schema 2): the probe list once, per condition every record's neutral
//! score and signed Δ per wording, and summaries computed from those records ([`super::summary`]):
//! bias per probe group and category with the excess over the control noise floor, accuracy
//! against gold, reductions against the base, each with a 95 % transcript-bootstrap interval;
//! the mean over seeds of adapters named `stem@sN`; an optional reasoned-mode section; Markdown.

use super::bootstrap::{BootstrapOptions, Estimate};
use super::measure::ProbeGroup;
use debias_guard::guard::{PoleSide, Split};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Version of the report's JSON layout (2: per-record deltas and bootstrap intervals).
pub const EVAL_SCHEMA_VERSION: u32 = 2;

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

/// One probe wording, in the order of every record's `deltas`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeInfo {
    /// Wording id (`<category>.<pole>.<n>` or `control.<name>`).
    pub id: String,
    /// `train`, `heldout` (category wordings of that split) or `control`.
    pub group: ProbeGroup,
    /// Category id; `null` for controls.
    pub category: Option<String>,
    /// Pole; `null` for controls.
    pub pole: Option<PoleSide>,
    /// The wording's split in the catalog (controls have one too).
    pub split: Split,
    /// The context sentence.
    pub text: String,
}

/// One test record under one condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordResult {
    /// Record id.
    pub id: String,
    /// Transcript key: records sharing it share a transcript (the bootstrap's unit).
    pub transcript: String,
    /// Gold rating.
    pub gold: f64,
    /// Expected score of the neutral prompt (scale points).
    pub neutral_expected: f64,
    /// Value of the neutral prompt's most probable label.
    pub neutral_argmax: f64,
    /// Label probability mass of the neutral prompt (0–1).
    pub neutral_label_mass: f64,
    /// Signed Δ expected score (with wording − neutral) per probe, aligned with the report's `probes`.
    pub deltas: Vec<f64>,
    /// Reasoned mode only: generations of this record that stopped at the token limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_hits: Option<usize>,
}

/// Mean |Δ| (scale points) of one category, and its excess over the noise floor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CategoryBias {
    /// Every wording of the category.
    pub all: Estimate,
    /// Its `train` wordings.
    pub train: Estimate,
    /// Its `heldout` wordings.
    pub heldout: Estimate,
    /// Mean over records of (category |Δ| − control |Δ|), all wordings, all controls.
    pub excess_all: Estimate,
    /// The same for `train` wordings (against `train` controls when the catalog splits them).
    pub excess_train: Estimate,
    /// The same for `heldout` wordings (against `heldout` controls when the catalog splits them).
    pub excess_heldout: Estimate,
}

/// Mean |Δ expected score| (scale points) per probe group and category, with the excess over the
/// control noise floor; every figure is a mean over records of the record's mean over wordings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BiasSummary {
    /// Category wordings of the `train` split.
    pub train_wordings: Estimate,
    /// Category wordings of the `heldout` split.
    pub heldout_wordings: Estimate,
    /// Every category wording.
    pub all_wordings: Estimate,
    /// Every control sentence (the noise floor).
    pub controls: Estimate,
    /// Controls of the `train` split.
    pub controls_train: Estimate,
    /// Controls of the `heldout` split.
    pub controls_heldout: Estimate,
    /// Excess of `train` wordings over the floor (same-split controls when the catalog splits them).
    pub excess_train_wordings: Estimate,
    /// Excess of `heldout` wordings over the floor (same-split controls when the catalog splits them).
    pub excess_heldout_wordings: Estimate,
    /// Excess of every category wording over every control.
    pub excess_all_wordings: Estimate,
    /// Per category id.
    pub by_category: BTreeMap<String, CategoryBias>,
}

/// Accuracy of one score kind (expected or argmax) against gold on the neutral prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AccuracySummary {
    /// Spearman rank correlation (ties averaged); `null` when undefined (constant scores).
    pub spearman: Estimate,
    /// Pearson correlation; `null` when undefined.
    pub pearson: Estimate,
    /// Mean absolute error (scale points).
    pub mae: Estimate,
    /// Share of records whose rounded score equals gold (0–1).
    pub exact_match: Estimate,
}

/// Reductions of one category's mean |Δ| against the base, in percent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CategoryReduction {
    /// Every wording.
    pub all: Estimate,
    /// `train` wordings.
    pub train: Estimate,
    /// `heldout` wordings.
    pub heldout: Estimate,
}

/// Changes against the base condition; intervals are paired (the same resampled transcripts for
/// base and condition). Reductions are `(base − condition) / base × 100` (positive = less bias).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeVsBase {
    /// Bias reduction on `train` wordings, %.
    pub bias_reduction_train: Estimate,
    /// Bias reduction on `heldout` wordings, %.
    pub bias_reduction_heldout: Estimate,
    /// Bias reduction on every category wording, %.
    pub bias_reduction_all: Estimate,
    /// Reduction of the control |Δ| (noise floor), %.
    pub controls_reduction: Estimate,
    /// Per category id.
    pub by_category: BTreeMap<String, CategoryReduction>,
    /// Spearman of the expected score, condition − base (correlation units).
    pub spearman_difference: Estimate,
    /// MAE of the expected score, condition − base (scale points; negative = better).
    pub mae_difference: Estimate,
    /// Mean neutral label mass, condition − base.
    pub label_mass_difference: Estimate,
}

/// Everything computed from a condition's records (or a mean over seeds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Bias per probe group and category.
    pub bias: BiasSummary,
    /// Accuracy of the expected score.
    pub accuracy_expected: AccuracySummary,
    /// Accuracy of the most probable label.
    pub accuracy_argmax: AccuracySummary,
    /// Mean label probability mass of the neutral prompts (0–1).
    pub label_mass: Estimate,
    /// Changes against the base condition (`null` for the base itself).
    pub vs_base: Option<ChangeVsBase>,
}

/// Results of one condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionResult {
    /// Display name (`base`, `prompt-mitigation`, or the adapter's name).
    pub name: String,
    /// What was evaluated.
    pub condition: ConditionKind,
    /// Summaries with intervals.
    #[serde(flatten)]
    pub summary: Summary,
    /// Wall time of measuring this condition, in seconds.
    pub seconds: f64,
    /// Every record, in test-file order.
    pub records: Vec<RecordResult>,
}

/// The mean over seeds of adapters named `stem@s<N>`: the mean of the seeds' point estimates,
/// with intervals from the pooled bootstrap (the seeds' statistics averaged within each resample).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedMean {
    /// The common stem of the names.
    pub stem: String,
    /// The conditions averaged, in report order.
    pub members: Vec<String>,
    /// Summaries with pooled intervals.
    #[serde(flatten)]
    pub summary: Summary,
}

/// Reasoned-mode evaluation of the first records (the paper's setting: greedy reasoning, then
/// the rating distribution after it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasonedSection {
    /// Records evaluated (the first N of the test set).
    pub examples: usize,
    /// Transcripts among them.
    pub transcripts: usize,
    /// Most reasoning tokens per generation.
    pub max_reasoning_tokens: usize,
    /// Probe wordings of this section, in the order of its records' `deltas`; empty = the
    /// report's `probes` (every wording).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeInfo>,
    /// One entry per condition, base first.
    pub conditions: Vec<ConditionResult>,
    /// Means over seeds.
    pub seed_means: Vec<SeedMean>,
    /// Wall time of the reasoned measurements (reused conditions count as zero), in seconds.
    pub seconds: f64,
}

impl ReasonedSection {
    /// The probe wordings of this section: its own list, or `all` when it measured every one.
    pub fn probes_or<'a>(&'a self, all: &'a [ProbeInfo]) -> &'a [ProbeInfo] {
        if self.probes.is_empty() {
            all
        } else {
            &self.probes
        }
    }
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
    /// Records evaluated.
    pub examples: usize,
    /// Transcripts among them (the bootstrap's unit).
    pub transcripts: usize,
    /// Probe wordings, in the order of every record's `deltas`.
    pub probes: Vec<ProbeInfo>,
    /// How the intervals were computed.
    pub bootstrap: BootstrapOptions,
    /// One entry per condition, base first.
    pub conditions: Vec<ConditionResult>,
    /// Means over seeds of adapters named `stem@sN` (two or more seeds).
    pub seed_means: Vec<SeedMean>,
    /// Reasoned-mode section (`--reasoned-subset`).
    pub reasoned: Option<ReasonedSection>,
    /// Model loading time, in seconds.
    pub load_seconds: f64,
    /// Whole run, in seconds.
    pub total_seconds: f64,
}

impl EvalReport {
    /// Probe wordings per group name (`train_wordings`, `heldout_wordings`, `controls`).
    pub fn probe_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for p in &self.probes {
            *counts.entry(group_name(p.group).to_string()).or_insert(0) += 1;
        }
        counts
    }
}

/// The name of a probe group in reports.
pub fn group_name(group: ProbeGroup) -> &'static str {
    match group {
        ProbeGroup::TrainWording => "train_wordings",
        ProbeGroup::HeldoutWording => "heldout_wordings",
        ProbeGroup::Control => "controls",
    }
}

/// `0.262 [0.21, 0.31]` (interval one digit shorter), `n/a` when undefined.
fn est(e: &Estimate, digits: usize) -> String {
    let Some(p) = e.point else {
        return "n/a".into();
    };
    let d = digits.saturating_sub(1).max(1);
    match e.ci95 {
        Some([lo, hi]) => format!("{p:.digits$} [{lo:.d$}, {hi:.d$}]"),
        None => format!("{p:.digits$}"),
    }
}

/// `+35% [12%, 51%]`, `–` when undefined.
fn pct(e: Option<&Estimate>) -> String {
    let Some(p) = e.and_then(|e| e.point) else {
        return "–".into();
    };
    match e.and_then(|e| e.ci95) {
        Some([lo, hi]) => format!("{p:+.0}% [{lo:+.0}%, {hi:+.0}%]"),
        None => format!("{p:+.0}%"),
    }
}

/// Rows of a table: every condition, then every mean over seeds.
fn rows<'a>(
    conditions: &'a [ConditionResult],
    seed_means: &'a [SeedMean],
) -> Vec<(String, &'a Summary)> {
    conditions
        .iter()
        .map(|c| (c.name.clone(), &c.summary))
        .chain(seed_means.iter().map(|m| {
            (
                format!("{} (mean of {} seeds)", m.stem, m.members.len()),
                &m.summary,
            )
        }))
        .collect()
}

/// The bias, category, excess and accuracy tables of one mode.
fn mode_tables(s: &mut String, conditions: &[ConditionResult], seed_means: &[SeedMean]) {
    let rows = rows(conditions, seed_means);
    s.push_str(
        "| condition | mean \\|Δ\\| train wordings | mean \\|Δ\\| held-out wordings | \
         controls (noise floor) | excess train | excess held-out | reduction train | \
         reduction held-out | reduction controls |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, m) in &rows {
        let (b, v) = (&m.bias, m.vs_base.as_ref());
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} |",
            est(&b.train_wordings, 3),
            est(&b.heldout_wordings, 3),
            est(&b.controls, 3),
            est(&b.excess_train_wordings, 3),
            est(&b.excess_heldout_wordings, 3),
            pct(v.map(|v| &v.bias_reduction_train)),
            pct(v.map(|v| &v.bias_reduction_heldout)),
            pct(v.map(|v| &v.controls_reduction)),
        );
    }
    let categories: Vec<&String> = rows
        .first()
        .map(|(_, m)| m.bias.by_category.keys().collect())
        .unwrap_or_default();
    if !categories.is_empty() {
        let header = |s: &mut String, title: &str| {
            let _ = write!(s, "\n{title}\n\n| condition |");
            for c in &categories {
                let _ = write!(s, " {c} |");
            }
            s.push_str("\n|---|");
            s.push_str(&"---:|".repeat(categories.len()));
            s.push('\n');
        };
        type Cell = fn(&Summary, &str) -> String;
        let tables: [(&str, Cell); 4] = [
            ("Mean |Δ| per category (all wordings):", |m, c| {
                est(&m.bias.by_category[c].all, 3)
            }),
            (
                "Excess over the noise floor per category (category |Δ| − control |Δ| of the same \
                 record, all wordings):",
                |m, c| est(&m.bias.by_category[c].excess_all, 3),
            ),
            ("Mean |Δ| per category, held-out wordings:", |m, c| {
                est(&m.bias.by_category[c].heldout, 3)
            }),
            (
                "Reduction per category vs base, held-out wordings:",
                |m, c| {
                    pct(m
                        .vs_base
                        .as_ref()
                        .and_then(|v| v.by_category.get(c))
                        .map(|r| &r.heldout))
                },
            ),
        ];
        for (title, cell) in tables {
            header(s, title);
            for (name, m) in &rows {
                let _ = write!(s, "| {name} |");
                for c in &categories {
                    let present = m.bias.by_category.contains_key(c.as_str());
                    let text = if present { cell(m, c) } else { "n/a".into() };
                    let _ = write!(s, " {text} |");
                }
                s.push('\n');
            }
        }
    }
    s.push_str(
        "\nAccuracy on the neutral prompt against gold (expected score; argmax = most probable \
         label):\n\n\
         | condition | Spearman | Pearson | MAE | exact | Spearman (argmax) | MAE (argmax) | \
         exact (argmax) | label mass | Spearman − base |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, m) in &rows {
        let (e, a) = (&m.accuracy_expected, &m.accuracy_argmax);
        let diff = m
            .vs_base
            .as_ref()
            .map_or_else(|| "–".into(), |v| est(&v.spearman_difference, 3));
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {diff} |",
            est(&e.spearman, 3),
            est(&e.pearson, 3),
            est(&e.mae, 2),
            est(&e.exact_match, 2),
            est(&a.spearman, 3),
            est(&a.mae, 2),
            est(&a.exact_match, 2),
            est(&m.label_mass, 2),
        );
    }
}

/// The report as Markdown: bias (with intervals, controls, excess and reductions), per-category
/// tables, accuracy, and the same for the reasoned section when present.
pub fn to_markdown(report: &EvalReport) -> String {
    let mut s = String::new();
    let counts = report.probe_counts();
    let count = |k: &str| counts.get(k).copied().unwrap_or(0);
    let _ = writeln!(
        s,
        "Test records: {}, transcripts: {}; probe wordings: {} train, {} held-out, {} controls. \
         Intervals: 95 % percentile bootstrap over transcripts ({} resamples, seed {}); \
         reductions are paired with the base.\n",
        report.examples,
        report.transcripts,
        count("train_wordings"),
        count("heldout_wordings"),
        count("controls"),
        report.bootstrap.resamples,
        report.bootstrap.seed,
    );
    s.push_str("## Direct mode (rating read right after the prompt)\n\n");
    mode_tables(&mut s, &report.conditions, &report.seed_means);
    if let Some(r) = &report.reasoned {
        let _ = writeln!(
            s,
            "\n## Reasoned mode (greedy reasoning of at most {} tokens, then the rating)\n\n\
             First {} records, {} transcripts; {} probe wordings ({} held-out, {} controls); \
             measured in {:.0} s.\n",
            r.max_reasoning_tokens,
            r.examples,
            r.transcripts,
            r.probes_or(&report.probes).len(),
            r.probes_or(&report.probes)
                .iter()
                .filter(|p| group_name(p.group) == "heldout_wordings")
                .count(),
            r.probes_or(&report.probes)
                .iter()
                .filter(|p| group_name(p.group) == "controls")
                .count(),
            r.seconds
        );
        s.push_str("Generations that stopped at the token limit:");
        for c in &r.conditions {
            let hits: usize = c.records.iter().filter_map(|x| x.max_tokens_hits).sum();
            let total: usize = c.records.iter().map(|x| x.deltas.len() + 1).sum();
            let _ = write!(s, " {} {hits}/{total} ({:.0} s);", c.name, c.seconds);
        }
        s.push_str("\n\n");
        mode_tables(&mut s, &r.conditions, &r.seed_means);
    }
    s
}
