//! Status codes, the error object, and the wrapper every exported call runs its body in
//! (panics caught, failures turned into a status plus an optional [`dg_error`]).

use crate::error::Error;
use safer_ffi::prelude::*;
use std::ffi::{CStr, CString};
use std::panic::{self, AssertUnwindSafe};

/// Outcome of a call. `DG_STATUS_OK` is 0; every other value is a failure. The numbers are part
/// of the ABI: they never change and are never reused.
#[ffi_export]
#[derive_ReprC]
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum dg_status {
    /// Success: the out-parameters were written.
    Ok = 0,
    /// A required pointer argument was NULL (the message names it).
    NullArgument = 1,
    /// A string argument is not valid UTF-8 (the message gives the byte offset).
    InvalidUtf8 = 2,
    /// An argument is out of range or malformed: empty transcript, unknown option value,
    /// negative threshold, context too long, ...
    InvalidArgument = 3,
    /// A rubric item id is not in the rubric.
    NotFound = 4,
    /// The request is valid but not implemented in this version (e.g. a DoRA adapter).
    NotSupported = 5,
    /// A file could not be opened or read (model, rubric, probe catalog) or written (report).
    Io = 6,
    /// The model is not valid: bad GGUF header or metadata, bad Hugging Face config, index or
    /// safetensors, tensor shapes, tokenizer or chat template.
    ModelInvalid = 7,
    /// The model file is valid but uses an architecture or tensor type this library does not
    /// implement.
    ModelUnsupported = 8,
    /// A rubric, probe catalog or prompt layout is malformed (the message gives file and line).
    Config = 9,
    /// A prompt does not fit the model's context window.
    ContextOverflow = 10,
    /// A label of the rating scale cannot be scored (it adds no token, or two labels tokenize
    /// alike).
    Label = 11,
    /// The tensor backend failed.
    Backend = 12,
    /// The library panicked; the panic was caught at the boundary. Please report it.
    Panic = 13,
    /// A LoRA adapter is malformed, does not fit the base model, or is not loaded under that
    /// name.
    AdapterInvalid = 14,
    /// A chat template or prompt layout ran past its instruction or output-size budget, or was
    /// refused before compiling (list growth or text it cannot bound, nesting too deep); or an
    /// input is past a documented work limit. The message names the template or the limit.
    ResourceLimit = 15,
    /// The model computed NaN or infinity where a probability was expected: its weights or
    /// adapter are not sound. No score is returned.
    NonFinite = 16,
    /// The caller cancelled the call: its progress callback returned false, or its cancel flag
    /// was set. No result is returned.
    Cancelled = 17,
}

impl dg_status {
    /// Every status, in numeric order.
    pub const ALL: [dg_status; 18] = [
        Self::Ok,
        Self::NullArgument,
        Self::InvalidUtf8,
        Self::InvalidArgument,
        Self::NotFound,
        Self::NotSupported,
        Self::Io,
        Self::ModelInvalid,
        Self::ModelUnsupported,
        Self::Config,
        Self::ContextOverflow,
        Self::Label,
        Self::Backend,
        Self::Panic,
        Self::AdapterInvalid,
        Self::ResourceLimit,
        Self::NonFinite,
        Self::Cancelled,
    ];

    /// The status of a library error (no wildcard: a new `Error` variant must be mapped here).
    pub fn of_error(e: &Error) -> Self {
        match e {
            Error::Io { .. } => Self::Io,
            Error::GgufFormat { .. }
            | Error::Metadata { .. }
            | Error::Tensor { .. }
            | Error::Tokenizer(_)
            | Error::ChatTemplate(_)
            | Error::ModelFile { .. } => Self::ModelInvalid,
            Error::Adapter { .. } => Self::AdapterInvalid,
            Error::UnsupportedAdapterFeature { .. } => Self::NotSupported,
            Error::UnsupportedArchitecture(_) | Error::UnsupportedTensorType { .. } => {
                Self::ModelUnsupported
            }
            Error::Config { .. } => Self::Config,
            Error::InvalidUtf8 { .. } => Self::InvalidUtf8,
            Error::InvalidInput(_) => Self::InvalidArgument,
            Error::ContextOverflow { .. } => Self::ContextOverflow,
            Error::Label { .. } => Self::Label,
            Error::Backend(_) => Self::Backend,
            Error::TemplateBudget { .. } | Error::WorkLimit { .. } => Self::ResourceLimit,
            Error::NonFinite { .. } => Self::NonFinite,
            Error::Cancelled => Self::Cancelled,
        }
    }

    /// Short description.
    fn text(self) -> &'static CStr {
        match self {
            Self::Ok => c"success",
            Self::NullArgument => c"a required pointer argument is NULL",
            Self::InvalidUtf8 => c"a string argument is not valid UTF-8",
            Self::InvalidArgument => c"an argument is out of range or malformed",
            Self::NotFound => c"rubric item not found",
            Self::NotSupported => c"not supported by this version",
            Self::Io => c"file could not be read or written",
            Self::ModelInvalid => c"the model file is invalid",
            Self::ModelUnsupported => c"the model uses an unsupported architecture or type",
            Self::Config => c"a rubric, probe catalog or prompt layout is malformed",
            Self::ContextOverflow => c"a prompt does not fit the model's context window",
            Self::Label => c"a label of the scale cannot be scored",
            Self::Backend => c"the tensor backend failed",
            Self::Panic => c"internal error: the library panicked",
            Self::AdapterInvalid => c"the adapter is invalid or does not fit the base model",
            Self::ResourceLimit => c"a template or input is past a budget or work limit",
            Self::NonFinite => c"the model computed NaN or infinity instead of a probability",
            Self::Cancelled => c"cancelled by the caller",
        }
    }
}

/// A failed call: its status and a message for people. Built inside the library only.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub status: dg_status,
    pub message: String,
}

impl Failure {
    pub fn new(status: dg_status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// A NULL pointer where a value is required; `what` names the argument.
    pub fn null(what: &str) -> Self {
        Self::new(dg_status::NullArgument, format!("`{what}` is NULL"))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(dg_status::InvalidArgument, message)
    }

    fn panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic payload".into());
        Self::new(
            dg_status::Panic,
            format!("internal error (panic caught at the C boundary): {what}"),
        )
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::new(dg_status::of_error(&e), e.to_string())
    }
}

/// Details of a failed call: a status and a message. Created by the library when a call fails
/// and its `error` argument is not NULL; release it with `dg_error_free`. Immutable: it may be
/// read from any thread.
#[derive_ReprC]
#[repr(opaque)]
pub struct dg_error {
    status: dg_status,
    message: CString,
}

/// Runs the body of an exported call: catches panics, and on failure stores a new error object
/// in `*error` (when `error` is not NULL). Returns the call's status.
pub(crate) fn run(
    error: *mut *mut dg_error,
    body: impl FnOnce() -> Result<(), Failure>,
) -> dg_status {
    if !error.is_null() && error.is_aligned() {
        // SAFETY: the caller passes NULL or a pointer to storage for one pointer.
        let previous = unsafe { error.read() };
        if super::handle::is_live(previous.cast_const()) {
            // An unread error would be overwritten and leak: refused, nothing is done.
            return dg_status::InvalidArgument;
        }
    }
    let failure = match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return dg_status::Ok,
        Ok(Err(f)) => f,
        Err(payload) => Failure::panic(payload.as_ref()),
    };
    let status = failure.status;
    if !error.is_null() && error.is_aligned() {
        let object = super::handle::register(dg_error {
            status,
            message: crate::ffi::owned::c_string(&failure.message),
        });
        // SAFETY: the caller passes NULL or a pointer to writable storage for one pointer.
        unsafe { error.write(object) };
    }
    status
}

const UNKNOWN_STATUS: &CStr = c"unknown status";
const EMPTY: &CStr = c"";

/// A short, static description of a status code, e.g. `"the model file is invalid"`.
///
/// `status` is a `dg_status_t` value; an unknown number gives `"unknown status"`. The text is
/// static: never free it. Thread-safe.
#[ffi_export]
pub fn dg_status_text(status: i32) -> *const safer_ffi::c_char {
    let text = dg_status::ALL
        .iter()
        .find(|s| **s as i32 == status)
        .map_or(UNKNOWN_STATUS, |s| s.text());
    text.as_ptr().cast()
}

/// The status of a failed call's error object. A NULL `error` means "no error" and gives
/// `DG_STATUS_OK`. Thread-safe.
#[ffi_export]
pub unsafe fn dg_error_status(error: *const dg_error) -> dg_status {
    // SAFETY: NULL or an error object from this library that has not been freed.
    unsafe { live(error) }.map_or(dg_status::Ok, |e| e.status)
}

/// The message of a failed call's error object: UTF-8, NUL-terminated, written for people
/// (it names the argument, file, line or key at fault). The text belongs to `error` and stays
/// valid until `dg_error_free(error)`. A NULL `error` gives `""`. Thread-safe.
#[ffi_export]
pub unsafe fn dg_error_message(error: *const dg_error) -> *const safer_ffi::c_char {
    // SAFETY: NULL or an error object from this library that has not been freed.
    match unsafe { live(error) } {
        Some(e) => e.message.as_ptr().cast(),
        None => EMPTY.as_ptr().cast(),
    }
}

/// Releases an error object. NULL is ignored. Not thread-safe with other uses of the same
/// object.
#[ffi_export]
pub unsafe fn dg_error_free(error: *mut dg_error) {
    // Only a live error object is freed: NULL or a second free is ignored.
    quietly(|| drop(super::handle::unregister(error)));
}

/// The error object behind a pointer: `None` for NULL (or a misaligned pointer, which cannot
/// come from this library).
///
/// # Safety
/// `error` must be NULL or point to a live error object.
unsafe fn live<'a>(error: *const dg_error) -> Option<&'a dg_error> {
    if super::handle::is_live(error) {
        // SAFETY: a live error object (registered, not yet freed).
        unsafe { error.as_ref() }
    } else {
        None
    }
}

/// Writes `value` into an out-parameter that was checked non-NULL.
pub(crate) fn write_out<T>(out: *mut T, value: T) {
    debug_assert!(!out.is_null());
    // SAFETY: checked non-NULL by `out_arg` before the call did its work; the caller passes
    // writable storage for one `T`.
    unsafe { out.write(value) }
}

/// Checks that an out-parameter is not NULL (done first, before any work).
pub(crate) fn out_arg<T>(out: *mut T, what: &str) -> Result<*mut T, Failure> {
    if out.is_null() {
        Err(Failure::null(what))
    } else if !out.is_aligned() {
        Err(Failure::invalid(format!(
            "`{what}` is not a valid pointer (misaligned)"
        )))
    } else {
        Ok(out)
    }
}

/// Runs a call that cannot report (the `*_free` functions): a panic is caught and dropped, so
/// it never crosses the C boundary.
pub(crate) fn quietly(body: impl FnOnce()) {
    let _ = panic::catch_unwind(AssertUnwindSafe(body));
}
