//! Progress of long commands on standard error: an indicatif bar when stderr is a terminal,
//! plain lines otherwise (the first report, then one every few seconds), nothing with
//! `--quiet`. Standard output (JSON,
//! CSV, tables) never carries it. Fed by the library's progress reports
//! ([`debias_guard::engine::observe`]), which run on this thread.

use debias_guard::engine::{observe, Observer, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Least time between two plain progress lines.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// One progress display: what runs, in which unit, drawn as a bar or as lines.
pub struct Meter {
    what: String,
    unit: &'static str,
    style: Style,
}

enum Style {
    Quiet,
    Bar(ProgressBar),
    Lines {
        started: Instant,
        last: Option<Instant>,
    },
}

impl Meter {
    /// A display for `what` (e.g. `audit`) counting `unit`s (`tokens`, `steps`).
    pub fn new(quiet: bool, what: impl Into<String>, unit: &'static str) -> Self {
        let style = if quiet {
            Style::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let template = "{spinner} {prefix} [{bar:30}] {percent:>3}% {pos}/{len} {msg} \
                            {elapsed} (eta {eta})";
            if let Ok(s) = ProgressStyle::with_template(template) {
                bar.set_style(s.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            Style::Bar(bar)
        } else {
            Style::Lines {
                started: Instant::now(),
                last: None,
            }
        };
        let meter = Self {
            what: what.into(),
            unit,
            style,
        };
        if let Style::Bar(bar) = &meter.style {
            bar.set_prefix(meter.what.clone());
            bar.set_message(unit);
        }
        meter
    }

    /// Shows `done` of `total` units.
    pub fn show(&mut self, done: u64, total: u64) {
        match &mut self.style {
            Style::Quiet => {}
            Style::Bar(bar) => {
                bar.set_length(total);
                bar.set_position(done);
            }
            Style::Lines { started, last } => {
                if last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                    *last = Some(Instant::now());
                    eprintln!(
                        "{}: {done}/{total} {} ({:.0} %, {:.0} s)",
                        self.what,
                        self.unit,
                        percent(done, total),
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }

    /// Runs `work` with its progress shown here; the bar is cleared when it returns.
    pub fn run<T: Send>(
        &mut self,
        work: impl FnOnce(Progress<'_>) -> debias_guard::Result<T> + Send,
    ) -> debias_guard::Result<T> {
        if matches!(self.style, Style::Quiet) {
            return work(Progress::NONE);
        }
        let mut show = |done: u64, total: u64| {
            self.show(done, total);
            true
        };
        let out = observe(
            Observer {
                on_progress: Some(&mut show),
                cancelled: None,
            },
            work,
        );
        if let Style::Bar(bar) = &self.style {
            bar.finish_and_clear();
        }
        out
    }
}

fn percent(done: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        done as f64 * 100.0 / total as f64
    }
}
