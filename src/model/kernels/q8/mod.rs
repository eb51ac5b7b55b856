//! 8-bit packed weights (`q8`): the same 32-column panels as the f32 layout, each value stored
//! as one byte `q` of its block of 32 steps of `k`, with an f32 scale `d` and minimum `m` per
//! column and block, so that `w ≈ d · q + m` (255 levels between the block's smallest and
//! largest value). A quarter of the f32 bytes plus 8 bytes per 32 values.
//!
//! Why this form: the default model's file is Q4_1 (`w = d₄ · q₄ + m₄`, `q₄ < 16`), whose blocks
//! always contain their own minimum and maximum, so the 255-level grid of a block holds every
//! Q4_1 level exactly (`q = 17 · q₄`): the weights are the file's up to f32 rounding, on every
//! source format we read (GGUF of any type, F16/BF16 safetensors), without a kernel per GGML
//! block type. Activations stay f32 (no rounding of `x`): a product is
//! `Σ_b d_b · (Σ_s x_s · q_s) + m_b · (Σ_s x_s)`.
//!
//! Two uses: few rows (decode) run [`Q8Panels::rows`], which streams the bytes once for all
//! rows (bandwidth-bound: ~3.6× fewer bytes than f32); many rows (prefill) dequantize one block
//! of panels at a time ([`Q8Panels::dequantize`]) into the f32 layout for the f32 micro-kernel,
//! a cost shared by every row of the block.

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512;
pub(super) mod portable;

#[cfg(test)]
mod tests;

use super::{fit_block, panel_rows, quantize_panels, Isa, NR};
use std::ops::Range;

/// Steps of `k` per quantization block.
pub(super) const BK: usize = 32;
/// Bytes of one block of one panel (`BK` steps × `NR` columns).
const BLOCK_BYTES: usize = BK * NR;
/// Floats of scales per block of one panel: `NR` scales, then `NR` minimums.
const BLOCK_SCALES: usize = 2 * NR;

/// A weight `[n, k]` in 8-bit blocks, panel after panel: panel `p`, block `b` holds bytes
/// `q[s * NR + j]` for step `b * BK + s` and column `p * NR + j` (zero past `k` or `n`), and
/// floats `d[j]`, `m[j]` (zero for columns past `n`).
#[derive(Clone, Debug)]
pub(super) struct Q8Panels {
    n: usize,
    k: usize,
    blocks: usize,
    q: Vec<u8>,
    dm: Vec<f32>,
}

/// Scale and minimum of a 255-level grid over `vals` (written to `levels`): the grid from the
/// block's minimum to its maximum when it holds the block, else the symmetric grid
/// `d = max|w| / 127`, `m = -128·d`. The first holds Q4_1-style blocks exactly (`d·q + m`, both
/// extremes present), the second Q8_0 blocks (`d·q`, `|q| ≤ 127`, the largest at 127); trying
/// the first alone when it fits halves the load-time work on the default (Q4_1) model.
/// Returns `None` when neither grid holds the block to f32 rounding.
fn quantize_block(vals: &[f32], levels: &mut [u8]) -> Option<(f32, f32)> {
    fit_block(vals, levels, 255.0, |lo, hi| {
        let d = lo.abs().max(hi.abs()) / 127.0;
        (d, -128.0 * d)
    })
}

impl Q8Panels {
    /// Quantizes `w` (`[n, k]`, row-major, `w.len() >= n * k`, finite values) on the current
    /// rayon pool; `None` unless every block of 32 values is held to f32 rounding (weights
    /// dequantized from Q4_0/Q4_1/Q8_0-style blocks are; F16, BF16 or trained f32 ones are not).
    pub(super) fn quantize(w: &[f32], n: usize, k: usize) -> Option<Self> {
        let (q, dm) = quantize_panels(w, (n, k), BLOCK_BYTES, quantize_block, |qb, s, j, l| {
            qb[s * NR + j] = l;
        })?;
        Some(Self {
            n,
            k,
            blocks: k.div_ceil(BK),
            q,
            dm,
        })
    }

    /// Row `j` of `W` (`k` values) into `out`, dequantized.
    pub(super) fn row(&self, j: usize, out: &mut [f32]) {
        assert!(j < self.n && out.len() >= self.k);
        let (q, dm) = self.panel(j / NR);
        let col = j % NR;
        for (b, chunk) in out[..self.k].chunks_mut(BK).enumerate() {
            let (d, m) = (dm[b * BLOCK_SCALES + col], dm[b * BLOCK_SCALES + NR + col]);
            let levels = &q[b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES];
            for (u, o) in chunk.iter_mut().enumerate() {
                *o = d * f32::from(levels[u * NR + col]) + m;
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
            Isa::Avx512(isa) => isa.q8_dequantize(self, ks, panels, dst),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(isa) => isa.q8_dequantize(self, ks, panels, dst),
            Isa::Portable => self.dequantize_body(ks, panels, dst, scale_steps),
        }
    }

    /// The body of [`Q8Panels::dequantize`], inlined into each path's compilation of it.
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
        for (p, out) in panels.zip(dst.chunks_exact_mut(kc * NR)) {
            let (q, dm) = self.panel(p);
            let mut at = 0;
            // Block by block of BK steps, so the inner loops run over fixed-size arrays.
            for b in ks.start / BK..ks.end.div_ceil(BK) {
                let sb = &dm[b * BLOCK_SCALES..(b + 1) * BLOCK_SCALES];
                let d: &[f32; NR] = sb[..NR].try_into().expect("NR scales");
                let m: &[f32; NR] = sb[NR..].try_into().expect("NR minimums");
                let steps = ks.start.max(b * BK) - b * BK..ks.end.min((b + 1) * BK) - b * BK;
                let levels =
                    &q[b * BLOCK_BYTES + steps.start * NR..b * BLOCK_BYTES + steps.end * NR];
                let o = &mut out[at..at + steps.len() * NR];
                at += steps.len() * NR;
                steps_of(levels, d, m, o);
            }
        }
    }

    /// `out[i, j] = Σ_p x[i, p] · W[j, p]` for `m` rows (`x` `[m, k]`, `out` `[m, n]`,
    /// row-major, lengths checked by the caller), the weight bytes streamed once for all rows:
    /// tasks of a few panels each on the current rayon pool, every task running all rows.
    pub(super) fn rows(&self, isa: Isa, x: &[f32], m: usize, out: &mut [f32]) {
        let (n, k) = (self.n, self.k);
        let (x, out) = (&x[..m * k], &mut out[..m * n]);
        // Per row and block: the sum of the row's values (the minimums' weight).
        let xsum: Vec<f32> = x
            .chunks_exact(k)
            .flat_map(|row| row.chunks(BK).map(|c| c.iter().sum::<f32>()))
            .collect();
        debug_assert_eq!(xsum.len(), m * self.blocks);
        panel_rows(n, k, m, out, |p, acc| {
            let (q, dm) = self.panel(p);
            isa.q8_rows(x, k, &xsum, q, dm, acc);
        });
    }
}

/// Checks the slices every `q8_rows` kernel reads: `out.len()` rows of `x` (`k` each), their
/// block sums, and one panel's `ceil(k / BK)` blocks of levels and scales. Returns the blocks.
pub(super) fn check_rows(
    x: &[f32],
    k: usize,
    xsum: &[f32],
    q: &[u8],
    dm: &[f32],
    rows: usize,
) -> usize {
    let blocks = k.div_ceil(BK);
    assert!(x.len() >= rows * k && xsum.len() >= rows * blocks);
    assert!(q.len() >= blocks * BLOCK_BYTES && dm.len() >= blocks * BLOCK_SCALES);
    blocks
}

/// `out = d · level + m` for the whole steps of one block (`NR` values a step), in plain Rust:
/// the portable path's, and the definition the SIMD paths' `scale_steps` (the same
/// multiplication, then addition, so the same bits) follow. The 8-bit and 4-bit panels share
/// them.
pub(super) fn scale_steps(levels: &[u8], d: &[f32; NR], m: &[f32; NR], out: &mut [f32]) {
    let (levels, _) = levels.as_chunks::<NR>();
    let (out, _) = out.as_chunks_mut::<NR>();
    for (lv, o) in levels.iter().zip(out) {
        for j in 0..NR {
            o[j] = d[j] * f32::from(lv[j]) + m[j];
        }
    }
}
