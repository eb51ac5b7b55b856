//! Decode with f32 against 8-bit packed weights (`PackedFormat::F32` vs `Q8`), side by side.
//!
//! 1. Kernel: one projection of each of the decoder's shapes for `m` = 1 to 512 rows (decode
//!    steps of one or several branches, tree batches, prefill chunks), f32 panels then 8-bit
//!    panels (Q4_1-style values, which the 8-bit grid holds), alternating, medians of
//!    BENCH_RUNS timed batches (µs per call). Up to `Q8_ROWS_MAX` rows the 8-bit panels are
//!    read directly; above, blocks are dequantized into the f32 kernel.
//! 2. Engine: the default model opened twice (f32 and q8 panels), greedy generation of
//!    BENCH_TOKENS (64) tokens after the reasoning prompt of one transcript (`single`, one
//!    `Engine::generate`) and after 9 variants (`audit9`, one lock-step `generate_many`), and
//!    the same with 1 token (prefill and first token only); the two engines alternate run by
//!    run. Decode time per step = (t(64) − t(1)) / 63.
//!
//! Prints the CPU, its SIMD features and the load average (before and after). Run:
//! `cargo bench --bench decode` (results: target/bench/decode.json). Env: BENCH_RUNS (5),
//! BENCH_THREADS (2), BENCH_TOKENS (64), BENCH_SKIP_KERNEL=1, BENCH_SKIP_ENGINE=1,
//! BENCH_CASES (engine cases, comma-separated: `single`, `audit9`; default both), BENCH_MODEL
//! (another GGUF file; default the default model).
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

/// Median µs per call of each format's `forward` for `m` rows of one shape.
fn kernel_case(path: KernelPath, n: usize, k: usize, m: usize, runs: usize) -> (f64, f64) {
    let w = q4_1_like(values(n * k, (n + k) as u64));
    let x = values(m * k, m as u64);
    let lins: Vec<PackedLinear> = [PackedFormat::F32, PackedFormat::Q8]
        .into_iter()
        .map(|f| PackedLinear::pack_as(&w, n, k, path, f).expect("supported path"))
        .collect();
    assert_eq!(
        lins[1].format(),
        PackedFormat::Q8,
        "values off the 8-bit grid"
    );
    let mut out = vec![0.0; m * n];
    // Calls per batch: about 20 ms of the f32 kernel.
    let t = Instant::now();
    lins[0].forward(&x, m, &mut out);
    let iters = ((0.02 / t.elapsed().as_secs_f64().max(1e-7)) as usize).clamp(3, 20_000);
    let mut times = [Vec::new(), Vec::new()];
    for run in 0..runs {
        for i in [run % 2, 1 - run % 2] {
            let t = Instant::now();
            for _ in 0..iters {
                lins[i].forward(&x, m, &mut out);
            }
            times[i].push(t.elapsed().as_secs_f64() / iters as f64 * 1e6);
        }
    }
    let [f, q] = times;
    (median(f), median(q))
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

    if std::env::var("BENCH_SKIP_KERNEL").is_err() {
        let path = KernelPath::auto().unwrap_or(KernelPath::Portable);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let mut rows = Vec::new();
        println!("kernel {path}, {threads} threads: µs per call, f32 vs q8 panels");
        for (n, k) in NK {
            for m in [1, 4, 9, 12, 16, 32, 64, 128, 129, 512] {
                let (f, q) = pool.install(|| kernel_case(path, n, k, m, runs));
                println!(
                    "{n:>5}x{k:<5} m={m:>2}: f32 {f:>8.1}  q8 {q:>8.1}  f32/q8 {:.2}{}",
                    f / q,
                    if m > Q8_ROWS_MAX {
                        " (q8 dequantized)"
                    } else {
                        ""
                    }
                );
                rows.push(json!({"n": n, "k": k, "m": m, "f32_us": f, "q8_us": q}));
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
        let engines = [open(PackedFormat::F32), open(PackedFormat::Q8)];
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
        for (name, set) in all_cases.into_iter().filter(|c| wanted(c.0)) {
            // [format][tokens: full, 1] → seconds per run.
            let mut times = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
            let mut outputs: [Vec<Vec<u32>>; 2] = [Vec::new(), Vec::new()];
            for run in 0..runs {
                for i in [run % 2, 1 - run % 2] {
                    let (secs, out) = generate(&engines[i], set, tokens);
                    times[i][0].push(secs);
                    outputs[i] = out;
                    times[i][1].push(generate(&engines[i], set, 1).0);
                }
            }
            let generated: usize = outputs[1].iter().map(Vec::len).sum();
            let med = |i: usize, j: usize| median(times[i][j].clone());
            let step_ms = |i: usize| (med(i, 0) - med(i, 1)) / (tokens - 1) as f64 * 1e3;
            println!(
                "{name}: {tokens} tokens f32 {:.2} s, q8 {:.2} s; prefill+1 f32 {:.2} s, q8 {:.2} s; \
                 decode step f32 {:.1} ms, q8 {:.1} ms ({:.2}x); greedy tokens equal: {}",
                med(0, 0),
                med(1, 0),
                med(0, 1),
                med(1, 1),
                step_ms(0),
                step_ms(1),
                step_ms(0) / step_ms(1),
                outputs[0] == outputs[1]
            );
            cases.insert(
                name.into(),
                json!({
                    "prompts": set.len(), "tokens_generated_q8": generated,
                    "f32_median_s": med(0, 0), "q8_median_s": med(1, 0),
                    "f32_prefill1_median_s": med(0, 1), "q8_prefill1_median_s": med(1, 1),
                    "f32_step_ms": step_ms(0), "q8_step_ms": step_ms(1),
                    "step_speedup": step_ms(0) / step_ms(1),
                    "greedy_tokens_equal": outputs[0] == outputs[1],
                    "f32_runs_s": times[0][0], "q8_runs_s": times[1][0],
                }),
            );
            if name == "single" {
                write_generate_prompt(&set[0], tokens, &outputs[1][0]);
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
