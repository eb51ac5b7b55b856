//! What the trainer's charts share: the embedded font, so PNG files carry text without system
//! font libraries (Hack, MIT/Bitstream Vera licence, from the `epaint_default_fonts` crate),
//! the title band, and a legend in its own margin right of the plot, where it never covers
//! data. Used by `train::plot` and `eval::plot`.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::sync::OnceLock;

/// Width of the legend margin right of the plot (pixels).
pub const LEGEND_WIDTH: u32 = 230;

/// Height of the title band (pixels).
const TITLE_HEIGHT: u32 = 36;

/// The font family every chart uses (registered under this name).
pub const FAMILY: &str = "sans-serif";

/// Registers the embedded font with plotters, once per process.
pub fn ensure_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(
                FAMILY,
                FontStyle::Normal,
                epaint_default_fonts::HACK_REGULAR,
            )
            .map_err(|_| "the embedded font cannot be read".to_string())
        })
        .clone()
}

/// How a legend entry is drawn: a line (a curve) or a filled box (bars).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A short line in the series colour.
    Line,
    /// A small filled square.
    Box,
}

/// One legend entry.
pub struct Entry {
    /// Text of the entry.
    pub name: String,
    /// Its colour.
    pub colour: RGBColor,
    /// Line or box.
    pub mark: Mark,
}

/// Fills `area` white, draws `title` in a band at the top and `legend` in a margin at the
/// right, and returns the area left for the plot.
pub fn frame<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    legend: &[Entry],
) -> Result<DrawingArea<DB, Shift>, String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    ensure_font()?;
    area.fill(&WHITE).map_err(e)?;
    let (width, _) = area.dim_in_pixel();
    let (band, rest) = area.split_vertically(TITLE_HEIGHT);
    band.draw(&Text::new(
        title.to_string(),
        (12, 8),
        (FAMILY, 20).into_font().color(&BLACK),
    ))
    .map_err(e)?;
    let (plot, margin) = rest.split_horizontally(width.saturating_sub(LEGEND_WIDTH));
    draw_legend(&margin, legend).map_err(e)?;
    Ok(plot)
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[Entry],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let font = (FAMILY, 14).into_font().color(&BLACK);
    for (i, entry) in entries.iter().enumerate() {
        let y = 24 + 22 * i as i32;
        let c = entry.colour;
        match entry.mark {
            Mark::Line => area.draw(&PathElement::new(vec![(8, y), (30, y)], c.stroke_width(3)))?,
            Mark::Box => area.draw(&Rectangle::new([(12, y - 6), (24, y + 6)], c.filled()))?,
        }
        area.draw(&Text::new(entry.name.clone(), (38, y - 8), font.clone()))?;
    }
    Ok(())
}
