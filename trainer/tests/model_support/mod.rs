//! Shared helpers of the `model_*` tests: tiny generated models and their weights in Hugging Face
//! layout.
//!
//! Until the library's `debias_guard::weights::DenseCheckpoint` is on main, GGUF tensors are
//! dequantized here and renamed to Hugging Face names, with the q/k rows of llama files put back
//! in Hugging Face order (GGUF llama files interleave RoPE pairs; HF rotates halves).
#![allow(dead_code)]

use burn::tensor::Device;
use debias_guard::gguf::GgufFile;
use debias_guard::model::ModelConfig;
use debias_guard::tiny::{write_tiny_gguf, TinySpec};
use debias_guard::{Engine, EngineOptions};
use debias_guard_trainer::model::{Decoder, DenseParts};
use std::path::{Path, PathBuf};

/// A fresh scratch directory for one test.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dg-model-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes a tiny random model (`llama` or `qwen2`) and returns its path.
pub fn tiny_model(dir: &Path, architecture: &str, untied_output: bool) -> PathBuf {
    let path = dir.join(format!("tiny-{architecture}-{untied_output}.gguf"));
    let spec = TinySpec {
        architecture: architecture.into(),
        untied_output,
        ..TinySpec::default()
    };
    write_tiny_gguf(&path, &spec).expect("write tiny model");
    path
}

/// Opens a model with the library's candle engine (single thread, deterministic).
pub fn engine(path: &Path) -> Engine {
    let options = EngineOptions {
        threads: 1,
        ..EngineOptions::default()
    };
    Engine::open(path, &options).expect("open engine")
}

/// RoPE inverse frequencies of a model without per-dimension factors.
pub fn inv_freq(config: &ModelConfig) -> Vec<f32> {
    let d = config.head_dim;
    (0..d / 2)
        .map(|i| {
            (config.rope_base.powf(-((2 * i) as f64) / d as f64) / config.rope_linear_scale) as f32
        })
        .collect()
}

/// The GGUF name of a Hugging Face tensor name.
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, tail) = rest.split_once('.')?;
    let (stem, kind) = tail.rsplit_once('.')?;
    let gguf_stem = match stem {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{gguf_stem}.{kind}"))
}

/// Dense Hugging Face-layout tensor `hf` of a GGUF file, or `None` when absent.
pub fn hf_tensor(file: &GgufFile, config: &ModelConfig, hf: &str) -> Option<DenseParts> {
    let name = gguf_name(hf)?;
    file.tensor_info(&name)?;
    let cpu = EngineOptions::default().device;
    let q = file.qtensor(&name, &cpu).expect("load tensor");
    let t = q.dequantize(&cpu).expect("dequantize");
    let shape = t.dims().to_vec();
    let mut data = t
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("read tensor");
    let heads = if hf.ends_with("q_proj.weight") {
        Some(config.n_heads)
    } else if hf.ends_with("k_proj.weight") {
        Some(config.n_kv_heads)
    } else {
        None
    };
    if let (Some(heads), true) = (heads, config.rope_interleaved) {
        data = unpermute_rows(&data, heads, config.head_dim, shape[1]);
    }
    Some(DenseParts { shape, data })
}

/// GGUF llama row `(h, 2j + t)` is Hugging Face row `(h, t · hd/2 + j)`.
fn unpermute_rows(data: &[f32], heads: usize, hd: usize, cols: usize) -> Vec<f32> {
    let half = hd / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..heads {
        for j in 0..half {
            for t in 0..2 {
                let src = (h * hd + 2 * j + t) * cols;
                let dst = (h * hd + t * half + j) * cols;
                out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
            }
        }
    }
    out
}

/// The burn decoder of a GGUF model, on `device`.
pub fn decoder(path: &Path, config: &ModelConfig, device: &Device) -> Decoder {
    let file = GgufFile::open(path).expect("open gguf");
    Decoder::from_tensors(
        config.clone(),
        inv_freq(config),
        |name| hf_tensor(&file, config, name),
        device,
    )
    .expect("build decoder")
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Row-major values of a burn tensor.
pub fn values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("read tensor")
}
