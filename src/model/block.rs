//! One transformer block: RMS norm, grouped-query attention over the KV state, gated MLP.

use super::attend::{attend_few, FEW_ROWS_MAX};
use super::gated::silu_mul;
use super::kernels::{KernelPath, PackedFormat, PackedLinear};
use super::kv::LayerCache;
use super::lora::{LayerLora, LoraPair};
use super::rope::Rope;
use super::softmax::softmax_in_place;
use crate::arch::{ModelConfig, Projection};
use candle_core::quantized::QMatMul;
use candle_core::{Module, Result, Tensor};

/// How a projection's weight is stored and multiplied.
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// Repacked panels for our kernel (dense f32 weights on the CPU), f32 or 8-bit.
    Packed(std::sync::Arc<PackedLinear>),
    /// Any form candle multiplies itself (dense f32 or quantized blocks).
    Candle(QMatMul),
}

impl LinearWeight {
    /// Wraps a candle weight, repacking dense f32 CPU matrices in `format` for the kernel of
    /// `path` (which the caller has checked the CPU supports; `None` or an unsupported one
    /// keeps candle's matmul).
    pub fn new(weight: QMatMul, path: Option<KernelPath>, format: PackedFormat) -> Result<Self> {
        if let QMatMul::Tensor(w) = &weight {
            if w.device().is_cpu() && w.dtype() == candle_core::DType::F32 {
                let (n, k) = w.dims2()?;
                if let Some(path) = path {
                    // Packed straight from the tensor's storage (no f32 copy of the matrix).
                    let w = w.contiguous()?;
                    let (storage, layout) = w.storage_and_layout();
                    let packed = match (&*storage, layout.contiguous_offsets()) {
                        (
                            candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)),
                            Some((a, b)),
                        ) => PackedLinear::pack_as(&v[a..b], n, k, path, format),
                        _ => None,
                    };
                    if let Some(packed) = packed {
                        return Ok(Self::Packed(std::sync::Arc::new(packed)));
                    }
                }
            }
        }
        Ok(Self::Candle(weight))
    }

    /// The kernel path multiplying this weight, `None` when candle's matmul does.
    pub fn kernel_path(&self) -> Option<KernelPath> {
        match self {
            Self::Packed(w) => Some(w.path()),
            Self::Candle(_) => None,
        }
    }

    /// The packed format, `None` when candle's matmul multiplies this weight.
    pub fn packed_format(&self) -> Option<PackedFormat> {
        match self {
            Self::Packed(w) => Some(w.format()),
            Self::Candle(_) => None,
        }
    }

    /// `x · Wᵀ` for rows of `x` (`[tokens, in]` → `[tokens, out]`).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(w) => w.forward(x),
            Self::Packed(w) => {
                let (m, k) = x.dims2()?;
                if k != w.k() {
                    candle_core::bail!("projection expects {} inputs, got {k}", w.k());
                }
                let x = x.contiguous()?;
                let (storage, layout) = x.storage_and_layout();
                let data = match &*storage {
                    candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => v,
                    _ => candle_core::bail!("packed projection needs f32 CPU input"),
                };
                let (start, end) = layout
                    .contiguous_offsets()
                    .ok_or_else(|| candle_core::Error::Msg("input is not contiguous".into()))?;
                let mut out = vec![0f32; m * w.n()];
                w.forward(&data[start..end], m, &mut out);
                Tensor::from_vec(out, (m, w.n()), x.device())
            }
        }
    }
}

/// A projection `x · Wᵀ (+ b)`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub(crate) weight: LinearWeight,
    pub(crate) bias: Option<Tensor>,
}

impl Linear {
    /// Applies the projection to rows of `x` (`[tokens, in]` → `[tokens, out]`), plus the
    /// adapter's low-rank path when there is one.
    pub fn forward(&self, x: &Tensor, lora: Option<&LoraPair>) -> Result<Tensor> {
        let mut y = self.weight.forward(x)?;
        if let Some(path) = lora {
            // `y` is this call's own new tensor: the low-rank term is added into it.
            y = path.add_to(y, x)?;
        }
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Weights of one block, named after their GGUF tensors.
#[derive(Debug, Clone)]
pub struct Block {
    pub(crate) attn_norm: Tensor,
    pub(crate) attn_q: Linear,
    pub(crate) attn_k: Linear,
    pub(crate) attn_v: Linear,
    pub(crate) attn_output: Linear,
    pub(crate) ffn_norm: Tensor,
    pub(crate) ffn_gate: Linear,
    pub(crate) ffn_up: Linear,
    pub(crate) ffn_down: Linear,
}

/// What a block needs besides its weights for one chunk of tokens.
pub struct ChunkContext<'a> {
    pub config: &'a ModelConfig,
    pub rope: &'a Rope,
    pub cos: &'a Tensor,
    pub sin: &'a Tensor,
    /// Additive mask `[groups * len, past + len]`, or `None` for a single token.
    pub mask: Option<&'a Tensor>,
    /// The kernel path of the packed projections, on which chunks of up to
    /// `attend::FEW_ROWS_MAX` tokens compute their attention directly (`attend::attend_few`),
    /// larger ones their softmax in place (`softmax::softmax_in_place`), and every chunk its
    /// MLP activation in one pass (`gated::silu_mul`); `None`: candle's ops (no packed
    /// projections, or `DEBIAS_GUARD_ATTENTION=candle`).
    pub kernel: Option<KernelPath>,
}

impl Block {
    /// Runs the block on `x` (`[len, hidden]`), appending this chunk's keys and values to `kv`.
    pub fn forward(
        &self,
        x: &Tensor,
        kv: &mut Option<LayerCache>,
        ctx: &ChunkContext<'_>,
        lora: Option<&LayerLora>,
    ) -> Result<Tensor> {
        let path = |p: Projection| lora.and_then(|l| l.get(p));
        let attn = self.attention(
            &candle_nn::ops::rms_norm(x, &self.attn_norm, ctx.config.rms_eps as f32)?,
            kv,
            ctx,
            lora,
        )?;
        let x = (x + attn)?;
        let h = candle_nn::ops::rms_norm(&x, &self.ffn_norm, ctx.config.rms_eps as f32)?;
        let gate = self.ffn_gate.forward(&h, path(Projection::Gate))?;
        let up = self.ffn_up.forward(&h, path(Projection::Up))?;
        let fused = match ctx.kernel {
            Some(kernel) => silu_mul(&gate, &up, kernel)?,
            None => None,
        };
        let gated = match fused {
            Some(gated) => gated,
            None => (candle_nn::ops::silu(&gate)? * up)?,
        };
        let mlp = self.ffn_down.forward(&gated, path(Projection::Down))?;
        x + mlp
    }

    fn attention(
        &self,
        x: &Tensor,
        kv: &mut Option<LayerCache>,
        ctx: &ChunkContext<'_>,
        lora: Option<&LayerLora>,
    ) -> Result<Tensor> {
        let path = |p: Projection| lora.and_then(|l| l.get(p));
        let cfg = ctx.config;
        let (len, _) = x.dims2()?;
        let (n_heads, n_kv, hd) = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim);
        let groups = n_heads / n_kv;
        let heads = |t: Tensor, n: usize| -> Result<Tensor> {
            t.reshape((1, len, n, hd))?.transpose(1, 2)?.contiguous()
        };
        let q = heads(self.attn_q.forward(x, path(Projection::Q))?, n_heads)?;
        let k = heads(self.attn_k.forward(x, path(Projection::K))?, n_kv)?;
        let v = heads(self.attn_v.forward(x, path(Projection::V))?, n_kv)?;
        let q = ctx.rope.apply(&q, ctx.cos, ctx.sin)?;
        let k = ctx.rope.apply(&k, ctx.cos, ctx.sin)?;
        let (k, v) = LayerCache::append(kv, &k, &v)?;
        let scale = 1.0 / (hd as f64).sqrt();
        if let Some(kernel) = ctx.kernel.filter(|_| len <= FEW_ROWS_MAX) {
            if let Some(out) = attend_few(kernel, &q, &k, &v, ctx.mask, scale as f32)? {
                return self.attn_output.forward(&out, path(Projection::O));
            }
        }
        // Query heads that share a kv head are stacked along the row axis, so one matmul per kv
        // head serves the whole group without repeating keys and values in memory.
        // Scaling the queries costs len × hd multiplications instead of len × context.
        let q = (q.reshape((1, n_kv, groups * len, hd))? * scale)?;
        let scores = q.matmul(&k.t()?)?;
        let probs = match ctx.kernel {
            Some(kernel) if softmax_in_place(&scores, ctx.mask, kernel)? => scores,
            _ => {
                let scores = match ctx.mask {
                    Some(mask) => scores.broadcast_add(mask)?,
                    None => scores,
                };
                candle_nn::ops::softmax_last_dim(&scores)?
            }
        };
        let out = probs.matmul(&v)?; // [1, n_kv, groups * len, hd]
        let out = out
            .reshape((1, n_heads, len, hd))?
            .transpose(1, 2)?
            .reshape((len, n_heads * hd))?;
        self.attn_output.forward(&out, path(Projection::O))
    }
}

/// Causal mask for `len` new tokens after `past` cached ones, repeated for `groups` stacked heads.
pub fn causal_mask(
    past: usize,
    len: usize,
    groups: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let total = past + len;
    let mut data = Vec::with_capacity(groups * len * total);
    for _ in 0..groups {
        for i in 0..len {
            data.extend((0..total).map(|j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }));
        }
    }
    Tensor::from_vec(data, (groups * len, total), device)
}
