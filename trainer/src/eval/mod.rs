//! Evaluation of a scorer before and after debiasing: the `eval` subcommand.
//!
//! On every test record (held-out transcripts; `--limit` for fewer) and for each condition —
//! the base model, the prompt-mitigation baseline (the builder's `mitigate` instruction) and
//! every adapter given — the neutral prompt and one prompt per probe wording are scored in one
//! prefix-shared pass ([`debias_guard::guard::bias_deltas`], direct mode: the rating is read right
//! after the prompt). The report keeps every record's signed Δ per wording; bias is the mean
//! |Δ expected score| per probe group and category, beside the excess over the control noise
//! floor; accuracy compares the neutral expected score (and most probable label) with gold. Every
//! figure carries a 95 % bootstrap interval over transcripts, reductions against the base a
//! paired one, and adapters named `stem@sN` get a mean-over-seeds row. `--reasoned-subset N`
//! adds the same summaries in reasoned mode (greedy reasoning, then the rating) on the first N
//! records.
//!
//! - [`metrics`]: correlations, MAE, exact match;
//! - [`bootstrap`]: cluster bootstrap intervals (pure functions);
//! - [`measure`]: one condition on one example, direct or reasoned;
//! - [`summary`]: every figure of the report from the records;
//! - [`report`]: the report type and its Markdown;
//! - [`plot`]: the SVG bias chart.

pub mod bootstrap;
pub mod measure;
pub mod metrics;
pub mod plot;
pub mod report;
pub mod summary;

use crate::data::Example;
use crate::error::{Error, Result};
use crate::inputs::{progress_bar, InputFiles, ScoringInputs};
use bootstrap::BootstrapOptions;
use debias_guard::guard::reasoned::{ReasoningOptions, MAX_REASONING_TOKENS};
use debias_guard::guard::{Probe, ProbeKind};
use debias_guard::{Engine, EngineOptions, Rubric, SplitSelection, Transcript};
use measure::{measure_example, measure_example_reasoned, ExampleMeasurement, ProbeGroup};
use report::{ConditionKind, ConditionResult, ProbeInfo, ReasonedSection, RecordResult};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use report::EvalReport;

/// File names written into the output directory.
pub const REPORT_JSON: &str = "eval.json";
/// Markdown tables.
pub const REPORT_MARKDOWN: &str = "eval.md";
/// Bias chart (SVG; the PNG beside it has the same stem).
pub const REPORT_CHART: &str = "bias.svg";
/// Which probe wordings the reasoned-mode section generates for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReasonedProbes {
    /// Every wording of the catalog (train, held-out and controls).
    #[default]
    All,
    /// The held-out wordings and every control (the noise floor stays measured).
    Heldout,
}

impl ReasonedProbes {
    /// Whether `probe` is measured in reasoned mode.
    pub fn includes(self, probe: &Probe) -> bool {
        match self {
            Self::All => true,
            Self::Heldout => ProbeGroup::of(probe) != ProbeGroup::TrainWording,
        }
    }
}

/// Default bound on each reasoned-mode generation, in tokens.
pub const DEFAULT_EVAL_REASONING_TOKENS: usize = 64;

/// An adapter to evaluate: a display name and its PEFT directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSpec {
    /// Name in the report (letters, digits, `-`, `_`, `.`, `@`; `stem@sN` marks seed N of `stem`).
    pub name: String,
    /// Directory with `adapter_config.json` and `adapter_model.safetensors`.
    pub dir: PathBuf,
}

impl std::str::FromStr for AdapterSpec {
    type Err = Error;

    /// Parses `NAME=DIR`.
    fn from_str(s: &str) -> Result<Self> {
        let (name, dir) = s
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("adapter `{s}` is not of the form NAME=DIR")))?;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
        if !valid || dir.is_empty() {
            return Err(Error::Config(format!(
                "adapter `{s}`: NAME must be 1–64 letters, digits, `-`, `_`, `.` or `@`, and DIR \
                 non-empty"
            )));
        }
        Ok(Self {
            name: name.to_string(),
            dir: PathBuf::from(dir),
        })
    }
}

/// What to evaluate and where to write the results.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Base model (GGUF file).
    pub model: PathBuf,
    /// Test examples (JSONL of [`Example`]).
    pub test: PathBuf,
    /// Adapters to evaluate on top of the base model.
    pub adapters: Vec<AdapterSpec>,
    /// Also evaluate the prompt-mitigation baseline.
    pub mitigation: bool,
    /// Probe catalog, rubric and prompt layout files (default: the built-in ones).
    pub inputs: InputFiles,
    /// Evaluate only the first N examples (default: all).
    pub limit: Option<usize>,
    /// Also evaluate the first N examples in reasoned mode (0 = not at all).
    pub reasoned_subset: usize,
    /// Most reasoning tokens per reasoned-mode generation.
    pub max_reasoning_tokens: usize,
    /// Which probe wordings the reasoned section measures.
    pub reasoned_probes: ReasonedProbes,
    /// Resamples and seed of the bootstrap intervals.
    pub bootstrap: BootstrapOptions,
    /// Engine worker threads (0 = all cores).
    pub threads: usize,
    /// Directory for `eval.json`, `eval.md` and `bias.svg`/`bias.png` (created if missing).
    pub out_dir: PathBuf,
    /// Earlier `eval.json` files (schema 2) of the same model, test records and probes:
    /// conditions found there (same name and kind; the first file that has one wins) are taken
    /// from them instead of being measured again, in each mode.
    pub reuse: Vec<PathBuf>,
    /// Show a progress bar (drawn only on a terminal).
    pub progress: bool,
}

/// Command-line arguments of `eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Base model (GGUF file).
    #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    pub model: PathBuf,
    /// Test examples (JSONL).
    #[arg(long)]
    pub test: PathBuf,
    /// Adapter to evaluate, as NAME=DIR (repeatable; NAME@s1, NAME@s2, … are averaged over seeds).
    #[arg(long = "adapter", value_name = "NAME=DIR")]
    pub adapters: Vec<AdapterSpec>,
    /// Skip the prompt-mitigation baseline.
    #[arg(long)]
    pub no_mitigation: bool,
    /// Probe catalog, rubric and prompt layout files.
    #[command(flatten)]
    pub inputs: InputFiles,
    /// Evaluate only the first N examples (default: every test record).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Also evaluate the first N examples in reasoned mode (slow: one generation per wording).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub reasoned_subset: usize,
    /// Most reasoning tokens per reasoned-mode generation.
    #[arg(long, default_value_t = DEFAULT_EVAL_REASONING_TOKENS)]
    pub max_reasoning_tokens: usize,
    /// Probe wordings of the reasoned section: all, or only the held-out wordings and controls
    /// (less than half the generations; the train-wording columns are then n/a).
    #[arg(long, value_enum, default_value_t = ReasonedProbes::All)]
    pub reasoned_probes: ReasonedProbes,
    /// Bootstrap resamples of the 95 % intervals (0 = no intervals).
    #[arg(long, default_value_t = bootstrap::DEFAULT_RESAMPLES)]
    pub bootstrap_resamples: usize,
    /// Seed of the bootstrap resampling.
    #[arg(long, default_value_t = bootstrap::DEFAULT_SEED)]
    pub bootstrap_seed: u64,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Output directory (eval.json, eval.md, bias.svg, bias.png).
    #[arg(long)]
    pub out: PathBuf,
    /// Earlier eval.json (same model, test records and probes) whose conditions are reused
    /// (repeatable: e.g. the reports of adapters evaluated in parallel, combined into one).
    #[arg(long)]
    pub reuse: Vec<PathBuf>,
}

impl From<EvalArgs> for EvalOptions {
    fn from(a: EvalArgs) -> Self {
        Self {
            model: a.model,
            test: a.test,
            adapters: a.adapters,
            mitigation: !a.no_mitigation,
            inputs: a.inputs,
            limit: a.limit,
            reasoned_subset: a.reasoned_subset,
            max_reasoning_tokens: a.max_reasoning_tokens,
            reasoned_probes: a.reasoned_probes,
            bootstrap: BootstrapOptions {
                resamples: a.bootstrap_resamples,
                seed: a.bootstrap_seed,
            },
            threads: a.threads,
            out_dir: a.out,
            reuse: a.reuse,
            progress: true,
        }
    }
}

/// Largest number of bootstrap resamples accepted.
pub const MAX_RESAMPLES: usize = 100_000;

/// One condition to run.
struct Condition {
    name: String,
    kind: ConditionKind,
    mitigate: bool,
    engine: usize,
}

/// One test record, ready to score.
struct Prepared<'r> {
    id: String,
    key: String,
    transcript: Transcript,
    item: &'r debias_guard::RubricItem,
    gold: f64,
}

/// The key that groups records of one transcript: the id's part before its last `/` (synth ids
/// are `<transcript>/<item>`), else a hash of the transcript text (`text:<16 hex digits>`).
pub fn transcript_key(id: &str, transcript_text: &str) -> String {
    match id.rsplit_once('/') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => format!("text:{:016x}", fnv1a64(transcript_text.as_bytes())),
    }
}

/// FNV-1a, 64 bits: a hash that does not change between Rust versions.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The report's description of each probe.
pub fn probe_infos(probes: &[Probe]) -> Vec<ProbeInfo> {
    probes
        .iter()
        .map(|p| {
            let (category, pole) = match &p.kind {
                ProbeKind::Category { category, pole } => (Some(category.clone()), Some(*pole)),
                ProbeKind::Control => (None, None),
            };
            ProbeInfo {
                id: p.id.clone(),
                group: ProbeGroup::of(p),
                category,
                pole,
                split: p.split,
                text: p.text.clone(),
            }
        })
        .collect()
}

/// Runs the evaluation, writes `eval.json`, `eval.md`, `bias.svg` and `bias.png` into `out_dir`, and
/// returns the report.
pub fn run(opts: &EvalOptions) -> Result<EvalReport> {
    let started = Instant::now();
    let mut names = vec!["base".to_string(), "prompt-mitigation".to_string()];
    for a in &opts.adapters {
        if names.contains(&a.name) {
            return Err(Error::Config(format!(
                "condition name `{}` is used twice",
                a.name
            )));
        }
        names.push(a.name.clone());
    }
    if opts.bootstrap.resamples > MAX_RESAMPLES {
        return Err(Error::Config(format!(
            "--bootstrap-resamples {} is above {MAX_RESAMPLES}",
            opts.bootstrap.resamples
        )));
    }
    let reasoning = ReasoningOptions {
        max_tokens: opts.max_reasoning_tokens,
        ..ReasoningOptions::default()
    };
    if opts.reasoned_subset > 0 && reasoning.validate().is_err() {
        return Err(Error::Config(format!(
            "--max-reasoning-tokens {} is outside 1..={MAX_REASONING_TOKENS}",
            opts.max_reasoning_tokens
        )));
    }
    let ScoringInputs {
        catalog,
        rubric,
        builder,
    } = opts.inputs.load()?;
    let mut examples = crate::data::read_examples(&opts.test)?;
    if let Some(limit) = opts.limit {
        examples.truncate(limit);
    }
    if examples.is_empty() {
        return Err(Error::File {
            path: opts.test.clone(),
            message: "no test examples".into(),
        });
    }
    let prepared = prepare_examples(&examples, &rubric, &opts.test)?;
    let probes = catalog.probes(SplitSelection::All);
    let infos = probe_infos(&probes);
    let subset = opts.reasoned_subset.min(prepared.len());
    let ids: Vec<&str> = prepared.iter().map(|p| p.id.as_str()).collect();
    let earlier = opts
        .reuse
        .iter()
        .map(|path| reusable_report(path, &opts.model, &opts.test, &ids, &infos))
        .collect::<Result<Vec<_>>>()?;
    let reasoned_probes: Vec<Probe> = probes
        .iter()
        .filter(|p| opts.reasoned_probes.includes(p))
        .cloned()
        .collect();
    let reasoned_infos = probe_infos(&reasoned_probes);
    let earlier_direct: Vec<ConditionResult> = earlier
        .iter()
        .flat_map(|e| e.conditions.iter().cloned())
        .collect();
    let earlier_reasoned: Vec<ConditionResult> = earlier
        .iter()
        .filter_map(|e| e.reasoned.as_ref())
        .filter(|r| {
            r.examples == subset
                && r.max_reasoning_tokens == opts.max_reasoning_tokens
                && r.probes_or(&infos) == reasoned_infos.as_slice()
        })
        .flat_map(|r| r.conditions.iter().cloned())
        .collect();

    let load = Instant::now();
    let engine_options = EngineOptions {
        threads: opts.threads,
        ..EngineOptions::default()
    };
    let base = Engine::open(&opts.model, &engine_options)?;
    let mut engines = vec![base];
    let mut conditions = vec![Condition {
        name: "base".into(),
        kind: ConditionKind::Base,
        mitigate: false,
        engine: 0,
    }];
    if opts.mitigation {
        conditions.push(Condition {
            name: "prompt-mitigation".into(),
            kind: ConditionKind::PromptMitigation,
            mitigate: true,
            engine: 0,
        });
    }
    for a in &opts.adapters {
        engines.push(adapter_engine(&engines[0], a)?);
        conditions.push(Condition {
            name: a.name.clone(),
            kind: ConditionKind::Adapter {
                dir: a.dir.display().to_string(),
            },
            mitigate: false,
            engine: engines.len() - 1,
        });
    }
    let load_seconds = load.elapsed().as_secs_f64();

    let bar = progress_bar(
        opts.progress,
        (conditions.len() * (prepared.len() + subset)) as u64,
        "{spinner} {msg:>24} [{bar:30}] {pos}/{len} measurements {elapsed} (eta {eta})",
    );
    let results = measure_conditions(&conditions, &earlier_direct, &prepared, &bar, "", |c, p| {
        measure_example(
            &engines[c.engine],
            &builder,
            &p.transcript,
            p.item,
            &probes,
            c.mitigate,
        )
    })?;
    let mut reasoned = None;
    if subset > 0 {
        let t = Instant::now();
        let measured = measure_conditions(
            &conditions,
            &earlier_reasoned,
            &prepared[..subset],
            &bar,
            " (reasoned)",
            |c, p| {
                measure_example_reasoned(
                    &engines[c.engine],
                    &builder,
                    &p.transcript,
                    p.item,
                    &reasoned_probes,
                    c.mitigate,
                    &reasoning,
                )
            },
        )?;
        reasoned = Some(ReasonedSection {
            examples: subset,
            transcripts: count_transcripts(&prepared[..subset]),
            max_reasoning_tokens: opts.max_reasoning_tokens,
            probes: reasoned_infos,
            conditions: measured,
            seed_means: Vec::new(),
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    bar.finish_and_clear();

    let mut report = EvalReport {
        schema_version: report::EVAL_SCHEMA_VERSION,
        model: opts.model.display().to_string(),
        test_set: opts.test.display().to_string(),
        examples: prepared.len(),
        transcripts: count_transcripts(&prepared),
        probes: infos,
        bootstrap: opts.bootstrap,
        conditions: results,
        seed_means: Vec::new(),
        reasoned,
        load_seconds,
        total_seconds: 0.0,
    };
    summarise_report(&mut report);
    report.total_seconds = started.elapsed().as_secs_f64();
    write_outputs(&report, &opts.out_dir)?;
    Ok(report)
}

/// Measures every condition on `records` with `measure`, or takes it from `earlier` (same name
/// and kind, the first match); `suffix` labels the progress bar.
fn measure_conditions(
    conditions: &[Condition],
    earlier: &[ConditionResult],
    records: &[Prepared<'_>],
    bar: &indicatif::ProgressBar,
    suffix: &str,
    measure: impl Fn(&Condition, &Prepared<'_>) -> Result<ExampleMeasurement>,
) -> Result<Vec<ConditionResult>> {
    let mut out = Vec::with_capacity(conditions.len());
    for c in conditions {
        let done = earlier
            .iter()
            .find(|e| e.name == c.name && e.condition == c.kind);
        if let Some(done) = done {
            out.push(done.clone());
            bar.inc(records.len() as u64);
            continue;
        }
        bar.set_message(format!("{}{suffix}", c.name));
        let t = Instant::now();
        let mut measured = Vec::with_capacity(records.len());
        for p in records {
            measured.push(record(p, measure(c, p)?));
            bar.inc(1);
        }
        out.push(ConditionResult {
            name: c.name.clone(),
            condition: c.kind.clone(),
            summary: report::Summary::default(),
            seconds: t.elapsed().as_secs_f64(),
            records: measured,
        });
    }
    Ok(out)
}

/// Number of distinct transcripts among `records`.
fn count_transcripts(records: &[Prepared<'_>]) -> usize {
    let mut keys: Vec<&str> = records.iter().map(|p| p.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.len()
}

/// (Re)computes every summary and mean over seeds of `report` from its records, in both modes.
pub fn summarise_report(report: &mut EvalReport) {
    report.seed_means =
        summary::summarise_conditions(&report.probes, &mut report.conditions, &report.bootstrap);
    if let Some(r) = &mut report.reasoned {
        let probes = r.probes_or(&report.probes).to_vec();
        r.seed_means = summary::summarise_conditions(&probes, &mut r.conditions, &report.bootstrap);
    }
}

/// One record of the report from its measurement.
fn record(p: &Prepared<'_>, m: ExampleMeasurement) -> RecordResult {
    RecordResult {
        id: p.id.clone(),
        transcript: p.key.clone(),
        gold: p.gold,
        neutral_expected: m.neutral_expected,
        neutral_argmax: m.neutral_argmax,
        neutral_label_mass: m.neutral_label_mass,
        deltas: m.deltas,
        max_tokens_hits: m.max_tokens_hits,
    }
}

/// Validates each example's transcript, finds its rubric item and reads its gold rating.
fn prepare_examples<'r>(
    examples: &[Example],
    rubric: &'r Rubric,
    path: &Path,
) -> Result<Vec<Prepared<'r>>> {
    examples
        .iter()
        .enumerate()
        .map(|(i, ex)| {
            let record_err = |message: String| Error::Record {
                path: path.to_path_buf(),
                line: i + 1,
                message,
            };
            let transcript = Transcript::new(&ex.transcript)
                .map_err(|e| record_err(format!("example `{}`: {e}", ex.id)))?;
            let item = rubric.item(&ex.item).ok_or_else(|| {
                record_err(format!(
                    "example `{}`: rubric item `{}` is not in the rubric",
                    ex.id, ex.item
                ))
            })?;
            Ok(Prepared {
                id: ex.id.clone(),
                key: transcript_key(&ex.id, &ex.transcript),
                transcript,
                item,
                gold: f64::from(ex.gold),
            })
        })
        .collect()
}

/// Reads an earlier report for `--reuse`, after checking it describes the same evaluation
/// (schema, model, test file, record ids and probe list).
fn reusable_report(
    path: &Path,
    model: &Path,
    test: &Path,
    ids: &[&str],
    probes: &[ProbeInfo],
) -> Result<EvalReport> {
    const MAX_REPORT_BYTES: u64 = 256 << 20;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_REPORT_BYTES + 1),
        &mut text,
    )
    .map_err(|e| Error::io(path, e))?;
    let file_err = |message: String| Error::File {
        path: path.to_path_buf(),
        message,
    };
    if text.len() as u64 > MAX_REPORT_BYTES {
        return Err(file_err(format!("is larger than {MAX_REPORT_BYTES} bytes")));
    }
    #[derive(serde::Deserialize)]
    struct Version {
        schema_version: u32,
    }
    let version: Version =
        serde_json::from_str(&text).map_err(|e| file_err(format!("not an eval report: {e}")))?;
    if version.schema_version != report::EVAL_SCHEMA_VERSION {
        return Err(file_err(format!(
            "is an eval report of schema {}, which keeps no per-record deltas; --reuse needs \
             schema {} (rerun eval without --reuse)",
            version.schema_version,
            report::EVAL_SCHEMA_VERSION
        )));
    }
    let earlier: EvalReport =
        serde_json::from_str(&text).map_err(|e| file_err(format!("not an eval report: {e}")))?;
    let same_records = |c: &ConditionResult| {
        c.records.len() == ids.len() && c.records.iter().zip(ids).all(|(r, id)| r.id == *id)
    };
    let same = earlier.model == model.display().to_string()
        && earlier.test_set == test.display().to_string()
        && earlier.probes == probes
        && earlier.conditions.iter().all(same_records);
    if !same {
        return Err(file_err(
            "was made with another model, test set, limit or probe catalog".into(),
        ));
    }
    Ok(earlier)
}

/// Loads a PEFT adapter into the base engine and returns a handle that runs it (the base
/// weights are shared, not copied).
fn adapter_engine(base: &Engine, adapter: &AdapterSpec) -> Result<Engine> {
    base.load_adapter(&adapter.name, &adapter.dir)?;
    Ok(base.with_adapter(Some(&adapter.name))?)
}

/// Writes the JSON report, the Markdown tables and the chart into `dir`.
pub fn write_outputs(report: &EvalReport, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| Error::Config(format!("cannot serialise the report: {e}")))?;
    let json_path = dir.join(REPORT_JSON);
    std::fs::write(&json_path, json + "\n").map_err(|e| Error::io(&json_path, e))?;
    let md_path = dir.join(REPORT_MARKDOWN);
    std::fs::write(&md_path, report::to_markdown(report)).map_err(|e| Error::io(&md_path, e))?;
    plot::write_bias_chart(report, &dir.join(REPORT_CHART))
}
