//! Dot plots: one row per item, a dot at its value and a line for its
//! interval, labels on the axis, an optional shaded band (an equivalence
//! margin) and a note at the end of each row (a verdict). With a band and
//! notes this is a forest plot of effects; without, it replaces bar charts,
//! whose bars would have to start at zero to be honest.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{number, pad, robust_range, DrawResult, Figure, Rgb, FONT, INK};

/// One row.
#[derive(Debug, Clone)]
pub struct DotRow {
    pub label: String,
    pub value: f64,
    /// The interval; NaN draws none (too few runs).
    pub lo: f64,
    pub hi: f64,
    pub color: Rgb,
    /// Text at the end of the row, in its own colour.
    pub note: Option<(String, Rgb)>,
}

/// A dot plot, first row at the top.
#[derive(Debug, Clone, Default)]
pub struct Dots {
    pub title: String,
    pub x_label: String,
    pub rows: Vec<DotRow>,
    /// A shaded vertical band (name, low, high).
    pub band: Option<(String, f64, f64)>,
    /// Draw a vertical line at 0.
    pub zero: bool,
    /// What the quantity can take; intervals and the axis are clipped to it.
    pub clip: Option<(f64, f64)>,
}

impl Dots {
    pub(super) fn x_range(&self) -> (f64, f64) {
        let must: Vec<f64> = self
            .rows
            .iter()
            .map(|r| r.value)
            .chain(self.zero.then_some(0.0))
            .chain(self.band.iter().flat_map(|b| [b.1, b.2]))
            .collect();
        let may: Vec<f64> = self.rows.iter().flat_map(|r| [r.lo, r.hi]).collect();
        let (lo, hi) = pad(robust_range(&must, &may, 0.0).unwrap_or((0.0, 1.0)), 0.06);
        match self.clip {
            Some((c0, c1)) => (lo.max(c0), hi.min(c1)),
            None => (lo, hi),
        }
    }
}

impl Dots {
    /// Each row: its label above its interval and dot, at the left; its
    /// note below, at the right, in its own colour.
    fn draw_rows<'a, 'b: 'a, DB>(
        &self,
        chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
        (x0, x1): (f64, f64),
    ) -> DrawResult
    where
        DB: DrawingBackend + 'b,
        DB::ErrorType: 'static,
    {
        use plotters::style::text_anchor::{HPos, Pos, VPos};
        let n = self.rows.len();
        let y_of = |i: usize| (n - 1 - i) as f64;
        let clip = |v: f64| match self.clip {
            Some((a, b)) if v.is_finite() => v.clamp(a, b),
            _ => v,
        };
        let pad = 0.01 * (x1 - x0);
        for (i, r) in self.rows.iter().enumerate() {
            let (y, c) = (y_of(i), r.color.color());
            if r.lo.is_finite() && r.hi.is_finite() {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(clip(r.lo), y), (clip(r.hi), y)],
                    c.stroke_width(3),
                )))?;
            }
            if r.value.is_finite() {
                chart.draw_series(std::iter::once(Circle::new((r.value, y), 7, c.filled())))?;
            }
            chart.draw_series(std::iter::once(Text::new(
                r.label.clone(),
                (x0 + pad, y + 0.32),
                (FONT, 15)
                    .into_font()
                    .color(&INK.color())
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )))?;
            if let Some((text, color)) = &r.note {
                chart.draw_series(std::iter::once(Text::new(
                    text.clone(),
                    (x1 - pad, y - 0.3),
                    (FONT, 15)
                        .into_font()
                        .color(&color.color())
                        .pos(Pos::new(HPos::Right, VPos::Center)),
                )))?;
            }
        }
        Ok(())
    }
}

/// Height in pixels a row of dots needs (its label above its interval),
/// and what the title and axis take.
const ROW_PX: u32 = 36;
const FRAME_PX: u32 = 140;

impl Figure for Dots {
    /// Tall enough that each row's label sits clearly above its own
    /// interval, however many rows there are.
    fn size(&self) -> (u32, u32) {
        let (w, h) = super::SIZE;
        (w, h.max(FRAME_PX + ROW_PX * self.rows.len() as u32))
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let (x0, x1) = self.x_range();
        let span = x1 - x0;
        let n = self.rows.len();
        let x_desc = match &self.band {
            Some((name, _, _)) => format!("{} (shaded: {name})", self.x_label),
            None => self.x_label.clone(),
        };
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 24))
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(8)
            .build_cartesian_2d(x0..x1, -0.6f64..n as f64 - 0.4)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .max_light_lines(4)
            .x_label_formatter(&|x| number(*x, span))
            .x_desc(x_desc.as_str())
            .light_line_style(RGBColor(240, 240, 240))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .draw()?;
        if let Some((_, lo, hi)) = &self.band {
            let c = Rgb(120, 120, 120).lighter(0.75).color();
            chart.draw_series(std::iter::once(Rectangle::new(
                [(lo.max(x0), -0.6), (hi.min(x1), n as f64 - 0.4)],
                c.mix(0.6).filled(),
            )))?;
        }
        if self.zero {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, -0.6), (0.0, n as f64 - 0.4)],
                INK.color().stroke_width(1),
            )))?;
        }
        self.draw_rows(&mut chart, (x0, x1))
    }
}
