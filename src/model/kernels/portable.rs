//! Plain-Rust micro-kernels over the packed layout, for CPUs without AVX2 or AVX-512F (and
//! aarch64). Written so the compiler vectorises them for the build's baseline target: register
//! tiles of fixed size (const generics, arrays), inner loops without bounds checks.
//!
//! Each output is one accumulator summed in the SIMD kernels' order, but with a separate
//! multiply and add (Rust does not fuse them, and `mul_add` is a library call where the target has
//! no FMA), so results differ from the SIMD paths by rounding only.

use super::{packed_rows_len, part_start, Tile, KU, MR_MAX, NR};

/// Most rows of one register tile.
const PR: usize = 6;
/// Columns of one register tile: 6 rows × 8 columns is 12 of SSE2's 16 registers.
#[cfg(target_arch = "x86_64")]
const PW: usize = 8;
/// Columns of one register tile: 6 rows × 16 columns is 24 of NEON's 32 registers.
#[cfg(not(target_arch = "x86_64"))]
const PW: usize = 16;
const _: () = assert!(NR.is_multiple_of(PW));

/// Runs one register tile (see [`Tile`]) into the rows `c` (`c.len()` rows, 1..=MR_MAX), as
/// row sub-tiles of at most `PR` rows; the prefetch hint is ignored.
pub(super) fn tile(t: &Tile<'_>, c: &mut [&mut [f32]]) {
    let (mr, kc, cols) = (c.len(), t.kc, t.cols);
    assert!((1..=MR_MAX).contains(&mr) && cols >= 1);
    assert!(t.a.len() >= packed_rows_len(mr, kc) && t.b.len() >= cols.div_ceil(NR) * kc * NR);
    let subs = mr.div_ceil(PR);
    for s in 0..subs {
        let (r0, r1) = (part_start(s, mr, subs), part_start(s + 1, mr, subs));
        let rows = &mut c[r0..r1];
        macro_rules! dispatch {
            ($($r:literal)*) => {
                match rows.len() {
                    $($r => sub_tile::<$r>(t, rows, r0, mr),)*
                    r => unreachable!("sub-tile of {r} rows"),
                }
            };
        }
        const { assert!(PR == 6) };
        dispatch!(1 2 3 4 5 6);
    }
}

/// Rows `r0 .. r0 + R` of a tile of `mr` rows (`c` holds those `R` rows), `PW` columns at a time.
#[inline(always)]
fn sub_tile<const R: usize>(t: &Tile<'_>, c: &mut [&mut [f32]], r0: usize, mr: usize) {
    let (kc, col, cols) = (t.kc, t.col, t.cols);
    assert!(c.len() == R && r0 + R <= mr);
    let a_stride = mr * KU;
    for (j, panel) in
        t.b.chunks_exact(kc * NR)
            .take(cols.div_ceil(NR))
            .enumerate()
    {
        for w0 in (0..NR).step_by(PW) {
            let done = j * NR + w0;
            if done >= cols {
                break;
            }
            let mut acc = [[0.0f32; PW]; R];
            for g in 0..kc.div_ceil(KU) {
                let steps = (kc - g * KU).min(KU);
                // This group's values of the sub-tile's rows, and its steps of the panel.
                let ag: [[f32; KU]; R] = std::array::from_fn(|r| {
                    let at = g * a_stride + (r0 + r) * KU;
                    t.a[at..at + KU].try_into().expect("KU values")
                });
                let bg = &panel[g * KU * NR..g * KU * NR + steps * NR];
                for u in 0..steps {
                    let bu: [f32; PW] = bg[u * NR + w0..u * NR + w0 + PW]
                        .try_into()
                        .expect("PW columns");
                    for r in 0..R {
                        let av = ag[r][u % KU];
                        for l in 0..PW {
                            acc[r][l] += av * bu[l];
                        }
                    }
                }
            }
            let valid = (cols - done).min(PW);
            for (row, acc) in c.iter_mut().zip(&acc) {
                let dst = &mut row[col + done..col + done + valid];
                if t.accumulate {
                    dst.iter_mut().zip(acc).for_each(|(d, s)| *d += s);
                } else {
                    dst.copy_from_slice(&acc[..valid]);
                }
            }
        }
    }
}

/// `out[j] (+)= Σ_p x[p] · b[p * NR + j]` for `j < out.len() <= NR`, `p < x.len()`: four
/// interleaved accumulators per column, summed as the SIMD kernels sum them.
pub(super) fn gemv_panel(x: &[f32], b: &[f32], out: &mut [f32], accumulate: bool) {
    const U: usize = 4;
    let (k, cols) = (x.len(), out.len());
    assert!(cols <= NR && b.len() >= k * NR);
    let b = &b[..k * NR];
    let body = k / U * U;
    for w0 in (0..cols).step_by(PW) {
        let mut acc = [[0.0f32; PW]; U];
        for (xs, bs) in x[..body].chunks_exact(U).zip(b.chunks_exact(U * NR)) {
            for (u, acc) in acc.iter_mut().enumerate() {
                let bu: &[f32; PW] = bs[u * NR + w0..u * NR + w0 + PW]
                    .try_into()
                    .expect("PW columns");
                for (s, &bv) in acc.iter_mut().zip(bu) {
                    *s += xs[u] * bv;
                }
            }
        }
        for (&xv, bp) in x[body..].iter().zip(b[body * NR..].chunks_exact(NR)) {
            for (s, &bv) in acc[0].iter_mut().zip(&bp[w0..w0 + PW]) {
                *s += xv * bv;
            }
        }
        let valid = (cols - w0).min(PW);
        for (l, o) in out[w0..w0 + valid].iter_mut().enumerate() {
            let s = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
            *o = if accumulate { s + *o } else { s };
        }
    }
}
