//! 8-bit panels: the grid (exact on Q4_1-style blocks, half a level otherwise), and products on
//! every supported path (few rows read directly, many rows dequantized into the f32 kernel)
//! against an f64 reference over the dequantized values, on odd sizes and several pools.

use super::*;
use crate::model::kernels::{KernelPath, PackedFormat, PackedLinear, Q8_ROWS_MAX};

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
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
fn grid_is_within_half_a_level() {
    for &(n, k) in &[(1, 1), (33, 31), (40, 33), (5, 100)] {
        let w = values(n * k, (n + 7 * k) as u64);
        let q = Q8Panels::quantize(&w, n, k);
        let back = dequantized(&q);
        for j in 0..n {
            for b in 0..k.div_ceil(BK) {
                let block = &w[j * k + b * BK..j * k + ((b + 1) * BK).min(k)];
                let (lo, hi) = block
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
                let half = (hi - lo) / 510.0 * (1.0 + 1e-5) + 1e-7;
                for (s, &v) in block.iter().enumerate() {
                    let got = back[j * k + b * BK + s];
                    assert!((got - v).abs() <= half, "{n}x{k} [{j},{s}]: {got} vs {v}");
                }
            }
        }
    }
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
    let back = dequantized(&Q8Panels::quantize(&w, n, k));
    for (i, (&got, &want)) in back.iter().zip(&w).enumerate() {
        assert!(
            (got - want).abs() <= 4.0 * f32::EPSILON * (1.0 + want.abs()),
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
    let back = dequantized(&Q8Panels::quantize(&w, n, k));
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
    (lins, dequantized(&Q8Panels::quantize(w, n, k)))
}

#[test]
fn odd_shapes_every_path() {
    for &n in &[1, 17, 32, 33, 100] {
        for &k in &[1, 7, 31, 32, 33, 193, 577] {
            let w = values(n * k, (n * 1000 + k) as u64);
            let (lins, wq) = packs(&w, n, k);
            for lin in &lins {
                for m in [1, 2, 5, 6, 7, 8, 9, 13, 25] {
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
        let w = values(n * k, (n + k) as u64);
        let (lins, wq) = packs(&w, n, k);
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            for lin in &lins {
                for m in [1, Q8_ROWS_MAX, 40] {
                    pool.install(|| check(lin, &wq, m, (m + threads) as u64));
                }
            }
        }
    }
}

#[test]
fn close_to_the_f32_weights() {
    // Against the unrounded weights: the grid moves each weight by at most half a level, so
    // the product moves by at most Σ|x|·(block range)/510 (plus f32 rounding).
    let (n, k) = (70, 300);
    let w = values(n * k, 5);
    let m = 3;
    let x = values(m * k, 6);
    for p in KernelPath::supported() {
        let lin = PackedLinear::pack_as(&w, n, k, p, PackedFormat::Q8).expect("supported");
        let mut out = vec![0.0; m * n];
        lin.forward(&x, m, &mut out);
        for i in 0..m {
            for j in 0..n {
                let exact: f64 = (0..k)
                    .map(|s| x[i * k + s] as f64 * w[j * k + s] as f64)
                    .sum();
                let bound: f64 = (0..k).map(|s| (x[i * k + s] as f64).abs()).sum::<f64>()
                    * (2.0 / 510.0)
                    + 1e-4;
                let got = out[i * n + j] as f64;
                assert!((got - exact).abs() <= bound, "{p} [{i},{j}]: {got} vs {exact}");
            }
        }
    }
}

#[test]
fn q8_is_smaller() {
    let (n, k) = (64, 96);
    let w = values(n * k, 1);
    let f = PackedLinear::pack_as(&w, n, k, KernelPath::Portable, PackedFormat::F32).unwrap();
    let q = PackedLinear::pack_as(&w, n, k, KernelPath::Portable, PackedFormat::Q8).unwrap();
    assert_eq!(f.bytes(), n * k * 4);
    assert_eq!(q.bytes(), n * k + n * k.div_ceil(BK) * 8);
}

#[test]
#[ignore = "timing, run by hand"]
fn dequantize_speed() {
    let (n, k) = (1536, 576);
    let w = values(n * k, 1);
    let q = Q8Panels::quantize(&w, n, k);
    let mut dst = vec![0.0; n.div_ceil(NR) * k * NR];
    for isa in [KernelPath::Avx512, KernelPath::Portable] {
        let isa = Isa::for_path(isa).unwrap();
        let t = std::time::Instant::now();
        // Blocks of 3 panels (~220 KiB of f32, in L2), as the f32 kernel asks for them.
        for _ in 0..20 {
            for p in (0..n / NR).step_by(3) {
                q.dequantize(isa, 0..k, p..p + 3, &mut dst);
            }
        }
        let per = t.elapsed().as_secs_f64() / 20.0 / (n * k) as f64;
        eprintln!("{isa:?}: {:.3} ns/weight", per * 1e9);
    }
}
