//! The packed linear kernel on every path the CPU supports (avx512, avx2, portable) against
//! candle's f32 matmul (`x.matmul(&w.t())`) on the decoder's shapes, side by side: per shape
//! and run, candle then each path in turn, each timed over enough calls to last a few
//! milliseconds; medians of the runs in GFLOP/s and the ratio of candle's median time to each
//! path's, then the same from each side's fastest run ("best", less sensitive to other
//! processes on the machine; the load average is printed before and after).
//!
//! All run inside a rayon pool of `RAYON_NUM_THREADS` (default 2) threads, as the engine runs
//! the model. Run: `RAYON_NUM_THREADS=2 cargo bench --bench kernels`. Options via env:
//! BENCH_RUNS (9), BENCH_MS (per timed batch, 20), BENCH_M / BENCH_NK / BENCH_PATHS (filters,
//! e.g. `BENCH_M=30,512`, `BENCH_NK=576x576`, `BENCH_PATHS=avx2,portable`).

use candle_core::{Device, Tensor};
use debias_guard::model::kernels::{KernelPath, PackedLinear};
use std::time::Instant;

mod common;
use common::*;

const MS: [usize; 4] = [1, 30, 512, 700];
const NK: [(usize, usize); 5] = [
    (576, 576),
    (192, 576),
    (1536, 576),
    (576, 1536),
    (49152, 576),
];

fn env_list(key: &str) -> Option<Vec<String>> {
    std::env::var(key)
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
}

/// Seconds per call of `f`, timed over a batch of `iters` calls.
fn time_batch(iters: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() / iters as f64
}

/// Calls per batch so that one batch lasts about `ms` milliseconds.
fn calibrate(ms: f64, mut f: impl FnMut()) -> usize {
    f();
    let once = time_batch(1, &mut f).max(1e-7);
    ((ms * 1e-3 / once).ceil() as usize).clamp(1, 100_000)
}

fn main() -> candle_core::Result<()> {
    let threads = env_usize("RAYON_NUM_THREADS", 2);
    // Like the engine, which runs the model inside its own pool: both sides fork and join
    // from a worker thread.
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("rayon pool")
        .install(|| run(threads))
}

fn run(threads: usize) -> candle_core::Result<()> {
    let runs = env_usize("BENCH_RUNS", 9).max(7);
    let ms = env_usize("BENCH_MS", 20) as f64;
    let m_filter = env_list("BENCH_M");
    let nk_filter = env_list("BENCH_NK");
    let path_filter = env_list("BENCH_PATHS");
    let paths: Vec<KernelPath> = KernelPath::supported()
        .into_iter()
        .filter(|p| {
            path_filter
                .as_ref()
                .is_none_or(|f| f.iter().any(|s| s == p.name()))
        })
        .collect();
    let dev = Device::Cpu;
    println!(
        "threads {threads} (candle sees {}), {runs} runs x ~{ms} ms, median per call; paths {}",
        candle_core::utils::get_num_threads(),
        paths
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("load average: {}", load_average());
    let mut header = format!("{:>4} {:>6} {:>5} | {:>8}", "m", "n", "k", "candle");
    for p in &paths {
        header += &format!(" {:>8}", p.name());
    }
    header += " | median GFLOP/s; ratios (candle time / path time) |";
    for p in &paths {
        header += &format!(" {:>8}", p.name());
    }
    header += " | best ratios";
    println!("{header}");
    for &(n, k) in &NK {
        if nk_filter
            .as_ref()
            .is_some_and(|f| !f.contains(&format!("{n}x{k}")))
        {
            continue;
        }
        let w = values(n * k, (n + k) as u64);
        let packed: Vec<PackedLinear> = paths
            .iter()
            .map(|&p| PackedLinear::pack(&w, n, k, p).expect("supported path"))
            .collect();
        let wt = Tensor::from_slice(&w, (n, k), &dev)?;
        for &m in &MS {
            if m_filter
                .as_ref()
                .is_some_and(|f| !f.contains(&m.to_string()))
            {
                continue;
            }
            let x = values(m * k, m as u64);
            let xt = Tensor::from_slice(&x, (m, k), &dev)?;
            let mut out = vec![0.0f32; m * n];

            // Same answer first.
            let reference: Vec<f32> = xt.matmul(&wt.t()?)?.flatten_all()?.to_vec1()?;
            for lin in &packed {
                lin.forward(&x, m, &mut out);
                let err = reference
                    .iter()
                    .zip(&out)
                    .map(|(a, b)| (a - b).abs() / (1.0 + a.abs()))
                    .fold(0.0f32, f32::max);
                assert!(
                    err < 1e-4,
                    "{} m={m} n={n} k={k}: max rel diff {err}",
                    lin.path()
                );
            }

            let mut candle = || {
                let y = xt.matmul(&wt.t().unwrap()).unwrap();
                std::hint::black_box(y);
            };
            let ic = calibrate(ms, &mut candle);
            let iters: Vec<usize> = packed
                .iter()
                .map(|lin| {
                    calibrate(ms, || {
                        lin.forward(std::hint::black_box(&x), m, &mut out);
                        std::hint::black_box(&mut out);
                    })
                })
                .collect();
            let mut tc = Vec::new();
            let mut tp = vec![Vec::new(); packed.len()];
            for _ in 0..runs {
                tc.push(time_batch(ic, &mut candle));
                for ((lin, &it), t) in packed.iter().zip(&iters).zip(&mut tp) {
                    t.push(time_batch(it, || {
                        lin.forward(std::hint::black_box(&x), m, &mut out);
                        std::hint::black_box(&mut out);
                    }));
                }
            }
            let best = |t: &[f64]| t.iter().copied().fold(f64::MAX, f64::min);
            let flops = 2.0 * (m * n * k) as f64;
            let (bc, mc) = (best(&tc), median(tc));
            let mut line = format!("{m:>4} {n:>6} {k:>5} | {:>8.1}", flops / mc * 1e-9);
            let medians: Vec<f64> = tp.iter().map(|t| median(t.clone())).collect();
            for t in &medians {
                line += &format!(" {:>8.1}", flops / t * 1e-9);
            }
            line += " |";
            for t in &medians {
                line += &format!(" {:>8.2}", mc / t);
            }
            line += " |";
            for t in &tp {
                line += &format!(" {:>5.2}", bc / best(t));
            }
            println!("{line}");
        }
    }
    println!("load average: {}", load_average());
    Ok(())
}
