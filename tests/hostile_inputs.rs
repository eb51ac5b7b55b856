//! Hostile inputs (issue 14): templates run under budgets; NaN or unbounded numbers in weights,
//! block scales and adapters are refused at load; reports over NaN are never written; input
//! sizes are bounded before any work.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use debias_guard::adapter::{PeftAdapter, PeftConfig};
use debias_guard::chat::{ChatMessage, ChatTemplate};
use debias_guard::gguf::GgufFile;
use debias_guard::guard::{audit, AuditOptions, AuditReport, AuditRequest, ProbeCatalog};
use debias_guard::hf::HfModelDir;
use debias_guard::{
    Engine, EngineOptions, Error, PromptBuilder, PromptLayout, Rubric, SplitSelection, Transcript,
};
use debias_guard_testkit::{
    hostile, scratch_dir, tiny_adapter, tiny_engine, tiny_gguf_parts, write_gguf,
    write_tiny_hf_model, HfModelSpec, TinySpec, SAMPLE_TRANSCRIPT, SHORT_TRANSCRIPT,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn chat() -> Vec<ChatMessage> {
    vec![ChatMessage::new("user", "Rate this lesson.")]
}

fn budget_error(e: Error) -> (String, String) {
    match e {
        Error::TemplateBudget { template, reason } => (template, reason),
        e => panic!("expected a template budget error, got {e}"),
    }
}

#[test]
fn nested_loops_run_out_of_fuel_quickly() {
    let source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
    let tmpl = ChatTemplate::new(Some(source), "", "")
        .unwrap()
        .with_budget("chat template of hostile.gguf", 4096);
    let start = Instant::now();
    let (template, reason) = budget_error(tmpl.render(&chat(), true).unwrap_err());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(template, "chat template of hostile.gguf");
    assert!(reason.contains("instructions"), "{reason}");
}

#[test]
fn repeated_output_is_refused_at_the_output_limit() {
    // 100,000 copies of the message: few instructions each, but far past 256 B × 64 tokens.
    let source = "{% for i in range(100000) %}{{ messages[0].content }}{% endfor %}";
    let tmpl = ChatTemplate::new(Some(source), "", "")
        .unwrap()
        .with_budget("chat template of small.gguf", 64);
    assert_eq!(tmpl.max_output_bytes(), 64 * 256);
    let (template, reason) = budget_error(tmpl.render(&chat(), true).unwrap_err());
    assert_eq!(template, "chat template of small.gguf");
    assert!(reason.contains("16384 bytes"), "{reason}");
}

#[test]
fn string_repetition_past_the_limit_is_refused() {
    // minijinja itself caps `*` on strings; what it lets through, the output limit refuses.
    let source = "{{ 'ab' * 100000 }}";
    let tmpl = ChatTemplate::new(Some(source), "", "")
        .unwrap()
        .with_budget("t", 16);
    budget_error(tmpl.render(&chat(), true).unwrap_err());
}

#[test]
fn normal_templates_render_as_before() {
    let messages = vec![
        ChatMessage::new("system", "You rate lessons."),
        ChatMessage::new("user", "Transcript: T: Good morning."),
    ];
    let budgeted = ChatTemplate::new(None, "<s>", "</s>").unwrap();
    let mut env = minijinja::Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .unwrap(),
    );
    env.add_template("chat", debias_guard::chat::DEFAULT_CHAT_TEMPLATE)
        .unwrap();
    let plain = env
        .get_template("chat")
        .unwrap()
        .render(minijinja::context! {
            messages => minijinja::value::Serde(&messages),
            add_generation_prompt => true,
        })
        .unwrap();
    assert_eq!(budgeted.render(&messages, true).unwrap(), plain);
}

#[test]
fn prompt_layout_runs_under_the_same_budget() {
    let rubric = Rubric::builtin();
    let item = &rubric.items[0];
    let transcript = Transcript::new(SAMPLE_TRANSCRIPT).unwrap();
    let hog = PromptLayout {
        user_template:
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
                .into(),
        ..PromptLayout::default()
    };
    let builder = PromptBuilder::new(hog).unwrap();
    let (template, _) = budget_error(builder.build(&transcript, item, None, false).unwrap_err());
    assert_eq!(template, "prompt layout user_template");

    let long = PromptLayout {
        user_template: "{% for i in range(1000) %}{{ transcript }}{% endfor %}".into(),
        ..PromptLayout::default()
    };
    let builder = PromptBuilder::new(long).unwrap();
    let (_, reason) = budget_error(
        builder
            .build_within(&transcript, item, None, false, 10_000)
            .unwrap_err(),
    );
    assert!(reason.contains("10000 bytes"), "{reason}");

    // The default layout renders the same with or without a tighter (but sufficient) limit.
    let builder = PromptBuilder::default();
    let a = builder.build(&transcript, item, Some("x"), true).unwrap();
    let b = builder
        .build_within(&transcript, item, Some("x"), true, 1 << 16)
        .unwrap();
    assert_eq!(a.messages, b.messages);
}

/// The tiny model with one value of tensor `name` replaced by NaN.
fn model_with_nan(name: &str) -> std::path::PathBuf {
    let (md, mut tensors) = tiny_gguf_parts(&TinySpec::default()).unwrap();
    let slot = tensors
        .iter_mut()
        .find(|(n, _)| n == name)
        .expect("tensor present");
    let shape = slot.1.shape().clone();
    let mut values = slot
        .1
        .dequantize(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    values[3] = f32::NAN;
    let t = Tensor::new(values, &Device::Cpu)
        .unwrap()
        .reshape(shape)
        .unwrap();
    slot.1 = QTensor::quantize(&t, GgmlDType::F32).unwrap();
    let path = scratch_dir("hostile-nan").join(format!("nan-{name}.gguf"));
    write_gguf(&path, &md, &tensors).unwrap();
    path
}

#[test]
fn nan_norm_weight_is_refused_at_load() {
    for name in ["output_norm.weight", "blk.0.attn_norm.weight"] {
        match Engine::open(model_with_nan(name), &EngineOptions::default()) {
            Err(Error::Tensor { tensor, reason }) => {
                assert_eq!(tensor, name);
                assert!(reason.contains("not finite"), "{reason}");
            }
            Err(e) => panic!("unexpected {e}"),
            Ok(_) => panic!("loaded a NaN {name}"),
        }
    }
}

/// `Engine::open` of `path` must fail with a tensor error on `name` whose reason contains `needle`.
fn refused_at_load(path: &std::path::Path, name: &str, needle: &str) {
    match Engine::open(path, &EngineOptions::default()) {
        Err(Error::Tensor { tensor, reason }) => {
            assert_eq!(tensor, name);
            assert!(reason.contains(needle), "{reason}");
        }
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("loaded {}", path.display()),
    }
}

#[test]
fn nan_in_a_dense_matrix_is_refused_at_load() {
    for name in ["token_embd.weight", "blk.1.ffn_down.weight"] {
        refused_at_load(
            &model_with_nan(name),
            name,
            "value NaN at index 3 is not finite",
        );
    }
}

/// The tiny model with tensor `name` stored as `dtype` and a NaN written over the f16 at byte
/// `at` of block 2 (a scale: `d` at 0, `m` at 2 for Q4_1).
fn model_with_nan_scale(name: &str, dtype: GgmlDType, at: usize) -> std::path::PathBuf {
    let (md, mut tensors) = tiny_gguf_parts(&TinySpec::default()).unwrap();
    let mut parts = (md, std::mem::take(&mut tensors));
    hostile::edit_tensor_bytes(&mut parts, name, dtype, |raw| {
        let pos = 2 * dtype.type_size() + at;
        raw[pos..pos + 2].copy_from_slice(&hostile::F16_NAN);
    })
    .unwrap();
    let path = scratch_dir("hostile-scale").join(format!("nan-scale-{name}-{dtype:?}-{at}.gguf"));
    write_gguf(&path, &parts.0, &parts.1).unwrap();
    path
}

#[test]
fn nan_block_scales_are_refused_at_load() {
    let cases = [
        ("token_embd.weight", GgmlDType::Q8_0, 0),
        ("blk.0.ffn_up.weight", GgmlDType::Q4_1, 0),
        ("blk.0.ffn_up.weight", GgmlDType::Q4_1, 2),
        ("blk.1.attn_q.weight", GgmlDType::Q4_0, 0),
    ];
    for (name, dtype, at) in cases {
        refused_at_load(
            &model_with_nan_scale(name, dtype, at),
            name,
            "block scale NaN of block 2 is not finite",
        );
    }
    // The same tensors with finite scales load.
    let (md, mut tensors) = tiny_gguf_parts(&TinySpec::default()).unwrap();
    let mut parts = (md, std::mem::take(&mut tensors));
    hostile::edit_tensor_bytes(&mut parts, "token_embd.weight", GgmlDType::Q8_0, |_| {}).unwrap();
    let path = scratch_dir("hostile-scale").join("clean-q8.gguf");
    write_gguf(&path, &parts.0, &parts.1).unwrap();
    Engine::open(&path, &EngineOptions::default()).unwrap();
}

fn adapter_error(engine: &Engine, adapter: &PeftAdapter) -> String {
    match engine.add_adapter("hostile", adapter) {
        Err(Error::Adapter { reason, .. }) => reason,
        Err(e) => panic!("unexpected {e}"),
        Ok(()) => panic!("accepted a hostile adapter"),
    }
}

#[test]
fn adapters_with_unbounded_updates_are_refused() {
    let engine = tiny_engine("hostile-adapter", &TinySpec::default(), 64);
    let config = engine.config().clone();
    let plain = tiny_adapter(&config, PeftConfig::lora(4, 8.0, &["q_proj", "v_proj"]), 3).unwrap();
    engine.add_adapter("plain", &plain).unwrap();

    let mut huge_alpha = plain.clone();
    huge_alpha.config.lora_alpha = 1e308;
    let reason = adapter_error(&engine, &huge_alpha);
    assert!(
        reason.contains("model.layers.0.self_attn.q_proj"),
        "{reason}"
    );
    assert!(reason.contains("exceeds the bound"), "{reason}");

    let mut huge_values = plain.clone();
    let (key, a) = huge_values
        .tensors
        .iter_mut()
        .find(|(k, _)| k.ends_with("layers.1.self_attn.v_proj.lora_A.weight"))
        .unwrap();
    let key = key.clone();
    a.data.iter_mut().for_each(|v| *v = 1e38);
    let reason = adapter_error(&engine, &huge_values);
    assert!(
        reason.contains("model.layers.1.self_attn.v_proj"),
        "{key}: {reason}"
    );
}

fn small_audit(engine: &Engine) -> AuditReport {
    let transcript = Transcript::new(SHORT_TRANSCRIPT).unwrap();
    let item = Rubric::builtin().items[0].clone();
    let catalog = ProbeCatalog::builtin();
    audit(
        engine,
        &PromptBuilder::default(),
        &AuditRequest {
            transcript: &transcript,
            transcript_name: "<inline>",
            items: std::slice::from_ref(&item),
            catalog: &catalog,
            catalog_name: "<built-in probes>",
            options: AuditOptions {
                split: SplitSelection::Heldout,
                ..AuditOptions::default()
            },
        },
    )
    .unwrap()
}

#[test]
fn reports_round_trip_exactly_or_are_refused() {
    let engine = tiny_engine("hostile-report", &TinySpec::default(), 64);
    let report = small_audit(&engine);
    let json = report.to_json().unwrap();
    assert_eq!(AuditReport::from_json(&json, "r.json").unwrap(), report);

    // A NaN would be written as null: the report is refused instead, never written as "pass".
    let mut nan = report.clone();
    nan.items[0].plain.categories[0].max_abs_delta = f64::NAN;
    assert!(matches!(nan.to_json(), Err(Error::NonFinite { .. })));
    let path = scratch_dir("hostile-report").join("nan.json");
    assert!(nan.write_json(&path).is_err());
    assert!(!path.exists());
    let mut inf = report.clone();
    inf.timings.model_load_seconds = Some(f64::INFINITY);
    assert!(matches!(inf.to_json(), Err(Error::NonFinite { .. })));
}

#[test]
fn tokenizer_input_is_bounded_by_the_context() {
    let engine = tiny_engine("hostile-tokenizer", &TinySpec::default(), 64);
    let limit = engine.tokenizer().max_input_bytes();
    assert!(limit < 4096 * 256, "{limit}");
    let text = "a".repeat(limit + 1);
    match engine.tokenize(&text) {
        Err(Error::WorkLimit {
            limit: name,
            requested,
            max,
        }) => {
            assert_eq!(name, "tokenizer input bytes");
            assert_eq!((requested, max), (limit + 1, limit));
        }
        other => panic!("expected a work limit, got {other:?}"),
    }
    assert!(!engine.tokenize("TEACHER: hello").unwrap().is_empty());
}

/// A tiny GGUF model (matrices stored as `dtype`) written, then its bytes patched by `patch`.
fn patched_gguf(name: &str, dtype: GgmlDType, patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let spec = TinySpec {
        dtype,
        ..TinySpec::default()
    };
    let (md, tensors) = tiny_gguf_parts(&spec).unwrap();
    let path = scratch_dir("hostile-gguf").join(format!("{name}.gguf"));
    write_gguf(&path, &md, &tensors).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    patch(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn gguf_error(path: &std::path::Path) -> String {
    match GgufFile::open(path) {
        Err(Error::GgufFormat { reason, .. }) => reason,
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("opened {}", path.display()),
    }
}

#[test]
fn overlapping_tensor_ranges_are_refused() {
    let path = patched_gguf("overlap", GgmlDType::F32, |bytes| {
        let first = hostile::tensor_offset(bytes, "blk.0.attn_q.weight").unwrap();
        let later = hostile::tensor_offset(bytes, "blk.1.attn_q.weight").unwrap();
        assert!(first < later);
        hostile::set_tensor_offset(bytes, "blk.1.attn_q.weight", first).unwrap();
    });
    let reason = gguf_error(&path);
    assert!(reason.contains("overlaps"), "{reason}");
}

#[test]
fn a_changed_tensor_type_is_refused() {
    // F16 → F32 doubles the size: the tensor runs into the next one.
    let path = patched_gguf("wider", GgmlDType::F16, |bytes| {
        hostile::set_tensor_type(bytes, "blk.0.ffn_up.weight", 0).unwrap();
    });
    let reason = gguf_error(&path);
    assert!(
        reason.contains("overlaps") || reason.contains("past the end"),
        "{reason}"
    );
    // F32 → F16 halves it: the rest of its bytes belong to no tensor.
    let path = patched_gguf("narrower", GgmlDType::F32, |bytes| {
        hostile::set_tensor_type(bytes, "blk.0.ffn_up.weight", 1).unwrap();
    });
    let reason = gguf_error(&path);
    assert!(
        reason.contains("unexplained bytes") || reason.contains("belong to no tensor"),
        "{reason}"
    );
    // Unpatched files of every stored type open.
    for dtype in [
        GgmlDType::F32,
        GgmlDType::F16,
        GgmlDType::Q8_0,
        GgmlDType::Q4_1,
    ] {
        GgufFile::open(patched_gguf(&format!("clean-{dtype:?}"), dtype, |_| {})).unwrap();
    }
    // So does the real default model, written by llama.cpp's tools.
    GgufFile::open(debias_guard_testkit::real_model_path()).unwrap();
}

#[test]
fn hf_shards_that_link_outside_the_directory_are_refused() {
    let root = scratch_dir("hostile-hf");
    let dir = root.join("model");
    let _ = std::fs::remove_dir_all(&root);
    let spec = HfModelSpec {
        shards: 2,
        ..HfModelSpec::default()
    };
    write_tiny_hf_model(&dir, &spec).unwrap();
    HfModelDir::open(&dir).unwrap();
    let shard = dir.join("model-00002-of-00002.safetensors");
    let outside = root.join("elsewhere.safetensors");
    std::fs::rename(&shard, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &shard).unwrap();
    match HfModelDir::open(&dir) {
        Err(Error::ModelFile { reason, .. }) => {
            assert!(reason.contains("outside the model directory"), "{reason}")
        }
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("followed a shard link out of the directory"),
    }
    // A link that stays inside the directory is fine.
    std::fs::remove_file(&shard).unwrap();
    std::fs::rename(&outside, dir.join("real.safetensors")).unwrap();
    std::os::unix::fs::symlink("real.safetensors", &shard).unwrap();
    HfModelDir::open(&dir).unwrap();
}

#[test]
fn hf_config_and_tokenizer_files_that_link_outside_are_refused() {
    let root = scratch_dir("hostile-hf-files");
    let _ = std::fs::remove_dir_all(&root);
    for name in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        let dir = root.join(name.replace('.', "-"));
        write_tiny_hf_model(&dir, &HfModelSpec::default()).unwrap();
        let file = dir.join(name);
        let outside = root.join(format!("outside-{name}"));
        if file.is_file() {
            std::fs::rename(&file, &outside).unwrap();
        } else {
            std::fs::write(&outside, "{{ messages[0].content }}").unwrap();
        }
        std::os::unix::fs::symlink(&outside, &file).unwrap();
        let opened = HfModelDir::open(&dir).and_then(|m| {
            m.tokenizer()?;
            m.chat_template()
        });
        match opened {
            Err(Error::ModelFile { reason, .. }) => {
                assert!(
                    reason.contains("outside the model directory"),
                    "{name}: {reason}"
                )
            }
            Err(e) => panic!("{name}: unexpected {e}"),
            Ok(_) => panic!("{name}: followed a link out of the directory"),
        }
    }
}

fn work_limit(e: Error) -> (&'static str, usize, usize) {
    match e {
        Error::WorkLimit {
            limit,
            requested,
            max,
        } => (limit, requested, max),
        e => panic!("expected a work limit, got {e}"),
    }
}

fn rubric_json(items: usize) -> String {
    let items: Vec<String> = (0..items)
        .map(|i| {
            format!(
                r#"{{"id": "item{i}", "name": "Item {i}", "description": "d", "question": "How good?", "labels": ["1", "2", "3"]}}"#
            )
        })
        .collect();
    format!(r#"{{"version": 1, "items": [{}]}}"#, items.join(","))
}

#[test]
fn rubrics_past_the_item_limit_are_refused() {
    use debias_guard::limits::MAX_RUBRIC_ITEMS;
    let ok = Rubric::from_json(&rubric_json(MAX_RUBRIC_ITEMS), "r.json");
    assert_eq!(ok.unwrap().items.len(), MAX_RUBRIC_ITEMS);
    let e = Rubric::from_json(&rubric_json(5000), "r.json").unwrap_err();
    assert_eq!(work_limit(e), ("rubric items", 5000, MAX_RUBRIC_ITEMS));
}

#[test]
fn catalogs_past_the_wording_limit_are_refused() {
    use debias_guard::limits::MAX_PROBE_WORDINGS;
    let mut catalog: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&ProbeCatalog::builtin()).unwrap()).unwrap();
    let controls = catalog["controls"].as_array_mut().unwrap();
    let template = controls[0].clone();
    while controls.len() <= MAX_PROBE_WORDINGS {
        let mut w = template.clone();
        w["id"] = format!("control.extra{}", controls.len()).into();
        controls.push(w);
    }
    let e = ProbeCatalog::from_json(&catalog.to_string(), "p.json").unwrap_err();
    let (limit, requested, max) = work_limit(e);
    assert_eq!((limit, max), ("probe wordings", MAX_PROBE_WORDINGS));
    assert!(requested > MAX_PROBE_WORDINGS);
}

#[test]
fn audits_past_the_variant_limit_are_refused_before_scoring() {
    use debias_guard::limits::MAX_VARIANTS_PER_CALL;
    let engine = tiny_engine("hostile-limits", &TinySpec::default(), 64);
    let rubric = Rubric::from_json(&rubric_json(40), "r.json").unwrap();
    let transcript = Transcript::new(SHORT_TRANSCRIPT).unwrap();
    let catalog = ProbeCatalog::builtin();
    let start = Instant::now();
    let e = audit(
        &engine,
        &PromptBuilder::default(),
        &AuditRequest {
            transcript: &transcript,
            transcript_name: "<inline>",
            items: &rubric.items,
            catalog: &catalog,
            catalog_name: "<built-in probes>",
            options: AuditOptions {
                mitigation_baseline: true,
                ..AuditOptions::default()
            },
        },
    )
    .unwrap_err();
    let (limit, requested, max) = work_limit(e);
    assert_eq!(
        (limit, max),
        ("prompt variants per call", MAX_VARIANTS_PER_CALL)
    );
    assert!(requested > max, "{requested}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}
