//! AVX2 kernel for 4-bit panels: per group of 4 steps, a panel's 128 levels unpacked into four
//! registers once and multiplied into every row with `vpmaddubsw` (levels × 8-bit activations,
//! pairs summed to 16 bits); the 16-bit sums of a block (at most 8 × 2 × 15 × 127 = 30,480, so
//! they never saturate) are widened once per block (up to 2 rows at a time).

#![deny(unsafe_op_in_unsafe_fn)]

use super::{check_rows, Q4Panels, BK, BLOCK_BYTES, BLOCK_SCALES, GROUP, GROUP_BYTES};
use crate::model::kernels::avx2::Avx2;
use crate::model::kernels::{part_start, NR};
use std::arch::x86_64::{
    __m256i, _mm256_add_epi16, _mm256_and_si256, _mm256_cvtepi32_ps, _mm256_fmadd_ps,
    _mm256_loadu_ps, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_maddubs_epi16, _mm256_mul_ps,
    _mm256_set1_epi16, _mm256_set1_epi32, _mm256_set1_epi8, _mm256_set1_ps, _mm256_setzero_si256,
    _mm256_srli_epi16, _mm256_storeu_ps,
};
use std::ops::Range;

/// Most rows of one register tile (4 accumulators each).
const R2: usize = 2;

impl Avx2 {
    /// `out[r][j] += Σ_b dx_rb · Σ_s (d_j · q_sj + m_j) · qx_rs` for one panel and the
    /// `out.len()` rows of rounded activations, in groups of at most 2 rows.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::model::kernels) fn q4_rows(
        self,
        xq: &[i8],
        xd: &[f32],
        xsum: &[f32],
        blocks: usize,
        q: &[u8],
        dm: &[f32],
        out: &mut [[f32; NR]],
    ) {
        let mr = out.len();
        check_rows(xq, xd, xsum, blocks, q, dm, mr);
        let groups = mr.div_ceil(R2);
        for g in 0..groups {
            let (r0, r1) = (part_start(g, mr, groups), part_start(g + 1, mr, groups));
            let out = &mut out[r0..r1];
            macro_rules! dispatch {
                ($($r:literal)*) => {
                    match out.len() {
                        $($r => {
                            let rows = Rows::<$r> {
                                xq: std::array::from_fn(|i| xq[(r0 + i) * blocks * BK..].as_ptr()),
                                xd: std::array::from_fn(|i| xd[(r0 + i) * blocks..].as_ptr()),
                                xsum: std::array::from_fn(|i| xsum[(r0 + i) * blocks..].as_ptr()),
                                out: {
                                    let mut it = out.iter_mut();
                                    std::array::from_fn(|_| it.next().expect("rows").as_mut_ptr())
                                },
                            };
                            // SAFETY: the token proves AVX2 + FMA. Rows r0 + i < mr hold
                            // blocks * BK levels and `blocks` scales and sums (check_rows); `q`
                            // and `dm` hold `blocks` whole blocks of one panel; each `out` row
                            // is NR floats.
                            unsafe { panel::<$r>(rows, blocks, q.as_ptr(), dm.as_ptr()) }
                        })*
                        r => unreachable!("group of {r} rows"),
                    }
                };
            }
            const { assert!(R2 == 2) };
            dispatch!(1 2);
        }
    }
}

/// Pointers to `R` rows: levels, scales, sums and output.
pub(super) struct Rows<const R: usize> {
    pub(super) xq: [*const i8; R],
    pub(super) xd: [*const f32; R],
    pub(super) xsum: [*const f32; R],
    pub(super) out: [*mut f32; R],
}

/// `R` rows × 32 columns over `blocks` blocks.
///
/// # Safety
/// AVX2 and FMA must be available; each row's `xq` readable for `blocks * BK` levels and `xd`,
/// `xsum` for `blocks` floats; `q` readable for `blocks * BLOCK_BYTES` bytes and `dm` for
/// `blocks * BLOCK_SCALES` floats; each `out` row readable and writable for `NR` floats.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn panel<const R: usize>(
    rows: Rows<R>,
    blocks: usize,
    q: *const u8,
    dm: *const f32,
) {
    let low = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for b in 0..blocks {
        let mut acc = [[_mm256_setzero_si256(); 4]; R];
        for g in 0..BK / GROUP {
            // SAFETY: group g of block b lies inside the panel's blocks (caller).
            let w = unsafe {
                let p = q.add(b * BLOCK_BYTES + g * GROUP_BYTES);
                let v0 = _mm256_loadu_si256(p.cast::<__m256i>());
                let v1 = _mm256_loadu_si256(p.add(32).cast::<__m256i>());
                // Columns 0–7, 8–15 (low halves), 16–23, 24–31 (high halves), 4 steps each.
                [
                    _mm256_and_si256(v0, low),
                    _mm256_and_si256(v1, low),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(v0), low),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(v1), low),
                ]
            };
            for (acc, xq) in acc.iter_mut().zip(&rows.xq) {
                // SAFETY: steps 4g..4g + 4 of block b of the row (caller).
                let x4 = unsafe { xq.add(b * BK + g * GROUP).cast::<i32>().read_unaligned() };
                let xb = _mm256_set1_epi32(x4);
                for (a, w) in acc.iter_mut().zip(&w) {
                    *a = _mm256_add_epi16(*a, _mm256_maddubs_epi16(*w, xb));
                }
            }
        }
        // SAFETY: scales of block b (caller); each row's scale, sum and NR outputs (caller).
        unsafe {
            let sc = dm.add(b * BLOCK_SCALES);
            for (r, acc) in acc.iter().enumerate() {
                let dx = _mm256_set1_ps(*rows.xd[r].add(b));
                let xs = _mm256_set1_ps(*rows.xsum[r].add(b));
                for (h, a) in acc.iter().enumerate() {
                    let f = _mm256_cvtepi32_ps(_mm256_madd_epi16(*a, ones));
                    let d = _mm256_mul_ps(_mm256_loadu_ps(sc.add(8 * h)), dx);
                    let o = rows.out[r].add(8 * h);
                    let v = _mm256_fmadd_ps(d, f, _mm256_loadu_ps(o));
                    _mm256_storeu_ps(
                        o,
                        _mm256_fmadd_ps(_mm256_loadu_ps(sc.add(NR + 8 * h)), xs, v),
                    );
                }
            }
        }
    }
}

impl Avx2 {
    /// [`Q4Panels::dequantize`] compiled for this path's instructions.
    pub(in crate::model::kernels) fn q4_dequantize(
        self,
        w: &Q4Panels,
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
fn dequantize(w: &Q4Panels, ks: Range<usize>, panels: Range<usize>, dst: &mut [f32]) {
    w.dequantize_body(ks, panels, dst, |levels, d, m, out| {
        crate::model::kernels::q8::avx2::scale_steps(levels, d, m, out)
    })
}
