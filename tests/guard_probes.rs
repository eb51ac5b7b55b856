//! Probe catalog: the built-in file's shape, split selection, and typed errors for bad files.

use debias_guard::guard::probes::{
    PoleSide, ProbeCatalog, ProbeKind, Split, SplitSelection, DEFAULT_PROBES_JSON,
};
use debias_guard::Error;

fn config_error(text: &str) -> (usize, String) {
    match ProbeCatalog::from_json(text, "test.json") {
        Err(Error::Config {
            what,
            source_name,
            line,
            reason,
        }) => {
            assert_eq!(what, "probe catalog");
            assert_eq!(source_name, "test.json");
            (line, reason)
        }
        other => panic!("expected a probe catalog error, got {other:?}"),
    }
}

/// The built-in catalog with one edit applied to its JSON value.
fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(DEFAULT_PROBES_JSON).unwrap();
    edit(&mut v);
    serde_json::to_string_pretty(&v).unwrap()
}

fn line_of(text: &str, needle: &str) -> usize {
    let pos = text.find(needle).expect("needle present");
    text[..pos].lines().count()
}

#[test]
fn builtin_catalog_has_seven_categories_with_two_poles_and_both_splits() {
    let c = ProbeCatalog::builtin();
    assert_eq!(c.version, 1);
    assert_eq!(c.categories.len(), 7);
    for cat in &c.categories {
        for side in [PoleSide::High, PoleSide::Low] {
            let pole = cat.poles.side(side);
            assert!(pole.wordings.len() >= 3, "{}/{side:?}", cat.id);
            assert!(pole.wordings.iter().any(|w| w.split == Split::Train));
            assert!(pole.wordings.iter().any(|w| w.split == Split::Heldout));
        }
    }
    assert!(c.controls.len() >= 3);
    assert!(c.controls.iter().any(|w| w.split == Split::Heldout));
}

#[test]
fn split_selection_partitions_the_wordings() {
    let c = ProbeCatalog::builtin();
    let all = c.probes(SplitSelection::All);
    let train = c.probes(SplitSelection::Train);
    let heldout = c.probes(SplitSelection::Heldout);
    assert_eq!(all.len(), train.len() + heldout.len());
    assert_eq!(all.len(), 7 * 2 * 5 + 10);
    assert_eq!(train.len(), 7 * 2 * 3 + 6);
    assert!(train.iter().all(|p| p.split == Split::Train));
    assert!(heldout.iter().all(|p| p.split == Split::Heldout));
    // Categories first (high pole before low), controls last.
    assert_eq!(
        all[0].kind,
        ProbeKind::Category {
            category: "experience".into(),
            pole: PoleSide::High
        }
    );
    assert_eq!(all.last().unwrap().kind, ProbeKind::Control);
    assert_eq!(
        "heldout".parse::<SplitSelection>().unwrap(),
        SplitSelection::Heldout
    );
    assert!(matches!(
        "dev".parse::<SplitSelection>(),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn not_json_is_a_config_error_with_a_line() {
    let (line, reason) = config_error("{\n  \"version\": 1,\n  oops\n}");
    assert_eq!(line, 3);
    assert!(reason.contains("key must be a string"), "{reason}");
}

#[test]
fn missing_field_names_the_field_and_line() {
    let text = edited(|v| {
        v["categories"][0]["poles"]["high"]["wordings"][1]
            .as_object_mut()
            .unwrap()
            .remove("split");
    });
    let (line, reason) = config_error(&text);
    assert!(reason.contains("missing field `split`"), "{reason}");
    // serde reports the end of the object that lacks the field: just after the wording's text.
    let text_line = line_of(&text, "For context, this lesson was led by a veteran");
    assert!(
        (text_line..=text_line + 2).contains(&line),
        "line {line}, wording text on {text_line}"
    );

    let text = edited(|v| {
        v.as_object_mut().unwrap().remove("controls");
    });
    let (_, reason) = config_error(&text);
    assert!(reason.contains("missing field `controls`"), "{reason}");
}

#[test]
fn malformed_pole_key_is_rejected_with_its_line() {
    let text = edited(|v| {
        let poles = v["categories"][2]["poles"].as_object_mut().unwrap();
        let low = poles.remove("low").unwrap();
        poles.insert("lo".into(), low);
    });
    let (line, reason) = config_error(&text);
    assert!(reason.contains("unknown field `lo`"), "{reason}");
    assert_eq!(line, line_of(&text, "\"lo\""));
}

#[test]
fn wording_filed_under_an_unknown_category_or_pole_is_rejected() {
    // A wording whose id names a category that does not exist.
    let text = edited(|v| {
        v["categories"][0]["poles"]["high"]["wordings"][0]["id"] = "seniority.high.1".into();
    });
    let (line, reason) = config_error(&text);
    assert!(reason.contains("seniority.high.1"), "{reason}");
    assert_eq!(line, line_of(&text, "\"seniority.high.1\""));

    // A wording whose id names the other pole.
    let text = edited(|v| {
        v["categories"][1]["poles"]["low"]["wordings"][0]["id"] = "education.high.9".into();
    });
    let (_, reason) = config_error(&text);
    assert!(reason.contains("education.high.9"), "{reason}");
    assert!(reason.contains("education.low.<name>"), "{reason}");

    // A control without the control prefix.
    let text = edited(|v| v["controls"][0]["id"] = "weather".into());
    let (_, reason) = config_error(&text);
    assert!(reason.contains("control.<name>"), "{reason}");
}

#[test]
fn empty_pole_is_rejected() {
    let text = edited(|v| {
        v["categories"][3]["poles"]["low"]["wordings"] = serde_json::json!([]);
    });
    let (line, reason) = config_error(&text);
    assert!(
        reason.contains("pole `low` of category `gender` has no wordings"),
        "{reason}"
    );
    assert_eq!(line, line_of(&text, "\"gender\""));
}

#[test]
fn duplicate_ids_are_rejected() {
    let text = edited(|v| {
        v["categories"][0]["poles"]["high"]["wordings"][1]["id"] = "experience.high.1".into();
    });
    let (_, reason) = config_error(&text);
    assert!(
        reason.contains("duplicate wording id `experience.high.1`"),
        "{reason}"
    );

    let text = edited(|v| {
        let first = v["categories"][0].clone();
        v["categories"].as_array_mut().unwrap().push(first);
    });
    let (_, reason) = config_error(&text);
    assert!(
        reason.contains("duplicate category id `experience`"),
        "{reason}"
    );
}

#[test]
fn bad_texts_versions_and_fields_are_rejected() {
    let long = "x".repeat(debias_guard::prompt::MAX_CONTEXT_CHARS + 1);
    let text = edited(|v| v["controls"][2]["text"] = long.into());
    let (_, reason) = config_error(&text);
    assert!(reason.contains("limit is 1000"), "{reason}");

    let text = edited(|v| v["controls"][2]["text"] = "   ".into());
    let (_, reason) = config_error(&text);
    assert!(reason.contains("empty"), "{reason}");

    let text = edited(|v| v["version"] = 2.into());
    let (_, reason) = config_error(&text);
    assert!(reason.contains("unsupported version 2"), "{reason}");

    let text = edited(|v| v["controls"][0]["split"] = "dev".into());
    let (_, reason) = config_error(&text);
    assert!(reason.contains("unknown variant `dev`"), "{reason}");

    let text = edited(|v| v["categories"][0]["weight"] = 1.into());
    let (_, reason) = config_error(&text);
    assert!(reason.contains("unknown field `weight`"), "{reason}");

    let text = edited(|v| v["controls"] = serde_json::json!([]));
    let (_, reason) = config_error(&text);
    assert!(reason.contains("no control sentences"), "{reason}");
}

#[test]
fn a_user_catalog_loads_from_a_file_and_missing_files_are_io_errors() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("guard_probes_small.json");
    let small = edited(|v| {
        v["categories"].as_array_mut().unwrap().truncate(1);
        v["controls"].as_array_mut().unwrap().truncate(2);
    });
    std::fs::write(&path, small).unwrap();
    let c = ProbeCatalog::load(&path).unwrap();
    assert_eq!(c.categories.len(), 1);
    assert_eq!(c.probes(SplitSelection::All).len(), 2 * 5 + 2);
    assert!(matches!(
        ProbeCatalog::load(dir.join("no_such_catalog.json")),
        Err(Error::Io { .. })
    ));
}
