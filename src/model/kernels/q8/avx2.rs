//! AVX2 + FMA kernel for 8-bit panels: each panel as two 16-column halves; per step of `k`,
//! 16 levels widened to f32 once and multiplied into every row (up to 6 rows: 12 accumulators).

#![deny(unsafe_op_in_unsafe_fn)]

use super::{check_rows, Q8Panels, BK, BLOCK_BYTES, BLOCK_SCALES};
use crate::model::kernels::avx2::Avx2;
use crate::model::kernels::{part_start, NR};
use std::arch::x86_64::{
    __m128i, __m256, _mm256_add_ps, _mm256_cvtepi32_ps, _mm256_cvtepu8_epi32, _mm256_fmadd_ps,
    _mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    _mm_loadl_epi64,
};
use std::ops::Range;

/// Most rows of one register tile.
const R2: usize = 6;
/// Columns of one half panel.
const HALF: usize = NR / 2;

impl Avx2 {
    /// `out[r][j] += Σ_p x[r * k + p] · W[j, p]` for one panel (levels `q`, scales `dm`) and
    /// the `out.len()` rows of `x`, in groups of at most 6 rows.
    pub(in crate::model::kernels) fn q8_rows(
        self,
        x: &[f32],
        k: usize,
        xsum: &[f32],
        q: &[u8],
        dm: &[f32],
        out: &mut [[f32; NR]],
    ) {
        let (mr, blocks) = (out.len(), check_rows(x, k, xsum, q, dm, out.len()));
        let groups = mr.div_ceil(R2);
        for g in 0..groups {
            let (r0, r1) = (part_start(g, mr, groups), part_start(g + 1, mr, groups));
            let out = &mut out[r0..r1];
            macro_rules! dispatch {
                ($($r:literal)*) => {
                    match out.len() {
                        $($r => {
                            let xs: [*const f32; $r] =
                                std::array::from_fn(|i| x[(r0 + i) * k..].as_ptr());
                            let sums: [*const f32; $r] =
                                std::array::from_fn(|i| xsum[(r0 + i) * blocks..].as_ptr());
                            let outs: [*mut f32; $r] = {
                                let mut it = out.iter_mut();
                                std::array::from_fn(|_| it.next().expect("rows").as_mut_ptr())
                            };
                            for h in 0..2 {
                                // SAFETY: the token proves AVX2 + FMA. Rows r0 + i < mr of `x`
                                // hold k floats and of `xsum` `blocks` (check_rows); `q` and `dm`
                                // hold `blocks` blocks of one panel, of which half h reads bytes
                                // s * NR + h * 16 .. + 16 and floats h * 16 .. + 16, NR + h * 16
                                // .. + 16 of each block; each `out` row is NR floats, of which
                                // half h touches h * 16 .. h * 16 + 16.
                                unsafe {
                                    half::<$r>(
                                        xs,
                                        sums,
                                        k,
                                        q.as_ptr().add(h * HALF),
                                        dm.as_ptr().add(h * HALF),
                                        outs.map(|o| o.add(h * HALF)),
                                    )
                                }
                            }
                        })*
                        r => unreachable!("group of {r} rows"),
                    }
                };
            }
            const { assert!(R2 == 6) };
            dispatch!(1 2 3 4 5 6);
        }
    }
}

/// `R` rows × 16 columns over every block of `k`.
///
/// # Safety
/// AVX2 and FMA must be available; `x[r]` readable for `k` floats and `xsum[r]` for
/// `ceil(k / BK)`; for every block `b` and step `s < BK`, `q + b * BLOCK_BYTES + s * NR + 0..16`
/// readable (bytes), and `dm + b * BLOCK_SCALES + 0..16`, `dm + b * BLOCK_SCALES + NR + 0..16`
/// (floats); `out[r]` readable and writable for 16 floats.
#[target_feature(enable = "avx2,fma")]
unsafe fn half<const R: usize>(
    x: [*const f32; R],
    xsum: [*const f32; R],
    k: usize,
    q: *const u8,
    dm: *const f32,
    out: [*mut f32; R],
) {
    /// Widens 8 levels at `p` to f32.
    ///
    /// # Safety
    /// AVX2 must be available; 8 bytes at `p` readable.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn widen(p: *const u8) -> __m256 {
        // SAFETY: 8 readable bytes at p (caller).
        unsafe { _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(p.cast::<__m128i>()))) }
    }
    for b in 0..k.div_ceil(BK) {
        let steps = (k - b * BK).min(BK);
        let mut t = [[_mm256_setzero_ps(); 2]; R];
        for s in 0..steps {
            // SAFETY: s < BK inside block b (caller); step b * BK + s < k of each row.
            unsafe {
                let p = q.add(b * BLOCK_BYTES + s * NR);
                let (w0, w1) = (widen(p), widen(p.add(8)));
                for (t, xr) in t.iter_mut().zip(&x) {
                    let xv = _mm256_set1_ps(*xr.add(b * BK + s));
                    t[0] = _mm256_fmadd_ps(xv, w0, t[0]);
                    t[1] = _mm256_fmadd_ps(xv, w1, t[1]);
                }
            }
        }
        // SAFETY: scales of block b (caller); `out` rows hold 16 floats, `xsum` rows the block.
        unsafe {
            let sc = dm.add(b * BLOCK_SCALES);
            let (d0, d1) = (_mm256_loadu_ps(sc), _mm256_loadu_ps(sc.add(8)));
            let (m0, m1) = (_mm256_loadu_ps(sc.add(NR)), _mm256_loadu_ps(sc.add(NR + 8)));
            for ((t, o), xs) in t.iter().zip(&out).zip(&xsum) {
                let xs = _mm256_set1_ps(*xs.add(b));
                let o0 = _mm256_fmadd_ps(d0, t[0], _mm256_loadu_ps(*o));
                let o1 = _mm256_fmadd_ps(d1, t[1], _mm256_loadu_ps(o.add(8)));
                _mm256_storeu_ps(*o, _mm256_fmadd_ps(m0, xs, o0));
                _mm256_storeu_ps(o.add(8), _mm256_fmadd_ps(m1, xs, o1));
            }
        }
    }
}

impl Avx2 {
    /// [`Q8Panels::dequantize`] compiled for this path's instructions.
    pub(in crate::model::kernels) fn q8_dequantize(
        self,
        w: &Q8Panels,
        ks: Range<usize>,
        panels: Range<usize>,
        dst: &mut [f32],
    ) {
        // SAFETY: the token proves the CPU runs the function's target features; the function
        // itself is safe Rust (bounds-checked slices).
        unsafe { dequantize(w, ks, panels, dst) }
    }
}

/// Safe Rust compiled with the path's target features, so the compiler vectorises it for them.
#[target_feature(enable = "avx2,fma")]
fn dequantize(w: &Q8Panels, ks: Range<usize>, panels: Range<usize>, dst: &mut [f32]) {
    w.dequantize_body(ks, panels, dst, |levels, d, m, out| {
        scale_steps(levels, d, m, out)
    })
}

/// [`super::scale_steps`] with AVX2: per step, 32 levels widened to f32 in four registers,
/// multiplied by the scales, then the minimums added (no fused multiply-add: the same bits as
/// the portable path).
#[target_feature(enable = "avx2,fma")]
pub(in crate::model::kernels) fn scale_steps(
    levels: &[u8],
    d: &[f32; NR],
    m: &[f32; NR],
    out: &mut [f32],
) {
    let (levels, _) = levels.as_chunks::<NR>();
    let (out, _) = out.as_chunks_mut::<NR>();
    // SAFETY: every load and store below reads or writes 8 values inside an array of NR = 32
    // (offsets 0, 8, 16, 24), and the CPU runs AVX2 (this function's target features).
    unsafe {
        for (lv, o) in levels.iter().zip(out) {
            for at in [0, 8, 16, 24] {
                let level = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    lv.as_ptr().add(at).cast::<__m128i>(),
                )));
                let scaled = _mm256_mul_ps(_mm256_loadu_ps(d.as_ptr().add(at)), level);
                let value = _mm256_add_ps(scaled, _mm256_loadu_ps(m.as_ptr().add(at)));
                _mm256_storeu_ps(o.as_mut_ptr().add(at), value);
            }
        }
    }
}
