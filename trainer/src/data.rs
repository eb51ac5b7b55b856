//! Records the trainer reads and writes as JSONL: scored transcripts ([`Example`]) and preference
//! pairs ([`PreferencePair`]).
//!
//! Every reader reports the one-based line number of the first bad line (invalid UTF-8, invalid
//! JSON, a missing field, a value out of range). Blank lines are skipped. [`JsonlAppender`]
//! writes one record per line and flushes each line, so an interrupted run leaves only complete
//! lines (plus at most one torn last line, which [`JsonlAppender::open_resumable`] drops).

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Lowest rating of the rubric scale.
pub const MIN_GOLD: u8 = 1;
/// Highest rating of the rubric scale.
pub const MAX_GOLD: u8 = 7;
/// Longest line a JSONL reader accepts, in bytes (a transcript of ~50k words fits).
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// One transcript scored by a human rater on one rubric item (NCTE format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// Unique id of the record.
    pub id: String,
    /// Classroom talk, one `TEACHER: ...` / `STUDENT: ...` turn per line.
    pub transcript: String,
    /// Rubric item id (e.g. `instructional_dialogue`).
    pub item: String,
    /// Human rating on the 1..=7 scale.
    pub gold: u8,
}

impl Example {
    /// Checks the invariants serde cannot express: non-empty id, transcript and item, gold in range.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("`id` is empty".into());
        }
        if self.transcript.trim().is_empty() {
            return Err(format!("record `{}`: `transcript` is empty", self.id));
        }
        if self.item.trim().is_empty() {
            return Err(format!("record `{}`: `item` is empty", self.id));
        }
        check_gold(self.gold).map_err(|m| format!("record `{}`: {m}", self.id))
    }
}

/// One Debiasing-DPO training pair: a prompt with a spurious context, the preferred (context-free)
/// answer and the dispreferred (context-swayed) answer, plus the neutral prompt for the SFT term.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferencePair {
    /// Unique id of the pair.
    pub id: String,
    /// Id of the [`Example`] the pair was built from.
    pub example_id: String,
    /// Id of the spurious context inserted into `prompt` (from the probe catalog).
    pub context_id: String,
    /// Fully rendered chat text WITH the spurious context, ending where the assistant's answer starts.
    pub prompt: String,
    /// Assistant text preferred after `prompt` (reasoning + rating produced without the context).
    pub chosen: String,
    /// Assistant text dispreferred after `prompt` (reasoning + rating produced with the context).
    pub rejected: String,
    /// Fully rendered chat text WITHOUT any context, ending where the assistant's answer starts.
    pub neutral_prompt: String,
    /// Human rating of the transcript (1..=7); the SFT target is `Rating: {gold}`.
    pub gold: u8,
    /// Rating that ends `chosen` (the model's own, without the context), for ablations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neutral_rating: Option<u8>,
    /// Rating that ends `rejected` (the model's own, with the context), for ablations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biased_rating: Option<u8>,
    /// Expected score (1..=7) of the label distribution that gave `neutral_rating`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neutral_expected: Option<f64>,
    /// Expected score (1..=7) of the label distribution that gave `biased_rating`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biased_expected: Option<f64>,
}

impl PreferencePair {
    /// Checks non-empty texts and the gold range.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("`id` is empty".into());
        }
        for (name, text) in [
            ("prompt", &self.prompt),
            ("chosen", &self.chosen),
            ("rejected", &self.rejected),
            ("neutral_prompt", &self.neutral_prompt),
        ] {
            if text.is_empty() {
                return Err(format!("pair `{}`: `{name}` is empty", self.id));
            }
        }
        check_gold(self.gold).map_err(|m| format!("pair `{}`: {m}", self.id))
    }

    /// The SFT target text: the gold answer the neutral prompt should produce.
    pub fn sft_target(&self) -> String {
        format!("Rating: {}", self.gold)
    }
}

fn check_gold(gold: u8) -> std::result::Result<(), String> {
    if (MIN_GOLD..=MAX_GOLD).contains(&gold) {
        Ok(())
    } else {
        Err(format!("`gold` {gold} is outside {MIN_GOLD}..={MAX_GOLD}"))
    }
}

/// Reads and validates a JSONL file of [`Example`]s (NCTE format); ids must be unique.
pub fn load_examples(path: &Path) -> Result<Vec<Example>> {
    let examples: Vec<Example> = read_jsonl_checked(path, Example::validate)?;
    check_unique_ids(path, examples.iter().map(|e| e.id.as_str()))?;
    Ok(examples)
}

/// Same as [`load_examples`] (the name the `eval` subcommand uses).
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    load_examples(path)
}

/// Reads and validates a JSONL file of [`PreferencePair`]s; ids must be unique.
pub fn load_pairs(path: &Path) -> Result<Vec<PreferencePair>> {
    let pairs: Vec<PreferencePair> = read_jsonl_checked(path, PreferencePair::validate)?;
    check_unique_ids(path, pairs.iter().map(|p| p.id.as_str()))?;
    Ok(pairs)
}

fn check_unique_ids<'a>(path: &Path, ids: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(Error::File {
                path: path.to_path_buf(),
                message: format!("id `{id}` appears more than once"),
            });
        }
    }
    Ok(())
}

/// Reads every non-blank line of `path` as a `T`, then runs `check` on it; errors carry the line.
pub fn read_jsonl_checked<T: DeserializeOwned>(
    path: &Path,
    check: impl Fn(&T) -> std::result::Result<(), String>,
) -> Result<Vec<T>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        line += 1;
        let record_err = |message: String| Error::Record {
            path: path.to_path_buf(),
            line,
            message,
        };
        if buf.len() > MAX_LINE_BYTES {
            return Err(record_err(format!(
                "line is longer than {MAX_LINE_BYTES} bytes"
            )));
        }
        let text = std::str::from_utf8(&buf)
            .map_err(|e| record_err(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
        if text.trim().is_empty() {
            continue;
        }
        let value: T = serde_json::from_str(text).map_err(|e| record_err(e.to_string()))?;
        check(&value).map_err(record_err)?;
        out.push(value);
    }
    if out.is_empty() {
        return Err(Error::File {
            path: path.to_path_buf(),
            message: "no records".into(),
        });
    }
    Ok(out)
}

/// Writes `records` to `path` as JSONL (one compact JSON object per line), replacing the file
/// atomically (temporary file + rename).
pub fn write_jsonl<T: Serialize>(path: &Path, records: &[T]) -> Result<()> {
    let tmp = temp_path(path);
    {
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = BufWriter::new(file);
        for r in records {
            write_line(&mut w, r).map_err(|e| Error::io(&tmp, e))?;
        }
        w.flush().map_err(|e| Error::io(&tmp, e))?;
        w.get_ref().sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// `path` with `.tmp` appended to its file name (same directory, so a rename is atomic).
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn write_line<T: Serialize>(w: &mut impl Write, record: &T) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, record)?;
    w.write_all(b"\n")
}

/// An append-only JSONL file: each [`JsonlAppender::append`] writes one line and flushes it.
pub struct JsonlAppender {
    path: PathBuf,
    file: File,
}

impl JsonlAppender {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Opens `path` to continue an interrupted output: a torn last line (no trailing newline) is
    /// cut off, and the complete lines kept are returned as raw text (to skip work already done).
    pub fn open_resumable(path: &Path) -> Result<(Self, Vec<String>)> {
        let mut lines = Vec::new();
        let mut keep = 0u64;
        if path.exists() {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            keep = complete as u64;
            for (i, raw) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
                if raw.is_empty() {
                    continue;
                }
                let text = std::str::from_utf8(raw).map_err(|e| Error::Record {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
                })?;
                lines.push(text.to_string());
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        file.set_len(keep).map_err(|e| Error::io(path, e))?;
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
            },
            lines,
        ))
    }

    /// Appends one record as a line and flushes it to the operating system.
    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_vec(record).map_err(|e| Error::File {
            path: self.path.clone(),
            message: format!("cannot encode record: {e}"),
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dg-data-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn line_of(err: Error) -> (usize, String) {
        match err {
            Error::Record { line, message, .. } => (line, message),
            other => panic!("expected a record error, got {other}"),
        }
    }

    #[test]
    fn examples_round_trip() {
        let dir = tmp_dir("rt");
        let path = dir.join("a.jsonl");
        let ex = vec![Example {
            id: "t1".into(),
            transcript: "TEACHER: Why?\nSTUDENT: Because.".into(),
            item: "instructional_dialogue".into(),
            gold: 5,
        }];
        write_jsonl(&path, &ex).unwrap();
        assert_eq!(load_examples(&path).unwrap(), ex);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let dir = tmp_dir("bad");
        let good = r#"{"id":"a","transcript":"TEACHER: Hi","item":"x","gold":3}"#;
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "json",
                format!("{good}\n{{not json\n").into_bytes(),
                "key must be a string",
            ),
            (
                "missing",
                format!("{good}\n{{\"id\":\"b\",\"item\":\"x\",\"gold\":3}}\n").into_bytes(),
                "missing field `transcript`",
            ),
            (
                "gold",
                format!(
                    "{good}\n{{\"id\":\"b\",\"transcript\":\"T\",\"item\":\"x\",\"gold\":9}}\n"
                )
                .into_bytes(),
                "outside 1..=7",
            ),
            (
                "empty",
                format!(
                    "{good}\n{{\"id\":\"b\",\"transcript\":\"  \",\"item\":\"x\",\"gold\":2}}\n"
                )
                .into_bytes(),
                "`transcript` is empty",
            ),
            (
                "utf8",
                [
                    format!("{good}\n").into_bytes(),
                    vec![b'{', 0xff, 0xfe, b'}', b'\n'],
                ]
                .concat(),
                "invalid UTF-8",
            ),
        ];
        for (name, bytes, want) in cases {
            let path = dir.join(format!("{name}.jsonl"));
            std::fs::write(&path, bytes).unwrap();
            let (line, message) = line_of(load_examples(&path).unwrap_err());
            assert_eq!(line, 2, "{name}");
            assert!(message.contains(want), "{name}: {message}");
        }
    }

    #[test]
    fn empty_and_duplicate_files_are_rejected() {
        let dir = tmp_dir("dup");
        let empty = dir.join("empty.jsonl");
        std::fs::write(&empty, "\n\n").unwrap();
        assert!(matches!(load_examples(&empty), Err(Error::File { .. })));
        let dup = dir.join("dup.jsonl");
        let line = r#"{"id":"a","transcript":"TEACHER: Hi","item":"x","gold":3}"#;
        std::fs::write(&dup, format!("{line}\n{line}\n")).unwrap();
        assert!(matches!(load_examples(&dup), Err(Error::File { .. })));
    }

    #[test]
    fn appender_drops_a_torn_last_line_on_resume() {
        let dir = tmp_dir("app");
        let path = dir.join("out.jsonl");
        let mut w = JsonlAppender::create(&path).unwrap();
        w.append(&serde_json::json!({"k": 1})).unwrap();
        w.append(&serde_json::json!({"k": 2})).unwrap();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"k\": 3").unwrap();
        drop(f);
        let (mut w, kept) = JsonlAppender::open_resumable(&path).unwrap();
        assert_eq!(kept, vec![r#"{"k":1}"#, r#"{"k":2}"#]);
        w.append(&serde_json::json!({"k": 4})).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"k\":1}\n{\"k\":2}\n{\"k\":4}\n");
    }
}
