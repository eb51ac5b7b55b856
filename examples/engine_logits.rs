//! Prints this engine's logits for a list of token ids as JSON, in the shape the reference
//! scripts compare against (`scripts/peft_reference.py --engine-logits`,
//! `scripts/check_gguf_export.py --engine-logits`):
//! `{"tokens": [ids], "positions": [0, 1, …], "logits": [[vocab floats] per position]}`.
//!
//! Run: `cargo run --release --example engine_logits -- MODEL TOKENS_CSV [OUT [ADAPTER_DIR]]`
//! (MODEL: a GGUF file or a Hugging Face model directory; OUT: a file, or `-` / nothing for
//! stdout; ADAPTER_DIR: a PEFT adapter made active for the run).

use debias_guard::{Engine, EngineOptions, Error};
use serde_json::json;
use std::process::ExitCode;

fn run() -> debias_guard::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model, tokens_csv) = match args.as_slice() {
        [m, t] | [m, t, _] | [m, t, _, _] => (m, t),
        _ => {
            return Err(Error::InvalidInput(
                "usage: engine_logits MODEL TOKENS_CSV [OUT [ADAPTER_DIR]]".into(),
            ))
        }
    };
    let tokens = tokens_csv
        .split(',')
        .map(|t| {
            t.trim()
                .parse::<u32>()
                .map_err(|e| Error::InvalidInput(format!("token id `{t}`: {e}")))
        })
        .collect::<debias_guard::Result<Vec<u32>>>()?;
    let mut engine = Engine::open(model, &EngineOptions::default())?;
    if let Some(adapter) = args.get(3) {
        engine.load_adapter("adapter", adapter)?;
        engine = engine.with_adapter(Some("adapter"))?;
    }
    let positions: Vec<usize> = (0..tokens.len()).collect();
    let logits = engine.logits(&tokens, &positions)?;
    let text = json!({ "tokens": tokens, "positions": positions, "logits": logits }).to_string();
    match args.get(2).filter(|o| *o != "-") {
        Some(out) => std::fs::write(out, text + "\n").map_err(|e| Error::io(out, e)),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
