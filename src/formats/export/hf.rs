//! Writes a [`DenseCheckpoint`] as a Hugging Face model directory that transformers and this
//! library both load: `config.json`, one or more safetensors shards (with an index when
//! sharded), `tokenizer.json` and `tokenizer_config.json` with the chat template.

use crate::error::{Error, Result};
use crate::formats::hf::{write_atomically, write_safetensors, NamedTensor, StoreDtype};
use crate::formats::tokenizer::TextTokenizer;
use crate::formats::weights::DenseCheckpoint;
use serde_json::json;
use std::path::Path;

/// How to write a model directory.
#[derive(Debug, Clone, Default)]
pub struct HfWriteOptions {
    /// Storage type of the weights.
    pub dtype: StoreDtype,
    /// Number of safetensors shards (0 or 1 = a single `model.safetensors`).
    pub shards: usize,
    /// Chat template stored in `tokenizer_config.json`.
    pub chat_template: Option<String>,
}

/// Writes `checkpoint` and `tokenizer` into `dir` (created if needed).
pub fn write_hf_dir(
    dir: &Path,
    checkpoint: &DenseCheckpoint,
    tokenizer: &TextTokenizer,
    options: &HfWriteOptions,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let c = &checkpoint.config;
    if c.rope_interleaved {
        return Err(Error::InvalidInput(
            "a checkpoint in Hugging Face layout runs RoPE over halves".into(),
        ));
    }
    let dtype_name = match options.dtype {
        StoreDtype::F32 => "float32",
        StoreDtype::F16 => "float16",
        StoreDtype::BF16 => "bfloat16",
    };
    let family = c.architecture.family();
    let (model_type, arch) = (family.hf_model_type, family.hf_class);
    let bos = tokenizer
        .bos_text()
        .and_then(|t| tokenizer.inner().token_to_id(t));
    let eos: Vec<u32> = tokenizer.stop_ids().to_vec();
    let mut config = json!({
        "architectures": [arch],
        "model_type": model_type,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.ffn_size,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.context_length,
        "rms_norm_eps": c.rms_eps,
        "rope_theta": c.rope_base,
        "hidden_act": "silu",
        "tie_word_embeddings": checkpoint.tied_output(),
        "torch_dtype": dtype_name,
        "bos_token_id": bos,
        "eos_token_id": eos,
    });
    if c.rope_freq_factors.is_some() {
        return Err(Error::InvalidInput(
            "writing per-frequency RoPE factors to config.json is not supported".into(),
        ));
    }
    if c.rope_linear_scale != 1.0 {
        config["rope_scaling"] = json!({"rope_type": "linear", "factor": c.rope_linear_scale});
    }
    let pretty =
        |v: &serde_json::Value| serde_json::to_vec_pretty(v).expect("JSON values serialize");
    write_atomically(&dir.join("config.json"), &pretty(&config))?;
    write_weights(dir, checkpoint, options)?;
    let tokenizer_json = tokenizer
        .inner()
        .to_string(true)
        .map_err(|e| Error::Tokenizer(format!("cannot serialize tokenizer: {e}")))?;
    write_atomically(&dir.join("tokenizer.json"), tokenizer_json.as_bytes())?;
    let mut settings = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tokenizer.bos_text(),
        "eos_token": tokenizer.eos_text(),
        "add_bos_token": tokenizer.adds_bos(),
        "clean_up_tokenization_spaces": false,
    });
    if let Some(t) = &options.chat_template {
        settings["chat_template"] = json!(t);
    }
    write_atomically(&dir.join("tokenizer_config.json"), &pretty(&settings))
}

fn write_weights(dir: &Path, checkpoint: &DenseCheckpoint, options: &HfWriteOptions) -> Result<()> {
    let names: Vec<&String> = checkpoint.tensors.keys().collect();
    let shards = options.shards.clamp(1, names.len().max(1));
    fn named<'a>(checkpoint: &'a DenseCheckpoint, n: &'a str) -> NamedTensor<'a> {
        let t = &checkpoint.tensors[n];
        NamedTensor {
            name: n,
            shape: &t.shape,
            data: &t.data,
        }
    }
    if shards == 1 {
        let all: Vec<_> = names.iter().map(|n| named(checkpoint, n)).collect();
        return write_safetensors(&dir.join("model.safetensors"), &all, options.dtype, None);
    }
    let per = names.len().div_ceil(shards);
    let mut map = serde_json::Map::new();
    for (i, chunk) in names.chunks(per).enumerate() {
        let file = format!("model-{:05}-of-{:05}.safetensors", i + 1, shards);
        let tensors: Vec<_> = chunk.iter().map(|n| named(checkpoint, n)).collect();
        write_safetensors(&dir.join(&file), &tensors, options.dtype, None)?;
        for n in chunk {
            map.insert((*n).clone(), json!(file));
        }
    }
    let index = json!({"metadata": {}, "weight_map": map});
    write_atomically(
        &dir.join("model.safetensors.index.json"),
        &serde_json::to_vec_pretty(&index).expect("JSON values serialize"),
    )
}
