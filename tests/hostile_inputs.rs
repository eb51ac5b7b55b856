//! Hostile inputs (issue 14): templates run under budgets, and a model that computes NaN gets a
//! typed error instead of a score.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use debias_guard::chat::{ChatMessage, ChatTemplate};
use debias_guard::{Engine, EngineOptions, Error, PromptBuilder, PromptLayout, Rubric, Transcript};
use debias_guard_testkit::{scratch_dir, tiny_gguf_parts, write_gguf, TinySpec, SAMPLE_TRANSCRIPT};
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
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_template("chat", debias_guard::chat::DEFAULT_CHAT_TEMPLATE)
        .unwrap();
    let plain = env
        .get_template("chat")
        .unwrap()
        .render(minijinja::context! { messages => messages, add_generation_prompt => true })
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

#[test]
fn nan_in_the_embedding_is_an_error_not_a_score() {
    // Matrices are not checked at load yet: the score-time guard must catch it.
    let path = model_with_nan("token_embd.weight");
    let engine = Engine::open(&path, &EngineOptions::default()).unwrap();
    let rubric = Rubric::builtin();
    let transcript = Transcript::new(SAMPLE_TRANSCRIPT).unwrap();
    let builder = PromptBuilder::default();
    for item in &rubric.items {
        let prompt = engine
            .rubric_prompt(&builder, &transcript, item, None, false)
            .unwrap();
        match engine.score(&prompt) {
            Err(Error::NonFinite { what, .. }) => assert!(what.starts_with("label"), "{what}"),
            Err(e) => panic!("expected a non-finite error, got {e}"),
            Ok(d) => panic!("scored a NaN model: {d:?}"),
        }
    }
}
