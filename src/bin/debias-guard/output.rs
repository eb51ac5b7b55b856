//! Where results go: the human table to standard output, or to standard error when JSON is
//! written to standard output (`--json -`, `--format json`), so stdout stays parseable.

use clap::ValueEnum;
use debias_guard::{Error, Result};
use std::io::Write;
use std::path::Path;

/// What a command prints on standard output.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// JSON (the same document `--json` writes).
    Json,
    /// Comma-separated values with a header line.
    Csv,
}

/// Where the table, the JSON and the CSV of one command go.
pub struct Plan {
    /// The format printed (to stdout, or stderr for a table when JSON takes stdout).
    pub format: Format,
    /// Whether the table goes to standard error.
    pub table_to_stderr: bool,
}

impl Plan {
    /// The plan for `--format` and `--json`: a table moves to stderr when `--json -` puts JSON
    /// on stdout; `--format json|csv` with `--json -` is refused (two documents on one stream).
    pub fn new(format: Format, json: Option<&Path>) -> Result<Self> {
        let json_to_stdout = json.is_some_and(crate::input::is_dash);
        if json_to_stdout && format != Format::Table {
            return Err(Error::InvalidInput(
                "--json - and --format json/csv would both write to standard output; use one"
                    .into(),
            ));
        }
        Ok(Self {
            format,
            table_to_stderr: json_to_stdout,
        })
    }

    /// Prints the table (to stdout or stderr, per the plan), when the format is `table`.
    pub fn table(&self, text: &str) -> Result<()> {
        if self.format != Format::Table {
            return Ok(());
        }
        if self.table_to_stderr {
            eprint!("{text}");
            Ok(())
        } else {
            stdout(text)
        }
    }
}

/// Writes `text` to standard output (a closed pipe is an I/O error, not a panic).
pub fn stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::Io {
            path: "<stdout>".into(),
            source: e,
        })
}

/// Writes `text` to `path`, or to standard output for `-`; says where on stderr.
pub fn write_to(path: &Path, text: &str) -> Result<()> {
    if crate::input::is_dash(path) {
        return stdout(text);
    }
    debias_guard::guard::report::write_text(path, text)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Pretty JSON of a value and a trailing newline.
pub fn json<T: serde::Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("results serialise");
    s.push('\n');
    s
}

/// One CSV line from fields (already formatted).
pub fn csv_line(fields: &[String]) -> String {
    let mut line = fields
        .iter()
        .map(|f| debias_guard::textio::csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}
