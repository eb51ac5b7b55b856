//! Plain-Rust kernel for 8-bit panels (any CPU, aarch64 included): per block of 32 steps, the
//! levels of all rows summed in f32, then scaled by the block's `d` and shifted by `m · Σx`.

use super::{check_rows, BK, BLOCK_BYTES, BLOCK_SCALES};
use crate::model::kernels::{part_start, NR};

/// Most rows summed together (each row's block sums are `NR` floats).
const PR: usize = 4;

/// `out[r][j] += Σ_p x[r * k + p] · W[j, p]` for one panel (levels `q`, scales `dm`) and the
/// `out.len()` rows of `x`, in groups of at most `PR` rows.
pub(in crate::model::kernels) fn rows(
    x: &[f32],
    k: usize,
    xsum: &[f32],
    q: &[u8],
    dm: &[f32],
    out: &mut [[f32; NR]],
) {
    let (mr, blocks) = (out.len(), check_rows(x, k, xsum, q, dm, out.len()));
    let groups = mr.div_ceil(PR);
    for g in 0..groups {
        let (r0, r1) = (part_start(g, mr, groups), part_start(g + 1, mr, groups));
        let (x, xsum, out) = (
            &x[r0 * k..r1 * k],
            &xsum[r0 * blocks..r1 * blocks],
            &mut out[r0..r1],
        );
        match out.len() {
            1 => group::<1>(x, k, xsum, q, dm, out),
            2 => group::<2>(x, k, xsum, q, dm, out),
            3 => group::<3>(x, k, xsum, q, dm, out),
            4 => group::<4>(x, k, xsum, q, dm, out),
            r => unreachable!("group of {r} rows"),
        }
    }
}

/// [`rows`] for exactly `R` rows.
fn group<const R: usize>(
    x: &[f32],
    k: usize,
    xsum: &[f32],
    q: &[u8],
    dm: &[f32],
    out: &mut [[f32; NR]],
) {
    let blocks = k.div_ceil(BK);
    for b in 0..blocks {
        let steps = (k - b * BK).min(BK);
        let levels = &q[b * BLOCK_BYTES..b * BLOCK_BYTES + steps * NR];
        let mut t = [[0f32; NR]; R];
        for (s, lv) in levels.chunks_exact(NR).enumerate() {
            let w: [f32; NR] = std::array::from_fn(|j| f32::from(lv[j]));
            for (r, t) in t.iter_mut().enumerate() {
                let xv = x[r * k + b * BK + s];
                for (t, &w) in t.iter_mut().zip(&w) {
                    *t += xv * w;
                }
            }
        }
        let (d, m) = dm[b * BLOCK_SCALES..(b + 1) * BLOCK_SCALES].split_at(NR);
        for (r, (o, t)) in out.iter_mut().zip(&t).enumerate() {
            let xs = xsum[r * blocks + b];
            for j in 0..NR {
                o[j] += d[j] * t[j] + m[j] * xs;
            }
        }
    }
}
