//! The test kit of debias-guard: tiny random models and the helpers every test suite shares.
//! A dev-dependency of the library and of the trainer only, so none of it ships.
//!
//! - [`gguf`]: small random models as real GGUF files (BPE vocabulary, ChatML template) and
//!   random LoRA adapters for them;
//! - [`hf`]: the same models as Hugging Face directories, random PEFT adapters with peft's
//!   targeting rules, and the adapter fixture set checked against transformers + peft;
//! - [`fuzz_entry`]: the entry function of each fuzz target (`fuzz/`), shared with the stable
//!   corpus replay test; [`corpus`]: the committed and generated corpus inputs;
//! - here: one scratch-folder and model-cache policy, engines on those models, sample
//!   transcripts, the real default model, and one `max_abs_diff`.
//!
//! Scratch policy: every folder lives under `$TMPDIR/debias-guard-tests/<pid>/`; the first
//! request for a name in a process empties it, later requests in the same process share it.
//! A tiny model is written once per process and name, then reused by every test that asks.

pub mod corpus;
pub mod fuzz_entry;
pub mod gguf;
pub mod hf;
pub mod hostile;

pub use gguf::{
    byte_to_char, random_normal, tiny_adapter, tiny_gguf_parts, tiny_vocabulary, write_gguf,
    write_tiny_gguf, GgufParts, TinySpec, TINY_SPECIAL_TOKENS,
};
pub use hf::{
    fixture_adapters, fixture_bases, linear_modules, lora_targets, tiny_hf_tensors,
    tiny_text_tokenizer, tiny_vocab_size, write_adapter_fixtures, write_random_peft_adapter,
    write_tiny_hf_model, FixtureAdapter, FixtureBase, HfModelSpec, LinearModule, Llama3RopeScaling,
    LoraSpec, LoraTarget, TargetModules,
};

use debias_guard::{Engine, EngineOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Path of the real default model (fetched by `make model`), relative to the workspace root.
pub const REAL_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// A short classroom transcript used across tests.
pub const SAMPLE_TRANSCRIPT: &str = "TEACHER: What do you notice about these two fractions?\n\
STUDENT: The bottom numbers are different.\n\
TEACHER: Why might that matter when we compare them?\n\
STUDENT: Because the pieces are different sizes, so you cannot just look at the top.\n";

/// A shorter transcript that keeps tiny-model prompts small.
pub const SHORT_TRANSCRIPT: &str = "TEACHER: What is seven times eight?\n\
STUDENT: Fifty-six.\n\
TEACHER: How do you know?\n\
STUDENT: Seven times seven is forty-nine, plus seven more.\n";

/// The folder of this process's scratch folders: `$TMPDIR/debias-guard-tests/<pid>`.
pub fn scratch_root() -> PathBuf {
    std::env::temp_dir()
        .join("debias-guard-tests")
        .join(std::process::id().to_string())
}

/// The scratch folder `name` of this process, created if needed. The first request for a name
/// in a process empties what an earlier process with the same id left there; later requests
/// return the same folder with its files.
pub fn scratch_dir(name: &str) -> PathBuf {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let dir = scratch_root().join(name);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.iter().any(|n| n == name) {
        let _ = std::fs::remove_dir_all(&dir);
        seen.push(name.to_string());
    }
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes the tiny GGUF model `spec` into the scratch folder `name`, once per process and
/// spec, and returns its path: `<name>-<architecture>.gguf` (with `-<n>` added for the n-th
/// other spec of that architecture under the same name).
pub fn tiny_model(name: &str, spec: &TinySpec) -> PathBuf {
    static WRITTEN: Mutex<Vec<(String, TinySpec, PathBuf)>> = Mutex::new(Vec::new());
    let mut written = WRITTEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, path)) = written.iter().find(|(n, s, _)| n == name && s == spec) {
        return path.clone();
    }
    let siblings = written
        .iter()
        .filter(|(n, s, _)| n == name && s.architecture == spec.architecture)
        .count();
    let file = match siblings {
        0 => format!("{name}-{}.gguf", spec.architecture),
        n => format!("{name}-{}-{n}.gguf", spec.architecture),
    };
    let path = scratch_dir(name).join(file);
    write_tiny_gguf(&path, spec).expect("write tiny model");
    written.push((name.to_string(), spec.clone(), path.clone()));
    path
}

/// Opens a model with `threads` workers and prefill chunks of `chunk` tokens (`None` = the
/// library's default).
pub fn open_engine(path: &Path, threads: usize, chunk: Option<usize>) -> Engine {
    let defaults = EngineOptions::default();
    let options = EngineOptions {
        threads,
        prefill_chunk: chunk.unwrap_or(defaults.prefill_chunk),
        ..defaults
    };
    Engine::open(path, &options).expect("open model")
}

/// The tiny model `spec` (see [`tiny_model`]) opened with two threads and prefill chunks of
/// `chunk` tokens.
pub fn tiny_engine(name: &str, spec: &TinySpec, chunk: usize) -> Engine {
    open_engine(&tiny_model(name, spec), 2, Some(chunk))
}

/// A random LoRA adapter (non-zero A and B, see [`tiny_adapter`]) for the model at `base`.
pub fn random_adapter(
    base: &Path,
    config: debias_guard::adapter::PeftConfig,
    seed: u64,
) -> debias_guard::adapter::PeftAdapter {
    let model = debias_guard::weights::DenseCheckpoint::load(base)
        .expect("dense weights")
        .config;
    tiny_adapter(&model, config, seed).expect("random adapter")
}

/// The real default model; panics with instructions when it has not been fetched.
pub fn real_model_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives inside the workspace")
        .join(REAL_MODEL);
    assert!(
        path.exists(),
        "{} is missing: run `make model` (or `make test`, which fetches it)",
        path.display()
    );
    path
}

/// Largest absolute difference between two equally long slices (f32 or f64), as f64.
pub fn max_abs_diff<T: Copy + Into<f64>>(a: &[T], b: &[T]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x.into() - y.into()).abs())
        .fold(0.0, f64::max)
}

/// Largest absolute difference between two logit matrices of equal shape.
pub fn max_logit_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    assert_eq!(a.len(), b.len(), "row counts differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| max_abs_diff(x, y))
        .fold(0.0, f64::max)
}

/// The numbers of a JSON array (a reference fixture's values) as f32.
pub fn json_f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}
