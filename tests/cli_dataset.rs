//! `debias-guard audit-dataset` on a generated tiny model: one JSON line per transcript, the
//! aggregate with intervals and CSV, resuming after a cut line, refusing a transcript that
//! changed under its output, and the flagged exit status.

use debias_guard::guard::dataset::{read_records, DatasetSummary};
use debias_guard_testkit::{
    scratch_dir, tiny_model, TinySpec, SAMPLE_TRANSCRIPT, SHORT_TRANSCRIPT,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_debias-guard");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("DEBIAS_GUARD_MODEL")
        .output()
        .expect("the binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn dataset(dir: &Path) -> PathBuf {
    let input = dir.join("transcripts");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.txt"), SHORT_TRANSCRIPT).unwrap();
    std::fs::write(input.join("b.txt"), SAMPLE_TRANSCRIPT).unwrap();
    std::fs::write(
        input.join("c.txt"),
        format!("{SHORT_TRANSCRIPT}\nSTUDENT: And then we add them."),
    )
    .unwrap();
    input
}

#[test]
fn a_dataset_audit_streams_aggregates_and_resumes() {
    let model = tiny_model("cli_dataset", &TinySpec::default());
    let dir = scratch_dir("cli_dataset");
    let input = dataset(&dir);
    let out = dir.join("records.jsonl");
    let summary = dir.join("summary.json");
    let csv = dir.join("rows.csv");
    let args = [
        "audit-dataset",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--summary",
        s(&summary),
        "--csv",
        s(&csv),
        "--items",
        "student_reasoning",
        "--threads",
        "1",
    ];
    let first = run(&args);
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    let records = read_records(&text).unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    let agg: DatasetSummary =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(agg.transcripts, 3);
    assert_eq!(agg.cells.len(), records[0].items[0].categories.len());
    for c in &agg.cells {
        let p = c.mean_abs_delta.point.expect("a mean |Δ|");
        let [lo, hi] = c
            .mean_abs_delta
            .ci95
            .expect("an interval over 3 transcripts");
        assert!(lo <= p && p <= hi, "{c:?}");
    }
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(rows.lines().count(), 1 + 3 * agg.cells.len());

    // An interrupted run: the last line is cut. The rerun keeps a and b, audits c again and
    // ends with the same records.
    let cut = &text[..text.len() - 20];
    std::fs::write(&out, cut).unwrap();
    let second = run(&args);
    assert_eq!(second.status.code(), Some(0), "{second:?}");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("resuming: 2 of 3"), "{stderr}");
    assert!(stderr.contains("[1/1] c"), "{stderr}");
    let again = read_records(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(again.len(), 3);
    assert_eq!(again[2], records[2]);

    // A transcript that changed since its line was written is refused (status 1).
    std::fs::write(input.join("a.txt"), SAMPLE_TRANSCRIPT).unwrap();
    let changed = run(&args);
    assert_eq!(changed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&changed.stderr).contains("changed"));
}

#[test]
fn flags_fail_the_run_only_when_asked() {
    let model = tiny_model("cli_dataset", &TinySpec::default());
    let dir = scratch_dir("cli_dataset_flags");
    let input = dataset(&dir);
    let jsonl = dir.join("set.jsonl");
    let lines: String = ["a", "b"]
        .iter()
        .map(|id| {
            let text = std::fs::read_to_string(input.join(format!("{id}.txt"))).unwrap();
            serde_json::json!({"id": id, "transcript": text}).to_string() + "\n"
        })
        .collect();
    std::fs::write(&jsonl, lines).unwrap();
    // A zero threshold and k = 0 flag every category that moves at all.
    let args = |out: &Path, fail: bool| {
        let mut a: Vec<String> = [
            "audit-dataset",
            "--model",
            s(&model),
            "--input",
            s(&jsonl),
            "--out",
            s(out),
            "--items",
            "student_reasoning",
            "--abs-threshold",
            "0",
            "--k",
            "0",
            "--threads",
            "1",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        if fail {
            a.push("--fail-on-flag".into());
        }
        a
    };
    let plain = dir.join("plain.jsonl");
    let out = Command::new(BIN)
        .args(args(&plain, false))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let gate = dir.join("gate.jsonl");
    let out = Command::new(BIN).args(args(&gate, true)).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(read_records(&std::fs::read_to_string(&gate).unwrap())
        .unwrap()
        .iter()
        .all(|r| r.flagged));
}

#[test]
fn a_merged_adapter_scores_like_the_runtime_one() {
    use debias_guard::adapter::PeftConfig;
    let model = tiny_model("cli_dataset", &TinySpec::default());
    let dir = scratch_dir("cli_dataset_merge");
    let transcript = dir.join("t.txt");
    std::fs::write(&transcript, SHORT_TRANSCRIPT).unwrap();
    let modules: Vec<&str> = debias_guard::model::Projection::ALL
        .iter()
        .map(|p| p.hf_module())
        .collect();
    let config = PeftConfig::lora(4, 8.0, &modules);
    let adapter = debias_guard_testkit::random_adapter(&model, config, 9);
    let adapter_dir = dir.join("adapter");
    adapter
        .save_as(&adapter_dir, debias_guard::hf::StoreDtype::F32)
        .unwrap();
    let score = |extra: &[&str]| -> f64 {
        let mut args = vec![
            "score",
            "--model",
            s(&model),
            "--transcript",
            s(&transcript),
            "--items",
            "student_reasoning",
            "--threads",
            "1",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["distribution"]["expected"].as_f64().unwrap()
    };
    let base = score(&[]);
    let runtime = score(&["--adapter", s(&adapter_dir)]);
    let merged = score(&["--adapter", s(&adapter_dir), "--merge-adapter"]);
    assert!(
        (runtime - base).abs() > 1e-4,
        "the adapter must move the score"
    );
    assert!((runtime - merged).abs() < 1e-4, "{runtime} vs {merged}");
    let refused = run(&[
        "audit",
        "--model",
        s(&model),
        "--transcript",
        s(&transcript),
        "--adapter",
        s(&adapter_dir),
        "--merge-adapter",
        "--compare-base",
    ]);
    assert_eq!(refused.status.code(), Some(1));
}
