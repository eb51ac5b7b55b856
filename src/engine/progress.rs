//! Progress reports and cooperative cancellation of long calls (audits, checks, lock-step
//! generation), in the manner of llama.cpp's progress callback.
//!
//! [`observe`] runs the work on a helper thread while the calling thread relays its reports to
//! the caller's callback, so a callback always runs on the thread that made the call (a C host
//! may touch its own UI or thread-local state from it). The work checks for a stop request
//! between units of work (one forward pass of the model, one decoding step) and then returns
//! [`Error::Cancelled`]; nothing is left half-written.

use crate::error::{Error, Result};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::Duration;

/// Stack of the worker thread: what a main thread gets on Linux, as the work would have had
/// without observation.
const WORKER_STACK: usize = 8 << 20;

/// How often the calling thread looks at the caller's stop request while no report arrives.
const POLL: Duration = Duration::from_millis(20);

/// What a caller watches a long call with. Both parts are optional.
#[derive(Default)]
pub struct Observer<'a> {
    /// Called on the calling thread with `(done, total)` units of work whenever the work moves
    /// on (`done` never decreases; `total` is fixed for the call); returning `false` cancels.
    pub on_progress: Option<&'a mut dyn FnMut(u64, u64) -> bool>,
    /// Polled on the calling thread every few milliseconds; `true` cancels.
    pub cancelled: Option<&'a dyn Fn() -> bool>,
}

/// The worker's end of an observed call: where it reports how far it is and learns that it
/// should stop. [`Progress::NONE`] reports nowhere and never stops. Copy it freely: a part of
/// the work gets its own range of the call's units with [`Progress::part`].
#[derive(Clone, Copy, Default)]
pub struct Progress<'a> {
    meter: Option<&'a Meter>,
    /// `(base, width, total)`: this part covers units `base..base + width` of `total`;
    /// `None` = reports go out unchanged.
    range: Option<(u64, u64, u64)>,
}

/// Shared between the worker (and the engine's pool threads) and the relaying thread.
struct Meter {
    reports: Mutex<Sender<(u64, u64)>>,
    stop: AtomicBool,
    last: AtomicU64,
}

impl Progress<'static> {
    /// Reports nowhere, never cancelled.
    pub const NONE: Progress<'static> = Progress {
        meter: None,
        range: None,
    };
}

impl<'a> Progress<'a> {
    /// `done` of `total` units of this part are finished. `Err(Cancelled)` when the caller
    /// asked to stop: return it at once.
    pub fn report(&self, done: u64, total: u64) -> Result<()> {
        let Some(meter) = self.meter else {
            return Ok(());
        };
        self.check()?;
        let (done, total) = match self.range {
            None => (done.min(total), total),
            Some((base, width, all)) => (base + scale(done.min(total), width, total), all),
        };
        // Monotone even when parts of the work report out of order (pool threads).
        if meter.last.fetch_max(done, Ordering::Relaxed) <= done {
            if let Ok(tx) = meter.reports.lock() {
                // The relay only disappears after the work has returned.
                let _ = tx.send((done, total));
            }
        }
        Ok(())
    }

    /// `Err(Cancelled)` when the caller asked to stop.
    pub fn check(&self) -> Result<()> {
        match self.meter {
            Some(m) if m.stop.load(Ordering::Relaxed) => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }

    /// The part of this work that covers units `base..base + width` of `total`: its own
    /// reports, in its own units, are mapped into that range.
    pub fn part(&self, base: u64, width: u64, total: u64) -> Progress<'a> {
        let range = match self.range {
            None => (base, width, total),
            Some((b, w, all)) => {
                let lo = scale(base, w, total);
                let hi = scale(base.saturating_add(width).min(total), w, total);
                (b + lo, hi - lo, all)
            }
        };
        Progress {
            meter: self.meter,
            range: Some(range),
        }
    }

    /// Whether anyone listens (a caller may skip computing a total for nobody).
    pub fn is_observed(&self) -> bool {
        self.meter.is_some()
    }
}

/// Closes the report channel when the work ends, by return or by panic: the relay then stops
/// waiting.
struct CloseOnDrop<'m>(&'m Meter);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        let mut tx = match self.0.reports.lock() {
            Ok(tx) => tx,
            Err(poisoned) => poisoned.into_inner(),
        };
        *tx = mpsc::channel().0;
    }
}

/// `value × width / total` without overflow (`width` when `total` is 0).
fn scale(value: u64, width: u64, total: u64) -> u64 {
    if total == 0 {
        width
    } else {
        (u128::from(value) * u128::from(width) / u128::from(total)) as u64
    }
}

/// Runs `work` with a [`Progress`] whose reports reach `observer` on the calling thread.
///
/// The work runs on a scoped helper thread; this thread waits for its reports and calls
/// `observer.on_progress` with them (several quick reports may arrive as one, the latest), and
/// polls `observer.cancelled`. A cancel request makes the work's next check return
/// [`Error::Cancelled`], which is then this call's result. A panic in the work or in a callback
/// resumes on this thread after the work has stopped. With neither callback set, `work` runs
/// directly on this thread.
pub fn observe<T: Send>(
    observer: Observer<'_>,
    work: impl FnOnce(Progress<'_>) -> Result<T> + Send,
) -> Result<T> {
    let Observer {
        mut on_progress,
        cancelled,
    } = observer;
    if on_progress.is_none() && cancelled.is_none() {
        return work(Progress::NONE);
    }
    if cancelled.is_some_and(|c| c()) {
        return Err(Error::Cancelled);
    }
    let (tx, rx) = mpsc::channel();
    let meter = Meter {
        reports: Mutex::new(tx),
        stop: AtomicBool::new(false),
        last: AtomicU64::new(0),
    };
    std::thread::scope(|s| {
        let meter = &meter;
        let spawned = std::thread::Builder::new()
            .name("debias-guard-work".into())
            .stack_size(WORKER_STACK)
            .spawn_scoped(s, move || {
                let _close = CloseOnDrop(meter);
                work(Progress {
                    meter: Some(meter),
                    range: None,
                })
            });
        let worker = match spawned {
            Ok(worker) => worker,
            Err(e) => {
                return Err(Error::InvalidInput(format!(
                    "cannot start the worker thread of an observed call: {e}"
                )))
            }
        };
        let mut callback_panic = None;
        loop {
            let latest = match rx.recv_timeout(POLL) {
                Ok(first) => Some(rx.try_iter().last().unwrap_or(first)),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let stopping = meter.stop.load(Ordering::Relaxed);
            if let (Some((done, total)), Some(cb), false) = (latest, on_progress.as_mut(), stopping)
            {
                match panic::catch_unwind(AssertUnwindSafe(|| cb(done, total))) {
                    Ok(true) => {}
                    Ok(false) => meter.stop.store(true, Ordering::Relaxed),
                    Err(payload) => {
                        meter.stop.store(true, Ordering::Relaxed);
                        callback_panic = Some(payload);
                    }
                }
            }
            if cancelled.is_some_and(|c| c()) {
                meter.stop.store(true, Ordering::Relaxed);
            }
        }
        let out = match worker.join() {
            Ok(out) => out,
            Err(payload) => panic::resume_unwind(payload),
        };
        if let Some(payload) = callback_panic {
            panic::resume_unwind(payload);
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting(progress: Progress<'_>, steps: u64) -> Result<u64> {
        for i in 0..=steps {
            progress.report(i, steps)?;
        }
        Ok(steps)
    }

    #[test]
    fn reports_reach_the_calling_thread_in_order() {
        let caller = std::thread::current().id();
        let mut seen = Vec::new();
        let mut cb = |d: u64, t: u64| {
            assert_eq!(std::thread::current().id(), caller);
            seen.push((d, t));
            std::thread::sleep(Duration::from_millis(1));
            true
        };
        let out = observe(
            Observer {
                on_progress: Some(&mut cb),
                cancelled: None,
            },
            |p| counting(p, 50),
        );
        assert_eq!(out.unwrap(), 50);
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
        assert_eq!(seen.last(), Some(&(50, 50)));
    }

    #[test]
    fn false_from_the_callback_cancels() {
        let mut calls = 0;
        let mut cb = |_: u64, _: u64| {
            calls += 1;
            false
        };
        let out = observe(
            Observer {
                on_progress: Some(&mut cb),
                cancelled: None,
            },
            |p| {
                for i in 0.. {
                    p.report(i, u64::MAX)?;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            },
        );
        assert!(matches!(out, Err(Error::Cancelled)), "{out:?}");
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_flag_cancels_without_a_callback() {
        let flag = AtomicBool::new(false);
        let stop = || flag.load(Ordering::Relaxed);
        let out: Result<()> = observe(
            Observer {
                on_progress: None,
                cancelled: Some(&stop),
            },
            |p| loop {
                flag.store(true, Ordering::Relaxed);
                p.check()?;
                std::thread::sleep(Duration::from_millis(1));
            },
        );
        assert!(matches!(out, Err(Error::Cancelled)));
    }

    #[test]
    fn parts_map_into_their_range() {
        let mut seen = Vec::new();
        let mut cb = |d: u64, t: u64| {
            seen.push((d, t));
            true
        };
        observe(
            Observer {
                on_progress: Some(&mut cb),
                cancelled: None,
            },
            |p| {
                p.part(10, 10, 40).report(5, 10)?;
                std::thread::sleep(POLL * 2);
                p.part(20, 20, 40).part(1, 1, 2).report(1, 1)
            },
        )
        .unwrap();
        assert_eq!(seen, vec![(15, 40), (40, 40)]);
    }

    #[test]
    fn a_panicking_callback_resumes_on_the_caller() {
        let mut cb = |_: u64, _: u64| -> bool { panic!("callback bug") };
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            observe(
                Observer {
                    on_progress: Some(&mut cb),
                    cancelled: None,
                },
                |p| counting(p, 3),
            )
        }));
        assert!(caught.is_err());
    }
}
