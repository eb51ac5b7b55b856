//! Reading the transcript (a file, or standard input for `-`) and judging whether it looks
//! like one.

use debias_guard::prompt::MAX_TRANSCRIPT_BYTES;
use debias_guard::{Error, Result, Transcript};
use std::io::Read;
use std::path::Path;

/// Whether `path` is `-` (standard input or output).
pub fn is_dash(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// The transcript at `path` (`-` = standard input) and its name for reports.
pub fn read_transcript(path: &Path) -> Result<(Transcript, String)> {
    if !is_dash(path) {
        let text = debias_guard::textio::read_text_file(path, MAX_TRANSCRIPT_BYTES, "transcript")?;
        return Ok((Transcript::new(&text)?, crate::file_name(path)));
    }
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_TRANSCRIPT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Io {
            path: "<stdin>".into(),
            source: e,
        })?;
    if bytes.len() > MAX_TRANSCRIPT_BYTES {
        return Err(Error::InvalidInput(format!(
            "the transcript on standard input is over the {MAX_TRANSCRIPT_BYTES}-byte limit"
        )));
    }
    Ok((Transcript::from_bytes(&bytes)?, "<stdin>".to_string()))
}

/// Warns on standard error when the transcript has no speaker turns, or refuses it when
/// `strict`.
pub fn check_turns(transcript: &Transcript, name: &str, strict: bool) -> Result<()> {
    if transcript.has_speaker_turns() {
        return Ok(());
    }
    let what = format!(
        "{name} has no speaker turns (lines such as `TEACHER: …` or `STUDENT: …`), so it may \
         not be a transcript"
    );
    if strict {
        return Err(Error::InvalidInput(format!(
            "{what} (refused under --strict)"
        )));
    }
    eprintln!("warning: {what}; scoring it anyway (--strict refuses such input)");
    Ok(())
}
