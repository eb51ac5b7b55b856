//! `completions`: a shell completion script on standard output.

use crate::args::{Cli, CompletionsArgs};
use clap::CommandFactory;
use std::process::ExitCode;

/// Writes the completion script of `args.shell` to standard output.
pub fn run(args: CompletionsArgs) -> debias_guard::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "debias-guard", &mut script);
    crate::output::stdout(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}
