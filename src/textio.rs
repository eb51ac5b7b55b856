//! User text in and out: bounded file reads, UTF-8 checks that report where the bad byte is,
//! and CSV field quoting.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Reads a UTF-8 text file of at most `max_bytes` bytes.
pub fn read_text_file(path: &Path, max_bytes: usize, what: &'static str) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() > max_bytes {
        return Err(Error::InvalidInput(format!(
            "{what} file {} is larger than {max_bytes} bytes",
            path.display()
        )));
    }
    utf8(bytes, what)
}

/// Converts bytes to a string, or reports the offset of the first invalid byte.
pub fn utf8(bytes: Vec<u8>, what: &'static str) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
        what,
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Borrows bytes as a string, or reports the offset of the first invalid byte.
pub fn utf8_str<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
        what,
        offset: e.valid_up_to(),
    })
}

/// One CSV field: quoted (with inner quotes doubled) when it holds a comma, a quote or a line
/// break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
