//! 8-bit panels: the grids (exact on Q4_1- and Q8_0-style blocks, refused otherwise), and
//! products on every supported path (few rows read directly, many rows dequantized into the f32 kernel)
//! against an f64 reference over the dequantized values, on odd sizes and several pools.

use super::*;
use crate::model::kernels::tests::values;
use crate::model::kernels::{KernelPath, PackedFormat, PackedLinear, Q8_ROWS_MAX};

/// A weight `[n, k]` dequantized from Q4_1-style blocks of 32 along each row (`d·q + m`, `q <
/// 16`, both extremes present), the form the 8-bit grid holds exactly.
fn on_grid(n: usize, k: usize, seed: u64) -> Vec<f32> {
    let r = values(n * k, seed);
    (0..n * k)
        .map(|i| {
            let (row, s) = (i / k, i % k);
            let block = (row * k.div_ceil(BK) + s / BK) as f32;
            let (d, m) = (0.01 + 0.001 * (block % 7.0), -0.07 - 0.002 * (block % 5.0));
            let q = match s % BK {
                0 => 0.0,
                1 => 15.0,
                _ => ((r[i] + 1.0) * 8.0).floor().min(15.0),
            };
            d * q + m
        })
        .collect()
}

/// Every value of the packed weight, dequantized (`[n, k]`, row-major).
fn dequantized(q: &Q8Panels) -> Vec<f32> {
    let (n, k) = (q.n, q.k);
    let panels = n.div_ceil(NR);
    let mut f = vec![f32::NAN; panels * k * NR];
    q.dequantize(Isa::Portable, 0..k, 0..panels, &mut f);
    let mut w = vec![0.0; n * k];
    for j in 0..n {
        for p in 0..k {
            w[j * k + p] = f[(j / NR) * k * NR + p * NR + j % NR];
        }
    }
    w
}

#[test]
fn values_off_the_grid_stay_f32() {
    // Random f32 values are on no 255-level grid: no 8-bit panels, the f32 layout instead.
    for &(n, k) in &[(1, 5), (33, 31), (40, 33)] {
        let w = values(n * k, (n + 7 * k) as u64);
        assert!(Q8Panels::quantize(&w, n, k).is_none(), "{n}x{k}");
        for p in KernelPath::supported() {
            let lin = PackedLinear::pack_as(&w, n, k, p, PackedFormat::Q8).unwrap();
            assert_eq!(lin.format(), PackedFormat::F32);
        }
    }
    // One block off the grid is enough.
    let (n, k) = (3, 64);
    let mut w = on_grid(n, k, 4);
    assert!(Q8Panels::quantize(&w, n, k).is_some());
    w[2 * k + 40] += 0.003;
    assert!(Q8Panels::quantize(&w, n, k).is_none());
}

#[test]
fn q4_1_blocks_are_exact() {
    // Q4_1 blocks (w = d·q + m, q < 16, both extremes present as llama.cpp's quantizer makes
    // them) land on the grid at 17·q: the values come back to f32 rounding.
    let (n, k) = (3, 64);
    let levels = values(n * k, 11);
    let mut w = vec![0.0f32; n * k];
    for (i, v) in w.iter_mut().enumerate() {
        let (row_block, s) = (i / BK, i % BK);
        let (d, m) = (0.01 + 0.003 * row_block as f32, -0.05 * row_block as f32);
        let q = match s {
            0 => 0,
            1 => 15,
            _ => ((levels[i] + 1.0) * 8.0).floor().min(15.0) as u32,
        };
        *v = d * q as f32 + m;
    }
    let back = dequantized(&Q8Panels::quantize(&w, n, k).expect("on the grid"));
    for (i, (&got, &want)) in back.iter().zip(&w).enumerate() {
        assert!(
            (got - want).abs() <= 4.0 * f32::EPSILON * (1.0 + want.abs()),
            "{i}: {got} vs {want}"
        );
    }
}

#[test]
fn q8_0_blocks_are_exact() {
    // Q8_0 blocks (w = d·q, |q| ≤ 127, the largest |q| at 127, as llama.cpp's quantizer makes
    // them) land on the symmetric grid at q + 128: back to f32 rounding of d·(q + 128) − 128·d.
    let (n, k) = (2, 96);
    let levels = values(n * k, 12);
    let mut w = vec![0.0f32; n * k];
    for (i, v) in w.iter_mut().enumerate() {
        let d = 0.002 + 0.001 * (i / BK) as f32;
        let q = if i % BK == 3 {
            -127.0
        } else {
            (levels[i] * 127.0).round()
        };
        *v = d * q;
    }
    let back = dequantized(&Q8Panels::quantize(&w, n, k).expect("on the grid"));
    for (i, (&got, &want)) in back.iter().zip(&w).enumerate() {
        let d = 0.002 + 0.001 * (i / BK) as f32;
        assert!(
            (got - want).abs() <= 256.0 * f32::EPSILON * d,
            "{i}: {got} vs {want}"
        );
    }
}

#[test]
fn constant_and_edge_blocks() {
    // A constant row (no spread) and an all-zero row come back exactly.
    let (n, k) = (2, 40);
    let mut w = vec![0.25f32; k];
    w.extend(vec![0.0; k]);
    let back = dequantized(&Q8Panels::quantize(&w, n, k).expect("on the grid"));
    assert_eq!(back, w);
}

/// Checks `lin.forward` for `m` rows against the f64 sum over `wq` (the dequantized values):
/// error ≤ 1e-4 of Σ|x·w|, every output written and nothing past them.
fn check(lin: &PackedLinear, wq: &[f32], m: usize, seed: u64) {
    let (n, k) = (lin.n(), lin.k());
    let x = values(m * k, seed);
    let mut out = vec![f32::NAN; m * n + 1];
    lin.forward(&x, m, &mut out);
    assert!(out[m * n].is_nan(), "wrote past m * n");
    for i in 0..m {
        for j in 0..n {
            let (mut sum, mut mag) = (0.0f64, 0.0f64);
            for p in 0..k {
                let t = x[i * k + p] as f64 * wq[j * k + p] as f64;
                sum += t;
                mag += t.abs();
            }
            let got = out[i * n + j] as f64;
            assert!(
                (got - sum).abs() <= 1e-4 * mag + 1e-30,
                "m={m} n={n} k={k} path={} at [{i},{j}]: got {got}, want {sum}",
                lin.path()
            );
        }
    }
}

/// The weight packed as 8-bit panels for every path this CPU supports, with its values.
fn packs(w: &[f32], n: usize, k: usize) -> (Vec<PackedLinear>, Vec<f32>) {
    let lins: Vec<PackedLinear> = KernelPath::ALL
        .into_iter()
        .filter_map(|p| PackedLinear::pack_as(w, n, k, p, PackedFormat::Q8))
        .collect();
    assert_eq!(
        lins.iter().map(|l| l.path()).collect::<Vec<_>>(),
        KernelPath::supported()
    );
    assert!(lins.iter().all(|l| l.format() == PackedFormat::Q8));
    let wq = dequantized(&Q8Panels::quantize(w, n, k).expect("on the grid"));
    // The grid holds the values: to f32 rounding.
    for (a, b) in wq.iter().zip(w) {
        assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
    }
    (lins, wq)
}

#[test]
fn odd_shapes_every_path() {
    for &n in &[1, 17, 32, 33, 100] {
        for &k in &[1, 7, 31, 32, 33, 193, 577] {
            let w = on_grid(n, k, (n * 1000 + k) as u64);
            let (lins, wq) = packs(&w, n, k);
            for lin in &lins {
                // Up to Q8_ROWS_MAX rows read the bytes; more dequantize blocks of panels.
                for m in [1, 2, 5, 6, 7, 8, 9, 13, 25, Q8_ROWS_MAX + 1] {
                    check(lin, &wq, m, (m * 7 + n) as u64);
                }
            }
        }
    }
}

#[test]
fn model_shapes_in_pools() {
    // Decode rows (1..=Q8_ROWS_MAX, read directly) and prefill rows (dequantized blocks) on the
    // decoder's shapes, split over 1–3 threads; the paths agree within rounding.
    for &(n, k) in &[(576, 576), (192, 576), (1536, 576), (576, 1536)] {
        let w = on_grid(n, k, (n + k) as u64);
        let (lins, wq) = packs(&w, n, k);
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            for lin in &lins {
                for m in [1, Q8_ROWS_MAX, 40, 200] {
                    pool.install(|| check(lin, &wq, m, (m + threads) as u64));
                }
            }
            // Dequantized blocks on the SIMD paths: the same bits (the f32 tiles are too).
            let simd: Vec<Vec<f32>> = lins
                .iter()
                .filter(|l| l.path() != KernelPath::Portable)
                .map(|l| {
                    let (m, x) = (200, values(200 * k, 9));
                    let mut out = vec![0f32; m * n];
                    pool.install(|| l.forward(&x, m, &mut out));
                    out
                })
                .collect();
            assert!(simd.windows(2).all(|w| w[0] == w[1]), "{n}x{k}");
        }
    }
}

#[test]
fn q8_is_smaller() {
    let (n, k) = (64, 96);
    let w = on_grid(n, k, 1);
    let f = PackedLinear::pack_as(&w, n, k, KernelPath::Portable, PackedFormat::F32).unwrap();
    let q = PackedLinear::pack_as(&w, n, k, KernelPath::Portable, PackedFormat::Q8).unwrap();
    assert_eq!(f.bytes(), n * k * 4);
    assert_eq!(q.bytes(), n * k + n * k.div_ceil(BK) * 8);
}

#[test]
fn rows_read_back_in_both_formats() {
    // `row` gives W's rows from either layout: exactly for f32 panels, to f32 rounding for
    // 8-bit ones (several blocks of k for f32: KC = 640 < 700).
    let (n, k) = (37, 700);
    let w = on_grid(n, k, 8);
    for format in [PackedFormat::F32, PackedFormat::Q8] {
        let lin = PackedLinear::pack_as(&w, n, k, KernelPath::Portable, format).unwrap();
        assert_eq!(lin.format(), format);
        let mut row = vec![f32::NAN; k + 1];
        for j in [0, 1, 31, 32, 36] {
            lin.row(j, &mut row);
            for (s, (&got, &want)) in row.iter().zip(&w[j * k..(j + 1) * k]).enumerate() {
                assert!(
                    (got - want).abs() <= 1e-6,
                    "{format} [{j},{s}]: {got} vs {want}"
                );
            }
            assert!(row[k].is_nan(), "wrote past k");
        }
    }
}
