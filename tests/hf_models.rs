//! Hugging Face model directories: a tiny GGUF model written out as an HF directory (q/k rows
//! put back in HF order, RoPE over halves) must give the same logits, tokens and prompts as
//! the GGUF file it came from; broken directories give typed errors.

use debias_guard::export::{write_hf_dir, HfWriteOptions};
use debias_guard::hf::StoreDtype;
use debias_guard::tokenizer::TextTokenizer;
use debias_guard::weights::DenseCheckpoint;
use debias_guard::{Engine, EngineOptions, Error};
use debias_guard_testkit::{max_logit_diff, scratch_dir, tiny_model, TinySpec, SAMPLE_TRANSCRIPT};
use std::path::{Path, PathBuf};

fn options() -> EngineOptions {
    EngineOptions {
        threads: 2,
        ..Default::default()
    }
}

/// Writes `gguf` as an HF directory and returns it.
fn as_hf_dir(name: &str, gguf: &Path, dtype: StoreDtype, shards: usize) -> PathBuf {
    let engine = Engine::open(gguf, &options()).expect("open gguf");
    let dense = DenseCheckpoint::load(gguf).expect("dense");
    let dir = scratch_dir(name).join("hf");
    let opts = HfWriteOptions {
        dtype,
        shards,
        chat_template: Some(engine.chat_template().source().to_string()),
    };
    write_hf_dir(&dir, &dense, engine.tokenizer(), &opts).expect("write hf dir");
    dir
}

fn check_same_model(name: &str, spec: &TinySpec) {
    let gguf = tiny_model(name, spec);
    let dir = as_hf_dir(name, &gguf, StoreDtype::F32, 3);
    assert!(dir.join("model.safetensors.index.json").is_file());
    let a = Engine::open(&gguf, &options()).expect("gguf");
    let b = Engine::open(&dir, &options()).expect("hf dir");
    assert_eq!(a.config().rope_interleaved, spec.architecture == "llama");
    assert!(!b.config().rope_interleaved);
    let text = format!("{SAMPLE_TRANSCRIPT}Rating: 5");
    let tokens = a.tokenize(&text).unwrap();
    assert_eq!(tokens, b.tokenize(&text).unwrap(), "same tokens");
    // The tokenizer alone (no weights read) encodes like the engines' tokenizers.
    for path in [&gguf, &dir] {
        let alone = TextTokenizer::open(path).expect("tokenizer alone");
        assert_eq!(alone.encode(&text).unwrap(), tokens, "{}", path.display());
    }
    let positions: Vec<usize> = (0..tokens.len()).collect();
    let la = a.logits(&tokens, &positions).unwrap();
    let lb = b.logits(&tokens, &positions).unwrap();
    let diff = max_logit_diff(&la, &lb);
    assert!(diff < 1e-4, "{name}: logits differ by {diff}");
    // Loading the directory back as dense weights gives exactly what was written.
    let back = DenseCheckpoint::load(&dir).expect("dense from dir");
    let orig = DenseCheckpoint::load(&gguf).expect("dense from gguf");
    assert_eq!(back.tensors, orig.tensors);
}

#[test]
fn llama_directory_matches_its_gguf() {
    check_same_model("hf-llama", &TinySpec::default());
}

#[test]
fn qwen2_directory_with_untied_output_matches_its_gguf() {
    let spec = TinySpec {
        architecture: "qwen2".into(),
        untied_output: true,
        ..TinySpec::default()
    };
    check_same_model("hf-qwen2", &spec);
}

#[test]
fn bf16_directory_loads_close_to_f32() {
    let gguf = tiny_model("hf-bf16", &TinySpec::default());
    let dir = as_hf_dir("hf-bf16", &gguf, StoreDtype::BF16, 1);
    let a = Engine::open(&gguf, &options()).unwrap();
    let b = Engine::open(&dir, &options()).unwrap();
    let tokens = a.tokenize(SAMPLE_TRANSCRIPT).unwrap();
    let la = a.logits(&tokens, &[tokens.len() - 1]).unwrap();
    let lb = b.logits(&tokens, &[tokens.len() - 1]).unwrap();
    let diff = max_logit_diff(&la, &lb);
    assert!(
        diff > 0.0 && diff < 0.1,
        "bf16 rounding moves logits a little: {diff}"
    );
}

#[test]
fn broken_directories_give_typed_errors() {
    let gguf = tiny_model("hf-broken", &TinySpec::default());
    let dir = as_hf_dir("hf-broken", &gguf, StoreDtype::F32, 2);
    // A shard listed in the index is missing.
    let index = std::fs::read_to_string(dir.join("model.safetensors.index.json")).unwrap();
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let err = Engine::open(&dir, &options()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    // An index that points outside the directory.
    let escaping = index.replace("model-00002-of-00002.safetensors", "../x.safetensors");
    std::fs::write(dir.join("model.safetensors.index.json"), escaping).unwrap();
    let err = Engine::open(&dir, &options()).unwrap_err();
    assert!(err.to_string().contains("inside the directory"), "{err}");
    // A malformed config.
    let dir2 = as_hf_dir("hf-broken-config", &gguf, StoreDtype::F32, 1);
    std::fs::write(dir2.join("config.json"), "{\"model_type\": \"llama\"").unwrap();
    let err = Engine::open(&dir2, &options()).unwrap_err();
    assert!(matches!(err, Error::ModelFile { .. }), "{err}");
    let err = TextTokenizer::open(&dir2).unwrap_err();
    assert!(matches!(err, Error::ModelFile { .. }), "{err}");
    // Neither a directory nor a GGUF file: the tokenizer alone is refused too.
    let err = TextTokenizer::open(&dir2.join("config.json")).unwrap_err();
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
    let err = TextTokenizer::open(&dir2.join("missing.gguf")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    // A truncated single file.
    let dir3 = as_hf_dir("hf-broken-weights", &gguf, StoreDtype::F32, 1);
    let weights = dir3.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = Engine::open(&dir3, &options()).unwrap_err();
    assert!(matches!(err, Error::ModelFile { .. }), "{err}");
}

#[test]
fn directory_quantized_at_load_stays_close_to_f32() {
    let gguf = tiny_model("hf-quantize", &TinySpec::default());
    let dir = as_hf_dir("hf-quantize", &gguf, StoreDtype::F32, 1);
    let f32_engine = Engine::open(&dir, &options()).unwrap();
    let q8 = Engine::open(
        &dir,
        &EngineOptions {
            threads: 2,
            weight_format: debias_guard::model::WeightFormat::Quantize(
                candle_core::quantized::GgmlDType::Q8_0,
            ),
            ..Default::default()
        },
    )
    .unwrap();
    let tokens = f32_engine.tokenize(SAMPLE_TRANSCRIPT).unwrap();
    let last = [tokens.len() - 1];
    let diff = max_logit_diff(
        &f32_engine.logits(&tokens, &last).unwrap(),
        &q8.logits(&tokens, &last).unwrap(),
    );
    assert!(diff > 0.0 && diff < 0.2, "Q8_0 at load: {diff}");
}
