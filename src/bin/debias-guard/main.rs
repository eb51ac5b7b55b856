//! Command-line entry: score transcripts, audit a scorer for spurious-context bias, and check
//! one context at run time, all with an in-process model.
//!
//! - [`args`]: the command line; [`commands`]: one module per subcommand;
//! - [`model`]: where the model is found; [`input`]: the transcript (file or stdin);
//! - [`output`]: tables, JSON and CSV to files, stdout or stderr; [`exit`]: exit statuses;
//! - [`progress`]: progress of long commands on stderr.

mod args;
mod commands;
mod exit;
mod input;
mod model;
mod output;
mod progress;

use args::{Cli, Command, Common};
use clap::Parser;
use debias_guard::guard::{self, ProbeCatalog};
use debias_guard::{Engine, EngineOptions, Error, PromptBuilder, Rubric, RubricItem, Transcript};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" that print to stdout and succeed.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::CLEAN
            });
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit::ERROR)
        }
    }
}

fn run(cli: Cli) -> debias_guard::Result<ExitCode> {
    match cli.command {
        Command::Score(args) => commands::score::run(args),
        Command::Audit(args) => commands::audit::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Render(args) => commands::render::run(args),
        Command::ExportAdapter(args) => commands::export::run(args),
        Command::Completions(args) => commands::completions::run(args),
        Command::AuditDataset(args) => commands::dataset::run(args),
    }
}

/// What every model-running subcommand loads first.
pub struct Loaded {
    /// The engine (with the adapter applied when one was given).
    pub engine: Engine,
    /// Seconds spent opening the model.
    pub load_seconds: f64,
    /// The rubric.
    pub rubric: Rubric,
    /// The transcript.
    pub transcript: Transcript,
    /// Its name in reports (file name or `<stdin>`).
    pub transcript_name: String,
}

/// The prompt builder of a `--layout` file, or the default one.
pub fn prompt_builder(layout: Option<&Path>) -> debias_guard::Result<PromptBuilder> {
    match layout {
        Some(path) => PromptBuilder::new(debias_guard::PromptLayout::load(path)?),
        None => Ok(PromptBuilder::default()),
    }
}

/// The rubric of a `--rubric` file, or the built-in one.
pub fn rubric(path: Option<&Path>) -> debias_guard::Result<Rubric> {
    match path {
        Some(p) => Rubric::load(p),
        None => Ok(Rubric::builtin()),
    }
}

/// The probe catalog of a `--probes` file, or the built-in one, with its name in reports.
pub fn probe_catalog(path: Option<&Path>) -> debias_guard::Result<(ProbeCatalog, String)> {
    Ok(match path {
        Some(p) => (ProbeCatalog::load(p)?, file_name(p)),
        None => (ProbeCatalog::builtin(), "<built-in probes>".to_string()),
    })
}

impl Common {
    /// The prompt builder for `--layout`, or the default one.
    pub fn prompt_builder(&self) -> debias_guard::Result<PromptBuilder> {
        prompt_builder(self.layout.as_deref())
    }

    /// Reads the rubric and the transcript (cheap, checked first), then opens the model.
    pub fn load(&self) -> debias_guard::Result<Loaded> {
        let rubric = rubric(self.rubric.as_deref())?;
        let (transcript, transcript_name) = input::read_transcript(&self.transcript)?;
        input::check_turns(&transcript, &transcript_name, self.strict)?;
        let started = Instant::now();
        let engine = self.engine.open()?;
        Ok(Loaded {
            engine,
            load_seconds: started.elapsed().as_secs_f64(),
            rubric,
            transcript,
            transcript_name,
        })
    }
}

impl args::ModelOptions {
    /// Finds and opens the model (with `--adapter` active, loaded or merged), printing the
    /// demo-model note and, with `--verbose`, what runs.
    pub fn open(&self) -> debias_guard::Result<Engine> {
        let model = model::resolve(self.model.as_deref())?;
        let started = Instant::now();
        let merge = self.adapter.clone().filter(|_| self.merge_adapter);
        let engine = Engine::open(
            &model,
            &EngineOptions {
                threads: self.threads,
                merge_adapter: merge.clone(),
                ..Default::default()
            },
        )?;
        if let Some(note) = guard::audit::demo_model_note(&engine) {
            eprintln!("note: {note}");
        }
        if self.verbose {
            eprintln!(
                "model {} (about {}M parameters){}, kernel {}{}, {} threads, loaded in {:.2}s",
                model.display(),
                engine.config().parameter_count().div_ceil(1_000_000),
                merge
                    .as_deref()
                    .map(|d| format!(", adapter {} merged", d.display()))
                    .unwrap_or_default(),
                engine
                    .kernel_path()
                    .map_or("candle (quantized or non-x86 weights)", |k| k.name()),
                engine
                    .packed_format()
                    .map(|f| format!(" ({f} weights)"))
                    .unwrap_or_default(),
                engine.threads(),
                started.elapsed().as_secs_f64()
            );
        }
        match &self.adapter {
            Some(dir) if !self.merge_adapter => {
                let name = file_name(dir);
                engine.load_adapter(&name, dir)?;
                engine.with_adapter(Some(&name))
            }
            _ => Ok(engine),
        }
    }
}

/// The last component of a path (the whole path when it has none).
pub fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// The rubric items named in `ids` (all when empty), in the order given.
pub fn select_items(rubric: &Rubric, ids: &[String]) -> debias_guard::Result<Vec<RubricItem>> {
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
