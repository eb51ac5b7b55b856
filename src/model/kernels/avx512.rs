//! AVX-512F micro-kernels. Everything `unsafe` in the kernels module lives here: the entry
//! points are safe methods of [`Avx512`], a token that exists only once the CPU has been seen to
//! support AVX-512F, and each checks the lengths it relies on before calling the intrinsics.

#![deny(unsafe_op_in_unsafe_fn)]

use super::{packed_rows_len, Tile, KU, MR_MAX, NR};
use std::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask_storeu_ps,
    _mm512_maskz_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm_prefetch, _MM_HINT_T1,
};

/// Proof that the running CPU supports AVX-512F; only [`Avx512::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx512(());

/// Store masks for the two 16-lane halves of an `NR`-wide column group with `cols` valid lanes.
fn masks(cols: usize) -> (u16, u16) {
    let half = |c: usize| if c >= 16 { u16::MAX } else { (1u16 << c) - 1 };
    (half(cols), half(cols.saturating_sub(16)))
}

impl Avx512 {
    /// The token, when the CPU (and OS) support AVX-512F.
    pub(super) fn detect() -> Option<Self> {
        is_x86_feature_detected!("avx512f").then_some(Self(()))
    }

    /// Runs one register tile (see [`Tile`]) into the rows `c` (`c.len()` rows, 1..=MR_MAX).
    pub(super) fn tile(self, t: &Tile<'_>, c: &mut [&mut [f32]]) {
        macro_rules! dispatch {
            ($($mr:literal)*) => {
                match c.len() {
                    $($mr => self.tile_mr::<$mr>(t, c),)*
                    mr => panic!("tile of {mr} rows (1..={MR_MAX} supported)"),
                }
            };
        }
        dispatch!(1 2 3 4 5 6 7 8 9 10 11 12);
    }

    /// [`Avx512::tile`] for `MR` rows: checks the slices once, then runs the kernel panel by
    /// panel (each panel's share of the prefetch with it).
    #[inline(always)]
    fn tile_mr<const MR: usize>(self, t: &Tile<'_>, c: &mut [&mut [f32]]) {
        const { assert!(MR >= 1 && MR <= MR_MAX) };
        let (kc, col, cols) = (t.kc, t.col, t.cols);
        let panels = cols.div_ceil(NR);
        assert!(c.len() == MR && cols >= 1);
        assert!(t.a.len() >= packed_rows_len(MR, kc) && t.b.len() >= panels * kc * NR);
        let mut rows = c.iter_mut();
        let rows: [*mut f32; MR] = std::array::from_fn(|_| {
            let row = rows.next().expect("MR rows");
            row[col..col + cols].as_mut_ptr()
        });
        let mut pf = t.prefetch;
        // The prefetch is spread evenly over the panels.
        let pf_per = pf.len().div_ceil(panels);
        for j in 0..panels {
            let (m0, m1) = masks(NR.min(cols - j * NR));
            let (now, later) = pf.split_at(pf_per.min(pf.len()));
            pf = later;
            // SAFETY: the token proves AVX-512F; `a` holds the packed kc × MR block and panel
            // j of `b` kc * NR floats (asserted above); each row pointer starts `cols`
            // writable floats (sliced above), of which the masks select the panel's; the
            // prefetched range is a live slice (and prefetches never fault anyway).
            unsafe {
                let c: [*mut f32; MR] = rows.map(|r| r.add(j * NR));
                let b = t.b.as_ptr().add(j * kc * NR);
                let pf = (now.as_ptr(), now.len());
                tile_kernel::<MR>(t.a.as_ptr(), b, kc, c, (m0, m1), t.accumulate, pf)
            }
        }
    }

    /// `out[j] (+)= Σ_p x[p] · b[p * NR + j]` for `j < out.len() <= NR`, `p < x.len()`.
    pub(super) fn gemv_panel(self, x: &[f32], b: &[f32], out: &mut [f32], accumulate: bool) {
        let k = x.len();
        let cols = out.len();
        assert!(cols <= NR && b.len() >= k * NR);
        if cols == 0 {
            return;
        }
        let (m0, m1) = masks(cols);
        // SAFETY: the token proves AVX-512F; `x` holds k and `b` k * NR floats (asserted above);
        // the masks limit the loads and stores to the `cols` floats of `out`.
        unsafe {
            gemv_kernel(
                x.as_ptr(),
                b.as_ptr(),
                k,
                out.as_mut_ptr(),
                (m0, m1),
                accumulate,
            )
        }
    }
}

/// One step of `k` for the whole register tile: two loads of `b` (a `*const f32` to `NR`
/// floats), one broadcast of `a` per row (`a` at float `u` of row 0 of a group, rows `KU`
/// floats apart). A macro so that it is always inlined into the `target_feature` function;
/// the caller's `unsafe` block must vouch for the pointers.
macro_rules! step {
    ($acc:ident, $a:expr, $b:expr) => {{
        let (a, b): (*const f32, *const f32) = ($a, $b);
        let (b0, b1) = (_mm512_loadu_ps(b), _mm512_loadu_ps(b.add(16)));
        for (r, acc) in $acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a.add(r * KU));
            acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
            acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
        }
    }};
}

/// The `MR × NR` register tile: 2·MR zmm accumulators; `k` unrolled by `KU`, matching the
/// packed layout of `a` (groups of `KU` steps, `MR × KU` floats each, row-major).
///
/// # Safety
/// AVX-512F must be available; `a` must be readable for `packed_rows_len(MR, kc)` floats, `b`
/// for `kc * NR`; each `c[r]` must be readable and writable on the lanes set in `m0` (floats
/// 0..16) and `m1` (floats 16..32); `pf` = (start, length in floats) of a range to prefetch.
#[target_feature(enable = "avx512f")]
unsafe fn tile_kernel<const MR: usize>(
    a: *const f32,
    b: *const f32,
    kc: usize,
    c: [*mut f32; MR],
    (m0, m1): (u16, u16),
    accumulate: bool,
    (pf, pf_len): (*const f32, usize),
) {
    /// Floats per cache line.
    const LINE: usize = 16;
    let mut acc: [[__m512; 2]; MR] = [[_mm512_setzero_ps(); 2]; MR];
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
        let (ag, bg) = (a.wrapping_add(g * MR * KU), b.wrapping_add(g * KU * NR));
        // Unrolled by hand: the k steps of one group.
        macro_rules! group {
            ($($u:literal)*) => {$(
                // SAFETY: g < groups, u < KU: step g * KU + u < kc of `b`, and float u of
                // every row in group g of `a` (inside packed_rows_len).
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
                a.add(groups * MR * KU + u),
                b.add((groups * KU + u) * NR)
            )
        };
    }
    for (r, acc) in acc.iter().enumerate() {
        let (mut v0, mut v1) = (acc[0], acc[1]);
        // SAFETY: masked loads and stores touch only the lanes the caller vouched for; the
        // second half is used only when some of its lanes are valid (then the row has > 16).
        unsafe {
            let cr = c[r];
            if accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
            }
            _mm512_mask_storeu_ps(cr, m0, v0);
            if m1 != 0 {
                if accumulate {
                    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr.add(16)));
                }
                _mm512_mask_storeu_ps(cr.add(16), m1, v1);
            }
        }
    }
}

/// One row times one panel: four independent pairs of accumulators (k unrolled by 4) so the
/// loop is bound by loads, not by the FMA latency.
///
/// # Safety
/// AVX-512F must be available; `x` readable for `k` floats, `b` for `k * NR`; `out` readable
/// and writable on the lanes set in `m0` / `m1` (`m1 != 0` only when `out` has more than 16
/// floats).
#[target_feature(enable = "avx512f")]
unsafe fn gemv_kernel(
    x: *const f32,
    b: *const f32,
    k: usize,
    out: *mut f32,
    (m0, m1): (u16, u16),
    accumulate: bool,
) {
    const U: usize = 4;
    let mut acc = [[_mm512_setzero_ps(); 2]; U];
    let body = k / U * U;
    let mut p = 0;
    while p < body {
        for (u, acc) in acc.iter_mut().enumerate() {
            // SAFETY: p + u < k.
            let (xv, b0, b1) = unsafe {
                let bp = b.add((p + u) * NR);
                (
                    _mm512_set1_ps(*x.add(p + u)),
                    _mm512_loadu_ps(bp),
                    _mm512_loadu_ps(bp.add(16)),
                )
            };
            acc[0] = _mm512_fmadd_ps(xv, b0, acc[0]);
            acc[1] = _mm512_fmadd_ps(xv, b1, acc[1]);
        }
        p += U;
    }
    while p < k {
        // SAFETY: p < k.
        let (xv, b0, b1) = unsafe {
            let bp = b.add(p * NR);
            (
                _mm512_set1_ps(*x.add(p)),
                _mm512_loadu_ps(bp),
                _mm512_loadu_ps(bp.add(16)),
            )
        };
        acc[0][0] = _mm512_fmadd_ps(xv, b0, acc[0][0]);
        acc[0][1] = _mm512_fmadd_ps(xv, b1, acc[0][1]);
        p += 1;
    }
    let mut s0 = _mm512_add_ps(
        _mm512_add_ps(acc[0][0], acc[1][0]),
        _mm512_add_ps(acc[2][0], acc[3][0]),
    );
    let mut s1 = _mm512_add_ps(
        _mm512_add_ps(acc[0][1], acc[1][1]),
        _mm512_add_ps(acc[2][1], acc[3][1]),
    );
    // SAFETY: masked loads and stores touch only the lanes the caller vouched for.
    unsafe {
        if accumulate {
            s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(m0, out));
        }
        _mm512_mask_storeu_ps(out, m0, s0);
        if m1 != 0 {
            if accumulate {
                s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(m1, out.add(16)));
            }
            _mm512_mask_storeu_ps(out.add(16), m1, s1);
        }
    }
}
