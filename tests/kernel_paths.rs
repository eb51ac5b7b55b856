//! Every kernel path the CPU supports (`avx512`, `avx2`, `portable`) gives the same model
//! results: whole-model scores on a tiny model agree across paths (the SIMD paths bit for bit),
//! each path matches transformers on the tiny Hugging Face bases and llama.cpp (F32 weights) on
//! the real default model within those tests' own tolerances, and `DEBIAS_GUARD_KERNEL` forces
//! a path (checked in child processes, since the variable is read once per process). The
//! 8-bit packed weights (`PackedFormat::Q8`, the default) run on every path and match the f32
//! panels: the same weights on Q4_1 models; a model whose weights are on no grid stays f32.
//! Our attention (the direct few-row path of decode steps and lock-step branches, the in-place
//! softmax of larger chunks) gives candle's results (`DEBIAS_GUARD_ATTENTION=candle` in a child
//! process).

use debias_guard::model::kernels::{KernelPath, PackedFormat, KERNEL_ENV};
use debias_guard::model::{BranchState, WeightFormat, ATTENTION_ENV};
use debias_guard::{
    Engine, EngineOptions, GenerateOptions, LabelPrompt, PromptBuilder, Rubric, Transcript,
};
use debias_guard_testkit::{
    max_abs_diff, real_model_path, scratch_dir, tiny_model, write_adapter_fixtures, TinySpec,
    SAMPLE_TRANSCRIPT,
};
use serde_json::Value;
use std::path::Path;

/// Largest |Δp| of a label between the portable path and a SIMD path (separate multiply and add
/// against fused: rounding only).
const PORTABLE_PROB_TOL: f64 = 1e-5;
/// Largest |Δlogit| / max(1, |logit|) between the portable path and a SIMD path.
const PORTABLE_LOGIT_TOL: f32 = 1e-5;

fn engine(path: &Path, kernel: KernelPath, format: WeightFormat) -> Engine {
    packed_engine(path, kernel, format, PackedFormat::default())
}

fn packed_engine(
    path: &Path,
    kernel: KernelPath,
    format: WeightFormat,
    packed: PackedFormat,
) -> Engine {
    let options = EngineOptions {
        threads: 2,
        weight_format: format,
        kernel: Some(kernel),
        packed_format: Some(packed),
        ..Default::default()
    };
    Engine::open(path, &options).unwrap_or_else(|e| panic!("{kernel}: {e}"))
}

/// Largest |Δlogit| / max(1, |logit|) between 8-bit and f32 panels on a Q4_1 model, whose
/// levels the 8-bit grid holds exactly: f32 rounding of another summation order only.
const Q8_EXACT_LOGIT_TOL: f32 = 1e-4;

/// Label distributions, the logits of a few rows of a long prompt (prefill: more rows than
/// `Q8_ROWS_MAX`, dequantized panels) and 16 greedy tokens (decode: 8-bit panels read directly).
fn q8_vs_f32(path: &Path, kernel: KernelPath, q8_held: PackedFormat) -> (f64, f32, bool) {
    let run = |packed| {
        let engine = packed_engine(path, kernel, WeightFormat::DenseF32, packed);
        let held = if packed == PackedFormat::Q8 {
            q8_held
        } else {
            packed
        };
        assert_eq!(engine.packed_format(), Some(held), "{kernel}");
        let prompts = prompts(&engine);
        let (dists, _) = engine.score_many(&prompts).unwrap();
        let mut tokens = engine.tokenize(&prompts[0].text).unwrap();
        while tokens.len() < 300 {
            tokens.extend_from_within(..tokens.len().min(300 - tokens.len()));
        }
        let logits = engine.logits(&tokens, &[0, 150, 299]).unwrap();
        let options = GenerateOptions {
            max_tokens: 16,
            ..GenerateOptions::default()
        };
        let generated = engine.generate(&prompts[1].text, &options).unwrap().tokens;
        (dists, logits, generated)
    };
    let (fd, fl, fg) = run(PackedFormat::F32);
    let (qd, ql, qg) = run(PackedFormat::Q8);
    let worst_p = fd
        .iter()
        .zip(&qd)
        .map(|(a, b)| max_abs_diff(&a.probs, &b.probs))
        .fold(0.0, f64::max);
    let worst_l = fl
        .iter()
        .flatten()
        .zip(ql.iter().flatten())
        .map(|(a, b)| (a - b).abs() / a.abs().max(1.0))
        .fold(0.0, f32::max);
    (worst_p, worst_l, fg == qg)
}

#[test]
fn q8_panels_match_f32_panels_on_every_path() {
    let spec = |dtype| TinySpec {
        hidden: 96,
        ffn: 224,
        heads: 6,
        kv_heads: 2,
        untied_output: true,
        dtype,
        ..Default::default()
    };
    use candle_core::quantized::GgmlDType;
    let exact = tiny_model("kernel-paths-q8-q4_1", &spec(GgmlDType::Q4_1));
    let rounded = tiny_model("kernel-paths-q8-f32", &spec(GgmlDType::F32));
    for kernel in KernelPath::supported() {
        let (p, l, same) = q8_vs_f32(&exact, kernel, PackedFormat::Q8);
        eprintln!("{kernel} Q4_1 model: q8 vs f32 max |Δp| {p:.2e}, rel |Δlogit| {l:.2e}, greedy equal {same}");
        assert!(l <= Q8_EXACT_LOGIT_TOL, "{kernel}: logits {l}");
        assert!(same, "{kernel}: greedy tokens differ on exact weights");
        // Random f32 weights are on no grid: they stay f32, with the very same results.
        let (p, l, same) = q8_vs_f32(&rounded, kernel, PackedFormat::F32);
        assert!(p == 0.0 && l == 0.0 && same, "{kernel}: {p} {l} {same}");
    }
}

fn prompts(engine: &Engine) -> Vec<LabelPrompt> {
    let rubric = Rubric::builtin();
    let transcript = Transcript::new(SAMPLE_TRANSCRIPT).unwrap();
    let builder = PromptBuilder::default();
    [None, Some("The teacher is new to the school.")]
        .into_iter()
        .map(|context| {
            engine
                .rubric_prompt(&builder, &transcript, &rubric.items[0], context, false)
                .unwrap()
        })
        .collect()
}

#[test]
fn tiny_model_scores_agree_across_paths() {
    // Wide enough for several panels and ragged edges (hidden 96 = 3 panels, ffn 200, untied
    // output of the vocabulary), long prompts (row tiles) and single rows (the label tokens).
    let spec = TinySpec {
        hidden: 96,
        ffn: 200,
        heads: 6,
        kv_heads: 2,
        untied_output: true,
        ..Default::default()
    };
    let path = tiny_model("kernel-paths-tiny", &spec);
    let supported = KernelPath::supported();
    let mut results = Vec::new();
    for &kernel in &supported {
        let engine = engine(&path, kernel, WeightFormat::DenseF32);
        assert_eq!(engine.kernel_path(), Some(kernel));
        let prompts = prompts(&engine);
        let (dists, _) = engine.score_many(&prompts).unwrap();
        let tokens = engine.tokenize(&prompts[0].text).unwrap();
        let rows: Vec<usize> = vec![0, tokens.len() / 2, tokens.len() - 1];
        let logits = engine.logits(&tokens, &rows).unwrap();
        results.push((kernel, dists, logits));
    }
    let (first, first_dists, first_logits) = &results[0];
    for (kernel, dists, logits) in &results[1..] {
        let (mut worst_p, mut worst_l) = (0.0f64, 0.0f32);
        for (a, b) in dists.iter().zip(first_dists) {
            worst_p = worst_p.max(max_abs_diff(&a.probs, &b.probs));
        }
        for (a, b) in logits.iter().flatten().zip(first_logits.iter().flatten()) {
            worst_l = worst_l.max((a - b).abs() / b.abs().max(1.0));
        }
        eprintln!("{kernel} vs {first}: max |Δp| {worst_p:.2e}, max rel |Δlogit| {worst_l:.2e}");
        if *kernel == KernelPath::Portable {
            assert!(worst_p <= PORTABLE_PROB_TOL, "{kernel}: |Δp| {worst_p}");
            assert!(worst_l <= PORTABLE_LOGIT_TOL, "{kernel}: logits {worst_l}");
        } else {
            // Same fused multiply-adds in the same order: the same bits.
            assert_eq!(logits, first_logits, "{kernel} vs {first}: logits");
            assert_eq!(dists, first_dists, "{kernel} vs {first}: distributions");
        }
    }
}

#[test]
fn quantized_weights_report_no_kernel_path() {
    let spec = TinySpec {
        dtype: candle_core::quantized::GgmlDType::Q8_0,
        ..Default::default()
    };
    let path = tiny_model("kernel-paths-q8", &spec);
    let quantized = engine(&path, KernelPath::Portable, WeightFormat::AsStored);
    assert_eq!(quantized.kernel_path(), None);
    let dense = engine(&path, KernelPath::Portable, WeightFormat::DenseF32);
    assert_eq!(dense.kernel_path(), Some(KernelPath::Portable));
}

#[test]
fn unsupported_forced_path_is_an_error() {
    let path = tiny_model("kernel-paths-unsupported", &TinySpec::default());
    for kernel in KernelPath::ALL {
        let options = EngineOptions {
            kernel: Some(kernel),
            ..Default::default()
        };
        match Engine::open(&path, &options) {
            Ok(e) => {
                assert!(kernel.is_supported());
                assert_eq!(e.kernel_path(), Some(kernel));
            }
            Err(e) => {
                assert!(!kernel.is_supported(), "{kernel}: {e}");
                assert!(e.to_string().contains("which this CPU lacks"), "{e}");
            }
        }
    }
}

/// Logits of the tiny Hugging Face bases against transformers (tests/peft_parity.rs has the
/// adapters; its tolerance, 1e-4 relative to max(1, |logit|)), on every path.
#[test]
fn hf_bases_match_transformers_on_every_path() {
    let fx: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft_reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let dir = scratch_dir("kernel-paths-peft");
    write_adapter_fixtures(&dir).expect("write fixtures");
    let as_u = |v: &Value| -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    };
    let rows = as_u(&fx["rows"]);
    for kernel in KernelPath::supported() {
        for (name, base) in fx["bases"].as_object().unwrap() {
            let engine = engine(
                &dir.join(base["dir"].as_str().unwrap()),
                kernel,
                WeightFormat::Auto,
            );
            assert_eq!(engine.kernel_path(), Some(kernel));
            let tokens: Vec<u32> = as_u(&base["tokens"]).iter().map(|&t| t as u32).collect();
            let got = engine.logits(&tokens, &rows).unwrap();
            let mut worst = 0f32;
            for (row, want) in got.iter().zip(base["logits"].as_array().unwrap()) {
                for (a, b) in row.iter().zip(want.as_array().unwrap()) {
                    let b = b.as_f64().unwrap() as f32;
                    worst = worst.max((a - b).abs() / b.abs().max(1.0));
                }
            }
            eprintln!("{kernel} {name}: worst relative difference to transformers {worst:.2e}");
            assert!(worst <= 1e-4, "{kernel} {name}: {worst}");
        }
    }
}

/// The real default model in dense f32 against llama.cpp on the same weights in F32
/// (tests/real_model_parity.rs; tolerance 1e-3 in probability), on every path.
#[test]
fn real_model_matches_llama_cpp_f32_on_every_path() {
    let fixture = |name: &str| -> Value {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let prompts = fixture("parity_prompts.json");
    let reference = fixture("llamacpp_reference_f32.json");
    let model = real_model_path();
    let mut per_path: Vec<(KernelPath, Vec<Vec<f64>>)> = Vec::new();
    for kernel in KernelPath::supported() {
        let engine = engine(&model, kernel, WeightFormat::DenseF32);
        assert_eq!(engine.kernel_path(), Some(kernel));
        let mut probs = Vec::new();
        for (p, refp) in prompts["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .zip(reference["prompts"].as_array().unwrap())
        {
            assert_eq!(p["id"], refp["id"]);
            let labels: Vec<String> = p["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
                .collect();
            let prompt = LabelPrompt {
                text: p["text"].as_str().unwrap().to_string(),
                values: debias_guard::rubric::label_values(&labels),
                labels,
                separator: " ".into(),
            };
            let dist = engine.score(&prompt).unwrap();
            let want: Vec<f64> = refp["distribution"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let diff = max_abs_diff(&dist.probs, &want);
            eprintln!("{kernel} {}: max |Δp| vs llama.cpp F32 {diff:.2e}", p["id"]);
            assert!(diff <= 1e-3, "{kernel} {}: {diff}", p["id"]);
            probs.push(dist.probs);
        }
        per_path.push((kernel, probs));
    }
    let (first, first_probs) = &per_path[0];
    for (kernel, probs) in &per_path[1..] {
        let worst = probs
            .iter()
            .zip(first_probs)
            .map(|(a, b)| max_abs_diff(a, b))
            .fold(0.0, f64::max);
        eprintln!("{kernel} vs {first}: max |Δp| {worst:.2e}");
        let tol = if *kernel == KernelPath::Portable {
            PORTABLE_PROB_TOL
        } else {
            0.0
        };
        assert!(worst <= tol, "{kernel} vs {first}: {worst}");
    }
}

/// Child mode of [`env_var_forces_the_path`]: opens a tiny model with the default options and
/// prints the path it runs (or the error). Does nothing unless the parent set the marker.
#[test]
fn env_child_reports_path() {
    let Ok(model) = std::env::var("KERNEL_PATHS_CHILD_MODEL") else {
        return;
    };
    match Engine::open(&model, &EngineOptions::default()) {
        Ok(e) => println!(
            "CHILD kernel={}",
            e.kernel_path().map_or("none", |k| k.name())
        ),
        Err(e) => println!("CHILD error={e}"),
    }
}

#[test]
fn env_var_forces_the_path() {
    let model = tiny_model("kernel-paths-env", &TinySpec::default());
    let run = |value: Option<&str>| {
        run_child(
            "env_child_reports_path",
            "KERNEL_PATHS_CHILD_MODEL",
            &model,
            (KERNEL_ENV, value),
        )
    };
    let best = KernelPath::auto().map_or("none", |k| k.name());
    assert_eq!(run(None), format!("kernel={best}"));
    assert_eq!(run(Some("auto")), format!("kernel={best}"));
    assert_eq!(run(Some("")), format!("kernel={best}"));
    for kernel in KernelPath::ALL {
        let got = run(Some(&kernel.name().to_uppercase()));
        if kernel.is_supported() {
            assert_eq!(got, format!("kernel={kernel}"));
        } else {
            assert!(got.starts_with("error="), "{kernel}: {got}");
            assert!(got.contains(KERNEL_ENV) && got.contains("lacks"), "{got}");
        }
    }
    let got = run(Some("neon"));
    assert!(
        got.starts_with("error=") && got.contains("unknown kernel path `neon`"),
        "{got}"
    );
}

/// Child mode of [`direct_attention_matches_candle`]: on a tiny model with `kv_heads` < `heads`,
/// a 300-token prefill (two chunks), 12 decode steps (one row each) and 4 lock-step steps of 3
/// branches (3 rows, a branch mask), printing every logit row read as JSON. Does nothing unless
/// the parent set the marker.
#[test]
fn attention_child_prints_logits() {
    let Ok(model) = std::env::var("ATTENTION_CHILD_MODEL") else {
        return;
    };
    let engine = match Engine::open(&model, &EngineOptions::default()) {
        Ok(e) => e,
        Err(e) => {
            println!("CHILD error={e}");
            return;
        }
    };
    let model = engine.model();
    let vocab = model.config().vocab_size as u32;
    let token = |i: usize| (i as u32 * 7919 + 11) % vocab;
    let mut rows: Vec<Vec<f32>> = Vec::new();
    let mut state = model.new_state();
    let prompt: Vec<u32> = (0..300).map(token).collect();
    let logits = model.forward(&prompt, &mut state, &[299], 256).unwrap();
    rows.extend(logits.to_vec2::<f32>().unwrap());
    let prefix = state.clone();
    for step in 0..12 {
        let logits = model
            .forward(&[token(1000 + step)], &mut state, &[0], 256)
            .unwrap();
        rows.extend(logits.to_vec2::<f32>().unwrap());
    }
    let mut branches = BranchState::new(prefix);
    let mut parents = vec![None; 3];
    for step in 0..4 {
        let tokens: Vec<u32> = (0..3).map(|b| token(2000 + 10 * step + b)).collect();
        let logits = model
            .forward_branches(&tokens, &parents, &[0, 1, 2], 256, &mut branches)
            .unwrap();
        rows.extend(logits.to_vec2::<f32>().unwrap());
        let first = branches.slots() - 3;
        parents = (0..3).map(|b| Some(first + b)).collect();
    }
    println!("CHILD {}", serde_json::to_string(&rows).unwrap());
}

#[test]
fn direct_attention_matches_candle() {
    let spec = TinySpec {
        heads: 4,
        kv_heads: 2,
        context_length: 512,
        ..TinySpec::default()
    };
    let model = tiny_model("kernel-paths-attention", &spec);
    let run = |value: Option<&str>| {
        run_child(
            "attention_child_prints_logits",
            "ATTENTION_CHILD_MODEL",
            &model,
            (ATTENTION_ENV, value),
        )
    };
    let logits = |value| -> Vec<Vec<f32>> { serde_json::from_str(&run(value)).unwrap() };
    let candle = logits(Some("candle"));
    let direct = logits(None);
    assert_eq!(logits(Some("AUTO")), direct);
    let bad = run(Some("flash"));
    assert!(
        bad.starts_with("error=") && bad.contains(ATTENTION_ENV) && bad.contains("flash"),
        "{bad}"
    );
    assert_eq!(candle.len(), 1 + 12 + 12);
    assert_eq!(direct.len(), candle.len());
    let mut worst = 0f32;
    for (a, b) in direct.iter().zip(&candle) {
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs() / y.abs().max(1.0));
        }
    }
    eprintln!("direct vs candle attention: max relative |Δlogit| {worst:.2e}");
    // Summation order and the softmax's exponential differ, nothing else.
    assert!(worst <= 1e-5, "{worst}");
    assert_ne!(direct, candle, "the child did not switch paths");
}

/// Runs the test `child` of this binary in a child process with `marker` set to `model` and the
/// variable `env.0` set to `env.1` (removed when `None`); returns what it printed after `CHILD `.
fn run_child(child: &str, marker: &str, model: &Path, env: (&str, Option<&str>)) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env(marker, model)
        .env_remove(env.0);
    if let Some(v) = env.1 {
        cmd.env(env.0, v);
    }
    let out = cmd.output().expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once("CHILD ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("child printed no result: {stdout}"))
        .to_string()
}
