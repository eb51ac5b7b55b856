//! llama.cpp's formats: a LoRA adapter as a GGUF adapter file (`general.type = adapter`,
//! `adapter.type = lora`, `blk.N.<stem>.weight.lora_a/lora_b`), and a base GGUF model with an
//! adapter merged into its weights.
//!
//! llama.cpp scales each pair by `adapter.lora.alpha / rank` (rank read from the tensors), so
//! settings it cannot express (rsLoRA, `alpha_pattern`) are baked into `B`; the file then
//! reproduces the adapter exactly. Llama q/k rows follow llama.cpp's adjacent-pair RoPE order.

use crate::arch::names::rows_halves_to_pairs;
use crate::arch::{ModelConfig, Projection};
use crate::error::{Error, Result};
use crate::formats::adapter::{validated_modules, PeftAdapter};
use crate::formats::gguf::{write_gguf, GgufFile, Value};
use candle_core::quantized::gguf_file;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Writes `adapter` (validated against `base`) as a llama.cpp GGUF LoRA adapter.
pub fn write_gguf_adapter(
    path: &Path,
    adapter: &PeftAdapter,
    name: &str,
    base: &ModelConfig,
) -> Result<()> {
    let config = gguf_layout(base);
    let modules = validated_modules(name, adapter, &config)?;
    let alpha = adapter.config.lora_alpha as f32;
    if alpha == 0.0 {
        return Err(Error::adapter(
            name,
            "lora_alpha 0 cannot be written for llama.cpp",
        ));
    }
    let arch = config.architecture.key_prefix();
    let metadata = vec![
        (
            "general.architecture".to_string(),
            gguf_file::Value::String(arch.into()),
        ),
        (
            "general.type".into(),
            gguf_file::Value::String("adapter".into()),
        ),
        ("general.name".into(), gguf_file::Value::String(name.into())),
        (
            "adapter.type".into(),
            gguf_file::Value::String("lora".into()),
        ),
        ("adapter.lora.alpha".into(), gguf_file::Value::F32(alpha)),
    ];
    let mut tensors = Vec::with_capacity(2 * modules.len());
    for m in &modules {
        let (out, inp) = m.projection.shape(&config);
        let r = m.rank;
        // llama.cpp applies alpha / r; the adapter wants m.scale.
        let fix = (m.scale / (alpha as f64 / r as f64)) as f32;
        let mut b: Vec<f32> = m.b.data.iter().map(|v| v * fix).collect();
        if let Some(heads) = m.projection.permuted_heads(&config) {
            b = rows_halves_to_pairs(&b, heads, r);
        }
        let stem = format!("blk.{}.{}.weight", m.layer, m.projection.gguf_stem());
        tensors.push((
            format!("{stem}.lora_a"),
            f32_qtensor(m.a.data.clone(), (r, inp))?,
        ));
        tensors.push((format!("{stem}.lora_b"), f32_qtensor(b, (out, r))?));
    }
    write_gguf(path, &metadata, &tensors)
}

/// Writes the base GGUF model with `adapter` merged into its projections. Adapted matrices are
/// stored as `dtype` (F32 keeps the merge exact); every other tensor and all metadata (tokenizer,
/// chat template) are copied as they are.
pub fn write_merged_gguf(
    path: &Path,
    base: &GgufFile,
    adapter: &PeftAdapter,
    name: &str,
    dtype: GgmlDType,
) -> Result<()> {
    let config = ModelConfig::from_gguf(base)?;
    let modules = validated_modules(name, adapter, &config)?;
    let mut deltas: HashMap<String, (Projection, Vec<f32>)> = HashMap::new();
    for m in &modules {
        let stem = format!("blk.{}.{}.weight", m.layer, m.projection.gguf_stem());
        deltas.insert(stem, (m.projection, m.delta()));
    }
    let mut metadata: Vec<(String, gguf_file::Value)> = base
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), to_candle(v)))
        .collect();
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    let mut names: Vec<&str> = base.tensor_names().collect();
    names.sort_unstable();
    let mut tensors = Vec::with_capacity(names.len());
    for n in names {
        let stored = base.qtensor(n, &Device::Cpu)?;
        let tensor = match deltas.get(n) {
            None => stored,
            Some((p, delta)) => {
                let mut w = stored
                    .dequantize(&Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                let (out, inp) = p.shape(&config);
                let delta = match p.permuted_heads(&config) {
                    Some(heads) => rows_halves_to_pairs(delta, heads, inp),
                    None => delta.clone(),
                };
                for (x, d) in w.iter_mut().zip(&delta) {
                    *x += d;
                }
                let t = Tensor::from_vec(w, (out, inp), &Device::Cpu)?;
                QTensor::quantize(&t, dtype)
                    .map_err(|e| Error::tensor(n, format!("cannot store as {dtype:?}: {e}")))?
            }
        };
        tensors.push((n.to_string(), tensor));
    }
    write_gguf(path, &metadata, &tensors)
}

/// The configuration as llama.cpp lays the weights out (q/k rows in the family's GGUF order).
fn gguf_layout(config: &ModelConfig) -> ModelConfig {
    ModelConfig {
        rope_interleaved: config.architecture.gguf_rope_interleaved(),
        ..config.clone()
    }
}

fn f32_qtensor(data: Vec<f32>, shape: (usize, usize)) -> Result<QTensor> {
    let t = Tensor::from_vec(data, shape, &Device::Cpu)?;
    Ok(QTensor::quantize(&t, GgmlDType::F32)?)
}

/// Our metadata value as candle's writer takes it.
fn to_candle(v: &Value) -> gguf_file::Value {
    use gguf_file::Value as C;
    match v {
        Value::U8(x) => C::U8(*x),
        Value::I8(x) => C::I8(*x),
        Value::U16(x) => C::U16(*x),
        Value::I16(x) => C::I16(*x),
        Value::U32(x) => C::U32(*x),
        Value::I32(x) => C::I32(*x),
        Value::U64(x) => C::U64(*x),
        Value::I64(x) => C::I64(*x),
        Value::F32(x) => C::F32(*x),
        Value::F64(x) => C::F64(*x),
        Value::Bool(x) => C::Bool(*x),
        Value::String(x) => C::String(x.clone()),
        Value::Array(xs) => C::Array(xs.iter().map(to_candle).collect()),
    }
}
