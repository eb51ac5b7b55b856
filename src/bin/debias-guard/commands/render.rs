//! `render`: the HTML page of a saved JSON report.

use crate::args::RenderArgs;
use debias_guard::guard::{html, AuditReport};
use debias_guard::Error;
use std::io::Read;
use std::process::ExitCode;

/// Largest report read, in bytes.
const MAX_REPORT_BYTES: usize = 256 << 20;

/// Reads the report (`-` = standard input) and writes its page (`-` = standard output).
pub fn run(args: RenderArgs) -> debias_guard::Result<ExitCode> {
    let RenderArgs { json, html: out } = args;
    let (text, name) = if crate::input::is_dash(&json) {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_REPORT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Io {
                path: "<stdin>".into(),
                source: e,
            })?;
        if bytes.len() > MAX_REPORT_BYTES {
            return Err(Error::InvalidInput(
                "the report on standard input is over the 256 MiB limit".into(),
            ));
        }
        let text = debias_guard::textio::utf8_str(&bytes, "audit report")?.to_string();
        (text, "<stdin>".to_string())
    } else {
        let text = debias_guard::textio::read_text_file(&json, MAX_REPORT_BYTES, "audit report")?;
        (text, crate::file_name(&json))
    };
    let report = AuditReport::from_json(&text, &name)?;
    crate::output::write_to(&out, &html::render_html(&report))?;
    Ok(ExitCode::SUCCESS)
}
