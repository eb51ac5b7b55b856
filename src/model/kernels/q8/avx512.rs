//! AVX-512F kernel for 8-bit panels: per step of `k`, a panel's 32 levels widened to f32 once
//! (two zmm registers) and multiplied into every row (up to 12 rows: 24 accumulators, as the
//! f32 kernel's tiles).

#![deny(unsafe_op_in_unsafe_fn)]

use super::{check_rows, Q8Panels, BK, BLOCK_BYTES, BLOCK_SCALES};
use crate::model::kernels::avx512::Avx512;
use crate::model::kernels::{part_start, NR};
use std::arch::x86_64::{
    __m128i, __m512, _mm512_add_ps, _mm512_cvtepi32_ps, _mm512_cvtepu8_epi32, _mm512_fmadd_ps,
    _mm512_loadu_ps, _mm512_mul_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    _mm_loadu_si128,
};
use std::ops::Range;

/// Most rows of one register tile.
const R5: usize = 12;

impl Avx512 {
    /// `out[r][j] += Σ_p x[r * k + p] · W[j, p]` for one panel (levels `q`, scales `dm`) and
    /// the `out.len()` rows of `x`, in groups of at most 12 rows.
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
        let groups = mr.div_ceil(R5);
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
                            // SAFETY: the token proves AVX-512F. Rows r0 + i < mr of `x` hold k
                            // floats and of `xsum` `blocks` (check_rows); `q` and `dm` hold
                            // `blocks` whole blocks of one panel; each `out` row is NR floats.
                            unsafe { panel::<$r>(xs, sums, k, q.as_ptr(), dm.as_ptr(), outs) }
                        })*
                        r => unreachable!("group of {r} rows"),
                    }
                };
            }
            const { assert!(R5 == 12) };
            dispatch!(1 2 3 4 5 6 7 8 9 10 11 12);
        }
    }
}

/// Widens 16 levels at `p` to f32.
///
/// # Safety
/// AVX-512F must be available; 16 bytes at `p` readable.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn widen(p: *const u8) -> __m512 {
    // SAFETY: 16 readable bytes at p (caller).
    unsafe { _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(p.cast::<__m128i>()))) }
}

/// `R` rows × 32 columns over every block of `k`.
///
/// # Safety
/// AVX-512F must be available; `x[r]` readable for `k` floats and `xsum[r]` for
/// `ceil(k / BK)`; `q` readable for `ceil(k / BK) * BLOCK_BYTES` bytes and `dm` for
/// `ceil(k / BK) * BLOCK_SCALES` floats; `out[r]` readable and writable for `NR` floats.
#[target_feature(enable = "avx512f")]
unsafe fn panel<const R: usize>(
    x: [*const f32; R],
    xsum: [*const f32; R],
    k: usize,
    q: *const u8,
    dm: *const f32,
    out: [*mut f32; R],
) {
    for b in 0..k.div_ceil(BK) {
        let steps = (k - b * BK).min(BK);
        let mut t = [[_mm512_setzero_ps(); 2]; R];
        for s in 0..steps {
            // SAFETY: s < BK inside block b (caller); step b * BK + s < k of each row.
            unsafe {
                let p = q.add(b * BLOCK_BYTES + s * NR);
                let (w0, w1) = (widen(p), widen(p.add(16)));
                for (t, xr) in t.iter_mut().zip(&x) {
                    let xv = _mm512_set1_ps(*xr.add(b * BK + s));
                    t[0] = _mm512_fmadd_ps(xv, w0, t[0]);
                    t[1] = _mm512_fmadd_ps(xv, w1, t[1]);
                }
            }
        }
        // SAFETY: scales of block b (caller); `out` rows hold NR floats, `xsum` rows the block.
        unsafe {
            let sc = dm.add(b * BLOCK_SCALES);
            let (d0, d1) = (_mm512_loadu_ps(sc), _mm512_loadu_ps(sc.add(16)));
            let (m0, m1) = (
                _mm512_loadu_ps(sc.add(NR)),
                _mm512_loadu_ps(sc.add(NR + 16)),
            );
            for ((t, o), xs) in t.iter().zip(&out).zip(&xsum) {
                let xs = _mm512_set1_ps(*xs.add(b));
                let o0 = _mm512_fmadd_ps(d0, t[0], _mm512_loadu_ps(*o));
                let o1 = _mm512_fmadd_ps(d1, t[1], _mm512_loadu_ps(o.add(16)));
                _mm512_storeu_ps(*o, _mm512_fmadd_ps(m0, xs, o0));
                _mm512_storeu_ps(o.add(16), _mm512_fmadd_ps(m1, xs, o1));
            }
        }
    }
}

impl Avx512 {
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
#[target_feature(enable = "avx512f")]
fn dequantize(w: &Q8Panels, ks: Range<usize>, panels: Range<usize>, dst: &mut [f32]) {
    w.dequantize_body(ks, panels, dst, |levels, d, m, out| {
        scale_steps(levels, d, m, out)
    })
}

/// [`super::scale_steps`] with AVX-512F: per step, 32 levels widened to f32 in two registers,
/// multiplied by the scales, then the minimums added (no fused multiply-add: the same bits as
/// the portable path).
#[target_feature(enable = "avx512f")]
pub(in crate::model::kernels) fn scale_steps(
    levels: &[u8],
    d: &[f32; NR],
    m: &[f32; NR],
    out: &mut [f32],
) {
    let (levels, _) = levels.as_chunks::<NR>();
    let (out, _) = out.as_chunks_mut::<NR>();
    // SAFETY: every load and store below reads or writes 16 values inside an array of NR = 32
    // (offsets 0 and 16), and the CPU runs AVX-512F (this function's target feature).
    unsafe {
        let (d0, d1) = (
            _mm512_loadu_ps(d.as_ptr()),
            _mm512_loadu_ps(d.as_ptr().add(16)),
        );
        let (m0, m1) = (
            _mm512_loadu_ps(m.as_ptr()),
            _mm512_loadu_ps(m.as_ptr().add(16)),
        );
        for (lv, o) in levels.iter().zip(out) {
            let half = |at: usize| {
                _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(
                    lv.as_ptr().add(at).cast::<__m128i>(),
                )))
            };
            let (l0, l1) = (half(0), half(16));
            _mm512_storeu_ps(o.as_mut_ptr(), _mm512_add_ps(_mm512_mul_ps(d0, l0), m0));
            _mm512_storeu_ps(
                o.as_mut_ptr().add(16),
                _mm512_add_ps(_mm512_mul_ps(d1, l1), m1),
            );
        }
    }
}
