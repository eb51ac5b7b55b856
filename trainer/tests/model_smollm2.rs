//! Checks on the real default model, SmolLM2-135M-Instruct (skipped when the file is absent;
//! `make model` fetches it). Run in release mode:
//! `cargo test --release -p debias-guard-trainer --test model_smollm2 -- --ignored --nocapture`.

mod model_support;

use burn::tensor::Device;
use debias_guard_testkit::max_abs_diff;
use debias_guard_trainer::model::{
    sequence_logprobs, LoraAdapter, LoraConfig, ScoredSequence, TokenBatch,
};
use model_support::{decoder, engine, values};
use std::path::PathBuf;
use std::time::Instant;

/// The model file: `$DEBIAS_GUARD_TEST_MODEL`, else the repository's `models/` copy.
fn model_path() -> Option<PathBuf> {
    let path = std::env::var_os("DEBIAS_GUARD_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    path.exists().then_some(path)
}

const TEXT: &str = "TEACHER: Today we are comparing fractions. Who can tell me which is bigger, two thirds or three fifths?\nSTUDENT: Two thirds, because if you make them both fifteenths, two thirds is ten fifteenths and three fifths is nine fifteenths.\nTEACHER: Nice. Can someone explain why we needed the same denominator?\n";

/// Logits of the real model equal the library's (dense f32 weights both sides).
#[test]
#[ignore = "needs models/SmolLM2-135M-Instruct.Q4_1.gguf; slow in debug"]
fn smollm2_logits_match_the_library() {
    let Some(path) = model_path() else {
        eprintln!("skipped: model file absent");
        return;
    };
    let engine = engine(&path);
    let config = engine.config().clone();
    let model = decoder(&path, &Device::flex());
    let tokens = engine.tokenize(TEXT).unwrap();
    let positions: Vec<usize> = (0..tokens.len()).collect();
    let expected = engine.logits(&tokens, &positions).unwrap().concat();
    let batch = TokenBatch::whole(&tokens, &config).unwrap();
    let got = values(model.logits(&batch, None).unwrap());
    let diff = max_abs_diff(&got, &expected);
    eprintln!(
        "SmolLM2: {} tokens, max |burn - candle| = {diff:.2e}",
        tokens.len()
    );
    assert!(diff < 2e-3, "max |burn - candle| = {diff}");
}

/// Peak resident memory of this process so far (Linux), MiB.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Times one forward + backward of a 400-token sequence (100 response tokens) with a rank-16
/// adapter on every projection, one reference (adapter-off) forward, and a DPO pair as two rows
/// versus one packed row.
#[test]
#[ignore = "timing on the real model; run in release"]
fn smollm2_forward_backward_timing() {
    let Some(path) = model_path() else {
        eprintln!("skipped: model file absent");
        return;
    };
    let engine = engine(&path);
    let config = engine.config().clone();
    let device = Device::flex().autodiff();
    let t = Instant::now();
    let model = decoder(&path, &device);
    eprintln!("load: {:.2} s", t.elapsed().as_secs_f64());
    let mut tokens = Vec::new();
    while tokens.len() < 400 {
        tokens.extend(engine.tokenize(TEXT).unwrap());
    }
    tokens.truncate(400);
    let batch = TokenBatch::new(&[ScoredSequence::new(tokens, 300).unwrap()], &config).unwrap();
    let adapter = LoraAdapter::init(&LoraConfig::default(), &config, &device).unwrap();
    for round in 0..3 {
        let t = Instant::now();
        let scores = sequence_logprobs(&model, &batch, Some(&adapter)).unwrap();
        let loss = scores.sum.neg().mean();
        let _ = values(loss.clone());
        let forward = t.elapsed().as_secs_f64();
        let grads = loss.backward();
        let total = t.elapsed().as_secs_f64();
        drop(grads);
        let t = Instant::now();
        let reference = sequence_logprobs(&model, &batch, None).unwrap();
        let _ = values(reference.sum);
        let reference = t.elapsed().as_secs_f64();
        eprintln!(
            "round {round}: forward {forward:.2} s, forward+backward {total:.2} s, reference forward {reference:.2} s, peak RSS {} MiB",
            peak_rss_mib()
        );
    }

    // A DPO pair: one 300-token prompt, two 100-token responses; one row each vs packed.
    let prompt = &batch.tokens()[..300];
    let pair: Vec<ScoredSequence> = [7usize, 11]
        .iter()
        .map(|&shift| {
            let mut t = prompt.to_vec();
            t.extend(batch.tokens()[shift..shift + 100].iter());
            ScoredSequence::new(t, 300).unwrap()
        })
        .collect();
    let separate = TokenBatch::new(&pair, &config).unwrap();
    let packed = TokenBatch::packed(&[&pair], &config).unwrap();
    for (name, b) in [("separate rows", &separate), ("packed row", &packed)] {
        for _ in 0..2 {
            let t = Instant::now();
            let loss = sequence_logprobs(&model, b, Some(&adapter))
                .unwrap()
                .sum
                .neg()
                .sum();
            let _grads = loss.backward();
            eprintln!(
                "pair, {name} ({} cells): forward+backward {:.2} s",
                b.batch_size() * b.padded_len(),
                t.elapsed().as_secs_f64()
            );
        }
    }
}
