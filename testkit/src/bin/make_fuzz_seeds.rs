//! Writes the seed corpus of every fuzz target: the committed inputs of
//! `tests/corpus/<target>/` and the generated ones (`corpus::generated_cases`: tiny models,
//! adapters and the large malformed files), into `OUT/<target>/`.
//!
//! Run: `cargo run --release -p debias-guard-testkit --bin make_fuzz_seeds -- fuzz/corpus`
//! (`make fuzz-seeds`).

use debias_guard_testkit::corpus::{committed_cases, generated_cases};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: make_fuzz_seeds OUT_DIR");
        return ExitCode::FAILURE;
    };
    let cases = match (committed_cases(), generated_cases()) {
        (Ok(mut committed), Ok(generated)) => {
            committed.extend(generated);
            committed
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for case in &cases {
        let dir = out.join(case.target.name());
        let path = dir.join(&case.name);
        if let Err(e) =
            std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &case.bytes))
        {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("wrote {} seeds under {}", cases.len(), out.display());
    ExitCode::SUCCESS
}
