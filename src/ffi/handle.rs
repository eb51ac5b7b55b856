//! The registry of live handles: every `dg_model_t`, `dg_rubric_t` and `dg_error_t` the library
//! hands out is recorded here with its type, and removed when freed. A handle argument is
//! looked up before it is dereferenced, so a freed handle, a handle of another type or a
//! pointer the library never returned gives `DG_STATUS_INVALID_ARGUMENT` instead of touching
//! memory that is not a live object of that type, and a second `*_free` of the same pointer
//! does nothing. (The registry is keyed by address: a freed address that a new handle of the
//! same type reuses is that new handle; this, and freeing a handle while another thread still
//! uses it, remain the caller's contract.)

use super::error::{dg_error, Failure};
use super::model::dg_model;
use super::rubric::dg_rubric;
use std::any::TypeId;
use std::collections::BTreeMap;
use std::sync::RwLock;

/// The handle types, as recorded in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `dg_model_t`.
    Model,
    /// `dg_rubric_t`.
    Rubric,
    /// `dg_error_t`.
    Error,
}

impl Kind {
    /// The handle kind of Rust type `T`, `None` for types that are not handles.
    pub(crate) fn of<T: 'static>() -> Option<Self> {
        let t = TypeId::of::<T>();
        if t == TypeId::of::<dg_model>() {
            Some(Self::Model)
        } else if t == TypeId::of::<dg_rubric>() {
            Some(Self::Rubric)
        } else if t == TypeId::of::<dg_error>() {
            Some(Self::Error)
        } else {
            None
        }
    }

    fn c_name(self) -> &'static str {
        match self {
            Self::Model => "dg_model_t",
            Self::Rubric => "dg_rubric_t",
            Self::Error => "dg_error_t",
        }
    }
}

static LIVE: RwLock<BTreeMap<usize, Kind>> = RwLock::new(BTreeMap::new());

/// Moves `value` to the heap, records it as a live handle and returns the pointer for C.
pub(crate) fn register<T: 'static>(value: T) -> *mut T {
    let kind = Kind::of::<T>().expect("only handle types are registered");
    let p = Box::into_raw(Box::new(value));
    LIVE.write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(p as usize, kind);
    p
}

/// The kind recorded for `p`, if it is a live handle.
fn kind_at<T>(p: *const T) -> Option<Kind> {
    LIVE.read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(p as usize))
        .copied()
}

/// Whether `p` is a live handle of type `T`.
pub(crate) fn is_live<T: 'static>(p: *const T) -> bool {
    Kind::of::<T>().is_some_and(|k| kind_at(p) == Some(k))
}

/// Checks that `p` (non-NULL, aligned) is a live handle of the handle type `kind`.
pub(crate) fn check_live<T>(p: *const T, kind: Kind, what: &str) -> Result<(), Failure> {
    match kind_at(p) {
        Some(k) if k == kind => Ok(()),
        Some(k) => Err(Failure::invalid(format!(
            "`{what}` is a {}, not a {}",
            k.c_name(),
            kind.c_name()
        ))),
        None => Err(Failure::invalid(format!(
            "`{what}` is not a live {} (already freed, or not from this library)",
            kind.c_name()
        ))),
    }
}

/// Removes `p` from the registry and gives back its box, or `None` when `p` is not a live
/// handle of type `T` (NULL, freed already, another type): then nothing is freed.
pub(crate) fn unregister<T: 'static>(p: *mut T) -> Option<Box<T>> {
    let kind = Kind::of::<T>()?;
    let mut live = LIVE.write().unwrap_or_else(|e| e.into_inner());
    if live.get(&(p as usize)) != Some(&kind) {
        return None;
    }
    live.remove(&(p as usize));
    // SAFETY: registered by `register` from `Box::into_raw` and not yet freed (it was still
    // in the registry, and removing it under the lock makes this the only free).
    Some(unsafe { Box::from_raw(p) })
}
