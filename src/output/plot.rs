//! PNG plots, drawn with plotters from rows only (never from the trainer).
//!
//! Text is rendered with DejaVu Sans shipped in `assets/` (plotters'
//! `ab_glyph` backend), so no system font library is needed. Every plot is
//! drawn to a temporary file and renamed into place.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

const FONT: &str = "sans-serif";
/// Size of every plot, in pixels.
pub const SIZE: (u32, u32) = (1200, 800);

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/DejaVuSans.ttf");
        plotters::style::register_font(FONT, FontStyle::Normal, bytes)
            .map_err(|_| ())
            .expect("the shipped DejaVu Sans font is valid");
    });
}

/// A colour per series, distinguishable and readable on white.
pub fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    C[i % C.len()]
}

/// How a series shows its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// A shaded band between `lo` and `hi`.
    Band,
    /// Vertical error bars at each point, with markers.
    Bars,
}

/// A line with its 95% band: points (x, mean, lo, hi).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64, f64, f64)>,
    pub spread: Spread,
    pub dashed: bool,
}

impl Series {
    pub fn band(name: impl Into<String>, points: Vec<(f64, f64, f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            spread: Spread::Band,
            dashed: false,
        }
    }
}

/// One chart: axes, series, optional horizontal reference lines.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Category names for x = 0, 1, 2, ... (instead of numbers).
    pub x_ticks: Option<Vec<String>>,
    /// Horizontal reference lines (name, y).
    pub hlines: Vec<(String, f64)>,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// Bounds the bands are clipped to (accuracy in [0, 1], say): a t-based
    /// interval over few seeds can reach past what the quantity can take.
    pub clip: Option<(f64, f64)>,
}

impl Panel {
    /// The series with their bands clipped to `clip`.
    fn clipped(&self) -> Vec<Series> {
        let Some((lo, hi)) = self.clip else {
            return self.series.clone();
        };
        self.series
            .iter()
            .map(|s| Series {
                points: s
                    .points
                    .iter()
                    .map(|&(x, m, l, h)| (x, m, l.clamp(lo, hi), h.clamp(lo, hi)))
                    .collect(),
                ..s.clone()
            })
            .collect()
    }
}

fn finite_range(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (lo <= hi).then_some((lo, hi))
}

fn pad((lo, hi): (f64, f64), frac: f64) -> (f64, f64) {
    let span = (hi - lo).abs().max(1e-9);
    (lo - frac * span, hi + frac * span)
}

/// Draws a figure of panels laid out `cols` wide, with an overall title.
pub fn panels(path: &Path, title: &str, panels: &[Panel], cols: usize) -> Result<()> {
    render(path, |root| {
        let root = root.titled(title, (FONT, 30))?;
        let rows = panels.len().div_ceil(cols.max(1));
        let areas = root.split_evenly((rows, cols.max(1)));
        for (panel, area) in panels.iter().zip(areas.iter()) {
            draw_panel(area, panel)?;
        }
        Ok(())
    })
}

/// Renders into a temporary PNG next to `path`, then renames it into place;
/// a failed render (a full disk, say) leaves no temporary file behind.
fn render(
    path: &Path,
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<()> {
    register();
    crate::output::write_atomic_with(path, |tmp| {
        let root = BitMapBackend::new(tmp, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        draw(&root).map_err(|e| anyhow!("drawing {}: {e}", path.display()))?;
        root.present()
            .map_err(|e| anyhow!("writing {}: {e}", path.display()))
    })
}

/// The x and y ranges of a panel: from the data (a padded y range; a
/// category axis for x ticks).
fn axis_ranges(p: &Panel) -> ((f64, f64), (f64, f64)) {
    let xs = p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0));
    let x = match &p.x_ticks {
        Some(t) => (-0.5, t.len() as f64 - 0.5),
        None => finite_range(xs).unwrap_or((0.0, 1.0)),
    };
    let ys = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|q| [q.1, q.2, q.3]))
        .chain(p.hlines.iter().map(|h| h.1))
        .filter(|y| !p.log_y || *y > 0.0);
    let range = finite_range(ys).unwrap_or((0.0, 1.0));
    let y = if p.log_y {
        (range.0 / 1.3, range.1 * 1.3)
    } else {
        pad(range, 0.05)
    };
    (x, y)
}

/// Labels of the x axis: the category names, whole numbers where every x
/// is whole (epochs), or the number.
fn x_formatter(p: &Panel) -> impl Fn(&f64) -> String {
    let ticks = p.x_ticks.clone();
    let integer_x = p
        .series
        .iter()
        .all(|s| s.points.iter().all(|q| q.0.fract() == 0.0));
    move |x: &f64| -> String {
        match &ticks {
            Some(t) => {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < t.len() {
                    t[i as usize].clone()
                } else {
                    String::new()
                }
            }
            None if integer_x => {
                if (x - x.round()).abs() < 1e-9 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            }
            None => format!("{x}"),
        }
    }
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    p: &Panel,
) -> Result<(), Box<dyn std::error::Error>> {
    let p = &Panel {
        series: p.clipped(),
        ..p.clone()
    };
    let ((x0, x1), (y0, y1)) = axis_ranges(p);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&p.title, (FONT, 22))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(75);
    let x_fmt = x_formatter(p);
    let n_ticks = p.x_ticks.as_ref().map_or(10, |t| t.len());
    if p.log_y {
        let mut chart = builder.build_cartesian_2d(x0..x1, (y0.max(1e-12)..y1).log_scale())?;
        draw_contents(&mut chart, p, (x0, x1), n_ticks, &x_fmt)?;
    } else {
        let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
        draw_contents(&mut chart, p, (x0, x1), n_ticks, &x_fmt)?;
    }
    Ok(())
}

/// The mesh, series, reference lines and legend of one panel, on a linear
/// or a logarithmic y axis.
fn draw_contents<'a, 'b: 'a, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>,
    p: &Panel,
    (x0, x1): (f64, f64),
    n_ticks: usize,
    x_fmt: &dyn Fn(&f64) -> String,
) -> Result<(), Box<dyn std::error::Error>>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .x_labels(n_ticks)
        .x_label_formatter(x_fmt)
        .y_label_formatter(&|y: &f64| number(*y))
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .draw()?;
    for (i, s) in p.series.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|q| q.1.is_finite())
            .map(|q| (q.0, q.1))
            .collect();
        let band: Vec<&(f64, f64, f64, f64)> = s
            .points
            .iter()
            .filter(|q| q.2.is_finite() && q.3.is_finite())
            .collect();
        if s.spread == Spread::Band && band.len() > 1 {
            let poly: Vec<(f64, f64)> = band
                .iter()
                .map(|q| (q.0, q.3))
                .chain(band.iter().rev().map(|q| (q.0, q.2)))
                .collect();
            chart.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.18).filled())))?;
        }
        if s.spread == Spread::Bars {
            chart.draw_series(
                band.iter()
                    .map(|q| ErrorBar::new_vertical(q.0, q.2, q.1, q.3, c.stroke_width(2), 12)),
            )?;
            chart.draw_series(pts.iter().map(|&pt| Circle::new(pt, 5, c.filled())))?;
        }
        let style = c.stroke_width(3);
        let drawn = if s.dashed {
            chart.draw_series(DashedLineSeries::new(pts.clone(), 10, 6, style))?
        } else {
            chart.draw_series(LineSeries::new(pts.clone(), style))?
        };
        drawn
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
    }
    for (j, (name, y)) in p.hlines.iter().enumerate() {
        let c = RGBColor(60, 60, 60);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x0, *y), (x1, *y)],
                8,
                6,
                c.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, yy)| {
                PathElement::new(vec![(x, yy), (x + 24, yy)], c.stroke_width(2 + j as u32))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 16))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    Ok(())
}

/// A bar chart with 95% CI error bars: (label, mean, lo, hi) per bar.
pub fn bars(
    path: &Path,
    title: &str,
    y_label: &str,
    bars: &[(String, f64, f64, f64)],
) -> Result<()> {
    render(path, |root| {
        let ys = bars.iter().flat_map(|b| [b.1, b.2, b.3]);
        let (lo, hi) = finite_range(ys).unwrap_or((0.0, 1.0));
        let (y0, y1) = pad((lo, hi), 0.15);
        let n = bars.len();
        // Many bars: number them, and write a key of the numbers below the chart.
        let keyed = n > 6;
        let key_rows = n.div_ceil(2) as u32;
        let (upper, lower) = if keyed {
            root.split_vertically(SIZE.1 - 24 * key_rows - 20)
        } else {
            root.split_vertically(SIZE.1)
        };
        let mut chart = ChartBuilder::on(&upper)
            .caption(title, (FONT, 26))
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, y0..y1)?;
        let names: Vec<String> = bars
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if keyed {
                    (i + 1).to_string()
                } else {
                    b.0.clone()
                }
            })
            .collect();
        if keyed {
            draw_key(&lower, bars.iter().map(|b| b.0.as_str()), key_rows)?;
        }
        let fmt = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&fmt)
            .y_desc(y_label)
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 18))
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
            let x = i as f64;
            Rectangle::new(
                [(x - 0.35, y0), (x + 0.35, b.1)],
                color(i).mix(0.75).filled(),
            )
        }))?;
        chart.draw_series(
            bars.iter()
                .enumerate()
                .filter(|(_, b)| b.2.is_finite() && b.3.is_finite())
                .map(|(i, b)| {
                    ErrorBar::new_vertical(i as f64, b.2, b.1, b.3, BLACK.stroke_width(2), 16)
                }),
        )?;
        chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
            Text::new(
                format!("{:.2}%", 100.0 * b.1),
                (i as f64 - 0.2, b.3.max(b.1) + (y1 - y0) * 0.02),
                (FONT, 16),
            )
        }))?;
        Ok(())
    })
}

/// Under a chart of numbered bars, "N: label" for each, in two columns of
/// `rows` rows.
fn draw_key<'a>(
    area: &DrawingArea<BitMapBackend, Shift>,
    labels: impl Iterator<Item = &'a str>,
    rows: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    for (i, label) in labels.enumerate() {
        let (col, row) = ((i as u32) / rows, (i as u32) % rows);
        area.draw(&Text::new(
            format!("{}: {label}", i + 1),
            (100 + 540 * col as i32, 24 * row as i32),
            (FONT, 17),
        ))?;
    }
    Ok(())
}

/// A heatmap of `values[row][col]` with the value written in each cell;
/// rows are `ys` (vertical axis), columns `xs`.
pub fn heatmap(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    xs: &[f64],
    ys: &[f64],
    values: &[Vec<f64>],
) -> Result<()> {
    render(path, |root| {
        let (lo, hi) = finite_range(values.iter().flatten().copied()).unwrap_or((0.0, 1.0));
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 28))
            .margin(20)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .build_cartesian_2d(
                -0.5f64..xs.len() as f64 - 0.5,
                -0.5f64..ys.len() as f64 - 0.5,
            )?;
        let fx = |v: &f64| tick(xs, *v);
        let fy = |v: &f64| tick(ys, *v);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(xs.len())
            .y_labels(ys.len())
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 18))
            .draw()?;
        for (r, row) in values.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                let t = if v.is_finite() && hi > lo {
                    (v - lo) / (hi - lo)
                } else {
                    0.5
                };
                // White (low) to dark blue (high).
                let fill = RGBColor(
                    (255.0 - 220.0 * t) as u8,
                    (255.0 - 160.0 * t) as u8,
                    (255.0 - 60.0 * t) as u8,
                );
                let (x, y) = (c as f64, r as f64);
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                    fill.filled(),
                )))?;
                let text_color = if t > 0.6 { WHITE } else { BLACK };
                let label = if v.is_finite() {
                    format!("{:.1}", 100.0 * v)
                } else {
                    "n/a".into()
                };
                chart.draw_series(std::iter::once(Text::new(
                    label,
                    (x - 0.25, y + 0.1),
                    (FONT, 15).into_font().color(&text_color),
                )))?;
            }
        }
        Ok(())
    })
}

/// A tick label with no more digits than it needs.
pub fn number(y: f64) -> String {
    let a = y.abs();
    let s = if a == 0.0 {
        "0".to_string()
    } else if a >= 100.0 {
        format!("{y:.0}")
    } else if a >= 1.0 {
        format!("{y:.2}")
    } else if a >= 0.001 {
        format!("{y:.4}")
    } else {
        return format!("{y:.0e}");
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn tick(vals: &[f64], v: f64) -> String {
    let i = v.round();
    if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < vals.len() {
        format!("{}", vals[i as usize])
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_size(path: &Path) -> (u32, u32) {
        let b = std::fs::read(path).unwrap();
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
        (w, h)
    }

    #[test]
    fn plots_are_written_as_pngs_of_the_expected_size() {
        let dir = tempfile::tempdir().unwrap();
        let pts: Vec<_> = (1..=10)
            .map(|e| (e as f64, 0.8 + 0.01 * e as f64, 0.78, 0.9))
            .collect();
        let panel = Panel {
            title: "test accuracy".into(),
            x_label: "epoch".into(),
            y_label: "accuracy".into(),
            series: vec![Series::band("a", pts.clone()), Series::band("b", pts)],
            hlines: vec![("ref".into(), 0.85)],
            ..Default::default()
        };
        let p1 = dir.path().join("curves.png");
        panels(&p1, "curves", &[panel.clone(), panel], 2).unwrap();
        let p2 = dir.path().join("bars.png");
        bars(
            &p2,
            "bars",
            "accuracy",
            &[
                ("x".into(), 0.8, 0.79, 0.81),
                ("y".into(), 0.7, f64::NAN, f64::NAN),
            ],
        )
        .unwrap();
        let p3 = dir.path().join("heat.png");
        heatmap(
            &p3,
            "heat",
            "p2",
            "p1",
            &[0.0, 0.5],
            &[0.0, 0.5],
            &[vec![0.8, 0.81], vec![0.82, f64::NAN]],
        )
        .unwrap();
        for p in [p1, p2, p3] {
            assert_eq!(png_size(&p), SIZE);
            // A drawn plot compresses to far more than a blank canvas.
            assert!(
                std::fs::metadata(&p).unwrap().len() > 10_000,
                "{} looks empty",
                p.display()
            );
        }
        // No temporary files left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }
}
