//! `pairs` on a generated tiny model: deterministic output, well-formed records, resuming after
//! an interruption (whole examples done, a torn last line) gives the same file as one run.

use debias_guard_testkit::{scratch_dir, tiny_model, TinySpec};
use debias_guard_trainer::data::{load_pairs, PreferencePair};
use debias_guard_trainer::pairs::{self, PairsOptions};
use debias_guard_trainer::Error;
use std::path::{Path, PathBuf};

const TRANSCRIPTS: [&str; 3] = [
    "TEACHER: What do you notice about these fractions?\nSTUDENT: The bottom numbers are different.",
    "TEACHER: Who can explain how they got twelve?\nSTUDENT: I added four three times.\nTEACHER: Why three times?",
    "TEACHER: Open your books to page ten.\nSTUDENT: Which problem?\nTEACHER: Number four.",
];

/// A tiny model and a three-example training file in `dir`.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let model = tiny_model("pairs", &TinySpec::default());
    let items = [
        "instructional_dialogue",
        "student_reasoning",
        "teacher_uptake",
    ];
    let mut lines = String::new();
    for (i, t) in TRANSCRIPTS.iter().enumerate() {
        let record = serde_json::json!({
            "id": format!("ex-{i}"), "transcript": t, "item": items[i], "gold": 2 + i as u8,
        });
        lines.push_str(&record.to_string());
        lines.push('\n');
    }
    let input = dir.join("train.jsonl");
    std::fs::write(&input, lines).expect("write examples");
    (model, input)
}

/// Asserts two files hold the same bytes, without printing them (records are long).
fn assert_same_file(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(
        x == y,
        "{} ({} bytes) differs from {} ({} bytes)",
        a.display(),
        x.len(),
        b.display(),
        y.len()
    );
}

fn options(model: &Path, input: &Path, output: PathBuf) -> PairsOptions {
    let mut o = PairsOptions::new(model.to_path_buf(), input.to_path_buf(), output);
    o.contexts_per_example = Some(2);
    o.max_tokens = 6;
    o.seed = 11;
    o.threads = 2;
    o.progress = false;
    o
}

#[test]
fn records_are_well_formed_and_runs_are_deterministic() {
    let dir = scratch_dir("determinism");
    let (model, input) = setup(&dir);
    let first = pairs::run(&options(&model, &input, dir.join("a.jsonl"))).expect("first run");
    assert_eq!(first.examples, 3);
    assert_eq!(first.pairs_written, 6);
    assert_eq!(first.generations, 9, "one neutral + two biased per example");
    pairs::run(&options(&model, &input, dir.join("b.jsonl"))).expect("second run");
    assert_same_file(&dir.join("a.jsonl"), &dir.join("b.jsonl"));

    let records: Vec<PreferencePair> = load_pairs(&dir.join("a.jsonl")).expect("valid pairs");
    assert_eq!(records.len(), 6);
    let catalog = debias_guard::ProbeCatalog::builtin();
    let probes = catalog.probes(debias_guard::SplitSelection::Train);
    for p in &records {
        assert_eq!(p.id, format!("{}/{}", p.example_id, p.context_id));
        let probe = probes
            .iter()
            .find(|w| w.id == p.context_id)
            .expect("context is a train wording");
        assert!(!p.context_id.starts_with("control."));
        assert!(p.prompt.contains(&probe.text), "prompt holds its context");
        assert!(!p.neutral_prompt.contains(&probe.text));
        assert!(p.prompt.contains("reason briefly"), "reasoned-mode prompt");
        for (text, rating) in [
            (&p.chosen, p.neutral_rating),
            (&p.rejected, p.biased_rating),
        ] {
            let n = rating.expect("rating recorded");
            assert!((1..=7).contains(&n));
            assert!(
                text.ends_with(&format!("Rating: {n}")),
                "response `{text}` ends with its rating"
            );
        }
        let e = p.neutral_expected.expect("expected score");
        assert!((1.0..=7.0).contains(&e));
    }
    // The neutral response is generated once per example and shared by its pairs.
    for pair in records.chunks(2) {
        assert_eq!(pair[0].example_id, pair[1].example_id);
        assert_eq!(pair[0].chosen, pair[1].chosen);
        assert_eq!(pair[0].neutral_prompt, pair[1].neutral_prompt);
        assert_ne!(pair[0].context_id, pair[1].context_id);
    }
}

#[test]
fn resuming_gives_the_same_file_as_one_run() {
    let dir = scratch_dir("resume");
    let (model, input) = setup(&dir);
    let whole = dir.join("whole.jsonl");
    pairs::run(&options(&model, &input, whole.clone())).expect("uninterrupted run");
    let expected = std::fs::read(&whole).unwrap();

    // Interrupted after two examples, then resumed.
    let resumed = dir.join("resumed.jsonl");
    let mut partial = options(&model, &input, resumed.clone());
    partial.limit = Some(2);
    pairs::run(&partial).expect("partial run");
    let summary = pairs::run(&options(&model, &input, resumed.clone())).expect("resume");
    assert_eq!(summary.pairs_already_done, 4);
    assert_eq!(summary.examples_skipped, 2);
    assert_eq!(summary.pairs_written, 2);
    assert_eq!(summary.generations, 3);
    assert_same_file(&resumed, &whole);

    // Killed in the middle of the last line: the torn line is dropped and rewritten.
    let torn = dir.join("torn.jsonl");
    let cut = expected.len() - 40;
    std::fs::write(&torn, &expected[..cut]).unwrap();
    let summary = pairs::run(&options(&model, &input, torn.clone())).expect("resume torn");
    assert_eq!(summary.pairs_already_done, 5);
    assert_eq!(summary.pairs_written, 1);
    assert_same_file(&torn, &whole);

    // Nothing left to do: the file is unchanged and nothing is generated.
    let summary = pairs::run(&options(&model, &input, torn.clone())).expect("rerun");
    assert_eq!((summary.pairs_written, summary.generations), (0, 0));
    assert_same_file(&torn, &whole);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let dir = scratch_dir("bad");
    let (model, input) = setup(&dir);
    let out = dir.join("out.jsonl");

    let unknown_item = dir.join("unknown.jsonl");
    std::fs::write(
        &unknown_item,
        "{\"id\":\"x\",\"transcript\":\"TEACHER: hi\",\"item\":\"no_such_item\",\"gold\":3}\n",
    )
    .unwrap();
    let err = pairs::run(&options(&model, &unknown_item, out.clone())).unwrap_err();
    assert!(matches!(err, Error::Record { line: 1, .. }), "{err}");

    let mut zero = options(&model, &input, out.clone());
    zero.max_tokens = 0;
    assert!(matches!(pairs::run(&zero), Err(Error::Config(_))));
    let mut none = options(&model, &input, out.clone());
    none.contexts_per_example = Some(0);
    assert!(matches!(pairs::run(&none), Err(Error::Config(_))));

    // An output file that is not a pairs file is refused and left alone.
    std::fs::write(&out, "this is not json\n").unwrap();
    let err = pairs::run(&options(&model, &input, out.clone())).unwrap_err();
    assert!(matches!(err, Error::Record { .. }), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"this is not json\n");

    let missing = options(&dir.join("missing.gguf"), &input, dir.join("o2.jsonl"));
    assert!(pairs::run(&missing).is_err());
}
