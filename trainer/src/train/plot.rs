//! Training curves (loss parts, reward margin/accuracy, learning rate vs step) as SVG and PNG.
//!
//! plotters is built without its font features (they need system font libraries), so its
//! built-in font can lay text out but not rasterise it: the SVG files carry titles, axis labels
//! and legends (the viewer renders the text), the PNG files show the same axes and curves
//! without any text.

use crate::error::{Error, Result};
use crate::train::metrics::StepMetrics;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// One curve: its legend name and `(x, y)` points.
pub struct Series {
    /// Legend entry.
    pub name: &'static str,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
}

/// One chart: a title, the axis names and its curves.
pub struct Chart {
    /// File stem and title.
    pub name: &'static str,
    /// Title drawn above the plot (SVG only).
    pub title: &'static str,
    /// Y axis description (SVG only).
    pub y_desc: &'static str,
    /// The curves.
    pub series: Vec<Series>,
}

const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn bounds(chart: &Chart) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let pts = chart.series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return (0.0..1.0, 0.0..1.0);
    }
    let pad = |lo: f64, hi: f64| {
        let d = if hi > lo {
            (hi - lo) * 0.05
        } else {
            lo.abs().max(1e-3) * 0.1
        };
        (lo - d)..(hi + d)
    };
    let xr = if x1 > x0 {
        x0..x1
    } else {
        (x0 - 1.0)..(x1 + 1.0)
    };
    (xr, pad(y0, y1))
}

fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    chart: &Chart,
    text: bool,
) -> std::result::Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    area.fill(&WHITE).map_err(e)?;
    let (xr, yr) = bounds(chart);
    let mut builder = ChartBuilder::on(&area);
    builder.margin(12);
    if text {
        builder
            .caption(chart.title, ("sans-serif", 20))
            .x_label_area_size(36)
            .y_label_area_size(64);
    }
    let mut ctx = builder
        .build_cartesian_2d(xr.clone(), yr.clone())
        .map_err(e)?;
    if text {
        ctx.configure_mesh()
            .x_desc("optimiser step")
            .y_desc(chart.y_desc)
            .draw()
            .map_err(e)?;
    } else {
        // No text can be drawn here: a frame and a 10 x 8 grid stand in for the mesh.
        let grey = RGBColor(225, 225, 225);
        let (x0, x1, y0, y1) = (xr.start, xr.end, yr.start, yr.end);
        let vertical = (0..=10).map(|i| x0 + (x1 - x0) * f64::from(i) / 10.0);
        let horizontal = (0..=8).map(|i| y0 + (y1 - y0) * f64::from(i) / 8.0);
        let lines = vertical
            .map(|x| vec![(x, y0), (x, y1)])
            .chain(horizontal.map(|y| vec![(x0, y), (x1, y)]));
        ctx.draw_series(lines.map(|pts| PathElement::new(pts, grey)))
            .map_err(e)?;
        ctx.draw_series(std::iter::once(Rectangle::new([(x0, y0), (x1, y1)], BLACK)))
            .map_err(e)?;
    }
    for (i, s) in chart.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        let drawn = ctx
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(e)?;
        if text {
            drawn
                .label(s.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
    }
    if text {
        ctx.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
    }
    area.present().map_err(e)
}

/// Writes `chart` as `{dir}/{name}.svg` and `{dir}/{name}.png`; returns both paths.
pub fn write_chart(dir: &Path, chart: &Chart) -> Result<[PathBuf; 2]> {
    let svg = dir.join(format!("{}.svg", chart.name));
    let png = dir.join(format!("{}.png", chart.name));
    let size = (900, 520);
    draw(SVGBackend::new(&svg, size).into_drawing_area(), chart, true).map_err(|message| {
        Error::Plot {
            path: svg.clone(),
            message,
        }
    })?;
    draw(
        BitMapBackend::new(&png, size).into_drawing_area(),
        chart,
        false,
    )
    .map_err(|message| Error::Plot {
        path: png.clone(),
        message,
    })?;
    Ok([svg, png])
}

/// The charts of a training run: loss parts, rewards, learning rate and gradient norm.
pub fn training_charts(metrics: &[StepMetrics]) -> Vec<Chart> {
    let series = |name, f: fn(&StepMetrics) -> f64| Series {
        name,
        points: metrics.iter().map(|m| (m.step as f64, f(m))).collect(),
    };
    vec![
        Chart {
            name: "loss",
            title: "Loss",
            y_desc: "loss",
            series: vec![
                series("total", |m| m.stats.loss),
                series("dpo", |m| m.stats.dpo_loss),
                series("sft", |m| m.stats.sft_loss),
                series("consistency", |m| m.stats.consistency_loss),
            ],
        },
        Chart {
            name: "direct",
            title: "Direct-mode rating (training batches)",
            y_desc: "points / mass",
            series: vec![
                series("mean |shift| by context", |m| m.stats.context_shift),
                series("label mass", |m| m.stats.label_mass),
            ],
        },
        Chart {
            name: "reward",
            title: "Implicit reward",
            y_desc: "reward",
            series: vec![
                series("margin", |m| m.stats.reward_margin),
                series("accuracy", |m| m.stats.reward_accuracy),
                series("chosen", |m| m.stats.chosen_reward),
                series("rejected", |m| m.stats.rejected_reward),
            ],
        },
        Chart {
            name: "lr",
            title: "Learning rate",
            y_desc: "lr",
            series: vec![series("lr", |m| m.lr)],
        },
        Chart {
            name: "grad_norm",
            title: "Gradient norm (before clipping)",
            y_desc: "L2 norm",
            series: vec![series("grad norm", |m| m.grad_norm)],
        },
    ]
}

/// Draws every training chart into `dir`; returns the files written.
pub fn write_training_plots(dir: &Path, metrics: &[StepMetrics]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for chart in training_charts(metrics) {
        out.extend(write_chart(dir, &chart)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::LossStats;

    #[test]
    fn writes_svg_and_png_for_every_chart() {
        let dir = std::env::temp_dir().join(format!("dg-plot-{}", std::process::id()));
        let metrics: Vec<StepMetrics> = (1..=20)
            .map(|k| {
                let s = LossStats {
                    loss: 1.0 / k as f64,
                    dpo_loss: 0.69 / k as f64,
                    sft_loss: 2.0,
                    reward_margin: 0.01 * k as f64,
                    ..Default::default()
                };
                StepMetrics::from_parts(k, k as f64 / 20.0, &[(s, 1)], 1e-4, 0.3, 50.0)
            })
            .collect();
        let files = write_training_plots(&dir, &metrics).unwrap();
        assert_eq!(files.len(), 10);
        for f in &files {
            let bytes = std::fs::read(f).unwrap();
            assert!(bytes.len() > 500, "{}", f.display());
        }
        let svg = std::fs::read_to_string(dir.join("loss.svg")).unwrap();
        assert!(svg.contains("optimiser step") && svg.contains("dpo"));
        assert_eq!(&std::fs::read(dir.join("lr.png")).unwrap()[1..4], b"PNG");
        // A single point and an empty run still draw.
        write_training_plots(&dir, &metrics[..1]).unwrap();
        write_training_plots(&dir, &[]).unwrap();
    }
}
