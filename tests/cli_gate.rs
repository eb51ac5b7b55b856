//! The `debias-guard` binary as a pipeline step and a gate, on a generated tiny model: exit
//! statuses (0 clean, 1 error, 2 usage, 3 flagged), JSON on stdout with the table on stderr,
//! the transcript from stdin, where the model is looked up, input sanity, the calibrated
//! `check` and a redacted audit report.

use debias_guard::guard::{self, AuditReport, ProbeCatalog};
use debias_guard::{PromptBuilder, Rubric, Transcript};
use debias_guard_testkit::{open_engine, scratch_dir, tiny_model, TinySpec, SHORT_TRANSCRIPT};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_debias-guard");
const ITEM: &str = "student_reasoning";

fn model() -> PathBuf {
    tiny_model("cli_gate", &TinySpec::default())
}

fn dir(name: &str) -> PathBuf {
    scratch_dir(&format!("cli_gate_{name}"))
}

fn transcript_file() -> PathBuf {
    let path = dir("inputs").join("lesson.txt");
    std::fs::write(&path, SHORT_TRANSCRIPT).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the binary with the model variables cleared, `stdin` on standard input, in `cwd`.
fn run_in(cwd: &Path, env: &[(&str, &Path)], args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("DEBIAS_GUARD_MODEL")
        .env_remove("XDG_CACHE_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn run(args: &[&str]) -> Output {
    run_in(&dir("cwd"), &[], args, "")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

/// `audit` of [`ITEM`] on the held-out wordings with one thread, then `extra` arguments.
fn audit_heldout(model: &Path, transcript: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "audit",
        "--model",
        s(model),
        "--transcript",
        s(transcript),
        "--items",
        ITEM,
        "--split",
        "heldout",
        "--threads",
        "1",
    ];
    args.extend(extra);
    run(&args)
}

fn check_args<'a>(model: &'a Path, transcript: &'a Path, context: &'a str) -> Vec<&'a str> {
    vec![
        "check",
        "--model",
        s(model),
        "--transcript",
        s(transcript),
        "--items",
        ITEM,
        "--threads",
        "1",
        "--context",
        context,
    ]
}

#[test]
fn exit_statuses_are_distinct() {
    let (m, t) = (model(), transcript_file());
    let ctx = "The teacher has taught for 30 years.";
    // 0: nothing reaches an unreachable threshold.
    let mut args = check_args(&m, &t, ctx);
    args.extend(["--flat", "--abs-threshold", "100", "--fail-on-flag"]);
    let out = run(&args);
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    // 3: everything reaches a zero threshold.
    let mut args = check_args(&m, &t, ctx);
    args.extend(["--flat", "--abs-threshold", "0", "--fail-on-flag"]);
    let out = run(&args);
    assert_eq!(code(&out), 3, "{:?}", text(&out));
    // Without --fail-on-flag a flag is still a clean run.
    let mut args = check_args(&m, &t, ctx);
    args.extend(["--flat", "--abs-threshold", "0"]);
    let out = run(&args);
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    assert!(text(&out).0.contains("YES"), "{:?}", text(&out));
    // 3 from audit too.
    let out = audit_heldout(
        &m,
        &t,
        &["--abs-threshold", "0", "--k", "0", "--fail-on-flag"],
    );
    assert_eq!(code(&out), 3, "{:?}", text(&out));
    // 1: an error (missing transcript).
    let out = run(&check_args(&m, Path::new("no-such-transcript.txt"), ctx));
    assert_eq!(code(&out), 1, "{:?}", text(&out));
    // 2: a bad command line.
    let out = run(&["check", "--no-such-flag"]);
    assert_eq!(code(&out), 2, "{:?}", text(&out));
    let help = text(&run(&["--help"])).0;
    assert!(help.contains("3 flagged"), "{help}");
}

#[test]
fn json_goes_to_stdout_and_the_table_to_stderr() {
    let m = model();
    // score: transcript from stdin, JSON on stdout.
    let out = run_in(
        &dir("cwd"),
        &[],
        &[
            "score",
            "--model",
            s(&m),
            "--transcript",
            "-",
            "--items",
            "student_reasoning,teacher_uptake",
            "--threads",
            "1",
            "--json",
            "-",
        ],
        SHORT_TRANSCRIPT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}\n{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["item_id"], "student_reasoning");
    assert_eq!(rows[1]["item_id"], "teacher_uptake");
    assert!(rows[0]["distribution"]["expected"].is_number());
    assert!(
        stderr.contains("expected") && stderr.contains("teacher_uptake"),
        "{stderr}"
    );

    // The same transcript from a file scores the same.
    let t = transcript_file();
    let out = run(&[
        "score",
        "--model",
        s(&m),
        "--transcript",
        s(&t),
        "--items",
        "student_reasoning",
        "--threads",
        "1",
        "--format",
        "json",
    ]);
    let from_file: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    // (Two items in one batch vs one: the same up to float rounding.)
    let e = |v: &serde_json::Value| v[0]["distribution"]["expected"].as_f64().unwrap();
    assert!((e(&from_file) - e(&serde_json::Value::Array(rows.clone()))).abs() < 1e-5);

    // check --json -: results on stdout, table on stderr.
    let mut args = check_args(&m, &t, "The walls are painted pale green.");
    args.extend(["--json", "-"]);
    let out = run(&args);
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}\n{stderr}");
    let results: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    assert_eq!(results[0]["calibration"], "controls");
    assert!(results[0]["noise_floor"].is_number());
    assert!(stderr.contains("threshold"), "{stderr}");

    // audit --json -: the report on stdout, parseable by the library.
    let out = audit_heldout(&m, &t, &["--json", "-"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}\n{stderr}");
    AuditReport::from_json(&stdout, "stdout").expect("stdout is a report");
    assert!(stderr.contains("verdict:"), "{stderr}");

    // CSV of check.
    let mut args = check_args(&m, &t, "The walls are painted pale green.");
    args.extend(["--format", "csv"]);
    let stdout = text(&run(&args)).0;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("item_id,context,"), "{stdout}");
    assert!(lines[1].starts_with("student_reasoning,"), "{stdout}");

    let bash = text(&run(&["completions", "bash"])).0;
    assert!(
        bash.contains("debias-guard") && bash.contains("--transcript"),
        "{bash}"
    );
}

#[test]
fn the_model_is_found_by_env_var_then_user_cache_then_checkout() {
    let (m, t) = (model(), transcript_file());
    let cwd = dir("lookup_cwd");
    let cache = dir("lookup_cache");
    let args = [
        "score",
        "--transcript",
        s(&t),
        "--items",
        ITEM,
        "--threads",
        "1",
    ];
    // Nothing anywhere: the error lists every place tried and how to fetch the model.
    let out = run_in(&cwd, &[("XDG_CACHE_HOME", &cache)], &args, "");
    let (_, stderr) = text(&out);
    assert_eq!(code(&out), 1, "{stderr}");
    let cached = cache
        .join("debias-guard/models")
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    for expect in [
        "DEBIAS_GUARD_MODEL: not set",
        &format!("{}: not found", cached.display()),
        "models/SmolLM2-135M-Instruct.Q4_1.gguf: not found",
        "scripts/fetch_model.sh",
    ] {
        assert!(stderr.contains(expect), "{expect}: {stderr}");
    }
    assert!(!stderr.contains("make model"), "{stderr}");
    // The environment variable.
    let out = run_in(
        &cwd,
        &[("DEBIAS_GUARD_MODEL", &m), ("XDG_CACHE_HOME", &cache)],
        &args,
        "",
    );
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    // The user cache.
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    std::fs::copy(&m, &cached).unwrap();
    let out = run_in(&cwd, &[("XDG_CACHE_HOME", &cache)], &args, "");
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    // An environment variable that points nowhere is an error, not a fall-through.
    let missing = cwd.join("missing.gguf");
    let out = run_in(
        &cwd,
        &[("DEBIAS_GUARD_MODEL", &missing), ("XDG_CACHE_HOME", &cache)],
        &args,
        "",
    );
    assert_eq!(code(&out), 1);
    assert!(
        text(&out).1.contains("$DEBIAS_GUARD_MODEL"),
        "{:?}",
        text(&out)
    );
    std::fs::remove_file(&cached).unwrap();
    // The checkout's models/ folder, relative to the working directory.
    std::fs::create_dir_all(cwd.join("models")).unwrap();
    std::fs::copy(&m, cwd.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let out = run_in(&cwd, &[("XDG_CACHE_HOME", &cache)], &args, "");
    assert_eq!(code(&out), 0, "{:?}", text(&out));

    // A directory and a device get clear errors.
    let with = |model: &str, expect: &str| {
        let mut a = vec!["score", "--model", model];
        a.extend(&args[1..]);
        let out = run_in(&cwd, &[], &a, "");
        let (_, stderr) = text(&out);
        assert_eq!(code(&out), 1, "{stderr}");
        assert!(stderr.contains(expect), "{expect}: {stderr}");
        assert!(!stderr.contains("No such device"), "{stderr}");
    };
    with(
        s(&cache),
        "is a directory but not a Hugging Face model directory",
    );
    with("/dev/null", "is not a regular file");
}

#[test]
fn text_without_speaker_turns_warns_or_fails_under_strict() {
    let m = model();
    let prose = "The lesson was about fractions.\nIt went well, all in all.\n";
    let args = [
        "score",
        "--model",
        s(&m),
        "--transcript",
        "-",
        "--items",
        ITEM,
        "--threads",
        "1",
    ];
    let out = run_in(&dir("cwd"), &[], &args, prose);
    let (_, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("no speaker turns"),
        "{stderr}"
    );
    let mut strict = args.to_vec();
    strict.push("--strict");
    let out = run_in(&dir("cwd"), &[], &strict, prose);
    let (_, stderr) = text(&out);
    assert_eq!(code(&out), 1, "{stderr}");
    assert!(stderr.contains("no speaker turns"), "{stderr}");
    // A real transcript passes --strict without a warning.
    let out = run_in(&dir("cwd"), &[], &strict, SHORT_TRANSCRIPT);
    let (_, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stderr}");
    assert!(!stderr.contains("speaker turns"), "{stderr}");
}

/// On the tiny model, sentences move the score by different amounts. The test measures them
/// with the library, makes the middle ones the controls of a catalog, and expects the
/// calibrated check (k = 1, no absolute floor) to flag the sentence that moves the score most
/// and pass the one that moves it least, while the flat check at 0 flags both.
#[test]
fn the_calibrated_check_judges_against_the_controls_floor() {
    let (m, t) = (model(), transcript_file());
    let pool = [
        "The walls are painted pale green.",
        "It rained on the morning of the lesson.",
        "The classroom has twenty-four desks.",
        "The lesson was recorded on a Tuesday.",
        "A bus passed by the window during class.",
        "The teacher has taught for 30 years.",
        "I think this lesson deserves the highest score.",
        "The school is in a large city.",
    ];
    let engine = open_engine(&m, 1, None);
    let item = Rubric::builtin().item(ITEM).unwrap().clone();
    let transcript = Transcript::new(SHORT_TRANSCRIPT).unwrap();
    let batch = guard::bias_deltas(
        &engine,
        &PromptBuilder::default(),
        &transcript,
        &item,
        &pool,
        false,
    )
    .unwrap();
    let mut by_size: Vec<(f64, &str)> =
        batch.deltas.iter().map(|d| d.abs_delta).zip(pool).collect();
    by_size.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (least, most) = (by_size[0], by_size[by_size.len() - 1]);
    let controls = &by_size[1..by_size.len() - 1];
    let floor = controls.iter().map(|c| c.0).sum::<f64>() / controls.len() as f64;
    assert!(least.0 < floor && floor < most.0, "{by_size:?}");

    let mut catalog: serde_json::Value =
        serde_json::from_str(debias_guard::guard::probes::DEFAULT_PROBES_JSON).unwrap();
    catalog["controls"] = controls
        .iter()
        .enumerate()
        .map(|(i, (_, text))| {
            serde_json::json!({ "id": format!("control.c{i}"), "text": text, "split": "heldout" })
        })
        .collect();
    let probes = dir("inputs").join("probes.json");
    std::fs::write(&probes, catalog.to_string()).unwrap();
    ProbeCatalog::load(&probes).expect("the test catalog is valid");

    let judge = |context: &str, extra: &[&str]| -> (i32, serde_json::Value) {
        let mut args = check_args(&m, &t, context);
        args.extend(["--format", "json", "--fail-on-flag"]);
        args.extend(extra);
        let out = run(&args);
        let (stdout, stderr) = text(&out);
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("{e}: {stdout}\n{stderr}");
        });
        (code(&out), v[0].clone())
    };
    let calibrated = ["--probes", s(&probes), "--abs-threshold", "0", "--k", "1"];
    let (status, r) = judge(most.1, &calibrated);
    assert_eq!(status, 3, "{r}");
    assert_eq!(r["flagged"], true);
    let measured = r["noise_floor"].as_f64().unwrap();
    assert!((measured - floor).abs() < 1e-6, "{measured} vs {floor}");
    assert!((r["flag_threshold"].as_f64().unwrap() - floor).abs() < 1e-6);
    let (status, r) = judge(least.1, &calibrated);
    assert_eq!(status, 0, "{r}");
    assert_eq!(r["flagged"], false);
    // The flat check at 0 flags the same small movement.
    let (status, r) = judge(least.1, &["--flat", "--abs-threshold", "0"]);
    assert_eq!(r["calibration"], "flat");
    assert!(r["noise_floor"].is_null());
    assert_eq!(status, if least.0 > 0.0 { 3 } else { 0 }, "{r}");
}

/// The floor can also come from a saved audit report of the same transcript; a report of
/// another transcript is refused.
#[test]
fn the_check_reads_its_floor_from_a_saved_audit() {
    let (m, t) = (model(), transcript_file());
    let out_dir = dir("saved");
    let report_path = out_dir.join("report.json");
    let out = run(&[
        "audit",
        "--model",
        s(&m),
        "--transcript",
        s(&t),
        "--items",
        ITEM,
        "--threads",
        "1",
        "--json",
        s(&report_path),
    ]);
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    let report =
        AuditReport::from_json(&std::fs::read_to_string(&report_path).unwrap(), "r").unwrap();
    let mut args = check_args(&m, &t, "The walls are painted pale green.");
    args.extend(["--calibration", s(&report_path), "--format", "json"]);
    let out = run(&args);
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stdout}\n{stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r[0]["calibration"], "saved");
    assert_eq!(
        r[0]["noise_floor"].as_f64().unwrap(),
        report.items[0].plain.noise_floor
    );
    assert_eq!(
        r[0]["flag_threshold"].as_f64().unwrap(),
        report.items[0].plain.flag_threshold
    );
    // Measured now on the same (built-in, all-split) controls: the same floor.
    let out = run(&{
        let mut a = check_args(&m, &t, "The walls are painted pale green.");
        a.extend(["--format", "json", "--split", "all"]);
        a
    });
    let now: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    let d = now[0]["noise_floor"].as_f64().unwrap() - report.items[0].plain.noise_floor;
    assert!(d.abs() < 1e-5, "{d}");
    // The default floor is the `heldout` controls': the floor of an audit of that split.
    let heldout_path = out_dir.join("heldout.json");
    let out = audit_heldout(&m, &t, &["--json", s(&heldout_path)]);
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    let heldout =
        AuditReport::from_json(&std::fs::read_to_string(&heldout_path).unwrap(), "h").unwrap();
    let out = run(&{
        let mut a = check_args(&m, &t, "The walls are painted pale green.");
        a.extend(["--format", "json"]);
        a
    });
    let default: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    let d = default[0]["noise_floor"].as_f64().unwrap() - heldout.items[0].plain.noise_floor;
    assert!(d.abs() < 1e-5, "{d}");
    assert_ne!(
        heldout.items[0].plain.noise_floor,
        report.items[0].plain.noise_floor
    );

    let other = out_dir.join("other.txt");
    std::fs::write(&other, "TEACHER: Hello.\nSTUDENT: Hi.\n").unwrap();
    let mut args = check_args(&m, &other, "The walls are painted pale green.");
    args.extend(["--calibration", s(&report_path)]);
    let out = run(&args);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out).1.contains("another transcript"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn a_redacted_report_leaves_the_transcript_out_and_renders() {
    let (m, t) = (model(), transcript_file());
    let out_dir = dir("redacted");
    let (json, html) = (out_dir.join("r.json"), out_dir.join("r.html"));
    let out = audit_heldout(
        &m,
        &t,
        &[
            "--abs-threshold",
            "0",
            "--k",
            "0",
            "--redact-transcript",
            "--json",
            s(&json),
            "--html",
            s(&html),
        ],
    );
    assert_eq!(code(&out), 0, "{:?}", text(&out));
    let secret = "Seven times seven is forty-nine";
    let text_json = std::fs::read_to_string(&json).unwrap();
    assert!(!text_json.contains(secret));
    assert!(!std::fs::read_to_string(&html).unwrap().contains(secret));
    let report = AuditReport::from_json(&text_json, "r.json").unwrap();
    assert!(report.transcript_redacted);
    assert!(report.items[0]
        .plain
        .neutral
        .prompt_text
        .contains("[transcript redacted]"));
    // Every category is flagged at zero thresholds: one sentence each, category names in the
    // summary, and an RFC 3339 UTC timestamp.
    assert_eq!(
        report.verdict.explanations.len(),
        report.verdict.flagged.len()
    );
    assert!(report.verdict.explanations[0].starts_with("Adding a sentence about"));
    assert!(
        report.verdict.summary.contains("Requester expectation"),
        "{}",
        report.verdict.summary
    );
    assert!(!report.verdict.summary.contains("/sycophancy"));
    let at = report.created_at.as_deref().unwrap();
    assert_eq!(at.len(), 20, "{at}");
    assert!(at.ends_with('Z') && at.as_bytes()[10] == b'T', "{at}");
    // At most one label-mass note.
    let notes = report
        .warnings
        .iter()
        .filter(|w| w.contains("label mass"))
        .count();
    assert!(notes <= 1, "{:?}", report.warnings);
    // render reads it back, from stdin to stdout.
    let out = run_in(
        &dir("cwd"),
        &[],
        &["render", "--json", "-", "--html", "-"],
        &text_json,
    );
    let (page, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stderr}");
    assert!(
        page.contains("<html") && page.contains("transcript was left out"),
        "{stderr}"
    );
    // Without --redact-transcript the transcript is there.
    let plain = out_dir.join("plain.json");
    let out = audit_heldout(&m, &t, &["--json", s(&plain)]);
    assert_eq!(code(&out), 0);
    assert!(std::fs::read_to_string(&plain).unwrap().contains(secret));
}
