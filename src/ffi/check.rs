//! The runtime check: score with the context the host supplies and, in the same pass, without
//! it; report both, their delta and a flag. `dg_check` flags `|delta| >= abs_threshold`;
//! `dg_check_calibrated` judges `|delta|` against the noise floor of the same transcript and
//! item (`max(abs_threshold, k x floor)`, the audit's rule), measured from the built-in control
//! sentences in the same pass or read from a saved audit report.

use super::delta::dg_bias_delta;
use super::error::Failure;
use super::error::{dg_error, dg_status, out_arg, run, write_out};
use super::model::dg_model;
use super::owned::opt_str;
use super::owned::{arg_ref, arg_str, arg_strs, free_c, into_c, opt_ref, Arena};
use super::rubric::{dg_rubric, rubric_or_builtin, select_items};
use super::score::{arg_transcript, c_distribution, dg_distribution};
use crate::guard::{check_items, AuditReport, Calibration, CheckOptions, CheckResult};
use safer_ffi::c_char;
use safer_ffi::prelude::*;

/// Options of `dg_check`. Start from `dg_check_default_options()`.
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct dg_check_options {
    /// Flag when `|delta|` reaches this many scale points (finite, >= 0; default 0.5).
    pub abs_threshold: f64,
    /// Add the instruction to ignore irrelevant information to both prompts (default false).
    pub mitigate: bool,
}

/// The runtime check of one rubric item.
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_check_result {
    /// The rubric item (NUL-terminated).
    pub item_id: *const c_char,
    /// The context as used (trimmed; NUL-terminated).
    pub context: *const c_char,
    /// The score the host asked for: with the context.
    pub contextual: dg_distribution,
    /// The score without the context.
    pub neutral: dg_distribution,
    /// Their difference.
    pub delta: dg_bias_delta,
    /// `delta.abs_delta >= abs_threshold`.
    pub flagged: bool,
    /// The threshold used (scale points).
    pub abs_threshold: f64,
}

/// Results of `dg_check`, one per item. Release with `dg_checks_free`.
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_checks {
    /// Number of results (one per requested item).
    pub count: usize,
    /// Whether any result is flagged.
    pub any_flagged: bool,
    /// The results, in the order the items were requested.
    pub results: *const dg_check_result,
    /// How each result was judged, parallel to `results` (`count` entries). Added after
    /// `results` so the struct stays compatible with callers built against older headers.
    pub calibrations: *const dg_check_calibration_result,
}

/// Where `dg_check_calibrated` takes the noise floor from (values of
/// `dg_check_calibration_t.mode`).
#[ffi_export]
#[derive_ReprC]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum dg_calibration_mode {
    /// No floor: flag when `|delta| >= abs_threshold` (what `dg_check` does).
    Flat = 0,
    /// Score the built-in `heldout` control sentences (4, never trained on) in the same pass;
    /// floor = their mean `|delta|`.
    Controls = 1,
    /// Read the floors from a saved audit report of the same transcript (`report_json`).
    Report = 2,
}

/// Calibration of `dg_check_calibrated`. Start from `dg_check_default_calibration()`; the
/// string is read during the call only.
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_check_calibration {
    /// A `dg_calibration_mode_t` value; default `DG_CALIBRATION_MODE_CONTROLS`.
    pub mode: u32,
    /// `|delta|` must also reach `k` x the noise floor (finite, >= 0; default 3; unused when flat).
    pub k: f64,
    /// `DG_CALIBRATION_MODE_REPORT`: the JSON text of an audit report of the same transcript
    /// (as written by `dg_audit_json` or `debias-guard audit --json`); otherwise NULL.
    pub report_json: *const c_char,
}

/// How one check result was judged.
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_check_calibration_result {
    /// A `dg_calibration_mode_t` value: where the floor came from.
    pub mode: u32,
    /// Mean `|delta|` of the control sentences, scale points (0 when flat).
    pub noise_floor: f64,
    /// The threshold `|delta|` was compared with: `max(abs_threshold, k x noise_floor)`.
    pub flag_threshold: f64,
}

/// The default calibration: the built-in controls, `k` = 3, no report. Thread-safe.
#[ffi_export]
pub fn dg_check_default_calibration() -> dg_check_calibration {
    dg_check_calibration {
        mode: dg_calibration_mode::Controls as u32,
        k: crate::guard::thresholds::DEFAULT_NOISE_MULTIPLE,
        report_json: std::ptr::null(),
    }
}

/// The default check options: threshold 0.5 scale points, no mitigation. Thread-safe.
#[ffi_export]
pub fn dg_check_default_options() -> dg_check_options {
    let d = CheckOptions::flat(crate::guard::thresholds::DEFAULT_ABS_THRESHOLD);
    dg_check_options {
        abs_threshold: d.abs_threshold,
        mitigate: d.mitigate,
    }
}

/// Runtime check: scores rubric items on a transcript with `context` and without it, all in one
/// pass, and flags each item whose expected score moves by at least `abs_threshold` (no noise
/// floor; see `dg_check_calibrated`).
///
/// `rubric`: NULL = built-in. `item_ids`, `n_items`: as for `dg_score` (0 = every item).
/// `context`: the sentence the host would add (UTF-8, non-blank, at most 1000 characters).
/// `options`: NULL = `dg_check_default_options()`.
/// On success writes a new `dg_checks_t` to `*out_checks`; release it with `dg_checks_free`.
/// Returns the statuses of `dg_score` (`DG_STATUS_INVALID_ARGUMENT` also for a negative or
/// non-finite threshold). Thread-safe.
#[ffi_export]
pub unsafe fn dg_check(
    model: *const dg_model,
    rubric: *const dg_rubric,
    item_ids: *const *const c_char,
    n_items: usize,
    transcript: *const c_char,
    context: *const c_char,
    options: *const dg_check_options,
    out_checks: *mut *mut dg_checks,
    error: *mut *mut dg_error,
) -> dg_status {
    let flat = dg_check_calibration {
        mode: dg_calibration_mode::Flat as u32,
        ..dg_check_default_calibration()
    };
    // SAFETY: the caller's pointers, passed on unchanged; `flat` lives through the call.
    unsafe {
        dg_check_calibrated(
            model, rubric, item_ids, n_items, transcript, context, options, &flat, out_checks,
            error,
        )
    }
}

/// Calibrated runtime check: as `dg_check`, but an item is flagged when `|delta|` reaches
/// `max(options->abs_threshold, calibration->k x noise floor)`, the floor being how far
/// irrelevant sentences move the same item on the same transcript (the audit's rule).
///
/// `calibration`: NULL = `dg_check_default_calibration()` (the built-in controls, scored in
/// the same prefix-shared pass). Each result's floor and threshold are in
/// `(*out_checks)->calibrations`. Returns the statuses of `dg_check`;
/// `DG_STATUS_INVALID_ARGUMENT` also for an unknown mode, a bad `k`, a missing or unreadable
/// `report_json`, or a report of another transcript or without the requested items.
/// Thread-safe.
#[ffi_export]
pub unsafe fn dg_check_calibrated(
    model: *const dg_model,
    rubric: *const dg_rubric,
    item_ids: *const *const c_char,
    n_items: usize,
    transcript: *const c_char,
    context: *const c_char,
    options: *const dg_check_options,
    calibration: *const dg_check_calibration,
    out_checks: *mut *mut dg_checks,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        let out = out_arg(out_checks, "out_checks")?;
        // SAFETY: pointer arguments follow the header's conventions (NULL or valid).
        let (model, rubric, ids, transcript, context, options, calibration) = unsafe {
            (
                arg_ref(model, "model")?,
                rubric_or_builtin(rubric)?,
                arg_strs(item_ids, n_items, "item_ids")?,
                arg_transcript(transcript)?,
                arg_str(context, "context")?,
                opt_ref(options, "options")?,
                opt_ref(calibration, "calibration")?,
            )
        };
        let options = options
            .copied()
            .unwrap_or_else(|| dg_check_default_options());
        let c = calibration
            .copied()
            .unwrap_or_else(|| dg_check_default_calibration());
        // SAFETY: NULL or a NUL-terminated string, per the header.
        let report_json = unsafe { opt_str(c.report_json, "calibration->report_json")? };
        let calibration = match (c.mode, report_json) {
            (0, _) => Calibration::Flat,
            (1, _) => Calibration::default_controls(),
            (2, Some(text)) => {
                Calibration::from_report(&AuditReport::from_json(text, "calibration->report_json")?)
            }
            (2, None) => {
                return Err(Failure::invalid(
                    "calibration->report_json is NULL; DG_CALIBRATION_MODE_REPORT needs a report",
                ))
            }
            (other, _) => {
                return Err(Failure::invalid(format!(
                    "calibration->mode {other} is not a dg_calibration_mode_t value (0, 1 or 2)"
                )))
            }
        };
        let items = select_items(rubric, &ids)?;
        let results = check_items(
            &model.engine,
            &model.builder,
            &transcript,
            &items,
            context,
            &CheckOptions {
                abs_threshold: options.abs_threshold,
                k: c.k,
                calibration,
                mitigate: options.mitigate,
            },
        )?;
        write_out(out, c_checks(&items, &results, c.mode));
        Ok(())
    })
}

/// The C form of check results (`mode`: the `dg_calibration_mode_t` they were judged with).
fn c_checks(items: &[crate::RubricItem], results: &[CheckResult], mode: u32) -> *mut dg_checks {
    let mut arena = Arena::default();
    let c_results: Vec<dg_check_result> = items
        .iter()
        .zip(results)
        .map(|(item, r)| dg_check_result {
            item_id: arena.str(&r.item_id),
            context: arena.str(&r.context),
            contextual: c_distribution(&mut arena, item, &r.contextual),
            neutral: c_distribution(&mut arena, item, &r.neutral),
            delta: dg_bias_delta::from(&r.delta),
            flagged: r.flagged,
            abs_threshold: r.abs_threshold,
        })
        .collect();
    let calibrations: Vec<dg_check_calibration_result> = results
        .iter()
        .map(|r| dg_check_calibration_result {
            mode,
            noise_floor: r.noise_floor.unwrap_or(0.0),
            flag_threshold: r.flag_threshold,
        })
        .collect();
    let public = dg_checks {
        count: c_results.len(),
        any_flagged: results.iter().any(|r| r.flagged),
        results: arena.array(c_results),
        calibrations: arena.array(calibrations),
    };
    into_c(public, arena, ())
}

/// Releases results returned by `dg_check`. NULL is ignored. No other thread may still be
/// reading them.
#[ffi_export]
pub unsafe fn dg_checks_free(checks: *mut dg_checks) {
    // SAFETY: NULL or a `dg_checks_t` from `dg_check`, not freed before.
    super::error::quietly(|| unsafe { free_c::<dg_checks, ()>(checks) });
}
