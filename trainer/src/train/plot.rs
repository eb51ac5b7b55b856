//! Training curves (loss parts, reward margin/accuracy, learning rate vs step) as SVG and PNG,
//! both with title, axis labels and a legend beside the plot (see [`crate::chart`]); the step
//! axis has whole-number ticks.

use crate::chart::{self, Entry, Mark};
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
    /// Title drawn above the plot.
    pub title: &'static str,
    /// Y axis description.
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

/// The step range (whole steps, at least one wide) and the padded value range.
fn bounds(chart: &Chart) -> (std::ops::Range<i64>, std::ops::Range<f64>) {
    let pts = chart.series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return (0..1, 0.0..1.0);
    }
    let pad = |lo: f64, hi: f64| {
        let d = if hi > lo {
            (hi - lo) * 0.05
        } else {
            lo.abs().max(1e-3) * 0.1
        };
        (lo - d)..(hi + d)
    };
    let (lo, hi) = (x0.floor() as i64, x1.ceil() as i64);
    let xr = if hi > lo { lo..hi } else { (lo - 1)..(hi + 1) };
    (xr, pad(y0, y1))
}

fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    chart: &Chart,
) -> std::result::Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let legend: Vec<Entry> = chart
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| Entry {
            name: s.name.to_string(),
            colour: PALETTE[i % PALETTE.len()],
            mark: Mark::Line,
        })
        .collect();
    let plot = chart::frame(&area, chart.title, &legend)?;
    let (xr, yr) = bounds(chart);
    let mut ctx = ChartBuilder::on(&plot)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(xr.clone(), yr)
        .map_err(e)?;
    let steps = (xr.end - xr.start).max(1) as usize;
    ctx.configure_mesh()
        .x_labels(steps.min(10) + 1)
        .x_label_formatter(&|x: &i64| x.to_string())
        .x_desc("optimiser step")
        .y_desc(chart.y_desc)
        .label_style((chart::FAMILY, 13))
        .axis_desc_style((chart::FAMILY, 15))
        .draw()
        .map_err(e)?;
    for (i, s) in chart.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| (x.round() as i64, y));
        ctx.draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(e)?;
    }
    area.present().map_err(e)
}

/// Writes `chart` as `{dir}/{name}.svg` and `{dir}/{name}.png`; returns both paths.
pub fn write_chart(dir: &Path, chart: &Chart) -> Result<[PathBuf; 2]> {
    let svg = dir.join(format!("{}.svg", chart.name));
    let png = dir.join(format!("{}.png", chart.name));
    let size = (900 + chart::LEGEND_WIDTH, 520);
    draw(SVGBackend::new(&svg, size).into_drawing_area(), chart).map_err(|message| {
        Error::Plot {
            path: svg.clone(),
            message,
        }
    })?;
    draw(BitMapBackend::new(&png, size).into_drawing_area(), chart).map_err(|message| {
        Error::Plot {
            path: png.clone(),
            message,
        }
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
        let texts = svg_texts(&svg);
        for expected in ["Loss", "optimiser step", "dpo"] {
            assert!(
                texts.contains(&expected),
                "no `{expected}` text in {texts:?}"
            );
        }
        assert_eq!(&std::fs::read(dir.join("lr.png")).unwrap()[1..4], b"PNG");
        // A single point and an empty run still draw.
        write_training_plots(&dir, &metrics[..1]).unwrap();
        write_training_plots(&dir, &[]).unwrap();
    }

    /// The contents of every `<text>` element of an SVG file, trimmed (plotters writes each
    /// on its own line).
    fn svg_texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                t.split_once('>')
                    .and_then(|(_, rest)| rest.split_once("</text>"))
            })
            .map(|(inner, _)| inner.trim())
            .collect()
    }

    fn small_chart(with_text: bool) -> Chart {
        let points = (1..=5)
            .map(|k| (k as f64, 10.3 + 0.08 * k as f64))
            .collect();
        Chart {
            name: "small",
            title: if with_text { "A small chart" } else { "" },
            y_desc: if with_text { "value" } else { "" },
            series: vec![Series {
                name: if with_text { "the curve" } else { "" },
                points,
            }],
        }
    }

    /// Renders to an RGB buffer (what the PNG file holds).
    fn pixels(chart: &Chart) -> (Vec<u8>, u32) {
        let (w, h) = (900 + chart::LEGEND_WIDTH, 520);
        let mut buf = vec![0u8; (w * h * 3) as usize];
        draw(
            BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area(),
            chart,
        )
        .unwrap();
        (buf, w)
    }

    /// Pixels that are not white inside `x0..x1 × y0..y1`.
    fn inked(buf: &[u8], w: u32, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> usize {
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| ((y * w + x) * 3) as usize))
            .filter(|&i| buf[i..i + 3] != [255, 255, 255])
            .count()
    }

    #[test]
    fn png_carries_the_title_and_a_legend_beside_the_plot() {
        let (with, w) = pixels(&small_chart(true));
        let (without, _) = pixels(&small_chart(false));
        let title = ((0, 900), (0, 36));
        let legend_text = ((900 + 38, w), (36, 120));
        assert!(inked(&with, w, title.0, title.1) > 50, "no title drawn");
        assert_eq!(inked(&without, w, title.0, title.1), 0);
        assert!(
            inked(&with, w, legend_text.0, legend_text.1) > 50,
            "no legend text"
        );
        assert_eq!(inked(&without, w, legend_text.0, legend_text.1), 0);
        // Axis labels and descriptions are drawn too.
        let plot = ((0, 900), (36, 520));
        assert!(inked(&with, w, plot.0, plot.1) > inked(&without, w, plot.0, plot.1));
    }

    #[test]
    fn svg_has_text_and_whole_number_step_ticks() {
        let dir = std::env::temp_dir().join(format!("dg-plot-ticks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let [svg, _] = write_chart(&dir, &small_chart(true)).unwrap();
        let svg = std::fs::read_to_string(svg).unwrap();
        let texts = svg_texts(&svg);
        for want in ["A small chart", "the curve", "optimiser step", "value"] {
            assert!(texts.contains(&want), "{want} missing in {texts:?}");
        }
        for step in ["1", "2", "3", "4", "5"] {
            assert!(
                texts.contains(&step),
                "step tick {step} missing in {texts:?}"
            );
        }
        assert!(
            !texts.iter().any(|t| t
                .strip_suffix(".0")
                .is_some_and(|n| n.parse::<i64>().is_ok())),
            "a tick written as N.0: {texts:?}"
        );
    }
}
