//! Data layouts shared by every micro-kernel: the packed weight panels and the packed blocks of
//! input rows. Plain safe Rust; the kernels only read what is written here.

use super::{packed_rows_len, KU, NR};
use rayon::prelude::*;
use std::ops::Range;

/// Alignment of the packed weights in bytes (one cache line, one zmm register).
const ALIGN_BYTES: usize = 64;
/// Spare elements allocated so that an aligned start always exists.
const ALIGN_SLACK: usize = ALIGN_BYTES / std::mem::size_of::<f32>() - 1;

/// A zero-initialised `f32` buffer whose first element sits on a 64-byte boundary (when the
/// allocator allows it; alignment only affects speed, never correctness).
pub(super) struct AlignedBuf {
    data: Vec<f32>,
    offset: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `len` zeros.
    pub(super) fn zeroed(len: usize) -> Self {
        let data = vec![0.0f32; len + ALIGN_SLACK];
        let offset = data.as_ptr().align_offset(ALIGN_BYTES);
        // `align_offset` may decline to answer (usize::MAX); an unaligned start is still correct.
        let offset = if offset <= ALIGN_SLACK { offset } else { 0 };
        Self { data, offset, len }
    }

    /// The usable elements.
    pub(super) fn as_slice(&self) -> &[f32] {
        &self.data[self.offset..self.offset + self.len]
    }

    /// The usable elements, mutably.
    pub(super) fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data[self.offset..self.offset + self.len]
    }
}

impl Clone for AlignedBuf {
    fn clone(&self) -> Self {
        // A plain `Vec` clone would lose the alignment: copy into a freshly aligned buffer.
        let mut out = Self::zeroed(self.len);
        out.as_mut_slice().copy_from_slice(self.as_slice());
        out
    }
}

/// Packs the row-major weight `w` (`[n, k]`) block of `k` after block (`k_range(kb)` for
/// `kb < k_blocks`, consecutive and covering `0..k`). Block `kb` holds its `ceil(n / NR)`
/// panels one after the other; panel `p` holds columns `p * NR .. p * NR + NR` of `Wᵀ` as
/// `kc` consecutive groups of `NR` values: `panel[s * NR + j] = w[(p * NR + j) * k + k0 + s]`,
/// zero where `p * NR + j >= n`.
pub(super) fn pack_weights(
    w: &[f32],
    n: usize,
    k: usize,
    k_range: impl Fn(usize) -> Range<usize>,
    k_blocks: usize,
) -> AlignedBuf {
    let panels = n.div_ceil(NR);
    let mut buf = AlignedBuf::zeroed(panels * NR * k);
    let mut rest = buf.as_mut_slice();
    let mut jobs = Vec::with_capacity(panels * k_blocks);
    for kb in 0..k_blocks {
        let ks = k_range(kb);
        for p in 0..panels {
            let (panel, tail) = rest.split_at_mut(ks.len() * NR);
            jobs.push((ks.clone(), p, panel));
            rest = tail;
        }
    }
    jobs.into_par_iter().for_each(|(ks, p, panel)| {
        for j in 0..NR.min(n - p * NR) {
            let row = &w[(p * NR + j) * k..][ks.clone()];
            for (s, &v) in row.iter().enumerate() {
                panel[s * NR + j] = v;
            }
        }
    });
    buf
}

/// Packs steps `k0 .. k0 + kc` of the rows of `x` (row-major, `mr = x.len() / k` rows of
/// length `k`) into `dst` for the micro-kernel: groups of `KU` steps, each group `mr × KU`
/// values row after row, `dst[(p / KU) * mr * KU + r * KU + p % KU] = x[r * k + k0 + p]`, the
/// last group zero-padded. Copies runs of `KU` contiguous values; no transposition.
pub(super) fn pack_rows(x: &[f32], k: usize, k0: usize, kc: usize, dst: &mut [f32]) {
    let mr = x.len() / k;
    let dst = &mut dst[..packed_rows_len(mr, kc)];
    let full = kc / KU;
    // Group by group, so that the writes are sequential.
    let (body, tail) = dst.split_at_mut(full * mr * KU);
    for (g, group) in body.chunks_exact_mut(mr * KU).enumerate() {
        let at = k0 + g * KU;
        for (d, row) in group.chunks_exact_mut(KU).zip(x.chunks_exact(k)) {
            d.copy_from_slice(&row[at..at + KU]);
        }
    }
    let rem = kc - full * KU;
    if rem > 0 {
        let at = k0 + full * KU;
        for (d, row) in tail.chunks_exact_mut(KU).zip(x.chunks_exact(k)) {
            d[..rem].copy_from_slice(&row[at..at + rem]);
            d[rem..].fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_layout() {
        let (n, k) = (35, 5);
        let w: Vec<f32> = (0..n * k).map(|i| i as f32).collect();
        // Two blocks of k: 0..2 and 2..5.
        let bounds = [0, 2, 5];
        let buf = pack_weights(&w, n, k, |kb| bounds[kb]..bounds[kb + 1], 2);
        let p = buf.as_slice();
        assert_eq!(p.len(), 2 * k * NR);
        for col in 0..2 * NR {
            for kk in 0..k {
                let (kb, k0) = if kk < 2 { (0, 0) } else { (1, 2) };
                let kc = bounds[kb + 1] - k0;
                let at = k0 * 2 * NR + (col / NR) * kc * NR + (kk - k0) * NR + col % NR;
                let want = if col < n { w[col * k + kk] } else { 0.0 };
                assert_eq!(p[at], want, "col {col} kk {kk}");
            }
        }
    }

    #[test]
    fn rows_layout() {
        let (k, mr, k0, kc) = (23, 3, 2, 19);
        let x: Vec<f32> = (0..mr * k).map(|i| i as f32 + 1.0).collect();
        let mut dst = vec![f32::NAN; packed_rows_len(mr, kc)];
        pack_rows(&x, k, k0, kc, &mut dst);
        for p in 0..kc.div_ceil(KU) * KU {
            for r in 0..mr {
                let got = dst[(p / KU) * mr * KU + r * KU + p % KU];
                let want = if p < kc { x[r * k + k0 + p] } else { 0.0 };
                assert_eq!(got, want, "p {p} r {r}");
            }
        }
    }

    #[test]
    fn aligned_clone() {
        let mut a = AlignedBuf::zeroed(100);
        a.as_mut_slice()[7] = 3.0;
        let b = a.clone();
        assert_eq!(b.as_slice(), a.as_slice());
        assert_eq!(b.as_slice().as_ptr() as usize % ALIGN_BYTES, 0);
    }
}
