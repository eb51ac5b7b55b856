//! The C ABI: a thin layer over the Rust API, built with safer-ffi. `include/debias_guard.h` is
//! generated from this module by [`write_header`] (see `tests/ffi_header.rs`).
//!
//! One module per C type, as the header groups them: [`error`] (`dg_status_t`, `dg_error_t`),
//! [`model`] (`dg_model_t`: open, info, free), [`adapter`] (`dg_model_load_adapter`,
//! `dg_model_with_adapter`, `dg_adapter_delta`), [`rubric`] (`dg_rubric_t`), [`score`]
//! (`dg_score`, `dg_distribution_t`), [`delta`] (`dg_bias_delta`, `dg_bias_deltas`), [`check`]
//! (`dg_check`), [`audit`] (`dg_audit`), [`progress`] (`dg_audit`'s progress callback and cancel
//! flag); `owned` holds the library-allocated strings and arrays
//! the result structs point to. The conventions every function follows are written once, in
//! [`CONVENTIONS`], which is also the header's introduction.
//!
//! Every exported function takes raw pointers and checks them itself (NULL, alignment, UTF-8)
//! before use, runs its body under `catch_unwind`, and writes out-parameters only on success.
//! No logic lives here beyond argument conversion: scoring, deltas, checks and audits are the
//! library's own functions.
#![allow(non_camel_case_types)]
// The exported functions taking pointers are `unsafe fn`: their one safety contract is the
// header's conventions (pointers NULL or valid, strings NUL-terminated, handles live), written
// once in `CONVENTIONS` rather than repeated on every function.
#![allow(clippy::missing_safety_doc)]

pub mod adapter;
pub mod audit;
pub mod check;
pub mod delta;
pub mod error;
pub(crate) mod handle;
pub mod model;
pub(crate) mod owned;
pub mod progress;
pub mod rubric;
pub mod score;

pub use audit::{
    dg_audit, dg_audit_category, dg_audit_condition, dg_audit_item, dg_audit_mode,
    dg_audit_options, dg_split,
};
pub use check::{
    dg_calibration_mode, dg_check_calibration, dg_check_calibration_result, dg_check_options,
    dg_check_result, dg_checks,
};
pub use delta::{dg_bias_delta, dg_delta_batch};
pub use error::{dg_error, dg_status};
pub use model::{dg_model, dg_model_info, dg_model_options, dg_weight_format};
pub use progress::dg_progress_fn;
pub use rubric::dg_rubric;
pub use score::{dg_distribution, dg_scores};

use safer_ffi::prelude::*;
use std::io;

/// The library version, `"MAJOR.MINOR.PATCH"` (equal to `DG_VERSION_STRING` of the header the
/// program was compiled with when the two match). Static: never free it. Thread-safe.
#[ffi_export]
pub fn dg_version() -> *const safer_ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Include guard of the generated header.
pub const HEADER_GUARD: &str = "DEBIAS_GUARD_H";

/// The header's introduction: what the library does, the conventions of every call, and the
/// order to read the header in.
pub const CONVENTIONS: &str = r#"/*
 * debias-guard: score classroom transcripts with an in-process LLM and measure how much
 * irrelevant social context ("the teacher has 25 years of experience") moves the score.
 *
 * Life cycle (read the header in this order; items below are sorted by name):
 *   1. dg_model_default_options, dg_model_open .. a GGUF file or Hugging Face directory
 *                                                                      -> dg_model_t
 *      dg_model_load_adapter, dg_model_with_adapter  (optional) a PEFT LoRA adapter on the
 *                                                    same weights          -> dg_model_t
 *      dg_model_unload_adapter .................... removes a loaded adapter by name
 *   2. dg_rubric_builtin / dg_rubric_load / dg_rubric_parse  (optional; NULL = built-in rubric)
 *   3. dg_score ............. label distributions of rubric items      -> dg_scores_t
 *      dg_bias_delta ........ how far one context moves one score      -> dg_bias_delta_t
 *      dg_bias_deltas ....... several contexts in one pass             -> dg_delta_batch_t
 *      dg_adapter_delta ..... how far an adapter moves one score       -> dg_bias_delta_t
 *      dg_check ............. runtime check of one context, flagged?   -> dg_checks_t
 *      dg_check_calibrated .. the same, judged against the noise floor -> dg_checks_t
 *      dg_audit ............. probe catalog vs. noise floor, verdict   -> dg_audit_t (+ JSON)
 *                             (options: progress callback, cancel flag)
 *   4. read the plain C structs; then dg_*_free every object you received
 *   5. dg_model_free (every handle, adapter handles too), dg_rubric_free
 *
 * Conventions (every function follows them; each function's comment adds only what differs):
 *
 * - Handles. dg_model_t, dg_rubric_t and dg_error_t are opaque. They are created by the call
 *   that names them (dg_model_open, dg_rubric_load, ...) and released by the matching *_free.
 *   Result structs (dg_scores_t, dg_delta_batch_t, dg_checks_t, dg_audit_t) are plain structs
 *   whose fields you read directly; they are allocated by the library, own every string and
 *   array they point to, and are released with their *_free. Pass *_free exactly the pointer
 *   you received (not a copy of the struct). Every *_free accepts NULL.
 *   The library records every live handle with its type and checks it on entry: a freed
 *   handle, a handle of another type (a dg_rubric_t where a dg_model_t is expected) or a
 *   pointer it never returned gives DG_STATUS_INVALID_ARGUMENT without being dereferenced, and
 *   a second dg_model_free / dg_rubric_free / dg_error_free of the same pointer does nothing.
 *   Still undefined: freeing a handle while another thread uses it; a stale pointer whose
 *   address the library has since reused for a new handle of the same type (it names that
 *   handle); and misuse of result structs, which are not recorded (a second dg_scores_free,
 *   dg_audit_free, ... of the same pointer).
 *
 * - Status. Every call that can fail returns a dg_status_t: DG_STATUS_OK (0) or a failure.
 *   Out-parameters (named out_*) are written only when the call returns DG_STATUS_OK; on
 *   failure they are left untouched.
 *
 * - Errors. Those calls take a last argument `dg_error_t **error`. Pass NULL if you only want
 *   the status. Otherwise, on failure *error receives a new error object with the status and a
 *   message for people (dg_error_status, dg_error_message); release it with dg_error_free.
 *   On success *error is not touched. dg_status_text gives a static description of any code.
 *   If *error still holds a live error object on entry, the call does nothing and returns
 *   DG_STATUS_INVALID_ARGUMENT (overwriting it would leak it): free it and set the pointer to
 *   NULL before reusing the variable.
 *
 * - Arguments. Strings are NUL-terminated UTF-8 and are read during the call only (the library
 *   keeps no pointer to them). A NULL where a value is required returns
 *   DG_STATUS_NULL_ARGUMENT, invalid UTF-8 returns DG_STATUS_INVALID_UTF8 and a misaligned
 *   pointer returns DG_STATUS_INVALID_ARGUMENT; the message names the argument. (Handles are
 *   checked as above; a dangling or foreign pointer to a struct or string cannot be detected:
 *   pass only valid memory.) Arguments
 *   documented as optional accept NULL. An array argument is a pointer plus a count; the
 *   pointer may be NULL when the count is 0. Fields documented as holding enum values
 *   (dg_weight_format_t, dg_split_t, dg_audit_mode_t, dg_calibration_mode_t) are plain
 *   integers, checked: an unknown value returns DG_STATUS_INVALID_ARGUMENT.
 *
 * - Panics. A bug inside the library never unwinds into your program: it is caught at the
 *   boundary and returned as DG_STATUS_PANIC.
 *
 * - Threads. A dg_model_t may be used by any number of threads at once (weights are shared,
 *   every call keeps its own state; calls queue on the model's worker pool). Rubrics and
 *   results are immutable and may be read from any thread. The only calls that need exclusive
 *   access are the *_free functions: free an object after every other thread is done with it.
 *
 * - Progress. dg_audit takes an optional progress callback and cancel flag in its options
 *   (llama.cpp's manner): the callback runs on the thread that called dg_audit, with units done
 *   and the fixed total; returning false, or setting the flag from any thread, ends the call
 *   with DG_STATUS_CANCELLED at the next check (between forward passes of the model).
 *
 * - Units. Scores, deltas, thresholds and noise floors are in points of the rubric item's
 *   scale (1 to 7 for the built-in rubric); probabilities and label masses are 0 to 1.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>"#;

/// The version macros of the header, from Cargo.toml.
fn version_macros() -> String {
    format!(
        "/* Version of the library this header belongs to; dg_version() gives the version of the \
         library that is linked. */\n\
         #define DG_VERSION_MAJOR {}\n\
         #define DG_VERSION_MINOR {}\n\
         #define DG_VERSION_PATCH {}\n\
         #define DG_VERSION_STRING \"{}\"\n\
         /* MAJOR * 10000 + MINOR * 100 + PATCH, for `#if DG_VERSION_NUMBER >= ...`. */\n\
         #define DG_VERSION_NUMBER (DG_VERSION_MAJOR * 10000 + DG_VERSION_MINOR * 100 + DG_VERSION_PATCH)",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION"),
    )
}

/// Writes the C header `include/debias_guard.h` (safer-ffi's header builder over every
/// `#[ffi_export]` item of this module).
pub fn write_header(out: impl io::Write) -> io::Result<()> {
    let intro = format!("{CONVENTIONS}\n\n{}", version_macros());
    safer_ffi::headers::builder()
        .with_guard(HEADER_GUARD)
        .with_banner(BANNER)
        .with_text_after_guard(&intro)
        .to_writer(out)
        .generate()
}

/// The header's first lines.
const BANNER: &str = "\
/* debias_guard.h: C API of debias-guard.
 *
 * Generated by safer-ffi's header builder from src/ffi/ (see tests/ffi_header.rs).
 * Do not edit: change the Rust doc comments and run `make header`.
 * SPDX-License-Identifier: Apache-2.0
 */";

#[cfg(test)]
mod tests {
    use super::error::{dg_error_free, dg_error_message, dg_error_status, run, Failure};
    use super::*;
    use std::ffi::CStr;
    use std::ptr;

    fn message(e: *const dg_error) -> String {
        // SAFETY: `e` is a live error object; its message is a NUL-terminated string.
        unsafe { CStr::from_ptr(dg_error_message(e).cast()) }
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let mut err: *mut dg_error = ptr::null_mut();
        let status = run(&mut err, || panic!("boom {}", 42));
        assert_eq!(status, dg_status::Panic);
        // SAFETY: `err` was just created by `run`.
        assert_eq!(unsafe { dg_error_status(err) }, dg_status::Panic);
        assert!(message(err).contains("boom 42"), "{}", message(err));
        // SAFETY: freed once.
        unsafe { dg_error_free(err) };
    }

    #[test]
    fn a_failure_is_reported_only_through_a_non_null_error() {
        let status = run(ptr::null_mut(), || Err(Failure::null("model")));
        assert_eq!(status, dg_status::NullArgument);
        let mut err: *mut dg_error = ptr::null_mut();
        let status = run(&mut err, || Err(Failure::null("model")));
        assert_eq!(status, dg_status::NullArgument);
        assert_eq!(message(err), "`model` is NULL");
        // SAFETY: freed once.
        unsafe { dg_error_free(err) };
        let status = run(&mut err, || Ok(()));
        assert_eq!(status, dg_status::Ok);
    }

    #[test]
    fn a_nul_inside_a_message_cannot_cut_it_short() {
        let c = owned::c_string("a\0b");
        assert_eq!(c.to_str().unwrap(), "a\u{FFFD}b");
    }

    #[test]
    fn handles_are_shareable_between_threads() {
        fn sync_send<T: Sync + Send>() {}
        sync_send::<dg_model>();
        sync_send::<dg_rubric>();
        sync_send::<dg_error>();
    }

    #[test]
    fn misaligned_pointers_are_refused_before_use() {
        use super::model::{dg_model_get_info, dg_model_info};
        let mut err: *mut dg_error = ptr::null_mut();
        let words = [0u64; 4];
        // A pointer one byte into a real allocation: never dereferenced, only checked.
        let odd = (words.as_ptr() as usize + 1) as *const dg_model;
        let mut info = std::mem::MaybeUninit::<dg_model_info>::uninit();
        // SAFETY: the call checks `odd` before any use; `info` is writable.
        let status = unsafe { dg_model_get_info(odd, info.as_mut_ptr(), &mut err) };
        assert_eq!(status, dg_status::InvalidArgument);
        assert!(message(err).contains("misaligned"), "{}", message(err));
        // SAFETY: freed once.
        unsafe { dg_error_free(err) };
    }

    #[test]
    fn freed_and_mistyped_handles_are_refused() {
        use super::model::{dg_model_get_info, dg_model_info};
        use super::rubric::{dg_rubric_builtin, dg_rubric_free, dg_rubric_item_count};
        let mut rubric: *mut dg_rubric = ptr::null_mut();
        // SAFETY: valid out-pointers; every handle below is freed once (the second free is the
        // case under test and must be a no-op).
        unsafe {
            assert_eq!(
                dg_rubric_builtin(&mut rubric, ptr::null_mut()),
                dg_status::Ok
            );
            assert_eq!(dg_rubric_item_count(rubric), 3);
            // A rubric handle passed as a model handle.
            let mut err: *mut dg_error = ptr::null_mut();
            let mut info = std::mem::MaybeUninit::<dg_model_info>::uninit();
            let status = dg_model_get_info(rubric.cast(), info.as_mut_ptr(), &mut err);
            assert_eq!(status, dg_status::InvalidArgument);
            assert!(
                message(err).contains("is a dg_rubric_t, not a dg_model_t"),
                "{}",
                message(err)
            );
            // An unread error in `err` is not overwritten.
            let status = dg_model_get_info(rubric.cast(), info.as_mut_ptr(), &mut err);
            assert_eq!(status, dg_status::InvalidArgument);
            assert!(message(err).contains("dg_rubric_t"));
            let first = err;
            dg_error_free(err);
            dg_error_free(first);
            assert_eq!(dg_error_status(first), dg_status::Ok);
            // Use after free and double free.
            dg_rubric_free(rubric);
            assert_eq!(dg_rubric_item_count(rubric), 0);
            dg_rubric_free(rubric);
            let status = dg_model_get_info(rubric.cast(), info.as_mut_ptr(), &mut err);
            assert_eq!(status, dg_status::InvalidArgument);
            assert!(
                message(err).contains("not a live dg_model_t"),
                "{}",
                message(err)
            );
            dg_error_free(err);
        }
    }

    #[test]
    fn status_numbers_are_dense_and_fixed() {
        for (i, s) in dg_status::ALL.iter().enumerate() {
            assert_eq!(*s as i32, i as i32);
        }
    }
}
