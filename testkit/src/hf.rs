//! Small random models written as Hugging Face model directories (`config.json`, safetensors
//! weights, `tokenizer.json`, `tokenizer_config.json`) and random PEFT LoRA adapters for them, so
//! the safetensors loader and the adapter code can be checked against transformers and peft on
//! files made in milliseconds.
//!
//! The vocabulary is the one of [`crate::gguf`]; tensor names, shapes and `config.json` fields are
//! those of `LlamaForCausalLM` / `Qwen2ForCausalLM` checkpoints. q/k rows are in Hugging Face order
//! (RoPE rotates halves), which is simply how random rows are read: no permutation is involved.
//! Which modules an adapter covers follows peft's own rules (see [`lora_targets`]), so a file
//! written here loads into peft without missing or unexpected keys.

use crate::gguf::{random_normal, tiny_vocabulary, TinySpec, TINY_SPECIAL_TOKENS};
use debias_guard::adapter::{LoraMatrix, PeftAdapter, PeftConfig};
use debias_guard::arch::{Architecture, Family, Projection, RopeScaling};
use debias_guard::hf::{write_atomically, write_safetensors, NamedTensor, StoreDtype};
use debias_guard::tokenizer::{PreTokenizerKind, TextTokenizer, TokenizerParts};
use debias_guard::weights::DenseTensor;
use debias_guard::{Error, Result};
use regex::Regex;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Most elements a generated model or adapter may hold (guards against absurd specs).
const MAX_ELEMENTS: usize = 1 << 28;

/// The name `config.json` gives a storage type (`torch_dtype`).
fn torch_name(dtype: StoreDtype) -> &'static str {
    match dtype {
        StoreDtype::F32 => "float32",
        StoreDtype::F16 => "float16",
        StoreDtype::BF16 => "bfloat16",
    }
}

/// Llama 3 style RoPE frequency scaling (`rope_scaling` with `rope_type: llama3`).
#[derive(Debug, Clone, PartialEq)]
pub struct Llama3RopeScaling {
    /// Divisor of the low frequencies.
    pub factor: f64,
    /// Wavelengths above `original_max_position_embeddings / low_freq_factor` are fully scaled.
    pub low_freq_factor: f64,
    /// Wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// Context length the frequencies were trained for, in tokens.
    pub original_max_position_embeddings: usize,
}

/// Shape, storage and layout of a generated Hugging Face model directory.
#[derive(Debug, Clone)]
pub struct HfModelSpec {
    /// Architecture, sizes, seed and tying (`model.dtype` is ignored: see `dtype`).
    pub model: TinySpec,
    /// Storage type of every tensor.
    pub dtype: StoreDtype,
    /// Number of safetensors files: 1 writes `model.safetensors`, more write
    /// `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`.
    pub shards: usize,
    /// Optional llama3 RoPE scaling block in `config.json` (llama only).
    pub rope_scaling: Option<Llama3RopeScaling>,
}

impl Default for HfModelSpec {
    fn default() -> Self {
        Self {
            model: TinySpec::default(),
            dtype: StoreDtype::F32,
            shards: 1,
            rope_scaling: None,
        }
    }
}

/// A linear layer a LoRA adapter may attach to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearModule {
    /// Module path inside the causal-LM model (`model.layers.0.self_attn.q_proj`, `lm_head`).
    pub name: String,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
}

/// The vocabulary size of every generated model (bytes, word merges and control tokens).
pub fn tiny_vocab_size() -> usize {
    tiny_vocabulary().0.len()
}

/// Checks a spec before anything is allocated.
fn validate(spec: &HfModelSpec) -> Result<()> {
    let m = &spec.model;
    let bad = |why: String| Err(Error::InvalidInput(format!("tiny HF model spec: {why}")));
    let family = Architecture::from_name(&m.architecture)?.family();
    if m.hidden == 0 || m.layers == 0 || m.heads == 0 || m.kv_heads == 0 || m.ffn == 0 {
        return bad("hidden, layers, heads, kv_heads and ffn must be positive".into());
    }
    if !m.hidden.is_multiple_of(m.heads) || !(m.hidden / m.heads).is_multiple_of(2) {
        return bad(format!(
            "hidden {} must split into {} heads of even size",
            m.hidden, m.heads
        ));
    }
    if !m.heads.is_multiple_of(m.kv_heads) {
        return bad(format!(
            "heads {} is not a multiple of kv_heads {}",
            m.heads, m.kv_heads
        ));
    }
    if spec.rope_scaling.is_some() && !family.hf_rope_scalings.contains(&RopeScaling::Llama3) {
        return bad(format!(
            "{} does not take llama3 rope_scaling",
            family.hf_model_type
        ));
    }
    if [m.hidden, m.ffn, m.layers]
        .iter()
        .any(|&d| d > MAX_ELEMENTS)
    {
        return bad(format!("a dimension exceeds {MAX_ELEMENTS}"));
    }
    let vocab = tiny_vocab_size();
    // Every factor is below 2^28 here, so the u128 product cannot overflow.
    let (h, f, l, v) = (
        m.hidden as u128,
        m.ffn as u128,
        m.layers as u128,
        vocab as u128,
    );
    let total = l * h * (4 * h + 3 * f + 4) + 2 * v * h;
    if total > MAX_ELEMENTS as u128 {
        return bad(format!("more than {MAX_ELEMENTS} weights"));
    }
    if spec.shards == 0 || spec.shards > hf_tensor_count(m, family) {
        return bad(format!(
            "shards must be between 1 and the tensor count {}, got {}",
            hf_tensor_count(m, family),
            spec.shards
        ));
    }
    Ok(())
}

/// Number of tensors the model writes.
fn hf_tensor_count(m: &TinySpec, family: &Family) -> usize {
    let biases = Projection::ALL
        .iter()
        .filter(|p| p.has_bias(family.architecture))
        .count();
    let per_layer = 2 + Projection::ALL.len() + biases;
    2 + m.layers * per_layer + usize::from(m.untied_output)
}

/// A per-tensor seed: the model seed mixed with an FNV-1a hash of the tensor name, so each
/// tensor's values do not depend on which other tensors exist.
fn tensor_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ h
}

/// The linear layers of the model, in checkpoint order (per block: q, k, v, o, gate, up, down;
/// then `lm_head`).
pub fn linear_modules(spec: &HfModelSpec) -> Result<Vec<LinearModule>> {
    validate(spec)?;
    let m = &spec.model;
    let hd = m.hidden / m.heads;
    let mut out = Vec::new();
    let mut push = |name: String, in_features: usize, out_features: usize| {
        out.push(LinearModule {
            name,
            in_features,
            out_features,
        })
    };
    for l in 0..m.layers {
        let p = format!("model.layers.{l}");
        push(format!("{p}.self_attn.q_proj"), m.hidden, m.heads * hd);
        push(format!("{p}.self_attn.k_proj"), m.hidden, m.kv_heads * hd);
        push(format!("{p}.self_attn.v_proj"), m.hidden, m.kv_heads * hd);
        push(format!("{p}.self_attn.o_proj"), m.heads * hd, m.hidden);
        push(format!("{p}.mlp.gate_proj"), m.hidden, m.ffn);
        push(format!("{p}.mlp.up_proj"), m.hidden, m.ffn);
        push(format!("{p}.mlp.down_proj"), m.ffn, m.hidden);
    }
    push("lm_head".into(), m.hidden, tiny_vocab_size());
    Ok(out)
}

/// The random tensors of the model in checkpoint order, with Hugging Face names. Embeddings are
/// unit normal, linear weights have std `1/sqrt(fan_in)`, norms are near 1 (the final norm near
/// 0.25, or 0.1 when tied, so logits stay within a few units as in trained models), Qwen2 q/k/v biases have std 0.1.
pub fn tiny_hf_tensors(spec: &HfModelSpec) -> Result<Vec<(String, DenseTensor)>> {
    let linears = linear_modules(spec)?;
    let m = &spec.model;
    let architecture = Architecture::from_name(&m.architecture)?;
    let vocab = tiny_vocab_size();
    let tensor = |name: String, shape: Vec<usize>, scale: f64, offset: f32| {
        let n = shape.iter().product();
        let data = random_normal(tensor_seed(m.seed, &name), n, scale)
            .into_iter()
            .map(|v| v + offset)
            .collect();
        (name, DenseTensor { shape, data })
    };
    let mut out = vec![tensor(
        "model.embed_tokens.weight".into(),
        vec![vocab, m.hidden],
        1.0,
        0.0,
    )];
    for l in 0..m.layers {
        let p = format!("model.layers.{l}");
        out.push(tensor(
            format!("{p}.input_layernorm.weight"),
            vec![m.hidden],
            0.1,
            1.0,
        ));
        for lin in linears
            .iter()
            .filter(|x| x.name.starts_with(&format!("{p}.")))
        {
            let scale = 1.0 / (lin.in_features as f64).sqrt();
            out.push(tensor(
                format!("{}.weight", lin.name),
                vec![lin.out_features, lin.in_features],
                scale,
                0.0,
            ));
            let has_bias = Projection::ALL
                .iter()
                .any(|p| p.has_bias(architecture) && lin.name.ends_with(p.hf_module()));
            if has_bias {
                out.push(tensor(
                    format!("{}.bias", lin.name),
                    vec![lin.out_features],
                    0.1,
                    0.0,
                ));
            }
        }
        out.push(tensor(
            format!("{p}.post_attention_layernorm.weight"),
            vec![m.hidden],
            0.1,
            1.0,
        ));
    }
    // With tied embeddings the residual still holds the input token's own embedding, whose logit
    // then stands out by about sqrt(hidden) standard deviations; a smaller final norm keeps those
    // rows from being one-hot.
    let final_norm = if m.untied_output { 0.25 } else { 0.1 };
    out.push(tensor(
        "model.norm.weight".into(),
        vec![m.hidden],
        0.02,
        final_norm,
    ));
    if m.untied_output {
        out.push(tensor(
            "lm_head.weight".into(),
            vec![vocab, m.hidden],
            1.0,
            0.0,
        ));
    }
    Ok(out)
}

/// The tiny tokenizer as a [`TextTokenizer`] (SmolLM digit splitting for llama, the Qwen2 regex
/// for qwen2), BOS `<|im_start|>` not prepended, EOS `<|im_end|>`.
pub fn tiny_text_tokenizer(architecture: &str) -> Result<TextTokenizer> {
    let (tokens, merges, types) = tiny_vocabulary();
    let id = |name: &str| tokens.iter().position(|t| t == name).map(|i| i as u32);
    let kind = match Architecture::from_name(architecture)? {
        Architecture::Llama => PreTokenizerKind::SmolLm,
        Architecture::Qwen2 => PreTokenizerKind::Qwen2,
    };
    let eos = id("<|im_end|>");
    TextTokenizer::build(TokenizerParts {
        kind,
        bos: id("<|im_start|>"),
        add_bos: false,
        stop: eos.into_iter().collect(),
        types: types.into_iter().map(i64::from).collect(),
        tokens,
        merges,
    })
}

/// Writes the model described by `spec` into `dir` (created if needed; existing files of the same
/// names are replaced). Output is byte-for-byte deterministic for a given spec.
pub fn write_tiny_hf_model(dir: &Path, spec: &HfModelSpec) -> Result<()> {
    let tensors = tiny_hf_tensors(spec)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_config(dir, spec)?;
    write_weights(dir, spec, &tensors)?;
    write_tokenizer(dir, spec)
}

fn write_config(dir: &Path, spec: &HfModelSpec) -> Result<()> {
    let m = &spec.model;
    let (tokens, _, _) = tiny_vocabulary();
    let id = |name: &str| tokens.iter().position(|t| t == name);
    let family = Architecture::from_name(&m.architecture)?.family();
    let mut config = json!({
        "architectures": [family.hf_class],
        "model_type": family.hf_model_type,
        "hidden_size": m.hidden,
        "intermediate_size": m.ffn,
        "num_hidden_layers": m.layers,
        "num_attention_heads": m.heads,
        "num_key_value_heads": m.kv_heads,
        "head_dim": m.hidden / m.heads,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": null,
        "max_position_embeddings": m.context_length,
        "vocab_size": tokens.len(),
        "tie_word_embeddings": !m.untied_output,
        "torch_dtype": torch_name(spec.dtype),
        "bos_token_id": id("<|im_start|>"),
        "eos_token_id": id("<|im_end|>"),
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "use_cache": true,
    });
    let obj = config
        .as_object_mut()
        .expect("json! object literal is an object");
    // Fields transformers' own config classes write for each family (the library ignores them).
    match family.architecture {
        Architecture::Qwen2 => {
            obj.insert("use_sliding_window".into(), json!(false));
            obj.insert("sliding_window".into(), json!(m.context_length));
            obj.insert("max_window_layers".into(), json!(m.layers));
        }
        Architecture::Llama => {
            obj.insert("attention_bias".into(), json!(false));
            obj.insert("mlp_bias".into(), json!(false));
            obj.insert("pretraining_tp".into(), json!(1));
        }
    }
    if let Some(s) = &spec.rope_scaling {
        obj.insert(
            "rope_scaling".into(),
            json!({
                "rope_type": "llama3",
                "factor": s.factor,
                "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_position_embeddings,
            }),
        );
    }
    write_json(&dir.join("config.json"), &config)
}

fn write_weights(dir: &Path, spec: &HfModelSpec, tensors: &[(String, DenseTensor)]) -> Result<()> {
    let per_shard = tensors.len().div_ceil(spec.shards);
    let groups: Vec<&[(String, DenseTensor)]> = tensors.chunks(per_shard).collect();
    if groups.len() != spec.shards {
        return Err(Error::InvalidInput(format!(
            "{} tensors cannot be split evenly into {} shards",
            tensors.len(),
            spec.shards
        )));
    }
    let bytes_per_value = match spec.dtype {
        StoreDtype::F32 => 4,
        StoreDtype::F16 | StoreDtype::BF16 => 2,
    };
    let mut weight_map = BTreeMap::new();
    let mut total_size = 0usize;
    for (i, group) in groups.iter().enumerate() {
        let file = if spec.shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, spec.shards)
        };
        for (name, t) in group.iter() {
            weight_map.insert(name.clone(), file.clone());
            total_size += t.data.len() * bytes_per_value;
        }
        write_named(&dir.join(&file), group, spec.dtype)?;
    }
    if spec.shards > 1 {
        let index = json!({
            "metadata": { "total_size": total_size },
            "weight_map": weight_map,
        });
        write_json(&dir.join("model.safetensors.index.json"), &index)?;
    }
    Ok(())
}

/// Writes tensors as safetensors with the `format: pt` header metadata that transformers checks.
fn write_named(path: &Path, tensors: &[(String, DenseTensor)], dtype: StoreDtype) -> Result<()> {
    let named: Vec<NamedTensor<'_>> = tensors
        .iter()
        .map(|(name, t)| NamedTensor {
            name,
            shape: &t.shape,
            data: &t.data,
        })
        .collect();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(path, &named, dtype, Some(metadata))
}

fn write_tokenizer(dir: &Path, spec: &HfModelSpec) -> Result<()> {
    let tokenizer = tiny_text_tokenizer(&spec.model.architecture)?;
    let text = tokenizer
        .inner()
        .to_string(true)
        .map_err(|e| Error::Tokenizer(format!("cannot serialise tokenizer.json: {e}")))?;
    write_atomically(&dir.join("tokenizer.json"), text.as_bytes())?;
    let [endoftext, im_start, im_end] = TINY_SPECIAL_TOKENS;
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": false,
        "add_eos_token": false,
        "bos_token": im_start,
        "eos_token": im_end,
        "pad_token": endoftext,
        "model_max_length": spec.model.context_length,
        "clean_up_tokenization_spaces": false,
        "chat_template": debias_guard::chat::DEFAULT_CHAT_TEMPLATE,
    });
    write_json(&dir.join("tokenizer_config.json"), &config)
}

/// Which modules a LoRA adapter targets: peft's `target_modules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetModules {
    /// Module names; a module matches when its path equals a name or ends with `.name`.
    Names(Vec<String>),
    /// A regular expression that must match the whole module path.
    Regex(String),
}

/// A random LoRA adapter in peft's format.
#[derive(Debug, Clone)]
pub struct LoraSpec {
    /// Default rank.
    pub r: usize,
    /// Default alpha (scaling = alpha / r, or alpha / sqrt(r) with rsLoRA).
    pub lora_alpha: f64,
    /// Scale by `alpha / sqrt(r)` instead of `alpha / r`.
    pub use_rslora: bool,
    /// Modules to adapt.
    pub target_modules: TargetModules,
    /// Rank overrides: regex key → rank, matched against the end of the module path.
    pub rank_pattern: BTreeMap<String, usize>,
    /// Alpha overrides: regex key → alpha, matched like `rank_pattern`.
    pub alpha_pattern: BTreeMap<String, f64>,
    /// Only these block indices (applies to `TargetModules::Names` only, as in peft).
    pub layers_to_transform: Option<Vec<usize>>,
    /// Seed of the random A and B matrices.
    pub seed: u64,
    /// Standard deviation of every A and B entry (both non-zero, unlike peft's initialisation).
    pub init_std: f64,
}

impl Default for LoraSpec {
    fn default() -> Self {
        Self {
            r: 4,
            lora_alpha: 8.0,
            use_rslora: false,
            target_modules: TargetModules::Names(
                ["q_proj", "k_proj", "v_proj", "o_proj"]
                    .map(String::from)
                    .to_vec(),
            ),
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
            layers_to_transform: None,
            seed: 11,
            init_std: 0.1,
        }
    }
}

/// One adapted module with its resolved rank and alpha.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraTarget {
    /// The linear layer.
    pub module: LinearModule,
    /// Rank after `rank_pattern`.
    pub r: usize,
    /// Alpha after `alpha_pattern`.
    pub alpha: f64,
}

impl LoraTarget {
    /// Factor applied to `B A` (`alpha / r`, or `alpha / sqrt(r)` with rsLoRA).
    pub fn scaling(&self, use_rslora: bool) -> f64 {
        if use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }
}

fn compile(pattern: &str, what: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| Error::InvalidInput(format!("{what} `{pattern}`: {e}")))
}

/// The first pattern key (in sorted order, which is also the order written to
/// `adapter_config.json`) that matches the end of `module` at a `.` boundary, as peft's
/// `get_pattern_key` does with `(.*\.)?(key)$`.
fn pattern_key<'a, V>(patterns: &'a BTreeMap<String, V>, module: &str) -> Result<Option<&'a V>> {
    for (key, value) in patterns {
        if compile(&format!(r"^(?:.*\.)?(?:{key})$"), "pattern key")?.is_match(module) {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// The modules `lora` adapts in the model `base`, with ranks and alphas resolved by peft's rules:
/// a regex `target_modules` must match the whole path; a name list matches a path equal to a name
/// (kept whatever `layers_to_transform` says) or ending in `.name`, and only such suffix matches
/// are filtered by `layers_to_transform` (the first numbered path segment is the layer index;
/// modules without one, like `lm_head`, drop out).
pub fn lora_targets(base: &HfModelSpec, lora: &LoraSpec) -> Result<Vec<LoraTarget>> {
    if lora.r == 0 || lora.rank_pattern.values().any(|&r| r == 0) {
        return Err(Error::InvalidInput("LoRA rank must be positive".into()));
    }
    let layer_index = compile(r"^.*?\.[^.]*\.(\d+)\.", "layer index pattern")?;
    let regex = match &lora.target_modules {
        TargetModules::Regex(p) => Some(compile(&format!("^(?:{p})$"), "target_modules")?),
        TargetModules::Names(_) => None,
    };
    let mut out = Vec::new();
    for module in linear_modules(base)? {
        let found = match &lora.target_modules {
            TargetModules::Regex(_) => regex.as_ref().is_some_and(|re| re.is_match(&module.name)),
            TargetModules::Names(names) => {
                if names.contains(&module.name) {
                    true
                } else {
                    let suffix = names
                        .iter()
                        .any(|n| module.name.ends_with(&format!(".{n}")));
                    match &lora.layers_to_transform {
                        Some(layers) if suffix && !layers.is_empty() => layer_index
                            .captures(&module.name)
                            .and_then(|c| c[1].parse::<usize>().ok())
                            .is_some_and(|i| layers.contains(&i)),
                        _ => suffix,
                    }
                }
            }
        };
        if !found {
            continue;
        }
        let r = *pattern_key(&lora.rank_pattern, &module.name)?.unwrap_or(&lora.r);
        let alpha = *pattern_key(&lora.alpha_pattern, &module.name)?.unwrap_or(&lora.lora_alpha);
        if r > module.in_features.max(module.out_features) * 4 {
            return Err(Error::InvalidInput(format!(
                "rank {r} for `{}` is larger than the layer warrants",
                module.name
            )));
        }
        out.push(LoraTarget { module, r, alpha });
    }
    if out.is_empty() {
        return Err(Error::InvalidInput(
            "target_modules matches no linear layer of the model".into(),
        ));
    }
    Ok(out)
}

/// Writes a random, non-zero LoRA adapter for the model `base` into `dir` in peft's format:
/// `adapter_config.json` and `adapter_model.safetensors` (f32) with keys
/// `base_model.model.<module>.lora_A.weight` `[r, in]` and `…lora_B.weight` `[out, r]`.
/// Returns the adapted modules. Written by [`PeftAdapter::save`], so peft loading these files
/// (scripts/peft_reference.py) also checks the library's adapter writer.
pub fn write_random_peft_adapter(
    dir: &Path,
    base: &HfModelSpec,
    lora: &LoraSpec,
) -> Result<Vec<LoraTarget>> {
    let targets = lora_targets(base, lora)?;
    let elements: usize = targets
        .iter()
        .map(|t| t.r * (t.module.in_features + t.module.out_features))
        .sum();
    if elements > MAX_ELEMENTS {
        return Err(Error::InvalidInput(format!(
            "adapter would hold {elements} weights (limit {MAX_ELEMENTS})"
        )));
    }
    let mut tensors = BTreeMap::new();
    for t in &targets {
        for (matrix, shape) in [
            (LoraMatrix::A, vec![t.r, t.module.in_features]),
            (LoraMatrix::B, vec![t.module.out_features, t.r]),
        ] {
            let name = PeftAdapter::key(&t.module.name, matrix);
            let data = random_normal(
                tensor_seed(lora.seed, &name),
                shape.iter().product(),
                lora.init_std,
            );
            tensors.insert(name, DenseTensor { shape, data });
        }
    }
    let config: PeftConfig = serde_json::from_value(adapter_config(lora))
        .map_err(|e| Error::InvalidInput(format!("LoRA spec is not a valid PEFT config: {e}")))?;
    PeftAdapter { config, tensors }.save(dir)?;
    Ok(targets)
}

/// The PEFT configuration of `lora` as JSON in peft's field names (read into [`PeftConfig`]).
fn adapter_config(lora: &LoraSpec) -> Value {
    let target_modules = match &lora.target_modules {
        TargetModules::Names(names) => json!(names),
        TargetModules::Regex(p) => json!(p),
    };
    json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": null,
        "r": lora.r,
        "lora_alpha": lora.lora_alpha,
        "use_rslora": lora.use_rslora,
        "target_modules": target_modules,
        "rank_pattern": lora.rank_pattern,
        "alpha_pattern": lora.alpha_pattern,
        "layers_to_transform": lora.layers_to_transform,
        "layers_pattern": null,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": false,
        "modules_to_save": null,
        "init_lora_weights": true,
        "use_dora": false,
        "inference_mode": true,
    })
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::InvalidInput(format!("cannot serialise {}: {e}", path.display())))?;
    text.push('\n');
    write_atomically(path, text.as_bytes())
}

/// A base model of the adapter fixture set.
#[derive(Debug, Clone)]
pub struct FixtureBase {
    /// Folder name under `bases/`.
    pub name: &'static str,
    /// What is written.
    pub spec: HfModelSpec,
    /// Text whose token ids the references evaluate (ChatML markers parsed as control tokens).
    pub text: &'static str,
}

/// An adapter of the adapter fixture set.
#[derive(Debug, Clone)]
pub struct FixtureAdapter {
    /// Folder name under `adapters/`.
    pub name: &'static str,
    /// Name of the [`FixtureBase`] it applies to.
    pub base: &'static str,
    /// What is written.
    pub lora: LoraSpec,
}

/// Text of every fixture case: 12 tokens with the tiny vocabulary.
const FIXTURE_TEXT: &str = "<|im_start|>user\nRate the teacher: 7<|im_end|>";

/// The base models compared against transformers: an untied f32 llama in two shards, a tied
/// f32 qwen2 (q/k/v biases), and a tied bf16 llama with llama3 RoPE scaling whose original
/// context (32) is short enough that the scaled frequencies matter within 12 tokens.
pub fn fixture_bases() -> Vec<FixtureBase> {
    let model = |architecture: &str, seed: u64, untied_output: bool| TinySpec {
        architecture: architecture.into(),
        seed,
        untied_output,
        ..TinySpec::default()
    };
    vec![
        FixtureBase {
            name: "llama_f32",
            spec: HfModelSpec {
                model: model("llama", 7, true),
                dtype: StoreDtype::F32,
                shards: 2,
                rope_scaling: None,
            },
            text: FIXTURE_TEXT,
        },
        FixtureBase {
            name: "qwen2_f32",
            spec: HfModelSpec {
                model: model("qwen2", 8, false),
                dtype: StoreDtype::F32,
                shards: 1,
                rope_scaling: None,
            },
            text: FIXTURE_TEXT,
        },
        FixtureBase {
            name: "llama_bf16",
            spec: HfModelSpec {
                model: model("llama", 9, false),
                dtype: StoreDtype::BF16,
                shards: 1,
                rope_scaling: Some(Llama3RopeScaling {
                    factor: 8.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 32,
                }),
            },
            text: FIXTURE_TEXT,
        },
    ]
}

/// The adapters compared against peft: plain, rsLoRA, rank/alpha patterns, overlapping pattern
/// keys, a regex `target_modules`, `layers_to_transform`, and a plain adapter on the bf16 base.
pub fn fixture_adapters() -> Vec<FixtureAdapter> {
    let names = |list: &[&str]| TargetModules::Names(list.iter().map(|s| s.to_string()).collect());
    let all = [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ];
    vec![
        FixtureAdapter {
            name: "plain",
            base: "llama_f32",
            lora: LoraSpec {
                target_modules: names(&all),
                seed: 21,
                ..LoraSpec::default()
            },
        },
        FixtureAdapter {
            name: "rslora",
            base: "llama_f32",
            lora: LoraSpec {
                r: 8,
                lora_alpha: 8.0,
                use_rslora: true,
                target_modules: names(&all),
                seed: 22,
                ..LoraSpec::default()
            },
        },
        FixtureAdapter {
            name: "patterns",
            base: "llama_f32",
            lora: LoraSpec {
                target_modules: names(&all),
                rank_pattern: BTreeMap::from([
                    ("o_proj".to_string(), 2),
                    (r"layers\.1\.mlp\..*".to_string(), 6),
                ]),
                alpha_pattern: BTreeMap::from([
                    ("q_proj".to_string(), 2.0),
                    (r"layers\.1\.mlp\..*".to_string(), 24.0),
                ]),
                seed: 23,
                ..LoraSpec::default()
            },
        },
        // Two rank/alpha keys match layer 0's k_proj: peft takes the first key in file order
        // (written sorted, as peft's own save_pretrained does), not the longest one.
        FixtureAdapter {
            name: "pattern_order",
            base: "llama_f32",
            lora: LoraSpec {
                target_modules: names(&["q_proj", "k_proj"]),
                rank_pattern: BTreeMap::from([
                    ("k_proj".to_string(), 2),
                    ("model.layers.0.self_attn.k_proj".to_string(), 6),
                ]),
                alpha_pattern: BTreeMap::from([
                    ("k_proj".to_string(), 4.0),
                    ("model.layers.0.self_attn.k_proj".to_string(), 16.0),
                ]),
                seed: 27,
                ..LoraSpec::default()
            },
        },
        FixtureAdapter {
            name: "regex",
            base: "qwen2_f32",
            lora: LoraSpec {
                target_modules: TargetModules::Regex(
                    r"model\.layers\.\d+\.self_attn\.(q|v)_proj|model\.layers\.1\.mlp\.up_proj"
                        .into(),
                ),
                seed: 24,
                ..LoraSpec::default()
            },
        },
        FixtureAdapter {
            name: "layers",
            base: "qwen2_f32",
            lora: LoraSpec {
                target_modules: names(&all),
                layers_to_transform: Some(vec![1]),
                seed: 25,
                ..LoraSpec::default()
            },
        },
        FixtureAdapter {
            name: "bf16_plain",
            base: "llama_bf16",
            lora: LoraSpec {
                seed: 26,
                ..LoraSpec::default()
            },
        },
    ]
}

/// Writes every fixture base to `dir/bases/<name>` and adapter to `dir/adapters/<name>`, plus
/// `dir/manifest.json`: per base its folder, text and token ids; per adapter its folder, base and
/// adapted modules with rank, alpha and scaling. Returns the manifest.
pub fn write_adapter_fixtures(dir: &Path) -> Result<Value> {
    let bases = fixture_bases();
    let mut base_entries = serde_json::Map::new();
    for base in &bases {
        let rel = format!("bases/{}", base.name);
        write_tiny_hf_model(&dir.join(&rel), &base.spec)?;
        let tokens = tiny_text_tokenizer(&base.spec.model.architecture)?.encode(base.text)?;
        base_entries.insert(
            base.name.into(),
            json!({ "dir": rel, "text": base.text, "tokens": tokens }),
        );
    }
    let mut adapter_entries = serde_json::Map::new();
    for adapter in fixture_adapters() {
        let base = bases
            .iter()
            .find(|b| b.name == adapter.base)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "adapter `{}` names unknown base `{}`",
                    adapter.name, adapter.base
                ))
            })?;
        let rel = format!("adapters/{}", adapter.name);
        let targets = write_random_peft_adapter(&dir.join(&rel), &base.spec, &adapter.lora)?;
        let modules: Vec<Value> = targets
            .iter()
            .map(|t| {
                json!({
                    "module": t.module.name,
                    "r": t.r,
                    "alpha": t.alpha,
                    "scaling": t.scaling(adapter.lora.use_rslora),
                })
            })
            .collect();
        adapter_entries.insert(
            adapter.name.into(),
            json!({ "dir": rel, "base": adapter.base, "modules": modules }),
        );
    }
    let manifest = json!({ "bases": base_entries, "adapters": adapter_entries });
    write_json(&dir.join("manifest.json"), &manifest)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// A scratch folder that does not exist yet (the "nothing is written" check needs that).
    fn scratch(name: &str) -> std::path::PathBuf {
        crate::scratch_dir("testkit-hf").join(name)
    }

    fn names(list: &[&str]) -> TargetModules {
        TargetModules::Names(list.iter().map(|s| s.to_string()).collect())
    }

    fn targeted(lora: &LoraSpec) -> Vec<(String, usize, f64)> {
        lora_targets(&HfModelSpec::default(), lora)
            .unwrap()
            .into_iter()
            .map(|t| (t.module.name, t.r, t.alpha))
            .collect()
    }

    #[test]
    fn fixture_files_match_the_committed_peft_reference() {
        // The reference logits in tests/fixtures/peft_reference.json were computed on files with
        // these hashes; a changed generator must regenerate that fixture.
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/peft_reference.json"
        );
        let text = std::fs::read_to_string(fixture).unwrap();
        let reference: Value = serde_json::from_str(&text).unwrap();
        let dir = scratch("fixtures");
        write_adapter_fixtures(&dir).unwrap();
        let mut checked = 0;
        for group in ["bases", "adapters"] {
            for case in reference[group].as_object().unwrap().values() {
                for (rel, want) in case["files"].as_object().unwrap() {
                    let bytes = std::fs::read(dir.join(rel)).unwrap();
                    let got = format!("{:x}", Sha256::digest(&bytes));
                    assert_eq!(Some(got.as_str()), want.as_str(), "{rel} changed");
                    checked += 1;
                }
            }
        }
        assert!(checked > 20, "only {checked} files listed");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn regex_targets_must_match_the_whole_path() {
        let lora = LoraSpec {
            target_modules: TargetModules::Regex(r"model\.layers\.1\.self_attn\.q_proj".into()),
            ..LoraSpec::default()
        };
        assert_eq!(
            targeted(&lora),
            [("model.layers.1.self_attn.q_proj".to_string(), 4, 8.0)]
        );
        let partial = LoraSpec {
            target_modules: TargetModules::Regex("q_proj".into()),
            ..LoraSpec::default()
        };
        assert!(lora_targets(&HfModelSpec::default(), &partial).is_err());
        let broken = LoraSpec {
            target_modules: TargetModules::Regex("(".into()),
            ..LoraSpec::default()
        };
        assert!(matches!(
            lora_targets(&HfModelSpec::default(), &broken),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn layers_to_transform_filters_suffix_matches_only() {
        let lora = LoraSpec {
            target_modules: names(&["v_proj", "lm_head"]),
            layers_to_transform: Some(vec![0]),
            ..LoraSpec::default()
        };
        let got: Vec<String> = targeted(&lora).into_iter().map(|t| t.0).collect();
        // `lm_head` equals a listed name, which peft keeps regardless of the layer filter.
        assert_eq!(got, ["model.layers.0.self_attn.v_proj", "lm_head"]);
    }

    #[test]
    fn rank_and_alpha_patterns_match_at_a_dot_boundary() {
        let lora = LoraSpec {
            target_modules: names(&["o_proj", "down_proj"]),
            rank_pattern: BTreeMap::from([
                ("layers.1.mlp.down_proj".to_string(), 6),
                ("_proj".to_string(), 3),
            ]),
            alpha_pattern: BTreeMap::from([("o_proj".to_string(), 2.0)]),
            ..LoraSpec::default()
        };
        let got = targeted(&lora);
        // `_proj` is not a whole path segment, so it never applies.
        assert_eq!(got[0], ("model.layers.0.self_attn.o_proj".into(), 4, 2.0));
        assert_eq!(got[1], ("model.layers.0.mlp.down_proj".into(), 4, 8.0));
        assert_eq!(got[3], ("model.layers.1.mlp.down_proj".into(), 6, 8.0));
        let t = lora_targets(&HfModelSpec::default(), &lora).unwrap();
        assert_eq!(t[3].scaling(false), 8.0 / 6.0);
        assert_eq!(t[3].scaling(true), 8.0 / 6f64.sqrt());
    }

    #[test]
    fn bad_specs_are_typed_errors() {
        let dir = scratch("bad");
        let mut spec = HfModelSpec {
            shards: 0,
            ..HfModelSpec::default()
        };
        assert!(matches!(
            write_tiny_hf_model(&dir, &spec),
            Err(Error::InvalidInput(_))
        ));
        spec.shards = 1;
        spec.model.architecture = "gpt2".into();
        assert!(matches!(
            write_tiny_hf_model(&dir, &spec),
            Err(Error::UnsupportedArchitecture(_))
        ));
        spec.model.architecture = "llama".into();
        spec.model.hidden = usize::MAX / 2;
        assert!(write_tiny_hf_model(&dir, &spec).is_err());
        let zero_rank = LoraSpec {
            r: 0,
            ..LoraSpec::default()
        };
        assert!(write_random_peft_adapter(&dir, &HfModelSpec::default(), &zero_rank).is_err());
        assert!(!dir.exists(), "nothing is written for a bad spec");
    }

    #[test]
    fn sharded_model_has_an_index_covering_every_tensor() {
        let dir = scratch("shards");
        let spec = HfModelSpec {
            shards: 3,
            ..HfModelSpec::default()
        };
        write_tiny_hf_model(&dir, &spec).unwrap();
        let index: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("model.safetensors.index.json")).unwrap(),
        )
        .unwrap();
        let map = index["weight_map"].as_object().unwrap();
        assert_eq!(map.len(), tiny_hf_tensors(&spec).unwrap().len());
        for i in 1..=3 {
            assert!(dir
                .join(format!("model-{i:05}-of-00003.safetensors"))
                .is_file());
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
