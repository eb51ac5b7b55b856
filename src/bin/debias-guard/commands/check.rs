//! `check`: one context at run time against the neutral score, judged against the noise floor
//! of the same transcript and item (measured now from control sentences, or read from a saved
//! audit report), or against a flat threshold with `--flat`.

use crate::args::CheckArgs;
use crate::output::{csv_line, json, Format, Plan};
use crate::progress::Meter;
use debias_guard::guard::{
    self, AuditReport, Calibration, CheckOptions, CheckResult, ProbeCatalog,
};
use std::process::ExitCode;
use std::time::Instant;

/// Runs the check and prints or writes its results; status 3 with `--fail-on-flag` and a flag.
pub fn run(args: CheckArgs) -> debias_guard::Result<ExitCode> {
    let CheckArgs {
        common,
        context,
        items,
        abs_threshold,
        k,
        calibration,
        flat,
        probes,
        split,
        mitigate,
        format,
        json: json_path,
        fail_on_flag,
    } = args;
    let plan = Plan::new(format, json_path.as_deref())?;
    debias_guard::prompt::validate_context(&context)?;
    let calibration = if flat {
        Calibration::Flat
    } else if let Some(path) = &calibration {
        let text = debias_guard::textio::read_text_file(path, 256 << 20, "audit report")?;
        Calibration::from_report(&AuditReport::from_json(&text, &crate::file_name(path))?)
    } else {
        let catalog = match &probes {
            Some(p) => ProbeCatalog::load(p)?,
            None => ProbeCatalog::builtin(),
        };
        Calibration::controls_of(&catalog, split.selection())
    };
    let options = CheckOptions {
        abs_threshold,
        k,
        calibration,
        mitigate,
    };
    let l = common.load()?;
    let selected = crate::select_items(&l.rubric, &items)?;
    let builder = common.prompt_builder()?;
    let started = Instant::now();
    let results = Meter::new(common.engine.quiet, "check", "tokens").run(|p| {
        guard::check_items_with(
            &l.engine,
            &builder,
            &l.transcript,
            &selected,
            &context,
            &options,
            p,
        )
    })?;
    plan.table(&table(&results))?;
    match format {
        Format::Table => {}
        Format::Json => crate::output::stdout(&json(&results))?,
        Format::Csv => crate::output::stdout(&csv(&results))?,
    }
    if let Some(path) = &json_path {
        crate::output::write_to(path, &json(&results))?;
    }
    eprintln!(
        "load {:.2}s, check {:.2}s, {} threads",
        l.load_seconds,
        started.elapsed().as_secs_f64(),
        l.engine.threads()
    );
    Ok(crate::exit::verdict(
        fail_on_flag,
        results.iter().any(|r| r.flagged),
    ))
}

fn table(results: &[CheckResult]) -> String {
    let mut out = format!(
        "{:<24} {:>10} {:>8} {:>8} {:>6} {:>7} {:>9}  flagged (|Δ| ≥ threshold)\n",
        "item", "with ctx", "neutral", "Δ", "W1", "floor", "threshold"
    );
    for r in results {
        out.push_str(&format!(
            "{:<24} {:>10.3} {:>8.3} {:>+8.3} {:>6.3} {:>7} {:>9.3}  {}\n",
            r.item_id,
            r.contextual.expected,
            r.neutral.expected,
            r.delta.delta,
            r.delta.wasserstein,
            r.noise_floor.map_or("-".to_string(), |f| format!("{f:.3}")),
            r.flag_threshold,
            if r.flagged { "YES" } else { "no" }
        ));
    }
    out
}

fn csv(results: &[CheckResult]) -> String {
    let mut out = csv_line(
        &[
            "item_id",
            "context",
            "contextual_expected",
            "neutral_expected",
            "delta",
            "wasserstein",
            "calibration",
            "noise_floor",
            "flag_threshold",
            "flagged",
        ]
        .map(String::from),
    );
    for r in results {
        out.push_str(&csv_line(&[
            r.item_id.clone(),
            r.context.clone(),
            r.contextual.expected.to_string(),
            r.neutral.expected.to_string(),
            r.delta.delta.to_string(),
            r.delta.wasserstein.to_string(),
            r.calibration.clone(),
            r.noise_floor.map_or(String::new(), |f| f.to_string()),
            r.flag_threshold.to_string(),
            r.flagged.to_string(),
        ]));
    }
    out
}
