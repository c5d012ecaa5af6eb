//! Figures several exercises share, and the colours every figure uses: one
//! colour per family of regulariser (dropout, DropConnect, each noise kind,
//! weight decay, none), the same thing in the same colour everywhere.
//!
//! - [`effects`]: the forest plot of an exercise's primary comparisons,
//!   each paired difference with its 95% interval, the equivalence margin
//!   shaded, and its verdict;
//! - [`peak_dots`]: the peak accuracy of each configuration (test accuracy
//!   at the validation-selected epoch);
//! - [`accuracy_curves`]: test accuracy and train loss per epoch, each run
//!   thin under the mean, diverged runs marked where they ended.

use std::path::Path;

use anyhow::Result;

use super::Finished;
use crate::analysis::{Group, Metric};
use crate::config::TrainConfig;
use crate::contrast::{verdict_text, ContrastRow, Verdict};
use crate::output::plot::{self, DotRow, Dots, Panel, Panels, Rgb, Series};
use crate::record::{ConfigKey, EpochRow};
use crate::regularizers::RegKind;
use crate::stats::Estimate;

/// No regularisation.
pub const NONE: Rgb = Rgb(110, 110, 110);
/// Weight decay without dropout.
pub const WEIGHT_DECAY: Rgb = Rgb(188, 189, 34);

/// One colour per regulariser kind, by its place in the registry; kinds
/// past the end reuse the palette from its start.
const PALETTE: [Rgb; 16] = [
    Rgb(31, 119, 180),
    Rgb(255, 127, 14),
    Rgb(230, 85, 13),
    Rgb(44, 160, 44),
    Rgb(214, 39, 40),
    Rgb(148, 103, 189),
    Rgb(23, 190, 207),
    Rgb(140, 86, 75),
    Rgb(227, 119, 194),
    Rgb(127, 127, 127),
    Rgb(255, 187, 120),
    Rgb(152, 223, 138),
    Rgb(197, 176, 213),
    Rgb(219, 219, 141),
    Rgb(158, 218, 229),
    Rgb(255, 152, 150),
];

/// The colour of a regulariser kind.
pub fn kind_color(kind: RegKind) -> Rgb {
    PALETTE[kind.index() % PALETTE.len()]
}

/// The family colour of a configuration: its regulariser's kind, weight
/// decay when that is all it has, grey when it has nothing.
fn family_color(c: &TrainConfig) -> Rgb {
    match c.layers.iter().find(|l| l.p() > 0.0) {
        Some(l) => kind_color(l.kind()),
        None if c.weight_decay > 0.0 => WEIGHT_DECAY,
        None => NONE,
    }
}

/// The colour of each configuration of `r`: its family's, in darker and
/// lighter shades where a family has several members.
pub fn config_colors(r: &Finished) -> Vec<(ConfigKey, Rgb)> {
    let families: Vec<Rgb> = r.groups.iter().map(|g| family_color(g.config())).collect();
    r.groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let same: Vec<usize> = (0..families.len())
                .filter(|&j| families[j] == families[i])
                .collect();
            let rank = same.iter().position(|&j| j == i).unwrap_or(0);
            let t = if same.len() > 1 {
                rank as f64 / (same.len() - 1) as f64
            } else {
                0.5
            };
            // From a darker to a lighter shade of the family colour.
            let c = if t < 0.5 {
                families[i].darker(0.45 * (0.5 - t))
            } else {
                families[i].lighter(0.6 * (t - 0.5))
            };
            (g.key().clone(), c)
        })
        .collect()
}

fn color_of(colors: &[(ConfigKey, Rgb)], key: Option<&ConfigKey>) -> Rgb {
    colors
        .iter()
        .find(|(k, _)| Some(k) == key)
        .map_or(NONE, |(_, c)| *c)
}

/// How a verdict is written on a figure.
fn verdict_color(v: Option<Verdict>) -> Rgb {
    match v {
        Some(Verdict::Higher | Verdict::Lower) => Rgb(0, 110, 0),
        Some(Verdict::Equivalent | Verdict::ShortOfInterest) => Rgb(31, 90, 160),
        Some(Verdict::Undecided) | None => Rgb(90, 90, 90),
    }
}

/// The forest plot of contrasts measured in one unit (each "A − B" with its
/// 95% interval, n and failed runs on its label, its verdict at the end),
/// with ± the first one's smallest effect of interest shaded. `axis` names
/// the metric; rows from fewer than 3 runs get no interval and say so.
pub fn effects(
    r: &Finished,
    path: &Path,
    title: &str,
    axis: &str,
    rows: &[&ContrastRow],
) -> Result<()> {
    let colors = config_colors(r);
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let scale = first.scale;
    let band = first.sesoi.unwrap_or(r.common.margin / 100.0) * scale;
    let dots: Vec<DotRow> = rows
        .iter()
        .map(|c| {
            let label = match c.question.as_str() {
                "" => c.contrast.clone(),
                q if q.ends_with('?') => format!("{q}  {}", c.contrast),
                q => format!("{q}: {}", c.contrast),
            };
            let note = if c.has_interval() {
                verdict_text(c)
            } else {
                format!("{}, no interval", verdict_text(c))
            };
            DotRow {
                label: format!("{label} (n={}, failed {})", c.n, c.failed),
                value: scale * c.estimate,
                lo: c.ci_low.map_or(f64::NAN, |x| scale * x),
                hi: c.ci_high.map_or(f64::NAN, |x| scale * x),
                color: color_of(&colors, c.keys.first()),
                note: Some((note, verdict_color(c.verdict))),
            }
        })
        .collect();
    let mut fig = forest(title, off_scale(dots, band), band);
    fig.x_label = format!("{axis}, A − B, 95% CI over seeds");
    fig.band = Some((
        format!("smallest effect of interest ±{band:.2} {}", first.unit),
        -band,
        band,
    ));
    plot::save(path, &fig)
}

/// Keeps one far-off comparison (a configuration that collapses, say) from
/// squeezing every other interval to a dot: the axis spans three times the
/// typical row's extent (the 75th percentile of max(|low|, |high|), at
/// least three margins); a row beyond it is drawn at the edge, its value
/// written in its note ("off scale").
fn off_scale(mut rows: Vec<DotRow>, margin: f64) -> Vec<DotRow> {
    let mut extents: Vec<f64> = rows
        .iter()
        .map(|r| r.value.abs().max(r.lo.abs()).max(r.hi.abs()))
        .filter(|x| x.is_finite())
        .collect();
    if extents.len() < 4 {
        return rows;
    }
    extents.sort_by(f64::total_cmp);
    let typical = extents[(extents.len() - 1) * 3 / 4];
    let limit = (3.0 * typical).max(3.0 * margin);
    for r in &mut rows {
        if r.value.abs() > limit {
            let edge = limit.copysign(r.value);
            let (text, color) = r.note.take().unwrap_or((String::new(), Rgb(0, 0, 0)));
            r.note = Some((format!("{text} ({:+.1}, off scale)", r.value), color));
            r.value = edge;
            r.lo = r.lo.clamp(-limit, limit);
            r.hi = r.hi.clamp(-limit, limit);
        }
    }
    rows
}

/// A forest plot of paired differences in test accuracy (points), with the
/// equivalence margin (points) shaded.
fn forest(title: &str, rows: Vec<DotRow>, margin: f64) -> Dots {
    Dots {
        title: title.to_string(),
        x_label: "difference in test accuracy (points), paired by seed, 95% CI".into(),
        rows,
        band: Some((
            format!("equivalence margin ±{margin:.2} points"),
            -margin,
            margin,
        )),
        zero: true,
        clip: None,
    }
}

/// The axis label of the peak accuracy (test accuracy at the validation-selected epoch).
const PEAK_AXIS: &str = "test accuracy (%) at the epoch selected on validation, 95% CI over seeds";

/// The peak accuracy of every configuration, in percent, with its 95%
/// interval over seeds (none from fewer than 3 runs).
pub fn peak_dots(r: &Finished, path: &Path, title: &str) -> Result<()> {
    let colors = config_colors(r);
    let rows = r
        .summary
        .iter()
        .map(|s| DotRow {
            label: format!("{} (n={})", s.config.label, s.n_selected),
            value: 100.0 * s.selected_mean,
            lo: 100.0 * s.selected_ci_low,
            hi: 100.0 * s.selected_ci_high,
            color: color_of(&colors, Some(&s.config.key)),
            note: None,
        })
        .collect();
    plot::save(
        path,
        &Dots {
            title: title.to_string(),
            x_label: PEAK_AXIS.into(),
            rows,
            clip: Some((0.0, 100.0)),
            ..Default::default()
        },
    )
}

/// A line over categories (x = 0, 1, ...) of the peak or end-of-training accuracy (%) of
/// the configurations `keys`, with 95% CI bars.
pub fn accuracy_line(
    r: &Finished,
    name: String,
    color: Rgb,
    keys: &[ConfigKey],
    metric: Metric,
) -> Series {
    let points = keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| {
            // A configuration the sweep lacks leaves a gap, not a panic.
            let s = r.summary.iter().find(|s| s.config.key == *k)?;
            let (m, lo, hi) = match metric {
                Metric::End => (s.end_mean, s.end_ci_low, s.end_ci_high),
                _ => (s.selected_mean, s.selected_ci_low, s.selected_ci_high),
            };
            Some((i as f64, 100.0 * m, 100.0 * lo, 100.0 * hi))
        })
        .collect();
    Series {
        bars: true,
        ..Series::band(name, color, points)
    }
}

/// One series per configuration: `f` per epoch, scaled by `scale`: the mean
/// over the runs that did not diverge with its 95% band, every run as a thin
/// line, and a cross where a diverged run ended. The legend says how many
/// runs the mean is over.
pub fn epoch_series(r: &Finished, f: fn(&EpochRow) -> f64, scale: f64) -> Vec<Series> {
    let colors = config_colors(r);
    r.groups
        .iter()
        .map(|g| {
            let mut s = Series::band(
                legend(g),
                color_of(&colors, Some(g.key())),
                g.curve(f)
                    .into_iter()
                    .map(|(e, est): (usize, Estimate)| {
                        (
                            e as f64,
                            scale * est.mean,
                            scale * est.ci_low,
                            scale * est.ci_high,
                        )
                    })
                    .collect(),
            );
            s.runs = g
                .runs
                .iter()
                .map(|run| {
                    run.rows
                        .iter()
                        .map(|e| (e.epoch as f64, scale * f(e)))
                        .collect()
                })
                .collect();
            s.ends = g
                .runs
                .iter()
                .filter(|run| run.diverged)
                .filter_map(|run| {
                    run.rows
                        .iter()
                        .rev()
                        .find(|e| f(e).is_finite())
                        .map(|e| (e.epoch as f64, scale * f(e)))
                })
                .collect();
            s
        })
        .collect()
}

/// "label (mean of 4 runs; 1 diverged, x; 1 of them collapsed)": the mean
/// is over the runs that did not diverge (see [`Group::curve`]).
fn legend(g: &Group) -> String {
    let (diverged, collapsed) = (g.diverged(), g.collapsed());
    let averaged = g.runs.len() - diverged;
    let mut s = format!("{} (mean of {averaged}", g.label);
    if diverged > 0 {
        s += &format!("; {diverged} diverged, x");
    }
    if collapsed > 0 {
        s += &format!("; {collapsed} of them collapsed");
    }
    if diverged + collapsed == 0 {
        s += " runs";
    }
    s + ")"
}

/// Whether values spanning `lo..hi` (positive) read better on a log axis:
/// when they cover more than a decade and a half.
pub fn wants_log(series: &[Series]) -> bool {
    let vals = series
        .iter()
        .flat_map(|s| s.points.iter().map(|q| q.1))
        .filter(|v| v.is_finite() && *v > 0.0);
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in vals {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    lo.is_finite() && hi / lo > 30.0
}

/// Test accuracy (%) and train loss per epoch.
pub fn accuracy_curves(r: &Finished, path: &Path, title: &str) -> Result<()> {
    let test = Panel {
        title: "test accuracy (evaluation mode)".into(),
        x_label: "epoch".into(),
        y_label: "test accuracy (%)".into(),
        series: epoch_series(r, |e| e.test_acc, 100.0),
        clip: Some((0.0, 100.0)),
        ..Default::default()
    };
    let loss = epoch_series(r, |e| e.train_loss, 1.0);
    let log = wants_log(&loss);
    let train = Panel {
        title: "train loss (training mode)".into(),
        x_label: "epoch".into(),
        y_label: if log {
            "cross-entropy (log scale)".into()
        } else {
            "cross-entropy".into()
        },
        series: loss,
        log_y: log,
        legend_top: true,
        clip: Some((0.0, f64::INFINITY)),
        ..Default::default()
    };
    plot::save(
        path,
        &Panels {
            title: title.to_string(),
            panels: vec![test, train],
            cols: 2,
        },
    )
}

/// Test accuracy (%) per epoch in several panels: `panel_of` names each
/// configuration's panel, or `None` for a reference drawn in every panel.
/// For sweeps with too many configurations for one chart; runs are drawn
/// thin only where a panel has at most three lines.
pub fn accuracy_panels(
    r: &Finished,
    path: &Path,
    title: &str,
    panel_of: impl Fn(&Group) -> Option<String>,
) -> Result<()> {
    let panels = accuracy_panel_list(r, panel_of);
    // Written as a clamp: rustc 1.95.0 (LLVM 22.1.2) compiled the same cap
    // written as `if n > 2 { 2 } else { n.max(1) }` to `n.max(1)` in some
    // release builds, laying six panels out in one row.
    let cols = panels.len().clamp(1, 2);
    plot::save(
        path,
        &Panels {
            title: title.to_string(),
            panels,
            cols,
        },
    )
}

/// The panels of [`accuracy_panels`], one per name `panel_of` gives (a
/// configuration it gives none appears in every panel).
pub fn accuracy_panel_list(
    r: &Finished,
    panel_of: impl Fn(&Group) -> Option<String>,
) -> Vec<Panel> {
    let all = epoch_series(r, |e| e.test_acc, 100.0);
    let keys: Vec<Option<String>> = r.groups.iter().map(&panel_of).collect();
    let mut names: Vec<String> = Vec::new();
    for k in keys.iter().flatten() {
        if !names.contains(k) {
            names.push(k.clone());
        }
    }
    names
        .iter()
        .map(|name| {
            let mut series: Vec<Series> = all
                .iter()
                .zip(&keys)
                .filter(|(_, k)| k.as_ref().is_none_or(|k| k == name))
                .map(|(s, _)| s.clone())
                .collect();
            if series.len() > 3 {
                for s in &mut series {
                    s.runs.clear();
                }
            }
            Panel {
                title: name.clone(),
                x_label: "epoch".into(),
                y_label: "test accuracy (%)".into(),
                series,
                clip: Some((0.0, 100.0)),
                ..Default::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: f64) -> DotRow {
        DotRow {
            label: format!("{value}"),
            value,
            lo: value - 1.0,
            hi: value + 1.0,
            color: NONE,
            note: Some(("undecided".into(), NONE)),
        }
    }

    /// One far-off row is drawn at the edge with its value in its note; the
    /// others, and a plot without outliers, are left alone.
    #[test]
    fn a_far_off_comparison_is_drawn_at_the_edge() {
        let rows = off_scale(
            vec![row(0.2), row(-0.5), row(1.0), row(-1.5), row(-47.4)],
            0.5,
        );
        // Typical extent 2.5 (75th percentile of 1.2, 1.5, 2, 2.5, 48.4): the limit is 7.5.
        assert_eq!(rows[4].value, -7.5);
        assert_eq!((rows[4].lo, rows[4].hi), (-7.5, -7.5));
        assert_eq!(
            rows[4].note.as_ref().unwrap().0,
            "undecided (-47.4, off scale)"
        );
        for (r, v) in rows.iter().zip([0.2, -0.5, 1.0, -1.5]) {
            assert_eq!(r.value, v);
            assert_eq!(r.note.as_ref().unwrap().0, "undecided");
        }
        let calm = off_scale(vec![row(0.2), row(-0.5), row(1.0), row(-3.0)], 0.5);
        assert!(calm
            .iter()
            .all(|r| !r.note.as_ref().unwrap().0.contains("off scale")));
    }
}
