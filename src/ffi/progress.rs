//! Progress callbacks and cancel flags of the long calls (`dg_audit`): the C form of
//! [`crate::engine::Observer`]. The callback runs on the thread that made the call.

use super::error::Failure;
use crate::engine::{observe, Observer, Progress};
use crate::error::Result;
use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, Ordering};

/// A progress callback: `user_data` as given, `done` and `total` units of work; return false
/// to cancel the call.
pub type dg_progress_fn = Option<unsafe extern "C" fn(*mut c_void, usize, usize) -> bool>;

/// A long call's progress callback, its user data and its cancel flag, as the options struct
/// holds them.
pub(crate) struct Watch {
    pub callback: dg_progress_fn,
    pub user_data: *mut c_void,
    pub cancel: *const i32,
}

impl Watch {
    /// Runs `work` under [`observe`] with this callback and flag (directly when both are NULL).
    pub fn run<T: Send>(
        &self,
        work: impl FnOnce(Progress<'_>) -> Result<T> + Send,
    ) -> Result<T, Failure> {
        if !self.cancel.is_null() && !self.cancel.is_aligned() {
            return Err(Failure::invalid(
                "`options->cancel` is not a valid pointer (misaligned)",
            ));
        }
        let (callback, user_data, cancel) = (self.callback, self.user_data, self.cancel);
        let mut report = |done: u64, total: u64| match callback {
            // SAFETY: the caller's function, called with the caller's user data on the calling
            // thread, as documented in the options.
            Some(f) => unsafe { f(user_data, done as usize, total as usize) },
            None => true,
        };
        let stop = || {
            // SAFETY: non-NULL and aligned (checked above); the caller keeps the flag alive
            // during the call and writes it from any thread, so it is read atomically.
            unsafe { AtomicI32::from_ptr(cancel.cast_mut()) }.load(Ordering::Relaxed) != 0
        };
        let observer = Observer {
            on_progress: callback
                .is_some()
                .then_some(&mut report as &mut dyn FnMut(u64, u64) -> bool),
            cancelled: (!cancel.is_null()).then_some(&stop as &dyn Fn() -> bool),
        };
        Ok(observe(observer, work)?)
    }
}
