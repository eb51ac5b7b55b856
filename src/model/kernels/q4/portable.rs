//! Plain-Rust kernel for 4-bit panels (any CPU, aarch64 included): per block, integer sums of
//! levels × 8-bit activations for all 32 columns, then scaled (separate multiply and add, so it
//! differs from the SIMD paths by rounding only).

use super::{check_rows, BK, BLOCK_BYTES, BLOCK_SCALES, GROUP, GROUP_BYTES};
use crate::model::kernels::NR;

/// `out[r][j] += Σ_b dx_rb · Σ_s (d_j · q_sj + m_j) · qx_rs` for one panel (levels `q`,
/// scales `dm`) and the `out.len()` rows of rounded activations (`xq`, `xd`, `xsum`).
pub(in crate::model::kernels) fn rows(
    xq: &[i8],
    xd: &[f32],
    xsum: &[f32],
    blocks: usize,
    q: &[u8],
    dm: &[f32],
    out: &mut [[f32; NR]],
) {
    check_rows(xq, xd, xsum, blocks, q, dm, out.len());
    for (r, o) in out.iter_mut().enumerate() {
        for b in 0..blocks {
            let qb = &q[b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES];
            let xb = &xq[(r * blocks + b) * BK..(r * blocks + b + 1) * BK];
            let mut acc = [0i32; NR];
            for (group, xg) in qb.chunks_exact(GROUP_BYTES).zip(xb.chunks_exact(GROUP)) {
                for (c, lanes) in group.chunks_exact(GROUP).enumerate() {
                    for (&byte, &x) in lanes.iter().zip(xg) {
                        acc[c] += i32::from(byte & 0x0F) * i32::from(x);
                        acc[16 + c] += i32::from(byte >> 4) * i32::from(x);
                    }
                }
            }
            let (d, m) = dm[b * BLOCK_SCALES..(b + 1) * BLOCK_SCALES].split_at(NR);
            let (dx, xs) = (xd[r * blocks + b], xsum[r * blocks + b]);
            for j in 0..NR {
                o[j] += (d[j] * dx) * acc[j] as f32;
                o[j] += m[j] * xs;
            }
        }
    }
}
