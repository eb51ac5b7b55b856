//! Decode with f32, 8-bit and 4-bit packed weights (`PackedFormat::F32`, `Q8`, `Q4`), side by
//! side.
//!
//! 1. Kernel: one projection of each of the decoder's shapes for `m` = 1 to 512 rows (decode
//!    steps of one or several branches, tree batches, prefill chunks) in each format (Q4_1-style
//!    values, which the 8- and 4-bit grids hold), formats rotating run by run, medians of
//!    BENCH_RUNS timed batches (µs per call). Up to `Q8_ROWS_MAX` rows the 8- and 4-bit panels
//!    are read directly; above, blocks are dequantized into the f32 kernel.
//! 2. Engine: the default model opened once per format, greedy generation of BENCH_TOKENS (64)
//!    tokens after the reasoning prompt of one transcript (`single`, one `Engine::generate`)
//!    and after 9 variants (`audit9`, one lock-step `generate_many`), and the same with 1 token
//!    (prefill and first token only); the engines rotate run by run. Decode time per step =
//!    (t(64) − t(1)) / 63.
//!
//! Prints the CPU, its SIMD features and the load average (before and after). Run:
//! `cargo bench --bench decode` (results: target/bench/decode.json). Env: BENCH_RUNS (5),
//! BENCH_THREADS (2), BENCH_TOKENS (64), BENCH_SKIP_KERNEL=1, BENCH_SKIP_ENGINE=1,
//! BENCH_CASES (engine cases, comma-separated: `single`, `audit9`; default both), BENCH_FORMATS
//! (comma-separated, default `f32,q8,q4`), BENCH_MODEL (another GGUF file; default the default
//! model).
//!
//! The engine part also writes `target/bench/generate_prompt.json` (the `single` prompt and
//! the q8 greedy tokens) for `scripts/bench_llamacpp.py --modes generate`, llama.cpp's
//! generation speed on the same prompt.

use debias_guard::guard::reasoned::reasoning_prompt;
use debias_guard::model::kernels::{KernelPath, PackedFormat, PackedLinear, Q8_ROWS_MAX};
use debias_guard::{Engine, EngineOptions, GenerateOptions, PromptBuilder, Rubric, Transcript};
use serde_json::json;
use std::time::Instant;

mod common;
use common::*;

/// The decoder's projection shapes (`n × k`).
const NK: [(usize, usize); 4] = [(576, 576), (192, 576), (1536, 576), (576, 1536)];

/// `w` rounded in blocks of 32 to 16 levels from each block's minimum to its maximum, as a
/// Q4_1 file holds weights (the 8-bit grid holds such values; random ones stay f32).
fn q4_1_like(mut w: Vec<f32>) -> Vec<f32> {
    for block in w.chunks_mut(32) {
        let (lo, hi) = block
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        let d = (hi - lo) / 15.0;
        if d > 0.0 {
            block
                .iter_mut()
                .for_each(|v| *v = d * ((*v - lo) / d).round() + lo);
        }
    }
    w
}

/// The CPU's model name and the SIMD features the kernels care about.
fn cpu() -> (String, Vec<&'static str>) {
    let name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    #[allow(unused_mut)]
    let mut features = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (f, on) in [
            ("avx512f", is_x86_feature_detected!("avx512f")),
            ("avx512vnni", is_x86_feature_detected!("avx512vnni")),
            ("avx2", is_x86_feature_detected!("avx2")),
            ("fma", is_x86_feature_detected!("fma")),
        ] {
            if on {
                features.push(f);
            }
        }
    }
    (name, features)
}

/// The formats to compare (BENCH_FORMATS, default all), widest first.
fn formats() -> Vec<PackedFormat> {
    match std::env::var("BENCH_FORMATS") {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|f| f.parse().expect("BENCH_FORMATS: f32, q8 or q4"))
            .collect(),
        _ => PackedFormat::ALL.to_vec(),
    }
}

/// Median µs per call of each format's `forward` for `m` rows of one shape.
fn kernel_case(
    path: KernelPath,
    formats: &[PackedFormat],
    (n, k, m): (usize, usize, usize),
    runs: usize,
) -> Vec<f64> {
    let w = q4_1_like(values(n * k, (n + k) as u64));
    let x = values(m * k, m as u64);
    let lins: Vec<PackedLinear> = formats
        .iter()
        .map(|&f| PackedLinear::pack_as(&w, n, k, path, f).expect("supported path"))
        .collect();
    for (lin, &f) in lins.iter().zip(formats) {
        assert_eq!(lin.format(), f, "values off the grid");
    }
    let mut out = vec![0.0; m * n];
    // Calls per batch: about 20 ms of the first format's kernel.
    let t = Instant::now();
    lins[0].forward(&x, m, &mut out);
    let iters = ((0.02 / t.elapsed().as_secs_f64().max(1e-7)) as usize).clamp(3, 20_000);
    let mut times = vec![Vec::new(); lins.len()];
    for run in 0..runs {
        for j in 0..lins.len() {
            let i = (run + j) % lins.len();
            let t = Instant::now();
            for _ in 0..iters {
                lins[i].forward(&x, m, &mut out);
            }
            times[i].push(t.elapsed().as_secs_f64() / iters as f64 * 1e6);
        }
    }
    times.into_iter().map(median).collect()
}

/// Seconds of one greedy generation of `tokens` tokens after `prompts` (one `generate` for a
/// single prompt, else one `generate_many`), and the tokens generated.
fn generate(engine: &Engine, prompts: &[String], tokens: usize) -> (f64, Vec<Vec<u32>>) {
    let options = GenerateOptions {
        max_tokens: tokens,
        ..GenerateOptions::default()
    };
    let t = Instant::now();
    let out: Vec<Vec<u32>> = if prompts.len() == 1 {
        vec![
            engine
                .generate(&prompts[0], &options)
                .expect("generate")
                .tokens,
        ]
    } else {
        engine
            .generate_many(prompts, &options)
            .expect("generate_many")
            .into_iter()
            .map(|g| g.tokens)
            .collect()
    };
    (t.elapsed().as_secs_f64(), out)
}

/// Writes the `single` case's prompt and its q8 greedy tokens where
/// `scripts/bench_llamacpp.py --modes generate` reads them.
fn write_generate_prompt(prompt: &str, max_tokens: usize, greedy: &[u32]) {
    let path = model_path();
    let model = std::path::Path::new(&path).file_name().unwrap();
    let spec = json!({
        "model": model.to_string_lossy(),
        "variants": [{"id": "reasoning-neutral", "text": prompt}],
        "max_tokens": max_tokens,
        "engine_greedy_tokens": greedy,
    });
    std::fs::create_dir_all("target/bench").unwrap();
    std::fs::write(
        "target/bench/generate_prompt.json",
        serde_json::to_string_pretty(&spec).unwrap(),
    )
    .unwrap();
}

fn main() {
    let runs = env_usize("BENCH_RUNS", 5);
    let threads = env_usize("BENCH_THREADS", 2);
    let tokens = env_usize("BENCH_TOKENS", 64).max(2);
    let (cpu_name, features) = cpu();
    let load_before = load_average();
    println!("cpu: {cpu_name} ({})", features.join(", "));
    println!("load average: {load_before}");
    let mut report = serde_json::Map::new();

    let formats = formats();
    let names: Vec<&str> = formats.iter().map(|f| f.name()).collect();
    if std::env::var("BENCH_SKIP_KERNEL").is_err() {
        let path = KernelPath::auto().unwrap_or(KernelPath::Portable);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let mut rows = Vec::new();
        println!(
            "kernel {path}, {threads} threads: µs per call ({})",
            names.join(", ")
        );
        for (n, k) in NK {
            for m in [1, 4, 9, 12, 16, 32, 64, 128, 129, 512] {
                let us = pool.install(|| kernel_case(path, &formats, (n, k, m), runs));
                let cells: Vec<String> = names
                    .iter()
                    .zip(&us)
                    .map(|(f, t)| format!("{f} {t:>8.1}"))
                    .collect();
                println!(
                    "{n:>5}x{k:<5} m={m:>3}: {}{}",
                    cells.join("  "),
                    if m > Q8_ROWS_MAX {
                        " (dequantized)"
                    } else {
                        ""
                    }
                );
                let mut row = json!({"n": n, "k": k, "m": m});
                for (f, t) in names.iter().zip(&us) {
                    row[format!("{f}_us")] = json!(t);
                }
                rows.push(row);
            }
        }
        report.insert(
            "kernel".into(),
            json!({"path": path.name(), "rows": rows, "q8_rows_max": Q8_ROWS_MAX}),
        );
    }

    if std::env::var("BENCH_SKIP_ENGINE").is_err() {
        let open = |f: PackedFormat| {
            Engine::open(
                model_path(),
                &EngineOptions {
                    threads,
                    packed_format: Some(f),
                    ..EngineOptions::default()
                },
            )
            .expect("open the default model (make model)")
        };
        let engines: Vec<Engine> = formats.iter().map(|&f| open(f)).collect();
        let builder = PromptBuilder::default();
        let transcript =
            Transcript::new(&std::fs::read_to_string(TRANSCRIPT).expect("transcript")).unwrap();
        let item = &Rubric::builtin().items[0];
        let prompts: Vec<String> = std::iter::once(None)
            .chain(contexts().into_iter().map(|(_, text)| Some(text)))
            .map(|c| {
                reasoning_prompt(
                    &engines[0],
                    &builder,
                    &transcript,
                    item,
                    c.as_deref(),
                    false,
                )
                .unwrap()
            })
            .collect();
        let only = std::env::var("BENCH_CASES").ok();
        let wanted = |name: &str| {
            only.as_deref()
                .is_none_or(|v| v.split(',').any(|c| c == name))
        };
        let mut cases = serde_json::Map::new();
        let all_cases = [("single", &prompts[..1]), ("audit9", &prompts[..])];
        let e = engines.len();
        for (name, set) in all_cases.into_iter().filter(|c| wanted(c.0)) {
            // [format][tokens: full, 1] → seconds per run.
            let mut times = vec![[Vec::new(), Vec::new()]; e];
            let mut outputs: Vec<Vec<Vec<u32>>> = vec![Vec::new(); e];
            for run in 0..runs {
                for j in 0..e {
                    let i = (run + j) % e;
                    let (secs, out) = generate(&engines[i], set, tokens);
                    times[i][0].push(secs);
                    outputs[i] = out;
                    times[i][1].push(generate(&engines[i], set, 1).0);
                }
            }
            let med = |i: usize, j: usize| median(times[i][j].clone());
            let step_ms = |i: usize| (med(i, 0) - med(i, 1)) / (tokens - 1) as f64 * 1e3;
            let mut case = json!({"prompts": set.len()});
            let mut line = Vec::new();
            for (i, f) in names.iter().enumerate() {
                // Greedy tokens equal to the first format's, and how many lead before the first
                // difference (summed over prompts).
                let agree: usize = outputs[i]
                    .iter()
                    .zip(&outputs[0])
                    .map(|(a, b)| a.iter().zip(b).take_while(|(x, y)| x == y).count())
                    .sum();
                line.push(format!(
                    "{f}: {:.2} s, prefill+1 {:.2} s, step {:.1} ms, tokens agreeing with {} {agree}",
                    med(i, 0),
                    med(i, 1),
                    step_ms(i),
                    names[0]
                ));
                case[*f] = json!({
                    "median_s": med(i, 0), "prefill1_median_s": med(i, 1),
                    "step_ms": step_ms(i), "runs_s": times[i][0],
                    "tokens_generated": outputs[i].iter().map(Vec::len).sum::<usize>(),
                    "leading_tokens_equal_to_first_format": agree,
                    "greedy_tokens_equal_to_first_format": outputs[i] == outputs[0],
                });
            }
            println!("{name} ({tokens} tokens): {}", line.join("; "));
            cases.insert(name.into(), case);
            if name == "single" {
                let q8 = formats
                    .iter()
                    .position(|&f| f == PackedFormat::Q8)
                    .unwrap_or(0);
                write_generate_prompt(&set[0], tokens, &outputs[q8][0]);
            }
        }
        report.insert(
            "engine".into(),
            json!({"model": model_path(), "max_tokens": tokens, "cases": cases,
                   "kernel": engines[0].kernel_path().map(|k| k.to_string())}),
        );
    }
    let load_after = load_average();
    println!("load average after: {load_after}");
    let out = json!({
        "cpu": cpu_name, "features": features, "threads": threads, "runs": runs,
        "load_before": load_before, "load_after": load_after, "results": report,
    });
    std::fs::create_dir_all("target/bench").unwrap();
    std::fs::write(
        "target/bench/decode.json",
        serde_json::to_string_pretty(&out).unwrap(),
    )
    .unwrap();
}
