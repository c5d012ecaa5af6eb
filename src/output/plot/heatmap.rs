//! A heatmap of a value over a grid (exercise 1's rates p1 x p2), the value
//! written in each cell.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{finite_range, DrawResult, Figure, FONT};

/// A heatmap of `values[row][col]` with the value written in each cell;
/// rows are `ys` (vertical axis), columns `xs`.
#[derive(Debug, Clone)]
pub struct Heatmap {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub xs: Vec<f64>,
    pub ys: Vec<f64>,
    pub values: Vec<Vec<f64>>,
}

impl Figure for Heatmap {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let (title, x_label, y_label) = (&self.title, &self.x_label, &self.y_label);
        let (xs, ys, values) = (&self.xs, &self.ys, &self.values);
        {
            let (lo, hi) = finite_range(values.iter().flatten().copied()).unwrap_or((0.0, 1.0));
            let mut chart = ChartBuilder::on(root)
                .caption(title.as_str(), (FONT, 28))
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
                .x_desc(x_label.as_str())
                .y_desc(y_label.as_str())
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
        }
    }
}

/// The grid value at whole positions, nothing between them.
fn tick(vals: &[f64], v: f64) -> String {
    let i = v.round();
    if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < vals.len() {
        format!("{}", vals[i as usize])
    } else {
        String::new()
    }
}
