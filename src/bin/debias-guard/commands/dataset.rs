//! `audit-dataset`: one audit per transcript of a folder or JSONL file, each appended to the
//! output as one JSON line as soon as it is done (so an interrupted run resumes where it
//! stopped), then the aggregate over the dataset as JSON, a short table and CSV.

use crate::args::DatasetArgs;
use crate::progress::Meter;
use debias_guard::guard::dataset::{
    complete_lines, read_records, summarise, to_csv, DatasetInputs, DatasetRecord, DatasetSummary,
};
use debias_guard::guard::{self, AuditMode, AuditOptions, AuditRequest, Thresholds};
use debias_guard::stats::bootstrap::{BootstrapOptions, Estimate, DEFAULT_SEED};
use debias_guard::{Error, Transcript};
use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

/// Runs the dataset audit and reports it.
pub fn run(args: DatasetArgs) -> debias_guard::Result<ExitCode> {
    let thresholds = Thresholds::new(args.abs_threshold, args.k)?;
    let rubric = crate::rubric(args.rubric.as_deref())?;
    let items = crate::select_items(&rubric, &args.items)?;
    let builder = crate::prompt_builder(args.layout.as_deref())?;
    let (catalog, catalog_name) = crate::probe_catalog(args.probes.as_deref())?;
    // Everything already in the output (complete lines only) counts as done.
    let earlier = match std::fs::read(&args.out) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| {
                Error::InvalidInput(format!("{} is not UTF-8 text", args.out.display()))
            })?;
            let kept = complete_lines(&text).to_string();
            let records = read_records(&kept)?;
            if kept.len() != text.len() {
                std::fs::write(&args.out, &kept).map_err(|e| Error::io(&args.out, e))?;
            }
            records
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(&args.out, e)),
    };
    let mut done: HashMap<String, DatasetRecord> =
        earlier.into_iter().map(|r| (r.id.clone(), r)).collect();
    // Read and check every input before the model loads (a bad line fails fast); only ids and
    // hashes stay in memory, the texts are read again one at a time below.
    let mut pending = 0usize;
    let mut order = Vec::new();
    for input in DatasetInputs::open(&args.input)? {
        let input = input?;
        let transcript = Transcript::new(&input.transcript)
            .map_err(|e| Error::InvalidInput(format!("transcript `{}`: {e}", input.id)))?;
        if !transcript.has_speaker_turns() {
            let message = format!("transcript `{}` has no speaker turns (NAME: …)", input.id);
            if args.strict {
                return Err(Error::InvalidInput(message));
            }
            eprintln!("warning: {message}");
        }
        if let Some(r) = done.get(&input.id) {
            let hash = guard::report::SourceInfo::of_text("", transcript.as_str()).sha256;
            if r.transcript_sha256 != hash {
                return Err(Error::InvalidInput(format!(
                    "transcript `{}` changed since {} was written; use a new output file",
                    input.id,
                    args.out.display()
                )));
            }
        } else {
            pending += 1;
        }
        order.push(input.id);
    }
    if !done.is_empty() {
        eprintln!(
            "resuming: {} of {} transcripts already in {}",
            order.len() - pending,
            order.len(),
            args.out.display()
        );
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.out)
        .map_err(|e| Error::io(&args.out, e))?;
    if pending > 0 {
        let engine = args.engine.open()?;
        let started = Instant::now();
        let mut finished = 0usize;
        for input in DatasetInputs::open(&args.input)? {
            let input = input?;
            if done.contains_key(&input.id) {
                continue;
            }
            let transcript = Transcript::new(&input.transcript)?;
            let request = AuditRequest {
                transcript: &transcript,
                transcript_name: &input.id,
                items: &items,
                catalog: &catalog,
                catalog_name: &catalog_name,
                options: AuditOptions {
                    split: args.split.selection(),
                    thresholds,
                    mitigation_baseline: false,
                    mode: AuditMode::Direct,
                },
            };
            let what = format!("[{}/{pending}] {}", finished + 1, input.id);
            let mut meter = Meter::new(args.engine.quiet, what, "tokens");
            let report = meter.run(|p| guard::audit_with(&engine, &builder, &request, p))?;
            let record = DatasetRecord::from_report(&input.id, &report);
            writeln!(out, "{}", record.to_json_line()?)
                .and_then(|()| out.flush())
                .map_err(|e| Error::io(&args.out, e))?;
            finished += 1;
            let elapsed = started.elapsed().as_secs_f64();
            let eta = elapsed / finished as f64 * (pending - finished) as f64;
            eprintln!(
                "[{finished}/{pending}] {}: {} ({elapsed:.0} s, about {eta:.0} s left)",
                input.id,
                if record.flagged { "FLAGGED" } else { "pass" },
            );
            done.insert(input.id, record);
        }
    }
    let records: Vec<DatasetRecord> = order.iter().filter_map(|id| done.remove(id)).collect();
    let summary = summarise(
        &records,
        &BootstrapOptions {
            resamples: args.bootstrap_resamples,
            seed: DEFAULT_SEED,
        },
        args.worst,
    );
    eprint!("{}", summary_table(&summary));
    if let Some(path) = &args.summary {
        let json = serde_json::to_string_pretty(&summary)
            .map_err(|e| Error::InvalidInput(format!("summary: {e}")))?;
        write(path, &(json + "\n"))?;
    }
    if let Some(path) = &args.csv {
        write(path, &to_csv(&records))?;
    }
    Ok(crate::exit::verdict(
        args.fail_on_flag,
        summary.flagged_transcripts > 0,
    ))
}

fn write(path: &std::path::Path, text: &str) -> debias_guard::Result<()> {
    if crate::input::is_dash(path) {
        crate::output::stdout(text)
    } else {
        crate::output::write_to(path, text)
    }
}

/// The aggregate as a short table for people (stderr).
fn summary_table(s: &DatasetSummary) -> String {
    let est = |e: &Estimate| match (e.point, e.ci95) {
        (Some(p), Some([lo, hi])) => format!("{p:+.3} [{lo:+.3}, {hi:+.3}]"),
        (Some(p), None) => format!("{p:+.3}"),
        _ => "n/a".into(),
    };
    let mut t = format!(
        "{} transcripts, {} flagged ({})\n{:<24} {:<22} {:>26} {:>26} {:>8}\n",
        s.transcripts,
        s.flagged_transcripts,
        s.flagged_share
            .point
            .map_or_else(|| "n/a".into(), |p| format!("{:.0} %", p * 100.0)),
        "item",
        "category",
        "mean Δ [95 %]",
        "mean |Δ| [95 %]",
        "flagged"
    );
    for c in &s.cells {
        t.push_str(&format!(
            "{:<24} {:<22} {:>26} {:>26} {:>7.0}%\n",
            c.item_id,
            c.category_name,
            est(&c.mean_delta),
            est(&c.mean_abs_delta),
            c.flagged_share.point.unwrap_or(0.0) * 100.0
        ));
    }
    if !s.worst.is_empty() {
        t.push_str("worst:\n");
        for w in &s.worst {
            // The display name, as in the table above (the id when no cell names it).
            let name = s
                .cells
                .iter()
                .find(|c| c.category_id == w.category_id)
                .map_or(w.category_id.as_str(), |c| c.category_name.as_str());
            t.push_str(&format!(
                "  {} {} / {name}: max |Δ| {:.3} (threshold {:.3})\n",
                w.id, w.item_id, w.max_abs_delta, w.flag_threshold
            ));
        }
    }
    t
}
