//! Shared helpers of the `model_*` tests: the burn decoder of a model file (tiny models, the
//! engine and the comparisons come from the test kit).
#![allow(dead_code)]

use burn::tensor::Device;
use debias_guard::weights::DenseCheckpoint;
use debias_guard::Engine;
use debias_guard_trainer::model::Decoder;
use std::path::Path;

/// Opens a model with the library's candle engine (single thread, deterministic).
pub fn engine(path: &Path) -> Engine {
    debias_guard_testkit::open_engine(path, 1, None)
}

/// The burn decoder of a model file, through the library's dense checkpoint, on `device`.
pub fn decoder(path: &Path, device: &Device) -> Decoder {
    let checkpoint = DenseCheckpoint::load(path).expect("load dense checkpoint");
    Decoder::from_checkpoint(checkpoint, device).expect("build decoder")
}

/// Row-major values of a burn tensor.
pub fn values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("read tensor")
}
