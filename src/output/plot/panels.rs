//! Line charts: a figure of panels, each with series of (x, mean, low,
//! high) points, optional thin per-run lines under the mean, and markers
//! where runs ended early (diverged).

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{finite_range, number, pad, robust_range, DrawResult, Figure, Rgb, FONT, INK};

/// One line: its mean with a 95% band (or error bars), and optionally the
/// runs it averages.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: Rgb,
    /// (x, mean, low, high); a NaN low/high draws no band there.
    pub points: Vec<(f64, f64, f64, f64)>,
    /// Error bars with markers at each point instead of a shaded band.
    pub bars: bool,
    pub dashed: bool,
    /// Each run as a thin line under the mean.
    pub runs: Vec<Vec<(f64, f64)>>,
    /// Where runs ended early (diverged), marked with a cross.
    pub ends: Vec<(f64, f64)>,
}

impl Series {
    /// A mean line with a shaded band.
    pub fn band(name: impl Into<String>, color: Rgb, points: Vec<(f64, f64, f64, f64)>) -> Self {
        Self {
            name: name.into(),
            color,
            points,
            bars: false,
            dashed: false,
            runs: Vec::new(),
            ends: Vec::new(),
        }
    }
}

/// One chart.
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
    /// A shaded horizontal band (name, low, high), e.g. an equivalence margin.
    pub yband: Option<(String, f64, f64)>,
    /// Logarithmic y axis (for quantities spanning decades, such as a loss).
    pub log_y: bool,
    /// What the quantity can take (accuracy: [0, 1]); bands, runs and the
    /// axis are clipped to it.
    pub clip: Option<(f64, f64)>,
    /// The legend in the upper right corner instead of the lower right
    /// (for falling curves, such as losses).
    pub legend_top: bool,
    /// The y range to draw, instead of one from the data (so that panels
    /// of one quantity share a scale).
    pub y_range: Option<(f64, f64)>,
    /// No legend (when the title says what the one series is).
    pub no_legend: bool,
}

/// A figure of panels laid out `cols` wide, with an overall title.
#[derive(Debug, Clone)]
pub struct Panels {
    pub title: String,
    pub panels: Vec<Panel>,
    pub cols: usize,
}

impl Figure for Panels {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let root = root.titled(&self.title, (FONT, 28))?;
        let cols = self.cols.max(1);
        let rows = self.panels.len().div_ceil(cols);
        let areas = root.split_evenly((rows, cols));
        for (panel, area) in self.panels.iter().zip(areas.iter()) {
            panel.draw(area)?;
        }
        Ok(())
    }
}

impl Panel {
    /// The y range this panel would draw from its own data.
    pub fn data_y_range(&self) -> (f64, f64) {
        self.ranges(&self.clipped()).1
    }

    /// The series with bands and runs clipped to what the quantity can take.
    pub(super) fn clipped(&self) -> Vec<Series> {
        let Some((lo, hi)) = self.clip else {
            return self.series.clone();
        };
        let c = |v: f64| if v.is_finite() { v.clamp(lo, hi) } else { v };
        self.series
            .iter()
            .map(|s| Series {
                points: s
                    .points
                    .iter()
                    .map(|&(x, m, l, h)| (x, c(m), c(l), c(h)))
                    .collect(),
                runs: s
                    .runs
                    .iter()
                    .map(|r| r.iter().map(|&(x, y)| (x, c(y))).collect())
                    .collect(),
                ends: s.ends.iter().map(|&(x, y)| (x, c(y))).collect(),
                ..s.clone()
            })
            .collect()
    }

    /// x range, y range.
    pub(super) fn ranges(&self, series: &[Series]) -> ((f64, f64), (f64, f64)) {
        let xs = series.iter().flat_map(|s| {
            s.points
                .iter()
                .map(|q| q.0)
                .chain(s.runs.iter().flatten().map(|q| q.0))
        });
        let x = match &self.x_ticks {
            Some(t) => (-0.5, t.len() as f64 - 0.5),
            None => finite_range(xs).unwrap_or((0.0, 1.0)),
        };
        let keep = |y: &f64| !self.log_y || *y > 0.0;
        let must: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|q| q.1))
            .chain(self.hlines.iter().map(|h| h.1))
            .filter(keep)
            .collect();
        let may: Vec<f64> = series
            .iter()
            .flat_map(|s| {
                s.points
                    .iter()
                    .flat_map(|q| [q.2, q.3])
                    .chain(s.runs.iter().flatten().map(|q| q.1))
            })
            .filter(keep)
            .collect();
        if let Some(r) = self.y_range {
            return (x, r);
        }
        let (lo, hi) = robust_range(&must, &may, 0.02).unwrap_or((0.0, 1.0));
        let (lo, hi) = if self.log_y {
            (lo / 1.3, hi * 1.3)
        } else {
            let (a, b) = pad((lo, hi), 0.06);
            match self.clip {
                Some((c0, c1)) => (a.max(c0), b.min(c1)),
                None => (a, b),
            }
        };
        (x, (lo, hi))
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let series = self.clipped();
        let ((x0, x1), (y0, y1)) = self.ranges(&series);
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(&self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(75);
        if self.log_y {
            let mut chart = builder.build_cartesian_2d(x0..x1, (y0.max(1e-12)..y1).log_scale())?;
            self.draw_contents(&mut chart, &series, (x0, x1), y1 - y0)
        } else {
            let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
            self.draw_contents(&mut chart, &series, (x0, x1), y1 - y0)
        }
    }

    /// Labels of the x axis: the category names, whole numbers where every x
    /// is whole (epochs), or the number.
    fn x_label(&self, x: f64, span: f64, integer_x: bool) -> String {
        match &self.x_ticks {
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
            None => number(x, span),
        }
    }

    fn draw_contents<'a, 'b: 'a, DB, Y>(
        &self,
        chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
        series: &[Series],
        (x0, x1): (f64, f64),
        y_span: f64,
    ) -> DrawResult
    where
        DB: DrawingBackend + 'b,
        DB::ErrorType: 'static,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let integer_x = series
            .iter()
            .all(|s| s.points.iter().all(|q| q.0.fract() == 0.0));
        let x_fmt = |x: &f64| self.x_label(*x, x1 - x0, integer_x);
        let log = self.log_y;
        let y_fmt = |y: &f64| {
            if log {
                // Decades: no snapping to zero, large and small values short.
                if *y >= 1e4 || *y < 1e-3 {
                    super::scientific(*y)
                } else {
                    number(*y, *y)
                }
            } else {
                number(*y, y_span)
            }
        };
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_labels(self.x_ticks.as_ref().map_or(10, |t| t.len()))
            .y_labels(8)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .light_line_style(RGBColor(235, 235, 235))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .draw()?;
        if let Some((name, lo, hi)) = &self.yband {
            let c = Rgb(120, 120, 120).lighter(0.75).color();
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0, *lo), (x1, *hi)],
                    c.mix(0.6).filled(),
                )))?
                .label(name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 24, y + 6)], c.filled()));
        }
        for s in series {
            draw_series(chart, s)?;
        }
        for (name, y) in &self.hlines {
            let c = INK.color();
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x0, *y), (x1, *y)],
                    8,
                    6,
                    c.stroke_width(2),
                ))?
                .label(name.as_str())
                .legend(move |(x, yy)| {
                    PathElement::new(vec![(x, yy), (x + 24, yy)], c.stroke_width(2))
                });
        }
        if self.no_legend {
            return Ok(());
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .position(if self.legend_top {
                SeriesLabelPosition::UpperRight
            } else {
                SeriesLabelPosition::LowerRight
            })
            .draw()?;
        Ok(())
    }
}

/// One series: runs, band or bars, mean line, end markers.
fn draw_series<'a, 'b: 'a, DB, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    s: &Series,
) -> DrawResult
where
    DB: DrawingBackend + 'b,
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let c = s.color.color();
    for run in &s.runs {
        let pts: Vec<(f64, f64)> = run.iter().copied().filter(|q| q.1.is_finite()).collect();
        chart.draw_series(LineSeries::new(pts, c.mix(0.35).stroke_width(1)))?;
    }
    let band: Vec<&(f64, f64, f64, f64)> = s
        .points
        .iter()
        .filter(|q| q.2.is_finite() && q.3.is_finite())
        .collect();
    if !s.bars && band.len() > 1 {
        let poly: Vec<(f64, f64)> = band
            .iter()
            .map(|q| (q.0, q.3))
            .chain(band.iter().rev().map(|q| (q.0, q.2)))
            .collect();
        chart.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.15).filled())))?;
    }
    let pts: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter(|q| q.1.is_finite())
        .map(|q| (q.0, q.1))
        .collect();
    if s.bars {
        chart.draw_series(
            band.iter()
                .map(|q| ErrorBar::new_vertical(q.0, q.2, q.1, q.3, c.stroke_width(2), 12)),
        )?;
        chart.draw_series(pts.iter().map(|&pt| Circle::new(pt, 5, c.filled())))?;
    }
    let style = c.stroke_width(3);
    let drawn = if s.dashed {
        chart.draw_series(DashedLineSeries::new(pts, 10, 6, style))?
    } else {
        chart.draw_series(LineSeries::new(pts, style))?
    };
    let dashed = s.dashed;
    drawn.label(s.name.as_str()).legend(move |(x, y)| {
        if dashed {
            plotters::element::DashedPathElement::new(
                vec![(x, y), (x + 24, y)],
                6,
                4,
                c.stroke_width(3),
            )
            .into_dyn()
        } else {
            PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)).into_dyn()
        }
    });
    chart.draw_series(
        s.ends
            .iter()
            .map(|&(x, y)| Cross::new((x, y), 7, c.stroke_width(3))),
    )?;
    Ok(())
}
