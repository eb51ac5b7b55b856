//! Export for llama.cpp: a merged GGUF model gives the logits of base + adapter at run time,
//! and a GGUF LoRA adapter file holds exactly the update (B·A scaled as llama.cpp scales it).
//! The same files are checked against llama.cpp itself by `scripts/check_gguf_export.py`.

mod common;

use candle_core::quantized::GgmlDType;
use candle_core::Device;
use common::{all_projection_modules, transcript_logits};
use debias_guard::adapter::PeftConfig;
use debias_guard::export::{write_gguf_adapter, write_merged_gguf};
use debias_guard::gguf::{GgufFile, MetadataExt};
use debias_guard::model::Projection;
use debias_guard::weights::DenseCheckpoint;
use debias_guard::{Engine, EngineOptions};
use debias_guard_testkit::{max_logit_diff, random_adapter, tiny_model, TinySpec};

fn opts() -> EngineOptions {
    EngineOptions {
        threads: 2,
        ..Default::default()
    }
}

fn all_modules() -> PeftConfig {
    let mut c = PeftConfig::lora(4, 8.0, &all_projection_modules());
    c.use_rslora = true;
    c.rank_pattern.insert("down_proj".into(), 2);
    c.alpha_pattern.insert("k_proj".into(), 3.0);
    c
}

#[test]
fn merged_gguf_matches_runtime_adapter() {
    for arch in ["llama", "qwen2"] {
        let spec = TinySpec {
            architecture: arch.into(),
            ..TinySpec::default()
        };
        let base = tiny_model(&format!("export-merge-{arch}"), &spec);
        let adapter = random_adapter(&base, all_modules(), 5);
        let merged = base.with_file_name("merged.gguf");
        write_merged_gguf(
            &merged,
            &GgufFile::open(&base).unwrap(),
            &adapter,
            "x",
            GgmlDType::F32,
        )
        .unwrap();
        let engine = Engine::open(&base, &opts()).unwrap();
        engine.add_adapter("x", &adapter).unwrap();
        let runtime = transcript_logits(&engine.with_adapter(Some("x")).unwrap());
        let merged_logits = transcript_logits(&Engine::open(&merged, &opts()).unwrap());
        let d = max_logit_diff(&runtime, &merged_logits);
        assert!(d < 1e-4, "{arch}: merged GGUF vs runtime adapter: {d}");
        assert!(
            max_logit_diff(&runtime, &transcript_logits(&engine)) > 1e-2,
            "{arch}: adapter moves logits"
        );
    }
}

#[test]
fn gguf_adapter_holds_the_update_as_llama_cpp_applies_it() {
    let base = tiny_model("export-adapter", &TinySpec::default());
    let adapter = random_adapter(&base, all_modules(), 5);
    let config = DenseCheckpoint::load(&base).unwrap().config;
    let out = base.with_file_name("adapter.gguf");
    write_gguf_adapter(&out, &adapter, "x", &config).unwrap();
    let file = GgufFile::open(&out).unwrap();
    assert_eq!(file.metadata.req_str("general.type").unwrap(), "adapter");
    assert_eq!(file.metadata.req_str("adapter.type").unwrap(), "lora");
    assert_eq!(
        file.metadata.req_str("general.architecture").unwrap(),
        "llama"
    );
    let alpha = file
        .metadata
        .opt_f64("adapter.lora.alpha")
        .unwrap()
        .unwrap();
    // Rebuild W + (alpha / r) · B · A from the file for every projection and compare with the
    // merged GGUF (both in llama.cpp's row order).
    let merged = base.with_file_name("merged-ref.gguf");
    write_merged_gguf(
        &merged,
        &GgufFile::open(&base).unwrap(),
        &adapter,
        "x",
        GgmlDType::F32,
    )
    .unwrap();
    let merged = GgufFile::open(&merged).unwrap();
    let base_file = GgufFile::open(&base).unwrap();
    let read = |f: &GgufFile, n: &str| {
        let t = f
            .qtensor(n, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        (
            t.dims().to_vec(),
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        )
    };
    let mut checked = 0;
    for layer in 0..config.n_layers {
        for p in Projection::ALL {
            let stem = format!("blk.{layer}.{}.weight", p.gguf_stem());
            let (a_dims, a) = read(&file, &format!("{stem}.lora_a"));
            let (b_dims, b) = read(&file, &format!("{stem}.lora_b"));
            let (r, inp, out) = (a_dims[0], a_dims[1], b_dims[0]);
            assert_eq!(b_dims[1], r);
            let (_, w) = read(&base_file, &stem);
            let (_, want) = read(&merged, &stem);
            let scale = alpha as f32 / r as f32;
            for o in 0..out {
                for i in 0..inp {
                    let d: f32 = (0..r).map(|k| b[o * r + k] * a[k * inp + i]).sum();
                    let got = w[o * inp + i] + scale * d;
                    assert!((got - want[o * inp + i]).abs() < 1e-5, "{stem}[{o},{i}]");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 14);
}
