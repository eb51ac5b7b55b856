//! LoRA on the burn decoder: a fresh adapter leaves the model unchanged, gradients reach only the
//! adapter's factors, and a training step changes the outputs in the right direction.

mod model_support;

use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::Device;
use debias_guard_testkit::{max_abs_diff, scratch_dir, tiny_model, TinySpec};
use debias_guard_trainer::model::{
    sequence_logprobs, LoraAdapter, LoraConfig, Projection, ScoredSequence, TokenBatch,
};
use model_support::{decoder, engine, values};

const PROMPT: &str = "TEACHER: How many quarters make a whole?\nSTUDENT: Four.\n";
const RESPONSE: &str = "The student answered correctly. Rating: 6";

#[test]
fn scale_follows_rslora_switch() {
    let mut c = LoraConfig {
        rank: 16,
        alpha: 32.0,
        ..LoraConfig::default()
    };
    assert_eq!(c.scale(), 2.0);
    c.use_rslora = true;
    assert_eq!(c.scale(), 8.0);
}

#[test]
fn bad_configs_are_rejected() {
    let dir = scratch_dir("bad-configs");
    let path = tiny_model("bad-configs", &TinySpec::new("llama", false));
    let config = engine(&path).config().clone();
    let device = Device::flex();
    for bad in [
        LoraConfig {
            rank: 0,
            ..LoraConfig::default()
        },
        LoraConfig {
            rank: 65, // the tiny model's projections are 64 wide on one side
            ..LoraConfig::default()
        },
        LoraConfig {
            alpha: f64::NAN,
            ..LoraConfig::default()
        },
        LoraConfig {
            targets: vec![],
            ..LoraConfig::default()
        },
        LoraConfig {
            targets: vec![Projection::Q, Projection::Q],
            ..LoraConfig::default()
        },
    ] {
        assert!(
            LoraAdapter::init(&bad, &config, &device).is_err(),
            "{bad:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `B = 0` the adapted model is exactly the base model.
#[test]
fn fresh_adapter_equals_base() {
    let dir = scratch_dir("fresh-adapter");
    for arch in ["llama", "qwen2"] {
        let path = tiny_model("fresh-adapter", &TinySpec::new(arch, false));
        let engine = engine(&path);
        let config = engine.config().clone();
        let device = Device::flex();
        let model = decoder(&path, &device);
        let adapter = LoraAdapter::init(&LoraConfig::default(), &config, &device).unwrap();
        assert_eq!(adapter.pairs().count(), config.n_layers * 7);
        let tokens = engine.tokenize(PROMPT).unwrap();
        let batch = TokenBatch::whole(&tokens, &config).unwrap();
        let base = values(model.logits(&batch, None).unwrap());
        let adapted = values(model.logits(&batch, Some(&adapter)).unwrap());
        assert_eq!(max_abs_diff(&base, &adapted), 0.0, "{arch}");
        // A is drawn from U(-1/sqrt(in), 1/sqrt(in)) and is not degenerate.
        let a = values(adapter.pair(0, Projection::Q).unwrap().a.val());
        let bound = 1.0 / (config.hidden_size as f32).sqrt();
        assert!(a.iter().all(|v| v.abs() <= bound));
        assert!(a.iter().any(|v| v.abs() > bound / 2.0));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Same seed, same factors; another seed, other factors.
#[test]
fn initialisation_is_seeded() {
    let dir = scratch_dir("seeded");
    let path = tiny_model("seeded", &TinySpec::new("llama", false));
    let config = engine(&path).config().clone();
    let device = Device::flex();
    let first = |seed| {
        let c = LoraConfig {
            seed,
            ..LoraConfig::default()
        };
        let a = LoraAdapter::init(&c, &config, &device).unwrap();
        values(a.pair(1, Projection::Down).unwrap().a.val())
    };
    assert_eq!(first(3), first(3));
    assert_ne!(first(3), first(4));
    let _ = std::fs::remove_dir_all(&dir);
}

/// After a backward pass every factor has a gradient and no base tensor does; one optimiser
/// step on those gradients raises the response's log-probability and changes the outputs.
#[test]
fn gradients_reach_only_the_adapter() {
    let dir = scratch_dir("gradients");
    let path = tiny_model("gradients", &TinySpec::new("qwen2", false));
    let engine = engine(&path);
    let config = engine.config().clone();
    let device = Device::flex().autodiff();
    let model = decoder(&path, &device);
    assert_eq!(model.trainable_base_tensors(), 0);
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    let adapter = LoraAdapter::init(&lora, &config, &device).unwrap();
    let seq = ScoredSequence::from_texts(engine.tokenizer(), PROMPT, RESPONSE).unwrap();
    let batch = TokenBatch::new(&[seq], &config).unwrap();

    let before = sequence_logprobs(&model, &batch, Some(&adapter)).unwrap();
    let before_sum = values(before.sum.clone())[0];
    let loss = before.sum.neg().mean();
    let grads = loss.backward();
    for (layer, target, pair) in adapter.pairs() {
        let ga = pair.a.val().grad(&grads);
        let gb = pair.b.val().grad(&grads);
        assert!(ga.is_some(), "layer {layer} {target:?}: A has no gradient");
        let gb =
            values(gb.unwrap_or_else(|| panic!("layer {layer} {target:?}: B has no gradient")));
        assert!(
            gb.iter().any(|v| *v != 0.0),
            "layer {layer} {target:?}: B gradient is zero"
        );
    }
    let params = GradientsParams::from_grads(grads, &adapter);
    assert_eq!(params.len(), 2 * adapter.pairs().count());

    let mut optim = SgdConfig::new().init();
    let adapter = optim.step(1e-2, adapter, params);
    assert_eq!(
        adapter.config, lora,
        "an optimiser step keeps the hyper-parameters"
    );
    let b = values(adapter.pair(0, Projection::V).unwrap().b.val());
    assert!(b.iter().any(|v| *v != 0.0), "B did not move");
    let after_sum = values(
        sequence_logprobs(&model, &batch, Some(&adapter))
            .unwrap()
            .sum,
    )[0];
    assert!(
        after_sum > before_sum,
        "log-prob {before_sum} -> {after_sum} should rise"
    );
    let base_sum = values(sequence_logprobs(&model, &batch, None).unwrap().sum)[0];
    assert!(
        (base_sum - before_sum).abs() < 1e-5,
        "the reference is the untouched base"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad sequences are typed errors, not panics.
#[test]
fn bad_sequences_are_rejected() {
    let dir = scratch_dir("bad-seqs");
    let path = tiny_model("bad-seqs", &TinySpec::new("llama", false));
    let engine = engine(&path);
    let config = engine.config().clone();
    assert!(ScoredSequence::new(vec![1, 2, 3], 0).is_err());
    assert!(ScoredSequence::new(vec![1, 2, 3], 3).is_err());
    assert!(ScoredSequence::from_texts(engine.tokenizer(), PROMPT, "").is_err());
    let out_of_vocab = ScoredSequence::new(vec![1, config.vocab_size as u32], 1).unwrap();
    assert!(TokenBatch::new(&[out_of_vocab], &config).is_err());
    let too_long = ScoredSequence::new(vec![1; config.context_length + 1], 1).unwrap();
    assert!(TokenBatch::new(&[too_long], &config).is_err());
    assert!(TokenBatch::new(&[], &config).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The scored tokens are exactly the full text's tokens after the prompt's.
#[test]
fn response_tokens_follow_the_full_text_tokenization() {
    let dir = scratch_dir("tokenization");
    let path = tiny_model("tokenization", &TinySpec::new("qwen2", false));
    let engine = engine(&path);
    let seq = ScoredSequence::from_texts(engine.tokenizer(), PROMPT, RESPONSE).unwrap();
    let full = engine.tokenize(&format!("{PROMPT}{RESPONSE}")).unwrap();
    let prompt = engine.tokenize(PROMPT).unwrap();
    assert_eq!(seq.tokens(), full.as_slice());
    assert!(seq.response_start() <= prompt.len());
    assert_eq!(
        &full[..seq.response_start()],
        &prompt[..seq.response_start()]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Autodiff gradients of a response log-prob equal central finite differences, for entries of
/// `A` and `B` in attention and MLP projections (checks the whole differentiable path: RoPE,
/// masking, softmax, norms, gathers).
#[test]
fn gradients_match_finite_differences() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let dir = scratch_dir("finite-differences");
    let path = tiny_model("finite-differences", &TinySpec::new("llama", false));
    let engine = engine(&path);
    let config = engine.config().clone();
    let device = Device::flex().autodiff();
    let model = decoder(&path, &device);
    let lora = LoraConfig {
        rank: 2,
        alpha: 2.0,
        ..LoraConfig::default()
    };
    let mut rng = StdRng::seed_from_u64(5);
    let mut factors = Vec::new();
    for _ in 0..config.n_layers {
        for t in Projection::ALL {
            let (out, inp) = t.shape(&config);
            let a: Vec<f32> = (0..2 * inp).map(|_| rng.random_range(-0.3..0.3)).collect();
            let b: Vec<f32> = (0..out * 2).map(|_| rng.random_range(-0.3..0.3)).collect();
            factors.push((a, b));
        }
    }
    let build = |tweak: Option<(usize, bool, usize, f32)>| {
        let mut i = 0;
        LoraAdapter::from_values(&lora, &config, &device, |_, _, _| {
            let (mut a, mut b) = factors[i].clone();
            if let Some((slot, is_b, idx, delta)) = tweak {
                if slot == i {
                    if is_b {
                        b[idx] += delta;
                    } else {
                        a[idx] += delta;
                    }
                }
            }
            i += 1;
            Ok((a, b))
        })
        .unwrap()
    };
    let seq = ScoredSequence::from_texts(engine.tokenizer(), PROMPT, RESPONSE).unwrap();
    let batch = TokenBatch::new(&[seq], &config).unwrap();
    let score = |adapter: &LoraAdapter| sequence_logprobs(&model, &batch, Some(adapter)).unwrap();

    let adapter = build(None);
    let grads = score(&adapter).sum.backward();
    // f32 sums carry ~1e-5 of noise, so the step is large enough for it to vanish in the quotient.
    let h = 3e-2f32;
    // (pair slot, factor is B, flat index): layer 0 q, layer 0 gate, layer 1 down, layer 1 k.
    for (slot, is_b, idx) in [
        (0, false, 3),
        (0, true, 5),
        (4, true, 17),
        (13, false, 40),
        (8, true, 2),
    ] {
        let (layer, target) = (slot / 7, Projection::ALL[slot % 7]);
        let pair = adapter.pair(layer, target).unwrap();
        let param = if is_b { &pair.b } else { &pair.a };
        let g = values(param.val().grad(&grads).expect("gradient"))[idx];
        let up = values(score(&build(Some((slot, is_b, idx, h)))).sum)[0];
        let down = values(score(&build(Some((slot, is_b, idx, -h)))).sum)[0];
        let fd = (up - down) / (2.0 * h);
        assert!(
            (g - fd).abs() <= 0.01 * fd.abs() + 3e-3,
            "layer {layer} {target:?} {} [{idx}]: autodiff {g} vs finite difference {fd}",
            if is_b { "B" } else { "A" }
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
