//! `audit`: the probe audit, printed as a table or CSV and written as JSON and HTML; status 3
//! with `--fail-on-flag` and a `flagged` verdict.

use crate::args::{AuditArgs, Mode};
use crate::output::{csv_line, Format, Plan};
use crate::progress::Meter;
use debias_guard::guard::{
    self, compare, html, AuditMode, AuditOptions, AuditReport, AuditRequest, ReasoningOptions,
    Thresholds, VerdictStatus,
};
use debias_guard::Error;
use std::process::ExitCode;

/// Runs the audit (and, with `--compare-base`, the base model's) and reports it.
pub fn run(args: AuditArgs) -> debias_guard::Result<ExitCode> {
    let AuditArgs {
        common,
        items,
        probes,
        split,
        mode,
        mitigate,
        format,
        json,
        html: html_path,
        redact_transcript,
        abs_threshold,
        k,
        max_reasoning_tokens,
        temperature,
        seed,
        fail_on_flag,
        compare_base,
    } = args;
    let plan = Plan::new(format, json.as_deref())?;
    if compare_base && common.engine.adapter.is_none() {
        return Err(Error::InvalidInput("--compare-base needs --adapter".into()));
    }
    if compare_base && common.engine.merge_adapter {
        return Err(Error::InvalidInput(
            "--compare-base needs the base model: drop --merge-adapter".into(),
        ));
    }
    if compare_base && format == Format::Csv {
        return Err(Error::InvalidInput(
            "--format csv is not available with --compare-base".into(),
        ));
    }
    let thresholds = Thresholds::new(abs_threshold, k)?;
    let mode = match mode {
        Mode::Direct => AuditMode::Direct,
        Mode::Reasoned => {
            let r = ReasoningOptions {
                max_tokens: max_reasoning_tokens,
                temperature,
                seed,
                ..Default::default()
            };
            r.validate()?;
            AuditMode::Reasoned(r)
        }
    };
    let (catalog, catalog_name) = crate::probe_catalog(probes.as_deref())?;
    let l = common.load()?;
    let selected = crate::select_items(&l.rubric, &items)?;
    let builder = common.prompt_builder()?;
    let request = AuditRequest {
        transcript: &l.transcript,
        transcript_name: &l.transcript_name,
        items: &selected,
        catalog: &catalog,
        catalog_name: &catalog_name,
        options: AuditOptions {
            split: split.selection(),
            thresholds,
            mitigation_baseline: mitigate,
            mode,
        },
    };
    let finish = |mut report: AuditReport| {
        report.timings.model_load_seconds = Some(l.load_seconds);
        if redact_transcript {
            report.redact_transcript(l.transcript.as_str());
        }
        report
    };
    let quiet = common.engine.quiet;
    let unit = match mode {
        AuditMode::Direct => "tokens",
        AuditMode::Reasoned(_) => "steps",
    };
    let watched = |engine: &debias_guard::Engine, what: &str| {
        Meter::new(quiet, what, unit).run(|p| guard::audit_with(engine, &builder, &request, p))
    };
    let what = if compare_base {
        "audit (adapter)"
    } else {
        "audit"
    };
    let report = finish(watched(&l.engine, what)?);
    let status = report.verdict.status;
    if compare_base {
        let base = finish(watched(&l.engine.with_adapter(None)?, "audit (base)")?);
        let adapter = common
            .engine
            .adapter
            .as_deref()
            .map(crate::file_name)
            .unwrap_or_default();
        let comparison = compare::AdapterComparison::new(&adapter, base, report)?;
        let mut table = String::from("== base model ==\n");
        table.push_str(&audit_table(&comparison.base));
        table.push_str(&format!("\n== with adapter `{adapter}` ==\n"));
        table.push_str(&audit_table(&comparison.adapted));
        table.push_str("\n== base model vs adapter (mean |Δ|, plain prompts) ==\n");
        table.push_str(&comparison.table());
        plan.table(&table)?;
        if format == Format::Json {
            crate::output::stdout(&comparison.to_json()?)?;
        }
        if let Some(path) = &json {
            crate::output::write_to(path, &with_newline(comparison.to_json()?))?;
        }
        if let Some(path) = &html_path {
            crate::output::write_to(path, &compare::render_comparison_html(&comparison))?;
        }
        timings(&comparison.adapted);
    } else {
        plan.table(&audit_table(&report))?;
        match format {
            Format::Table => {}
            Format::Json => crate::output::stdout(&with_newline(report.to_json()?))?,
            Format::Csv => crate::output::stdout(&audit_csv(&report))?,
        }
        if let Some(path) = &json {
            crate::output::write_to(path, &with_newline(report.to_json()?))?;
        }
        if let Some(path) = &html_path {
            crate::output::write_to(path, &html::render_html(&report))?;
        }
        timings(&report);
    }
    Ok(crate::exit::verdict(
        fail_on_flag,
        status == VerdictStatus::Flagged,
    ))
}

fn with_newline(mut s: String) -> String {
    s.push('\n');
    s
}

/// The human table of one audit: per item and condition, the categories and their flags,
/// then the explanations, the warnings and the verdict.
fn audit_table(report: &AuditReport) -> String {
    let mut out = String::new();
    for (item, result) in report.rubric_items.iter().zip(&report.items) {
        for c in std::iter::once(&result.plain).chain(&result.mitigated) {
            out.push_str(&format!(
                "\n{}{}: neutral {:.3} (label {}, mass {:.3}), noise floor {:.3}, flag threshold {:.3}\n",
                item.id,
                if c.mitigated { " [mitigated]" } else { "" },
                c.neutral.distribution.expected,
                c.neutral.distribution.argmax_label(),
                c.neutral.distribution.label_mass,
                c.noise_floor,
                c.flag_threshold
            ));
            out.push_str(&format!(
                "  {:<24} {:>8} {:>8} {:>8} {:>8} {:>7}  flagged\n",
                "category", "mean Δ", "high Δ", "low Δ", "gap", "max|Δ|"
            ));
            for cat in &c.categories {
                out.push_str(&format!(
                    "  {:<24} {:>+8.3} {:>+8.3} {:>+8.3} {:>+8.3} {:>7.3}  {}\n",
                    cat.name,
                    cat.mean_delta,
                    cat.high_mean_delta,
                    cat.low_mean_delta,
                    cat.pole_gap,
                    cat.max_abs_delta,
                    if cat.flagged { "YES" } else { "no" }
                ));
            }
        }
    }
    for e in &report.verdict.explanations {
        out.push_str(&format!("\n{e}\n"));
    }
    for w in &report.warnings {
        out.push_str(&format!("\nwarning: {w}\n"));
    }
    out.push_str(&format!("\nverdict: {}\n", report.verdict.summary));
    out
}

/// One CSV line per item × condition × category.
fn audit_csv(report: &AuditReport) -> String {
    let mut out = csv_line(
        &[
            "item_id",
            "mitigated",
            "category_id",
            "category_name",
            "mean_delta",
            "high_mean_delta",
            "low_mean_delta",
            "pole_gap",
            "max_abs_delta",
            "noise_floor",
            "flag_threshold",
            "flagged",
        ]
        .map(String::from),
    );
    for result in &report.items {
        for c in std::iter::once(&result.plain).chain(&result.mitigated) {
            for cat in &c.categories {
                out.push_str(&csv_line(&[
                    result.item_id.clone(),
                    c.mitigated.to_string(),
                    cat.id.clone(),
                    cat.name.clone(),
                    cat.mean_delta.to_string(),
                    cat.high_mean_delta.to_string(),
                    cat.low_mean_delta.to_string(),
                    cat.pole_gap.to_string(),
                    cat.max_abs_delta.to_string(),
                    c.noise_floor.to_string(),
                    c.flag_threshold.to_string(),
                    cat.flagged.to_string(),
                ]));
            }
        }
    }
    out
}

/// Where the time went, on standard error.
fn timings(report: &AuditReport) {
    let t = &report.timings;
    eprintln!(
        "load {:.2}s, prepare {:.2}s, generate {:.2}s, score {:.2}s ({} prompts, {} tokens \
         evaluated for {} requested, {} threads)",
        t.model_load_seconds.unwrap_or(0.0),
        t.prepare_seconds,
        t.generate_seconds,
        t.score_seconds,
        t.prompts,
        t.tokens_evaluated,
        t.tokens_requested,
        report.settings.threads
    );
}
