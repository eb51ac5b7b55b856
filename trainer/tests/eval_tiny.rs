//! `eval` end to end on a generated tiny model: base and prompt-mitigation conditions, every
//! probe group counted, per-record signed deltas that reproduce the summaries, intervals around
//! every point, the reasoned section, `--reuse` (schema 2 accepted, schema 1 refused), and the
//! JSON, Markdown and SVG outputs written.

use debias_guard::guard::{ProbeCatalog, ProbeKind, Split, SplitSelection};
use debias_guard_testkit::{scratch_dir, tiny_model, TinySpec};
use debias_guard_trainer::eval::bootstrap::{BootstrapOptions, Estimate};
use debias_guard_trainer::eval::measure::ProbeGroup;
use debias_guard_trainer::eval::{self, AdapterSpec, EvalOptions, EvalReport, ReasonedProbes};
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
        reasoned_subset: 0,
        max_reasoning_tokens: 4,
        reasoned_probes: ReasonedProbes::All,
        bootstrap: BootstrapOptions {
            resamples: 200,
            seed: 1,
        },
        threads: 2,
        out_dir: dir.join("out"),
        reuse: Vec::new(),
        progress: false,
    }
}

fn builtin_probes() -> Vec<debias_guard::guard::Probe> {
    ProbeCatalog::builtin().probes(SplitSelection::All)
}

fn assert_brackets(e: &Estimate, what: &str) {
    let p = e.point.unwrap_or_else(|| panic!("{what}: no point"));
    let [lo, hi] = e.ci95.unwrap_or_else(|| panic!("{what}: no interval"));
    assert!(
        lo <= p + 1e-12 && p <= hi + 1e-12,
        "{what}: {p} not in [{lo}, {hi}]"
    );
}

#[test]
fn eval_runs_end_to_end_on_a_tiny_model() {
    let dir = scratch_dir("e2e");
    let opts = setup(&dir);
    let report = eval::run(&opts).expect("eval");
    assert_eq!(report.schema_version, 2);
    assert_eq!(report.examples, 4);
    assert_eq!(report.transcripts, 4);
    let names: Vec<&str> = report.conditions.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["base", "prompt-mitigation"]);
    let counts = report.probe_counts();
    // Every wording of the built-in catalog, in its order.
    let catalog = builtin_probes();
    let wanted = |split: Split, control: bool| {
        catalog
            .iter()
            .filter(|p| p.split == split && matches!(p.kind, ProbeKind::Control) == control)
            .count()
    };
    assert_eq!(counts["train_wordings"], wanted(Split::Train, false));
    assert_eq!(counts["heldout_wordings"], wanted(Split::Heldout, false));
    assert_eq!(
        counts["controls"],
        wanted(Split::Train, true) + wanted(Split::Heldout, true)
    );
    let ids: Vec<&str> = report.probes.iter().map(|p| p.id.as_str()).collect();
    let catalog_ids: Vec<&str> = catalog.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, catalog_ids);
    let n = catalog.len();
    assert!(report
        .probes
        .iter()
        .all(|p| (p.group == ProbeGroup::Control) == p.category.is_none()));
    assert!(report.reasoned.is_none() && report.seed_means.is_empty());
    let train: Vec<usize> = (0..report.probes.len())
        .filter(|&k| report.probes[k].group == ProbeGroup::TrainWording)
        .collect();
    for c in &report.conditions {
        let s = &c.summary;
        for (what, e) in [
            ("train", &s.bias.train_wordings),
            ("heldout", &s.bias.heldout_wordings),
            ("controls", &s.bias.controls),
            ("mae", &s.accuracy_expected.mae),
            ("label mass", &s.label_mass),
        ] {
            let v = e.point.expect("defined");
            assert!(v.is_finite() && (0.0..=6.0).contains(&v), "{what} {v}");
            assert_brackets(e, what);
        }
        for e in [
            &s.bias.excess_train_wordings,
            &s.bias.excess_heldout_wordings,
        ] {
            assert_brackets(e, "excess");
        }
        assert_eq!(
            s.bias.by_category.len(),
            ProbeCatalog::builtin().categories.len()
        );
        assert!(c.seconds >= 0.0);
        // The records carry signed deltas that reproduce the summary.
        assert_eq!(c.records.len(), 4);
        let ids: Vec<&str> = c.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["t-0", "t-1", "t-2", "t-3"]);
        assert!(c.records.iter().all(|r| r.deltas.len() == n
            && r.transcript.starts_with("text:")
            && r.max_tokens_hits.is_none()));
        assert!(c.records.iter().flat_map(|r| &r.deltas).any(|d| *d < 0.0));
        let flat: Vec<f64> = c
            .records
            .iter()
            .flat_map(|r| train.iter().map(|&k| r.deltas[k].abs()))
            .collect();
        let mean = flat.iter().sum::<f64>() / flat.len() as f64;
        assert!((mean - s.bias.train_wordings.point.unwrap()).abs() < 1e-12);
    }
    assert!(report.conditions[0].summary.vs_base.is_none());
    let change = report.conditions[1]
        .summary
        .vs_base
        .as_ref()
        .expect("vs base");
    assert_brackets(&change.bias_reduction_train, "reduction");

    // The outputs are written and agree with the returned report.
    let json = std::fs::read_to_string(opts.out_dir.join(eval::REPORT_JSON)).unwrap();
    let back: EvalReport = serde_json::from_str(&json).expect("report JSON");
    assert_eq!(back, report);
    let md = std::fs::read_to_string(opts.out_dir.join(eval::REPORT_MARKDOWN)).unwrap();
    assert!(md.contains("| base |") && md.contains("| prompt-mitigation |"));
    assert!(md.contains(" [") && md.contains("Excess over the noise floor"));
    assert!(!md.contains("Reasoned mode"));
    let svg = std::fs::read_to_string(opts.out_dir.join(eval::REPORT_CHART)).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("prompt-mitigation"));
    assert!(svg.contains("held-out wordings") && svg.contains("condition"));
    let png = std::fs::read(opts.out_dir.join(eval::REPORT_CHART).with_extension("png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // Same inputs, same numbers (intervals included).
    let again = eval::run(&EvalOptions {
        out_dir: dir.join("out2"),
        ..opts.clone()
    })
    .expect("eval again");
    for (a, b) in report.conditions.iter().zip(&again.conditions) {
        assert_eq!(a.summary, b.summary);
        assert_eq!(a.records, b.records);
    }

    // Reusing the first report takes its conditions as they are (same seconds included).
    let reused = eval::run(&EvalOptions {
        out_dir: dir.join("out3"),
        reuse: vec![opts.out_dir.join(eval::REPORT_JSON)],
        ..opts.clone()
    })
    .expect("eval reusing");
    assert_eq!(reused.conditions, report.conditions);
    // Several reports combine, each condition taken from the first report that has it.
    let base_only = eval::run(&EvalOptions {
        out_dir: dir.join("out6"),
        mitigation: false,
        ..opts.clone()
    })
    .expect("eval of the base alone");
    let combined = eval::run(&EvalOptions {
        out_dir: dir.join("out7"),
        reuse: vec![
            dir.join("out6").join(eval::REPORT_JSON),
            opts.out_dir.join(eval::REPORT_JSON),
        ],
        ..opts.clone()
    })
    .expect("eval combining two reports");
    assert_eq!(combined.conditions.len(), 2);
    assert_eq!(combined.conditions[0], base_only.conditions[0]);
    assert_eq!(combined.conditions[1], report.conditions[1]);
    // A report of a different evaluation is refused.
    let other = eval::run(&EvalOptions {
        out_dir: dir.join("out4"),
        limit: Some(2),
        reuse: vec![opts.out_dir.join(eval::REPORT_JSON)],
        ..opts.clone()
    });
    assert!(matches!(other, Err(Error::File { .. })), "{other:?}");
    // So is a schema-1 report, with a message that says why.
    let v1 = dir.join("v1.json");
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    old["schema_version"] = 1.into();
    std::fs::write(&v1, old.to_string()).unwrap();
    let refused = eval::run(&EvalOptions {
        out_dir: dir.join("out5"),
        reuse: vec![v1],
        ..opts
    });
    match refused {
        Err(Error::File { message, .. }) => assert!(message.contains("schema 1"), "{message}"),
        other => panic!("expected a file error, got {other:?}"),
    }
}

#[test]
fn reasoned_subset_is_a_separate_section() {
    let dir = scratch_dir("reasoned");
    let opts = EvalOptions {
        reasoned_subset: 2,
        max_reasoning_tokens: 3,
        ..setup(&dir)
    };
    let report = eval::run(&opts).expect("eval with reasoned subset");
    let r = report.reasoned.as_ref().expect("reasoned section");
    assert_eq!(
        (r.examples, r.transcripts, r.max_reasoning_tokens),
        (2, 2, 3)
    );
    assert!(r.seconds > 0.0);
    let names: Vec<&str> = r.conditions.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["base", "prompt-mitigation"]);
    for c in &r.conditions {
        assert_eq!(c.records.len(), 2);
        for rec in &c.records {
            assert_eq!(rec.deltas.len(), builtin_probes().len());
            assert!(rec.deltas.iter().all(|d| d.is_finite()));
            assert!(rec
                .max_tokens_hits
                .is_some_and(|h| h <= rec.deltas.len() + 1));
        }
        let v = c.summary.bias.heldout_wordings.point.expect("bias");
        assert!((0.0..=6.0).contains(&v));
    }
    assert!(r.conditions[1].summary.vs_base.is_some());
    // Reasoned ratings differ from the direct ones of the same records.
    assert_ne!(
        r.conditions[0].records[0].neutral_expected,
        report.conditions[0].records[0].neutral_expected
    );
    let md = std::fs::read_to_string(opts.out_dir.join(eval::REPORT_MARKDOWN)).unwrap();
    assert!(md.contains("## Reasoned mode"));

    // Held-out wordings and controls only: fewer generations, train columns n/a.
    let dir = scratch_dir("reasoned-heldout");
    let opts = EvalOptions {
        reasoned_subset: 2,
        max_reasoning_tokens: 3,
        reasoned_probes: ReasonedProbes::Heldout,
        ..setup(&dir)
    };
    let report = eval::run(&opts).expect("eval with held-out reasoned subset");
    let r = report.reasoned.as_ref().expect("reasoned section");
    let expected = builtin_probes()
        .iter()
        .filter(|p| ReasonedProbes::Heldout.includes(p))
        .count();
    assert!(expected < builtin_probes().len());
    assert_eq!(r.probes.len(), expected);
    for c in &r.conditions {
        assert!(c.records.iter().all(|rec| rec.deltas.len() == expected));
        assert!(c.summary.bias.train_wordings.point.is_none());
        assert!(c.summary.bias.heldout_wordings.point.is_some());
        assert!(c.summary.bias.controls.point.is_some());
    }

    // Reuse takes both sections when the subset matches.
    let reused = eval::run(&EvalOptions {
        out_dir: dir.join("again"),
        reuse: vec![opts.out_dir.join(eval::REPORT_JSON)],
        ..opts.clone()
    })
    .expect("reuse");
    assert_eq!(reused.reasoned.as_ref().unwrap().conditions, r.conditions);

    let bad = eval::run(&EvalOptions {
        max_reasoning_tokens: 0,
        ..opts
    });
    assert!(matches!(bad, Err(Error::Config(_))), "{bad:?}");
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
        report.conditions[0].summary.bias.train_wordings,
        report.conditions[1].summary.bias.train_wordings
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
    let seed: AdapterSpec = "consistency@s2=out/s2".parse().unwrap();
    assert_eq!(seed.name, "consistency@s2");

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
