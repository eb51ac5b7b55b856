//! Engine benchmark on the real default model: one score of a ~700-token transcript prompt, and
//! the same transcript with 9 variants (neutral + 8 contexts) through the prefix tree; then both
//! again with a rank-16 LoRA adapter on every projection — applied at run time, and merged into
//! the weights at load — interleaved with the base model run by run, for the adapter's cost.
//!
//! Last, one score on each kernel path the CPU supports (avx512, avx2, portable: one engine per
//! path, runs alternating path by path so all see the same load).
//!
//! Run: `cargo bench --bench engine` (results: target/bench/engine.json; the prompts go to
//! target/bench/prompts.json for scripts/bench_llamacpp.py). Options via env: BENCH_RUNS (5),
//! BENCH_THREADS (2), BENCH_PATHS (kernel paths to compare, e.g. `avx2,portable`; default all
//! supported, `none` skips the comparison), BENCH_ONLY_PATHS=1 (only the kernel-path comparison),
//! BENCH_MODEL (another GGUF file, e.g. the model in another type; default the default model).

use debias_guard::adapter::PeftConfig;
use debias_guard::model::kernels::KernelPath;
use debias_guard::model::Projection;
use debias_guard::{Engine, EngineOptions, LabelPrompt, PromptBuilder, Rubric, Transcript};
use debias_guard_testkit::tiny_adapter;
use serde_json::json;
use std::time::Instant;

mod common;
use common::*;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn time_runs(runs: usize, mut f: impl FnMut() -> usize) -> (f64, Vec<f64>, usize) {
    let evaluated = f(); // warm-up
    let times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    (median(times.clone()), times, evaluated)
}

/// Each arm timed `runs` times, interleaved (one warm-up each, then per run every arm once in
/// turn) so all see the same machine load; the runs of each arm in order.
fn time_interleaved(runs: usize, arms: &mut [&mut dyn FnMut()]) -> Vec<Vec<f64>> {
    for arm in arms.iter_mut() {
        arm();
    }
    let mut times = vec![Vec::with_capacity(runs); arms.len()];
    for _ in 0..runs {
        for (arm, t) in arms.iter_mut().zip(&mut times) {
            let start = Instant::now();
            arm();
            t.push(start.elapsed().as_secs_f64());
        }
    }
    times
}

/// Base vs adapter timings of one score and of the 9 variants: the adapter applied at run time
/// (`Engine::with_adapter`, the low-rank path beside the base weight) and merged into the weights
/// at load (`EngineOptions::merge_adapter`, a second engine).
fn adapter_overhead(
    engine: &Engine,
    prompts: &[LabelPrompt],
    runs: usize,
    threads: usize,
) -> serde_json::Value {
    let modules = Projection::ALL.map(|p| p.hf_module());
    let adapter = tiny_adapter(engine.config(), PeftConfig::lora(16, 32.0, &modules), 7)
        .expect("random adapter");
    engine.add_adapter("bench", &adapter).expect("add adapter");
    let adapted = engine.with_adapter(Some("bench")).expect("adapter handle");
    let dir = std::path::Path::new("target/bench/merged-adapter");
    adapter.save(dir).expect("save adapter");
    let merged = Engine::open(
        model_path(),
        &EngineOptions {
            threads,
            merge_adapter: Some(dir.to_path_buf()),
            ..Default::default()
        },
    )
    .expect("merged engine");
    let mut out = serde_json::Map::new();
    for (name, set) in [("single", &prompts[..1]), ("variants9", prompts)] {
        let times = time_interleaved(
            runs,
            &mut [
                &mut || drop(engine.score_many(set).expect("score")),
                &mut || drop(adapted.score_many(set).expect("score")),
                &mut || drop(merged.score_many(set).expect("score")),
            ],
        );
        let [base_s, adapter_s, merged_s] = [0, 1, 2].map(|i| median(times[i].clone()));
        out.insert(
            name.into(),
            json!({
                "base_median_s": base_s, "adapter_median_s": adapter_s, "merged_median_s": merged_s,
                "ratio": adapter_s / base_s, "merged_ratio": merged_s / base_s,
                "base_runs_s": times[0], "adapter_runs_s": times[1], "merged_runs_s": times[2],
            }),
        );
    }
    json!({"rank": 16, "modules": modules, "timings": out})
}

/// One score of `prompt` on every kernel path in `paths` (one engine each), alternating: per
/// run, each path once in turn, after one warm-up each.
fn kernel_paths(
    paths: &[KernelPath],
    prompt: &LabelPrompt,
    runs: usize,
    threads: usize,
) -> serde_json::Value {
    let engines: Vec<Engine> = paths
        .iter()
        .map(|&kernel| {
            let engine = Engine::open(
                model_path(),
                &EngineOptions {
                    threads,
                    kernel: Some(kernel),
                    ..Default::default()
                },
            )
            .expect("open");
            assert_eq!(engine.kernel_path(), Some(kernel));
            engine
        })
        .collect();
    let score = |e: &Engine| e.score(prompt).expect("score");
    let first: Vec<_> = engines.iter().map(score).collect();
    let mut times = vec![Vec::with_capacity(runs); engines.len()];
    for _ in 0..runs {
        for (e, t) in engines.iter().zip(&mut times) {
            let start = Instant::now();
            score(e);
            t.push(start.elapsed().as_secs_f64());
        }
    }
    let medians: Vec<f64> = times.iter().map(|t| median(t.clone())).collect();
    let mut out = serde_json::Map::new();
    for (i, &kernel) in paths.iter().enumerate() {
        let max_dp = first[i]
            .probs
            .iter()
            .zip(&first[0].probs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        out.insert(
            kernel.name().into(),
            json!({
                "median_s": medians[i], "runs_s": times[i],
                "ratio_to_first": medians[i] / medians[0],
                "expected_score": first[i].expected, "max_abs_dp_vs_first": max_dp,
            }),
        );
    }
    json!({"first": paths[0].name(), "load_average": load_average(), "paths": out})
}

fn main() {
    let runs = env_usize("BENCH_RUNS", 5);
    let threads = env_usize("BENCH_THREADS", 2);
    let engine = Engine::open(
        model_path(),
        &EngineOptions {
            threads,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}: run `make model` first"));
    let rubric = Rubric::builtin();
    let item = &rubric.items[0];
    let transcript =
        Transcript::new(&std::fs::read_to_string(TRANSCRIPT).expect("transcript")).expect("valid");
    let builder = PromptBuilder::default();
    let mut variants: Vec<(String, LabelPrompt)> = vec![(
        "neutral".into(),
        engine
            .rubric_prompt(&builder, &transcript, item, None, false)
            .expect("prompt"),
    )];
    for (id, text) in contexts() {
        variants.push((
            id,
            engine
                .rubric_prompt(&builder, &transcript, item, Some(&text), false)
                .expect("prompt"),
        ));
    }
    let prompts: Vec<LabelPrompt> = variants.iter().map(|(_, p)| p.clone()).collect();
    let prompt_tokens: Vec<usize> = prompts
        .iter()
        .map(|p| engine.tokenize(&p.text).expect("tokenize").len())
        .collect();
    std::fs::create_dir_all("target/bench").expect("mkdir");
    let model_name = std::path::Path::new(&model_path())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let peer = json!({
        "model": model_name,
        "variants": variants.iter().map(|(id, p)| json!({"id": id, "text": p.text})).collect::<Vec<_>>(),
    });
    std::fs::write(
        "target/bench/prompts.json",
        serde_json::to_string_pretty(&peer).unwrap(),
    )
    .expect("write");

    let paths: Vec<KernelPath> = match std::env::var("BENCH_PATHS") {
        Ok(v) if v == "none" => Vec::new(),
        Ok(v) => v
            .split(',')
            .filter_map(|s| KernelPath::resolve(s).expect("BENCH_PATHS"))
            .collect(),
        Err(_) => KernelPath::supported(),
    };
    if std::env::var("BENCH_ONLY_PATHS").is_ok_and(|v| v == "1") {
        let report = json!({
            "model": model_name, "threads": threads, "runs": runs,
            "prompt_tokens": prompt_tokens[0],
            "kernel_paths": kernel_paths(&paths, &prompts[0], runs, threads),
        });
        std::fs::write(
            "target/bench/engine_paths.json",
            serde_json::to_string_pretty(&report).unwrap(),
        )
        .expect("write");
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
        return;
    }
    let (single, single_runs, single_eval) = time_runs(runs, || {
        let (_, stats) = engine.score_many(&prompts[..1]).expect("score");
        stats.tokens_evaluated
    });
    let (shared, shared_runs, shared_eval) = time_runs(runs, || {
        let (_, stats) = engine.score_many(&prompts).expect("score");
        stats.tokens_evaluated
    });
    // Before the merged and per-path engines are opened, which raise the high-water mark.
    let (rss, engine_threads) = (peak_rss_mib(), engine.threads());
    let adapter = adapter_overhead(&engine, &prompts, runs, threads);
    drop(engine);
    let by_path = (!paths.is_empty()).then(|| kernel_paths(&paths, &prompts[0], runs, threads));
    let all_prompt_tokens: usize = prompt_tokens.iter().sum();
    let report = json!({
        "model": model_name,
        "threads": engine_threads,
        "runs": runs,
        "single": {
            "median_s": single, "runs_s": single_runs, "prompt_tokens": prompt_tokens[0],
            "tokens_evaluated": single_eval, "prompt_tokens_per_s": prompt_tokens[0] as f64 / single,
        },
        "variants9": {
            "median_s": shared, "runs_s": shared_runs, "prompt_tokens": all_prompt_tokens,
            "tokens_evaluated": shared_eval, "prompt_tokens_per_s": all_prompt_tokens as f64 / shared,
            "ratio_to_single": shared / single,
        },
        "adapter": adapter,
        "peak_rss_mib": rss,
        "kernel_paths": by_path,
    });
    std::fs::write(
        "target/bench/engine.json",
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .expect("write");
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
