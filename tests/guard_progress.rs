//! Progress reports and cancellation of audits on the tiny model: reports are monotone, in the
//! documented units, and reach their total; a callback returning false or a set flag stops the
//! audit with `Error::Cancelled`.

mod guard_common;

use debias_guard::engine::{observe, Observer, Progress};
use debias_guard::guard::{
    self, AuditMode, AuditOptions, AuditReport, AuditRequest, ProbeCatalog, ReasoningOptions,
};
use debias_guard::{Engine, Error, PromptBuilder, Rubric, Transcript};
use debias_guard_testkit::SHORT_TRANSCRIPT;
use guard_common::tiny_engine;
use std::sync::atomic::{AtomicBool, Ordering};

fn audit(
    engine: &Engine,
    options: AuditOptions,
    progress: Progress<'_>,
) -> debias_guard::Result<AuditReport> {
    let transcript = Transcript::new(SHORT_TRANSCRIPT).unwrap();
    let rubric = Rubric::builtin();
    let catalog = ProbeCatalog::builtin();
    guard::audit_with(
        engine,
        &PromptBuilder::default(),
        &AuditRequest {
            transcript: &transcript,
            transcript_name: "<inline>",
            items: &rubric.items[..2],
            catalog: &catalog,
            catalog_name: "<built-in probes>",
            options,
        },
        progress,
    )
}

fn reasoned(max_tokens: usize) -> AuditOptions {
    AuditOptions {
        mode: AuditMode::Reasoned(ReasoningOptions {
            max_tokens,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Runs an observed audit and returns its result with every report the callback saw.
fn watched(
    engine: &Engine,
    options: AuditOptions,
    answer: impl Fn(usize) -> bool,
) -> (debias_guard::Result<AuditReport>, Vec<(u64, u64)>) {
    let mut seen = Vec::new();
    let mut cb = |done: u64, total: u64| {
        seen.push((done, total));
        answer(seen.len())
    };
    let out = observe(
        Observer {
            on_progress: Some(&mut cb),
            cancelled: None,
        },
        |p| audit(engine, options, p),
    );
    (out, seen)
}

fn assert_monotone_to_the_end(seen: &[(u64, u64)], total: u64) {
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|&(_, t)| t == total), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    assert_eq!(seen.last(), Some(&(total, total)), "{seen:?}");
}

#[test]
fn a_direct_audit_counts_the_tokens_it_runs_and_gives_the_same_report() {
    let engine = tiny_engine();
    let plain = audit(&engine, AuditOptions::default(), Progress::NONE).unwrap();
    let (out, seen) = watched(&engine, AuditOptions::default(), |_| true);
    let report = out.unwrap();
    let tokens = report.timings.tokens_evaluated as u64;
    assert_monotone_to_the_end(&seen, tokens);
    assert_eq!(report.items, plain.items);
    assert_eq!(report.verdict, plain.verdict);
}

#[test]
fn a_reasoned_audit_counts_steps_then_the_scoring_pass() {
    let engine = tiny_engine();
    let (out, seen) = watched(&engine, reasoned(5), |_| true);
    out.unwrap();
    // Two items, one condition: 5 steps each, then one unit each for scoring.
    assert_monotone_to_the_end(&seen, 2 * (5 + 1));
}

#[test]
fn false_from_the_first_report_cancels_the_audit() {
    let engine = tiny_engine();
    let (out, seen) = watched(&engine, reasoned(48), |_| false);
    assert!(matches!(out, Err(Error::Cancelled)), "{:?}", out.err());
    assert_eq!(seen.len(), 1, "no report after the callback said stop");
}

#[test]
fn a_set_flag_cancels_the_audit() {
    let engine = tiny_engine();
    let flag = AtomicBool::new(false);
    let stop = || flag.load(Ordering::Relaxed);
    let mut reports = 0;
    let mut cb = |_: u64, _: u64| {
        reports += 1;
        flag.store(true, Ordering::Relaxed);
        true
    };
    let out = observe(
        Observer {
            on_progress: Some(&mut cb),
            cancelled: Some(&stop),
        },
        |p| audit(&engine, reasoned(48), p),
    );
    assert!(matches!(out, Err(Error::Cancelled)), "{:?}", out.err());
    assert!(reports >= 1);
    // A flag set before the call stops it before any work.
    let out = observe(
        Observer {
            on_progress: None,
            cancelled: Some(&stop),
        },
        |p| audit(&engine, AuditOptions::default(), p),
    );
    assert!(matches!(out, Err(Error::Cancelled)));
}
