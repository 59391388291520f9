//! Plots of the best-so-far bands with `plotters`: one median line and a shaded interquartile
//! band a strategy, against trials and against dollars, as SVG and PNG.
//!
//! The workspace builds plotters without a font engine (no system font libraries, STACK.md), so
//! the bitmap backend cannot draw text: the PNG carries the lines, bands and grid only, in the
//! same colours as the labelled SVG, and `report.md` gives the colour key.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::curves::Band;

/// Pixel size of every plot.
const SIZE: (u32, u32) = (900, 560);

/// Arms and their colours (matplotlib's "tab10" palette, in its order), with the colour's name for
/// the report's key. Arms not listed are black.
const PALETTE: &[(&str, (u8, u8, u8), &str)] = &[
    ("bo", (31, 119, 180), "blue"),
    ("random", (255, 127, 14), "orange"),
    ("grid", (44, 160, 44), "green"),
    ("bo+median", (148, 103, 189), "purple"),
    ("bo+asha", (140, 86, 75), "brown"),
    ("random+median", (227, 119, 194), "pink"),
    ("random+asha", (127, 127, 127), "grey"),
    ("grid+median", (188, 189, 34), "olive"),
    ("grid+asha", (23, 190, 207), "cyan"),
];

fn palette_entry(strategy: &str) -> Option<&'static (&'static str, (u8, u8, u8), &'static str)> {
    PALETTE.iter().find(|(name, _, _)| *name == strategy)
}

/// A strategy's colour.
pub fn colour(strategy: &str) -> RGBColor {
    palette_entry(strategy).map_or(RGBColor(0, 0, 0), |(_, (r, g, b), _)| RGBColor(*r, *g, *b))
}

/// The colour's name for the report's key.
pub fn colour_name(strategy: &str) -> &'static str {
    palette_entry(strategy).map_or("black", |(_, _, name)| name)
}

/// What one plot shows.
pub struct PlotSpec<'a> {
    /// Title (SVG only).
    pub title: &'a str,
    /// X axis description (SVG only).
    pub x_desc: &'a str,
    /// The bands (values are fractions; the plot shows percent).
    pub bands: &'a [Band],
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("failed to draw a plot: {error}")
}

/// Writes `stem.svg` and `stem.png` in `dir`; returns their paths.
///
/// # Errors
/// When there is nothing to plot or a file cannot be written.
pub fn write(dir: &Path, stem: &str, spec: &PlotSpec<'_>) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(
        spec.bands.iter().any(|b| !b.points.is_empty()),
        "nothing to plot for {stem}"
    );
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(&root, spec, true)?;
        root.present()
            .map_err(plot_error)
            .with_context(|| format!("failed to write {}", svg.display()))?;
    }
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw(&root, spec, false)?;
        root.present()
            .map_err(plot_error)
            .with_context(|| format!("failed to write {}", png.display()))?;
    }
    Ok(vec![svg, png])
}

/// The axis ranges: x from the first to the last point, y around the bands, in percent.
fn ranges(bands: &[Band]) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let points = || bands.iter().flat_map(|b| b.points.iter());
    let x_low = points().map(|p| p.x).fold(f64::INFINITY, f64::min).min(0.0);
    let x_high = points().map(|p| p.x).fold(f64::NEG_INFINITY, f64::max);
    let y_low = points()
        .map(|p| p.best.q1 * 100.0)
        .fold(f64::INFINITY, f64::min);
    let y_high = points()
        .map(|p| p.best.q3 * 100.0)
        .fold(f64::NEG_INFINITY, f64::max);
    let y_pad = ((y_high - y_low) * 0.08).max(0.5);
    let x_high = if x_high > x_low { x_high } else { x_low + 1.0 };
    (x_low..x_high, (y_low - y_pad)..(y_high + y_pad))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    spec: &PlotSpec<'_>,
    text: bool,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    let (x_range, y_range) = ranges(spec.bands);
    let mut builder = ChartBuilder::on(root);
    builder.margin(16);
    if text {
        builder
            .caption(spec.title, ("sans-serif", 22))
            .x_label_area_size(44)
            .y_label_area_size(64);
    }
    let mut chart = builder
        .build_cartesian_2d(x_range.clone(), y_range.clone())
        .map_err(plot_error)?;
    if text {
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_desc(spec.x_desc)
            .y_desc("best validation accuracy (%)")
            .draw()
            .map_err(plot_error)?;
    } else {
        // Mesh lines come with tick labels, which need a font: draw a plain grid instead, one
        // horizontal line a whole percent (at most 20) and ten vertical lines, in a frame.
        let grey = RGBColor(225, 225, 225);
        let step = ((y_range.end - y_range.start) / 20.0).ceil().max(1.0);
        let mut y = (y_range.start / step).ceil() * step;
        while y <= y_range.end {
            let line = vec![(x_range.start, y), (x_range.end, y)];
            chart
                .draw_series(std::iter::once(PathElement::new(line, grey)))
                .map_err(plot_error)?;
            y += step;
        }
        for i in 0..=10 {
            let x = x_range.start + (x_range.end - x_range.start) * f64::from(i) / 10.0;
            let line = vec![(x, y_range.start), (x, y_range.end)];
            let style = if i == 0 || i == 10 {
                BLACK.stroke_width(1)
            } else {
                grey.stroke_width(1)
            };
            chart
                .draw_series(std::iter::once(PathElement::new(line, style)))
                .map_err(plot_error)?;
        }
        for y in [y_range.start, y_range.end] {
            let line = vec![(x_range.start, y), (x_range.end, y)];
            chart
                .draw_series(std::iter::once(PathElement::new(line, BLACK)))
                .map_err(plot_error)?;
        }
    }
    for band in spec.bands.iter().filter(|b| !b.points.is_empty()) {
        let colour = colour(&band.strategy);
        let upper = band.points.iter().map(|p| (p.x, p.best.q3 * 100.0));
        let lower = band.points.iter().rev().map(|p| (p.x, p.best.q1 * 100.0));
        let outline: Vec<(f64, f64)> = upper.chain(lower).collect();
        chart
            .draw_series(std::iter::once(Polygon::new(outline, colour.mix(0.18))))
            .map_err(plot_error)?;
        let median = band.points.iter().map(|p| (p.x, p.best.median * 100.0));
        let series = chart
            .draw_series(LineSeries::new(median, colour.stroke_width(3)))
            .map_err(plot_error)?;
        if text {
            series.label(band.strategy.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
            });
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod palette_tests {
    use super::*;

    #[test]
    fn every_arm_of_a_study_has_its_own_colour() {
        let arms = [
            "bo",
            "random",
            "grid",
            "bo+median",
            "bo+asha",
            "random+median",
        ];
        let mut names: Vec<&str> = arms.iter().map(|a| colour_name(a)).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), arms.len(), "{names:?}");
        assert_eq!(colour_name("something-else"), "black");
        assert_eq!(colour("bo"), RGBColor(31, 119, 180));
    }
}
