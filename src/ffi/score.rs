//! Scoring: `dg_score` rates a transcript on rubric items and returns each item's distribution
//! over its scale's labels (`dg_distribution_t`) in a `dg_scores_t`.

use super::error::{dg_error, dg_status, out_arg, run, write_out, Failure};
use super::model::dg_model;
use super::owned::{arg_ref, arg_strs, free_c, into_c, opt_str, Arena};
use super::rubric::{dg_rubric, rubric_or_builtin, select_items};
use crate::engine::ScoreDistribution;
use crate::prompt::Transcript;
use crate::rubric::RubricItem;
use safer_ffi::c_char;
use safer_ffi::prelude::*;
use std::ffi::CStr;

/// The model's probability distribution over the labels of one rubric item's scale. Plain data;
/// its pointers lead into the result object that holds it and stay valid until that object is
/// freed.
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_distribution {
    /// Id of the rubric item that was scored (NUL-terminated).
    pub item_id: *const c_char,
    /// Number of labels on the scale (at least 1): the length of `labels`, `values` and `probs`.
    pub n_labels: usize,
    /// The labels in scale order (NUL-terminated strings, e.g. `"1"` .. `"7"`).
    pub labels: *const *const c_char,
    /// Numeric value of each label (the label itself when all labels are numbers, else its
    /// 1-based position).
    pub values: *const f64,
    /// Probability of each label, renormalised over the labels (sums to 1).
    pub probs: *const f64,
    /// Expected score, sum of `probs[i] * values[i]` (scale points).
    pub expected: f64,
    /// Probability mass the labels had before renormalising (0 to 1); low means the model is
    /// not answering in the expected format.
    pub label_mass: f64,
    /// Index of the most probable label.
    pub argmax: usize,
    /// Tokens in the prompt (without any label).
    pub prompt_tokens: usize,
}

/// Distributions of several rubric items, from `dg_score`. Release with `dg_scores_free`.
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_scores {
    /// Number of distributions (one per requested item).
    pub count: usize,
    /// The distributions, in the order the items were requested.
    pub distributions: *const dg_distribution,
}

/// Copies a distribution into C form, its arrays into `arena`.
pub(crate) fn c_distribution(
    arena: &mut Arena,
    item: &RubricItem,
    d: &ScoreDistribution,
) -> dg_distribution {
    dg_distribution {
        item_id: arena.str(&item.id),
        n_labels: d.labels.len(),
        labels: arena.strs(&d.labels),
        values: arena.array(item.label_values()),
        probs: arena.array(d.probs.clone()),
        expected: d.expected,
        label_mass: d.label_mass,
        argmax: d.argmax,
        prompt_tokens: d.prompt_tokens,
    }
}

/// A required transcript argument, validated (UTF-8, non-empty, at most 256 KiB).
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string.
pub(crate) unsafe fn arg_transcript(p: *const c_char) -> Result<Transcript, Failure> {
    if p.is_null() {
        return Err(Failure::null("transcript"));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p.cast()) }.to_bytes();
    Ok(Transcript::from_bytes(bytes)?)
}

/// Scores a transcript on rubric items, in one pass that prefills the transcript once.
///
/// - `model`: an open model.
/// - `rubric`: the rubric the items come from; NULL = the built-in rubric.
/// - `item_ids`, `n_items`: the items to score, in the order wanted; `n_items == 0` (then
///   `item_ids` may be NULL) scores every item of the rubric.
/// - `transcript`: the lesson transcript, one `TEACHER:` / `STUDENT:` turn per line (UTF-8,
///   NUL-terminated, at most 256 KiB).
/// - `context`: a sentence added after the question (at most 1000 characters); NULL = none.
/// - `mitigate`: add the instruction to ignore irrelevant information about the teacher.
///
/// On success writes a new `dg_scores_t` to `*out_scores`; release it with `dg_scores_free`.
/// Returns `DG_STATUS_OK`, or `DG_STATUS_NULL_ARGUMENT`, `DG_STATUS_INVALID_UTF8`,
/// `DG_STATUS_INVALID_ARGUMENT` (empty transcript, blank or too long context),
/// `DG_STATUS_NOT_FOUND` (unknown item id), `DG_STATUS_CONFIG`, `DG_STATUS_CONTEXT_OVERFLOW`,
/// `DG_STATUS_LABEL`, `DG_STATUS_BACKEND` or `DG_STATUS_PANIC`.
/// Thread-safe: many threads may score with the same model at once.
#[ffi_export]
pub unsafe fn dg_score(
    model: *const dg_model,
    rubric: *const dg_rubric,
    item_ids: *const *const c_char,
    n_items: usize,
    transcript: *const c_char,
    context: *const c_char,
    mitigate: bool,
    out_scores: *mut *mut dg_scores,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        let out = out_arg(out_scores, "out_scores")?;
        // SAFETY: pointer arguments follow the header's conventions (NULL or valid).
        let (model, rubric, ids, transcript, context) = unsafe {
            (
                arg_ref(model, "model")?,
                rubric_or_builtin(rubric)?,
                arg_strs(item_ids, n_items, "item_ids")?,
                arg_transcript(transcript)?,
                opt_str(context, "context")?,
            )
        };
        let items = select_items(rubric, &ids)?;
        let prompts = items
            .iter()
            .map(|item| {
                model
                    .engine
                    .rubric_prompt(&model.builder, &transcript, item, context, mitigate)
            })
            .collect::<crate::Result<Vec<_>>>()?;
        let (dists, _) = model.engine.score_many(&prompts)?;
        let mut arena = Arena::default();
        let distributions: Vec<dg_distribution> = items
            .iter()
            .zip(&dists)
            .map(|(item, d)| c_distribution(&mut arena, item, d))
            .collect();
        let public = dg_scores {
            count: distributions.len(),
            distributions: arena.array(distributions),
        };
        write_out(out, into_c(public, arena, ()));
        Ok(())
    })
}

/// Releases scores returned by `dg_score`. NULL is ignored. No other thread may still be
/// reading them.
#[ffi_export]
pub unsafe fn dg_scores_free(scores: *mut dg_scores) {
    // SAFETY: NULL or a `dg_scores_t` from `dg_score`, not freed before.
    super::error::quietly(|| unsafe { free_c::<dg_scores, ()>(scores) });
}
