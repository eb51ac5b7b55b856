//! The audit: one transcript × rubric items × every probe wording, scored in one prefix-shared
//! pass, each category compared with the control noise floor. The result carries typed summary
//! fields for the host and the complete versioned JSON report.

use super::error::{dg_error, dg_status, out_arg, run, write_out, Failure};
use super::model::dg_model;
use super::owned::{arg_ref, arg_str, arg_strs, extra_of, free_c, into_c, opt_ref, opt_str, Arena};
use super::progress::{dg_progress_fn, Watch};
use super::rubric::{dg_rubric, rubric_or_builtin, select_items};
use super::score::{arg_transcript, c_distribution, dg_distribution};
use crate::guard::report::{AuditReport, ConditionAudit, VerdictStatus};
use crate::guard::{
    audit_with, AuditMode, AuditOptions, AuditRequest, ProbeCatalog, ReasoningOptions,
    SplitSelection, Thresholds,
};
use crate::rubric::RubricItem;
use safer_ffi::c_char;
use safer_ffi::prelude::*;
use std::ffi::c_void;
use std::ptr;

/// Which probe wordings an audit uses (values of `dg_audit_options_t.split`).
#[ffi_export]
#[derive_ReprC]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum dg_split {
    /// Every wording.
    All = 0,
    /// Only the wordings marked `train`.
    Train = 1,
    /// Only the wordings marked `heldout`.
    Heldout = 2,
}

/// How an audit reads ratings (values of `dg_audit_options_t.mode`).
#[ffi_export]
#[derive_ReprC]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum dg_audit_mode {
    /// Right after the prompt: one prefix-shared pass (fast).
    Direct = 0,
    /// After a short reasoning the model generates per variant (slow: one generation each).
    Reasoned = 1,
}

/// Options of `dg_audit`. Start from `dg_audit_default_options()`; strings are read during the
/// call only.
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_audit_options {
    /// Probe catalog JSON file; NULL = the built-in catalog (7 categories x 2 poles x
    /// 4 wordings, 8 controls).
    pub probes_path: *const c_char,
    /// Name of the transcript in the report (e.g. its file name); NULL = `"<inline>"`.
    pub transcript_name: *const c_char,
    /// A `dg_split_t` value; default `DG_SPLIT_ALL`.
    pub split: u32,
    /// Smallest largest-|delta| that can be flagged, in scale points (finite, >= 0; default 0.5).
    pub abs_threshold: f64,
    /// A category must also reach `k` x the noise floor (finite, >= 0; default 3).
    pub k: f64,
    /// Also run every prompt with the mitigation instruction, for comparison (default false).
    pub mitigation_baseline: bool,
    /// A `dg_audit_mode_t` value; default `DG_AUDIT_MODE_DIRECT`.
    pub mode: u32,
    /// Reasoned mode: most reasoning tokens per variant (1 to 1024; default 96).
    pub max_reasoning_tokens: u32,
    /// Reasoned mode: sampling temperature; 0 = greedy (default).
    pub temperature: f64,
    /// Reasoned mode: nucleus sampling threshold, 0 < top_p <= 1 (default 1).
    pub top_p: f64,
    /// Reasoned mode: sampler seed (default 0).
    pub seed: u64,
    /// Called with `(progress_user_data, done, total)` as the audit moves on, on the thread
    /// that called `dg_audit`; `done` never decreases and `total` is fixed for the call
    /// (direct mode: tokens run through the model; reasoned mode: decoding steps,
    /// max_reasoning_tokens per item and condition, plus one per item and condition for the
    /// scoring pass). Return false to cancel:
    /// the call then returns DG_STATUS_CANCELLED. It must not call back into the same audit.
    /// NULL = no reports (default).
    pub progress: dg_progress_fn,
    /// Passed to `progress` unchanged (default NULL).
    pub progress_user_data: *mut c_void,
    /// NULL, or a flag the library reads (atomically, every few milliseconds and between
    /// forward passes) while the call runs; set it to non-zero from any thread to cancel with
    /// DG_STATUS_CANCELLED. Must stay valid until the call returns (default NULL).
    pub cancel: *const i32,
}

/// Summary of one probe category under one condition.
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_audit_category {
    /// Category id (e.g. `"experience"`; NUL-terminated).
    pub id: *const c_char,
    /// Category title (NUL-terminated).
    pub name: *const c_char,
    /// Wordings evaluated (both poles).
    pub wordings: usize,
    /// Mean signed delta over all wordings (scale points).
    pub mean_delta: f64,
    /// Largest |delta| over all wordings (scale points); compared with the flag threshold.
    pub max_abs_delta: f64,
    /// Mean signed delta of the high pole's wordings.
    pub high_mean_delta: f64,
    /// Mean signed delta of the low pole's wordings.
    pub low_mean_delta: f64,
    /// `high_mean_delta - low_mean_delta`.
    pub pole_gap: f64,
    /// Mean Wasserstein-1 distance over all wordings (scale points).
    pub mean_wasserstein: f64,
    /// Wordings that changed the most probable label.
    pub argmax_changes: usize,
    /// `max_abs_delta >= flag_threshold` of its condition.
    pub flagged: bool,
}

/// Results of one rubric item under one prompt condition (plain, or with the mitigation
/// instruction).
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_audit_condition {
    /// Whether every prompt carried the mitigation instruction.
    pub mitigated: bool,
    /// The score without any context.
    pub neutral: dg_distribution,
    /// Mean |delta| of the control sentences (scale points).
    pub noise_floor: f64,
    /// Largest |delta| of a control sentence (scale points).
    pub control_max_abs_delta: f64,
    /// `max(abs_threshold, k x noise_floor)`: a category whose largest |delta| reaches it is
    /// flagged.
    pub flag_threshold: f64,
    /// Whether any category is flagged.
    pub flagged: bool,
    /// Number of categories: the length of `categories`.
    pub n_categories: usize,
    /// One summary per category, in catalog order.
    pub categories: *const dg_audit_category,
}

/// Results for one rubric item.
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_audit_item {
    /// The rubric item id (NUL-terminated).
    pub item_id: *const c_char,
    /// The prompts as they are; the verdict is based on this condition.
    pub plain: dg_audit_condition,
    /// The same probes with the mitigation instruction; NULL unless
    /// `mitigation_baseline` was set.
    pub mitigated: *const dg_audit_condition,
}

/// An audit's outcome, from `dg_audit`. Release with `dg_audit_free`.
///
/// The "worst" fields name the category with the largest |delta| over every item's plain
/// condition (the first one on ties), whether or not it is flagged.
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_audit {
    /// Verdict: true when any category reached its flag threshold on any item.
    pub flagged: bool,
    /// Number of flagged (item, category) pairs.
    pub n_flags: usize,
    /// Item of the worst category (NUL-terminated).
    pub worst_item_id: *const c_char,
    /// The worst category's id (NUL-terminated).
    pub worst_category_id: *const c_char,
    /// The worst category's largest |delta| (scale points).
    pub worst_abs_delta: f64,
    /// The flag threshold the worst category was compared with (scale points).
    pub worst_flag_threshold: f64,
    /// Noise floor of the worst category's item: mean |delta| of the control sentences.
    pub noise_floor: f64,
    /// Number of items: the length of `items`.
    pub n_items: usize,
    /// Per-item results, in the order the items were requested.
    pub items: *const dg_audit_item,
    /// One sentence for people (NUL-terminated).
    pub summary: *const c_char,
    /// Number of warnings: the length of `warnings`.
    pub n_warnings: usize,
    /// Things a reader should know, e.g. low label mass (NUL-terminated strings).
    pub warnings: *const *const c_char,
    /// The complete report as pretty JSON (schema `docs/report.schema.json`; NUL-terminated).
    pub report_json: *const c_char,
    /// Length of `report_json` in bytes, without the NUL.
    pub report_json_len: usize,
}

/// The default audit options: built-in probes, every wording, thresholds 0.5 and k = 3, no
/// mitigation baseline, direct mode (reasoning fields at their defaults). Thread-safe.
#[ffi_export]
pub fn dg_audit_default_options() -> dg_audit_options {
    let thresholds = Thresholds::default();
    let reasoning = ReasoningOptions::default();
    dg_audit_options {
        probes_path: ptr::null(),
        transcript_name: ptr::null(),
        split: dg_split::All as u32,
        abs_threshold: thresholds.abs_threshold,
        k: thresholds.k,
        mitigation_baseline: false,
        mode: dg_audit_mode::Direct as u32,
        max_reasoning_tokens: reasoning.max_tokens as u32,
        temperature: reasoning.temperature,
        top_p: reasoning.top_p,
        seed: reasoning.seed,
        progress: None,
        progress_user_data: ptr::null_mut(),
        cancel: ptr::null(),
    }
}

fn c_condition(arena: &mut Arena, item: &RubricItem, c: &ConditionAudit) -> dg_audit_condition {
    let categories: Vec<dg_audit_category> = c
        .categories
        .iter()
        .map(|cat| dg_audit_category {
            id: arena.str(&cat.id),
            name: arena.str(&cat.name),
            wordings: cat.wordings,
            mean_delta: cat.mean_delta,
            max_abs_delta: cat.max_abs_delta,
            high_mean_delta: cat.high_mean_delta,
            low_mean_delta: cat.low_mean_delta,
            pole_gap: cat.pole_gap,
            mean_wasserstein: cat.mean_wasserstein,
            argmax_changes: cat.argmax_changes,
            flagged: cat.flagged,
        })
        .collect();
    dg_audit_condition {
        mitigated: c.mitigated,
        neutral: c_distribution(arena, item, &c.neutral.distribution),
        noise_floor: c.noise_floor,
        control_max_abs_delta: c.control_max_abs_delta,
        flag_threshold: c.flag_threshold,
        flagged: c.flagged,
        n_categories: categories.len(),
        categories: arena.array(categories),
    }
}

/// The C form of a report; its strings and arrays go into `arena`.
fn c_audit(arena: &mut Arena, report: &AuditReport, json: String) -> dg_audit {
    let items: Vec<dg_audit_item> = report
        .rubric_items
        .iter()
        .zip(&report.items)
        .map(|(item, result)| {
            let plain = c_condition(arena, item, &result.plain);
            let mitigated = match &result.mitigated {
                Some(m) => {
                    let c = c_condition(arena, item, m);
                    arena.one(c)
                }
                None => ptr::null(),
            };
            dg_audit_item {
                item_id: arena.str(&result.item_id),
                plain,
                mitigated,
            }
        })
        .collect();
    // The worst category: largest max |delta| over the plain conditions, first on ties.
    let mut worst: Option<(&str, &str, f64, f64, f64)> = None;
    for result in &report.items {
        let c = &result.plain;
        for cat in &c.categories {
            if worst.is_none_or(|w| cat.max_abs_delta > w.2) {
                worst = Some((
                    &result.item_id,
                    &cat.id,
                    cat.max_abs_delta,
                    c.flag_threshold,
                    c.noise_floor,
                ));
            }
        }
    }
    dg_audit {
        flagged: report.verdict.status == VerdictStatus::Flagged,
        n_flags: report.verdict.flagged.len(),
        worst_item_id: arena.opt_str(worst.map(|w| w.0)),
        worst_category_id: arena.opt_str(worst.map(|w| w.1)),
        worst_abs_delta: worst.map_or(0.0, |w| w.2),
        worst_flag_threshold: worst.map_or(0.0, |w| w.3),
        noise_floor: worst.map_or(0.0, |w| w.4),
        n_items: items.len(),
        items: arena.array(items),
        summary: arena.str(&report.verdict.summary),
        n_warnings: report.warnings.len(),
        warnings: arena.strs(&report.warnings),
        report_json_len: json.len(),
        report_json: arena.str(&json),
    }
}

/// Audits a model for spurious-context bias on one transcript: scores each rubric item without
/// context, with every probe wording and with every control sentence, then flags each category
/// whose largest |delta| reaches `max(abs_threshold, k x noise_floor)`.
///
/// `rubric`: NULL = built-in. `item_ids`, `n_items`: as for `dg_score` (0 = every item; ids must
/// be distinct). `options`: NULL = `dg_audit_default_options()`.
/// On success writes a new `dg_audit_t` to `*out_audit`; release it with `dg_audit_free`.
/// Returns the statuses of `dg_score`, plus `DG_STATUS_IO` / `DG_STATUS_CONFIG` for the probe
/// file, `DG_STATUS_INVALID_ARGUMENT` for bad option values and `DG_STATUS_CANCELLED` when
/// `options->progress` returned false or `*options->cancel` was set. Takes seconds to minutes
/// (about 65 prompts per item with the built-in catalog): watch it with `options->progress`.
/// Thread-safe.
#[ffi_export]
pub unsafe fn dg_audit(
    model: *const dg_model,
    rubric: *const dg_rubric,
    item_ids: *const *const c_char,
    n_items: usize,
    transcript: *const c_char,
    options: *const dg_audit_options,
    out_audit: *mut *mut dg_audit,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        let out = out_arg(out_audit, "out_audit")?;
        // SAFETY: pointer arguments follow the header's conventions (NULL or valid).
        let (model, rubric, ids, transcript, options) = unsafe {
            (
                arg_ref(model, "model")?,
                rubric_or_builtin(rubric)?,
                arg_strs(item_ids, n_items, "item_ids")?,
                arg_transcript(transcript)?,
                opt_ref(options, "options")?,
            )
        };
        let o = options
            .copied()
            .unwrap_or_else(|| dg_audit_default_options());
        // SAFETY: as above.
        let (probes_path, transcript_name) = unsafe {
            (
                opt_str(o.probes_path, "options->probes_path")?,
                opt_str(o.transcript_name, "options->transcript_name")?,
            )
        };
        let split = match o.split {
            0 => SplitSelection::All,
            1 => SplitSelection::Train,
            2 => SplitSelection::Heldout,
            other => {
                return Err(Failure::invalid(format!(
                    "options->split {other} is not a dg_split_t value (0, 1 or 2)"
                )))
            }
        };
        let mode = match o.mode {
            0 => AuditMode::Direct,
            1 => {
                let r = ReasoningOptions {
                    max_tokens: o.max_reasoning_tokens as usize,
                    temperature: o.temperature,
                    top_p: o.top_p,
                    seed: o.seed,
                };
                r.validate()?;
                AuditMode::Reasoned(r)
            }
            other => {
                return Err(Failure::invalid(format!(
                    "options->mode {other} is not a dg_audit_mode_t value (0 or 1)"
                )))
            }
        };
        let thresholds = Thresholds::new(o.abs_threshold, o.k)?;
        let items = select_items(rubric, &ids)?;
        let (catalog, catalog_name) = match probes_path {
            Some(p) => (ProbeCatalog::load(p)?, p.to_string()),
            None => (ProbeCatalog::builtin(), "<built-in probes>".to_string()),
        };
        let request = AuditRequest {
            transcript: &transcript,
            transcript_name: transcript_name.unwrap_or("<inline>"),
            items: &items,
            catalog: &catalog,
            catalog_name: &catalog_name,
            options: AuditOptions {
                split,
                thresholds,
                mitigation_baseline: o.mitigation_baseline,
                mode,
            },
        };
        let watch = Watch {
            callback: o.progress,
            user_data: o.progress_user_data,
            cancel: o.cancel,
        };
        let mut report = watch.run(|p| audit_with(&model.engine, &model.builder, &request, p))?;
        report.timings.model_load_seconds = Some(model.load_seconds);
        let mut arena = Arena::default();
        let json = report.to_json()?;
        let public = c_audit(&mut arena, &report, json);
        write_out(out, into_c(public, arena, report));
        Ok(())
    })
}

/// Writes an audit's self-contained HTML page to `path` (parent folders are created).
/// `audit` must be the pointer `dg_audit` returned (not a copy of the struct).
/// Returns `DG_STATUS_OK`, `DG_STATUS_NULL_ARGUMENT`, `DG_STATUS_INVALID_UTF8` or
/// `DG_STATUS_IO`. Thread-safe (the audit is only read).
#[ffi_export]
pub unsafe fn dg_audit_write_html(
    audit: *const dg_audit,
    path: *const c_char,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        // SAFETY: NULL or a live audit / NUL-terminated string (header conventions).
        let (audit, path) = unsafe { (arg_ref(audit, "audit")?, arg_str(path, "path")?) };
        // SAFETY: every `dg_audit_t` comes from `dg_audit`, which stores the report beside it.
        let report = unsafe { extra_of::<dg_audit, AuditReport>(audit) };
        crate::guard::html::write_html(report, std::path::Path::new(path))?;
        Ok(())
    })
}

/// Releases an audit returned by `dg_audit`. NULL is ignored. No other thread may still be
/// reading it.
#[ffi_export]
pub unsafe fn dg_audit_free(audit: *mut dg_audit) {
    // SAFETY: NULL or a `dg_audit_t` from `dg_audit`, not freed before.
    super::error::quietly(|| unsafe { free_c::<dg_audit, AuditReport>(audit) });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_match_the_option_parsing() {
        assert_eq!(dg_split::All as u32, 0);
        assert_eq!(dg_split::Train as u32, 1);
        assert_eq!(dg_split::Heldout as u32, 2);
        assert_eq!(dg_audit_mode::Reasoned as u32, 1);
    }
}
