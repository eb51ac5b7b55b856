//! Rotary position embeddings in the Hugging Face / NeoX layout: each head is split into halves
//! and pair `(i, i + head_dim/2)` is rotated by `position · inv_freq[i]`.

use burn::tensor::{Device, Tensor, TensorData};

/// Cos and sin tables `[rows, 1, len, head_dim/2]` for `positions` (`rows · len` of them,
/// row-major).
pub(crate) fn tables(
    inv_freq: &[f32],
    positions: &[usize],
    rows: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let half = inv_freq.len();
    let len = positions.len() / rows.max(1);
    let mut cos = Vec::with_capacity(positions.len() * half);
    let mut sin = Vec::with_capacity(positions.len() * half);
    for &pos in positions {
        for &f in inv_freq {
            // The angle is formed in f64, as the library does, before rounding to f32.
            let angle = pos as f64 * f as f64;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    let make =
        |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [rows, 1, len, half]), device);
    (make(cos), make(sin))
}

/// Rotates `x` `[batch, heads, len, head_dim]` with tables from [`tables`].
pub(crate) fn rotate(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let half = x.dims()[3] / 2;
    let first = x.clone().narrow(3, 0, half);
    let second = x.narrow(3, half, half);
    let r1 = first.clone() * cos.clone() - second.clone() * sin.clone();
    let r2 = second * cos.clone() + first * sin.clone();
    Tensor::cat(vec![r1, r2], 3)
}
