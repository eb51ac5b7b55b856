//! Writes the Hugging Face base models and PEFT adapters that `scripts/peft_reference.py`
//! evaluates with transformers + peft (see `debias_guard_testkit::write_adapter_fixtures`).
//!
//! Usage: `cargo run --release -p debias-guard-testkit --bin make_adapter_fixtures [-- OUT_DIR]`
//! (default `target/adapter-fixtures`).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/adapter-fixtures"));
    match debias_guard_testkit::write_adapter_fixtures(&dir) {
        Ok(manifest) => {
            let count = |key: &str| manifest[key].as_object().map_or(0, |m| m.len());
            println!(
                "wrote {} base models and {} adapters to {} (manifest.json lists them)",
                count("bases"),
                count("adapters"),
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
