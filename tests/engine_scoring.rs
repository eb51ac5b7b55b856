//! Scoring on generated tiny models: prefix sharing, chunked prefill and the chain rule must all
//! agree with plain from-scratch evaluation.

use candle_core::quantized::GgmlDType;
use debias_guard::engine::TokenQuery;
use debias_guard::{Engine, LabelPrompt, PromptBuilder, Rubric, Transcript};
use debias_guard_testkit::{max_abs_diff, tiny_engine, TinySpec, SAMPLE_TRANSCRIPT};

fn variants(engine: &Engine) -> Vec<LabelPrompt> {
    let rubric = Rubric::builtin();
    let builder = PromptBuilder::default();
    let transcript = Transcript::new(SAMPLE_TRANSCRIPT).unwrap();
    let contexts = [
        None,
        Some("The teacher has taught for 25 years."),
        Some("The teacher is in her first year."),
        Some("The lesson was recorded on a Tuesday."),
    ];
    let mut prompts = Vec::new();
    for item in &rubric.items {
        for context in contexts {
            prompts.push(
                engine
                    .rubric_prompt(&builder, &transcript, item, context, false)
                    .unwrap(),
            );
        }
    }
    prompts
}

#[test]
fn prefix_shared_scores_equal_from_scratch() {
    for (name, spec) in [
        ("llama-f32", TinySpec::default()),
        (
            "llama-q8",
            TinySpec {
                dtype: GgmlDType::Q8_0,
                ..TinySpec::default()
            },
        ),
        (
            "qwen2-q4_1",
            TinySpec {
                architecture: "qwen2".into(),
                dtype: GgmlDType::Q4_1,
                ..TinySpec::default()
            },
        ),
        (
            "llama-untied",
            TinySpec {
                untied_output: true,
                ..TinySpec::default()
            },
        ),
    ] {
        let engine = tiny_engine(name, &spec, 64);
        let prompts = variants(&engine);
        let (shared, stats) = engine.score_many(&prompts).unwrap();
        let scratch = engine.score_from_scratch(&prompts).unwrap();
        assert!(
            stats.forks > 0,
            "{name}: the variants should share prefixes"
        );
        assert!(
            stats.tokens_evaluated * 3 < stats.tokens_requested,
            "{name}: {stats:?}"
        );
        for (a, b) in shared.iter().zip(&scratch) {
            // Same arithmetic in another order (the matmul's blocking follows the context
            // length), so f32 rounding only: a few parts in a million.
            let diff = max_abs_diff(&a.probs, &b.probs);
            assert!(diff <= 3e-6, "{name}: fork vs scratch differ by {diff}");
            assert!((a.label_mass - b.label_mass).abs() <= 3e-6);
            let sum: f64 = a.probs.iter().sum();
            assert!(
                (sum - 1.0).abs() < 1e-9,
                "{name}: probabilities sum to {sum}"
            );
            assert!(a.label_mass > 0.0 && a.label_mass <= 1.0 + 1e-9);
        }
        // Different contexts must actually change the distribution on a random model.
        assert!(
            max_abs_diff(&shared[0].probs, &shared[1].probs) > 1e-4,
            "{name}"
        );
    }
}

#[test]
fn chunked_prefill_equals_one_shot() {
    let spec = TinySpec::default();
    let one_shot = tiny_engine("chunk-big", &spec, 4096);
    let chunked = tiny_engine("chunk-small", &spec, 7);
    let prompts = variants(&one_shot);
    let (a, _) = one_shot.score_many(&prompts).unwrap();
    let (b, _) = chunked.score_many(&prompts).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!(max_abs_diff(&x.probs, &y.probs) <= 1e-6);
    }
    let tokens = one_shot.tokenize(&prompts[0].text).unwrap();
    let positions: Vec<usize> = (0..tokens.len()).step_by(13).collect();
    let la = one_shot.logits(&tokens, &positions).unwrap();
    let lb = chunked.logits(&tokens, &positions).unwrap();
    for (ra, rb) in la.iter().zip(&lb) {
        let d = ra
            .iter()
            .zip(rb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-4, "chunked logits differ by {d}");
    }
}

#[test]
fn multi_token_labels_follow_the_chain_rule() {
    let engine = tiny_engine("chain", &TinySpec::default(), 64);
    let mut prompt = variants(&engine).remove(0);
    // Digits are split one by one, so "10".."12" take two tokens and extend label "1".
    prompt.labels = (1..=12).map(|i| i.to_string()).collect();
    prompt.values = (1..=12).map(f64::from).collect();
    let dist = engine.score(&prompt).unwrap();

    let prompt_ids = engine.tokenize(&prompt.text).unwrap();
    let logprob = |label: &str| -> (Vec<u32>, f64) {
        let ids = engine
            .tokenize(&format!("{}{}{}", prompt.text, prompt.separator, label))
            .unwrap();
        assert_eq!(
            &ids[..prompt_ids.len()],
            &prompt_ids[..],
            "label {label} keeps the prompt's tokens"
        );
        let positions: Vec<usize> = (prompt_ids.len() - 1..ids.len() - 1).collect();
        let rows = engine.logits(&ids, &positions).unwrap();
        let lp = rows
            .iter()
            .zip(&ids[prompt_ids.len()..])
            .map(|(row, &t)| {
                let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
                let lse = max
                    + row
                        .iter()
                        .map(|&x| (x as f64 - max).exp())
                        .sum::<f64>()
                        .ln();
                row[t as usize] as f64 - lse
            })
            .sum();
        (ids[prompt_ids.len()..].to_vec(), lp)
    };
    let (ten_tokens, lp10) = logprob("10");
    let (one_tokens, lp1) = logprob("1");
    assert_eq!(
        ten_tokens.len(),
        one_tokens.len() + 1,
        "\"10\" should extend \"1\" by a token"
    );
    assert_eq!(ten_tokens[..one_tokens.len()], one_tokens[..]);
    let (_, lp11) = logprob("11");
    let (_, lp12) = logprob("12");
    // "1" only keeps the mass of stopping after its digit.
    let p1 = lp1.exp() - (lp10.exp() + lp11.exp() + lp12.exp());
    let mass: f64 = dist.label_mass;
    assert!(
        (dist.probs[0] - p1 / mass).abs() < 1e-5,
        "{} vs {}",
        dist.probs[0],
        p1 / mass
    );
    assert!((dist.probs[9] - lp10.exp() / mass).abs() < 1e-5);
    let (_, lp7) = logprob("7");
    assert!((dist.probs[6] - lp7.exp() / mass).abs() < 1e-5);
    assert!((dist.probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
}

#[test]
fn token_queries_share_prefixes_exactly() {
    let engine = tiny_engine("queries", &TinySpec::default(), 16);
    let base: Vec<u32> = (0..40).map(|i| (i * 7 % 250) as u32).collect();
    let mut queries = Vec::new();
    for tail in 0..5u32 {
        let mut t = base.clone();
        t.extend([tail + 10, tail + 20, 30]);
        queries.push(TokenQuery {
            tokens: t,
            score_from: 30,
        });
    }
    queries.push(TokenQuery {
        tokens: base.clone(),
        score_from: 1,
    });
    let (shared, stats) = engine.evaluate(&queries).unwrap();
    assert_eq!(stats.forks, 4, "five tails branch off one node");
    for (q, lp) in queries.iter().zip(&shared) {
        let (alone, _) = engine.evaluate(std::slice::from_ref(q)).unwrap();
        // f32 log-probabilities of arbitrary tokens reach -30; compare relative to their size.
        let d = lp
            .iter()
            .zip(&alone[0])
            .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
            .fold(0f32, f32::max);
        assert!(d < 1e-5, "shared vs alone differ by {d} (relative)");
    }
}

#[test]
fn generation_is_deterministic_and_bounded() {
    let engine = tiny_engine("generate", &TinySpec::default(), 64);
    let prompt = variants(&engine).remove(0).text;
    let greedy = debias_guard::GenerateOptions {
        max_tokens: 12,
        ..Default::default()
    };
    let a = engine.generate(&prompt, &greedy).unwrap();
    let b = engine.generate(&prompt, &greedy).unwrap();
    assert_eq!(a, b);
    assert!(a.tokens.len() <= 12);
    let sampled = debias_guard::GenerateOptions {
        max_tokens: 12,
        temperature: 8.0,
        seed: 42,
        ..Default::default()
    };
    let s1 = engine.generate(&prompt, &sampled).unwrap();
    let s2 = engine.generate(&prompt, &sampled).unwrap();
    assert_eq!(s1, s2, "same seed, same text");
    let other = engine
        .generate(
            &prompt,
            &debias_guard::GenerateOptions {
                seed: 43,
                ..sampled.clone()
            },
        )
        .unwrap();
    assert_ne!(
        s1.tokens, other.tokens,
        "another seed should sample differently"
    );
    if !a.text.is_empty() {
        let stop_at = a.text.chars().last().unwrap().to_string();
        let stopped = engine
            .generate(
                &prompt,
                &debias_guard::GenerateOptions {
                    stop: vec![stop_at.clone()],
                    ..greedy
                },
            )
            .unwrap();
        assert!(!stopped.text.contains(&stop_at));
    }
}

#[test]
fn quantized_kernels_agree_with_dense_weights() {
    use debias_guard::model::WeightFormat;
    let spec = TinySpec {
        dtype: GgmlDType::Q8_0,
        ..TinySpec::default()
    };
    let path = debias_guard_testkit::tiny_model("as-stored", &spec);
    let open = |weight_format| {
        Engine::open(
            &path,
            &debias_guard::EngineOptions {
                threads: 2,
                weight_format,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let dense = open(WeightFormat::DenseF32);
    let stored = open(WeightFormat::AsStored);
    let prompts = variants(&dense);
    let (a, _) = dense.score_many(&prompts[..2]).unwrap();
    let (b, _) = stored.score_many(&prompts[..2]).unwrap();
    for (x, y) in a.iter().zip(&b) {
        // candle's quantized kernels round activations to 8 bits; the weights are identical.
        let d = max_abs_diff(&x.probs, &y.probs);
        assert!(d < 2e-2, "dense vs quantized kernels differ by {d}");
    }
}

#[test]
fn one_engine_serves_many_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    let engine = tiny_engine("threads", &TinySpec::default(), 64);
    let prompts = variants(&engine);
    let serial = engine.score_from_scratch(&prompts).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (engine, prompts) = (&engine, &prompts);
                s.spawn(move || engine.score(&prompts[i * 3]).unwrap())
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let got = h.join().unwrap();
            assert!(max_abs_diff(&got.probs, &serial[i * 3].probs) <= 1e-6);
        }
    });
}

#[test]
fn llama3_rope_frequency_factors_are_applied() {
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};
    use debias_guard_testkit::{tiny_gguf_parts, write_gguf};
    let dir = debias_guard_testkit::scratch_dir("rope-freqs");
    let spec = TinySpec::default();
    let head_dim = spec.hidden / spec.heads;
    let with_factors = |name: &str, factor: f32| {
        let (md, mut tensors) = tiny_gguf_parts(&spec).unwrap();
        let f = Tensor::from_vec(vec![factor; head_dim / 2], head_dim / 2, &Device::Cpu).unwrap();
        tensors.push((
            "rope_freqs.weight".into(),
            QTensor::quantize(&f, GgmlDType::F32).unwrap(),
        ));
        let path = dir.join(name);
        write_gguf(&path, &md, &tensors).unwrap();
        Engine::open(&path, &debias_guard::EngineOptions::default()).unwrap()
    };
    let plain = tiny_engine("rope-plain", &spec, 64);
    let ones = with_factors("ones.gguf", 1.0);
    let scaled = with_factors("eights.gguf", 8.0);
    let prompt = variants(&plain).remove(0);
    let a = plain.score(&prompt).unwrap();
    assert!(max_abs_diff(&a.probs, &ones.score(&prompt).unwrap().probs) <= 1e-6);
    assert!(max_abs_diff(&a.probs, &scaled.score(&prompt).unwrap().probs) > 1e-4);
}
