//! Bias deltas: how far added contexts move one rubric item's score. `dg_bias_delta` measures
//! one context into a caller-owned struct; `dg_bias_deltas` measures several in one pass.

use super::error::{dg_error, dg_status, out_arg, run, write_out};
use super::model::dg_model;
use super::owned::{arg_ref, arg_str, arg_strs, free_c, into_c, Arena};
use super::rubric::{dg_rubric, find_item, rubric_or_builtin};
use super::score::{arg_transcript, c_distribution, dg_distribution};
use crate::guard::{bias_deltas, BiasDelta};
use safer_ffi::c_char;
use safer_ffi::prelude::*;

/// The effect of one context on one score, in scale points. Plain data (no pointers).
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct dg_bias_delta {
    /// Expected score without the context.
    pub neutral_expected: f64,
    /// Expected score with the context.
    pub contextual_expected: f64,
    /// Signed change, `contextual_expected - neutral_expected`.
    pub delta: f64,
    /// `|delta|`.
    pub abs_delta: f64,
    /// Wasserstein-1 (earth mover's) distance between the two distributions: 0 when they are
    /// equal, at most the width of the scale.
    pub wasserstein: f64,
    /// Whether the most probable label differs.
    pub argmax_changed: bool,
    /// Label probability mass of the neutral prompt before renormalising (0 to 1).
    pub neutral_label_mass: f64,
    /// Label probability mass of the prompt with the context before renormalising (0 to 1).
    pub contextual_label_mass: f64,
}

impl From<&BiasDelta> for dg_bias_delta {
    fn from(d: &BiasDelta) -> Self {
        Self {
            neutral_expected: d.neutral_expected,
            contextual_expected: d.contextual_expected,
            delta: d.delta,
            abs_delta: d.abs_delta,
            wasserstein: d.wasserstein,
            argmax_changed: d.argmax_changed,
            neutral_label_mass: d.neutral_label_mass,
            contextual_label_mass: d.contextual_label_mass,
        }
    }
}

/// The neutral score of one item and its score under each of several contexts, from
/// `dg_bias_deltas`. Release with `dg_delta_batch_free`.
#[derive_ReprC]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dg_delta_batch {
    /// Distribution without any context.
    pub neutral: dg_distribution,
    /// Number of contexts: the length of `contextual` and `deltas`.
    pub count: usize,
    /// Distribution under each context, in the order given.
    pub contextual: *const dg_distribution,
    /// Delta of each context against `neutral`, in the order given.
    pub deltas: *const dg_bias_delta,
    /// Tokens run through the model (shared prefixes count once).
    pub tokens_evaluated: usize,
    /// Tokens the scored sequences hold in total (the cost without prefix sharing).
    pub tokens_requested: usize,
}

/// Measures how far one context moves one item's score: scores the item with and without
/// `context` in one pass and writes the difference to `*out_delta` (caller-owned, nothing to
/// free).
///
/// `rubric`: NULL = built-in. `item_id`: the rubric item. `transcript`, `context`: UTF-8,
/// NUL-terminated (context non-blank, at most 1000 characters). `mitigate`: add the instruction
/// to ignore irrelevant information to both prompts.
/// Returns the statuses of `dg_score`. Thread-safe.
#[ffi_export]
pub unsafe fn dg_bias_delta(
    model: *const dg_model,
    rubric: *const dg_rubric,
    item_id: *const c_char,
    transcript: *const c_char,
    context: *const c_char,
    mitigate: bool,
    out_delta: *mut dg_bias_delta,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        let out = out_arg(out_delta, "out_delta")?;
        // SAFETY: pointer arguments follow the header's conventions (NULL or valid).
        let (model, rubric, item_id, transcript, context) = unsafe {
            (
                arg_ref(model, "model")?,
                rubric_or_builtin(rubric)?,
                arg_str(item_id, "item_id")?,
                arg_transcript(transcript)?,
                arg_str(context, "context")?,
            )
        };
        let item = find_item(rubric, item_id)?;
        let batch = bias_deltas(
            &model.engine,
            &model.builder,
            &transcript,
            item,
            &[context],
            mitigate,
        )?;
        write_out(out, dg_bias_delta::from(&batch.deltas[0]));
        Ok(())
    })
}

/// Measures several contexts against one neutral score in one pass (the transcript and the
/// question are prefilled once, then each context is scored on a fork).
///
/// `contexts`, `n_contexts`: the context sentences (at least one; each UTF-8, NUL-terminated,
/// non-blank, at most 1000 characters). Other arguments as for `dg_bias_delta`.
/// On success writes a new `dg_delta_batch_t` to `*out_batch`; release it with
/// `dg_delta_batch_free`. Returns the statuses of `dg_score`. Thread-safe.
#[ffi_export]
pub unsafe fn dg_bias_deltas(
    model: *const dg_model,
    rubric: *const dg_rubric,
    item_id: *const c_char,
    transcript: *const c_char,
    contexts: *const *const c_char,
    n_contexts: usize,
    mitigate: bool,
    out_batch: *mut *mut dg_delta_batch,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        let out = out_arg(out_batch, "out_batch")?;
        // SAFETY: pointer arguments follow the header's conventions (NULL or valid).
        let (model, rubric, item_id, transcript, contexts) = unsafe {
            (
                arg_ref(model, "model")?,
                rubric_or_builtin(rubric)?,
                arg_str(item_id, "item_id")?,
                arg_transcript(transcript)?,
                arg_strs(contexts, n_contexts, "contexts")?,
            )
        };
        if contexts.is_empty() {
            return Err(super::error::Failure::invalid(
                "n_contexts is 0: give at least one context",
            ));
        }
        let item = find_item(rubric, item_id)?;
        let batch = bias_deltas(
            &model.engine,
            &model.builder,
            &transcript,
            item,
            &contexts,
            mitigate,
        )?;
        let mut arena = Arena::default();
        let neutral = c_distribution(&mut arena, item, &batch.neutral);
        let contextual: Vec<dg_distribution> = batch
            .contextual
            .iter()
            .map(|d| c_distribution(&mut arena, item, d))
            .collect();
        let deltas: Vec<dg_bias_delta> = batch.deltas.iter().map(dg_bias_delta::from).collect();
        let public = dg_delta_batch {
            neutral,
            count: contextual.len(),
            contextual: arena.array(contextual),
            deltas: arena.array(deltas),
            tokens_evaluated: batch.stats.tokens_evaluated,
            tokens_requested: batch.stats.tokens_requested,
        };
        write_out(out, into_c(public, arena, ()));
        Ok(())
    })
}

/// Releases a batch returned by `dg_bias_deltas`. NULL is ignored. No other thread may still
/// be reading it.
#[ffi_export]
pub unsafe fn dg_delta_batch_free(batch: *mut dg_delta_batch) {
    // SAFETY: NULL or a `dg_delta_batch_t` from `dg_bias_deltas`, not freed before.
    super::error::quietly(|| unsafe { free_c::<dg_delta_batch, ()>(batch) });
}
