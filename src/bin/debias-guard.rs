//! Command-line entry: score transcripts on rubric items with an in-process model.

use clap::{Parser, Subcommand};
use debias_guard::{Engine, EngineOptions, PromptBuilder, Rubric, Transcript};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

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

#[derive(Subcommand)]
enum Command {
    /// Score a transcript on every item of a rubric (optionally with one added context).
    Score {
        /// GGUF model file.
        #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
        model: PathBuf,
        /// Transcript: plain text, one TEACHER:/STUDENT: turn per line.
        #[arg(long)]
        transcript: PathBuf,
        /// Rubric JSON (default: the built-in rubric).
        #[arg(long)]
        rubric: Option<PathBuf>,
        /// Context sentence added after the question.
        #[arg(long)]
        context: Option<String>,
        /// Worker threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> debias_guard::Result<()> {
    match cli.command {
        Command::Score {
            model,
            transcript,
            rubric,
            context,
            threads,
        } => {
            let started = Instant::now();
            let engine = Engine::open(
                &model,
                &EngineOptions {
                    threads,
                    ..Default::default()
                },
            )?;
            let loaded = started.elapsed();
            let rubric = match rubric {
                Some(p) => Rubric::load(p)?,
                None => Rubric::builtin(),
            };
            let text = debias_guard::textio::read_text_file(
                &transcript,
                debias_guard::prompt::MAX_TRANSCRIPT_BYTES,
                "transcript",
            )?;
            let transcript = Transcript::new(&text)?;
            let builder = PromptBuilder::default();
            let prompts = rubric
                .items
                .iter()
                .map(|item| {
                    engine.rubric_prompt(&builder, &transcript, item, context.as_deref(), false)
                })
                .collect::<debias_guard::Result<Vec<_>>>()?;
            let started = Instant::now();
            let (dists, stats) = engine.score_many(&prompts)?;
            let scored = started.elapsed();
            println!(
                "{:<24} {:>8} {:>6} {:>6}  distribution",
                "item", "expected", "argmax", "mass"
            );
            for (item, d) in rubric.items.iter().zip(&dists) {
                let probs: Vec<String> = d.probs.iter().map(|p| format!("{p:.3}")).collect();
                println!(
                    "{:<24} {:>8.3} {:>6} {:>6.3}  [{}]",
                    item.id,
                    d.expected,
                    d.argmax_label(),
                    d.label_mass,
                    probs.join(" ")
                );
            }
            eprintln!(
                "load {:.2}s, score {:.2}s ({} tokens evaluated for {} requested, {} threads)",
                loaded.as_secs_f64(),
                scored.as_secs_f64(),
                stats.tokens_evaluated,
                stats.tokens_requested,
                engine.threads()
            );
            Ok(())
        }
    }
}
