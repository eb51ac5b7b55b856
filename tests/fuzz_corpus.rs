//! Corpus replay on stable (issue 14): every committed input of `tests/corpus/<target>/` (the
//! malformed cases of the issue, and every crash or timeout fuzzing found) and every generated
//! one (`debias_guard_testkit::corpus`: tiny models and the large malformed files) goes
//! through the same entry function as its fuzz target (`fuzz/`). None may panic or take longer
//! than [`PER_INPUT`]; `bad-*` inputs must be refused with a typed error and `ok-*` inputs
//! must succeed, so removing a guard (a finite check, the GGUF tiling check, the shard
//! boundary, a work limit, the template budget) fails this test.

use debias_guard_testkit::corpus::{committed_cases, generated_cases, Case};
use debias_guard_testkit::fuzz_entry::Target;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Longest one input may take (the fuzzers run with `-timeout=10`; this leaves room for a
/// loaded machine: the slowest input, a template that burns all its fuel, takes well under
/// a second alone).
const PER_INPUT: Duration = Duration::from_secs(10);

/// Runs one case; returns a line describing a failure, if any.
fn replay(case: &Case) -> Option<String> {
    let label = format!("{}/{}", case.target.name(), case.name);
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| case.target.run(&case.bytes)));
    let elapsed = start.elapsed();
    let result = match outcome {
        Ok(result) => result,
        Err(_) => return Some(format!("{label}: panicked")),
    };
    if elapsed > PER_INPUT {
        return Some(format!("{label}: took {elapsed:?} (limit {PER_INPUT:?})"));
    }
    match (
        &result,
        case.name.starts_with("bad-"),
        case.name.starts_with("ok-"),
    ) {
        (Ok(()), true, _) => Some(format!("{label}: accepted, but it must be refused")),
        (Err(e), _, true) => Some(format!("{label}: refused ({e}), but it must succeed")),
        _ => None,
    }
}

#[test]
fn every_corpus_input_is_accepted_or_refused_in_bounded_time() {
    let mut cases = committed_cases().expect("committed corpus");
    let committed = cases.len();
    cases.extend(generated_cases().expect("generated corpus"));
    let mut failures = Vec::new();
    for target in Target::ALL {
        let of_target: Vec<&Case> = cases.iter().filter(|c| c.target == target).collect();
        assert!(
            of_target.iter().any(|c| c.name.starts_with("bad-"))
                && of_target.iter().any(|c| c.name.starts_with("ok-")),
            "{}: the corpus needs both bad- and ok- inputs",
            target.name()
        );
        failures.extend(of_target.into_iter().filter_map(replay));
    }
    assert!(
        committed >= 40,
        "only {committed} committed corpus files found"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn refusals_name_the_guard_that_fired() {
    // A few cases whose error must come from one particular guard, not from an earlier
    // accident (a truncated file, a missing key).
    let generated = generated_cases().expect("generated corpus");
    let error_of = |name: &str| -> String {
        let case = generated
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no generated case {name}"));
        match case.target.run(&case.bytes) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{name} was accepted"),
        }
    };
    for (name, needle) in [
        ("bad-nan-output-norm.gguf", "not finite"),
        ("bad-inf-q8_0-scale.gguf", "not finite"),
        ("bad-overlapping-tensors.gguf", "overlaps"),
        ("bad-type-leaves-gap.gguf", "unexplained bytes"),
        ("bad-template-doubling.gguf", "budget"),
        (
            "bad-shard-link-outside.bundle",
            "outside the model directory",
        ),
        ("bad-huge-lora-alpha.bundle", "exceeds the bound"),
        ("bad-huge-rubric.bundle", "rubric items"),
        ("bad-huge-probe-catalog.bundle", "probe wordings"),
    ] {
        let e = error_of(name);
        assert!(e.contains(needle), "{name}: {e}");
    }
}
