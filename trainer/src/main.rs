//! `debias-guard-trainer`: command-line entry point; each subcommand lives in its own module.

use clap::{Parser, Subcommand};

/// Debiasing-DPO training of LoRA adapters for debias-guard scorers.
#[derive(Parser)]
#[command(name = "debias-guard-trainer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The trainer's subcommands, in pipeline order.
#[derive(Subcommand)]
enum Command {
    /// Write a synthetic NCTE-format data set (train.jsonl, test.jsonl).
    Synth,
    /// Build preference pairs from a model's own reasoning with and without spurious contexts.
    Pairs,
    /// Train a LoRA adapter with Debiasing-DPO.
    Train,
    /// Export a training checkpoint as a PEFT adapter.
    Export,
    /// Evaluate accuracy and bias of a base model with and without an adapter.
    Eval,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result: debias_guard_trainer::Result<()> = match cli.command {
        Command::Synth | Command::Pairs | Command::Train | Command::Export | Command::Eval => Err(
            debias_guard_trainer::Error::Config("subcommand not built yet".into()),
        ),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
