//! AVX2 + FMA micro-kernels over the same packed layout as the AVX-512F ones. The entry points
//! are safe methods of [`Avx2`], a token that exists only once the CPU has been seen to support
//! AVX2 and FMA; each checks the lengths it relies on before calling the intrinsics.
//!
//! 16 ymm registers hold half of what 32 zmm hold, so a register tile is at most 6 rows × 16
//! columns (12 accumulators): a caller's tile of up to 12 rows runs as row sub-tiles of at most
//! 6 (each reading its rows straight out of the packed block, whose rows lie `KU` floats apart in
//! every group), and each 32-column panel as two 16-column halves. Every output is still one
//! accumulator fed by one fused multiply-add per step of `k`, in the AVX-512F kernel's order, so
//! the two paths give bit-identical results.

#![deny(unsafe_op_in_unsafe_fn)]

use super::{packed_rows_len, part_start, Tile, KU, MR_MAX, NR};
use std::arch::x86_64::{
    __m256, __m256i, _mm256_add_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_loadu_si256,
    _mm256_maskload_ps, _mm256_maskstore_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    _mm_prefetch, _MM_HINT_T1,
};

/// Most rows of one AVX2 register tile.
const MR2: usize = 6;
/// Columns of one AVX2 register tile: half a panel, two 8-lane registers.
const HALF: usize = NR / 2;
/// `MASKS[8 - v..16 - v]` has its first `v` lanes set: the load/store mask for `v` valid lanes.
static MASKS: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

/// Proof that the running CPU supports AVX2 and FMA; only [`Avx2::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx2(());

impl Avx2 {
    /// The token, when the CPU (and OS) support AVX2 and FMA.
    pub(super) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Self(()))
    }

    /// Runs one register tile (see [`Tile`]) into the rows `c` (`c.len()` rows, 1..=MR_MAX), as
    /// row sub-tiles of at most 6 rows (sizes differing by at most one).
    pub(super) fn tile(self, t: &Tile<'_>, c: &mut [&mut [f32]]) {
        let (mr, kc, cols) = (c.len(), t.kc, t.cols);
        let panels = cols.div_ceil(NR);
        assert!((1..=MR_MAX).contains(&mr) && cols >= 1);
        assert!(t.a.len() >= packed_rows_len(mr, kc) && t.b.len() >= panels * kc * NR);
        let subs = mr.div_ceil(MR2);
        // The prefetch is spread evenly over the sub-tiles' panels.
        let mut pf = t.prefetch;
        let pf_per = pf.len().div_ceil(subs * panels);
        for s in 0..subs {
            let (r0, r1) = (part_start(s, mr, subs), part_start(s + 1, mr, subs));
            let rows = &mut c[r0..r1];
            macro_rules! dispatch {
                ($($r:literal)*) => {
                    match rows.len() {
                        $($r => self.sub_tile::<$r>(t, rows, r0, mr, &mut pf, pf_per),)*
                        r => unreachable!("sub-tile of {r} rows"),
                    }
                };
            }
            const { assert!(MR2 == 6) };
            dispatch!(1 2 3 4 5 6);
        }
    }

    /// Rows `r0 .. r0 + R` of a tile of `mr` rows (`c` holds those `R` rows), panel by panel,
    /// each panel as two halves; takes the panels' share of the prefetch from `pf`.
    #[inline(always)]
    fn sub_tile<const R: usize>(
        self,
        t: &Tile<'_>,
        c: &mut [&mut [f32]],
        r0: usize,
        mr: usize,
        pf: &mut &[f32],
        pf_per: usize,
    ) {
        const { assert!(R >= 1 && R <= MR2) };
        let (kc, col, cols) = (t.kc, t.col, t.cols);
        assert!(c.len() == R && r0 + R <= mr);
        let mut rows = c.iter_mut();
        let rows: [*mut f32; R] = std::array::from_fn(|_| {
            let row = rows.next().expect("R rows");
            row[col..col + cols].as_mut_ptr()
        });
        for j in 0..cols.div_ceil(NR) {
            let (now, later) = pf.split_at(pf_per.min(pf.len()));
            *pf = later;
            for h in 0..2 {
                let done = j * NR + h * HALF;
                if done >= cols {
                    break;
                }
                let now = if h == 0 { now } else { &[][..] };
                // SAFETY: the token proves AVX2 + FMA. `a` holds packed_rows_len(mr, kc) floats
                // (asserted in `tile`): row r0 + r of group g is at (g * mr + r0 + r) * KU, inside
                // it for r < R, r0 + R <= mr, g < ceil(kc / KU). Panel j of `b` holds kc * NR
                // floats (asserted in `tile`), and half h reads floats h * 16 .. h * 16 + 16 of
                // each of its kc steps. Each row pointer starts `cols` writable floats (sliced
                // above); the kernel touches floats done .. done + min(16, cols - done) of them.
                // The prefetched range is a live slice (and prefetches never fault anyway).
                unsafe {
                    let c: [*mut f32; R] = rows.map(|r| r.add(done));
                    tile_kernel::<R>(
                        t.a.as_ptr().add(r0 * KU),
                        mr * KU,
                        t.b.as_ptr().add(j * kc * NR + h * HALF),
                        kc,
                        c,
                        (cols - done).min(HALF),
                        t.accumulate,
                        (now.as_ptr(), now.len()),
                    )
                }
            }
        }
    }

    /// `out[j] (+)= Σ_p x[p] · b[p * NR + j]` for `j < out.len() <= NR`, `p < x.len()`, in two
    /// 16-column halves.
    pub(super) fn gemv_panel(self, x: &[f32], b: &[f32], out: &mut [f32], accumulate: bool) {
        let k = x.len();
        let cols = out.len();
        assert!(cols <= NR && b.len() >= k * NR);
        for h in 0..2 {
            let done = h * HALF;
            if done >= cols {
                break;
            }
            // SAFETY: the token proves AVX2 + FMA; `x` holds k and `b` k * NR floats (asserted
            // above), of which the kernel reads floats done .. done + 16 of each step; `out`
            // holds `cols` floats, of which it touches done .. done + min(16, cols - done).
            unsafe {
                gemv_kernel(
                    x.as_ptr(),
                    b.as_ptr().add(done),
                    k,
                    out.as_mut_ptr().add(done),
                    (cols - done).min(HALF),
                    accumulate,
                )
            }
        }
    }
}

/// One step of `k` for the whole register tile: two loads of `b` (a `*const f32` to 16 floats),
/// one broadcast of `a` per row (`a` at float `u` of the sub-tile's first row in a group, rows
/// `KU` floats apart). A macro so that it is always inlined into the `target_feature` function;
/// the caller's `unsafe` block must vouch for the pointers.
macro_rules! step {
    ($acc:ident, $a:expr, $b:expr) => {{
        let (a, b): (*const f32, *const f32) = ($a, $b);
        let (b0, b1) = (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)));
        for (r, acc) in $acc.iter_mut().enumerate() {
            let av = _mm256_set1_ps(*a.add(r * KU));
            acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
            acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
        }
    }};
}

/// Writes `v` (plus what `dst` holds, when `accumulate`) to the first `valid` floats of `dst`.
///
/// # Safety
/// AVX2 must be available; `dst` must be readable and writable for `valid` (1..=8) floats.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store8(dst: *mut f32, mut v: __m256, valid: usize, accumulate: bool) {
    debug_assert!((1..=8).contains(&valid));
    if valid == 8 {
        // SAFETY: 8 floats at `dst` (caller).
        unsafe {
            if accumulate {
                v = _mm256_add_ps(v, _mm256_loadu_ps(dst));
            }
            _mm256_storeu_ps(dst, v);
        }
    } else {
        // SAFETY: MASKS[8 - valid..16 - valid] is inside the table; the masked load and store
        // touch only the first `valid` floats at `dst` (masked-off lanes never fault).
        unsafe {
            let mask: __m256i = _mm256_loadu_si256(MASKS.as_ptr().add(8 - valid).cast());
            if accumulate {
                v = _mm256_add_ps(v, _mm256_maskload_ps(dst, mask));
            }
            _mm256_maskstore_ps(dst, mask, v);
        }
    }
}

/// The `R × 16` register tile: 2·R ymm accumulators; `k` unrolled by `KU`, matching the packed
/// layout of `a` (groups of `KU` steps `a_stride` floats apart, rows `KU` floats apart).
///
/// # Safety
/// AVX2 and FMA must be available; for every group `g < ceil(kc / KU)`, row `r < R` and
/// `u < KU`, `a + g * a_stride + r * KU + u` must be readable; `b + p * NR + 0..16` readable for
/// `p < kc`; each `c[r]` readable and writable for `valid` (1..=16) floats; `pf` = (start, length
/// in floats) of a range to prefetch.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_kernel<const R: usize>(
    a: *const f32,
    a_stride: usize,
    b: *const f32,
    kc: usize,
    c: [*mut f32; R],
    valid: usize,
    accumulate: bool,
    (pf, pf_len): (*const f32, usize),
) {
    /// Floats per cache line.
    const LINE: usize = 16;
    let mut acc: [[__m256; 2]; R] = [[_mm256_setzero_ps(); 2]; R];
    let groups = kc / KU;
    // Spread the prefetches evenly over the groups of k steps.
    let pf_step = pf_len.div_ceil(groups.max(1)).next_multiple_of(LINE);
    let mut pf_at = 0;
    for g in 0..groups {
        let pf_end = (pf_at + pf_step).min(pf_len);
        while pf_at < pf_end {
            // SAFETY: pf_at < pf_len: inside the range (a prefetch never faults regardless).
            unsafe { _mm_prefetch::<_MM_HINT_T1>(pf.add(pf_at).cast::<i8>()) };
            pf_at += LINE;
        }
        let (ag, bg) = (a.wrapping_add(g * a_stride), b.wrapping_add(g * KU * NR));
        // Unrolled by hand: the k steps of one group.
        macro_rules! group {
            ($($u:literal)*) => {$(
                // SAFETY: g < groups, u < KU: step g * KU + u < kc of `b`, and float u of
                // every row in group g of `a` (caller).
                unsafe { step!(acc, ag.add($u), bg.add($u * NR)) };
            )*};
        }
        const { assert!(KU == 8) };
        group!(0 1 2 3 4 5 6 7);
    }
    for u in 0..kc % KU {
        // SAFETY: the last, partial group: step groups * KU + u < kc.
        unsafe {
            step!(
                acc,
                a.add(groups * a_stride + u),
                b.add((groups * KU + u) * NR)
            )
        };
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: the caller vouched for `valid` floats at c[r]; the second register is stored
        // only when some of its lanes are valid.
        unsafe {
            store8(c[r], acc[0], valid.min(8), accumulate);
            if valid > 8 {
                store8(c[r].add(8), acc[1], valid - 8, accumulate);
            }
        }
    }
}

/// One row times 16 columns of one panel: four independent pairs of accumulators (k unrolled
/// by 4, the AVX-512F kernel's order) so the loop is bound by loads, not by the FMA latency.
///
/// # Safety
/// AVX2 and FMA must be available; `x` readable for `k` floats, `b + p * NR + 0..16` for
/// `p < k`; `out` readable and writable for `valid` (1..=16) floats.
#[target_feature(enable = "avx2,fma")]
unsafe fn gemv_kernel(
    x: *const f32,
    b: *const f32,
    k: usize,
    out: *mut f32,
    valid: usize,
    accumulate: bool,
) {
    const U: usize = 4;
    let mut acc = [[_mm256_setzero_ps(); 2]; U];
    let body = k / U * U;
    let mut p = 0;
    while p < body {
        for (u, acc) in acc.iter_mut().enumerate() {
            // SAFETY: p + u < k.
            let (xv, b0, b1) = unsafe {
                let bp = b.add((p + u) * NR);
                (
                    _mm256_set1_ps(*x.add(p + u)),
                    _mm256_loadu_ps(bp),
                    _mm256_loadu_ps(bp.add(8)),
                )
            };
            acc[0] = _mm256_fmadd_ps(xv, b0, acc[0]);
            acc[1] = _mm256_fmadd_ps(xv, b1, acc[1]);
        }
        p += U;
    }
    while p < k {
        // SAFETY: p < k.
        let (xv, b0, b1) = unsafe {
            let bp = b.add(p * NR);
            (
                _mm256_set1_ps(*x.add(p)),
                _mm256_loadu_ps(bp),
                _mm256_loadu_ps(bp.add(8)),
            )
        };
        acc[0][0] = _mm256_fmadd_ps(xv, b0, acc[0][0]);
        acc[0][1] = _mm256_fmadd_ps(xv, b1, acc[0][1]);
        p += 1;
    }
    let s0 = _mm256_add_ps(
        _mm256_add_ps(acc[0][0], acc[1][0]),
        _mm256_add_ps(acc[2][0], acc[3][0]),
    );
    let s1 = _mm256_add_ps(
        _mm256_add_ps(acc[0][1], acc[1][1]),
        _mm256_add_ps(acc[2][1], acc[3][1]),
    );
    // SAFETY: the caller vouched for `valid` floats at `out`; the second register is stored
    // only when some of its lanes are valid.
    unsafe {
        store8(out, s0, valid.min(8), accumulate);
        if valid > 8 {
            store8(out.add(8), s1, valid - 8, accumulate);
        }
    }
}
