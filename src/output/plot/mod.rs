//! Figures, drawn with plotters from rows only (never from the trainer),
//! each written twice: a PNG for quick looks and an SVG with the same
//! content (crisp on the web and in papers, its text kept as text).
//!
//! Text is rendered with DejaVu Sans shipped in `assets/` (plotters'
//! `ab_glyph` backend), so no system font library is needed. Every file is
//! drawn to a temporary path and renamed into place.
//!
//! Axis limits come from the data (robust quantiles of what is drawn, the
//! means always inside), never from a degenerate interval; tick labels are
//! formatted for the quantity (no `6e-17`, no `0e0`).

mod dots;
mod heatmap;
mod panels;

pub use dots::{DotRow, Dots};
pub use heatmap::Heatmap;
pub use panels::{Panel, Panels, Series};

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

const FONT: &str = "sans-serif";
/// Size of every figure, in pixels (the SVG's too).
const SIZE: (u32, u32) = (1200, 800);

/// What drawing returns: any backend's error, boxed.
type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Something that can draw itself on any plotters backend.
pub trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static;
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32) {
        SIZE
    }
}

/// A colour, as red, green, blue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    fn color(self) -> RGBColor {
        RGBColor(self.0, self.1, self.2)
    }
    /// The colour mixed with white by `t` in [0, 1] (lighter shades of one
    /// family for several members of it).
    pub fn lighter(self, t: f64) -> Rgb {
        let mix = |c: u8| (c as f64 + (255.0 - c as f64) * t.clamp(0.0, 1.0)) as u8;
        Rgb(mix(self.0), mix(self.1), mix(self.2))
    }
    /// The colour mixed with black by `t` in [0, 1].
    pub fn darker(self, t: f64) -> Rgb {
        let mix = |c: u8| (c as f64 * (1.0 - t.clamp(0.0, 1.0))) as u8;
        Rgb(mix(self.0), mix(self.1), mix(self.2))
    }
}

/// Text and reference lines.
const INK: Rgb = Rgb(40, 40, 40);

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../../assets/DejaVuSans.ttf");
        plotters::style::register_font(FONT, FontStyle::Normal, bytes)
            .map_err(|_| ())
            .expect("the shipped DejaVu Sans font is valid");
    });
}

/// Writes `fig` to `path` (a `.png`) and to the same path with `.svg`.
pub fn save(path: &Path, fig: &impl Figure) -> Result<()> {
    register();
    crate::output::write_atomic_with(path, |tmp| {
        render(
            BitMapBackend::new(tmp, fig.size()).into_drawing_area(),
            fig,
            path,
        )
    })?;
    let svg = path.with_extension("svg");
    crate::output::write_atomic_with(&svg, |tmp| {
        render(
            SVGBackend::new(tmp, fig.size()).into_drawing_area(),
            fig,
            &svg,
        )
    })
}

/// Draws `fig` on a white `root` and writes it out; errors name `shown`.
fn render<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    fig: &impl Figure,
    shown: &Path,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    fig.draw(&root)
        .map_err(|e| anyhow!("drawing {}: {e}", shown.display()))?;
    root.present()
        .map_err(|e| anyhow!("writing {}: {e}", shown.display()))
}

/// The lowest and highest finite value.
fn finite_range(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (lo <= hi).then_some((lo, hi))
}

/// The range that holds every value of `must` and the values of `may`
/// between their `q` and `1 - q` quantiles: bands and single runs that
/// shoot far out do not flatten what matters.
fn robust_range(must: &[f64], may: &[f64], q: f64) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = may.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let quantile = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let spread = (!v.is_empty()).then(|| (quantile(q), quantile(1.0 - q)));
    let core = finite_range(must.iter().copied());
    match (core, spread) {
        (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
        (x, y) => x.or(y),
    }
}

fn pad((lo, hi): (f64, f64), frac: f64) -> (f64, f64) {
    let span = (hi - lo).abs().max(1e-9);
    (lo - frac * span, hi + frac * span)
}

/// A tick label with no more digits than it needs; values within a
/// billionth of `span` of zero are zero.
fn number(y: f64, span: f64) -> String {
    let a = y.abs();
    if a <= 1e-9 * span.abs().max(1e-300) || a == 0.0 {
        return "0".into();
    }
    let s = if a >= 100.0 {
        format!("{y:.0}")
    } else if a >= 1.0 {
        format!("{y:.2}")
    } else if a >= 0.001 {
        format!("{y:.4}")
    } else {
        return scientific(y);
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `1e-5`, `3e-4`, `1.5e-3` (and `0` for zero, never `0e0`).
pub fn scientific(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let s = format!("{v:e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let m = if m.contains('.') {
                let t = format!("{:.2}", m.parse::<f64>().unwrap_or(0.0));
                t.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                m.to_string()
            };
            format!("{m}e{e}")
        }
        None => s,
    }
}

#[cfg(test)]
mod tests;
