//! 4-bit panels: the grids (Q4_1- and Q4_0-style blocks held exactly, others left to the wider
//! formats), the byte layout, and products on every supported path: few rows against an f64
//! reference over the rounded activations (and close to the exact product), paths identical,
//! rows independent of how many run together; many rows exact.

use super::*;
use crate::model::kernels::tests::values;
use crate::model::kernels::{KernelPath, PackedFormat, PackedLinear, Q4_ROWS_MAX};

/// A weight `[n, k]` dequantized from 4-bit blocks of 32 along each row: Q4_1-style
/// (`d·q + m`, both extremes present) or, with `symmetric`, Q4_0-style (`d·(q − 8)`).
fn on_grid(n: usize, k: usize, seed: u64, symmetric: bool) -> Vec<f32> {
    let r = values(n * k, seed);
    (0..n * k)
        .map(|i| {
            let (row, s) = (i / k, i % k);
            let block = (row * k.div_ceil(BK) + s / BK) as f32;
            let d = 0.01 + 0.001 * (block % 7.0);
            let q = match s % BK {
                0 => 0.0,
                1 if !symmetric => 15.0,
                _ => ((r[i] + 1.0) * 8.0).floor().min(15.0),
            };
            if symmetric {
                d * (q - 8.0)
            } else {
                d * q - 0.07 - 0.002 * (block % 5.0)
            }
        })
        .collect()
}

/// The weight packed as 4-bit panels for every path this CPU supports.
fn packs(w: &[f32], n: usize, k: usize) -> Vec<PackedLinear> {
    let lins: Vec<PackedLinear> = KernelPath::ALL
        .into_iter()
        .filter_map(|p| PackedLinear::pack_as(w, n, k, p, PackedFormat::Q4))
        .collect();
    assert_eq!(
        lins.iter().map(|l| l.path()).collect::<Vec<_>>(),
        KernelPath::supported()
    );
    assert!(lins.iter().all(|l| l.format() == PackedFormat::Q4));
    lins
}

/// One output of a product, in f64.
struct Want {
    /// `Σ w · dx · qx` (the weight on its own grid, the row rounded): what the kernel computes
    /// for few rows.
    rounded: f64,
    /// `Σ x · w`.
    exact: f64,
    /// `Σ |x · w|`, the size of the terms.
    mag: f64,
    /// The most rounding `x` can move the product: half a level of `x` per weight.
    bound: f64,
}

/// The `[m, n]` outputs of `x · wᵀ` (`w` on a 16-level grid).
fn reference(w: &[f32], x: &[f32], n: usize, k: usize, m: usize) -> Vec<Want> {
    let panels = Q4Panels::quantize(w, n, k).expect("on a 16-level grid");
    let xr = QuantizedRows::new(x, m, k);
    let blocks = k.div_ceil(BK);
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let (q, dm) = panels.panel(j / NR);
            let mut want = Want {
                rounded: 0.0,
                exact: 0.0,
                mag: 0.0,
                bound: 0.0,
            };
            for s in 0..k {
                let (b, c) = (s / BK, j % NR);
                let (byte, shift) = Q4Panels::position(s % BK, c);
                let level = f64::from((q[b * BLOCK_BYTES + byte] >> shift) & 0x0F);
                let (xq, dx) = (
                    f64::from(xr.q[(i * blocks + b) * BK + s % BK]),
                    f64::from(xr.d[i * blocks + b]),
                );
                let (d, mn) = (
                    f64::from(dm[b * BLOCK_SCALES + c]),
                    f64::from(dm[b * BLOCK_SCALES + NR + c]),
                );
                let (xv, wv) = (f64::from(x[i * k + s]), f64::from(w[j * k + s]));
                want.rounded += (d * level + mn) * dx * xq;
                want.exact += xv * wv;
                want.mag += (xv * wv).abs();
                want.bound += wv.abs() * dx / 2.0;
            }
            out.push(want);
        }
    }
    out
}

fn forward(lin: &PackedLinear, x: &[f32], m: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; m * lin.n() + 1];
    lin.forward(x, m, &mut out);
    assert!(out[m * lin.n()].is_nan(), "wrote past m * n");
    out.truncate(m * lin.n());
    out
}

#[test]
fn grids_hold_q4_blocks_and_refuse_the_rest() {
    for symmetric in [false, true] {
        let (n, k) = (33, 70);
        let w = on_grid(n, k, 3, symmetric);
        let q = Q4Panels::quantize(&w, n, k).expect("on a 16-level grid");
        let mut row = vec![f32::NAN; k + 1];
        for j in [0, 15, 16, 31, 32] {
            q.row(j, &mut row);
            for (s, (&got, &want)) in row.iter().zip(&w[j * k..(j + 1) * k]).enumerate() {
                assert!((got - want).abs() <= 1e-6, "[{j},{s}] {got} vs {want}");
            }
            assert!(row[k].is_nan(), "wrote past k");
        }
        assert_eq!(
            q.bytes(),
            2 * k.div_ceil(BK) * (BLOCK_BYTES + BLOCK_SCALES * 4)
        );
    }
    // 255 levels: not 4-bit; packed as 8-bit panels instead. Random values: f32.
    let (n, k) = (8, 64);
    let w: Vec<f32> = (0..n * k)
        .map(|i| match i % BK {
            0 => -1.0,
            1 => 1.55,
            s => -1.0 + 0.01 * ((s * 37) % 256) as f32,
        })
        .collect();
    assert!(Q4Panels::quantize(&w, n, k).is_none());
    let lin = PackedLinear::pack_as(&w, n, k, KernelPath::Portable, PackedFormat::Q4).unwrap();
    assert_eq!(lin.format(), PackedFormat::Q8);
    let w = values(n * k, 5);
    let lin = PackedLinear::pack_as(&w, n, k, KernelPath::Portable, PackedFormat::Q4).unwrap();
    assert_eq!(lin.format(), PackedFormat::F32);
}

#[test]
fn layout_puts_four_steps_of_a_column_in_one_lane() {
    let mut qb = [0u8; BLOCK_BYTES];
    for s in 0..BK {
        for j in 0..NR {
            let (byte, shift) = Q4Panels::position(s, j);
            qb[byte] |= (((s + j) % 16) as u8) << shift;
        }
    }
    // Step 4g + t of column c < 16 is the low half of byte 64g + 4c + t.
    assert_eq!(Q4Panels::position(5, 3), (64 + 12 + 1, 0));
    assert_eq!(Q4Panels::position(5, 19), (64 + 12 + 1, 4));
    let mut levels = [0u8; BK * NR];
    Q4Panels::unpack_block(&qb, &mut levels);
    for s in 0..BK {
        for j in 0..NR {
            assert_eq!(
                levels[s * NR + j] as usize,
                (s + j) % 16,
                "step {s} column {j}"
            );
        }
    }
}

#[test]
fn few_rows_sum_the_rounded_activations_on_every_path() {
    for symmetric in [false, true] {
        for &n in &[1, 17, 32, 33, 100] {
            for &k in &[1, 7, 31, 32, 33, 193, 577] {
                let w = on_grid(n, k, (n * 1000 + k) as u64, symmetric);
                let lins = packs(&w, n, k);
                for m in [1, 2, 3, 7, 13, Q4_ROWS_MAX] {
                    let x = values(m * k, (m * 7 + n) as u64);
                    let want = reference(&w, &x, n, k, m);
                    let outs: Vec<Vec<f32>> = lins.iter().map(|l| forward(l, &x, m)).collect();
                    for (lin, out) in lins.iter().zip(&outs) {
                        for (i, (&got, want)) in out.iter().zip(&want).enumerate() {
                            let got = f64::from(got);
                            assert!(
                                (got - want.rounded).abs() <= 1e-5 * want.mag + 1e-30,
                                "{} m={m} n={n} k={k} at {i}: {got} vs {}",
                                lin.path(),
                                want.rounded
                            );
                            // Rounding x moves a product by at most half a level per weight.
                            assert!(
                                (got - want.exact).abs() <= want.bound + 1e-5 * want.mag + 1e-30,
                                "{got} vs exact {}",
                                want.exact
                            );
                        }
                    }
                    // The SIMD paths give the same bits (same integer sums, same scaling).
                    let simd: Vec<&Vec<f32>> = lins
                        .iter()
                        .zip(&outs)
                        .filter(|(l, _)| l.path() != KernelPath::Portable)
                        .map(|(_, o)| o)
                        .collect();
                    for o in &simd {
                        assert_eq!(*o, simd[0], "m={m} n={n} k={k}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_row_gives_the_same_bits_alone_or_with_others() {
    let (n, k) = (100, 193);
    let w = on_grid(n, k, 9, false);
    for lin in packs(&w, n, k) {
        let m = 13;
        let x = values(m * k, 4);
        let together = forward(&lin, &x, m);
        for i in [0, 5, 12] {
            let alone = forward(&lin, &x[i * k..(i + 1) * k], 1);
            assert_eq!(
                alone,
                together[i * n..(i + 1) * n],
                "{} row {i}",
                lin.path()
            );
        }
    }
}

#[test]
fn model_shapes_in_pools_and_many_rows_exact() {
    for &(n, k) in &[(576, 576), (192, 576), (1536, 576), (576, 1536)] {
        let w = on_grid(n, k, (n + k) as u64, false);
        let lins = packs(&w, n, k);
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            for lin in &lins {
                for m in [1, 9, Q4_ROWS_MAX + 1, 200] {
                    let x = values(m * k, (m + threads) as u64);
                    let out = pool.install(|| forward(lin, &x, m));
                    // Up to Q4_ROWS_MAX rows: rounded activations; beyond: exact (f32 kernel).
                    for (&got, want) in out.iter().zip(reference(&w, &x, n, k, m)) {
                        let (r, tol) = if m <= Q4_ROWS_MAX {
                            (want.rounded, 1e-5)
                        } else {
                            (want.exact, 1e-4)
                        };
                        assert!(
                            (f64::from(got) - r).abs() <= tol * want.mag + 1e-30,
                            "{} m={m} {n}x{k}: {got} vs {r}",
                            lin.path()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn non_finite_activations_give_non_finite_outputs() {
    let (n, k) = (32, 64);
    let w = on_grid(n, k, 2, false);
    for lin in packs(&w, n, k) {
        let mut x = values(2 * k, 1);
        x[k + 40] = f32::INFINITY;
        let out = forward(&lin, &x, 2);
        assert!(out[..n].iter().all(|v| v.is_finite()), "{}", lin.path());
        assert!(out[n..].iter().all(|v| !v.is_finite()), "{}", lin.path());
    }
}

#[test]
fn activation_levels_round_to_nearest() {
    for (v, want) in [
        (0.0, 0),
        (0.49, 0),
        (0.51, 1),
        (-0.51, -1),
        (1.5, 2),
        (2.5, 2),
        (126.6, 127),
        (127.0, 127),
        (-127.0, -127),
        (127.4, 127),
    ] {
        assert_eq!(round_level(v), want, "{v}");
    }
    let x: Vec<f32> = values(64, 3).iter().map(|v| v * 5.0).collect();
    let r = QuantizedRows::new(&x, 1, 64);
    for (b, block) in x.chunks(BK).enumerate() {
        let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert_eq!(r.d[b], amax / 127.0);
        for (s, &v) in block.iter().enumerate() {
            let level = r.q[b * BK + s];
            assert!(
                (f32::from(level) * r.d[b] - v).abs() <= r.d[b] * 0.5001,
                "{v} → {level}"
            );
        }
        let levels: i32 = r.q[b * BK..(b + 1) * BK]
            .iter()
            .map(|&l| i32::from(l))
            .sum();
        assert_eq!(r.sum[b], r.d[b] * levels as f32);
    }
}

#[test]
fn q4_is_smaller_than_q8() {
    let (n, k) = (64, 96);
    let w = on_grid(n, k, 1, false);
    let q8 = PackedLinear::pack_as(&w, n, k, KernelPath::Portable, PackedFormat::Q8).unwrap();
    let q4 = PackedLinear::pack_as(&w, n, k, KernelPath::Portable, PackedFormat::Q4).unwrap();
    assert_eq!(q4.bytes(), n * k / 2 + n * k.div_ceil(BK) * 8);
    assert!(q4.bytes() * 5 <= q8.bytes() * 3);
}
