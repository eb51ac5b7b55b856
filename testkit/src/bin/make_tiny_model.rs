//! Writes a tiny random model (a real GGUF file with a BPE vocabulary and a ChatML template) for
//! the C, C++ and Go tests of the C ABI, so they run in seconds and under valgrind, and a random
//! PEFT LoRA adapter for it in `tiny-adapter/` next to the model.
//!
//! Run: `cargo run --release -p debias-guard-testkit --bin make_tiny_model -- OUT.gguf`

use debias_guard::adapter::PeftConfig;
use debias_guard_testkit::{tiny_adapter, write_tiny_gguf, TinySpec};
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
    let adapter_dir = out.with_file_name("tiny-adapter");
    let written = write_tiny_gguf(&out, &TinySpec::default()).and_then(|()| {
        let config = debias_guard::weights::DenseCheckpoint::load(&out)?.config;
        let peft = PeftConfig::lora(4, 8.0, &["q_proj", "v_proj", "down_proj"]);
        tiny_adapter(&config, peft, 3)?.save(&adapter_dir)
    });
    match written {
        Ok(()) => {
            println!("wrote {} and {}", out.display(), adapter_dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
