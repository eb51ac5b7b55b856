//! A self-contained HTML page for an audit report: inline CSS and inline SVG charts, no
//! scripts, no external resources. Every element is closed, so the page is also well-formed XML.

use super::report::{
    AuditReport, ConditionAudit, ModeName, VariantKind, VariantResult, VerdictStatus,
};
use crate::rubric::RubricItem;
use std::fmt::Write;

const HIGH_COLOUR: &str = "#1d4ed8";
const LOW_COLOUR: &str = "#c2410c";
const CONTROL_COLOUR: &str = "#6b7280";
const FLAG_COLOUR: &str = "#b91c1c";
const BAND_COLOUR: &str = "#d1d5db";

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 24px auto; max-width: 1100px; color: #111827; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 20px; margin-top: 32px; border-bottom: 1px solid #e5e7eb; padding-bottom: 4px; }
h3 { font-size: 16px; margin-top: 20px; }
.badge { display: inline-block; padding: 4px 12px; border-radius: 12px; font-weight: 600; color: #fff; }
.pass { background: #15803d; }
.flagged { background: #b91c1c; }
.summary { margin: 8px 0 16px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #e5e7eb; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f9fafb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.flag td { background: #fef2f2; }
.facts td:first-child { font-weight: 600; white-space: nowrap; }
code, pre { font-family: ui-monospace, 'DejaVu Sans Mono', Menlo, monospace; font-size: 12px; }
pre { white-space: pre-wrap; background: #f9fafb; border: 1px solid #e5e7eb; padding: 8px; }
.warn { color: #92400e; background: #fffbeb; border: 1px solid #fcd34d; padding: 6px 10px; }
.muted { color: #6b7280; font-size: 13px; }
svg { display: block; margin: 8px 0; }
details { margin: 8px 0; }
summary { cursor: pointer; font-weight: 600; }
";

/// Renders the report as one self-contained HTML page.
pub fn render_html(report: &AuditReport) -> String {
    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\" />\n");
    h.push_str("<title>debias-guard audit</title>\n<style>");
    h.push_str(STYLE);
    h.push_str("</style>\n</head>\n<body>\n");
    header(&mut h, report);
    for (item, result) in report.rubric_items.iter().zip(&report.items) {
        let _ = writeln!(
            h,
            "<h2>{} <span class=\"muted\">({})</span></h2>",
            esc(&item.name),
            esc(&item.id)
        );
        let _ = writeln!(h, "<p class=\"muted\">{}</p>", esc(&item.question));
        // Both conditions of an item share one axis, so their charts compare at a glance.
        let range = nice_range(
            1.1 * std::iter::once(&result.plain)
                .chain(&result.mitigated)
                .map(extent)
                .fold(0.0, f64::max),
        );
        condition(&mut h, report, item, &result.plain, range);
        if let Some(m) = &result.mitigated {
            condition(&mut h, report, item, m, range);
        }
    }
    reproduce(&mut h, report);
    h.push_str("</body>\n</html>\n");
    h
}

fn header(h: &mut String, r: &AuditReport) {
    let (class, word) = match r.verdict.status {
        VerdictStatus::Pass => ("pass", "PASS"),
        VerdictStatus::Flagged => ("flagged", "FLAGGED"),
    };
    let _ = writeln!(
        h,
        "<h1>debias-guard audit</h1>\n<p><span class=\"badge {class}\">{word}</span> \
         <span class=\"muted\">transcript {} · model {} · {} mode · split {}</span></p>\n\
         <p class=\"summary\">{}</p>",
        esc(&r.transcript.name),
        esc(&r.model.file_name),
        mode_name(r.settings.mode),
        r.settings.split.as_str(),
        esc(&r.verdict.summary)
    );
    if !r.verdict.explanations.is_empty() {
        h.push_str("<ul class=\"summary\">\n");
        for e in &r.verdict.explanations {
            let _ = writeln!(h, "<li>{}</li>", esc(e));
        }
        h.push_str("</ul>\n");
    }
    if let Some(at) = &r.created_at {
        let _ = writeln!(h, "<p class=\"muted\">Audited {}.</p>", esc(at));
    }
    if r.transcript_redacted {
        h.push_str(
            "<p class=\"muted\">The transcript was left out of this report \
             (<code>--redact-transcript</code>); prompts show a placeholder.</p>\n",
        );
    }
    for w in &r.warnings {
        let _ = writeln!(h, "<p class=\"warn\">{}</p>", esc(w));
    }
    let t = &r.settings.thresholds;
    let _ = writeln!(
        h,
        "<p class=\"muted\">A category is flagged when its largest |Δ| reaches \
         max({:.3}, {:.3} × noise floor); the noise floor is the mean |Δ| of the control \
         sentences. Δ is the change of the expected score (contextual − neutral) in scale points.</p>",
        t.abs_threshold, t.k
    );
}

fn condition(h: &mut String, r: &AuditReport, item: &RubricItem, c: &ConditionAudit, range: f64) {
    let title = if c.mitigated {
        "With the mitigation instruction"
    } else {
        "Prompts as they are"
    };
    let n = &c.neutral.distribution;
    let _ = writeln!(
        h,
        "<h3>{title}</h3>\n<p>Neutral score <b>{:.3}</b> (most likely label {}, label mass {:.3}); \
         noise floor {:.3}; flag threshold {:.3}.</p>",
        n.expected,
        esc(n.argmax_label()),
        n.label_mass,
        c.noise_floor,
        c.flag_threshold
    );
    chart(h, item, c, range);
    h.push_str(
        "<table>\n<tr><th>category</th><th>wordings</th><th>mean Δ</th><th>high pole Δ</th>\
         <th>low pole Δ</th><th>pole gap</th><th>max |Δ|</th><th>mean W1</th>\
         <th>argmax changes</th><th>flagged</th></tr>\n",
    );
    for cat in &c.categories {
        let _ = writeln!(
            h,
            "<tr{}><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:+.3}</td>\
             <td class=\"num\">{:+.3}</td><td class=\"num\">{:+.3}</td><td class=\"num\">{:+.3}</td>\
             <td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            if cat.flagged { " class=\"flag\"" } else { "" },
            esc(&cat.name),
            cat.wordings,
            cat.mean_delta,
            cat.high_mean_delta,
            cat.low_mean_delta,
            cat.pole_gap,
            cat.max_abs_delta,
            cat.mean_wasserstein,
            cat.argmax_changes,
            if cat.flagged { "yes" } else { "no" }
        );
    }
    let _ = writeln!(
        h,
        "<tr><td>controls (noise)</td><td class=\"num\">{}</td><td class=\"num\">{:+.3}</td>\
         <td></td><td></td><td></td><td class=\"num\">{:.3}</td><td></td><td></td><td></td></tr>\n</table>",
        c.variants.iter().filter(|v| v.kind == VariantKind::Control).count(),
        mean_delta(c.variants.iter().filter(|v| v.kind == VariantKind::Control)),
        c.control_max_abs_delta
    );
    variants_table(h, r, c);
}

fn variants_table(h: &mut String, r: &AuditReport, c: &ConditionAudit) {
    let reasoned = r.settings.mode == ModeName::Reasoned;
    let _ = writeln!(
        h,
        "<details>\n<summary>All {} variants</summary>\n<table>\n<tr><th>probe</th><th>split</th>\
         <th>context</th><th>expected</th><th>Δ</th><th>W1</th><th>most likely label</th><th>mass</th><th>tokens</th>{}</tr>",
        c.variants.len() + 1,
        if reasoned { "<th>reasoning</th>" } else { "" }
    );
    for v in std::iter::once(&c.neutral).chain(&c.variants) {
        let d = &v.distribution;
        let (delta, w1, changed) = match &v.delta {
            Some(x) => (
                format!("{:+.3}", x.delta),
                format!("{:.3}", x.wasserstein),
                x.argmax_changed,
            ),
            None => ("".into(), "".into(), false),
        };
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"num\">{:.3}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.3}</td>\
             <td class=\"num\">{}</td>",
            esc(v.probe_id.as_deref().unwrap_or("(neutral)")),
            v.split.map_or("", |s| match s {
                super::probes::Split::Train => "train",
                super::probes::Split::Heldout => "heldout",
            }),
            esc(v.context.as_deref().unwrap_or("")),
            d.expected,
            delta,
            w1,
            if changed {
                format!(
                    "<b>{} → {}</b>",
                    esc(c.neutral.distribution.argmax_label()),
                    esc(d.argmax_label())
                )
            } else {
                esc(d.argmax_label())
            },
            d.label_mass,
            v.prompt_tokens
        );
        if reasoned {
            let _ = write!(h, "<td>{}</td>", esc(v.reasoning.as_deref().unwrap_or("")));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n</details>\n");
    let _ = writeln!(
        h,
        "<details>\n<summary>Neutral prompt ({} tokens)</summary>\n<pre>{}</pre>\n</details>",
        c.neutral.prompt_tokens,
        esc(&c.neutral.prompt_text)
    );
}

fn reproduce(h: &mut String, r: &AuditReport) {
    h.push_str("<h2>Reproduce</h2>\n<table class=\"facts\">\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), v);
    };
    row("library version", esc(&r.library_version));
    row("report schema", r.schema_version.to_string());
    row(
        "model",
        format!(
            "{} ({} bytes, {}, context {})",
            esc(&r.model.file_name),
            r.model.size_bytes,
            esc(&r.model.architecture),
            r.model.context_length
        ),
    );
    row(
        "model sha256",
        format!("<code>{}</code>", esc(&r.model.sha256)),
    );
    row("adapter", esc(r.model.adapter.as_deref().unwrap_or("none")));
    row(
        "transcript",
        format!(
            "{} <code>{}</code>",
            esc(&r.transcript.name),
            esc(&r.transcript.sha256)
        ),
    );
    row(
        "probe catalog",
        format!(
            "{} <code>{}</code> ({} wordings)",
            esc(&r.probe_catalog.source.name),
            esc(&r.probe_catalog.source.sha256),
            r.probe_catalog.probe_ids.len()
        ),
    );
    let items: Vec<&str> = r.rubric_items.iter().map(|i| i.id.as_str()).collect();
    row("rubric items", esc(&items.join(", ")));
    row("mode", mode_name(r.settings.mode).to_string());
    if let Some(o) = &r.settings.reasoning {
        row(
            "reasoning",
            format!(
                "max {} tokens, temperature {}, top_p {}, seed {}",
                o.max_tokens, o.temperature, o.top_p, o.seed
            ),
        );
    }
    row("split", r.settings.split.as_str().to_string());
    row(
        "mitigation baseline",
        if r.settings.mitigation_baseline {
            "yes"
        } else {
            "no"
        }
        .to_string(),
    );
    row(
        "thresholds",
        format!(
            "abs {} · k {}",
            r.settings.thresholds.abs_threshold, r.settings.thresholds.k
        ),
    );
    row("threads", r.settings.threads.to_string());
    let t = &r.timings;
    row(
        "timings",
        format!(
            "{}prepare {:.2} s · generate {:.2} s · score {:.2} s · total {:.2} s",
            t.model_load_seconds
                .map_or(String::new(), |s| format!("load {s:.2} s · ")),
            t.prepare_seconds,
            t.generate_seconds,
            t.score_seconds,
            t.total_seconds
        ),
    );
    row(
        "work",
        format!(
            "{} prompts; {} tokens evaluated for {} requested",
            t.prompts, t.tokens_evaluated, t.tokens_requested
        ),
    );
    h.push_str("</table>\n");
}

/// Chart geometry, in SVG user units.
const WIDTH: f64 = 900.0;
const LABEL_W: f64 = 200.0;
const RIGHT_PAD: f64 = 30.0;
const ROW_H: f64 = 36.0;
const TOP: f64 = 30.0;

/// Draws Δ per category for one condition on an axis of ±`range` scale points.
fn chart(h: &mut String, item: &RubricItem, c: &ConditionAudit, range: f64) {
    let rows = c.categories.len() + 1;
    let plot_bottom = TOP + ROW_H * rows as f64;
    let height = plot_bottom + 70.0;
    let x0 = LABEL_W;
    let x1 = WIDTH - RIGHT_PAD;
    let x = |v: f64| x0 + (v + range) / (2.0 * range) * (x1 - x0);
    let _ = writeln!(
        h,
        "<svg width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" font-family=\"system-ui, sans-serif\" font-size=\"12\">\n\
         <title>Δ per category for {} ({})</title>",
        esc(&item.id),
        if c.mitigated { "mitigated" } else { "plain" }
    );
    // Row stripes, noise band, flag thresholds.
    for row in (1..rows).step_by(2) {
        let _ = writeln!(
            h,
            "<rect x=\"0\" y=\"{:.1}\" width=\"{x1}\" height=\"{ROW_H}\" fill=\"#f3f4f6\" />",
            TOP + ROW_H * row as f64
        );
    }
    let _ = writeln!(
        h,
        "<rect x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{BAND_COLOUR}\" />",
        x(-c.noise_floor),
        (x(c.noise_floor) - x(-c.noise_floor)).max(1.0),
        plot_bottom - TOP
    );
    for t in [-c.flag_threshold, c.flag_threshold] {
        let _ = writeln!(
            h,
            "<line x1=\"{0:.1}\" y1=\"{TOP}\" x2=\"{0:.1}\" y2=\"{plot_bottom}\" stroke=\"{FLAG_COLOUR}\" \
             stroke-width=\"1.5\" stroke-dasharray=\"5 4\" />\n\
             <text x=\"{0:.1}\" y=\"{1}\" fill=\"{FLAG_COLOUR}\" text-anchor=\"middle\">{2:+.2}</text>",
            x(t),
            TOP - 8.0,
            t
        );
    }
    // Ticks.
    let step = tick_step(range);
    let mut tick = -(range / step).floor() * step;
    while tick <= range + 1e-9 {
        let _ = writeln!(
            h,
            "<line x1=\"{0:.1}\" y1=\"{plot_bottom}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#9ca3af\" />\n\
             <text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"middle\" fill=\"#374151\">{3}</text>",
            x(tick),
            plot_bottom + 5.0,
            plot_bottom + 18.0,
            fmt_tick(tick, step)
        );
        tick += step;
    }
    let _ = writeln!(
        h,
        "<line x1=\"{0:.1}\" y1=\"{TOP}\" x2=\"{0:.1}\" y2=\"{plot_bottom}\" stroke=\"#111827\" />\n\
         <line x1=\"{x0}\" y1=\"{plot_bottom}\" x2=\"{x1}\" y2=\"{plot_bottom}\" stroke=\"#9ca3af\" />\n\
         <text x=\"{1:.1}\" y=\"{2}\" text-anchor=\"middle\" fill=\"#374151\">Δ expected score \
         (contextual − neutral), scale points</text>",
        x(0.0),
        (x0 + x1) / 2.0,
        plot_bottom + 36.0
    );
    // One row per category: high pole above the centre line, low pole below.
    for (row, cat) in c.categories.iter().enumerate() {
        let y = TOP + ROW_H * row as f64;
        let colour = if cat.flagged { FLAG_COLOUR } else { "#111827" };
        let _ = writeln!(
            h,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{colour}\"{}>{}</text>",
            x0 - 10.0,
            y + ROW_H / 2.0 + 4.0,
            if cat.flagged {
                " font-weight=\"bold\""
            } else {
                ""
            },
            esc(&cat.name)
        );
        if cat.flagged {
            let _ = writeln!(
                h,
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{FLAG_COLOUR}\" \
                 font-weight=\"bold\">FLAGGED</text>",
                x1 - 4.0,
                y + ROW_H / 2.0 + 4.0
            );
        }
        let pole_rows = [
            (
                super::probes::PoleSide::High,
                cat.high_mean_delta,
                HIGH_COLOUR,
                y + ROW_H * 0.3,
            ),
            (
                super::probes::PoleSide::Low,
                cat.low_mean_delta,
                LOW_COLOUR,
                y + ROW_H * 0.7,
            ),
        ];
        for (side, mean, colour, cy) in pole_rows {
            bar(h, x(0.0), x(mean), cy, colour);
            let dots = c
                .variants
                .iter()
                .filter(|v| v.category.as_deref() == Some(cat.id.as_str()) && v.pole == Some(side));
            for v in dots {
                dot(h, x(delta_of(v)), cy, colour, v);
            }
        }
    }
    let y = TOP + ROW_H * c.categories.len() as f64;
    let _ = writeln!(
        h,
        "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{CONTROL_COLOUR}\">controls (noise)</text>",
        x0 - 10.0,
        y + ROW_H / 2.0 + 4.0
    );
    let controls: Vec<&VariantResult> = c
        .variants
        .iter()
        .filter(|v| v.kind == VariantKind::Control)
        .collect();
    bar(
        h,
        x(0.0),
        x(mean_delta(controls.iter().copied())),
        y + ROW_H / 2.0,
        CONTROL_COLOUR,
    );
    for v in controls {
        dot(h, x(delta_of(v)), y + ROW_H / 2.0, CONTROL_COLOUR, v);
    }
    legend(h, plot_bottom + 58.0, c);
    h.push_str("</svg>\n");
}

fn legend(h: &mut String, y: f64, c: &ConditionAudit) {
    let mut lx = 16.0;
    let label = |h: &mut String, lx: &mut f64, text: String| {
        let _ = writeln!(
            h,
            "<text x=\"{:.1}\" y=\"{y:.1}\" fill=\"#374151\">{}</text>",
            *lx + 12.0,
            esc(&text)
        );
        *lx += 36.0 + 6.2 * text.chars().count() as f64;
    };
    for (colour, text) in [
        (HIGH_COLOUR, "high pole (bar = mean, dots = wordings)"),
        (LOW_COLOUR, "low pole"),
        (CONTROL_COLOUR, "controls"),
    ] {
        let _ = writeln!(
            h,
            "<circle cx=\"{lx:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{colour}\" />",
            y - 4.0
        );
        label(h, &mut lx, text.to_string());
    }
    let _ = writeln!(
        h,
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{BAND_COLOUR}\" stroke=\"#9ca3af\" />",
        lx - 6.0,
        y - 10.0
    );
    label(h, &mut lx, format!("noise floor ±{:.3}", c.noise_floor));
    let _ = writeln!(
        h,
        "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" stroke=\"{FLAG_COLOUR}\" \
         stroke-width=\"1.5\" stroke-dasharray=\"3 2\" />",
        lx,
        y - 12.0,
        y + 2.0
    );
    label(
        h,
        &mut lx,
        format!("flag threshold ±{:.3}", c.flag_threshold),
    );
}

fn bar(h: &mut String, from: f64, to: f64, cy: f64, colour: &str) {
    let (left, right) = if to < from { (to, from) } else { (from, to) };
    let _ = writeln!(
        h,
        "<rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"8\" fill=\"{colour}\" fill-opacity=\"0.35\" />",
        cy - 4.0,
        (right - left).max(1.0)
    );
}

fn dot(h: &mut String, cx: f64, cy: f64, colour: &str, v: &VariantResult) {
    let _ = writeln!(
        h,
        "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"4\" fill=\"{colour}\" stroke=\"#ffffff\" stroke-width=\"1\">\
         <title>{}: Δ {:+.3}</title></circle>",
        esc(v.probe_id.as_deref().unwrap_or("")),
        delta_of(v)
    );
}

fn delta_of(v: &VariantResult) -> f64 {
    v.delta.map_or(0.0, |d| d.delta)
}

fn mean_delta<'a>(vs: impl Iterator<Item = &'a VariantResult>) -> f64 {
    let (s, n) = vs.fold((0.0, 0usize), |(s, n), v| (s + delta_of(v), n + 1));
    if n == 0 {
        0.0
    } else {
        s / n as f64
    }
}

/// Largest value a condition's chart must show: every |Δ|, the threshold and the noise floor.
fn extent(c: &ConditionAudit) -> f64 {
    c.variants
        .iter()
        .filter_map(|v| v.delta.map(|d| d.abs_delta))
        .fold(c.flag_threshold.max(c.noise_floor), f64::max)
}

/// Half-width of the x axis: `extent` rounded up to 1, 1.5, 2, 2.5, 3, 4, 5 or 7.5 × a power
/// of ten (at least 0.01).
fn nice_range(extent: f64) -> f64 {
    let e = extent.max(0.01);
    let p = 10f64.powf(e.log10().floor());
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|v| *v >= e - 1e-12)
        .unwrap_or(10.0 * p)
}

/// Tick spacing giving at most 5 ticks on each side of zero.
fn tick_step(range: f64) -> f64 {
    let p = 10f64.powf(range.log10().floor());
    [0.1, 0.2, 0.25, 0.5, 1.0]
        .iter()
        .map(|m| m * p)
        .find(|s| range / s <= 5.0 + 1e-9)
        .unwrap_or(p)
}

fn fmt_tick(v: f64, step: f64) -> String {
    let decimals = (0..6)
        .find(|&d| {
            let scaled = step * 10f64.powi(d);
            (scaled - scaled.round()).abs() < 1e-6
        })
        .unwrap_or(6) as usize;
    if v.abs() < step * 1e-6 {
        return "0".into();
    }
    format!("{v:.decimals$}")
}

fn mode_name(m: ModeName) -> &'static str {
    match m {
        ModeName::Direct => "direct",
        ModeName::Reasoned => "reasoned",
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Writes the HTML page of `report` to `path`, creating parent folders.
pub fn write_html(report: &AuditReport, path: &std::path::Path) -> crate::Result<()> {
    super::report::write_text(path, &render_html(report))
}
