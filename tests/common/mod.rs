//! Helpers shared by the engine and adapter tests, on top of the test kit's tiny models.
#![allow(dead_code)]

use debias_guard::Engine;
use debias_guard_testkit::SAMPLE_TRANSCRIPT;

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
