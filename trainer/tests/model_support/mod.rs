//! Shared helpers of the `model_*` tests: tiny generated models, the library's engine and the
//! burn decoder of the same file.
#![allow(dead_code)]

use burn::tensor::Device;
use debias_guard::tiny::{write_tiny_gguf, TinySpec};
use debias_guard::weights::DenseCheckpoint;
use debias_guard::{Engine, EngineOptions};
use debias_guard_trainer::model::Decoder;
use std::path::{Path, PathBuf};

/// A fresh scratch directory for one test.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dg-model-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes a tiny random model (`llama` or `qwen2`) and returns its path.
pub fn tiny_model(dir: &Path, architecture: &str, untied_output: bool) -> PathBuf {
    let path = dir.join(format!("tiny-{architecture}-{untied_output}.gguf"));
    let spec = TinySpec {
        architecture: architecture.into(),
        untied_output,
        ..TinySpec::default()
    };
    write_tiny_gguf(&path, &spec).expect("write tiny model");
    path
}

/// Opens a model with the library's candle engine (single thread, deterministic).
pub fn engine(path: &Path) -> Engine {
    let options = EngineOptions {
        threads: 1,
        ..EngineOptions::default()
    };
    Engine::open(path, &options).expect("open engine")
}

/// The burn decoder of a model file, through the library's dense checkpoint, on `device`.
pub fn decoder(path: &Path, device: &Device) -> Decoder {
    let checkpoint = DenseCheckpoint::load(path).expect("load dense checkpoint");
    Decoder::from_checkpoint(checkpoint, device).expect("build decoder")
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Row-major values of a burn tensor.
pub fn values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("read tensor")
}
