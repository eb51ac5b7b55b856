//! 4-bit packed weights with 8-bit activations (`q4`): the same 32-column panels as the other
//! formats, each value stored as a 4-bit level `q` of its block of 32 steps of `k`, with an f32
//! scale `d` and minimum `m` per column and block (`w = d · q + m`, `q < 16`). Half a byte a
//! weight plus 8 bytes per 32 values: 0.75 bytes a weight, against 1.25 for `q8` and 4 for f32.
//!
//! Only weights a 16-level grid holds to f32 rounding are stored this way: values dequantized
//! from Q4_1 blocks (the default model's file, `m` the block's minimum) or Q4_0 blocks
//! (`w = d · (q − 8)`). So the weights are exactly the file's, as with `q8`.
//!
//! What is not exact is the product of few rows ([`Q4Panels::rows`], decode, up to
//! `Q4_ROWS_MAX` rows): each row of `x` is rounded to 8 bits per block of 32 steps
//! (`x ≈ dx · qx`, `|qx| ≤ 127`, the way llama.cpp multiplies its 4-bit types), so that the
//! block's dot products are integer sums of `q · qx` (exact), then
//! `out += d · dx · Σ q·qx + m · dx · Σ qx`: exactly the product of the weights with the
//! rounded row. The minimums' term uses the rounded row too, as llama.cpp's sums do: with the
//! exact `Σ x`, a block's rounding errors times `m` no longer cancel against those inside
//! `Σ q·qx` (on the default model's weights the largest error of a product was 40 % larger).
//! Results do not depend on how many rows run together. Many rows (prefill) dequantize one
//! block of panels at a time into the f32 layout for the f32 micro-kernel, exactly as `q8`
//! does, and are exact.
//!
//! Layout of one block of one panel (512 bytes): 8 groups of 4 steps; group `g` is 64 bytes,
//! byte `4c + t` holding step `4g + t` of column `c` in its low half and of column `16 + c` in
//! its high half. Four steps of a column are then one 32-bit lane, as integer dot-product
//! instructions (AVX-512 VNNI `vpdpbusd`, AVX2 `vpmaddubsw`) want them.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub(super) mod portable;
#[cfg(test)]
mod tests;

use super::q8::scale_steps;
use super::{fit_block, panel_rows, quantize_panels, round_nearest, Isa, NR};
use std::ops::Range;

/// Steps of `k` per quantization block (of weights and of activations).
pub(super) const BK: usize = 32;
/// Steps of `k` per 32-bit lane of a group.
const GROUP: usize = 4;
/// Bytes of one group (`GROUP` steps × `NR` columns, two levels a byte).
const GROUP_BYTES: usize = GROUP * NR / 2;
/// Bytes of one block of one panel.
const BLOCK_BYTES: usize = BK * NR / 2;
/// Floats of scales per block of one panel: `NR` scales, then `NR` minimums.
const BLOCK_SCALES: usize = 2 * NR;
/// Largest magnitude of an activation level.
const QX_MAX: f32 = 127.0;

/// A weight `[n, k]` in 4-bit blocks, panel after panel, block after block (see the module
/// docs for the byte layout); columns past `n` and steps past `k` hold level 0 and, for
/// columns past `n`, scale and minimum 0.
#[derive(Clone, Debug)]
pub(super) struct Q4Panels {
    n: usize,
    k: usize,
    blocks: usize,
    q: Vec<u8>,
    dm: Vec<f32>,
}

/// Rows of `x` rounded to 8 bits per block of [`BK`] steps: levels (`blocks * BK` per row,
/// zero past `k`), the scale `dx` of each block, and the sum of each rounded block
/// (`dx · Σ qx`).
pub(super) struct QuantizedRows {
    pub(super) q: Vec<i8>,
    pub(super) d: Vec<f32>,
    pub(super) sum: Vec<f32>,
}

impl QuantizedRows {
    /// Rounds the `m` rows of `x` (`[m, k]`, row-major) to 8-bit levels per block. A block with
    /// a non-finite value gets scale NaN (and levels 0), so its products are NaN as the f32
    /// path's would be.
    pub(super) fn new(x: &[f32], m: usize, k: usize) -> Self {
        let blocks = k.div_ceil(BK);
        let mut q = vec![0i8; m * blocks * BK];
        let mut d = vec![0f32; m * blocks];
        let mut sum = vec![0f32; m * blocks];
        let rows = x[..m * k].chunks_exact(k.max(1)).take(m);
        for (r, row) in rows.enumerate() {
            for (b, vals) in row.chunks(BK).enumerate() {
                let at = r * blocks + b;
                let amax = vals.iter().fold(0f32, |a, v| a.max(v.abs()));
                if !vals.iter().all(|v| v.is_finite()) {
                    (d[at], sum[at]) = (f32::NAN, f32::NAN);
                    continue;
                }
                d[at] = amax / QX_MAX;
                let inv = if amax > 0.0 { QX_MAX / amax } else { 0.0 };
                let mut levels = 0i32;
                for (l, &v) in q[at * BK..].iter_mut().zip(vals) {
                    *l = round_level(v * inv);
                    levels += i32::from(*l);
                }
                sum[at] = d[at] * levels as f32;
            }
        }
        Self { q, d, sum }
    }
}

/// `v` (|v| ≤ 127 up to rounding) to the nearest integer level, ties to even (see
/// [`round_nearest`]: `f32::round` made rounding a row cost more than multiplying it by a
/// small matrix).
#[inline(always)]
fn round_level(v: f32) -> i8 {
    round_nearest(v).clamp(-QX_MAX, QX_MAX) as i8
}

/// Scale and minimum of a 16-level grid holding `vals` to f32 rounding (levels written to
/// `levels`): from the block's minimum to its maximum (Q4_1 blocks), else the symmetric grid of
/// Q4_0 (`w = d · (q − 8)`, the value of largest magnitude at level 0). `None` when neither
/// holds the block.
fn quantize_block(vals: &[f32], levels: &mut [u8]) -> Option<(f32, f32)> {
    fit_block(vals, levels, 15.0, |lo, hi| {
        // Q4_0: the value of largest magnitude sits at level 0, i.e. at -8·d.
        let first = if lo.abs() >= hi.abs() { lo } else { hi };
        (first / -8.0, first)
    })
}

impl Q4Panels {
    /// Quantizes `w` (`[n, k]`, row-major, `w.len() >= n * k`, finite values) on the current
    /// rayon pool; `None` unless every block of 32 values of a row sits on a 16-level grid to
    /// f32 rounding.
    pub(super) fn quantize(w: &[f32], n: usize, k: usize) -> Option<Self> {
        let (q, dm) = quantize_panels(w, (n, k), BLOCK_BYTES, quantize_block, |qb, s, j, l| {
            let (byte, shift) = Self::position(s, j);
            qb[byte] |= l << shift;
        })?;
        Some(Self {
            n,
            k,
            blocks: k.div_ceil(BK),
            q,
            dm,
        })
    }

    /// Byte (within its block) and bit shift of the level of step `s < BK`, column `j < NR`.
    fn position(s: usize, j: usize) -> (usize, u32) {
        let (g, t) = (s / GROUP, s % GROUP);
        (g * GROUP_BYTES + (j % 16) * GROUP + t, 4 * (j / 16) as u32)
    }

    /// The levels of one block of one panel in step-major order (`out[s * NR + j]`).
    fn unpack_block(qb: &[u8; BLOCK_BYTES], out: &mut [u8; BK * NR]) {
        for (g, group) in qb.chunks_exact(GROUP_BYTES).enumerate() {
            for (c, lanes) in group.chunks_exact(GROUP).enumerate() {
                for (t, &byte) in lanes.iter().enumerate() {
                    let s = g * GROUP + t;
                    out[s * NR + c] = byte & 0x0F;
                    out[s * NR + 16 + c] = byte >> 4;
                }
            }
        }
    }

    /// Row `j` of `W` (`k` values) into `out`, dequantized.
    pub(super) fn row(&self, j: usize, out: &mut [f32]) {
        assert!(j < self.n && out.len() >= self.k);
        let (q, dm) = self.panel(j / NR);
        let col = j % NR;
        for (b, chunk) in out[..self.k].chunks_mut(BK).enumerate() {
            let (d, m) = (dm[b * BLOCK_SCALES + col], dm[b * BLOCK_SCALES + NR + col]);
            let qb = &q[b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES];
            for (s, o) in chunk.iter_mut().enumerate() {
                let (byte, shift) = Self::position(s, col);
                *o = d * f32::from((qb[byte] >> shift) & 0x0F) + m;
            }
        }
    }

    /// Bytes held (levels and scales).
    pub(super) fn bytes(&self) -> usize {
        self.q.len() + self.dm.len() * std::mem::size_of::<f32>()
    }

    /// Levels and scales of panel `p`.
    fn panel(&self, p: usize) -> (&[u8], &[f32]) {
        let (qs, ss) = (self.blocks * BLOCK_BYTES, self.blocks * BLOCK_SCALES);
        (
            &self.q[p * qs..(p + 1) * qs],
            &self.dm[p * ss..(p + 1) * ss],
        )
    }

    /// Writes steps `ks` of panels `panels` as f32 in the f32 layout of one block of `k`
    /// (panel after panel, `ks.len() × NR` values each, `dst[s * NR + j]`) into `dst`, compiled
    /// for the SIMD instructions of `isa` (the same plain Rust on every path).
    pub(super) fn dequantize(
        &self,
        isa: Isa,
        ks: Range<usize>,
        panels: Range<usize>,
        dst: &mut [f32],
    ) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(isa) => isa.q4_dequantize(self, ks, panels, dst),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(isa) => isa.q4_dequantize(self, ks, panels, dst),
            Isa::Portable => self.dequantize_body(ks, panels, dst, scale_steps),
        }
    }

    /// The body of [`Q4Panels::dequantize`], inlined into each path's compilation of it.
    #[inline(always)]
    fn dequantize_body(
        &self,
        ks: Range<usize>,
        panels: Range<usize>,
        dst: &mut [f32],
        steps_of: impl Fn(&[u8], &[f32; NR], &[f32; NR], &mut [f32]),
    ) {
        let kc = ks.len();
        assert!(ks.end <= self.k && panels.end <= self.n.div_ceil(NR));
        assert!(dst.len() >= panels.len() * kc * NR);
        let mut levels = [0u8; BK * NR];
        for (p, out) in panels.zip(dst.chunks_exact_mut(kc * NR)) {
            let (q, dm) = self.panel(p);
            let mut at = 0;
            for b in ks.start / BK..ks.end.div_ceil(BK) {
                let qb: &[u8; BLOCK_BYTES] = q[b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES]
                    .try_into()
                    .expect("one block");
                Self::unpack_block(qb, &mut levels);
                let sb = &dm[b * BLOCK_SCALES..(b + 1) * BLOCK_SCALES];
                let d: &[f32; NR] = sb[..NR].try_into().expect("NR scales");
                let m: &[f32; NR] = sb[NR..].try_into().expect("NR minimums");
                let steps = ks.start.max(b * BK) - b * BK..ks.end.min((b + 1) * BK) - b * BK;
                let lv = &levels[steps.start * NR..steps.end * NR];
                let o = &mut out[at..at + steps.len() * NR];
                at += steps.len() * NR;
                steps_of(lv, d, m, o);
            }
        }
    }

    /// `out[i, j] ≈ Σ_p x[i, p] · W[j, p]` for `m` rows (`x` `[m, k]`, `out` `[m, n]`,
    /// row-major, lengths checked by the caller) with `x` rounded to 8 bits per block (see the
    /// module docs): the weight bytes streamed once for all rows, tasks of a few panels each on
    /// the current rayon pool.
    pub(super) fn rows(&self, isa: Isa, x: &[f32], m: usize, out: &mut [f32]) {
        let rows = QuantizedRows::new(x, m, self.k);
        let (xq, xd, xsum) = (&rows.q[..], &rows.d[..], &rows.sum[..]);
        panel_rows(self.n, self.k, m, out, |p, acc| {
            let (q, dm) = self.panel(p);
            isa.q4_rows(xq, xd, xsum, self.blocks, q, dm, acc);
        });
    }
}

/// Checks the slices every `q4_rows` kernel reads: `out.len()` rows of levels (`blocks * BK`
/// each), scales and sums (`blocks` each), and one panel's `blocks` blocks of levels and
/// scales.
pub(super) fn check_rows(
    xq: &[i8],
    xd: &[f32],
    xsum: &[f32],
    blocks: usize,
    q: &[u8],
    dm: &[f32],
    rows: usize,
) {
    assert!(xq.len() >= rows * blocks * BK);
    assert!(xd.len() >= rows * blocks && xsum.len() >= rows * blocks);
    assert!(q.len() >= blocks * BLOCK_BYTES && dm.len() >= blocks * BLOCK_SCALES);
}
