//! The report's statistics on hand-made records: the transcript-cluster bootstrap (deterministic,
//! brackets its point, resamples transcripts rather than records), paired reductions against the
//! base, the excess over the noise floor by hand, means over seeds, transcript keys and the
//! Markdown with intervals.

use debias_guard::guard::{PoleSide, Split};
use debias_guard_trainer::eval::bootstrap::{
    mean_at, BootstrapOptions, ClusterResamples, Estimate,
};
use debias_guard_trainer::eval::measure::ProbeGroup;
use debias_guard_trainer::eval::report::{
    to_markdown, ConditionKind, ConditionResult, EvalReport, ProbeInfo, RecordResult, Summary,
    EVAL_SCHEMA_VERSION,
};
use debias_guard_trainer::eval::summary::{seed_groups, seed_stem, summarise_conditions};
use debias_guard_trainer::eval::{summarise_report, transcript_key};

const OPTS: BootstrapOptions = BootstrapOptions {
    resamples: 2_000,
    seed: 42,
};

fn probe(id: &str, category: Option<&str>, split: Split) -> ProbeInfo {
    let group = match (category, split) {
        (None, _) => ProbeGroup::Control,
        (Some(_), Split::Train) => ProbeGroup::TrainWording,
        (Some(_), Split::Heldout) => ProbeGroup::HeldoutWording,
    };
    ProbeInfo {
        id: id.into(),
        group,
        category: category.map(str::to_string),
        pole: category.map(|_| PoleSide::High),
        split,
        text: format!("context {id}"),
    }
}

/// Two categories (one train and one held-out wording each) and a control per split.
fn probes() -> Vec<ProbeInfo> {
    vec![
        probe("age.high.1", Some("age"), Split::Train),
        probe("age.high.2", Some("age"), Split::Heldout),
        probe("syc.high.1", Some("syc"), Split::Train),
        probe("syc.high.2", Some("syc"), Split::Heldout),
        probe("control.a", None, Split::Train),
        probe("control.b", None, Split::Heldout),
    ]
}

fn rec(id: &str, transcript: &str, gold: f64, expected: f64, deltas: Vec<f64>) -> RecordResult {
    RecordResult {
        id: id.into(),
        transcript: transcript.into(),
        gold,
        neutral_expected: expected,
        neutral_argmax: expected.round(),
        neutral_label_mass: 0.5,
        deltas,
        max_tokens_hits: None,
    }
}

/// Eight transcripts of 1–3 records with varied deltas (some negative) and scores.
fn base_records() -> Vec<RecordResult> {
    let mut out = Vec::new();
    for t in 0..8 {
        for i in 0..(1 + t % 3) {
            let x = (t * 3 + i) as f64;
            let s = if (t + i) % 2 == 0 { 1.0 } else { -1.0 };
            out.push(rec(
                &format!("tr{t}/item{i}"),
                &format!("tr{t}"),
                1.0 + (t % 7) as f64,
                2.0 + ((t * 5 + i) % 5) as f64 * 0.7,
                vec![
                    s * (0.1 + 0.03 * x),
                    -s * (0.3 + 0.02 * (x % 5.0)),
                    0.5 + 0.05 * (x % 4.0),
                    -(0.9 + 0.04 * x),
                    s * (0.05 + 0.01 * (x % 3.0)),
                    0.08 + 0.02 * (x % 2.0),
                ],
            ));
        }
    }
    out
}

/// The same records with every delta multiplied by `factor`.
fn scaled(records: &[RecordResult], factor: f64) -> Vec<RecordResult> {
    records
        .iter()
        .map(|r| RecordResult {
            deltas: r.deltas.iter().map(|d| d * factor).collect(),
            ..r.clone()
        })
        .collect()
}

fn condition(name: &str, kind: ConditionKind, records: Vec<RecordResult>) -> ConditionResult {
    ConditionResult {
        name: name.into(),
        condition: kind,
        summary: Summary::default(),
        seconds: 1.0,
        records,
    }
}

fn adapter(name: &str, records: Vec<RecordResult>) -> ConditionResult {
    condition(
        name,
        ConditionKind::Adapter {
            dir: format!("runs/{name}"),
        },
        records,
    )
}

fn point(e: &Estimate) -> f64 {
    e.point.expect("point")
}

fn ci(e: &Estimate) -> [f64; 2] {
    e.ci95.expect("interval")
}

fn assert_brackets(e: &Estimate) {
    let (p, [lo, hi]) = (point(e), ci(e));
    assert!(
        lo <= p && p <= hi && lo < hi,
        "{p} not strictly inside [{lo}, {hi}]"
    );
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn bootstrap_is_deterministic_and_brackets_the_point() {
    let probes = probes();
    let run = |seed: u64| {
        let mut conds = vec![
            condition("base", ConditionKind::Base, base_records()),
            adapter("half", scaled(&base_records(), 0.6)),
        ];
        summarise_conditions(&probes, &mut conds, &BootstrapOptions { seed, ..OPTS });
        conds
    };
    let (a, b) = (run(42), run(42));
    assert_eq!(a, b, "same data and seed, same intervals");
    let other = run(43);
    assert_ne!(
        a[0].summary.bias.train_wordings.ci95, other[0].summary.bias.train_wordings.ci95,
        "the seed drives the resamples"
    );
    let s = &a[0].summary;
    for e in [
        &s.bias.train_wordings,
        &s.bias.heldout_wordings,
        &s.bias.all_wordings,
        &s.bias.controls,
        &s.bias.by_category["age"].all,
        &s.bias.by_category["syc"].heldout,
        &s.bias.excess_heldout_wordings,
        &s.accuracy_expected.spearman,
        &s.accuracy_expected.mae,
    ] {
        assert_brackets(e);
    }
    // Points are plain means over records × wordings.
    let records = base_records();
    let flat: Vec<f64> = records
        .iter()
        .flat_map(|r| [r.deltas[0].abs(), r.deltas[2].abs()])
        .collect();
    assert!(close(
        point(&s.bias.train_wordings),
        flat.iter().sum::<f64>() / flat.len() as f64
    ));
    let v = a[1].summary.vs_base.as_ref().expect("vs base");
    assert!(close(point(&v.bias_reduction_all), 40.0));
}

#[test]
fn the_cluster_bootstrap_draws_transcripts_not_records() {
    // Transcript A has nine records at 1.0, transcript B one record at 0.0. Drawing two
    // transcripts gives a mean of 1 (AA), 0.9 (AB or BA) or 0 (BB, probability 1/4), so the
    // interval is [0, 1]; drawing ten records would give many other means and a lower bound near 0.7.
    let mut keys = vec!["A"; 9];
    keys.push("B");
    let mut values = vec![1.0; 9];
    values.push(0.0);
    let rs = ClusterResamples::new(&keys, &OPTS);
    assert_eq!(
        (rs.records(), rs.clusters(), rs.draws().len()),
        (10, 2, 2_000)
    );
    for draw in rs.draws() {
        let from_a = draw.iter().filter(|&&i| i < 9).count();
        assert_eq!(from_a % 9, 0, "a drawn transcript brings all its records");
        let m = mean_at(&values, draw).unwrap();
        assert!([0.0, 0.9, 1.0].iter().any(|v| close(*v, m)), "{m}");
    }
    let sizes: std::collections::BTreeSet<usize> = rs.draws().iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 10, 18].into_iter().collect());
    let e = rs.estimate(|idx| mean_at(&values, idx));
    assert!(close(point(&e), 0.9));
    assert_eq!(ci(&e), [0.0, 1.0]);
    // Same keys, same draws; other key names with the same grouping, same draws too.
    let renamed: Vec<&str> = keys
        .iter()
        .map(|k| if *k == "A" { "x" } else { "y" })
        .collect();
    assert_eq!(ClusterResamples::new(&renamed, &OPTS), rs);
}

#[test]
fn reductions_are_paired_with_the_base() {
    let probes = probes();
    let base = base_records();
    let mut conds = vec![
        condition("base", ConditionKind::Base, base.clone()),
        adapter("half", scaled(&base, 0.5)),
    ];
    summarise_conditions(&probes, &mut conds, &OPTS);
    let v = conds[1].summary.vs_base.as_ref().expect("vs base");
    // Every record's |Δ| halves, so on every resample of the same transcripts the reduction is
    // exactly 50 %: a paired interval has no width. (Unpaired, base and condition would be
    // drawn apart and the interval would be wide.)
    for e in [
        &v.bias_reduction_train,
        &v.bias_reduction_heldout,
        &v.bias_reduction_all,
        &v.controls_reduction,
        &v.by_category["syc"].heldout,
    ] {
        assert!(close(point(e), 50.0), "{e:?}");
        let [lo, hi] = ci(e);
        assert!(close(lo, 50.0) && close(hi, 50.0), "{e:?}");
    }
    // Neutral scores are unchanged: differences are exactly zero.
    assert_eq!(ci(&v.spearman_difference), [0.0, 0.0]);
    assert!(conds[0].summary.vs_base.is_none());

    // A condition that removes bias unevenly: point = (base − cond) / base of the means, inside
    // its interval.
    let mut uneven = scaled(&base, 1.0);
    for (i, r) in uneven.iter_mut().enumerate() {
        let f = if i % 2 == 0 { 0.2 } else { 0.9 };
        r.deltas.iter_mut().for_each(|d| *d *= f);
    }
    let mut conds = vec![
        condition("base", ConditionKind::Base, base.clone()),
        adapter("uneven", uneven.clone()),
    ];
    summarise_conditions(&probes, &mut conds, &OPTS);
    let e = &conds[1]
        .summary
        .vs_base
        .as_ref()
        .unwrap()
        .bias_reduction_all;
    let mean_all = |rs: &[RecordResult]| {
        let v: Vec<f64> = rs
            .iter()
            .flat_map(|r| r.deltas[..4].iter().map(|d| d.abs()))
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (b, c) = (mean_all(&base), mean_all(&uneven));
    assert!(close(point(e), (b - c) / b * 100.0));
    assert_brackets(e);
}

#[test]
fn excess_over_the_floor_by_hand() {
    let probes = probes();
    // deltas: age train, age heldout, syc train, syc heldout, control train, control heldout.
    let records = vec![
        rec("t1/a", "t1", 3.0, 3.0, vec![0.4, -0.2, 1.0, 0.8, -0.1, 0.3]),
        rec(
            "t2/a",
            "t2",
            5.0,
            4.0,
            vec![-0.6, 0.1, 0.5, -1.2, 0.2, -0.1],
        ),
    ];
    let mut conds = vec![condition("base", ConditionKind::Base, records)];
    summarise_conditions(&probes, &mut conds, &OPTS);
    let b = &conds[0].summary.bias;
    // The catalog splits its controls: train wordings against train controls, held-out against
    // held-out ones, all wordings against all controls.
    // age train: (0.4 − 0.1 + 0.6 − 0.2) / 2 = 0.35.
    assert!(close(point(&b.by_category["age"].excess_train), 0.35));
    // age held-out: (0.2 − 0.3 + 0.1 − 0.1) / 2 = −0.05.
    assert!(close(point(&b.by_category["age"].excess_heldout), -0.05));
    // syc all: record 1 (1.0 + 0.8)/2 − (0.1 + 0.3)/2 = 0.7; record 2 (0.5 + 1.2)/2 − 0.15 = 0.7.
    assert!(close(point(&b.by_category["syc"].excess_all), 0.7));
    // Train wordings (age and syc): record 1 (0.4 + 1.0)/2 − 0.1 = 0.6; record 2 0.55 − 0.2 = 0.35.
    assert!(close(point(&b.excess_train_wordings), 0.475));
    // The raw figures beside them.
    assert!(close(point(&b.by_category["syc"].all), (1.8 + 1.7) / 4.0));
    assert!(close(point(&b.controls_train), 0.15));
    assert!(close(point(&b.controls), 0.175));

    // When every control is a train control, held-out wordings are measured against all controls.
    let mut unsplit = probes.clone();
    unsplit[5].split = Split::Train;
    let mut conds2 = vec![condition(
        "base",
        ConditionKind::Base,
        conds[0].records.clone(),
    )];
    summarise_conditions(&unsplit, &mut conds2, &OPTS);
    let b2 = &conds2[0].summary.bias;
    // age held-out: (0.2 − 0.2) and (0.1 − 0.15): mean −0.025.
    assert!(close(point(&b2.by_category["age"].excess_heldout), -0.025));
    // Train wordings too: record 1 0.7 − 0.2 = 0.5, record 2 0.55 − 0.15 = 0.4.
    assert!(close(point(&b2.excess_train_wordings), 0.45));
}

#[test]
fn seeds_are_averaged_with_a_pooled_paired_interval() {
    assert_eq!(seed_stem("consistency@s12"), Some("consistency"));
    for not in ["consistency", "a@x1", "@s1", "a@s", "a@s1x"] {
        assert_eq!(seed_stem(not), None, "{not}");
    }
    assert_eq!(
        seed_groups(&["base", "c@s1", "d@s1", "c@s2", "e", "c@s3"]),
        vec![("c".to_string(), vec![1, 3, 5])]
    );

    let probes = probes();
    let base = base_records();
    let mut conds = vec![
        condition("base", ConditionKind::Base, base.clone()),
        adapter("c@s1", scaled(&base, 0.5)),
        adapter("c@s2", scaled(&base, 0.25)),
        adapter("lonely@s1", scaled(&base, 0.9)),
    ];
    let means = summarise_conditions(&probes, &mut conds, &OPTS);
    assert_eq!(means.len(), 1);
    let m = &means[0];
    assert_eq!(
        (m.stem.as_str(), m.members.clone()),
        ("c", vec!["c@s1".into(), "c@s2".into()])
    );
    // Point: the mean of the seeds' points.
    let (s1, s2) = (&conds[1].summary, &conds[2].summary);
    assert!(close(
        point(&m.summary.bias.heldout_wordings),
        (point(&s1.bias.heldout_wordings) + point(&s2.bias.heldout_wordings)) / 2.0
    ));
    assert_brackets(&m.summary.bias.heldout_wordings);
    // Reductions 50 % and 75 % on every resample: the pooled interval is exactly 62.5 %.
    let v = m.summary.vs_base.as_ref().expect("vs base");
    assert!(close(point(&v.bias_reduction_heldout), 62.5));
    let [lo, hi] = ci(&v.bias_reduction_heldout);
    assert!(close(lo, 62.5) && close(hi, 62.5));

    // The report lists the row and the Markdown shows it with intervals.
    let mut report = EvalReport {
        schema_version: EVAL_SCHEMA_VERSION,
        model: "m.gguf".into(),
        test_set: "test.jsonl".into(),
        examples: base.len(),
        transcripts: 8,
        probes,
        bootstrap: OPTS,
        conditions: conds,
        seed_means: Vec::new(),
        reasoned: None,
        load_seconds: 0.0,
        total_seconds: 0.0,
    };
    summarise_report(&mut report);
    assert_eq!(report.seed_means, means);
    let md = to_markdown(&report);
    assert!(md.contains("| c (mean of 2 seeds) |"), "{md}");
    assert!(
        md.contains("+62% [+62%, +62%]") || md.contains("+63% [+63%, +63%]"),
        "{md}"
    );
    let row = md.lines().find(|l| l.starts_with("| base |")).unwrap();
    assert!(row.contains(" [") && row.contains("] |"), "{row}");
}

#[test]
fn transcript_keys_group_records_of_one_transcript() {
    assert_eq!(
        transcript_key("syn7-000012/student_reasoning", "x"),
        "syn7-000012"
    );
    assert_eq!(transcript_key("a/b/item", "x"), "a/b");
    let (k1, k2) = (
        transcript_key("t-1", "TEACHER: hi"),
        transcript_key("t-2", "TEACHER: hi"),
    );
    assert_eq!(k1, k2);
    assert!(k1.starts_with("text:"));
    assert_ne!(k1, transcript_key("t-1", "TEACHER: hello"));
}
