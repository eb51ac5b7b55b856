//! Helpers shared by the integration tests: generated tiny models and the real default model.
#![allow(dead_code)]

use debias_guard::tiny::{write_tiny_gguf, TinySpec};
use debias_guard::{Engine, EngineOptions};
use std::path::PathBuf;

/// Path of the real default model (fetched by `make model`).
pub const REAL_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// A fresh directory for one test's files.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("debias-guard-tests")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes a tiny model with `spec` and returns its path.
pub fn tiny_model(name: &str, spec: &TinySpec) -> PathBuf {
    let path = scratch_dir(name).join("tiny.gguf");
    write_tiny_gguf(&path, spec).expect("write tiny model");
    path
}

/// Opens a tiny model with the given prefill chunk.
pub fn tiny_engine(name: &str, spec: &TinySpec, chunk: usize) -> Engine {
    let path = tiny_model(name, spec);
    let options = EngineOptions {
        threads: 2,
        prefill_chunk: chunk,
        ..Default::default()
    };
    Engine::open(path, &options).expect("open tiny model")
}

/// The real default model; fails with instructions when it has not been fetched.
pub fn real_model_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(REAL_MODEL);
    assert!(
        path.exists(),
        "{} is missing: run `make model` (or `make test`, which fetches it)",
        path.display()
    );
    path
}

/// A short classroom transcript used across tests.
pub const SAMPLE_TRANSCRIPT: &str = "TEACHER: What do you notice about these two fractions?\n\
STUDENT: The bottom numbers are different.\n\
TEACHER: Why might that matter when we compare them?\n\
STUDENT: Because the pieces are different sizes, so you cannot just look at the top.\n";

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Largest absolute difference between two logit matrices.
pub fn max_logit_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Logits at every position of the sample transcript.
pub fn transcript_logits(engine: &Engine) -> Vec<Vec<f32>> {
    let tokens = engine.tokenize(SAMPLE_TRANSCRIPT).expect("tokenize");
    let positions: Vec<usize> = (0..tokens.len()).collect();
    engine.logits(&tokens, &positions).expect("logits")
}

/// PEFT module names of every projection (`q_proj`, …, `down_proj`).
pub fn all_projection_modules() -> Vec<&'static str> {
    debias_guard::model::Projection::ALL
        .iter()
        .map(|p| p.hf_module())
        .collect()
}

/// A random adapter with non-zero A and B for the model at `base`.
pub fn random_adapter(
    base: &std::path::Path,
    config: debias_guard::adapter::PeftConfig,
    seed: u64,
) -> debias_guard::adapter::PeftAdapter {
    let model = debias_guard::weights::DenseCheckpoint::load(base)
        .expect("dense weights")
        .config;
    debias_guard::tiny::tiny_adapter(&model, config, seed).expect("random adapter")
}
