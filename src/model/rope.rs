//! Rotary position embeddings: the inverse frequencies of a model, and cos/sin tables for any
//! range of positions (computed per call, so the context is bounded only by the model's own).

use candle_core::{Device, Result, Tensor};

/// Inverse frequencies of one model and its pair layout (adjacent pairs or halves).
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    interleaved: bool,
}

impl Rope {
    /// The rotation of a model with these hyper-parameters.
    pub fn new(config: &super::ModelConfig) -> Self {
        Self {
            inv_freq: config.rope_inv_freq(),
            interleaved: config.rope_interleaved,
        }
    }

    /// Cos and sin tables of shape `[positions.len(), head_dim / 2]`.
    pub fn tables_at(&self, positions: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &pos in positions {
            for &f in &self.inv_freq {
                // f64 angle keeps long positions accurate before rounding to f32.
                let angle = pos as f64 * f as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let len = positions.len();
        Ok((
            Tensor::from_vec(cos, (len, half), device)?,
            Tensor::from_vec(sin, (len, half), device)?,
        ))
    }

    /// Rotates `x` of shape `[1, heads, len, head_dim]` with the given tables.
    pub fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        if self.interleaved {
            candle_nn::rotary_emb::rope_i(x, cos, sin)
        } else {
            candle_nn::rotary_emb::rope(x, cos, sin)
        }
    }
}
