//! The runtime check: score with the context the host supplies and, in the same pass, without
//! it; report both, their delta and a flag (`|delta| >= abs_threshold`).

use super::delta::dg_bias_delta;
use super::error::{dg_error, dg_status, out_arg, run, write_out};
use super::model::dg_model;
use super::owned::{arg_ref, arg_str, arg_strs, free_c, into_c, opt_ref, Arena};
use super::rubric::{dg_rubric, rubric_or_builtin, select_items};
use super::score::{arg_transcript, c_distribution, dg_distribution};
use crate::guard::{check_items, CheckOptions};
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
}

/// The default check options: threshold 0.5 scale points, no mitigation. Thread-safe.
#[ffi_export]
pub fn dg_check_default_options() -> dg_check_options {
    let d = CheckOptions::default();
    dg_check_options {
        abs_threshold: d.abs_threshold,
        mitigate: d.mitigate,
    }
}

/// Runtime check: scores rubric items on a transcript with `context` and without it, all in one
/// pass, and flags each item whose expected score moves by at least `abs_threshold`.
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
    run(error, || {
        let out = out_arg(out_checks, "out_checks")?;
        // SAFETY: pointer arguments follow the header's conventions (NULL or valid).
        let (model, rubric, ids, transcript, context, options) = unsafe {
            (
                arg_ref(model, "model")?,
                rubric_or_builtin(rubric)?,
                arg_strs(item_ids, n_items, "item_ids")?,
                arg_transcript(transcript)?,
                arg_str(context, "context")?,
                opt_ref(options, "options")?,
            )
        };
        let options = options
            .copied()
            .unwrap_or_else(|| dg_check_default_options());
        let items = select_items(rubric, &ids)?;
        let results = check_items(
            &model.engine,
            &model.builder,
            &transcript,
            &items,
            context,
            &CheckOptions {
                abs_threshold: options.abs_threshold,
                mitigate: options.mitigate,
            },
        )?;
        let mut arena = Arena::default();
        let c_results: Vec<dg_check_result> = items
            .iter()
            .zip(&results)
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
        let public = dg_checks {
            count: c_results.len(),
            any_flagged: results.iter().any(|r| r.flagged),
            results: arena.array(c_results),
        };
        write_out(out, into_c(public, arena, ()));
        Ok(())
    })
}

/// Releases results returned by `dg_check`. NULL is ignored. No other thread may still be
/// reading them.
#[ffi_export]
pub unsafe fn dg_checks_free(checks: *mut dg_checks) {
    // SAFETY: NULL or a `dg_checks_t` from `dg_check`, not freed before.
    super::error::quietly(|| unsafe { free_c::<dg_checks, ()>(checks) });
}
