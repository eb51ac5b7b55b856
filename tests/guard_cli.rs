//! The `debias-guard` command line on a generated tiny model: audit, check and render write
//! what they promise, and bad input exits with a message that says what to fix.

mod guard_common;

use debias_guard::guard::AuditReport;
use debias_guard_testkit::{tiny_model, TinySpec, SHORT_TRANSCRIPT};
use guard_common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("guard_cli_{name}"))
}

/// A transcript file of its own for each call: tests run in parallel, and one test rewriting a
/// shared file while another reads it would hand the reader an empty transcript.
fn transcript_file() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = tmp(&format!("transcript-{n}.txt"));
    std::fs::write(&path, SHORT_TRANSCRIPT).unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_debias-guard"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn audit_writes_json_and_html_and_prints_a_table() {
    let model = tiny_model("default", &TinySpec::default());
    let transcript = transcript_file();
    let (json, html) = (tmp("out/report.json"), tmp("out/report.html"));
    let _ = std::fs::remove_dir_all(tmp("out"));
    let out = run(&[
        "audit",
        "--model",
        s(&model),
        "--transcript",
        s(&transcript),
        "--items",
        "student_reasoning",
        "--split",
        "heldout",
        "--threads",
        "1",
        "--json",
        s(&json),
        "--html",
        s(&html),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Requester expectation"), "{stdout}");
    assert!(stdout.contains("verdict:"), "{stdout}");
    // Progress goes to stderr (plain lines: stderr is not a terminal here), never stdout.
    assert!(stderr.contains("audit: 0/"), "{stderr}");
    assert!(!stdout.contains("tokens ("), "{stdout}");
    let report =
        AuditReport::from_json(&std::fs::read_to_string(&json).unwrap(), "report.json").unwrap();
    assert_eq!(report.rubric_items.len(), 1);
    assert_eq!(report.rubric_items[0].id, "student_reasoning");
    assert_eq!(report.settings.threads, 1);
    assert_eq!(
        report.transcript.name,
        transcript.file_name().unwrap().to_str().unwrap()
    );
    assert!(report.timings.model_load_seconds.is_some());
    let page = std::fs::read_to_string(&html).unwrap();
    let problems = html_problems(&page);
    assert!(problems.is_empty(), "{problems:#?}");

    // `render` rebuilds the same page from the JSON.
    let again = tmp("out/again.html");
    let out = run(&["render", "--json", s(&json), "--html", s(&again)]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(std::fs::read_to_string(&again).unwrap(), page);

    // --fail-on-flag exits 3 when something is flagged (a zero threshold flags everything).
    let out = run(&[
        "audit",
        "--model",
        s(&model),
        "--transcript",
        s(&transcript),
        "--items",
        "student_reasoning",
        "--split",
        "heldout",
        "--abs-threshold",
        "0",
        "--k",
        "0",
        "--fail-on-flag",
    ]);
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
}

#[test]
fn check_prints_both_scores_and_a_flag() {
    let model = tiny_model("default", &TinySpec::default());
    let transcript = transcript_file();
    let json = tmp("check.json");
    let out = run(&[
        "check",
        "--model",
        s(&model),
        "--transcript",
        s(&transcript),
        "--context",
        "The teacher has taught for 30 years.",
        "--json",
        s(&json),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for id in [
        "instructional_dialogue",
        "student_reasoning",
        "teacher_uptake",
    ] {
        assert!(stdout.contains(id), "{stdout}");
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(results.as_array().unwrap().len(), 3);
    assert!(results[0]["delta"]["delta"].is_number());
}

#[test]
fn bad_input_exits_with_a_message_that_says_what_to_fix() {
    let model = tiny_model("default", &TinySpec::default());
    let transcript = transcript_file();
    let base = ["--model", s(&model), "--transcript", s(&transcript)];
    let fails = |args: &[&str], expect: &str| {
        let out = run(args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}\n{stdout}\n{stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    };
    let audit = |extra: &[&str]| -> Vec<String> {
        ["audit"]
            .iter()
            .chain(&base)
            .chain(extra)
            .map(|x| x.to_string())
            .collect()
    };

    fails(
        &as_refs(&audit(&["--abs-threshold", "-1"])),
        "abs_threshold must be",
    );
    fails(&as_refs(&audit(&["--k", "NaN"])), "k must be");
    fails(
        &as_refs(&audit(&["--items", "no_such_item"])),
        "unknown rubric item `no_such_item`",
    );

    let bad = tmp("not_json.json");
    std::fs::write(&bad, "{\n  \"version\": 1,\n  \"categories\": [\n}\n").unwrap();
    fails(
        &as_refs(&audit(&["--probes", s(&bad)])),
        "guard_cli_not_json.json, line 4: expected value",
    );
    let missing = tmp("missing_field.json");
    std::fs::write(&missing, "{\n  \"version\": 1,\n  \"categories\": []\n}\n").unwrap();
    fails(
        &as_refs(&audit(&["--probes", s(&missing)])),
        "missing field `controls`",
    );

    let long = "x".repeat(debias_guard::prompt::MAX_CONTEXT_CHARS + 1);
    let mut check: Vec<&str> = vec!["check"];
    check.extend(base);
    check.extend(["--context", long.as_str()]);
    fails(&check, "the limit is 1000");

    fails(
        &[
            "audit",
            "--model",
            "models/no-such-model.gguf",
            "--transcript",
            s(&transcript),
        ],
        "cannot be read",
    );
}

/// `audit --adapter --compare-base` audits the base model and the adapter on the same prompts
/// and writes one comparison (both audits, per-category before/after) as JSON and HTML.
#[test]
fn audit_compares_an_adapter_with_the_base_model() {
    use debias_guard::guard::compare::AdapterComparison;
    let model = tiny_model("default", &TinySpec::default());
    let config = debias_guard::Engine::open(&model, &Default::default())
        .unwrap()
        .config()
        .clone();
    let peft = debias_guard::adapter::PeftConfig::lora(4, 8.0, &["q_proj", "v_proj", "down_proj"]);
    let adapter_dir = tmp("cmp/adapter");
    debias_guard_testkit::tiny_adapter(&config, peft, 11)
        .unwrap()
        .save(&adapter_dir)
        .unwrap();
    let transcript = transcript_file();
    let (json, html) = (tmp("cmp/report.json"), tmp("cmp/report.html"));
    let args = [
        "audit",
        "--model",
        s(&model),
        "--adapter",
        s(&adapter_dir),
        "--compare-base",
        "--quiet",
        "--transcript",
        s(&transcript),
        "--items",
        "student_reasoning",
        "--threads",
        "1",
        "--json",
        s(&json),
        "--html",
        s(&html),
    ];
    let out = run(&args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("base model vs adapter"), "{stdout}");
    assert!(
        !stderr.contains("audit (adapter):"),
        "--quiet shows no progress: {stderr}"
    );
    let cmp: AdapterComparison =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(cmp.adapter, "adapter");
    assert_eq!(cmp.base.items.len(), 1);
    // Every category plus the controls, for the one item.
    assert_eq!(
        cmp.changes.len(),
        cmp.base.items[0].plain.categories.len() + 1
    );
    // The adapter really runs: its neutral score differs from the base model's.
    let neutral = |r: &AuditReport| r.items[0].plain.neutral.distribution.expected;
    assert_ne!(neutral(&cmp.base), neutral(&cmp.adapted));
    let sycophancy = cmp
        .changes
        .iter()
        .find(|c| c.category_id == "sycophancy")
        .unwrap();
    let mean_abs = |r: &AuditReport| {
        let d: Vec<f64> = r.items[0]
            .plain
            .variants
            .iter()
            .filter(|v| v.category.as_deref() == Some("sycophancy"))
            .map(|v| v.delta.as_ref().unwrap().abs_delta)
            .collect();
        d.iter().sum::<f64>() / d.len() as f64
    };
    assert!((sycophancy.base_mean_abs_delta - mean_abs(&cmp.base)).abs() < 1e-12);
    assert!((sycophancy.adapted_mean_abs_delta - mean_abs(&cmp.adapted)).abs() < 1e-12);
    // The comparison table names categories as the audit tables do: by display name.
    let table = stdout
        .split("base model vs adapter")
        .nth(1)
        .expect("comparison table");
    assert!(table.contains(&sycophancy.name), "{table}");
    assert!(
        !table
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("sycophancy")),
        "{table}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Base model vs adapter") && page.matches("<iframe").count() == 2);

    // --compare-base without an adapter is a usage error.
    let out = run(&[
        "audit",
        "--model",
        s(&model),
        "--transcript",
        s(&transcript),
        "--compare-base",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("--compare-base needs --adapter"),
        "{:?}",
        text(&out)
    );
}
