//! Outside reference for Hugging Face bases and PEFT adapters: the tiny models and adapters of
//! `debias_guard_testkit::write_adapter_fixtures` (Llama with two shards, Qwen2 with biases, a
//! bf16 Llama; plain, rsLoRA, rank/alpha-pattern, regex-target and layers_to_transform adapters)
//! were evaluated with transformers + peft by `scripts/peft_reference.py`; the logits are in
//! `tests/fixtures/peft_reference.json`. Our engine, loading the same files, must agree.

use debias_guard::{Engine, EngineOptions};
use debias_guard_testkit::{json_f32s, scratch_dir};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Largest |ours − PEFT| allowed, relative to max(1, |PEFT|): f32 both sides, different
/// summation orders.
const REL_TOL: f32 = 1e-4;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

/// Checks that every input file hashes as when the reference was made (else the generator
/// changed and the fixture must be regenerated: see scripts/README.md).
fn check_inputs(dir: &Path, files: &Value) {
    for (rel, want) in files.as_object().expect("files") {
        let bytes = std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let got = format!("{:x}", Sha256::digest(&bytes));
        assert_eq!(
            got,
            want.as_str().unwrap(),
            "{rel} differs from the file PEFT saw: regenerate tests/fixtures/peft_reference.json"
        );
    }
}

fn compare(name: &str, engine: &Engine, tokens: &[u32], rows: &[usize], want: &Value) -> f32 {
    let got = engine.logits(tokens, rows).expect("logits");
    let mut worst = 0f32;
    for (row, expected) in got.iter().zip(want.as_array().expect("rows")) {
        let expected = json_f32s(expected);
        assert_eq!(row.len(), expected.len(), "{name}: vocabulary size");
        for (a, b) in row.iter().zip(&expected) {
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
    }
    assert!(
        worst <= REL_TOL,
        "{name}: logits differ from PEFT by {worst} (relative)"
    );
    worst
}

#[test]
fn bases_and_adapters_match_transformers_and_peft() {
    let fx = fixture();
    let dir = scratch_dir("peft-parity");
    debias_guard_testkit::write_adapter_fixtures(&dir).expect("write fixtures");
    let rows: Vec<usize> = fx["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_u64().unwrap() as usize)
        .collect();
    let options = EngineOptions {
        threads: 2,
        ..Default::default()
    };
    let mut checked = 0;
    for (name, base) in fx["bases"].as_object().unwrap() {
        check_inputs(&dir, &base["files"]);
        let engine = Engine::open(dir.join(base["dir"].as_str().unwrap()), &options).unwrap();
        let tokens: Vec<u32> = base["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        let worst = compare(name, &engine, &tokens, &rows, &base["logits"]);
        eprintln!("base {name}: worst relative difference {worst:.2e}");
        for (aname, adapter) in fx["adapters"].as_object().unwrap() {
            if adapter["base"] != name.as_str() {
                continue;
            }
            check_inputs(&dir, &adapter["files"]);
            engine
                .load_adapter(aname, dir.join(adapter["dir"].as_str().unwrap()))
                .unwrap_or_else(|e| panic!("{aname}: {e}"));
            let adapted = engine.with_adapter(Some(aname)).unwrap();
            let worst = compare(aname, &adapted, &tokens, &rows, &adapter["logits"]);
            eprintln!("adapter {aname}: worst relative difference {worst:.2e}");
            checked += 1;
        }
    }
    assert_eq!(checked, fx["adapters"].as_object().unwrap().len());
}
