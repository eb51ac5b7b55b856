//! LoRA adapters over the C ABI: load an adapter into an open model, get a model handle that
//! runs it (every scoring call then works per adapter unchanged), and measure how far an
//! adapter moves one score.

use super::delta::dg_bias_delta;
use super::error::{dg_error, dg_status, out_arg, run, write_out};
use super::model::dg_model;
use super::owned::{arg_ref, arg_str, opt_str};
use super::rubric::{dg_rubric, find_item, rubric_or_builtin};
use super::score::arg_transcript;
use safer_ffi::c_char;
use safer_ffi::prelude::*;

/// Loads a PEFT LoRA adapter directory (`adapter_config.json` + `adapter_model.safetensors`)
/// into `model` under `name`, checked against the base model. Every handle on the same
/// weights (see `dg_model_with_adapter`) can then run it; the base weights are not copied.
///
/// Returns `DG_STATUS_OK`, or `DG_STATUS_NULL_ARGUMENT`, `DG_STATUS_INVALID_UTF8`,
/// `DG_STATUS_INVALID_ARGUMENT` (empty name), `DG_STATUS_IO`, `DG_STATUS_ADAPTER_INVALID`
/// (malformed, does not fit the base, or the name is taken), `DG_STATUS_NOT_SUPPORTED` (DoRA,
/// `modules_to_save`, … — the message names it) or `DG_STATUS_PANIC`. Thread-safe.
#[ffi_export]
pub unsafe fn dg_model_load_adapter(
    model: *const dg_model,
    name: *const c_char,
    path: *const c_char,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        // SAFETY: pointer arguments follow the header's conventions (NULL or valid).
        let (model, name, path) = unsafe {
            (
                arg_ref(model, "model")?,
                arg_str(name, "name")?,
                arg_str(path, "path")?,
            )
        };
        model.engine.load_adapter(name, path)?;
        Ok(())
    })
}

/// Removes adapter `name` from `model`'s weights (from every handle on them), freeing its
/// place: the registry holds at most 256 adapters. Handles already made by
/// `dg_model_with_adapter` for it keep running it until they are freed.
///
/// Returns `DG_STATUS_OK`, or `DG_STATUS_NULL_ARGUMENT`, `DG_STATUS_INVALID_UTF8`,
/// `DG_STATUS_INVALID_ARGUMENT` (not a live model handle), `DG_STATUS_ADAPTER_INVALID` (no
/// adapter of that name) or `DG_STATUS_PANIC`. Thread-safe.
#[ffi_export]
pub unsafe fn dg_model_unload_adapter(
    model: *const dg_model,
    name: *const c_char,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        // SAFETY: pointer arguments follow the header's conventions (NULL or valid).
        let (model, name) = unsafe { (arg_ref(model, "model")?, arg_str(name, "name")?) };
        model.engine.unload_adapter(name)?;
        Ok(())
    })
}

/// Writes to `*out_model` a new handle on the same loaded weights, thread pool, prompt layout
/// and adapters as `model`, that runs adapter `name` (NULL = the base model). Release it with
/// `dg_model_free`; handles are independent (freeing one leaves the others working) and cost
/// no copy of the weights. A KV cache is never shared across adapters.
///
/// Returns `DG_STATUS_OK`, or `DG_STATUS_NULL_ARGUMENT`, `DG_STATUS_INVALID_UTF8`,
/// `DG_STATUS_ADAPTER_INVALID` (no adapter of that name) or `DG_STATUS_PANIC`. Thread-safe.
#[ffi_export]
pub unsafe fn dg_model_with_adapter(
    model: *const dg_model,
    name: *const c_char,
    out_model: *mut *mut dg_model,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        let out = out_arg(out_model, "out_model")?;
        // SAFETY: as above.
        let (model, name) = unsafe { (arg_ref(model, "model")?, opt_str(name, "name")?) };
        let handle = model.with_engine(model.engine.with_adapter(name)?);
        write_out(out, super::handle::register(handle));
        Ok(())
    })
}

/// Scores one item of a transcript on the base model and with adapter `adapter_name`, in one
/// call, and writes the difference to `*out_delta` (caller-owned): `neutral_*` fields describe
/// the base model, `contextual_*` fields the adapter. `context`: NULL = none; otherwise a
/// sentence added to both prompts. Other arguments as for `dg_bias_delta`.
/// Returns the statuses of `dg_score`, and `DG_STATUS_ADAPTER_INVALID` for an unknown adapter.
/// Thread-safe.
#[ffi_export]
pub unsafe fn dg_adapter_delta(
    model: *const dg_model,
    rubric: *const dg_rubric,
    item_id: *const c_char,
    transcript: *const c_char,
    context: *const c_char,
    mitigate: bool,
    adapter_name: *const c_char,
    out_delta: *mut dg_bias_delta,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        let out = out_arg(out_delta, "out_delta")?;
        // SAFETY: as above.
        let (model, rubric, item_id, transcript, context, adapter) = unsafe {
            (
                arg_ref(model, "model")?,
                rubric_or_builtin(rubric)?,
                arg_str(item_id, "item_id")?,
                arg_transcript(transcript)?,
                opt_str(context, "context")?,
                arg_str(adapter_name, "adapter_name")?,
            )
        };
        let item = find_item(rubric, item_id)?;
        let prompt =
            model
                .engine
                .rubric_prompt(&model.builder, &transcript, item, context, mitigate)?;
        let d = crate::guard::adapter_delta(&model.engine, &prompt, adapter)?;
        write_out(out, dg_bias_delta::from(&d.delta));
        Ok(())
    })
}
