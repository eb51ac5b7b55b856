//! Evaluation of a scorer before and after debiasing: the `eval` subcommand.
//!
//! On each test example (held-out transcripts) and for each condition — the base model, the
//! prompt-mitigation baseline (the builder's `mitigate` instruction) and every adapter given —
//! the neutral prompt and one prompt per probe wording are scored in one prefix-shared pass
//! ([`debias_guard::guard::bias_deltas`], direct mode: the rating is read right after the
//! prompt). Bias is the mean |Δ expected score| over examples × wordings, reported apart for the
//! catalog's `train` and `heldout` wordings, with the controls as noise floor; accuracy compares
//! the neutral expected score (and most probable label) with gold.
//!
//! - [`metrics`]: correlations, MAE, exact match;
//! - [`measure`]: one condition on one example;
//! - [`report`]: the report type, summaries, Markdown;
//! - [`plot`]: the SVG bias chart.

pub mod measure;
pub mod metrics;
pub mod plot;
pub mod report;

use crate::data::Example;
use crate::error::{Error, Result};
use crate::inputs::{progress_bar, InputFiles, ScoringInputs};
use debias_guard::{Engine, EngineOptions, Rubric, SplitSelection, Transcript};
use measure::{measure_example, ExampleMeasurement, ProbeGroup};
use report::{compare_with_base, group_name, summarise, ConditionKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use report::EvalReport;

/// File names written into the output directory.
pub const REPORT_JSON: &str = "eval.json";
/// Markdown tables.
pub const REPORT_MARKDOWN: &str = "eval.md";
/// Bias chart.
pub const REPORT_CHART: &str = "bias.svg";

/// An adapter to evaluate: a display name and its PEFT directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSpec {
    /// Name in the report (letters, digits, `-`, `_`, `.`).
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
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid || dir.is_empty() {
            return Err(Error::Config(format!(
                "adapter `{s}`: NAME must be 1–64 letters, digits, `-`, `_` or `.`, and DIR non-empty"
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
    /// Evaluate only the first N examples.
    pub limit: Option<usize>,
    /// Engine worker threads (0 = all cores).
    pub threads: usize,
    /// Directory for `eval.json`, `eval.md` and `bias.svg` (created if missing).
    pub out_dir: PathBuf,
    /// An earlier `eval.json` of the same model, test set and probes: conditions found there
    /// (same name and kind) are taken from it instead of being measured again.
    pub reuse: Option<PathBuf>,
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
    /// Adapter to evaluate, as NAME=DIR (repeatable).
    #[arg(long = "adapter", value_name = "NAME=DIR")]
    pub adapters: Vec<AdapterSpec>,
    /// Skip the prompt-mitigation baseline.
    #[arg(long)]
    pub no_mitigation: bool,
    /// Probe catalog, rubric and prompt layout files.
    #[command(flatten)]
    pub inputs: InputFiles,
    /// Evaluate only the first N examples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Output directory (eval.json, eval.md, bias.svg).
    #[arg(long)]
    pub out: PathBuf,
    /// Earlier eval.json (same model, test set, limit and probes) whose conditions are reused.
    #[arg(long)]
    pub reuse: Option<PathBuf>,
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
            threads: a.threads,
            out_dir: a.out,
            reuse: a.reuse,
            progress: true,
        }
    }
}

/// One condition to run.
struct Condition {
    name: String,
    kind: ConditionKind,
    mitigate: bool,
    engine: usize,
}

/// Runs the evaluation, writes `eval.json`, `eval.md` and `bias.svg` into `out_dir`, and
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
    let groups: Vec<ProbeGroup> = probes.iter().map(ProbeGroup::of).collect();
    let categories: Vec<Option<String>> = probes
        .iter()
        .map(|p| match &p.kind {
            debias_guard::guard::ProbeKind::Category { category, .. } => Some(category.clone()),
            debias_guard::guard::ProbeKind::Control => None,
        })
        .collect();
    let mut probe_counts = BTreeMap::new();
    for g in &groups {
        *probe_counts.entry(group_name(*g).to_string()).or_insert(0) += 1;
    }
    let earlier = match &opts.reuse {
        Some(path) => {
            reusable_conditions(path, &opts.model, &opts.test, prepared.len(), &probe_counts)?
        }
        None => Vec::new(),
    };

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
        (conditions.len() * prepared.len()) as u64,
        "{msg:>18} [{bar:30}] {pos}/{len} {elapsed} (eta {eta})",
    );
    let mut results = Vec::with_capacity(conditions.len());
    for c in &conditions {
        if let Some(done) = earlier
            .iter()
            .find(|e| e.name == c.name && e.condition == c.kind)
        {
            results.push(report::ConditionResult {
                vs_base: None,
                ..done.clone()
            });
            bar.inc(prepared.len() as u64);
            continue;
        }
        let t = Instant::now();
        bar.set_message(c.name.clone());
        let mut measurements: Vec<ExampleMeasurement> = Vec::with_capacity(prepared.len());
        for (transcript, item, gold) in &prepared {
            measurements.push(measure_example(
                &engines[c.engine],
                &builder,
                transcript,
                item,
                &probes,
                c.mitigate,
                *gold,
            )?);
            bar.inc(1);
        }
        results.push(summarise(
            &c.name,
            c.kind.clone(),
            &measurements,
            &groups,
            &categories,
            t.elapsed().as_secs_f64(),
        ));
    }
    bar.finish_and_clear();
    compare_with_base(&mut results);

    let report = EvalReport {
        schema_version: report::EVAL_SCHEMA_VERSION,
        model: opts.model.display().to_string(),
        test_set: opts.test.display().to_string(),
        examples: prepared.len(),
        probes: probe_counts,
        conditions: results,
        load_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    write_outputs(&report, &opts.out_dir)?;
    Ok(report)
}

/// Validates each example's transcript, finds its rubric item and reads its gold rating.
fn prepare_examples<'r>(
    examples: &[Example],
    rubric: &'r Rubric,
    path: &Path,
) -> Result<Vec<(Transcript, &'r debias_guard::RubricItem, f64)>> {
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
            Ok((transcript, item, f64::from(ex.gold)))
        })
        .collect()
}

/// Conditions of an earlier report, after checking it describes the same evaluation.
fn reusable_conditions(
    path: &Path,
    model: &Path,
    test: &Path,
    examples: usize,
    probes: &BTreeMap<String, usize>,
) -> Result<Vec<report::ConditionResult>> {
    const MAX_REPORT_BYTES: u64 = 64 << 20;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_REPORT_BYTES + 1),
        &mut text,
    )
    .map_err(|e| Error::io(path, e))?;
    if text.len() as u64 > MAX_REPORT_BYTES {
        return Err(Error::File {
            path: path.to_path_buf(),
            message: format!("is larger than {MAX_REPORT_BYTES} bytes"),
        });
    }
    let earlier: EvalReport = serde_json::from_str(&text).map_err(|e| Error::File {
        path: path.to_path_buf(),
        message: format!("not an eval report: {e}"),
    })?;
    let same = earlier.schema_version == report::EVAL_SCHEMA_VERSION
        && earlier.model == model.display().to_string()
        && earlier.test_set == test.display().to_string()
        && earlier.examples == examples
        && &earlier.probes == probes;
    if !same {
        return Err(Error::File {
            path: path.to_path_buf(),
            message: "was made with another model, test set, limit or probe catalog".into(),
        });
    }
    Ok(earlier.conditions)
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
