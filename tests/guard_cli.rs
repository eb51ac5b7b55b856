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

fn transcript_file() -> PathBuf {
    let path = tmp("transcript.txt");
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
    assert!(stdout.contains("sycophancy"), "{stdout}");
    assert!(stdout.contains("verdict:"), "{stdout}");
    let report =
        AuditReport::from_json(&std::fs::read_to_string(&json).unwrap(), "report.json").unwrap();
    assert_eq!(report.rubric_items.len(), 1);
    assert_eq!(report.rubric_items[0].id, "student_reasoning");
    assert_eq!(report.settings.threads, 1);
    assert_eq!(report.transcript.name, "guard_cli_transcript.txt");
    assert!(report.timings.model_load_seconds.is_some());
    let page = std::fs::read_to_string(&html).unwrap();
    let problems = html_problems(&page);
    assert!(problems.is_empty(), "{problems:#?}");

    // `render` rebuilds the same page from the JSON.
    let again = tmp("out/again.html");
    let out = run(&["render", "--json", s(&json), "--html", s(&again)]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(std::fs::read_to_string(&again).unwrap(), page);

    // --fail-on-flag exits 2 when something is flagged (a zero threshold flags everything).
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
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
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
        "make model",
    );
}
