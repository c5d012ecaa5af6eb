//! Figures several exercises share: headline accuracy per configuration,
//! and curves per epoch (mean over seeds with a 95% band).

use std::path::Path;

use anyhow::Result;

use super::Finished;
use crate::output::plot::{panels, Panel, Series, Spread};
use crate::train::EpochRow;

/// The headline accuracy of each configuration with its 95% CI, as bars.
pub fn headline_bars(r: &Finished) -> Vec<(String, f64, f64, f64)> {
    r.summary
        .iter()
        .map(|s| {
            (
                s.config.label.clone(),
                s.last3_mean,
                s.last3_ci_low,
                s.last3_ci_high,
            )
        })
        .collect()
}

/// A line over categories (x = 0, 1, ...) of the headline accuracy of the
/// configurations labelled `labels`, with 95% CI bars.
pub fn headline_line(r: &Finished, name: String, labels: &[String]) -> Series {
    Series {
        name,
        points: labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let s = r
                    .summary
                    .iter()
                    .find(|s| s.config.label == *l)
                    .expect("a swept configuration");
                (i as f64, s.last3_mean, s.last3_ci_low, s.last3_ci_high)
            })
            .collect(),
        spread: Spread::Bars,
        dashed: false,
    }
}

/// One series per configuration: `f` per epoch, mean over seeds with its 95% band.
pub fn epoch_series(r: &Finished, f: fn(&EpochRow) -> f64) -> Vec<Series> {
    r.groups
        .iter()
        .map(|g| {
            Series::band(
                g.label.clone(),
                g.curve(f)
                    .into_iter()
                    .map(|(e, est)| (e as f64, est.mean, est.ci_low, est.ci_high))
                    .collect(),
            )
        })
        .collect()
}

/// The curves plot (test accuracy per epoch, mean with 95% band) of groups.
pub fn accuracy_curves(r: &Finished, path: &Path, title: &str) -> Result<()> {
    let series = |f| epoch_series(r, f);
    let test = Panel {
        title: "test accuracy (eval mode)".into(),
        x_label: "epoch".into(),
        y_label: "accuracy".into(),
        series: series(|e| e.test_acc),
        clip: Some((0.0, 1.0)),
        ..Default::default()
    };
    let train = Panel {
        title: "train loss (training mode)".into(),
        x_label: "epoch".into(),
        y_label: "cross-entropy".into(),
        series: series(|e| e.train_loss),
        log_y: true,
        clip: Some((1e-3, f64::INFINITY)),
        ..Default::default()
    };
    panels(path, title, &[test, train], 2)
}
