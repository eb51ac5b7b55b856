//! `dg_rubric_t`: a validated set of rubric items (what is rated, on which scale). Scoring calls
//! take a rubric and item ids; a NULL rubric means the built-in one.

use super::error::{dg_error, dg_status, out_arg, run, write_out, Failure};
use super::owned::{arg_ref, arg_str};
use crate::rubric::{Rubric, RubricItem};
use safer_ffi::c_char;
use safer_ffi::prelude::*;
use std::ffi::CString;
use std::ptr;
use std::sync::OnceLock;

/// A rubric: items with ids, questions and label scales. Create it with `dg_rubric_builtin`,
/// `dg_rubric_load` or `dg_rubric_parse`; release it with `dg_rubric_free`. Immutable: it may
/// be shared by many threads at once.
#[derive_ReprC]
#[repr(opaque)]
pub struct dg_rubric {
    pub(crate) rubric: Rubric,
    ids: Vec<CString>,
}

impl dg_rubric {
    fn new(rubric: Rubric) -> Self {
        let ids = rubric
            .items
            .iter()
            .map(|i| super::owned::c_string(&i.id))
            .collect();
        Self { rubric, ids }
    }
}

/// The built-in rubric, parsed once.
fn builtin() -> &'static Rubric {
    static BUILTIN: OnceLock<Rubric> = OnceLock::new();
    BUILTIN.get_or_init(Rubric::builtin)
}

/// The rubric a call uses: the given one, or the built-in one for NULL.
///
/// # Safety
/// `rubric` must be NULL or a live rubric handle.
pub(crate) unsafe fn rubric_or_builtin<'a>(
    rubric: *const dg_rubric,
) -> Result<&'a Rubric, Failure> {
    // SAFETY: forwarded contract.
    Ok(match unsafe { super::owned::opt_ref(rubric, "rubric")? } {
        Some(r) => &r.rubric,
        None => builtin(),
    })
}

/// The items named by `ids`, in that order; every item of the rubric when `ids` is empty.
pub(crate) fn select_items(rubric: &Rubric, ids: &[&str]) -> Result<Vec<RubricItem>, Failure> {
    if ids.is_empty() {
        return Ok(rubric.items.clone());
    }
    ids.iter()
        .map(|id| find_item(rubric, id).cloned())
        .collect()
}

/// The item with this id, or `DG_STATUS_NOT_FOUND` listing the known ids.
pub(crate) fn find_item<'r>(rubric: &'r Rubric, id: &str) -> Result<&'r RubricItem, Failure> {
    rubric.item(id).ok_or_else(|| {
        let known: Vec<&str> = rubric.items.iter().map(|i| i.id.as_str()).collect();
        Failure::new(
            dg_status::NotFound,
            format!("unknown rubric item `{id}` (known: {})", known.join(", ")),
        )
    })
}

fn finish(rubric: Rubric, out: *mut *mut dg_rubric) -> Result<(), Failure> {
    write_out(out, super::handle::register(dg_rubric::new(rubric)));
    Ok(())
}

/// Writes a new copy of the built-in rubric (three classroom dimensions, each rated 1 to 7) to
/// `*out_rubric`; release it with `dg_rubric_free`.
/// Returns `DG_STATUS_OK` or `DG_STATUS_NULL_ARGUMENT`. Thread-safe.
#[ffi_export]
pub unsafe fn dg_rubric_builtin(
    out_rubric: *mut *mut dg_rubric,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        let out = out_arg(out_rubric, "out_rubric")?;
        finish(builtin().clone(), out)
    })
}

/// Reads and validates a rubric JSON file (at most 1 MiB) and writes it to `*out_rubric`;
/// release it with `dg_rubric_free`.
/// Returns `DG_STATUS_OK`, `DG_STATUS_NULL_ARGUMENT`, `DG_STATUS_INVALID_UTF8`, `DG_STATUS_IO`,
/// `DG_STATUS_INVALID_ARGUMENT` (file too large) or `DG_STATUS_CONFIG` (malformed: the message
/// gives the line). Thread-safe.
#[ffi_export]
pub unsafe fn dg_rubric_load(
    path: *const c_char,
    out_rubric: *mut *mut dg_rubric,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        let out = out_arg(out_rubric, "out_rubric")?;
        // SAFETY: NULL or a NUL-terminated string (header conventions).
        let path = unsafe { arg_str(path, "path")? };
        finish(Rubric::load(path)?, out)
    })
}

/// Parses and validates rubric JSON text and writes it to `*out_rubric`; release it with
/// `dg_rubric_free`.
/// Returns `DG_STATUS_OK`, `DG_STATUS_NULL_ARGUMENT`, `DG_STATUS_INVALID_UTF8` or
/// `DG_STATUS_CONFIG`. Thread-safe.
#[ffi_export]
pub unsafe fn dg_rubric_parse(
    json: *const c_char,
    out_rubric: *mut *mut dg_rubric,
    error: *mut *mut dg_error,
) -> dg_status {
    run(error, || {
        let out = out_arg(out_rubric, "out_rubric")?;
        // SAFETY: NULL or a NUL-terminated string (header conventions).
        let json = unsafe { arg_str(json, "json")? };
        finish(Rubric::from_json(json, "<inline rubric>")?, out)
    })
}

/// Number of items in a rubric (0 for NULL). Thread-safe.
#[ffi_export]
pub unsafe fn dg_rubric_item_count(rubric: *const dg_rubric) -> usize {
    // SAFETY: NULL or a live rubric (header conventions).
    unsafe { arg_ref(rubric, "rubric") }.map_or(0, |r| r.ids.len())
}

/// The id of item `index` (0-based, in rubric order): NUL-terminated, owned by the rubric,
/// valid until `dg_rubric_free`. NULL when `rubric` is NULL or `index` is out of range.
/// Thread-safe.
#[ffi_export]
pub unsafe fn dg_rubric_item_id(rubric: *const dg_rubric, index: usize) -> *const c_char {
    // SAFETY: NULL or a live rubric (header conventions).
    match unsafe { arg_ref(rubric, "rubric") } {
        Ok(r) => r
            .ids
            .get(index)
            .map_or(ptr::null(), |id| id.as_ptr().cast()),
        Err(_) => ptr::null(),
    }
}

/// Releases a rubric. NULL is ignored. No other call may be using it.
#[ffi_export]
pub unsafe fn dg_rubric_free(rubric: *mut dg_rubric) {
    // Only a live rubric handle is freed: NULL, a second free or another handle type is ignored.
    super::error::quietly(|| drop(super::handle::unregister(rubric)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_item_lists_the_known_ones() {
        let f = find_item(builtin(), "nope").unwrap_err();
        assert_eq!(f.status, dg_status::NotFound);
        assert!(
            f.message.contains("instructional_dialogue"),
            "{}",
            f.message
        );
    }

    #[test]
    fn empty_selection_is_every_item() {
        assert_eq!(
            select_items(builtin(), &[]).unwrap().len(),
            builtin().items.len()
        );
    }
}
