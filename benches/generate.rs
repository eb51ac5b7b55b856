//! Generation benchmark on the real default model: reasoned-mode generation of the variants of
//! one transcript, one prompt at a time (`Engine::generate` per variant) against the lock-step
//! batch (`Engine::generate_many`), each followed by reading the ratings as reasoned mode does.
//!
//! Three cases, each timed serial and batched alternately, run by run, so both see the same
//! machine load:
//! - `audit9`: neutral + 8 contexts, then the 9 label prompts in one prefix-shared score pass;
//! - `pairs4`: neutral + 3 contexts (a `pairs` record); batched, the label prompts are scored in
//!   one prefix-shared pass as `pairs` does now; serial, each is generated and scored alone;
//! - `single`: one reasoned score (the neutral prompt alone: generate, then score), the unit the
//!   audit is compared with.
//!
//! Generation runs `BENCH_TOKENS` (64) tokens per prompt without stop strings (only an
//! end-of-turn token ends a branch early), greedy. Run: `cargo bench --bench generate`
//! (results: target/bench/generate.json). Env: BENCH_RUNS (3), BENCH_THREADS (2), BENCH_TOKENS,
//! BENCH_CASES (comma-separated case names; default all).

use debias_guard::guard::reasoned::{label_prompt_after, reasoning_prompt};
use debias_guard::{
    Engine, EngineOptions, GenerateOptions, Generation, LabelPrompt, PromptBuilder, Rubric,
    Transcript,
};
use serde_json::json;
use std::time::Instant;

mod common;
use common::*;

/// One reasoned pass over `prompts`: generations (serial or batched), then the ratings read
/// after them (`shared`: one prefix-shared pass, else each label prompt alone). Returns the
/// tokens generated.
fn reasoned_pass(
    engine: &Engine,
    builder: &PromptBuilder,
    prompts: &[String],
    options: &GenerateOptions,
    batched: bool,
    shared: bool,
) -> usize {
    let item = &Rubric::builtin().items[0];
    let generations: Vec<Generation> = if batched {
        engine
            .generate_many(prompts, options)
            .expect("generate_many")
    } else {
        prompts
            .iter()
            .map(|p| engine.generate(p, options).expect("generate"))
            .collect()
    };
    let labels: Vec<LabelPrompt> = prompts
        .iter()
        .zip(&generations)
        .map(|(p, g)| label_prompt_after(p, g.text.trim_end(), item, builder))
        .collect();
    if shared {
        engine.score_many(&labels).expect("score");
    } else {
        for l in &labels {
            engine.score(l).expect("score");
        }
    }
    generations.iter().map(|g| g.tokens.len()).sum()
}

fn main() {
    let runs = env_usize("BENCH_RUNS", 3);
    let threads = env_usize("BENCH_THREADS", 2);
    let tokens = env_usize("BENCH_TOKENS", 64);
    let engine = Engine::open(
        model_path(),
        &EngineOptions {
            threads,
            ..EngineOptions::default()
        },
    )
    .expect("open the default model (make model)");
    let builder = PromptBuilder::default();
    let transcript =
        Transcript::new(&std::fs::read_to_string(TRANSCRIPT).expect("transcript")).unwrap();
    let item = &Rubric::builtin().items[0];
    let contexts = contexts();
    let prompts: Vec<String> = std::iter::once(None)
        .chain(contexts.iter().map(|(_, text)| Some(text.as_str())))
        .map(|c| reasoning_prompt(&engine, &builder, &transcript, item, c, false).unwrap())
        .collect();
    let prompt_tokens = engine.tokenize(&prompts[0]).unwrap().len();
    let options = GenerateOptions {
        max_tokens: tokens,
        ..GenerateOptions::default()
    };
    // Greedy: the batch must give the serial tokens.
    let serial: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| engine.generate(p, &options).unwrap().tokens)
        .collect();
    let batched: Vec<Vec<u32>> = engine
        .generate_many(&prompts, &options)
        .unwrap()
        .into_iter()
        .map(|g| g.tokens)
        .collect();
    let same_tokens = serial == batched;
    eprintln!(
        "{} prompts of ~{prompt_tokens} tokens; batched tokens equal serial: {same_tokens}",
        prompts.len()
    );

    // (case, prompts, whether the serial arm's ratings are read in one shared pass); the batched
    // arm always reads them in one shared pass. `pairs4`'s serial arm is `pairs` as it was:
    // every answer generated, then rated, on its own.
    let cases: [(&str, &[String], bool); 3] = [
        ("single", &prompts[..1], true),
        ("audit9", &prompts[..], true),
        ("pairs4", &prompts[..4], false),
    ];
    let mut results = serde_json::Map::new();
    let mut medians = std::collections::BTreeMap::new();
    let only = std::env::var("BENCH_CASES").ok();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|v| v.split(',').any(|c| c == name))
    };
    for (name, set, serial_shared) in cases.into_iter().filter(|c| wanted(c.0)) {
        let (mut s, mut b) = (Vec::new(), Vec::new());
        let mut generated = 0;
        for run in 0..runs {
            // Alternate which goes first, so neither always runs on a warmer or quieter machine.
            for batched in [run % 2 == 1, run % 2 == 0] {
                let t = Instant::now();
                let shared = batched || serial_shared;
                generated = reasoned_pass(&engine, &builder, set, &options, batched, shared);
                let secs = t.elapsed().as_secs_f64();
                if batched {
                    b.push(secs)
                } else {
                    s.push(secs)
                }
                eprintln!(
                    "{name} run {run} {}: {secs:.2} s",
                    if batched { "batched" } else { "serial" }
                );
            }
        }
        let (sm, bm) = (median(s.clone()), median(b.clone()));
        medians.insert(name, (sm, bm));
        results.insert(
            name.into(),
            json!({
                "prompts": set.len(), "tokens_generated": generated,
                "serial_median_s": sm, "batched_median_s": bm, "speedup": sm / bm,
                "serial_runs_s": s, "batched_runs_s": b,
            }),
        );
    }
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let (single, audit, pairs) = (
        medians.get("single").map(|m| m.0),
        medians.get("audit9"),
        medians.get("pairs4"),
    );
    let summary = json!({
        "audit9_batched_over_single": ratio(audit.map(|m| m.1), single),
        "audit9_serial_over_single": ratio(audit.map(|m| m.0), single),
        "pairs4_speedup": ratio(pairs.map(|m| m.0), pairs.map(|m| m.1)),
    });
    let out = json!({
        "model": model_path(), "threads": threads, "runs": runs, "max_tokens": tokens,
        "prompt_tokens": prompt_tokens, "kernel": engine.kernel_path().map(|k| k.to_string()),
        "batched_tokens_equal_serial": same_tokens, "cases": results, "summary": summary,
    });
    std::fs::create_dir_all("target/bench").unwrap();
    std::fs::write(
        "target/bench/generate.json",
        serde_json::to_string_pretty(&out).unwrap(),
    )
    .unwrap();
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
