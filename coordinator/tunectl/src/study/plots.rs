//! Plots of the best-so-far bands with `plotters`: one median line and a shaded interquartile
//! band a strategy, against trials and against dollars, as SVG and PNG.
//!
//! Text is drawn with plotters' `ab_glyph` rasterizer and DejaVu Sans embedded in the binary
//! (`assets/fonts/`, no system font libraries), so the PNG has the same title, axis labels, ticks
//! and legend as the SVG. Ticks of a trial axis are whole numbers.

use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::curves::Band;

/// DejaVu Sans (`assets/fonts/README.md` gives its source and licence).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The font family every text of a plot uses.
const FAMILY: &str = "sans-serif";

/// Registers [`FONT`] as [`FAMILY`] once per process.
fn register_font() -> anyhow::Result<()> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    anyhow::ensure!(ok, "the embedded plot font could not be read");
    Ok(())
}

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
    /// Title.
    pub title: &'a str,
    /// X axis description.
    pub x_desc: &'a str,
    /// Whether x counts trials (whole-number ticks).
    pub integer_x: bool,
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
    register_font()?;
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(&root, spec)?;
        root.present()
            .map_err(plot_error)
            .with_context(|| format!("failed to write {}", svg.display()))?;
    }
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw(&root, spec)?;
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
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    let (x_range, y_range) = ranges(spec.bands);
    let mut chart = ChartBuilder::on(root)
        .margin(16)
        .caption(spec.title, (FAMILY, 22))
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range.clone(), y_range.clone())
        .map_err(plot_error)?;
    let whole = |x: &f64| {
        if x.fract() == 0.0 {
            format!("{x:.0}")
        } else {
            String::new()
        }
    };
    let plain = |x: &f64| {
        let text = format!("{x:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(RGBColor(235, 235, 235))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .x_desc(spec.x_desc)
        .y_desc("best validation accuracy (%)");
    if spec.integer_x {
        let span = (x_range.end - x_range.start).round().max(1.0) as usize;
        mesh.x_labels(span.min(10) + 1).x_label_formatter(&whole);
    } else {
        mesh.x_label_formatter(&plain);
    }
    mesh.draw().map_err(plot_error)?;
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
        series.label(band.strategy.clone()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
        });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
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

    /// Non-white pixels in rows `rows` of an RGB buffer of width `SIZE.0`.
    fn inked(buffer: &[u8], rows: std::ops::Range<u32>, columns: std::ops::Range<u32>) -> usize {
        let mut count = 0;
        for y in rows {
            for x in columns.clone() {
                let at = ((y * SIZE.0 + x) * 3) as usize;
                if buffer[at..at + 3] != [255, 255, 255] {
                    count += 1;
                }
            }
        }
        count
    }

    #[test]
    fn the_bitmap_has_a_title_tick_labels_and_a_legend() {
        use crate::study::curves::BandPoint;
        use crate::study::tables::Quartiles;
        let point = |x: f64, best: f64| BandPoint {
            x,
            best: Quartiles {
                q1: best - 0.01,
                median: best,
                q3: best + 0.01,
            },
            repeats: 3,
        };
        let bands = vec![Band {
            strategy: "bo".into(),
            points: vec![point(1.0, 0.6), point(2.0, 0.7), point(3.0, 0.75)],
        }];
        let spec = PlotSpec {
            title: "a title",
            x_desc: "trials",
            integer_x: true,
            bands: &bands,
        };
        register_font().expect("the embedded font loads");
        let mut buffer = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buffer, SIZE).into_drawing_area();
            draw(&root, &spec).expect("draws");
            root.present().expect("presents");
        }
        // The title band above the plot, the x tick labels and description below it, and the
        // y label area at the left hold no lines or bands, only text.
        assert!(inked(&buffer, 0..40, 0..SIZE.0) > 100, "no title pixels");
        assert!(
            inked(&buffer, SIZE.1 - 44..SIZE.1 - 16, 100..SIZE.0) > 100,
            "no x labels"
        );
        assert!(inked(&buffer, 60..SIZE.1 - 80, 16..60) > 100, "no y labels");
    }
}
