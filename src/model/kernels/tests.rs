//! Kernel results against a naive f64 reference, over edge shapes, every path (one row, small
//! and large products, several blocks of `k`) and several pool sizes.

use super::*;

/// Deterministic values in [-1, 1).
pub(crate) fn values(len: usize, seed: u64) -> Vec<f32> {
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

/// Checks `lin.forward` against f64 sums: error ≤ 1e-4 of Σ|x·w| (relative to the size of the
/// terms, which a cancelling sum can make much larger than the result itself).
fn check(lin: &PackedLinear, w: &[f32], m: usize, seed: u64) {
    let (n, k) = (lin.n(), lin.k());
    let x = values(m * k, seed);
    // Poisoned and one longer than needed: every value must be overwritten, the spare kept.
    let mut out = vec![f32::NAN; m * n + 1];
    lin.forward(&x, m, &mut out);
    assert!(out[m * n].is_nan(), "wrote past m * n");
    for i in 0..m {
        for j in 0..n {
            let (mut sum, mut mag) = (0.0f64, 0.0f64);
            for p in 0..k {
                let t = x[i * k + p] as f64 * w[j * k + p] as f64;
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

/// The weight packed for every path this CPU supports (always at least the portable one).
fn packs(w: &[f32], n: usize, k: usize) -> Vec<PackedLinear> {
    let v: Vec<PackedLinear> = KernelPath::ALL
        .into_iter()
        .filter_map(|p| PackedLinear::pack(w, n, k, p))
        .collect();
    assert_eq!(
        v.iter().map(|l| l.path()).collect::<Vec<_>>(),
        KernelPath::supported()
    );
    v
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool")
        .install(f)
}

#[test]
fn edge_shapes() {
    for &n in &[1, 15, 16, 17, 32, 33, 64, 100] {
        for &k in &[1, 7, 16, 193, 577] {
            let w = values(n * k, (n * 1000 + k) as u64);
            for lin in packs(&w, n, k) {
                for &m in &[1, 2, 3, 12, 13, 17, 25] {
                    check(&lin, &w, m, (m * 7 + n) as u64);
                }
            }
        }
    }
}

#[test]
fn parallel_paths() {
    // Large enough to split over threads, with several blocks of k and ragged edges.
    let shapes = [
        (1, 1000, 700),
        (1, 4097, 300),
        (3, 577, 577),
        (30, 192, 576),
        (37, 333, 1000),
        (100, 95, 577),
        (130, 576, 385),
        (401, 65, 200),
    ];
    for threads in [1, 2, 3] {
        for &(m, n, k) in &shapes {
            let w = values(n * k, (m + n + k) as u64);
            for lin in packs(&w, n, k) {
                in_pool(threads, || check(&lin, &w, m, threads as u64));
            }
        }
    }
}

#[test]
fn model_shapes_agree_across_paths() {
    // Every supported path on the decoder's own shapes (one row, a batch, a long prefill chunk),
    // against the f64 reference and against each other: the SIMD paths bit for bit, the
    // portable one within rounding.
    for &(n, k) in &[(576, 576), (192, 576), (1536, 576), (576, 1536)] {
        let w = values(n * k, (n + k) as u64);
        let lins = packs(&w, n, k);
        for lin in &lins {
            check(lin, &w, 30, 5);
        }
        for m in [1, 7, 512] {
            let x = values(m * k, 9 + m as u64);
            let outs: Vec<Vec<f32>> = lins
                .iter()
                .map(|lin| {
                    let mut out = vec![0.0; m * n];
                    in_pool(2, || lin.forward(&x, m, &mut out));
                    out
                })
                .collect();
            let portable = &outs[lins.len() - 1];
            for (lin, out) in lins.iter().zip(&outs) {
                for (i, (u, v)) in out.iter().zip(portable).enumerate() {
                    assert!(
                        (u - v).abs() <= 1e-4 * (1.0 + v.abs()),
                        "{n}x{k} m={m} {} at {i}: {u} vs portable {v}",
                        lin.path()
                    );
                }
                if lin.path() != KernelPath::Portable {
                    assert_eq!(
                        out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        outs[0].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "{n}x{k} m={m}: {} is not bit-identical to {}",
                        lin.path(),
                        lins[0].path()
                    );
                }
            }
        }
    }
}

#[test]
fn simd_paths_are_bit_identical_on_edge_shapes() {
    // The AVX2 kernel replays the AVX-512F kernel's order of fused multiply-adds: ragged edges,
    // partial groups of k, several blocks of k and both the tile and the one-row kernels must
    // give the same bits. (Vacuous on CPUs with fewer than two SIMD paths.)
    let simd: Vec<KernelPath> = KernelPath::supported()
        .into_iter()
        .filter(|&p| p != KernelPath::Portable)
        .collect();
    if simd.len() < 2 {
        return;
    }
    for &(n, k) in &[(1, 1), (17, 7), (33, 193), (100, 577), (47, 1300)] {
        let w = values(n * k, (3 * n + k) as u64);
        let lins: Vec<PackedLinear> = simd
            .iter()
            .map(|&p| PackedLinear::pack(&w, n, k, p).expect("supported"))
            .collect();
        for m in [1, 2, 5, 6, 7, 12, 13, 25] {
            let x = values(m * k, m as u64);
            let bits: Vec<Vec<u32>> = lins
                .iter()
                .map(|lin| {
                    let mut out = vec![0.0; m * n];
                    lin.forward(&x, m, &mut out);
                    out.iter().map(|v| v.to_bits()).collect()
                })
                .collect();
            for (lin, b) in lins.iter().zip(&bits) {
                assert_eq!(b, &bits[0], "n={n} k={k} m={m}: {}", lin.path());
            }
        }
    }
}

#[test]
fn degenerate_sizes() {
    let w = values(5 * 3, 1);
    for lin in packs(&w, 5, 3) {
        lin.forward(&[], 0, &mut []);
        assert_eq!((lin.n(), lin.k()), (5, 3));
    }
    // k = 0: the product of empty sums is zero.
    for lin in packs(&[], 4, 0) {
        let mut out = vec![1.0; 8];
        lin.forward(&[], 2, &mut out);
        assert_eq!(out, vec![0.0; 8]);
    }
    // n = 0: nothing to write.
    for lin in packs(&[], 0, 4) {
        lin.forward(&[1.0; 8], 2, &mut []);
    }
}

#[test]
#[should_panic(expected = "x has")]
fn short_input_panics() {
    let lin = PackedLinear::pack_portable(&[0.0; 6], 2, 3);
    lin.forward(&[0.0; 5], 2, &mut [0.0; 4]);
}

#[test]
#[should_panic(expected = "out has")]
fn short_output_panics() {
    let lin = PackedLinear::pack_portable(&[0.0; 6], 2, 3);
    lin.forward(&[0.0; 6], 2, &mut [0.0; 3]);
}

#[test]
fn clone_and_debug() {
    let w = values(40 * 9, 3);
    for lin in packs(&w, 40, 9) {
        let copy = lin.clone();
        check(&copy, &w, 4, 2);
        assert!(format!("{copy:?}").contains("n: 40"));
    }
}

#[test]
fn grid_plans_cover_the_threads() {
    // Every plan is a valid partition, and a product big enough to share gets at least one
    // task per thread when it has the tiles and panels for it.
    for threads in [2, 3, 4] {
        for &m in &[2usize, 12, 30, 100, 512, 700, 1500] {
            for &(n, k) in &[
                (576usize, 576usize),
                (192, 576),
                (1536, 576),
                (576, 1536),
                (49152, 576),
            ] {
                let (tiles, panels) = (m.div_ceil(MR_MAX), n.div_ceil(NR));
                for (cost, most_tiles) in [
                    (F32_WEIGHT_COST, MC_TILES),
                    (Q8_WEIGHT_COST, MC_TILES_DEQUANT),
                ] {
                    let (mp, np) = plan_grid(tiles, panels, k, threads, cost, most_tiles);
                    assert!(
                        (1..=tiles).contains(&mp) && (1..=panels).contains(&np),
                        "{m} {n} {k}"
                    );
                    assert!(
                        tiles.div_ceil(mp) <= most_tiles,
                        "{m} {n} {k}: row blocks too big"
                    );
                    if tiles * panels >= threads {
                        assert!(mp * np >= threads, "{m} {n} {k}: {mp} x {np} for {threads}");
                    }
                }
            }
        }
    }
}
