//! `debias-guard-trainer`: command-line entry point; each subcommand lives in its own module.

use clap::{Parser, Subcommand};
use debias_guard_trainer::{eval, pairs, synth, train, Result};

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
    Synth(synth::SynthArgs),
    /// Build preference pairs from a model's own reasoning with and without spurious contexts.
    Pairs(pairs::PairsArgs),
    /// Train a LoRA adapter with Debiasing-DPO.
    Train(train::TrainArgs),
    /// Export a training checkpoint as a PEFT adapter.
    Export(train::ExportArgs),
    /// Evaluate accuracy and bias of a base model with and without an adapter.
    Eval(eval::EvalArgs),
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Synth(args) => synth::run(&args),
        Command::Pairs(args) => {
            let summary = pairs::run(&args.into())?;
            eprintln!(
                "{} pairs written ({} already present)",
                summary.pairs_written, summary.pairs_already_done
            );
            Ok(())
        }
        Command::Train(args) => train::run(&args),
        Command::Export(args) => train::export(&args),
        Command::Eval(args) => eval::run(&args.into()).map(|_| ()),
    }
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
