//! The `debias-guard-trainer` binary: `synth` end to end, and bad input reported without a panic.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_debias-guard-trainer"))
}

#[test]
fn synth_writes_a_reproducible_split() {
    let dir = std::env::temp_dir().join(format!("dg-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |out: &str| {
        let status = bin()
            .args([
                "synth",
                "--seed",
                "4",
                "--transcripts",
                "30",
                "--test-fraction",
                "0.2",
            ])
            .arg("--out")
            .arg(dir.join(out))
            .status()
            .unwrap();
        assert!(status.success());
    };
    run("a");
    run("b");
    for f in ["train.jsonl", "test.jsonl"] {
        let a = std::fs::read(dir.join("a").join(f)).unwrap();
        assert_eq!(a, std::fs::read(dir.join("b").join(f)).unwrap());
    }
    let train = debias_guard_trainer::data::load_examples(&dir.join("a/train.jsonl")).unwrap();
    let test = debias_guard_trainer::data::load_examples(&dir.join("a/test.jsonl")).unwrap();
    assert_eq!((train.len(), test.len()), (24 * 3, 6 * 3));
}

#[test]
fn bad_options_and_files_fail_with_a_message() {
    let dir = std::env::temp_dir().join(format!("dg-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = bin()
        .args(["synth", "--transcripts", "0", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--transcripts 0"));

    let pairs = dir.join("pairs.jsonl");
    std::fs::write(&pairs, "{\"id\": \"x\"}\n").unwrap();
    let out = bin()
        .args(["train", "--model", "missing.gguf", "--pairs"])
        .arg(&pairs)
        .arg("--out")
        .arg(dir.join("run"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pairs.jsonl:1:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
