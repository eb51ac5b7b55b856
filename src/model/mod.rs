//! The decoder: weights loaded once and shared, run over chunks of tokens against a per-call
//! [`KvState`], producing logits only for the positions a caller reads.

mod attend;
mod block;
mod branches;
mod gated;
mod kv;
mod lora;
mod rope;
mod softmax;

pub mod kernels;

pub use branches::BranchState;
pub use kv::KvState;
pub use lora::{LayerLora, LoraPair, LoraWeights};

// Families, shapes and tensor names live in `crate::arch` and the tensor store in
// `crate::formats`; these paths are kept for existing callers (the trainer among them).
pub use crate::arch::{names, Architecture, ModelConfig, Projection};
pub use crate::formats::TensorSource;

use crate::error::{Error, Result};
use crate::formats::gguf::GgufFile;
use block::{causal_mask, Block, ChunkContext, Linear, LinearWeight};
use candle_core::quantized::{GgmlDType, QMatMul};
use candle_core::{DType, Device, Tensor};
use kernels::{KernelPath, PackedFormat};
use rope::Rope;
use std::sync::Arc;

/// How weights are held in memory after loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// Dense f32 when the dequantized model fits in [`AUTO_DENSE_LIMIT_BYTES`], else as stored.
    #[default]
    Auto,
    /// Dequantize every matrix to f32 (exactly the file's values; fastest for small models).
    DenseF32,
    /// Keep quantized matrices quantized (smallest memory).
    AsStored,
    /// Quantize every float matrix to this GGML type at load (already quantized ones stay).
    Quantize(GgmlDType),
}

/// Largest dequantized weight size for which [`WeightFormat::Auto`] chooses dense f32 (bytes).
pub const AUTO_DENSE_LIMIT_BYTES: u64 = 3 << 30;

/// Default number of tokens per prefill chunk.
pub const DEFAULT_PREFILL_CHUNK: usize = 512;

/// Where token embeddings are read from.
#[derive(Debug)]
enum Embedding {
    /// The table as a dense tensor `[vocab, hidden]`.
    Dense(Tensor),
    /// Rows of the packed output matrix the table is tied to (no second copy in memory).
    TiedOutput,
}

/// A loaded decoder-only transformer. Immutable after loading, so `&DecoderModel` can be shared
/// by any number of threads, each with its own [`KvState`].
#[derive(Debug)]
pub struct DecoderModel {
    config: ModelConfig,
    embedding: Embedding,
    blocks: Vec<Block>,
    output_norm: Tensor,
    output: LinearWeight,
    rope: Rope,
    device: Device,
    /// Whether attention runs on our code (`attend`, `softmax`) rather than candle's ops (see
    /// [`ATTENTION_ENV`]).
    direct_attention: bool,
}

/// Environment variable read when a model is loaded: `candle` keeps every chunk's attention on
/// candle's ops; unset, empty or `auto` lets chunks of up to 16 tokens (decode steps, small
/// tree batches) use the direct few-row path (`attend`) and larger ones the in-place softmax
/// (`softmax`) when the projections run on our kernels. For comparisons (A/B benchmarks, tests).
pub const ATTENTION_ENV: &str = "DEBIAS_GUARD_ATTENTION";

/// Whether [`ATTENTION_ENV`] allows the direct few-row attention; an unknown value is an error.
fn direct_attention_from_env() -> Result<bool> {
    match std::env::var(ATTENTION_ENV) {
        Err(_) => Ok(true),
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(true),
            "candle" => Ok(false),
            other => Err(Error::InvalidInput(format!(
                "{ATTENTION_ENV}={other}: use auto or candle"
            ))),
        },
    }
}

impl DecoderModel {
    /// Loads and shape-checks the weights of a GGUF model (kernel path from
    /// [`KernelPath::from_env`]).
    pub fn from_gguf(file: &GgufFile, format: WeightFormat, device: &Device) -> Result<Self> {
        Self::from_source(ModelConfig::from_gguf(file)?, file, format, device)
    }

    /// Loads and shape-checks the weights of any tensor source for a validated configuration,
    /// with the kernel path from [`KernelPath::from_env`] (`DEBIAS_GUARD_KERNEL`, else
    /// [`KernelPath::auto`]) and the packed format from [`PackedFormat::from_env`]
    /// (`DEBIAS_GUARD_PACKED`, else the default).
    pub fn from_source(
        config: ModelConfig,
        file: &dyn TensorSource,
        format: WeightFormat,
        device: &Device,
    ) -> Result<Self> {
        let kernel = KernelPath::from_env().map_err(|e| Error::InvalidInput(e.to_string()))?;
        let packed = PackedFormat::from_env().map_err(Error::InvalidInput)?;
        Self::from_source_with_kernel(config, file, format, device, kernel, packed)
    }

    /// [`DecoderModel::from_source`] with dense f32 CPU weights packed in `packed` format for
    /// `kernel` (`None`: candle's matmul); an error when the CPU cannot run it.
    pub fn from_source_with_kernel(
        config: ModelConfig,
        file: &dyn TensorSource,
        format: WeightFormat,
        device: &Device,
        kernel: Option<KernelPath>,
        packed: PackedFormat,
    ) -> Result<Self> {
        if let Some(k) = kernel {
            k.check().map_err(|e| Error::InvalidInput(e.to_string()))?;
        }
        config.validate()?;
        let (dense, quantize) = match format {
            WeightFormat::DenseF32 => (true, None),
            WeightFormat::AsStored => (false, None),
            WeightFormat::Quantize(dtype) => (false, Some(dtype)),
            WeightFormat::Auto => (dense_size_bytes(file) <= AUTO_DENSE_LIMIT_BYTES, None),
        };
        let loader = Loader {
            file,
            device,
            dense,
            quantize,
        };
        let (h, hd) = (config.hidden_size, config.head_dim);
        let embd = loader.qtensor("token_embd.weight", &[config.vocab_size, h])?;
        let embedding = embd.dequantize(device)?;
        let tied = file.tensor_dims("output.weight").is_none();
        let output = LinearWeight::new(
            match file.tensor_dims("output.weight") {
                Some(_) => loader.matrix("output.weight", &[config.vocab_size, h])?,
                None if dense => QMatMul::Tensor(embedding.clone()),
                None => QMatMul::from_qtensor(embd)?,
            },
            kernel,
            packed,
        )?;
        // A tied table packed as the output matrix is read from there.
        let embedding = match &output {
            LinearWeight::Packed(_) if tied => {
                // Freed now, before the blocks load (it would otherwise live to the end).
                drop(embedding);
                Embedding::TiedOutput
            }
            _ => Embedding::Dense(embedding),
        };
        let mut blocks = Vec::with_capacity(config.n_layers);
        let qkv_bias = config.architecture.family().qkv_bias;
        for i in 0..config.n_layers {
            let name = |t: &str| format!("blk.{i}.{t}");
            let linear = |t: &str, rows: usize, cols: usize, bias: bool| -> Result<Linear> {
                Ok(Linear {
                    weight: LinearWeight::new(
                        loader.matrix(&name(&format!("{t}.weight")), &[rows, cols])?,
                        kernel,
                        packed,
                    )?,
                    bias: if bias {
                        Some(loader.vector(&name(&format!("{t}.bias")), rows)?)
                    } else {
                        None
                    },
                })
            };
            blocks.push(Block {
                attn_norm: loader.vector(&name("attn_norm.weight"), h)?,
                attn_q: linear("attn_q", config.n_heads * hd, h, qkv_bias)?,
                attn_k: linear("attn_k", config.n_kv_heads * hd, h, qkv_bias)?,
                attn_v: linear("attn_v", config.n_kv_heads * hd, h, qkv_bias)?,
                attn_output: linear("attn_output", h, config.n_heads * hd, false)?,
                ffn_norm: loader.vector(&name("ffn_norm.weight"), h)?,
                ffn_gate: linear("ffn_gate", config.ffn_size, h, false)?,
                ffn_up: linear("ffn_up", config.ffn_size, h, false)?,
                ffn_down: linear("ffn_down", h, config.ffn_size, false)?,
            });
        }
        let rope = Rope::new(&config);
        Ok(Self {
            output_norm: loader.vector("output_norm.weight", h)?,
            config,
            embedding,
            blocks,
            output,
            rope,
            device: device.clone(),
            direct_attention: direct_attention_from_env()?,
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The kernel path of the packed projections, `None` when every projection runs on
    /// candle's matmul (quantized weights, or a GPU device).
    pub fn kernel_path(&self) -> Option<KernelPath> {
        self.linear_weights().find_map(LinearWeight::kernel_path)
    }

    /// The format of the packed projections, `None` when none is packed (see
    /// [`DecoderModel::kernel_path`]).
    pub fn packed_format(&self) -> Option<PackedFormat> {
        self.linear_weights().find_map(LinearWeight::packed_format)
    }

    /// Every projection's weight, the output matrix last.
    fn linear_weights(&self) -> impl Iterator<Item = &LinearWeight> {
        self.blocks
            .iter()
            .flat_map(|b| {
                [
                    &b.attn_q,
                    &b.attn_k,
                    &b.attn_v,
                    &b.attn_output,
                    &b.ffn_gate,
                    &b.ffn_up,
                    &b.ffn_down,
                ]
            })
            .map(|l| &l.weight)
            .chain([&self.output])
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A fresh, empty state for one call on the base model.
    pub fn new_state(&self) -> KvState {
        KvState::new(self.config.n_layers, None)
    }

    /// A fresh, empty state for one call with `adapter` active (`None` = the base model).
    pub fn new_state_with(&self, adapter: Option<Arc<LoraWeights>>) -> Result<KvState> {
        if let Some(a) = &adapter {
            if !a.fits(&self.config) {
                return Err(Error::adapter(
                    a.name(),
                    "was resolved for a model of another shape",
                ));
            }
        }
        Ok(KvState::new(self.config.n_layers, adapter))
    }

    /// Feeds `tokens` after the tokens already in `state`, in chunks of at most `chunk` tokens,
    /// and returns logits `[read.len(), vocab]` for the listed offsets into `tokens` (each the
    /// distribution of the token that would follow that position).
    pub fn forward(
        &self,
        tokens: &[u32],
        state: &mut KvState,
        read: &[usize],
        chunk: usize,
    ) -> Result<Tensor> {
        let chunk = chunk.max(1);
        if let Some(&bad) = read.iter().find(|&&r| r >= tokens.len()) {
            return Err(Error::InvalidInput(format!(
                "read offset {bad} is outside the {} new tokens",
                tokens.len()
            )));
        }
        let total = state.len + tokens.len();
        if total > self.config.context_length {
            return Err(Error::ContextOverflow {
                tokens: total,
                context: self.config.context_length,
            });
        }
        if let Some(&bad) = tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary"
            )));
        }
        let mut rows = Vec::new();
        for (c, piece) in tokens.chunks(chunk).enumerate() {
            let start = c * chunk;
            let local: Vec<u32> = read
                .iter()
                .filter(|&&r| r >= start && r < start + piece.len())
                .map(|&r| (r - start) as u32)
                .collect();
            let hidden = self.forward_chunk(piece, state)?;
            if !local.is_empty() {
                let idx = Tensor::from_vec(local.clone(), local.len(), &self.device)?;
                rows.push(hidden.index_select(&idx, 0)?);
            }
        }
        if rows.is_empty() {
            return self.no_logits();
        }
        self.logits_of(&Tensor::cat(&rows, 0)?)
    }

    /// Logits `[rows, vocab]` of final hidden states: the output norm, then the output matrix.
    pub(crate) fn logits_of(&self, hidden: &Tensor) -> Result<Tensor> {
        let h = candle_nn::ops::rms_norm(hidden, &self.output_norm, self.config.rms_eps as f32)?;
        Ok(self.output.forward(&h)?)
    }

    /// Logits of no position: an empty `[0, vocab]` tensor.
    pub(crate) fn no_logits(&self) -> Result<Tensor> {
        Ok(Tensor::zeros(
            (0, self.config.vocab_size),
            DType::F32,
            &self.device,
        )?)
    }

    /// Runs one chunk through every block; returns the final hidden states `[len, hidden]`.
    fn forward_chunk(&self, tokens: &[u32], state: &mut KvState) -> Result<Tensor> {
        let (past, len) = (state.len, tokens.len());
        let positions: Vec<usize> = (past..past + len).collect();
        let groups = self.config.n_heads / self.config.n_kv_heads;
        let mask = if len > 1 {
            Some(causal_mask(past, len, groups, &self.device)?)
        } else {
            None
        };
        let x = self.run_blocks(tokens, &positions, mask.as_ref(), state)?;
        state.len += len;
        Ok(x)
    }

    /// Embeds `tokens` at `positions` and runs every block with the given attention mask,
    /// appending their keys and values to `state`; returns hidden states `[len, hidden]`.
    fn run_blocks(
        &self,
        tokens: &[u32],
        positions: &[usize],
        mask: Option<&Tensor>,
        state: &mut KvState,
    ) -> Result<Tensor> {
        let mut x = self.embed(tokens)?;
        let (cos, sin) = self.rope.tables_at(positions, &self.device)?;
        let ctx = ChunkContext {
            config: &self.config,
            rope: &self.rope,
            cos: &cos,
            sin: &sin,
            mask,
            kernel: self.kernel_path().filter(|_| self.direct_attention),
        };
        let adapter = state.adapter.clone();
        for (i, (block, kv)) in self.blocks.iter().zip(state.layers.iter_mut()).enumerate() {
            let lora = adapter.as_ref().and_then(|a| a.layer(i));
            x = block.forward(&x, kv, &ctx, lora)?;
        }
        Ok(x)
    }

    /// Embeddings of `tokens` (checked against the vocabulary by the callers), `[len, hidden]`.
    fn embed(&self, tokens: &[u32]) -> Result<Tensor> {
        match (&self.embedding, &self.output) {
            (Embedding::TiedOutput, LinearWeight::Packed(w)) => {
                let h = w.k();
                let mut data = vec![0f32; tokens.len() * h];
                for (&t, row) in tokens.iter().zip(data.chunks_exact_mut(h.max(1))) {
                    if t as usize >= w.n() {
                        return Err(Error::InvalidInput(format!(
                            "token id {t} is outside the vocabulary"
                        )));
                    }
                    w.row(t as usize, row);
                }
                Ok(Tensor::from_vec(data, (tokens.len(), h), &self.device)?)
            }
            (Embedding::Dense(table), _) => {
                let ids = Tensor::from_vec(tokens.to_vec(), tokens.len(), &self.device)?;
                Ok(table.index_select(&ids, 0)?)
            }
            (Embedding::TiedOutput, LinearWeight::Candle(_)) => Err(Error::InvalidInput(
                "tied embedding without a packed output matrix".into(),
            )),
        }
    }

    /// Evaluates a tree of tokens on top of `state` in one pass (tree attention): token `i`
    /// continues `parents[i]` (an earlier index in the batch, or the end of `state` when `None`)
    /// and attends to the state and to its own ancestors in the batch only. Returns logits
    /// `[read.len(), vocab]` for the listed batch indices; `state` is left unchanged.
    ///
    /// One pass over the weights serves every branch, which matters because a forward of a few
    /// tokens costs nearly as much as reading all weights once.
    pub fn forward_tree(
        &self,
        tokens: &[u32],
        parents: &[Option<usize>],
        read: &[usize],
        state: &KvState,
    ) -> Result<Tensor> {
        let past = state.len;
        let len = tokens.len();
        if parents.len() != len
            || parents
                .iter()
                .enumerate()
                .any(|(i, p)| p.is_some_and(|p| p >= i))
        {
            return Err(Error::InvalidInput(
                "each tree token must follow an earlier one".into(),
            ));
        }
        if let Some(&bad) = read.iter().find(|&&r| r >= len) {
            return Err(Error::InvalidInput(format!(
                "read index {bad} is outside the tree"
            )));
        }
        if let Some(&bad) = tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary"
            )));
        }
        let mut depth = vec![0usize; len];
        for i in 0..len {
            depth[i] = parents[i].map_or(0, |p| depth[p] + 1);
        }
        let deepest = depth.iter().max().map_or(0, |d| d + 1);
        if past + deepest > self.config.context_length {
            return Err(Error::ContextOverflow {
                tokens: past + deepest,
                context: self.config.context_length,
            });
        }
        let positions: Vec<usize> = depth.iter().map(|d| past + d).collect();
        let groups = self.config.n_heads / self.config.n_kv_heads;
        let mask = tree_mask(past, parents, groups, &self.device)?;
        let mut scratch = state.fork();
        let hidden = self.run_blocks(tokens, &positions, Some(&mask), &mut scratch)?;
        if read.is_empty() {
            return self.no_logits();
        }
        let rows: Vec<u32> = read.iter().map(|&i| i as u32).collect();
        let idx = Tensor::from_vec(rows, read.len(), &self.device)?;
        let h = hidden.index_select(&idx, 0)?;
        self.logits_of(&h)
    }
}

/// Mask for tree attention: every token sees the `past` positions of the state, itself and its
/// ancestors in the batch; repeated for `groups` stacked query heads.
fn tree_mask(
    past: usize,
    parents: &[Option<usize>],
    groups: usize,
    device: &Device,
) -> Result<Tensor> {
    let len = parents.len();
    let total = past + len;
    let mut block = vec![f32::NEG_INFINITY; len * total];
    for i in 0..len {
        let row = &mut block[i * total..(i + 1) * total];
        row[..past].fill(0.0);
        let mut node = Some(i);
        while let Some(n) = node {
            row[past + n] = 0.0;
            node = parents[n];
        }
    }
    let mut data = Vec::with_capacity(groups * block.len());
    for _ in 0..groups {
        data.extend_from_slice(&block);
    }
    Ok(Tensor::from_vec(data, (groups * len, total), device)?)
}

/// Bytes the model's matrices take once dequantized to f32.
fn dense_size_bytes(file: &dyn TensorSource) -> u64 {
    file.names()
        .iter()
        .filter_map(|n| file.tensor_dims(n))
        .map(|dims| dims.iter().product::<usize>() as u64 * 4)
        .sum()
}

/// Loads tensors by GGUF name, checking each shape against the configuration.
struct Loader<'a> {
    file: &'a dyn TensorSource,
    device: &'a Device,
    dense: bool,
    quantize: Option<GgmlDType>,
}

impl Loader<'_> {
    fn qtensor(&self, name: &str, dims: &[usize]) -> Result<candle_core::quantized::QTensor> {
        let found = self
            .file
            .tensor_dims(name)
            .ok_or_else(|| Error::tensor(name, "missing from the file"))?;
        if found != dims {
            return Err(Error::tensor(
                name,
                format!("shape {found:?} does not match the metadata, which implies {dims:?}"),
            ));
        }
        let q = self.file.load_tensor(name, self.device)?;
        // Every tensor the decoder reads is checked finite once, on its stored bytes.
        if let Some(bad) = crate::formats::finite::first_non_finite(q.dtype(), &q.data()?) {
            return Err(Error::tensor(name, bad.to_string()));
        }
        Ok(q)
    }

    fn matrix(&self, name: &str, dims: &[usize]) -> Result<QMatMul> {
        let q = self.qtensor(name, dims)?;
        let float = matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        Ok(match self.quantize {
            _ if self.dense => QMatMul::Tensor(q.dequantize(self.device)?),
            Some(target) if float && target != GgmlDType::F32 => {
                let dense = q.dequantize(self.device)?;
                let quantized =
                    candle_core::quantized::QTensor::quantize(&dense, target).map_err(|e| {
                        Error::tensor(name, format!("cannot quantize to {target:?}: {e}"))
                    })?;
                QMatMul::from_qtensor(quantized)?
            }
            _ if float => QMatMul::Tensor(q.dequantize(self.device)?),
            _ => QMatMul::from_qtensor(q)?,
        })
    }

    /// A norm weight or bias (checked finite like every tensor, in [`Loader::qtensor`]).
    fn vector(&self, name: &str, len: usize) -> Result<Tensor> {
        Ok(self.qtensor(name, &[len])?.dequantize(self.device)?)
    }
}
