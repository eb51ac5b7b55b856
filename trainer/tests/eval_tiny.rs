//! `eval` end to end on a generated tiny model: base and prompt-mitigation conditions, every
//! probe group counted, finite figures, and the JSON, Markdown and SVG outputs written.

use debias_guard_testkit::{scratch_dir, tiny_model, TinySpec};
use debias_guard_trainer::eval::{self, AdapterSpec, EvalOptions, EvalReport};
use debias_guard_trainer::inputs::InputFiles;
use debias_guard_trainer::Error;

fn setup(dir: &std::path::Path) -> EvalOptions {
    let model = tiny_model("eval", &TinySpec::default());
    let transcripts = [
        "TEACHER: What do you notice?\nSTUDENT: The numbers get bigger.",
        "TEACHER: Why does that work?\nSTUDENT: Because each row adds two.\nTEACHER: Say more.",
        "TEACHER: Copy the problem.\nSTUDENT: Okay.",
        "TEACHER: Compare your strategy with Ana's.\nSTUDENT: Hers uses a number line.",
    ];
    let mut lines = String::new();
    for (i, t) in transcripts.iter().enumerate() {
        let rec = serde_json::json!({
            "id": format!("t-{i}"), "transcript": t, "item": "student_reasoning", "gold": 1 + 2 * i as u8,
        });
        lines.push_str(&(rec.to_string() + "\n"));
    }
    let test = dir.join("test.jsonl");
    std::fs::write(&test, lines).unwrap();
    EvalOptions {
        model,
        test,
        adapters: Vec::new(),
        mitigation: true,
        inputs: InputFiles::default(),
        limit: None,
        threads: 2,
        out_dir: dir.join("out"),
        reuse: None,
        progress: false,
    }
}

#[test]
fn eval_runs_end_to_end_on_a_tiny_model() {
    let dir = scratch_dir("e2e");
    let opts = setup(&dir);
    let report = eval::run(&opts).expect("eval");
    assert_eq!(report.examples, 4);
    let names: Vec<&str> = report.conditions.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["base", "prompt-mitigation"]);
    assert_eq!(report.probes["train_wordings"], 42);
    assert_eq!(report.probes["heldout_wordings"], 14);
    assert_eq!(report.probes["controls"], 8);
    for c in &report.conditions {
        for v in [
            c.bias.train_wordings,
            c.bias.heldout_wordings,
            c.bias.controls,
        ] {
            let v = v.expect("bias defined");
            assert!(v.is_finite() && (0.0..=6.0).contains(&v), "{v}");
        }
        assert_eq!(c.bias_by_category.len(), 7);
        let mae = c.accuracy_expected.mae.expect("mae");
        assert!((0.0..=6.0).contains(&mae));
        assert!(c.seconds >= 0.0);
    }
    assert!(report.conditions[0].vs_base.is_none());
    assert!(report.conditions[1].vs_base.is_some());

    // The outputs are written and agree with the returned report.
    let json = std::fs::read_to_string(opts.out_dir.join(eval::REPORT_JSON)).unwrap();
    let back: EvalReport = serde_json::from_str(&json).expect("report JSON");
    assert_eq!(back, report);
    let md = std::fs::read_to_string(opts.out_dir.join(eval::REPORT_MARKDOWN)).unwrap();
    assert!(md.contains("| base |") && md.contains("| prompt-mitigation |"));
    let svg = std::fs::read_to_string(opts.out_dir.join(eval::REPORT_CHART)).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("prompt-mitigation"));

    // Same inputs, same numbers.
    let again = eval::run(&EvalOptions {
        out_dir: dir.join("out2"),
        ..opts.clone()
    })
    .expect("eval again");
    for (a, b) in report.conditions.iter().zip(&again.conditions) {
        assert_eq!(a.bias, b.bias);
        assert_eq!(a.accuracy_expected, b.accuracy_expected);
    }

    // Reusing the first report takes its conditions as they are (same seconds included).
    let reused = eval::run(&EvalOptions {
        out_dir: dir.join("out3"),
        reuse: Some(opts.out_dir.join(eval::REPORT_JSON)),
        ..opts.clone()
    })
    .expect("eval reusing");
    assert_eq!(reused.conditions, report.conditions);
    // A report of a different evaluation is refused.
    let other = eval::run(&EvalOptions {
        out_dir: dir.join("out4"),
        limit: Some(2),
        reuse: Some(opts.out_dir.join(eval::REPORT_JSON)),
        ..opts
    });
    assert!(matches!(other, Err(Error::File { .. })), "{other:?}");
}

#[test]
fn adapters_are_evaluated_through_the_engine() {
    let dir = scratch_dir("adapter");
    let opts = setup(&dir);
    let config = debias_guard::weights::DenseCheckpoint::load(&opts.model)
        .expect("dense weights")
        .config;
    let peft = debias_guard::adapter::PeftConfig::lora(4, 8.0, &["q_proj", "v_proj"]);
    let adapter = debias_guard_testkit::tiny_adapter(&config, peft, 3).expect("adapter");
    let adapter_dir = dir.join("adapter");
    adapter.save(&adapter_dir).expect("save adapter");
    let report = eval::run(&EvalOptions {
        adapters: vec![format!("rand={}", adapter_dir.display()).parse().unwrap()],
        mitigation: false,
        limit: Some(2),
        ..opts.clone()
    })
    .expect("eval with adapter");
    let names: Vec<&str> = report.conditions.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["base", "rand"]);
    // The random adapter changes the scores, so the two conditions cannot agree.
    assert_ne!(
        report.conditions[0].bias.train_wordings,
        report.conditions[1].bias.train_wordings
    );
    let missing = EvalOptions {
        adapters: vec![format!("gone={}", dir.join("none").display())
            .parse()
            .unwrap()],
        ..opts
    };
    assert!(matches!(eval::run(&missing), Err(Error::Library(_))));
}

#[test]
fn bad_options_are_typed_errors() {
    assert!(matches!(
        "no-equals".parse::<AdapterSpec>(),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        "=dir".parse::<AdapterSpec>(),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        "bad name=dir".parse::<AdapterSpec>(),
        Err(Error::Config(_))
    ));
    let spec: AdapterSpec = "debias=out/adapter".parse().unwrap();
    assert_eq!(spec.name, "debias");

    let dir = scratch_dir("bad");
    let opts = setup(&dir);
    let dup = EvalOptions {
        adapters: vec!["base=x".parse().unwrap()],
        ..opts.clone()
    };
    assert!(matches!(eval::run(&dup), Err(Error::Config(_))));
    let missing = EvalOptions {
        test: dir.join("missing.jsonl"),
        ..opts.clone()
    };
    assert!(matches!(eval::run(&missing), Err(Error::Io { .. })));
    std::fs::write(
        dir.join("bad.jsonl"),
        "{\"id\":\"a\",\"transcript\":\"TEACHER: hi\",\"item\":\"nope\",\"gold\":3}\n",
    )
    .unwrap();
    let bad_item = EvalOptions {
        test: dir.join("bad.jsonl"),
        ..opts
    };
    assert!(matches!(eval::run(&bad_item), Err(Error::Record { .. })));
}
