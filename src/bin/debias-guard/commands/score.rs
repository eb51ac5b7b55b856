//! `score`: rubric items on a transcript, optionally with one context and against the base
//! model, as a table, JSON or CSV.

use crate::args::ScoreArgs;
use crate::output::{csv_line, json, Format, Plan};
use crate::progress::Meter;
use debias_guard::{Error, ScoreDistribution};
use serde::Serialize;
use std::process::ExitCode;
use std::time::Instant;

/// One scored item, as written in JSON.
#[derive(Serialize)]
struct ScoreRow<'a> {
    /// The rubric item.
    item_id: &'a str,
    /// The context added (`null` when none).
    context: Option<&'a str>,
    /// The label distribution.
    distribution: &'a ScoreDistribution,
    /// With `--compare-base`: the base model's distribution.
    base: Option<&'a ScoreDistribution>,
}

/// Scores the selected items and prints or writes them.
pub fn run(args: ScoreArgs) -> debias_guard::Result<ExitCode> {
    let ScoreArgs {
        common,
        items,
        context,
        mitigate,
        compare_base,
        format,
        json: json_path,
    } = args;
    let plan = Plan::new(format, json_path.as_deref())?;
    if compare_base && common.engine.adapter.is_none() {
        return Err(Error::InvalidInput("--compare-base needs --adapter".into()));
    }
    if compare_base && common.engine.merge_adapter {
        return Err(Error::InvalidInput(
            "--compare-base needs the base model: drop --merge-adapter".into(),
        ));
    }
    if let Some(c) = &context {
        debias_guard::prompt::validate_context(c)?;
    }
    let l = common.load()?;
    let selected = crate::select_items(&l.rubric, &items)?;
    let builder = common.prompt_builder()?;
    let prompts = selected
        .iter()
        .map(|item| {
            l.engine
                .rubric_prompt(&builder, &l.transcript, item, context.as_deref(), mitigate)
        })
        .collect::<debias_guard::Result<Vec<_>>>()?;
    let started = Instant::now();
    let quiet = common.engine.quiet;
    let (dists, stats) =
        Meter::new(quiet, "score", "tokens").run(|p| l.engine.score_many_with(&prompts, p))?;
    let base = if compare_base {
        let base = l.engine.with_adapter(None)?;
        let mut meter = Meter::new(quiet, "score (base)", "tokens");
        Some(meter.run(|p| base.score_many_with(&prompts, p))?.0)
    } else {
        None
    };
    let scored = started.elapsed();
    let rows: Vec<ScoreRow> = selected
        .iter()
        .zip(&dists)
        .enumerate()
        .map(|(i, (item, d))| ScoreRow {
            item_id: &item.id,
            context: context.as_deref().map(str::trim),
            distribution: d,
            base: base.as_ref().map(|b| &b[i]),
        })
        .collect();
    plan.table(&table(&rows))?;
    match format {
        Format::Table => {}
        Format::Json => crate::output::stdout(&json(&rows))?,
        Format::Csv => crate::output::stdout(&csv(&rows))?,
    }
    if let Some(path) = &json_path {
        crate::output::write_to(path, &json(&rows))?;
    }
    eprintln!(
        "load {:.2}s, score {:.2}s ({} tokens evaluated for {} requested, {} threads)",
        l.load_seconds,
        scored.as_secs_f64(),
        stats.tokens_evaluated,
        stats.tokens_requested,
        l.engine.threads()
    );
    Ok(ExitCode::SUCCESS)
}

fn table(rows: &[ScoreRow]) -> String {
    let mut out = format!(
        "{:<24} {:>8} {:>6} {:>6}  distribution\n",
        "item", "expected", "argmax", "mass"
    );
    for r in rows {
        let d = r.distribution;
        let probs: Vec<String> = d.probs.iter().map(|p| format!("{p:.3}")).collect();
        let versus = r.base.map_or(String::new(), |b| {
            format!(
                "  base {:.3}, adapter moves it {:+.3}",
                b.expected,
                d.expected - b.expected
            )
        });
        out.push_str(&format!(
            "{:<24} {:>8.3} {:>6} {:>6.3}  [{}]{versus}\n",
            r.item_id,
            d.expected,
            d.argmax_label(),
            d.label_mass,
            probs.join(" ")
        ));
    }
    out
}

fn csv(rows: &[ScoreRow]) -> String {
    let mut out = csv_line(&[
        "item_id".into(),
        "expected".into(),
        "argmax".into(),
        "label_mass".into(),
        "probs".into(),
        "base_expected".into(),
    ]);
    for r in rows {
        let d = r.distribution;
        let probs: Vec<String> = d.probs.iter().map(|p| p.to_string()).collect();
        out.push_str(&csv_line(&[
            r.item_id.to_string(),
            d.expected.to_string(),
            d.argmax_label().to_string(),
            d.label_mass.to_string(),
            probs.join(" "),
            r.base.map_or(String::new(), |b| b.expected.to_string()),
        ]));
    }
    out
}
