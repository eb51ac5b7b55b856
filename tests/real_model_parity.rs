//! The real default model against llama.cpp on the same GGUF file: identical token ids, and
//! label distributions within a stated tolerance (fixture made by scripts/llamacpp_reference.py).

use debias_guard::engine::TokenQuery;
use debias_guard::model::kernels::PackedFormat;
use debias_guard::model::WeightFormat;
use debias_guard::{Engine, EngineOptions, GenerateOptions, LabelPrompt};
use serde_json::Value;

/// Largest allowed difference of one label's probability against llama.cpp running the same
/// weights in F32 (`llamacpp_reference_f32.json`): both engines then multiply f32 by f32 and
/// differ only by summation order.
const F32_TOLERANCE: f64 = 1e-3;

/// Largest allowed difference against llama.cpp on the Q4_1 file (`llamacpp_reference.json`).
/// llama.cpp rounds activations to 8 bits (Q8_1) before multiplying Q4_1 weights, while we
/// multiply the exactly dequantized weights in f32; that rounding, accumulated over 30 layers,
/// moves label probabilities by up to ~1.5e-2 (as much as candle's own quantized kernels differ
/// from llama.cpp's), see docs/ARCHITECTURE.md ("Numerics").
const Q4_1_TOLERANCE: f64 = 2e-2;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn prompts() -> Vec<(String, LabelPrompt)> {
    fixture("parity_prompts.json")["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let labels: Vec<String> = p["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
                .collect();
            let values = debias_guard::rubric::label_values(&labels);
            (
                p["id"].as_str().unwrap().to_string(),
                LabelPrompt {
                    text: p["text"].as_str().unwrap().to_string(),
                    labels,
                    values,
                    separator: " ".into(),
                },
            )
        })
        .collect()
}

/// The real default model with `format` weights packed as `packed` (when they are dense).
fn open(format: WeightFormat, packed: PackedFormat) -> Engine {
    Engine::open(
        debias_guard_testkit::real_model_path(),
        &EngineOptions {
            threads: 2,
            weight_format: format,
            packed_format: Some(packed),
            ..Default::default()
        },
    )
    .unwrap()
}

fn check(format: WeightFormat, packed: PackedFormat, reference: &str, tolerance: f64) -> f64 {
    let engine = open(format, packed);
    let reference = fixture(reference);
    let mut worst = 0.0f64;
    for ((id, prompt), refp) in prompts()
        .iter()
        .zip(reference["prompts"].as_array().unwrap())
    {
        assert_eq!(refp["id"].as_str().unwrap(), id);
        let ids = engine.tokenize(&prompt.text).unwrap();
        let ref_ids: Vec<u32> = refp["prompt_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            ids, ref_ids,
            "{id}: prompt token ids differ from llama.cpp's"
        );
        for (label, refl) in prompt.labels.iter().zip(refp["labels"].as_array().unwrap()) {
            let full = engine
                .tokenize(&format!("{}{}{}", prompt.text, prompt.separator, label))
                .unwrap();
            let ref_full: Vec<u32> = refl["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(full, ref_full, "{id}: tokens of label {label} differ");
        }
        let dist = engine.score(prompt).unwrap();
        let ref_probs: Vec<f64> = refp["distribution"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let diff = debias_guard_testkit::max_abs_diff(&dist.probs, &ref_probs);
        let mass = refp["label_mass"].as_f64().unwrap();
        eprintln!(
            "{format:?} {packed} {id}: max |Δp| = {diff:.5}, mass {:.4} vs {mass:.4}, expected {:.4} vs {:.4}",
            dist.label_mass, dist.expected, refp["expected_score"].as_f64().unwrap()
        );
        assert!(
            diff <= tolerance,
            "{id}: label probabilities differ by {diff}"
        );
        assert!(
            (dist.label_mass - mass).abs() <= tolerance,
            "{id}: label mass"
        );
        // Our argmax must be llama.cpp's, or tie with it within the tolerance.
        let ref_max = ref_probs.iter().copied().fold(0.0, f64::max);
        assert!(
            ref_max - ref_probs[dist.argmax] <= tolerance,
            "{id}: argmax {}",
            dist.argmax_label()
        );
        worst = worst.max(diff);
    }
    worst
}

#[test]
fn label_distributions_match_llama_cpp_on_f32_weights() {
    // Both packed formats: the 8-bit panels hold the file's Q4_1 levels exactly, so they stay
    // within the f32 tolerance too.
    for packed in [PackedFormat::F32, PackedFormat::Q8] {
        let worst = check(
            WeightFormat::DenseF32,
            packed,
            "llamacpp_reference_f32.json",
            F32_TOLERANCE,
        );
        eprintln!("worst |Δp| vs llama.cpp F32 ({packed} panels): {worst:.5}");
    }
}

#[test]
fn label_distributions_match_llama_cpp_on_q4_1_kernels() {
    // 4-bit panels round activations to 8 bits in their few-row products, as llama.cpp does.
    for packed in PackedFormat::ALL {
        let worst = check(
            WeightFormat::Auto,
            packed,
            "llamacpp_reference.json",
            Q4_1_TOLERANCE,
        );
        eprintln!("worst |Δp| vs llama.cpp Q4_1 ({packed} panels): {worst:.5}");
    }
}

/// Largest allowed difference of one label's probability between the 8-bit and the f32
/// panels of the same engine: the same weights (the file's Q4_1 levels) summed in another
/// order, so f32 rounding only.
const Q8_VS_F32_TOLERANCE: f64 = 1e-4;

#[test]
fn q8_panels_match_f32_panels() {
    // Label distributions on the fixture prompts, and 64 greedy tokens of one prompt.
    let (f32_engine, q8_engine) = (
        open(WeightFormat::Auto, PackedFormat::F32),
        open(WeightFormat::Auto, PackedFormat::Q8),
    );
    assert_eq!(f32_engine.packed_format(), Some(PackedFormat::F32));
    assert_eq!(q8_engine.packed_format(), Some(PackedFormat::Q8));
    let mut worst = 0.0f64;
    for (id, prompt) in prompts() {
        let (a, b) = (
            f32_engine.score(&prompt).unwrap(),
            q8_engine.score(&prompt).unwrap(),
        );
        let diff = debias_guard_testkit::max_abs_diff(&a.probs, &b.probs);
        eprintln!("{id}: q8 vs f32 max |Δp| = {diff:.2e}");
        assert!(diff <= Q8_VS_F32_TOLERANCE, "{id}: {diff}");
        worst = worst.max(diff);
    }
    let options = GenerateOptions {
        max_tokens: 64,
        ..GenerateOptions::default()
    };
    let text = &prompts()[0].1.text;
    let (a, b) = (
        f32_engine.generate(text, &options).unwrap(),
        q8_engine.generate(text, &options).unwrap(),
    );
    eprintln!(
        "q8 vs f32: worst |Δp| {worst:.2e}; greedy tokens equal: {} ({} tokens)",
        a.tokens == b.tokens,
        a.tokens.len()
    );
    assert_eq!(a.tokens, b.tokens, "greedy generations differ");
}

#[test]
fn first_token_logprobs_are_finite_and_normalised() {
    let engine = Engine::open(
        debias_guard_testkit::real_model_path(),
        &EngineOptions {
            threads: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let (_, prompt) = &prompts()[1];
    let ids = engine.tokenize(&prompt.text).unwrap();
    let q = TokenQuery {
        tokens: ids.clone(),
        score_from: ids.len() - 5,
    };
    let (lp, _) = engine.evaluate(&[q]).unwrap();
    assert!(lp[0].iter().all(|x| x.is_finite() && *x <= 0.0));
}

/// Largest allowed difference of a log-probability (of a token the f32 panels give at least
/// 1e-3) between the 4-bit and the f32 panels when every product of a pass rounds its rows to
/// 8 bits (a sequence of at most `Q4_ROWS_MAX` tokens). Measured 0.337 on the 12 tokens of the
/// test; llama.cpp's Q4_1 kernels against its own F32 run of the same tokens: 0.333 (same
/// rounding of activations; docs/BENCHMARKS.md). The most probable token is the same at
/// every position in both.
const Q4_DECODE_LOGP_TOLERANCE: f64 = 0.5;

#[test]
fn q4_panels_score_exactly_and_round_only_few_row_products() {
    let (q8_engine, q4_engine, f32_engine) = (
        open(WeightFormat::Auto, PackedFormat::Q8),
        open(WeightFormat::Auto, PackedFormat::Q4),
        open(WeightFormat::Auto, PackedFormat::F32),
    );
    assert_eq!(q4_engine.packed_format(), Some(PackedFormat::Q4));
    // Scoring passes are longer than Q4_ROWS_MAX rows: exact, as the 8-bit panels.
    for (id, prompt) in prompts() {
        let (a, b) = (
            q8_engine.score(&prompt).unwrap(),
            q4_engine.score(&prompt).unwrap(),
        );
        let diff = debias_guard_testkit::max_abs_diff(&a.probs, &b.probs);
        eprintln!("{id}: q4 vs q8 max |Δp| = {diff:.2e}");
        assert!(diff <= Q8_VS_F32_TOLERANCE, "{id}: {diff}");
    }
    // A short sequence runs every product with rounded rows (the decode path).
    let tokens = q4_engine
        .tokenize("The teacher asked the students to explain how they compared the fractions")
        .unwrap();
    let tokens = &tokens[..tokens.len().min(debias_guard::model::kernels::Q4_ROWS_MAX)];
    let positions: Vec<usize> = (0..tokens.len()).collect();
    let log_softmax = |l: &[f32]| {
        let max = l.iter().copied().fold(f32::MIN, f32::max) as f64;
        let z = l.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
        l.iter().map(|&v| v as f64 - z).collect::<Vec<f64>>()
    };
    let (a, b) = (
        f32_engine.logits(tokens, &positions).unwrap(),
        q4_engine.logits(tokens, &positions).unwrap(),
    );
    let mut worst = 0.0f64;
    for (p, (la, lb)) in a.iter().zip(&b).enumerate() {
        let (sa, sb) = (log_softmax(la), log_softmax(lb));
        for (x, y) in sa.iter().zip(&sb) {
            if *x > 1e-3f64.ln() {
                worst = worst.max((x - y).abs());
            }
        }
        let top = |s: &[f64]| (0..s.len()).max_by(|&i, &j| s[i].total_cmp(&s[j])).unwrap();
        // The most probable token is kept, or ties within the tolerance.
        assert!(
            sb[top(&sb)] - sb[top(&sa)] <= Q4_DECODE_LOGP_TOLERANCE,
            "position {p}"
        );
    }
    eprintln!(
        "q4 vs f32, {} rounded positions: worst |Δ log p| {worst:.4}",
        tokens.len()
    );
    assert!(worst <= Q4_DECODE_LOGP_TOLERANCE, "{worst}");
    assert!(worst > 0.0, "the short pass was not rounded");
}
