//! Exercise 2's figures: test accuracy, training loss and the
//! generalisation gap per epoch, a panel per learning rate, and the paired
//! difference dropout minus none.

use anyhow::Result;

use super::super::figures;
use super::{Longer, SPEC};
use crate::analysis::Group;
use crate::experiments::Finished;
use crate::output::plot::{self, Panel, Panels, Series};
use crate::record::EpochRow;

impl Longer {
    /// `curves.png` (test accuracy), `loss.png` (training loss) and
    /// `gap.png`, one panel per learning rate.
    pub(super) fn curves(&self, r: &Finished) -> Result<()> {
        let by_lr = |g: &Group| Some(format!("lr {}", g.config().lr));
        let mut panels = figures::accuracy_panel_list(r, by_lr);
        // One scale for every learning rate: the panels compare by eye.
        share_y_scale(&mut panels);
        panels.push(self.difference_panel(r));
        plot::save(
            &r.out.join("curves.png"),
            &Panels {
                title: format!(
                    "Exercise {}: test accuracy by learning rate, one scale (runs thin, mean bold, 95% band)",
                    SPEC.number
                ),
                panels,
                cols: 2,
            },
        )?;
        let cols = self.settings.lrs.len().min(2);
        plot::save(
            &r.out.join("loss.png"),
            &Panels {
                title: format!(
                    "Exercise {}: training loss (training mode) by learning rate: jumps are blow-ups",
                    SPEC.number
                ),
                panels: self.lr_panels(r, |e| e.train_loss, 1.0, true),
                cols,
            },
        )?;
        let mut gap = self.lr_panels(r, |e| e.train_eval_acc - e.test_acc, 100.0, false);
        share_y_scale(&mut gap);
        plot::save(
            &r.out.join("gap.png"),
            &Panels {
                title: format!(
                    "Exercise {}: generalisation gap, train minus test accuracy, both in evaluation mode",
                    SPEC.number
                ),
                panels: gap,
                cols,
            },
        )
    }

    /// One panel per learning rate of `f` per epoch (times `scale`): the
    /// training loss (`loss`, on a log axis where it spans decades) or the
    /// generalisation gap in points.
    fn lr_panels(
        &self,
        r: &Finished,
        f: fn(&EpochRow) -> f64,
        scale: f64,
        loss: bool,
    ) -> Vec<Panel> {
        let all = figures::epoch_series(r, f, scale);
        self.settings
            .lrs
            .iter()
            .map(|&lr| {
                let series: Vec<_> = all
                    .iter()
                    .zip(&r.groups)
                    .filter(|(_, g)| g.config().lr == lr)
                    .map(|(s, _)| s.clone())
                    .collect();
                let log = loss && figures::wants_log(&series);
                Panel {
                    title: format!("lr {lr}"),
                    x_label: "epoch".into(),
                    y_label: match (loss, log) {
                        (true, true) => "cross-entropy (log scale)".into(),
                        (true, false) => "cross-entropy".into(),
                        _ => "gap (percentage points)".into(),
                    },
                    series,
                    log_y: log,
                    legend_top: loss,
                    hlines: if loss {
                        Vec::new()
                    } else {
                        vec![("no gap".into(), 0.0)]
                    },
                    clip: Some(if loss {
                        (0.0, f64::INFINITY)
                    } else {
                        (-100.0, 100.0)
                    }),
                    ..Default::default()
                }
            })
            .collect()
    }

    /// At the rate of the accuracy questions, test accuracy with dropout
    /// minus without, per epoch, paired by seed, with its 95% CI.
    fn difference_panel(&self, r: &Finished) -> Panel {
        let lr = self.stable_lr();
        let points: Vec<(f64, f64, f64, f64)> = self
            .paired_by_epoch(r, 1)
            .iter()
            .map(|(e, est)| {
                (
                    *e as f64,
                    100.0 * est.mean,
                    100.0 * est.ci_low,
                    100.0 * est.ci_high,
                )
            })
            .collect();
        let series = if points.is_empty() {
            Vec::new()
        } else {
            vec![Series::band(
                format!("dropout − none at lr {lr} (mean, 95% CI)"),
                figures::kind_color(crate::regularizers::RegKind::Dropout),
                points,
            )]
        };
        Panel {
            title: format!("dropout − none at lr {lr}, paired by seed"),
            x_label: "epoch".into(),
            y_label: "difference in test accuracy (points)".into(),
            series,
            hlines: vec![("no difference".into(), 0.0)],
            ..Default::default()
        }
    }
}

/// Puts `panels` on one y scale, the union of their data's ranges.
fn share_y_scale(panels: &mut [Panel]) {
    let ranges: Vec<(f64, f64)> = panels.iter().map(|p| p.data_y_range()).collect();
    let shared = (
        ranges.iter().map(|r| r.0).fold(f64::INFINITY, f64::min),
        ranges.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max),
    );
    for p in panels {
        p.y_range = Some(shared);
    }
}
