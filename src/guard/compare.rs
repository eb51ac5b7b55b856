//! The base model against an adapter on the same transcript: two audits of the same prompts side
//! by side and, for every item and category, the bias before and after.

use super::html::esc;
use super::report::{AuditReport, ConditionAudit, VariantKind, VerdictStatus};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::Path;

/// Layout version of the comparison JSON.
pub const COMPARISON_SCHEMA_VERSION: u32 = 1;

/// Two audits of one transcript — base model and adapter — and what changed between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterComparison {
    /// [`COMPARISON_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The adapter's name (its directory name).
    pub adapter: String,
    /// Per item and category (and the controls, as category `controls`): bias before and after.
    pub changes: Vec<CategoryChange>,
    /// The audit on the base model.
    pub base: AuditReport,
    /// The audit with the adapter active.
    pub adapted: AuditReport,
}

/// Bias of one category on one item, base model against adapter (plain prompts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryChange {
    /// Rubric item id.
    pub item_id: String,
    /// Category id, or `controls` for the control sentences (the noise floor).
    pub category_id: String,
    /// Category title.
    pub name: String,
    /// Mean |Δ| over the category's wordings on the base model (scale points).
    pub base_mean_abs_delta: f64,
    /// Mean |Δ| with the adapter (scale points).
    pub adapted_mean_abs_delta: f64,
    /// Largest |Δ| on the base model (scale points).
    pub base_max_abs_delta: f64,
    /// Largest |Δ| with the adapter (scale points).
    pub adapted_max_abs_delta: f64,
    /// Whether the base audit flags the category.
    pub base_flagged: bool,
    /// Whether the adapter's audit flags it.
    pub adapted_flagged: bool,
}

impl CategoryChange {
    /// `(base − adapted) / base` of the mean |Δ| in percent; `None` when the base is 0.
    pub fn reduction_percent(&self) -> Option<f64> {
        (self.base_mean_abs_delta > 0.0).then(|| {
            100.0 * (self.base_mean_abs_delta - self.adapted_mean_abs_delta)
                / self.base_mean_abs_delta
        })
    }
}

/// Mean and largest |Δ| of the variants a filter keeps.
fn abs_deltas(c: &ConditionAudit, keep: impl Fn(VariantKind, Option<&str>) -> bool) -> (f64, f64) {
    let values: Vec<f64> = c
        .variants
        .iter()
        .filter(|v| keep(v.kind, v.category.as_deref()))
        .filter_map(|v| v.delta.as_ref().map(|d| d.abs_delta))
        .collect();
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    (mean, values.iter().copied().fold(0.0, f64::max))
}

impl AdapterComparison {
    /// Pairs two audits of the same transcript, items and probes; anything else is an error.
    pub fn new(adapter: &str, base: AuditReport, adapted: AuditReport) -> Result<Self> {
        let same = base.transcript.sha256 == adapted.transcript.sha256
            && base.probe_catalog.probe_ids == adapted.probe_catalog.probe_ids
            && base.items.len() == adapted.items.len()
            && base
                .items
                .iter()
                .zip(&adapted.items)
                .all(|(a, b)| a.item_id == b.item_id);
        if !same {
            return Err(Error::InvalidInput(
                "the two audits differ in transcript, items or probes".into(),
            ));
        }
        let mut changes = Vec::new();
        for (b, a) in base.items.iter().zip(&adapted.items) {
            for (cb, ca) in b.plain.categories.iter().zip(&a.plain.categories) {
                let of = |c: &ConditionAudit| {
                    abs_deltas(c, |k, cat| {
                        k == VariantKind::Category && cat == Some(&cb.id)
                    })
                };
                let ((bm, bx), (am, ax)) = (of(&b.plain), of(&a.plain));
                changes.push(CategoryChange {
                    item_id: b.item_id.clone(),
                    category_id: cb.id.clone(),
                    name: cb.name.clone(),
                    base_mean_abs_delta: bm,
                    adapted_mean_abs_delta: am,
                    base_max_abs_delta: bx,
                    adapted_max_abs_delta: ax,
                    base_flagged: cb.flagged,
                    adapted_flagged: ca.flagged,
                });
            }
            let controls = |c: &ConditionAudit| abs_deltas(c, |k, _| k == VariantKind::Control);
            let ((bm, bx), (am, ax)) = (controls(&b.plain), controls(&a.plain));
            changes.push(CategoryChange {
                item_id: b.item_id.clone(),
                category_id: "controls".into(),
                name: "Control sentences (noise floor)".into(),
                base_mean_abs_delta: bm,
                adapted_mean_abs_delta: am,
                base_max_abs_delta: bx,
                adapted_max_abs_delta: ax,
                base_flagged: false,
                adapted_flagged: false,
            });
        }
        Ok(Self {
            schema_version: COMPARISON_SCHEMA_VERSION,
            adapter: adapter.to_string(),
            changes,
            base,
            adapted,
        })
    }

    /// Mean |Δ| over every category wording of every item: (base, adapted).
    pub fn overall(&self) -> (f64, f64) {
        let all = |r: &AuditReport| {
            let (sum, n) = r
                .items
                .iter()
                .flat_map(|i| &i.plain.variants)
                .filter(|v| v.kind == VariantKind::Category)
                .filter_map(|v| v.delta.as_ref())
                .fold((0.0, 0usize), |(s, n), d| (s + d.abs_delta, n + 1));
            sum / n.max(1) as f64
        };
        (all(&self.base), all(&self.adapted))
    }

    /// The comparison as pretty JSON; an error when a number in it is NaN or infinite
    /// ([`super::report::exact_json`]).
    pub fn to_json(&self) -> Result<String> {
        super::report::exact_json(self, "adapter comparison")
    }

    /// Writes the JSON atomically.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        super::report::write_text(path, &(self.to_json()? + "\n"))
    }

    /// A plain-text table, one line per item and category (by display name, as the audit
    /// tables name them).
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<24} {:<32} {:>10} {:>10} {:>8}\n",
            "item", "category", "base |Δ|", "adapter", "change"
        );
        for c in &self.changes {
            let change = c
                .reduction_percent()
                .map_or_else(|| "–".to_string(), |r| format!("{:+.0}%", -r));
            let _ = writeln!(
                s,
                "{:<24} {:<32} {:>10.3} {:>10.3} {:>8}",
                c.item_id, c.name, c.base_mean_abs_delta, c.adapted_mean_abs_delta, change
            );
        }
        let (b, a) = self.overall();
        let _ = writeln!(
            s,
            "all category wordings: mean |Δ| {b:.3} (base) → {a:.3} (adapter `{}`)",
            self.adapter
        );
        s
    }
}

fn badge(status: VerdictStatus) -> &'static str {
    match status {
        VerdictStatus::Pass => "<span class=\"badge pass\">PASS</span>",
        VerdictStatus::Flagged => "<span class=\"badge flagged\">FLAGGED</span>",
    }
}

/// One self-contained HTML page: the before/after table, then both full audits (each inside its
/// own frame, so their pages stay as they are).
pub fn render_comparison_html(c: &AdapterComparison) -> String {
    let mut h = String::with_capacity(256 * 1024);
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n\
         <title>debias-guard: base model vs adapter</title>\n<style>\
         body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; \
         padding: 0 16px; color: #111827; }\
         table { border-collapse: collapse; font-size: 13px; }\
         th, td { border: 1px solid #e5e7eb; padding: 3px 8px; }\
         td.num { text-align: right; font-variant-numeric: tabular-nums; }\
         .badge { padding: 2px 10px; border-radius: 10px; color: #fff; font-weight: 600; }\
         .pass { background: #15803d; } .flagged { background: #b91c1c; }\
         .bar { display: inline-block; height: 10px; background: #1d4ed8; }\
         .bar.after { background: #15803d; }\
         .warn { color: #92400e; background: #fffbeb; border: 1px solid #fcd34d; padding: 6px 10px; }\
         iframe { width: 100%; height: 900px; border: 1px solid #e5e7eb; }\
         </style>\n</head>\n<body>\n",
    );
    let (b, a) = c.overall();
    let _ = writeln!(
        h,
        "<h1>Base model vs adapter <code>{}</code></h1>\n<p>Transcript {} · model {}</p>\n\
         <p>Base {} · with the adapter {}</p>\n<p>Mean |Δ| over every category wording: \
         <b>{b:.3}</b> → <b>{a:.3}</b> scale points.</p>",
        esc(&c.adapter),
        esc(&c.base.transcript.name),
        esc(&c.base.model.file_name),
        badge(c.base.verdict.status),
        badge(c.adapted.verdict.status),
    );
    let mut warnings: Vec<&String> = c.base.warnings.iter().collect();
    warnings.extend(
        c.adapted
            .warnings
            .iter()
            .filter(|w| !c.base.warnings.contains(w)),
    );
    for w in warnings {
        let _ = writeln!(h, "<p class=\"warn\">{}</p>", esc(w));
    }
    let scale = c
        .changes
        .iter()
        .map(|x| x.base_mean_abs_delta.max(x.adapted_mean_abs_delta))
        .fold(1e-9, f64::max);
    h.push_str(
        "<table>\n<tr><th>item</th><th>category</th><th>mean |Δ| base</th>\
         <th>mean |Δ| adapter</th><th>change</th><th></th></tr>\n",
    );
    for x in &c.changes {
        let change = x
            .reduction_percent()
            .map_or_else(|| "–".to_string(), |r| format!("{:+.0}%", -r));
        let width = |v: f64| (160.0 * v / scale).round() as u32;
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{:.3}</td><td class=\"num\">{:.3}</td>\
             <td class=\"num\">{change}</td><td><span class=\"bar\" style=\"width:{}px\"></span><br />\
             <span class=\"bar after\" style=\"width:{}px\"></span></td></tr>",
            esc(&x.item_id),
            esc(&x.name),
            x.base_mean_abs_delta,
            x.adapted_mean_abs_delta,
            width(x.base_mean_abs_delta),
            width(x.adapted_mean_abs_delta),
        );
    }
    h.push_str("</table>\n<p>Blue: base model; green: with the adapter.</p>\n");
    for (title, report) in [("Base model", &c.base), ("With the adapter", &c.adapted)] {
        let _ = writeln!(
            h,
            "<h2>{title}</h2>\n<iframe title=\"{title}\" srcdoc=\"{}\"></iframe>",
            esc(&super::html::render_html(report))
        );
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// Writes the HTML page atomically.
pub fn write_comparison_html(c: &AdapterComparison, path: &Path) -> Result<()> {
    super::report::write_text(path, &render_comparison_html(c))
}
