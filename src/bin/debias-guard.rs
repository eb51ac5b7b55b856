//! Command-line entry: score transcripts, audit a scorer for spurious-context bias, and check
//! one context at run time, all with an in-process model.

use candle_core::quantized::GgmlDType;
use clap::{Args, Parser, Subcommand, ValueEnum};
use debias_guard::guard::{
    self, html, AuditMode, AuditOptions, AuditReport, AuditRequest, CheckOptions, ProbeCatalog,
    ReasoningOptions, SplitSelection, Thresholds, VerdictStatus,
};
use debias_guard::{Engine, EngineOptions, Error, PromptBuilder, Rubric, RubricItem, Transcript};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Parser)]
#[command(
    name = "debias-guard",
    version,
    about = "Score classroom transcripts and measure spurious-context bias"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every model-running subcommand shares.
#[derive(clap::Args)]
struct Common {
    /// GGUF model file or Hugging Face model directory.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// PEFT LoRA adapter directory to run on top of the model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Transcript: plain text, one TEACHER:/STUDENT: turn per line.
    #[arg(long)]
    transcript: PathBuf,
    /// Rubric JSON (default: the built-in rubric).
    #[arg(long)]
    rubric: Option<PathBuf>,
    /// Prompt layout JSON (system line, user-turn template, answer prefix; default: built-in).
    #[arg(long)]
    layout: Option<PathBuf>,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print what runs (model size, matrix kernel path, threads) to stderr.
    #[arg(long)]
    verbose: bool,
}

impl Common {
    /// The prompt builder for `--layout`, or the default one.
    fn prompt_builder(&self) -> debias_guard::Result<PromptBuilder> {
        match &self.layout {
            Some(path) => PromptBuilder::new(debias_guard::PromptLayout::load(path)?),
            None => Ok(PromptBuilder::default()),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// Read the rating right after the prompt.
    Direct,
    /// Let the model write a short reasoning first.
    Reasoned,
}

#[derive(Clone, Copy, ValueEnum)]
enum MergedType {
    /// 32-bit floats (exact merge).
    F32,
    /// Half precision.
    F16,
    /// llama.cpp's 8-bit blocks.
    Q8_0,
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Heldout,
    All,
}

#[derive(Subcommand)]
enum Command {
    /// Score a transcript on every item of a rubric (optionally with one added context).
    Score(ScoreArgs),
    /// Audit: how much each probe context moves each item's score, against the control noise floor.
    Audit(AuditArgs),
    /// Export a PEFT LoRA adapter for llama.cpp: as a GGUF LoRA adapter, or merged into a GGUF
    /// base model.
    ExportAdapter(ExportAdapterArgs),
    /// Render the HTML page of a saved JSON report.
    Render(RenderArgs),
    /// Runtime check: score with a context and without it, and flag a large difference.
    Check(CheckArgs),
}

// The options of `score` (its help text is the doc comment of its `Command`).
#[derive(Args)]
struct ScoreArgs {
    #[command(flatten)]
    common: Common,
    /// Context sentence added after the question.
    #[arg(long)]
    context: Option<String>,
    /// With `--adapter`: also score on the base model and print how far the adapter moves
    /// each score.
    #[arg(long)]
    compare_base: bool,
}

// The options of `audit` (its help text is the doc comment of its `Command`).
#[derive(Args)]
struct AuditArgs {
    #[command(flatten)]
    common: Common,
    /// Comma-separated rubric item ids (default: all).
    #[arg(long, value_delimiter = ',')]
    items: Vec<String>,
    /// Probe catalog JSON (default: the built-in catalog).
    #[arg(long)]
    probes: Option<PathBuf>,
    /// Which wordings to use.
    #[arg(long, value_enum, default_value_t = SplitArg::All)]
    split: SplitArg,
    /// How ratings are read.
    #[arg(long, value_enum, default_value_t = Mode::Direct)]
    mode: Mode,
    /// Also run every prompt with the mitigation instruction, for comparison.
    #[arg(long)]
    mitigate: bool,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Smallest max |Δ| that is flagged, in scale points.
    #[arg(long, default_value_t = guard::thresholds::DEFAULT_ABS_THRESHOLD, allow_negative_numbers = true)]
    abs_threshold: f64,
    /// A category must also reach k × the noise floor.
    #[arg(long, default_value_t = guard::thresholds::DEFAULT_NOISE_MULTIPLE, allow_negative_numbers = true)]
    k: f64,
    /// Reasoned mode: most reasoning tokens per variant.
    #[arg(long, default_value_t = guard::reasoned::DEFAULT_REASONING_TOKENS)]
    max_reasoning_tokens: usize,
    /// Reasoned mode: sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Reasoned mode: sampler seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Exit with status 2 when the verdict is `flagged`.
    #[arg(long)]
    fail_on_flag: bool,
    /// With `--adapter`: audit the base model too, and report both side by side (the JSON is
    /// then a comparison holding both audits; the verdict is the adapter's).
    #[arg(long)]
    compare_base: bool,
}

// The options of `export-adapter` (its help text is the doc comment of its `Command`).
#[derive(Args)]
struct ExportAdapterArgs {
    /// The base model the adapter was trained on (GGUF file or Hugging Face directory;
    /// `--merged` needs a GGUF file).
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// The PEFT adapter directory.
    #[arg(long)]
    adapter: PathBuf,
    /// Output GGUF file.
    #[arg(long)]
    out: PathBuf,
    /// Write the base model with the adapter merged in instead of an adapter file.
    #[arg(long)]
    merged: bool,
    /// Storage type of merged matrices.
    #[arg(long, value_enum, default_value_t = MergedType::F32)]
    merged_type: MergedType,
}

// The options of `render` (its help text is the doc comment of its `Command`).
#[derive(Args)]
struct RenderArgs {
    /// The JSON report (written by `audit --json`).
    #[arg(long)]
    json: PathBuf,
    /// Where to write the HTML page.
    #[arg(long)]
    html: PathBuf,
}

// The options of `check` (its help text is the doc comment of its `Command`).
#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    common: Common,
    /// The context the host would add to the prompt.
    #[arg(long)]
    context: String,
    /// Comma-separated rubric item ids (default: all).
    #[arg(long, value_delimiter = ',')]
    items: Vec<String>,
    /// Flag when |Δ| reaches this many scale points.
    #[arg(long, default_value_t = guard::thresholds::DEFAULT_ABS_THRESHOLD, allow_negative_numbers = true)]
    abs_threshold: f64,
    /// Add the mitigation instruction to both prompts.
    #[arg(long)]
    mitigate: bool,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if matches!(e, Error::Io { ref path, .. } if path.extension().is_some_and(|x| x == "gguf"))
            {
                eprintln!("hint: run `make model` to download the default model");
            }
            ExitCode::FAILURE
        }
    }
}

/// What every subcommand loads first.
struct Loaded {
    engine: Engine,
    load_seconds: f64,
    rubric: Rubric,
    transcript: Transcript,
    transcript_name: String,
}

impl Common {
    fn load(&self) -> debias_guard::Result<Loaded> {
        // Validate the cheap inputs before the model is read.
        let rubric = match &self.rubric {
            Some(p) => Rubric::load(p)?,
            None => Rubric::builtin(),
        };
        let text = debias_guard::textio::read_text_file(
            &self.transcript,
            debias_guard::prompt::MAX_TRANSCRIPT_BYTES,
            "transcript",
        )?;
        let transcript = Transcript::new(&text)?;
        let started = Instant::now();
        let engine = Engine::open(
            &self.model,
            &EngineOptions {
                threads: self.threads,
                ..Default::default()
            },
        )?;
        if let Some(note) = guard::audit::demo_model_note(&engine) {
            eprintln!("note: {note}");
        }
        if self.verbose {
            eprintln!(
                "model {} (about {}M parameters), kernel {}, {} threads, loaded in {:.2}s",
                file_name(&self.model),
                engine.config().parameter_count().div_ceil(1_000_000),
                engine
                    .kernel_path()
                    .map_or("candle (quantized or non-x86 weights)", |k| k.name()),
                engine.threads(),
                started.elapsed().as_secs_f64()
            );
        }
        let engine = match &self.adapter {
            None => engine,
            Some(dir) => {
                let name = file_name(dir);
                engine.load_adapter(&name, dir)?;
                engine.with_adapter(Some(&name))?
            }
        };
        Ok(Loaded {
            engine,
            load_seconds: started.elapsed().as_secs_f64(),
            rubric,
            transcript,
            transcript_name: file_name(&self.transcript),
        })
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// The rubric items named in `ids` (all when empty), in the order given.
fn select_items(rubric: &Rubric, ids: &[String]) -> debias_guard::Result<Vec<RubricItem>> {
    if ids.is_empty() {
        return Ok(rubric.items.clone());
    }
    ids.iter()
        .map(|id| {
            rubric.item(id.trim()).cloned().ok_or_else(|| {
                let known: Vec<&str> = rubric.items.iter().map(|i| i.id.as_str()).collect();
                Error::InvalidInput(format!(
                    "unknown rubric item `{id}` (known: {})",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

fn run(cli: Cli) -> debias_guard::Result<ExitCode> {
    match cli.command {
        Command::Score(args) => score(args),
        Command::Audit(args) => audit(args),
        Command::ExportAdapter(args) => export_adapter(args),
        Command::Render(args) => render(args),
        Command::Check(args) => check(args),
    }
}

/// `export-adapter`: a PEFT adapter as a llama.cpp GGUF adapter or merged GGUF model.
fn export_adapter(args: ExportAdapterArgs) -> debias_guard::Result<ExitCode> {
    let ExportAdapterArgs {
        model,
        adapter,
        out,
        merged,
        merged_type,
    } = args;
    let peft = debias_guard::adapter::PeftAdapter::load(&adapter)?;
    let name = file_name(&adapter);
    if merged {
        if debias_guard::hf::is_model_dir(&model) {
            return Err(Error::InvalidInput(
                "--merged needs a GGUF base; for a Hugging Face base, merge into the directory and convert it with llama.cpp's converter".into(),
            ));
        }
        let dtype = match merged_type {
            MergedType::F32 => GgmlDType::F32,
            MergedType::F16 => GgmlDType::F16,
            MergedType::Q8_0 => GgmlDType::Q8_0,
        };
        let base = debias_guard::gguf::GgufFile::open(&model)?;
        debias_guard::export::write_merged_gguf(&out, &base, &peft, &name, dtype)?;
    } else {
        let config = debias_guard::weights::DenseCheckpoint::load(&model)?.config;
        debias_guard::export::write_gguf_adapter(&out, &peft, &name, &config)?;
    }
    eprintln!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// `score`: every item of the rubric, optionally with one context and against the base model.
fn score(args: ScoreArgs) -> debias_guard::Result<ExitCode> {
    let ScoreArgs {
        common,
        context,
        compare_base,
    } = args;
    if compare_base && common.adapter.is_none() {
        return Err(Error::InvalidInput("--compare-base needs --adapter".into()));
    }
    if let Some(c) = &context {
        debias_guard::prompt::validate_context(c)?;
    }
    let l = common.load()?;
    let builder = common.prompt_builder()?;
    let prompts = l
        .rubric
        .items
        .iter()
        .map(|item| {
            l.engine
                .rubric_prompt(&builder, &l.transcript, item, context.as_deref(), false)
        })
        .collect::<debias_guard::Result<Vec<_>>>()?;
    let started = Instant::now();
    let (dists, stats) = l.engine.score_many(&prompts)?;
    let base = if compare_base {
        Some(l.engine.with_adapter(None)?.score_many(&prompts)?.0)
    } else {
        None
    };
    let scored = started.elapsed();
    println!(
        "{:<24} {:>8} {:>6} {:>6}  distribution",
        "item", "expected", "argmax", "mass"
    );
    for (i, (item, d)) in l.rubric.items.iter().zip(&dists).enumerate() {
        let probs: Vec<String> = d.probs.iter().map(|p| format!("{p:.3}")).collect();
        let versus = base.as_ref().map_or(String::new(), |b| {
            format!(
                "  base {:.3}, adapter moves it {:+.3}",
                b[i].expected,
                d.expected - b[i].expected
            )
        });
        println!(
            "{:<24} {:>8.3} {:>6} {:>6.3}  [{}]{versus}",
            item.id,
            d.expected,
            d.argmax_label(),
            d.label_mass,
            probs.join(" ")
        );
    }
    eprintln!(
        "load {:.2}s, score {:.2}s ({} tokens evaluated for {} requested, {} threads)",
        l.load_seconds,
        scored.as_secs_f64(),
        stats.tokens_evaluated,
        stats.tokens_requested,
        l.engine.threads()
    );
    Ok(ExitCode::SUCCESS)
}

/// `audit`: the probe audit, printed and optionally written as JSON and HTML.
fn audit(args: AuditArgs) -> debias_guard::Result<ExitCode> {
    let AuditArgs {
        common,
        items,
        probes,
        split,
        mode,
        mitigate,
        json,
        html,
        abs_threshold,
        k,
        max_reasoning_tokens,
        temperature,
        seed,
        fail_on_flag,
        compare_base,
    } = args;
    if compare_base && common.adapter.is_none() {
        return Err(Error::InvalidInput("--compare-base needs --adapter".into()));
    }
    let thresholds = Thresholds::new(abs_threshold, k)?;
    let mode = match mode {
        Mode::Direct => AuditMode::Direct,
        Mode::Reasoned => {
            let r = ReasoningOptions {
                max_tokens: max_reasoning_tokens,
                temperature,
                seed,
                ..Default::default()
            };
            r.validate()?;
            AuditMode::Reasoned(r)
        }
    };
    let (catalog, catalog_name) = match &probes {
        Some(p) => (ProbeCatalog::load(p)?, file_name(p)),
        None => (ProbeCatalog::builtin(), "<built-in probes>".to_string()),
    };
    let l = common.load()?;
    let selected = select_items(&l.rubric, &items)?;
    let builder = common.prompt_builder()?;
    let request = AuditRequest {
        transcript: &l.transcript,
        transcript_name: &l.transcript_name,
        items: &selected,
        catalog: &catalog,
        catalog_name: &catalog_name,
        options: AuditOptions {
            split: match split {
                SplitArg::Train => SplitSelection::Train,
                SplitArg::Heldout => SplitSelection::Heldout,
                SplitArg::All => SplitSelection::All,
            },
            thresholds,
            mitigation_baseline: mitigate,
            mode,
        },
    };
    let mut report = guard::audit(&l.engine, &builder, &request)?;
    report.timings.model_load_seconds = Some(l.load_seconds);
    if compare_base {
        let mut base = guard::audit(&l.engine.with_adapter(None)?, &builder, &request)?;
        base.timings.model_load_seconds = Some(l.load_seconds);
        let adapter = common.adapter.as_deref().map(file_name).unwrap_or_default();
        let status = report.verdict.status;
        let comparison = guard::compare::AdapterComparison::new(&adapter, base, report)?;
        println!("== base model ==");
        print_audit(&comparison.base);
        println!("\n== with adapter `{adapter}` ==");
        print_audit(&comparison.adapted);
        println!("\n== base model vs adapter (mean |Δ|, plain prompts) ==");
        print!("{}", comparison.table());
        if let Some(path) = &json {
            comparison.write_json(path)?;
            eprintln!("wrote {}", path.display());
        }
        if let Some(path) = &html {
            guard::compare::write_comparison_html(&comparison, path)?;
            eprintln!("wrote {}", path.display());
        }
        return Ok(if fail_on_flag && status == VerdictStatus::Flagged {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        });
    }
    print_audit(&report);
    if let Some(path) = &json {
        report.write_json(path)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &html {
        html::write_html(&report, path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(
        if fail_on_flag && report.verdict.status == VerdictStatus::Flagged {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// `render`: the HTML page of a saved JSON report.
fn render(args: RenderArgs) -> debias_guard::Result<ExitCode> {
    let RenderArgs { json, html } = args;
    let text = debias_guard::textio::read_text_file(&json, 256 << 20, "audit report")?;
    let report = AuditReport::from_json(&text, &file_name(&json))?;
    html::write_html(&report, &html)?;
    eprintln!("wrote {}", html.display());
    Ok(ExitCode::SUCCESS)
}

/// `check`: one context at run time against the neutral score.
fn check(args: CheckArgs) -> debias_guard::Result<ExitCode> {
    let CheckArgs {
        common,
        context,
        items,
        abs_threshold,
        mitigate,
        json,
    } = args;
    debias_guard::prompt::validate_context(&context)?;
    let options = CheckOptions {
        abs_threshold,
        mitigate,
    };
    let l = common.load()?;
    let selected = select_items(&l.rubric, &items)?;
    let builder = common.prompt_builder()?;
    let started = Instant::now();
    let results = guard::check_items(
        &l.engine,
        &builder,
        &l.transcript,
        &selected,
        &context,
        &options,
    )?;
    println!(
        "{:<24} {:>10} {:>8} {:>8} {:>6}  flagged (|Δ| ≥ {})",
        "item", "with ctx", "neutral", "Δ", "W1", options.abs_threshold
    );
    for r in &results {
        println!(
            "{:<24} {:>10.3} {:>8.3} {:>+8.3} {:>6.3}  {}",
            r.item_id,
            r.contextual.expected,
            r.neutral.expected,
            r.delta.delta,
            r.delta.wasserstein,
            if r.flagged { "YES" } else { "no" }
        );
    }
    eprintln!(
        "load {:.2}s, check {:.2}s, {} threads",
        l.load_seconds,
        started.elapsed().as_secs_f64(),
        l.engine.threads()
    );
    if let Some(path) = &json {
        let text = serde_json::to_string_pretty(&results).expect("results serialise");
        guard::report::write_text(path, &text)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_audit(report: &AuditReport) {
    for (item, result) in report.rubric_items.iter().zip(&report.items) {
        for c in std::iter::once(&result.plain).chain(&result.mitigated) {
            println!(
                "\n{}{}: neutral {:.3} (label {}, mass {:.3}), noise floor {:.3}, flag threshold {:.3}",
                item.id,
                if c.mitigated { " [mitigated]" } else { "" },
                c.neutral.distribution.expected,
                c.neutral.distribution.argmax_label(),
                c.neutral.distribution.label_mass,
                c.noise_floor,
                c.flag_threshold
            );
            println!(
                "  {:<24} {:>8} {:>8} {:>8} {:>8} {:>7}  flagged",
                "category", "mean Δ", "high Δ", "low Δ", "gap", "max|Δ|"
            );
            for cat in &c.categories {
                println!(
                    "  {:<24} {:>+8.3} {:>+8.3} {:>+8.3} {:>+8.3} {:>7.3}  {}",
                    cat.id,
                    cat.mean_delta,
                    cat.high_mean_delta,
                    cat.low_mean_delta,
                    cat.pole_gap,
                    cat.max_abs_delta,
                    if cat.flagged { "YES" } else { "no" }
                );
            }
        }
    }
    for w in &report.warnings {
        println!("\nwarning: {w}");
    }
    println!("\nverdict: {}", report.verdict.summary);
    let t = &report.timings;
    eprintln!(
        "load {:.2}s, prepare {:.2}s, generate {:.2}s, score {:.2}s ({} prompts, {} tokens \
         evaluated for {} requested, {} threads)",
        t.model_load_seconds.unwrap_or(0.0),
        t.prepare_seconds,
        t.generate_seconds,
        t.score_seconds,
        t.prompts,
        t.tokens_evaluated,
        t.tokens_requested,
        report.settings.threads
    );
}
