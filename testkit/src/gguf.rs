//! Small random models written as real GGUF files, with a real byte-level BPE tokenizer and a
//! ChatML template, so tests, benches and the C ABI tests exercise every code path in seconds.

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use debias_guard::arch::Architecture;
use debias_guard::Result;
use std::path::Path;

pub use debias_guard::gguf::write_gguf;

/// Control tokens of the tiny vocabulary (ChatML markers and end of text).
pub const TINY_SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Words whose byte-level merges are added to the tiny vocabulary, so common prompt words
/// become single tokens and the tokenizer's merge path is exercised.
const TINY_WORDS: &[&str] = &[
    "the",
    "The",
    "teacher",
    "TEACHER",
    "student",
    "STUDENT",
    "Rating",
    "rating",
    "scale",
    "and",
    "to",
    "of",
    "is",
    "in",
    "you",
    "what",
    "how",
    "on",
    "a",
    "Rubric",
    "item",
    "Question",
    "transcript",
    "lesson",
    "system",
    "user",
    "assistant",
    "Answer",
    "from",
    "with",
    "this",
    "that",
    "for",
    "Additional",
    "information",
    "years",
    "experience",
    "highest",
    "lowest",
];

/// Shape and storage of a generated model.
#[derive(Debug, Clone, PartialEq)]
pub struct TinySpec {
    /// `llama` or `qwen2`.
    pub architecture: String,
    /// Residual width.
    pub hidden: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// MLP width.
    pub ffn: usize,
    /// Context length written to the metadata.
    pub context_length: usize,
    /// Storage type of the matrices (F32, Q8_0, Q4_1, …; must divide `hidden` and `ffn`).
    pub dtype: GgmlDType,
    /// Seed of the random weights.
    pub seed: u64,
    /// Write a separate `output.weight` instead of tying it to the embedding.
    pub untied_output: bool,
}

impl Default for TinySpec {
    fn default() -> Self {
        Self {
            architecture: "llama".into(),
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            ffn: 128,
            context_length: 4096,
            dtype: GgmlDType::F32,
            seed: 7,
            untied_output: false,
        }
    }
}

impl TinySpec {
    /// The default shape for `architecture` (`llama` or `qwen2`), with the output projection
    /// tied to the embedding or not.
    pub fn new(architecture: &str, untied_output: bool) -> Self {
        Self {
            architecture: architecture.into(),
            untied_output,
            ..Self::default()
        }
    }
}

/// GPT-2's reversible mapping from bytes to printable characters.
pub fn byte_to_char() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        map[b as usize] = if printable {
            b as char
        } else {
            extra += 1;
            char::from_u32(255 + extra).expect("valid code point")
        };
    }
    map
}

/// Vocabulary and merges of the tiny tokenizer: every byte, merges for a fixed list of common prompt words (with
/// and without a leading space), and the control tokens. Returns (tokens, merges, types).
pub fn tiny_vocabulary() -> (Vec<String>, Vec<String>, Vec<i32>) {
    let bytes = byte_to_char();
    let mut tokens: Vec<String> = bytes.iter().map(|c| c.to_string()).collect();
    let mut merges = Vec::new();
    let space = bytes[b' ' as usize];
    for word in TINY_WORDS {
        for prefix in [String::new(), space.to_string()] {
            let chars: Vec<String> = prefix
                .chars()
                .map(String::from)
                .chain(word.bytes().map(|b| bytes[b as usize].to_string()))
                .collect();
            let mut acc = chars[0].clone();
            for piece in &chars[1..] {
                let merged = format!("{acc}{piece}");
                if !tokens.contains(&merged) {
                    merges.push(format!("{acc} {piece}"));
                    tokens.push(merged.clone());
                }
                acc = merged;
            }
        }
    }
    let mut types = vec![1; tokens.len()];
    for special in TINY_SPECIAL_TOKENS {
        tokens.push(special.to_string());
        types.push(3);
    }
    (tokens, merges, types)
}

/// The `tokenizer.ggml.pre` of a tiny model: a real model of the family would carry this one
/// (SmolLM's digit splitting for Llama-shaped models, the Qwen2 regex for Qwen2).
pub fn pre_tokenizer_name(architecture: Architecture) -> &'static str {
    match architecture {
        Architecture::Qwen2 => "qwen2",
        Architecture::Llama => "smollm",
    }
}

/// Metadata and tensors of a GGUF file, in the form [`write_gguf`] takes.
pub type GgufParts = (Vec<(String, Value)>, Vec<(String, QTensor)>);

/// Writes a random model described by `spec` to `path` as GGUF.
pub fn write_tiny_gguf(path: &Path, spec: &TinySpec) -> Result<()> {
    let (metadata, tensors) = tiny_gguf_parts(spec)?;
    write_gguf(path, &metadata, &tensors)
}

/// The metadata and random tensors of the model described by `spec`.
pub fn tiny_gguf_parts(spec: &TinySpec) -> Result<GgufParts> {
    let (tokens, merges, types) = tiny_vocabulary();
    let vocab = tokens.len();
    let family = Architecture::from_name(&spec.architecture)?.family();
    let arch = family.gguf_name;
    let hd = spec.hidden / spec.heads;
    let dev = Device::Cpu;
    let mut rng_seed = spec.seed;
    let mut tensor = |dims: &[usize], scale: f64| -> Result<Tensor> {
        rng_seed = rng_seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let n: usize = dims.iter().product();
        let data = random_normal(rng_seed, n, scale);
        Ok(Tensor::from_vec(data, dims, &dev)?)
    };
    let mut named: Vec<(String, QTensor)> = Vec::new();
    let quant =
        |t: &Tensor, dtype: GgmlDType| -> Result<QTensor> { Ok(QTensor::quantize(t, dtype)?) };
    let embd = tensor(&[vocab, spec.hidden], 1.0)?;
    // Embedding rows are not a multiple of every block size; keep them F32 unless they fit.
    let embd_dtype = if spec.hidden.is_multiple_of(spec.dtype.block_size()) {
        spec.dtype
    } else {
        GgmlDType::F32
    };
    named.push(("token_embd.weight".into(), quant(&embd, embd_dtype)?));
    let w = |fan_in: usize| 1.0 / (fan_in as f64).sqrt();
    for l in 0..spec.layers {
        let mut push = |name: &str, t: Tensor, dtype: GgmlDType| -> Result<()> {
            named.push((format!("blk.{l}.{name}"), quant(&t, dtype)?));
            Ok(())
        };
        push(
            "attn_norm.weight",
            (tensor(&[spec.hidden], 0.1)? + 1.0)?,
            GgmlDType::F32,
        )?;
        push(
            "ffn_norm.weight",
            (tensor(&[spec.hidden], 0.1)? + 1.0)?,
            GgmlDType::F32,
        )?;
        push(
            "attn_q.weight",
            tensor(&[spec.heads * hd, spec.hidden], w(spec.hidden))?,
            spec.dtype,
        )?;
        push(
            "attn_k.weight",
            tensor(&[spec.kv_heads * hd, spec.hidden], w(spec.hidden))?,
            spec.dtype,
        )?;
        push(
            "attn_v.weight",
            tensor(&[spec.kv_heads * hd, spec.hidden], w(spec.hidden))?,
            spec.dtype,
        )?;
        push(
            "attn_output.weight",
            tensor(&[spec.hidden, spec.heads * hd], w(spec.hidden))?,
            spec.dtype,
        )?;
        push(
            "ffn_gate.weight",
            tensor(&[spec.ffn, spec.hidden], w(spec.hidden))?,
            spec.dtype,
        )?;
        push(
            "ffn_up.weight",
            tensor(&[spec.ffn, spec.hidden], w(spec.hidden))?,
            spec.dtype,
        )?;
        push(
            "ffn_down.weight",
            tensor(&[spec.hidden, spec.ffn], w(spec.ffn))?,
            spec.dtype,
        )?;
        if family.qkv_bias {
            push(
                "attn_q.bias",
                tensor(&[spec.heads * hd], 0.1)?,
                GgmlDType::F32,
            )?;
            push(
                "attn_k.bias",
                tensor(&[spec.kv_heads * hd], 0.1)?,
                GgmlDType::F32,
            )?;
            push(
                "attn_v.bias",
                tensor(&[spec.kv_heads * hd], 0.1)?,
                GgmlDType::F32,
            )?;
        }
    }
    // A small final norm keeps logits within a few units, as in trained models; a random
    // embedding read back at full scale would make every distribution nearly one-hot.
    named.push((
        "output_norm.weight".into(),
        quant(&(tensor(&[spec.hidden], 0.02)? + 0.25)?, GgmlDType::F32)?,
    ));
    if spec.untied_output {
        named.push((
            "output.weight".into(),
            quant(&tensor(&[vocab, spec.hidden], 0.2)?, embd_dtype)?,
        ));
    }
    let s = |v: &str| Value::String(v.to_string());
    let u = |v: usize| Value::U32(v as u32);
    let key = |k: &str| format!("{arch}.{k}");
    let special_id = |name: &str| {
        u(tokens
            .iter()
            .position(|t| t == name)
            .expect("special token present"))
    };
    let metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), s(arch)),
        ("general.name".into(), s("debias-guard tiny test model")),
        (key("block_count"), u(spec.layers)),
        (key("context_length"), u(spec.context_length)),
        (key("embedding_length"), u(spec.hidden)),
        (key("feed_forward_length"), u(spec.ffn)),
        (key("attention.head_count"), u(spec.heads)),
        (key("attention.head_count_kv"), u(spec.kv_heads)),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        (key("rope.freq_base"), Value::F32(10_000.0)),
        (key("vocab_size"), u(vocab)),
        ("tokenizer.ggml.model".into(), s("gpt2")),
        (
            "tokenizer.ggml.pre".into(),
            s(pre_tokenizer_name(family.architecture)),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(merges.iter().map(|m| s(m)).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        (
            "tokenizer.ggml.bos_token_id".into(),
            special_id("<|im_start|>"),
        ),
        (
            "tokenizer.ggml.eos_token_id".into(),
            special_id("<|im_end|>"),
        ),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        (
            "tokenizer.chat_template".into(),
            s(debias_guard::chat::DEFAULT_CHAT_TEMPLATE),
        ),
    ];
    Ok((metadata, named))
}

/// Deterministic normal samples (splitmix64 + Box–Muller), scaled by `scale`.
pub fn random_normal(seed: u64, n: usize, scale: f64) -> Vec<f32> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (next().max(1e-12), next());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * scale) as f32
        })
        .collect()
}

/// A random LoRA adapter for a model with `model`'s shapes: non-zero `A` and `B` (scaled so
/// the adapter moves the tiny model's outputs visibly) for every projection `config` selects.
pub fn tiny_adapter(
    model: &debias_guard::model::ModelConfig,
    config: debias_guard::adapter::PeftConfig,
    seed: u64,
) -> Result<debias_guard::adapter::PeftAdapter> {
    use debias_guard::adapter::{LoraMatrix, PeftAdapter};
    use debias_guard::weights::DenseTensor;
    let selector = config.selector("tiny")?;
    let mut tensors = std::collections::BTreeMap::new();
    let mut stream = seed;
    for layer in 0..model.n_layers {
        for p in debias_guard::model::Projection::ALL {
            let path = p.hf_path(layer);
            if !selector.targets(&path, layer) {
                continue;
            }
            let (out, inp) = p.shape(model);
            let r = selector.rank(&path);
            for (matrix, shape) in [(LoraMatrix::A, [r, inp]), (LoraMatrix::B, [out, r])] {
                stream = stream.wrapping_mul(6364136223846793005).wrapping_add(1);
                let n = shape[0] * shape[1];
                tensors.insert(
                    PeftAdapter::key(&path, matrix),
                    DenseTensor {
                        shape: shape.to_vec(),
                        data: random_normal(stream, n, 0.1),
                    },
                );
            }
        }
    }
    Ok(PeftAdapter { config, tensors })
}
