//! The process exit statuses, one meaning each (also listed in `--help` and the README).

use std::process::ExitCode;

/// The run finished and nothing was flagged (or flags were not asked to fail the run).
pub const CLEAN: u8 = 0;
/// Something went wrong: unreadable input, a bad model file, a failed write.
pub const ERROR: u8 = 1;
/// The command line itself is wrong (clap's own status for usage errors).
pub const USAGE: u8 = 2;
/// `--fail-on-flag` was given and the audit or check flagged something.
pub const FLAGGED: u8 = 3;

/// The `after_help` text of the top-level `--help`.
pub const HELP: &str = "Exit status: 0 clean, 1 error, 2 usage (bad command line), \
3 flagged (only with --fail-on-flag on `audit`, `audit-dataset` and `check`).";

/// `FLAGGED` when `fail_on_flag` and `flagged`, else `CLEAN`.
pub fn verdict(fail_on_flag: bool, flagged: bool) -> ExitCode {
    ExitCode::from(if fail_on_flag && flagged {
        FLAGGED
    } else {
        CLEAN
    })
}
