//! LoRA adapters at run time: the low-rank path next to the base weight equals merging the
//! adapter into the weights (f32 and quantized bases, llama's permuted q/k rows, rsLoRA and
//! rank/alpha patterns), several adapters share one base, a KV state never crosses adapters,
//! and adapters that do not fit are refused with a typed error.

mod common;

use candle_core::quantized::GgmlDType;
use common::{all_projection_modules, transcript_logits};
use debias_guard::adapter::{merge_into, PeftAdapter, PeftConfig, TargetModules};
use debias_guard::export::{write_hf_dir, HfWriteOptions};
use debias_guard::model::WeightFormat;
use debias_guard::weights::{DenseCheckpoint, DenseTensor};
use debias_guard::{Engine, EngineOptions, Error};
use debias_guard_testkit::{
    max_logit_diff, random_adapter, scratch_dir, tiny_model, TinySpec, SAMPLE_TRANSCRIPT,
};
use std::path::{Path, PathBuf};

fn options(format: WeightFormat) -> EngineOptions {
    EngineOptions {
        threads: 2,
        weight_format: format,
        ..Default::default()
    }
}

/// The base with `adapter` merged in, written as a Hugging Face directory.
fn merged_dir(name: &str, base: &Path, adapter: &PeftAdapter) -> PathBuf {
    let engine = Engine::open(base, &options(WeightFormat::DenseF32)).unwrap();
    let mut dense = DenseCheckpoint::load(base).unwrap();
    merge_into(&mut dense, adapter, "t").unwrap();
    let dir = scratch_dir(name).join("merged");
    let opts = HfWriteOptions {
        chat_template: Some(engine.chat_template().source().into()),
        ..Default::default()
    };
    write_hf_dir(&dir, &dense, engine.tokenizer(), &opts).unwrap();
    dir
}

/// Runtime adapter on `spec`'s GGUF vs the merged model, same numerics otherwise.
fn check_runtime_equals_merged(name: &str, spec: &TinySpec, config: PeftConfig) {
    let base = tiny_model(name, spec);
    let adapter = random_adapter(&base, config, 11);
    let engine = Engine::open(&base, &options(WeightFormat::DenseF32)).unwrap();
    engine.add_adapter("t", &adapter).unwrap();
    let adapted = engine.with_adapter(Some("t")).unwrap();
    let merged = Engine::open(
        merged_dir(name, &base, &adapter),
        &options(WeightFormat::DenseF32),
    )
    .unwrap();
    let (a, m, b) = (
        transcript_logits(&adapted),
        transcript_logits(&merged),
        transcript_logits(&engine),
    );
    let moved = max_logit_diff(&a, &b);
    let diff = max_logit_diff(&a, &m);
    assert!(
        moved > 1e-2,
        "{name}: the adapter must change the logits ({moved})"
    );
    assert!(diff < 1e-4, "{name}: runtime vs merged differ by {diff}");
}

#[test]
fn llama_runtime_path_equals_merged_weights() {
    // GGUF llama stores q/k rows permuted; the adapter's B rows must follow.
    check_runtime_equals_merged(
        "lora-llama",
        &TinySpec::default(),
        PeftConfig::lora(4, 8.0, &all_projection_modules()),
    );
}

#[test]
fn qwen2_rslora_with_patterns_equals_merged_weights() {
    let spec = TinySpec {
        architecture: "qwen2".into(),
        ..TinySpec::default()
    };
    let mut config = PeftConfig::lora(4, 8.0, &[]);
    config.target_modules = Some(TargetModules::Pattern(
        r".*\.(q_proj|v_proj|up_proj)".into(),
    ));
    config.use_rslora = true;
    config
        .rank_pattern
        .insert("model.layers.1.self_attn.q_proj".into(), 2);
    config.alpha_pattern.insert("up_proj".into(), 3.0);
    check_runtime_equals_merged("lora-qwen2", &spec, config);
}

#[test]
fn layers_to_transform_limits_the_adapter() {
    let mut config = PeftConfig::lora(2, 4.0, &["o_proj", "down_proj"]);
    config.layers_to_transform = Some(debias_guard::adapter::LayerSelection::Many(vec![1]));
    check_runtime_equals_merged("lora-layers", &TinySpec::default(), config);
}

#[test]
fn zero_b_adapter_leaves_the_model_unchanged() {
    let base = tiny_model("lora-zero", &TinySpec::default());
    let mut adapter = random_adapter(
        &base,
        PeftConfig::lora(4, 8.0, &all_projection_modules()),
        3,
    );
    for (k, t) in adapter.tensors.iter_mut() {
        if k.contains("lora_B") {
            t.data.iter_mut().for_each(|v| *v = 0.0);
        }
    }
    let engine = Engine::open(&base, &options(WeightFormat::Auto)).unwrap();
    engine.add_adapter("zero", &adapter).unwrap();
    let diff = max_logit_diff(
        &transcript_logits(&engine),
        &transcript_logits(&engine.with_adapter(Some("zero")).unwrap()),
    );
    assert!(diff < 1e-5, "{diff}");
}

#[test]
fn quantized_base_adapter_matches_merging_into_dequantized_weights() {
    let spec = TinySpec {
        dtype: GgmlDType::Q8_0,
        ..TinySpec::default()
    };
    let base = tiny_model("lora-q8", &spec);
    let adapter = random_adapter(
        &base,
        PeftConfig::lora(4, 8.0, &all_projection_modules()),
        5,
    );
    // DenseCheckpoint dequantizes, so the merged model holds dequantized weights + ΔW.
    let merged = Engine::open(
        merged_dir("lora-q8", &base, &adapter),
        &options(WeightFormat::DenseF32),
    )
    .unwrap();
    let merged_logits = transcript_logits(&merged);
    // Dense (dequantized) base + runtime path: the same math, f32 rounding only.
    let dense = Engine::open(&base, &options(WeightFormat::DenseF32)).unwrap();
    dense.add_adapter("t", &adapter).unwrap();
    let d = max_logit_diff(
        &transcript_logits(&dense.with_adapter(Some("t")).unwrap()),
        &merged_logits,
    );
    assert!(d < 1e-4, "dequantized base + low-rank path vs merged: {d}");
    // Quantized base + runtime path: off only by the quantized kernel's own rounding, which
    // we measure on the base model alone.
    let quant = Engine::open(&base, &options(WeightFormat::AsStored)).unwrap();
    quant.add_adapter("t", &adapter).unwrap();
    let kernel_error = max_logit_diff(&transcript_logits(&quant), &transcript_logits(&dense));
    let d = max_logit_diff(
        &transcript_logits(&quant.with_adapter(Some("t")).unwrap()),
        &merged_logits,
    );
    assert!(
        d < 3.0 * kernel_error + 1e-3,
        "quantized base + low-rank path vs merged: {d} (kernel error alone {kernel_error})"
    );
}

#[test]
fn adapters_are_chosen_per_handle_and_never_share_kv() {
    let base = tiny_model("lora-many", &TinySpec::default());
    let a = random_adapter(
        &base,
        PeftConfig::lora(4, 8.0, &all_projection_modules()),
        21,
    );
    let b = random_adapter(&base, PeftConfig::lora(2, 2.0, &["q_proj", "v_proj"]), 22);
    let engine = Engine::open(&base, &options(WeightFormat::Auto)).unwrap();
    engine.add_adapter("a", &a).unwrap();
    engine.add_adapter("b", &b).unwrap();
    assert_eq!(engine.adapters(), ["a", "b"]);
    let builder = debias_guard::PromptBuilder::new(Default::default()).unwrap();
    let rubric = debias_guard::Rubric::builtin();
    let item = &rubric.items[0];
    let transcript = debias_guard::Transcript::new(SAMPLE_TRANSCRIPT).unwrap();
    let prompt = engine
        .rubric_prompt(&builder, &transcript, item, None, false)
        .unwrap();
    // Reference: each adapter alone on its own freshly opened model.
    let alone = |name: &str, adapter: &PeftAdapter| {
        let e = Engine::open(&base, &options(WeightFormat::Auto)).unwrap();
        e.add_adapter(name, adapter).unwrap();
        e.with_adapter(Some(name)).unwrap().score(&prompt).unwrap()
    };
    let (ref_a, ref_b) = (alone("a", &a), alone("b", &b));
    let ref_base = engine.score(&prompt).unwrap();
    // Interleave the handles on several threads, many times: no KV computed under one adapter
    // may leak into another's result.
    std::thread::scope(|s| {
        for t in 0..3 {
            let engine = &engine;
            let (prompt, ref_a, ref_b, ref_base) = (&prompt, &ref_a, &ref_b, &ref_base);
            s.spawn(move || {
                for i in 0..4 {
                    let pick = (t + i) % 3;
                    let name = [Some("a"), Some("b"), None][pick];
                    let want = [ref_a, ref_b, ref_base][pick];
                    let got = engine.with_adapter(name).unwrap().score(prompt).unwrap();
                    for (x, y) in got.probs.iter().zip(&want.probs) {
                        assert!((x - y).abs() < 1e-6, "{name:?}: {x} vs {y}");
                    }
                }
            });
        }
    });
    assert!(
        (ref_a.expected - ref_base.expected).abs() > 1e-6,
        "adapter a moves the score"
    );
    // A state started under one adapter runs every later token under that adapter.
    let model = engine.model();
    let handle = engine.with_adapter(Some("a")).unwrap();
    assert_eq!(handle.active_adapter(), Some("a"));
    let state = model.new_state();
    assert!(state.adapter().is_none());
    // The A/B delta of one request, in one call.
    let delta = debias_guard::adapter_delta(&engine, &prompt, "b").unwrap();
    assert_eq!(delta.base, ref_base);
    assert_eq!(delta.adapted.probs, ref_b.probs);
    assert!((delta.delta.delta - (ref_b.expected - ref_base.expected)).abs() < 1e-12);
    // Names are checked.
    assert!(matches!(
        engine.with_adapter(Some("c")),
        Err(Error::Adapter { .. })
    ));
    assert!(matches!(
        engine.add_adapter("a", &a),
        Err(Error::Adapter { .. })
    ));
    engine.unload_adapter("b").unwrap();
    assert_eq!(engine.adapters(), ["a"]);
}

#[test]
fn adapters_that_do_not_fit_are_refused_by_name() {
    let base = tiny_model("lora-bad", &TinySpec::default());
    let engine = Engine::open(&base, &options(WeightFormat::Auto)).unwrap();
    let good = random_adapter(&base, PeftConfig::lora(4, 8.0, &["q_proj", "v_proj"]), 31);
    let expect = |adapter: PeftAdapter, needle: &str| {
        let err = engine.add_adapter("x", &adapter).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Adapter { .. } | Error::UnsupportedAdapterFeature { .. }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(needle), "`{err}` lacks `{needle}`");
    };
    // An adapter made for a wider model.
    let wide = tiny_model(
        "lora-bad-wide",
        &TinySpec {
            hidden: 128,
            ..TinySpec::default()
        },
    );
    expect(
        random_adapter(&wide, PeftConfig::lora(4, 8.0, &["q_proj"]), 1),
        "do not fit",
    );
    // An adapter made for a deeper model.
    let deep = tiny_model(
        "lora-bad-deep",
        &TinySpec {
            layers: 3,
            ..TinySpec::default()
        },
    );
    expect(
        random_adapter(&deep, PeftConfig::lora(4, 8.0, &["q_proj"]), 1),
        "layer 2",
    );
    // Non-finite weights.
    let mut nan = good.clone();
    nan.tensors.values_mut().next().unwrap().data[3] = f32::NAN;
    expect(nan, "non-finite");
    // A missing B.
    let mut half = good.clone();
    let b_key = half
        .tensors
        .keys()
        .find(|k| k.contains("lora_B"))
        .unwrap()
        .clone();
    half.tensors.remove(&b_key);
    expect(half, "not both present");
    // Rank that disagrees with the config.
    let mut rank = good.clone();
    rank.config.r = 8;
    expect(rank, "rank 8");
    // Tensors for a module the config does not target.
    let mut untargeted = good.clone();
    untargeted.config.target_modules = Some(TargetModules::List(vec!["q_proj".into()]));
    expect(untargeted, "do not select");
    // Features we do not implement.
    let mut dora = good.clone();
    dora.config.use_dora = true;
    expect(dora, "use_dora");
    let mut head = good.clone();
    head.tensors.insert(
        "base_model.model.lm_head.lora_A.weight".into(),
        DenseTensor {
            shape: vec![4, 64],
            data: vec![0.0; 256],
        },
    );
    expect(head, "lm_head");
    // Broken files on disk.
    let dir = scratch_dir("lora-bad-files").join("adapter");
    good.save(&dir).unwrap();
    engine.load_adapter("ok", &dir).unwrap();
    std::fs::write(dir.join("adapter_config.json"), "{\"r\": 4").unwrap();
    let err = engine.load_adapter("broken", &dir).unwrap_err();
    assert!(matches!(err, Error::Adapter { .. }), "{err}");
    good.save(&dir).unwrap();
    let weights = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() - 10]).unwrap();
    let err = engine.load_adapter("truncated", &dir).unwrap_err();
    assert!(matches!(err, Error::Adapter { .. }), "{err}");
}

#[test]
fn saved_adapters_load_back_exactly() {
    let base = tiny_model("lora-save", &TinySpec::default());
    let mut config = PeftConfig::lora(4, 8.0, &all_projection_modules());
    config.rank_pattern.insert("down_proj".into(), 2);
    let adapter = random_adapter(&base, config, 41);
    let dir = scratch_dir("lora-save").join("adapter");
    adapter.save(&dir).unwrap();
    assert_eq!(PeftAdapter::load(&dir).unwrap(), adapter);
    // The config is PEFT's JSON.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(json["peft_type"], "LORA");
    assert_eq!(json["rank_pattern"]["down_proj"], 2);
}

#[test]
fn merging_at_load_equals_the_runtime_path() {
    use debias_guard::hf::StoreDtype;
    for (name, spec, format) in [
        ("merge-load-llama", TinySpec::default(), WeightFormat::Auto),
        (
            "merge-load-q8",
            TinySpec {
                dtype: GgmlDType::Q8_0,
                ..TinySpec::default()
            },
            WeightFormat::DenseF32,
        ),
    ] {
        let base = tiny_model(name, &spec);
        let adapter = random_adapter(
            &base,
            PeftConfig::lora(4, 8.0, &all_projection_modules()),
            17,
        );
        let dir = scratch_dir(name).join("adapter");
        adapter.save_as(&dir, StoreDtype::F32).unwrap();
        let runtime = Engine::open(&base, &options(format)).unwrap();
        runtime.load_adapter("t", &dir).unwrap();
        let runtime = runtime.with_adapter(Some("t")).unwrap();
        let merged = Engine::open(
            &base,
            &EngineOptions {
                merge_adapter: Some(dir.clone()),
                ..options(format)
            },
        )
        .unwrap();
        assert_eq!(merged.merged_adapter(), Some(dir.as_path()));
        let plain = Engine::open(&base, &options(format)).unwrap();
        let (r, m, p) = (
            transcript_logits(&runtime),
            transcript_logits(&merged),
            transcript_logits(&plain),
        );
        // Same weight format on both sides (the Q8_0 base dequantized, then merged): f32
        // rounding only.
        assert!(
            max_logit_diff(&m, &p) > 1e-2,
            "{name}: merging changed nothing"
        );
        let d = max_logit_diff(&r, &m);
        assert!(d < 1e-4, "{name}: merged at load vs runtime path: {d}");
    }
    // An adapter that does not fit the base is refused before anything is served.
    let base = tiny_model("merge-load-llama", &TinySpec::default());
    let other = tiny_model(
        "merge-load-wide",
        &TinySpec {
            hidden: 96,
            ..TinySpec::default()
        },
    );
    let adapter = random_adapter(
        &other,
        PeftConfig::lora(4, 8.0, &all_projection_modules()),
        3,
    );
    let dir = scratch_dir("merge-load-wide").join("adapter");
    adapter.save_as(&dir, StoreDtype::F32).unwrap();
    let refused = Engine::open(
        &base,
        &EngineOptions {
            merge_adapter: Some(dir),
            ..options(WeightFormat::Auto)
        },
    );
    assert!(matches!(refused, Err(Error::Adapter { .. })), "{refused:?}");
}
