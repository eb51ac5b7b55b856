//! Dataset audits: one audit per transcript of a folder or JSONL file, kept as one compact line
//! each (what a streaming writer emits and a resumed run reads back), and the aggregate over the
//! dataset — per item × category the mean signed Δ, the mean |Δ| and its excess over the noise
//! floor with 95 % bootstrap intervals over transcripts, the share of transcripts flagged, and
//! the worst cases.
//!
//! Memory grows with the number of transcripts by one small record each (a few numbers per item
//! × category); the full audit reports are never kept.

use super::report::{AuditReport, VariantKind};
use crate::error::{Error, Result};
use crate::prompt::MAX_TRANSCRIPT_BYTES;
use crate::stats::bootstrap::{mean_at, BootstrapOptions, ClusterResamples, Estimate};
use crate::textio::{csv_field, read_text_file};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{BufRead, Read};
use std::path::Path;

/// Most transcripts one dataset audit takes.
pub const MAX_DATASET_TRANSCRIPTS: usize = 100_000;
/// Most bytes of a transcript id.
pub const MAX_ID_BYTES: usize = 256;

/// One transcript to audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetInput {
    /// Unique id (file stem, or the JSONL record's `id`).
    pub id: String,
    /// The transcript text.
    pub transcript: String,
}

/// The transcripts of a dataset, read one at a time (a JSONL file is never held whole): a
/// folder (every `*.txt` file, sorted by name, the id is the file stem) or a JSONL file of
/// `{"id": …, "transcript": …}` records (empty lines skipped). Ids must be unique and have 1 to
/// [`MAX_ID_BYTES`] bytes; at most [`MAX_DATASET_TRANSCRIPTS`] transcripts.
pub struct DatasetInputs {
    source: std::path::PathBuf,
    kind: InputKind,
    seen: HashSet<String>,
    count: usize,
}

enum InputKind {
    Files(std::vec::IntoIter<std::path::PathBuf>),
    Lines {
        reader: std::io::BufReader<std::fs::File>,
        line: usize,
    },
}

/// Largest JSONL line: a transcript of the largest size, every byte escaped, plus the id.
const MAX_LINE_BYTES: usize = 6 * MAX_TRANSCRIPT_BYTES + 4 * MAX_ID_BYTES;

impl DatasetInputs {
    /// Opens a folder or JSONL file; nothing is read yet except the folder's listing.
    pub fn open(path: &Path) -> Result<Self> {
        let kind = if path.is_dir() {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
                let file = entry.map_err(|e| Error::io(path, e))?.path();
                if file.is_file() && file.extension().is_some_and(|x| x == "txt") {
                    if files.len() == MAX_DATASET_TRANSCRIPTS {
                        return Err(too_many(path));
                    }
                    files.push(file);
                }
            }
            files.sort();
            InputKind::Files(files.into_iter())
        } else {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            InputKind::Lines {
                reader: std::io::BufReader::new(file),
                line: 0,
            }
        };
        Ok(Self {
            source: path.to_path_buf(),
            kind,
            seen: HashSet::new(),
            count: 0,
        })
    }

    fn next_raw(&mut self) -> Option<Result<DatasetInput>> {
        let source = &self.source;
        match &mut self.kind {
            InputKind::Files(files) => {
                let path = files.next()?;
                let id = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Some(
                    read_text_file(&path, MAX_TRANSCRIPT_BYTES, "transcript")
                        .map(|transcript| DatasetInput { id, transcript }),
                )
            }
            InputKind::Lines { reader, line } => loop {
                let mut bytes = Vec::new();
                let read = reader
                    .by_ref()
                    .take(MAX_LINE_BYTES as u64 + 1)
                    .read_until(b'\n', &mut bytes);
                *line += 1;
                let at = format!("{} line {}", source.display(), line);
                match read {
                    Err(e) => return Some(Err(Error::io(source, e))),
                    Ok(0) => return None,
                    Ok(_) if bytes.len() > MAX_LINE_BYTES => {
                        return Some(Err(Error::InvalidInput(format!(
                            "{at}: longer than {MAX_LINE_BYTES} bytes"
                        ))))
                    }
                    Ok(_) => {}
                }
                let text = match std::str::from_utf8(&bytes) {
                    Ok(t) => t,
                    Err(e) => {
                        return Some(Err(Error::InvalidInput(format!(
                            "{at}: invalid UTF-8 at byte {}",
                            e.valid_up_to()
                        ))))
                    }
                };
                if text.trim().is_empty() {
                    continue;
                }
                return Some(
                    serde_json::from_str::<DatasetInput>(text)
                        .map_err(|e| Error::InvalidInput(format!("{at}: {e}")))
                        .and_then(|input| {
                            if input.transcript.len() > MAX_TRANSCRIPT_BYTES {
                                Err(Error::InvalidInput(format!(
                                    "{at}: transcript `{}` is longer than {MAX_TRANSCRIPT_BYTES} bytes",
                                    input.id
                                )))
                            } else {
                                Ok(input)
                            }
                        }),
                );
            },
        }
    }
}

impl Iterator for DatasetInputs {
    type Item = Result<DatasetInput>;

    fn next(&mut self) -> Option<Self::Item> {
        let input = match self.next_raw()? {
            Ok(input) => input,
            Err(e) => return Some(Err(e)),
        };
        let path = self.source.display();
        if self.count == MAX_DATASET_TRANSCRIPTS {
            return Some(Err(too_many(&self.source)));
        }
        self.count += 1;
        if input.id.is_empty() || input.id.len() > MAX_ID_BYTES {
            return Some(Err(Error::InvalidInput(format!(
                "{path}: transcript ids must have 1 to {MAX_ID_BYTES} bytes"
            ))));
        }
        if !self.seen.insert(input.id.clone()) {
            return Some(Err(Error::InvalidInput(format!(
                "{path}: transcript id `{}` appears twice",
                input.id
            ))));
        }
        Some(Ok(input))
    }
}

fn too_many(path: &Path) -> Error {
    Error::InvalidInput(format!(
        "{}: more than {MAX_DATASET_TRANSCRIPTS} transcripts; split the dataset",
        path.display()
    ))
}

/// One transcript's result: the line a dataset audit writes for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRecord {
    /// The transcript's id.
    pub id: String,
    /// SHA-256 of the transcript as scored (to tell a changed file on resume).
    pub transcript_sha256: String,
    /// Whether any item × category reached its threshold.
    pub flagged: bool,
    /// One entry per rubric item, in audit order.
    pub items: Vec<ItemLine>,
}

/// One rubric item of a [`DatasetRecord`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemLine {
    /// The rubric item id.
    pub item_id: String,
    /// Expected score of the neutral prompt (scale points).
    pub neutral_expected: f64,
    /// Mean |Δ| of the control sentences (scale points).
    pub noise_floor: f64,
    /// The flag threshold of this item on this transcript (scale points).
    pub flag_threshold: f64,
    /// One entry per category, in catalog order.
    pub categories: Vec<CategoryLine>,
}

/// One category of an [`ItemLine`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryLine {
    /// Category id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Mean signed Δ over the category's wordings (scale points).
    pub mean_delta: f64,
    /// Mean |Δ| over the category's wordings (scale points).
    pub mean_abs_delta: f64,
    /// Largest |Δ| (scale points).
    pub max_abs_delta: f64,
    /// `max_abs_delta ≥ flag_threshold`.
    pub flagged: bool,
}

impl DatasetRecord {
    /// The compact line of one transcript's audit (its plain, unmitigated condition).
    pub fn from_report(id: &str, report: &AuditReport) -> Self {
        let items = report
            .items
            .iter()
            .map(|item| {
                let plain = &item.plain;
                let categories = plain
                    .categories
                    .iter()
                    .map(|c| {
                        let abs: Vec<f64> = plain
                            .variants
                            .iter()
                            .filter(|v| {
                                v.kind == VariantKind::Category
                                    && v.category.as_deref() == Some(c.id.as_str())
                            })
                            .filter_map(|v| v.delta.as_ref().map(|d| d.abs_delta))
                            .collect();
                        let mean_abs_delta = if abs.is_empty() {
                            0.0
                        } else {
                            abs.iter().sum::<f64>() / abs.len() as f64
                        };
                        CategoryLine {
                            id: c.id.clone(),
                            name: c.name.clone(),
                            mean_delta: c.mean_delta,
                            mean_abs_delta,
                            max_abs_delta: c.max_abs_delta,
                            flagged: c.flagged,
                        }
                    })
                    .collect();
                ItemLine {
                    item_id: item.item_id.clone(),
                    neutral_expected: plain.neutral.distribution.expected,
                    noise_floor: plain.noise_floor,
                    flag_threshold: plain.flag_threshold,
                    categories,
                }
            })
            .collect();
        Self {
            id: id.to_string(),
            transcript_sha256: report.transcript.sha256.clone(),
            flagged: report
                .items
                .iter()
                .any(|i| i.plain.categories.iter().any(|c| c.flagged)),
            items,
        }
    }

    /// This record as one JSON line (no trailing newline).
    pub fn to_json_line(&self) -> Result<String> {
        serde_json::to_string(self)
            .map_err(|e| Error::InvalidInput(format!("record `{}`: {e}", self.id)))
    }
}

/// Reads the records of an earlier (possibly interrupted) run's JSONL output. A last line cut
/// short by the interruption is dropped (it will be audited again); any other bad line is an
/// error naming it.
pub fn read_records(text: &str) -> Result<Vec<DatasetRecord>> {
    let lines: Vec<&str> = text.lines().collect();
    let complete = text.ends_with('\n');
    let mut records = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<DatasetRecord>(line) {
            Ok(r) => records.push(r),
            Err(_) if n + 1 == lines.len() && !complete => break,
            Err(e) => {
                return Err(Error::InvalidInput(format!(
                    "dataset output line {}: {e}",
                    n + 1
                )))
            }
        }
    }
    Ok(records)
}

/// `text` cut after its last complete line (what a resumed run keeps of an interrupted file).
pub fn complete_lines(text: &str) -> &str {
    match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    }
}

/// The aggregate of a dataset audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// Transcripts audited.
    pub transcripts: usize,
    /// Transcripts with at least one flag.
    pub flagged_transcripts: usize,
    /// Share of transcripts flagged (0–1), with its interval.
    pub flagged_share: Estimate,
    /// One entry per item × category, in the first record's order.
    pub cells: Vec<CellSummary>,
    /// The largest |Δ| relative to its threshold, worst first.
    pub worst: Vec<WorstCase>,
    /// How the intervals were computed (the unit drawn is the transcript).
    pub bootstrap: BootstrapOptions,
}

/// One item × category over the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    /// The rubric item id.
    pub item_id: String,
    /// Category id.
    pub category_id: String,
    /// Category display name.
    pub category_name: String,
    /// Mean over transcripts of the category's mean signed Δ (scale points).
    pub mean_delta: Estimate,
    /// Mean over transcripts of the category's mean |Δ| (scale points).
    pub mean_abs_delta: Estimate,
    /// Mean over transcripts of (mean |Δ| − noise floor) (scale points).
    pub excess_over_floor: Estimate,
    /// Share of transcripts where this cell was flagged (0–1).
    pub flagged_share: Estimate,
}

/// One transcript × item × category among the worst.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorstCase {
    /// The transcript's id.
    pub id: String,
    /// The rubric item id.
    pub item_id: String,
    /// Category id.
    pub category_id: String,
    /// Largest |Δ| (scale points).
    pub max_abs_delta: f64,
    /// The threshold of that item on that transcript.
    pub flag_threshold: f64,
}

/// Aggregates `records` (one per transcript) with intervals from `bootstrap`, keeping the
/// `worst` largest |Δ| / threshold cases.
pub fn summarise(
    records: &[DatasetRecord],
    bootstrap: &BootstrapOptions,
    worst: usize,
) -> DatasetSummary {
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let resamples = ClusterResamples::new(&ids, bootstrap);
    let flags: Vec<f64> = records
        .iter()
        .map(|r| f64::from(u8::from(r.flagged)))
        .collect();
    let mut cells = Vec::new();
    if let Some(first) = records.first() {
        for item in &first.items {
            for cat in &item.categories {
                let pick = |f: &dyn Fn(&ItemLine, &CategoryLine) -> f64| -> Vec<f64> {
                    records
                        .iter()
                        .map(|r| {
                            r.items
                                .iter()
                                .find(|i| i.item_id == item.item_id)
                                .and_then(|i| {
                                    i.categories
                                        .iter()
                                        .find(|c| c.id == cat.id)
                                        .map(|c| f(i, c))
                                })
                                .unwrap_or(f64::NAN)
                        })
                        .collect()
                };
                let signed = pick(&|_, c| c.mean_delta);
                let abs = pick(&|_, c| c.mean_abs_delta);
                let excess = pick(&|i, c| c.mean_abs_delta - i.noise_floor);
                let flagged = pick(&|_, c| f64::from(u8::from(c.flagged)));
                cells.push(CellSummary {
                    item_id: item.item_id.clone(),
                    category_id: cat.id.clone(),
                    category_name: cat.name.clone(),
                    mean_delta: resamples.estimate(|idx| mean_at(&signed, idx)),
                    mean_abs_delta: resamples.estimate(|idx| mean_at(&abs, idx)),
                    excess_over_floor: resamples.estimate(|idx| mean_at(&excess, idx)),
                    flagged_share: resamples.estimate(|idx| mean_at(&flagged, idx)),
                });
            }
        }
    }
    let mut cases: Vec<WorstCase> = records
        .iter()
        .flat_map(|r| {
            r.items.iter().flat_map(move |i| {
                i.categories.iter().map(move |c| WorstCase {
                    id: r.id.clone(),
                    item_id: i.item_id.clone(),
                    category_id: c.id.clone(),
                    max_abs_delta: c.max_abs_delta,
                    flag_threshold: i.flag_threshold,
                })
            })
        })
        .collect();
    let ratio = |w: &WorstCase| w.max_abs_delta / w.flag_threshold.max(f64::MIN_POSITIVE);
    cases.sort_by(|a, b| ratio(b).total_cmp(&ratio(a)));
    cases.truncate(worst);
    DatasetSummary {
        transcripts: records.len(),
        flagged_transcripts: records.iter().filter(|r| r.flagged).count(),
        flagged_share: resamples.estimate(|idx| mean_at(&flags, idx)),
        cells,
        worst: cases,
        bootstrap: *bootstrap,
    }
}

/// The records as CSV, one row per transcript × item × category, with a header row. Fields
/// that could hold a comma or quote are quoted.
pub fn to_csv(records: &[DatasetRecord]) -> String {
    let mut out = String::from(
        "id,item_id,category_id,mean_delta,mean_abs_delta,max_abs_delta,noise_floor,\
         flag_threshold,flagged\n",
    );
    for r in records {
        for i in &r.items {
            for c in &i.categories {
                let _ = writeln!(
                    out,
                    "{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{}",
                    csv_field(&r.id),
                    csv_field(&i.item_id),
                    csv_field(&c.id),
                    c.mean_delta,
                    c.mean_abs_delta,
                    c.max_abs_delta,
                    i.noise_floor,
                    i.flag_threshold,
                    c.flagged
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, deltas: &[(f64, f64, bool)], floor: f64) -> DatasetRecord {
        DatasetRecord {
            id: id.into(),
            transcript_sha256: "00".into(),
            flagged: deltas.iter().any(|d| d.2),
            items: vec![ItemLine {
                item_id: "item".into(),
                neutral_expected: 4.0,
                noise_floor: floor,
                flag_threshold: 0.5,
                categories: deltas
                    .iter()
                    .enumerate()
                    .map(|(k, &(signed, abs, flagged))| CategoryLine {
                        id: format!("c{k}"),
                        name: format!("Category {k}"),
                        mean_delta: signed,
                        mean_abs_delta: abs,
                        max_abs_delta: abs * 2.0,
                        flagged,
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn summary_means_shares_and_worst() {
        let records = vec![
            record("a", &[(0.2, 0.2, false), (-1.0, 1.0, true)], 0.1),
            record("b", &[(0.0, 0.4, false), (-0.5, 0.6, true)], 0.2),
            record("c", &[(0.1, 0.3, false), (0.0, 0.2, false)], 0.1),
        ];
        let s = summarise(&records, &BootstrapOptions::default(), 2);
        assert_eq!((s.transcripts, s.flagged_transcripts), (3, 2));
        assert!((s.flagged_share.point.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.cells.len(), 2);
        let c1 = &s.cells[1];
        assert!((c1.mean_delta.point.unwrap() + 0.5).abs() < 1e-12);
        assert!((c1.mean_abs_delta.point.unwrap() - 0.6).abs() < 1e-12);
        assert!((c1.excess_over_floor.point.unwrap() - (0.6 - 0.4 / 3.0)).abs() < 1e-12);
        let [lo, hi] = c1.mean_abs_delta.ci95.unwrap();
        assert!(lo <= 0.6 && 0.6 <= hi && lo >= 0.2 && hi <= 1.0);
        assert_eq!(s.worst.len(), 2);
        assert_eq!(
            (s.worst[0].id.as_str(), s.worst[0].category_id.as_str()),
            ("a", "c1")
        );
    }

    #[test]
    fn resume_drops_only_a_cut_last_line() {
        let a = record("a", &[(0.1, 0.1, false)], 0.1)
            .to_json_line()
            .unwrap();
        let b = record("b", &[(0.1, 0.1, false)], 0.1)
            .to_json_line()
            .unwrap();
        let whole = format!("{a}\n{b}\n");
        assert_eq!(read_records(&whole).unwrap().len(), 2);
        let cut = format!("{a}\n{}", &b[..b.len() / 2]);
        assert_eq!(read_records(&cut).unwrap().len(), 1);
        assert_eq!(complete_lines(&cut), format!("{a}\n"));
        let broken = format!("{}\n{b}\n", &a[..a.len() / 2]);
        assert!(read_records(&broken).is_err());
    }

    #[test]
    fn csv_quotes_fields_that_need_it() {
        let mut r = record("x,\"y\"", &[(0.5, 0.5, true)], 0.1);
        r.items[0].item_id = "item".into();
        let csv = to_csv(&[r]);
        let row = csv.lines().nth(1).unwrap();
        assert!(row.starts_with("\"x,\"\"y\"\"\",item,c0,0.500000"), "{row}");
        assert!(row.ends_with(",true"));
    }

    #[test]
    fn inputs_from_jsonl_and_folders() {
        let dir = std::env::temp_dir().join(format!("dg-dataset-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("folder")).unwrap();
        std::fs::write(dir.join("folder/b.txt"), "TEACHER: hi").unwrap();
        std::fs::write(dir.join("folder/a.txt"), "STUDENT: yes").unwrap();
        std::fs::write(dir.join("folder/notes.md"), "ignored").unwrap();
        let read = |p: &Path| DatasetInputs::open(p)?.collect::<Result<Vec<_>>>();
        let got = read(&dir.join("folder")).unwrap();
        let ids: Vec<&str> = got.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let jsonl = dir.join("set.jsonl");
        std::fs::write(
            &jsonl,
            "{\"id\":\"t1\",\"transcript\":\"TEACHER: a\"}\n\n{\"id\":\"t2\",\"transcript\":\"TEACHER: b\"}\n",
        )
        .unwrap();
        assert_eq!(read(&jsonl).unwrap().len(), 2);
        std::fs::write(
            &jsonl,
            "{\"id\":\"t1\",\"transcript\":\"a\"}\n{\"id\":\"t1\",\"transcript\":\"b\"}\n",
        )
        .unwrap();
        assert!(read(&jsonl).unwrap_err().to_string().contains("twice"));
        std::fs::write(&jsonl, "{\"id\":\"t1\"}\n").unwrap();
        assert!(read(&jsonl).unwrap_err().to_string().contains("line 1"));
        std::fs::write(&jsonl, b"{\"id\":\"t1\",\"transcript\":\"\xff\"}\n").unwrap();
        assert!(read(&jsonl).unwrap_err().to_string().contains("UTF-8"));
        std::fs::write(&jsonl, "").unwrap();
        assert!(read(&jsonl).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
