//! The frozen base decoder (Llama / Qwen2), computing exactly what the library's candle model
//! computes, with an optional LoRA adapter added on top of its projections.
//!
//! Per block: RMSNorm → grouped-query attention (q/k/v biases where the checkpoint has them,
//! RoPE on halves, causal softmax(QKᵀ/√d)V, output projection) → residual; RMSNorm → SwiGLU MLP
//! `down(silu(gate(x)) · up(x))` → residual. Then the final norm and the LM head (the embedding
//! when the checkpoint ties them).
//!
//! Base weights are plain tensors, never parameters: they get no gradient, take no optimiser
//! state, and the same weights serve the policy (adapter on) and the reference (adapter off).

use super::batch::TokenBatch;
use super::lora::LoraAdapter;
use super::rope;
use crate::error::{Error, Result};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use debias_guard::arch::Projection;
use debias_guard::model::ModelConfig;
use debias_guard::weights::{DenseCheckpoint, DenseTensor};

/// A projection `x Wᵀ (+ b)` with `W` `[out, in]` as Hugging Face stores it.
#[derive(Debug, Clone)]
struct Linear {
    weight: Tensor<2>,
    bias: Option<Tensor<2>>,
}

impl Linear {
    /// Rows of `x` `[n, in]` → `[n, out]`, plus the adapter's delta when given.
    fn forward(&self, x: Tensor<2>, lora: Option<(&super::lora::LoraPair, f64)>) -> Tensor<2> {
        let mut y = x.clone().matmul(self.weight.clone().transpose());
        if let Some(b) = &self.bias {
            y = y + b.clone();
        }
        match lora {
            Some((pair, scale)) => y + pair.delta(x, scale),
            None => y,
        }
    }
}

/// Weights of one block, Hugging Face naming.
#[derive(Debug, Clone)]
struct Block {
    input_norm: Tensor<2>,
    /// Indexed by [`Projection::slot`].
    projections: Vec<Linear>,
    post_attention_norm: Tensor<2>,
}

/// A decoder whose weights are frozen; the only trainable state is an optional [`LoraAdapter`]
/// passed to each call. Cloning is cheap (tensors are shared).
#[derive(Clone)]
pub struct Decoder {
    config: ModelConfig,
    rope_inv_freq: Vec<f32>,
    embed: Tensor<2>,
    blocks: Vec<Block>,
    norm: Tensor<2>,
    lm_head: Tensor<2>,
    /// Whether `lm_head` is the embedding (no `lm_head.weight` in the checkpoint).
    tied_lm_head: bool,
    device: Device,
}

impl Decoder {
    /// Builds the decoder from a dense checkpoint (a GGUF file or Hugging Face directory loaded
    /// by the library), taking its tensors over without copying them.
    pub fn from_checkpoint(checkpoint: DenseCheckpoint, device: &Device) -> Result<Self> {
        let DenseCheckpoint {
            config,
            mut tensors,
        } = checkpoint;
        let rope_inv_freq = config.rope_inv_freq();
        Self::from_tensors(config, rope_inv_freq, |name| tensors.remove(name), device)
    }

    /// Builds the decoder from Hugging Face-named dense tensors in Hugging Face layout (q/k rows
    /// ordered for RoPE over halves). `take(name)` hands over a tensor, or `None` when absent;
    /// every shape is checked against `config`. `rope_inv_freq` are the per-pair inverse
    /// frequencies (`config.rope_inv_freq()`, length `head_dim / 2`).
    pub fn from_tensors(
        config: ModelConfig,
        rope_inv_freq: Vec<f32>,
        take: impl FnMut(&str) -> Option<DenseTensor>,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        if config.rope_interleaved {
            return Err(Error::Model(
                "the configuration says RoPE rotates adjacent pairs (GGUF llama layout); the \
                 decoder needs Hugging Face layout, as DenseCheckpoint provides"
                    .into(),
            ));
        }
        if rope_inv_freq.len() != config.head_dim / 2
            || rope_inv_freq.iter().any(|f| !(f.is_finite() && *f > 0.0))
        {
            return Err(Error::Model(format!(
                "RoPE needs {} positive inverse frequencies",
                config.head_dim / 2
            )));
        }
        let h = config.hidden_size;
        let mut tensors = Loader { take, device };
        let embed = tensors.required("model.embed_tokens.weight", &[config.vocab_size, h])?;
        let mut blocks = Vec::with_capacity(config.n_layers);
        for i in 0..config.n_layers {
            let prefix = format!("model.layers.{i}");
            let input_norm = tensors.required(&format!("{prefix}.input_layernorm.weight"), &[h])?;
            let post_attention_norm =
                tensors.required(&format!("{prefix}.post_attention_layernorm.weight"), &[h])?;
            let mut projections = Vec::with_capacity(Projection::ALL.len());
            for target in Projection::ALL {
                let (out, inp) = target.shape(&config);
                let stem = target.hf_path(i);
                projections.push(Linear {
                    weight: tensors.required(&format!("{stem}.weight"), &[out, inp])?,
                    bias: tensors.optional(&format!("{stem}.bias"), &[out])?,
                });
            }
            blocks.push(Block {
                input_norm,
                projections,
                post_attention_norm,
            });
        }
        let norm = tensors.required("model.norm.weight", &[h])?;
        let head = tensors.optional("lm_head.weight", &[config.vocab_size, h])?;
        let tied_lm_head = head.is_none();
        let lm_head = head.unwrap_or_else(|| embed.clone());
        Ok(Self {
            config,
            rope_inv_freq,
            embed,
            blocks,
            norm,
            lm_head,
            tied_lm_head,
            device: device.clone(),
        })
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the weights live on (autodiff-enabled for training).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Hidden states before the final norm, `[batch · padded_len, hidden]` (row `b · len + p`),
    /// with `adapter` added to the projections it targets, or the base model when `None`.
    pub fn hidden_states(
        &self,
        batch: &TokenBatch,
        adapter: Option<&LoraAdapter>,
    ) -> Result<Tensor<2>> {
        self.check_batch(batch)?;
        if let Some(a) = adapter {
            self.check_adapter(a)?;
        }
        let (b, s) = (batch.batch_size(), batch.padded_len());
        let ids: Vec<i64> = batch.tokens().iter().map(|&t| t as i64).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [b * s]), &self.device);
        let mut x = self.embed.clone().select(0, ids);
        let (cos, sin) = rope::tables(&self.rope_inv_freq, batch.positions(), b, &self.device);
        let groups = self.config.n_heads / self.config.n_kv_heads;
        let mask = attention_mask(batch, groups, &self.device);
        let ctx = Context {
            config: &self.config,
            batch: b,
            len: s,
            cos,
            sin,
            mask,
        };
        for (i, block) in self.blocks.iter().enumerate() {
            let lora = |t: Projection| adapter.and_then(|a| a.pair(i, t).map(|p| (p, a.scale())));
            x = block.forward(x, &ctx, lora);
        }
        Ok(x)
    }

    /// Logits `[rows.len(), vocab]` for the listed rows of [`Self::hidden_states`]: the final
    /// norm and LM head are applied to those rows only.
    pub fn logits_at(&self, hidden: Tensor<2>, rows: &[usize]) -> Result<Tensor<2>> {
        let n = hidden.dims()[0];
        if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
            return Err(Error::Model(format!(
                "row {bad} is outside the {n} hidden states"
            )));
        }
        let idx: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [rows.len()]), &self.device);
        let h = rms_norm(hidden.select(0, idx), &self.norm, self.config.rms_eps);
        Ok(h.matmul(self.lm_head.clone().transpose()))
    }

    /// Logits `[batch, padded_len, vocab]` at every position (all rows; mainly for checks).
    pub fn logits(&self, batch: &TokenBatch, adapter: Option<&LoraAdapter>) -> Result<Tensor<3>> {
        let (b, s) = (batch.batch_size(), batch.padded_len());
        let hidden = self.hidden_states(batch, adapter)?;
        let rows: Vec<usize> = (0..b * s).collect();
        let logits = self.logits_at(hidden, &rows)?;
        Ok(logits.reshape([b, s, self.config.vocab_size]))
    }

    fn check_batch(&self, batch: &TokenBatch) -> Result<()> {
        if let Some(&far) = batch
            .positions()
            .iter()
            .find(|&&p| p >= self.config.context_length)
        {
            return Err(Error::Model(format!(
                "position {far} is beyond the model's context of {}",
                self.config.context_length
            )));
        }
        if let Some(&bad) = batch
            .tokens()
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(Error::Model(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.config.vocab_size
            )));
        }
        Ok(())
    }

    /// Number of base tensors that would receive a gradient (0: the base is frozen).
    pub fn trainable_base_tensors(&self) -> usize {
        let mut all = vec![&self.embed, &self.norm, &self.lm_head];
        for b in &self.blocks {
            all.push(&b.input_norm);
            all.push(&b.post_attention_norm);
            for p in &b.projections {
                all.push(&p.weight);
                all.extend(p.bias.as_ref());
            }
        }
        all.into_iter().filter(|t| t.is_require_grad()).count()
    }

    /// Checks that an adapter was built for a model of this shape.
    pub fn check_adapter(&self, adapter: &LoraAdapter) -> Result<()> {
        if adapter.layers.len() != self.config.n_layers {
            return Err(Error::Model(format!(
                "the adapter has {} layers, the model {}",
                adapter.layers.len(),
                self.config.n_layers
            )));
        }
        let r = adapter.config.rank;
        for (layer, target, pair) in adapter.pairs() {
            let (out, inp) = target.shape(&self.config);
            if pair.a.val().dims() != [r, inp] || pair.b.val().dims() != [out, r] {
                return Err(Error::Model(format!(
                    "layer {layer} {}: adapter factors do not fit {out}×{inp} at rank {r}",
                    target.hf_module()
                )));
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Decoder {
    /// The configuration only (the weights are millions of numbers).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("config", &self.config)
            .field("tied_lm_head", &self.tied_lm_head)
            .finish_non_exhaustive()
    }
}

/// What every block needs besides its weights for one batch.
struct Context<'a> {
    config: &'a ModelConfig,
    batch: usize,
    len: usize,
    cos: Tensor<4>,
    sin: Tensor<4>,
    /// Additive mask `[batch, 1, groups · len, len]` (query heads of a group stacked).
    mask: Tensor<4>,
}

impl Block {
    /// `x` `[batch · len, hidden]` → same shape.
    fn forward<'p>(
        &self,
        x: Tensor<2>,
        ctx: &Context<'_>,
        lora: impl Fn(Projection) -> Option<(&'p super::lora::LoraPair, f64)>,
    ) -> Tensor<2> {
        let eps = ctx.config.rms_eps;
        let proj =
            |t: Projection, input: Tensor<2>| self.projections[t.slot()].forward(input, lora(t));
        let h = rms_norm(x.clone(), &self.input_norm, eps);
        let attn = attention(
            proj(Projection::Q, h.clone()),
            proj(Projection::K, h.clone()),
            proj(Projection::V, h),
            ctx,
        );
        let x = x + proj(Projection::O, attn);
        let h = rms_norm(x.clone(), &self.post_attention_norm, eps);
        let gated = silu(proj(Projection::Gate, h.clone())) * proj(Projection::Up, h);
        x + proj(Projection::Down, gated)
    }
}

/// Causal grouped-query attention over projected rows; returns `[batch · len, heads · hd]`.
fn attention(q: Tensor<2>, k: Tensor<2>, v: Tensor<2>, ctx: &Context<'_>) -> Tensor<2> {
    let cfg = ctx.config;
    let (b, s) = (ctx.batch, ctx.len);
    let (nh, nkv, hd) = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim);
    let groups = nh / nkv;
    let heads = |t: Tensor<2>, n: usize| t.reshape([b, s, n, hd]).swap_dims(1, 2);
    let q = rope::rotate(heads(q, nh), &ctx.cos, &ctx.sin);
    let k = rope::rotate(heads(k, nkv), &ctx.cos, &ctx.sin);
    let v = heads(v, nkv);
    // Query heads sharing a kv head (head h uses kv head h / groups) are stacked along the row
    // axis, so one matmul per kv head serves the group without repeating keys and values.
    let q = q
        .reshape([b, nkv, groups * s, hd])
        .mul_scalar(1.0 / (hd as f64).sqrt());
    let scores = q.matmul(k.swap_dims(2, 3)) + ctx.mask.clone();
    let out = softmax(scores, 3).matmul(v); // [b, nkv, groups · s, hd]
    out.reshape([b, nh, s, hd])
        .swap_dims(1, 2)
        .reshape([b * s, nh * hd])
}

/// `x / sqrt(mean(x²) + eps) · weight` over the last axis of `x` `[n, hidden]`.
fn rms_norm(x: Tensor<2>, weight: &Tensor<2>, eps: f64) -> Tensor<2> {
    let inv = x
        .clone()
        .square()
        .mean_dim(1)
        .add_scalar(eps)
        .sqrt()
        .recip();
    x * inv * weight.clone()
}

/// Additive mask `[batch, 1, groups · len, len]`: query `g · len + i` of a row sees the keys
/// [`TokenBatch::sees`] allows (causal within its branch and the shared prefix).
fn attention_mask(batch: &TokenBatch, groups: usize, device: &Device) -> Tensor<4> {
    let (b, len) = (batch.batch_size(), batch.padded_len());
    let mut data = Vec::with_capacity(b * groups * len * len);
    for row in 0..b {
        let start = data.len();
        for i in 0..len {
            data.extend((0..len).map(|j| {
                if batch.sees(row, i, j) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            }));
        }
        for _ in 1..groups {
            data.extend_from_within(start..start + len * len);
        }
    }
    Tensor::<4>::from_data(TensorData::new(data, [b, 1, groups * len, len]), device)
}

/// Hands out checked tensors by name.
struct Loader<'d, F> {
    take: F,
    device: &'d Device,
}

impl<F: FnMut(&str) -> Option<DenseTensor>> Loader<'_, F> {
    fn optional(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor<2>>> {
        match (self.take)(name) {
            Some(parts) => tensor_2d(name, parts, shape, self.device).map(Some),
            None => Ok(None),
        }
    }

    fn required(&mut self, name: &str, shape: &[usize]) -> Result<Tensor<2>> {
        self.optional(name, shape)?
            .ok_or_else(|| Error::Model(format!("tensor `{name}` is missing")))
    }
}

/// A checked 2-D tensor (1-D tensors of `shape [n]` become rows `[1, n]` for broadcasting).
fn tensor_2d(
    name: &str,
    parts: DenseTensor,
    shape: &[usize],
    device: &Device,
) -> Result<Tensor<2>> {
    if parts.shape != shape {
        return Err(Error::Model(format!(
            "tensor `{name}` has shape {:?}, the configuration implies {shape:?}",
            parts.shape
        )));
    }
    let expected: usize = shape.iter().product();
    if parts.data.len() != expected {
        return Err(Error::Model(format!(
            "tensor `{name}` holds {} values for shape {shape:?}",
            parts.data.len()
        )));
    }
    let dims = match *shape {
        [n] => [1, n],
        [r, c] => [r, c],
        _ => return Err(Error::Model(format!("tensor `{name}` is not 1-D or 2-D"))),
    };
    Ok(Tensor::<2>::from_data(
        TensorData::new(parts.data, dims),
        device,
    ))
}
