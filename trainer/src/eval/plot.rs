//! The bias chart: mean |Δ expected score| per condition, train wordings beside held-out
//! wordings with their 95 % intervals as whiskers, and the control noise floor as a line.
//! Written as SVG and PNG, each with title, axis labels and a legend beside the plot
//! ([`crate::chart`]).

use super::bootstrap::Estimate;
use super::report::{ConditionResult, EvalReport};
use crate::chart::{self, Entry, Mark};
use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

const TRAIN_COLOUR: RGBColor = RGBColor(66, 114, 196);
const HELDOUT_COLOUR: RGBColor = RGBColor(237, 125, 49);
const CONTROL_COLOUR: RGBColor = RGBColor(90, 90, 90);

/// Picks one bias figure of a condition.
type Pick = fn(&ConditionResult) -> Estimate;

/// Draws the bias chart of `report` to `path` (SVG) and beside it as PNG (same stem).
pub fn write_bias_chart(report: &EvalReport, path: &Path) -> Result<()> {
    let conditions = &report.conditions;
    let plot_err = |path: &Path, message: String| Error::Plot {
        path: path.to_path_buf(),
        message,
    };
    if conditions.is_empty() {
        return Err(plot_err(path, "no conditions to plot".into()));
    }
    let width = (220 + 160 * conditions.len()).min(2_000) as u32 + chart::LEGEND_WIDTH;
    let size = (width, 440);
    draw(SVGBackend::new(path, size).into_drawing_area(), conditions)
        .map_err(|m| plot_err(path, m))?;
    let png = path.with_extension("png");
    draw(
        BitMapBackend::new(&png, size).into_drawing_area(),
        conditions,
    )
    .map_err(|m| plot_err(&png, m))
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    conditions: &[ConditionResult],
) -> std::result::Result<(), String> {
    let plot_err = |e: &dyn std::fmt::Display| e.to_string();
    let legend = [
        ("train wordings", TRAIN_COLOUR, Mark::Box),
        ("held-out wordings", HELDOUT_COLOUR, Mark::Box),
        ("controls (noise floor)", CONTROL_COLOUR, Mark::Line),
    ]
    .map(|(name, colour, mark)| Entry {
        name: name.to_string(),
        colour,
        mark,
    });
    let area = chart::frame(
        &root,
        "Mean |Δ expected score| under spurious contexts",
        &legend,
    )?;
    let n = conditions.len() as f64;
    let top = conditions
        .iter()
        .flat_map(|c| {
            let b = &c.summary.bias;
            [&b.train_wordings, &b.heldout_wordings, &b.controls]
                .map(|e| e.ci95.map_or(e.point, |[_, hi]| Some(hi)))
        })
        .flatten()
        .fold(0.0_f64, f64::max);
    let y_max = if top > 0.0 { top * 1.2 } else { 1.0 };
    let mut chart = ChartBuilder::on(&area)
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5..n - 0.5, 0.0..y_max)
        .map_err(|e| plot_err(&e))?;
    // Condition i is centred on x = i; ticks fall on whole numbers, other ticks stay blank.
    let name_at = |x: &f64| {
        let near = x.round();
        if (x - near).abs() > 1e-6 || near < 0.0 {
            return String::new();
        }
        conditions
            .get(near as usize)
            .map_or(String::new(), |c| c.name.clone())
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(conditions.len() + 1)
        .x_label_formatter(&name_at)
        .x_desc("condition")
        .y_desc("mean |Δ| (scale points)")
        .label_style((chart::FAMILY, 13))
        .axis_desc_style((chart::FAMILY, 15))
        .draw()
        .map_err(|e| plot_err(&e))?;
    let bars = |offset: f64, pick: Pick| {
        conditions
            .iter()
            .enumerate()
            .filter_map(move |(i, c)| {
                let e = pick(c);
                e.point.map(|v| (i as f64 + offset, v, e.ci95))
            })
            .collect::<Vec<_>>()
    };
    for (colour, offset, pick) in [
        (
            TRAIN_COLOUR,
            -0.38,
            (|c| c.summary.bias.train_wordings) as Pick,
        ),
        (
            HELDOUT_COLOUR,
            0.0,
            (|c| c.summary.bias.heldout_wordings) as Pick,
        ),
    ] {
        chart
            .draw_series(
                bars(offset, pick)
                    .into_iter()
                    .map(|(x, v, _)| Rectangle::new([(x, 0.0), (x + 0.36, v)], colour.filled())),
            )
            .map_err(|e| plot_err(&e))?;
        chart
            .draw_series(bars(offset, pick).into_iter().filter_map(|(x, _, ci)| {
                ci.map(|[lo, hi]| {
                    let mid = x + 0.18;
                    PathElement::new(vec![(mid, lo), (mid, hi)], BLACK.stroke_width(1))
                })
            }))
            .map_err(|e| plot_err(&e))?;
    }
    chart
        .draw_series(conditions.iter().enumerate().filter_map(|(i, c)| {
            c.summary.bias.controls.point.map(|v| {
                PathElement::new(
                    vec![(i as f64 - 0.42, v), (i as f64 + 0.42, v)],
                    CONTROL_COLOUR.stroke_width(2),
                )
            })
        }))
        .map_err(|e| plot_err(&e))?;
    root.present().map_err(|e| plot_err(&e))
}
