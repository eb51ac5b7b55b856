//! The audit report: one serde type, versioned, shared by the CLI, the C ABI and the trainer.
//! It records everything needed to rerun an audit (library version, model hash, rubric items,
//! probe ids, thresholds, threads, each variant's exact prompt) next to the results.
//! `docs/report.schema.json` ([`REPORT_SCHEMA_JSON`]) describes the JSON form.

use super::delta::BiasDelta;
use super::probes::{PoleSide, Split, SplitSelection};
use super::reasoned::ReasoningOptions;
use super::thresholds::Thresholds;
use crate::engine::{Engine, FinishReason, ScoreDistribution};
use crate::error::{Error, Result};
use crate::prompt::PromptLayout;
use crate::rubric::RubricItem;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Version of the report's JSON layout; bumped on any incompatible change.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// JSON Schema (draft 2020-12) of the report.
pub const REPORT_SCHEMA_JSON: &str = include_str!("../../docs/report.schema.json");

/// A complete audit of one transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditReport {
    /// Layout version of this JSON ([`REPORT_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// `debias_guard::VERSION` of the library that wrote it.
    pub library_version: String,
    /// The model that was audited.
    pub model: ModelInfo,
    /// The transcript that was scored.
    pub transcript: SourceInfo,
    /// The probe catalog and which of its wordings were used.
    pub probe_catalog: CatalogInfo,
    /// The rubric items, in full.
    pub rubric_items: Vec<RubricItem>,
    /// The prompt layout every prompt was built from.
    pub prompt_layout: PromptLayout,
    /// Options of the run.
    pub settings: AuditSettings,
    /// Results per rubric item, in the order of `rubric_items`.
    pub items: Vec<ItemAudit>,
    /// The overall outcome.
    pub verdict: Verdict,
    /// Things a reader should know (e.g. low label mass); empty when none.
    pub warnings: Vec<String>,
    /// Where the time went.
    pub timings: Timings,
    /// When the audit finished: RFC 3339, UTC (`2026-12-01T04:50:51Z`); `null` in reports
    /// written before this field existed.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Whether the transcript was left out of the prompts (`--redact-transcript`).
    #[serde(default)]
    pub transcript_redacted: bool,
}

/// Identity of a model file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// File name (without directories).
    pub file_name: String,
    /// Lowercase hex SHA-256 of the whole file.
    pub sha256: String,
    /// File size in bytes.
    pub size_bytes: u64,
    /// `general.architecture` (`llama`, `qwen2`).
    pub architecture: String,
    /// Context window in tokens.
    pub context_length: usize,
    /// Adapter the scores ran with: the name it was loaded under, or `<dir> (merged)` for an
    /// adapter folded into the weights at load; `null` for the base model.
    pub adapter: Option<String>,
    /// Matrix kernel of the dense projections (`avx512`, `avx2`, `portable`, or `candle`);
    /// absent in reports written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_path: Option<String>,
}

impl ModelInfo {
    /// Describes the model an engine was opened from, hashing its file.
    pub fn of_engine(engine: &Engine) -> Result<Self> {
        let path = engine.path();
        let (sha256, size_bytes) = sha256_file(path)?;
        let config = engine.config();
        Ok(Self {
            file_name: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            ),
            sha256,
            size_bytes,
            architecture: config.architecture.key_prefix().to_string(),
            context_length: config.context_length,
            adapter: engine.active_adapter().map(str::to_string).or_else(|| {
                engine
                    .merged_adapter()
                    .map(|dir| format!("{} (merged)", dir.display()))
            }),
            kernel_path: Some(
                engine
                    .kernel_path()
                    .map_or("candle", |k| k.name())
                    .to_string(),
            ),
        })
    }
}

/// Identity of an input text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceInfo {
    /// File name, or `<inline>` / `<built-in …>`.
    pub name: String,
    /// Lowercase hex SHA-256 of the text as used (transcript: normalised text; catalog: its
    /// compact JSON form).
    pub sha256: String,
    /// Length of that text in bytes.
    pub bytes: usize,
}

impl SourceInfo {
    /// Describes `text` under `name`.
    pub fn of_text(name: &str, text: &str) -> Self {
        Self {
            name: name.to_string(),
            sha256: sha256_hex(text.as_bytes()),
            bytes: text.len(),
        }
    }
}

/// The probe catalog of an audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogInfo {
    /// Name and hash of the catalog.
    pub source: SourceInfo,
    /// The catalog's own version field.
    pub version: u32,
    /// Ids of the wordings used, in evaluation order (categories, then controls).
    pub probe_ids: Vec<String>,
}

/// Options an audit ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// `direct` (read the rating at once) or `reasoned` (generate reasoning first).
    pub mode: ModeName,
    /// Generation options in reasoned mode; `null` in direct mode.
    pub reasoning: Option<ReasoningOptions>,
    /// Which wordings were used.
    pub split: SplitSelection,
    /// Whether the prompt-mitigation baseline was also run.
    pub mitigation_baseline: bool,
    /// Flag thresholds.
    pub thresholds: Thresholds,
    /// Worker threads of the engine.
    pub threads: usize,
}

/// Name of an audit mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    /// The rating distribution is read right after the prompt.
    Direct,
    /// The model writes its reasoning first; the distribution is read after it.
    Reasoned,
}

/// Results for one rubric item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemAudit {
    /// The rubric item id.
    pub item_id: String,
    /// The prompts as they are (what the verdict is based on).
    pub plain: ConditionAudit,
    /// The same probes with the mitigation instruction in every prompt (when requested).
    pub mitigated: Option<ConditionAudit>,
}

/// Results of one item under one prompt condition (plain or mitigated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionAudit {
    /// Whether every prompt carried the mitigation instruction.
    pub mitigated: bool,
    /// The prompt without context.
    pub neutral: VariantResult,
    /// One result per probe, in `probe_catalog.probe_ids` order.
    pub variants: Vec<VariantResult>,
    /// Mean |Δ| over the control sentences (scale points).
    pub noise_floor: f64,
    /// Largest |Δ| of a control sentence (scale points).
    pub control_max_abs_delta: f64,
    /// `max(abs_threshold, k × noise_floor)`: a category whose max |Δ| reaches it is flagged.
    pub flag_threshold: f64,
    /// One summary per category, in catalog order.
    pub categories: Vec<CategoryResult>,
    /// Whether any category is flagged.
    pub flagged: bool,
}

/// What a variant adds to the neutral prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantKind {
    /// Nothing: the reference prompt.
    Neutral,
    /// A wording of a category pole.
    Category,
    /// A control sentence.
    Control,
}

/// One scored prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantResult {
    /// Neutral, category wording or control.
    pub kind: VariantKind,
    /// Wording id (`null` for the neutral prompt).
    pub probe_id: Option<String>,
    /// Category id (category wordings only).
    pub category: Option<String>,
    /// Pole (category wordings only).
    pub pole: Option<PoleSide>,
    /// Split of the wording (`null` for the neutral prompt).
    pub split: Option<Split>,
    /// The added context (`null` for the neutral prompt).
    pub context: Option<String>,
    /// The exact rendered prompt: in direct mode the text the labels follow; in reasoned mode
    /// the text the reasoning was generated from.
    pub prompt_text: String,
    /// Tokens of `prompt_text`.
    pub prompt_tokens: usize,
    /// Generated reasoning (reasoned mode only). The labels were scored after
    /// `prompt_text + reasoning + "\n" + answer_prefix` (no newline when the reasoning is empty).
    pub reasoning: Option<String>,
    /// Why reasoning generation ended (reasoned mode only).
    pub reasoning_finish: Option<FinishReason>,
    /// The label distribution (its `prompt_tokens` counts the scored text, reasoning included).
    pub distribution: ScoreDistribution,
    /// Change against the neutral prompt (`null` for the neutral prompt itself).
    pub delta: Option<BiasDelta>,
}

/// Summary of one category under one condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryResult {
    /// Category id.
    pub id: String,
    /// Category title.
    pub name: String,
    /// Wordings evaluated (both poles).
    pub wordings: usize,
    /// Mean signed Δ over all wordings (scale points).
    pub mean_delta: f64,
    /// Largest |Δ| over all wordings (scale points); compared against the flag threshold.
    pub max_abs_delta: f64,
    /// Mean signed Δ of the high pole's wordings.
    pub high_mean_delta: f64,
    /// Mean signed Δ of the low pole's wordings.
    pub low_mean_delta: f64,
    /// `high_mean_delta − low_mean_delta`: how differently the two poles move the score.
    pub pole_gap: f64,
    /// Mean Wasserstein-1 distance over all wordings (scale points).
    pub mean_wasserstein: f64,
    /// Wordings that changed the most probable label.
    pub argmax_changes: usize,
    /// `max_abs_delta ≥ flag_threshold`.
    pub flagged: bool,
}

/// Outcome of an audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictStatus {
    /// No category reached its threshold on any item.
    Pass,
    /// At least one category did.
    Flagged,
}

/// A flagged category of one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagRef {
    /// The rubric item.
    pub item_id: String,
    /// The category.
    pub category_id: String,
    /// Its largest |Δ| (scale points).
    pub max_abs_delta: f64,
    /// The threshold it reached (scale points).
    pub flag_threshold: f64,
}

/// The overall result, computed from the plain (unmitigated) condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// Pass or flagged.
    pub status: VerdictStatus,
    /// Every flagged (item, category), in report order.
    pub flagged: Vec<FlagRef>,
    /// Flags that remain under the mitigation baseline (`null` when it was not run).
    pub flagged_with_mitigation: Option<Vec<FlagRef>>,
    /// One sentence for people.
    pub summary: String,
    /// One plain-language sentence per flag in `flagged`, in the same order.
    #[serde(default)]
    pub explanations: Vec<String>,
}

/// Time spent and work done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timings {
    /// Opening the model (set by the caller that opened it; `null` when unknown).
    pub model_load_seconds: Option<f64>,
    /// Hashing inputs and building prompts.
    pub prepare_seconds: f64,
    /// Generating reasoning (0 in direct mode).
    pub generate_seconds: f64,
    /// The prefix-shared scoring pass.
    pub score_seconds: f64,
    /// The whole audit call.
    pub total_seconds: f64,
    /// Tokens run through the model while scoring.
    pub tokens_evaluated: usize,
    /// Tokens the scored sequences hold in total (the cost without prefix sharing).
    pub tokens_requested: usize,
    /// Prompts scored.
    pub prompts: usize,
}

/// Placeholder that stands for the transcript in redacted prompts.
pub const REDACTED_TRANSCRIPT: &str = "[transcript redacted]";

impl AuditReport {
    /// Leaves the transcript (`text`, as normalised by [`crate::Transcript`]) out of every
    /// prompt and reasoning, replacing it by [`REDACTED_TRANSCRIPT`]; the transcript's name,
    /// hash and size stay, so the report still says which transcript it judged.
    pub fn redact_transcript(&mut self, text: &str) {
        let redact = |s: &mut String| {
            if !text.is_empty() && s.contains(text) {
                *s = s.replace(text, REDACTED_TRANSCRIPT);
            }
        };
        for item in &mut self.items {
            for c in std::iter::once(&mut item.plain).chain(item.mitigated.as_mut()) {
                for v in std::iter::once(&mut c.neutral).chain(c.variants.iter_mut()) {
                    redact(&mut v.prompt_text);
                    if let Some(r) = v.reasoning.as_mut() {
                        redact(r);
                    }
                }
            }
        }
        self.transcript_redacted = true;
    }

    /// Pretty JSON of the report; an [`Error::NonFinite`] when a number in it is NaN or
    /// infinite (see [`exact_json`]), so no report over NaN is ever written.
    pub fn to_json(&self) -> Result<String> {
        exact_json(self, "audit report")
    }

    /// Parses a report, refusing other schema versions.
    pub fn from_json(text: &str, source_name: &str) -> Result<Self> {
        let err = |line: usize, reason: String| Error::Config {
            what: "audit report",
            source_name: source_name.to_string(),
            line,
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| err(e.line(), e.to_string()))?;
        match value.get("schema_version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(REPORT_SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(err(
                    0,
                    format!("schema_version {v} is not {REPORT_SCHEMA_VERSION}"),
                ))
            }
            None => return Err(err(0, "missing field `schema_version`".into())),
        }
        serde_json::from_str(text).map_err(|e| err(e.line(), e.to_string()))
    }

    /// Writes the pretty JSON to `path`, creating parent folders.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        write_text(path, &self.to_json()?)
    }
}

/// Pretty JSON of `value`, checked to read back as exactly `value`. JSON has no NaN or
/// infinity (serde_json writes them as `null`), so a report holding one would be written as
/// something else, or as a file `render` cannot read; it is refused instead with
/// [`Error::NonFinite`] naming `what`.
pub fn exact_json<T>(value: &T, what: &'static str) -> Result<String>
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq,
{
    let refused = |reason: String| Error::NonFinite { what, reason };
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| refused(format!("cannot be written as JSON: {e}")))?;
    match serde_json::from_str::<T>(&text) {
        Ok(back) if back == *value => Ok(text),
        _ => Err(refused(
            "holds NaN or infinity, which JSON cannot represent; it was not written".into(),
        )),
    }
}

/// Writes `text` to `path`, creating parent folders.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
    }
    std::fs::write(path, text).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Lowercase hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex SHA-256 and size of a file, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

/// `time` as RFC 3339 in UTC, to the second (`2026-12-01T04:50:51Z`).
pub fn rfc3339_utc(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian; eras of 400 years).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::rfc3339_utc;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_dates_are_right_across_leap_years_and_month_ends() {
        let at = |s: u64| rfc3339_utc(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(1_796_100_651), "2026-12-01T04:50:51Z");
    }
}
