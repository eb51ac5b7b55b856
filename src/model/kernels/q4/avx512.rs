//! AVX-512 kernel for 4-bit panels: per group of 4 steps, a panel's 128 levels unpacked into
//! two registers once and multiplied into every row with `vpdpbusd` (AVX-512 VNNI: levels ×
//! 8-bit activations summed four at a time into 32-bit lanes), up to 12 rows at a time. CPUs
//! with AVX-512F but without VNNI or BW run the AVX2 kernel (same sums, same results).

#![deny(unsafe_op_in_unsafe_fn)]

use super::avx2::Rows;
use super::{check_rows, Q4Panels, BK, BLOCK_BYTES, BLOCK_SCALES, GROUP, GROUP_BYTES};
use crate::model::kernels::avx2::Avx2;
use crate::model::kernels::avx512::Avx512;
use crate::model::kernels::{part_start, NR};
use std::arch::x86_64::{
    __m512i, _mm512_and_si512, _mm512_cvtepi32_ps, _mm512_dpbusd_epi32, _mm512_fmadd_ps,
    _mm512_loadu_ps, _mm512_loadu_si512, _mm512_mul_ps, _mm512_set1_epi32, _mm512_set1_epi8,
    _mm512_set1_ps, _mm512_setzero_si512, _mm512_srli_epi16, _mm512_storeu_ps,
};
use std::ops::Range;
use std::sync::OnceLock;

/// Most rows of one register tile (2 accumulators each).
const R5: usize = 12;

/// `true` when the CPU has the AVX-512 integer extensions this kernel uses (BW, VNNI).
fn has_vnni() -> bool {
    static VNNI: OnceLock<bool> = OnceLock::new();
    *VNNI.get_or_init(|| {
        is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni")
    })
}

impl Avx512 {
    /// `out[r][j] += Σ_b dx_rb · Σ_s (d_j · q_sj + m_j) · qx_rs` for one panel and the
    /// `out.len()` rows of rounded activations, in groups of at most 12 rows.
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
        if !has_vnni() {
            return match Avx2::detect() {
                Some(avx2) => avx2.q4_rows(xq, xd, xsum, blocks, q, dm, out),
                None => super::portable::rows(xq, xd, xsum, blocks, q, dm, out),
            };
        }
        let mr = out.len();
        check_rows(xq, xd, xsum, blocks, q, dm, mr);
        let groups = mr.div_ceil(R5);
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
                            // SAFETY: the token proves AVX-512F, has_vnni() BW and VNNI. Rows
                            // r0 + i < mr hold blocks * BK levels and `blocks` scales and sums
                            // (check_rows); `q` and `dm` hold `blocks` whole blocks of one
                            // panel; each `out` row is NR floats.
                            unsafe { panel::<$r>(rows, blocks, q.as_ptr(), dm.as_ptr()) }
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

/// `R` rows × 32 columns over `blocks` blocks.
///
/// # Safety
/// AVX-512F, BW and VNNI must be available; each row's `xq` readable for `blocks * BK` levels
/// and `xd`, `xsum` for `blocks` floats; `q` readable for `blocks * BLOCK_BYTES` bytes and `dm`
/// for `blocks * BLOCK_SCALES` floats; each `out` row readable and writable for `NR` floats.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn panel<const R: usize>(rows: Rows<R>, blocks: usize, q: *const u8, dm: *const f32) {
    let low = _mm512_set1_epi8(0x0F);
    for b in 0..blocks {
        let mut acc = [[_mm512_setzero_si512(); 2]; R];
        for g in 0..BK / GROUP {
            // SAFETY: group g of block b lies inside the panel's blocks (caller).
            let v = unsafe {
                _mm512_loadu_si512(q.add(b * BLOCK_BYTES + g * GROUP_BYTES).cast::<__m512i>())
            };
            // Columns 0–15 (low halves) and 16–31 (high halves), 4 steps each.
            let (lo, hi) = (
                _mm512_and_si512(v, low),
                _mm512_and_si512(_mm512_srli_epi16::<4>(v), low),
            );
            for (acc, xq) in acc.iter_mut().zip(&rows.xq) {
                // SAFETY: steps 4g..4g + 4 of block b of the row (caller).
                let x4 = unsafe { xq.add(b * BK + g * GROUP).cast::<i32>().read_unaligned() };
                let xb = _mm512_set1_epi32(x4);
                acc[0] = _mm512_dpbusd_epi32(acc[0], lo, xb);
                acc[1] = _mm512_dpbusd_epi32(acc[1], hi, xb);
            }
        }
        // SAFETY: scales of block b (caller); each row's scale, sum and NR outputs (caller).
        unsafe {
            let sc = dm.add(b * BLOCK_SCALES);
            for (r, acc) in acc.iter().enumerate() {
                let dx = _mm512_set1_ps(*rows.xd[r].add(b));
                let xs = _mm512_set1_ps(*rows.xsum[r].add(b));
                for (h, a) in acc.iter().enumerate() {
                    let f = _mm512_cvtepi32_ps(*a);
                    let d = _mm512_mul_ps(_mm512_loadu_ps(sc.add(16 * h)), dx);
                    let o = rows.out[r].add(16 * h);
                    let v = _mm512_fmadd_ps(d, f, _mm512_loadu_ps(o));
                    _mm512_storeu_ps(
                        o,
                        _mm512_fmadd_ps(_mm512_loadu_ps(sc.add(NR + 16 * h)), xs, v),
                    );
                }
            }
        }
    }
}

impl Avx512 {
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
#[target_feature(enable = "avx512f")]
fn dequantize(w: &Q4Panels, ks: Range<usize>, panels: Range<usize>, dst: &mut [f32]) {
    w.dequantize_body(ks, panels, dst, |levels, d, m, out| {
        crate::model::kernels::q8::avx512::scale_steps(levels, d, m, out)
    })
}
