//! Writes a tiny random model (a real GGUF file with a BPE vocabulary and a ChatML template) for
//! the C, C++ and Go tests of the C ABI, so they run in seconds and under valgrind.
//!
//! Run: `cargo run --release --example make_tiny_model -- OUT.gguf`

use debias_guard::tiny::{write_tiny_gguf, TinySpec};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: make_tiny_model OUT.gguf");
        return ExitCode::FAILURE;
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("error: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    match write_tiny_gguf(&out, &TinySpec::default()) {
        Ok(()) => {
            println!("wrote {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
