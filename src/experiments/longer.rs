//! Exercise 2: longer training with and without dropout.
//!
//! Question: the book trains for 10 epochs. Over many more epochs, how do the
//! models with and without dropout compare: does the one without dropout
//! overfit (train accuracy rising while test accuracy stalls or falls), and
//! does dropout's advantage grow?
//!
//! Hypothesis: without dropout the generalisation gap keeps widening and test
//! accuracy peaks early; with dropout the gap stays small and test accuracy
//! keeps improving, so the difference grows with the budget.
//!
//! Swept: the (p1, p2) pairs of `experiments/longer.toml` (book's rates and
//! none) for `--epochs` (default 50), x seeds.
//!
//! Outputs (besides the common CSVs): `verdict.md`; `curves.png` (train and
//! test loss and accuracy per epoch, mean and 95% band); `gap.png` (train
//! minus test accuracy per epoch). The verdict reports final and best-epoch
//! accuracy, where each configuration peaks, how the gap evolves and the
//! blow-ups seen (epochs where the training loss jumps by more than half).

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, short, summary_table, write_verdict};
use super::settings::parse;
use super::spec::ExerciseSpec;
use super::{Common, Experiment, Finished};
use crate::analysis::{describe, Group, Metric};
use crate::config::TrainConfig;
use crate::output::plot::{self, Panel, Panels};
use crate::train::EpochRow;

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "longer",
    number: 2,
    title: "Training longer, with and without dropout",
    question: "Over many more epochs than the book's ten, how do the networks with and without dropout compare, and does the gap between training and test accuracy grow without dropout?",
    about: "Exercise 2: train longer (default 50 epochs) with and without dropout.",
    examples: "drop-exp longer\n  drop-exp longer --epochs 100 --jobs 2\n  \
               drop-exp longer --epochs 15 --seeds 3 --train-subset 20000   # quick look",
    defaults: include_str!("../../experiments/longer.toml"),
    report: "",
    quick: "seeds = 2\nepochs = 10\ntrain_subset = 20000\ntest_subset = 5000\n",
    flags: &[],
    build: |common, table| Ok(Box::new(Longer::new(common, parse(table)?))),
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// (p1, p2) pairs; the first is the reference.
    pub rates: Vec<[f64; 2]>,
}

impl super::CheckSettings for Settings {
    fn check(&self) -> Result<(), String> {
        if self.rates.is_empty() {
            return Err("`rates` is empty; give at least one [p1, p2] pair".into());
        }
        super::settings::check_probs("rates", self.rates.iter().flatten().copied())
    }
}

pub struct Longer {
    common: Common,
    settings: Settings,
}

impl Longer {
    pub fn new(common: Common, settings: Settings) -> Self {
        Self { common, settings }
    }
}

impl Longer {
    /// `curves.png` (losses and accuracies per epoch) and `gap.png`.
    fn curves(&self, r: &Finished) -> Result<()> {
        let panel = |title: &str, f: fn(&EpochRow) -> f64, loss: bool| {
            let series = figures::epoch_series(r, f, if loss { 1.0 } else { 100.0 });
            // Losses span orders of magnitude when a run blows up.
            let log = loss && figures::wants_log(&series);
            Panel {
                title: title.into(),
                x_label: "epoch".into(),
                y_label: match (loss, log) {
                    (true, true) => "cross-entropy (log scale)".into(),
                    (true, false) => "cross-entropy".into(),
                    _ => "accuracy (%)".into(),
                },
                series,
                log_y: log,
                legend_top: loss,
                clip: Some(if loss {
                    (0.0, f64::INFINITY)
                } else {
                    (0.0, 100.0)
                }),
                ..Default::default()
            }
        };
        plot::save(
            &r.out.join("curves.png"),
            &Panels {
                title: format!(
                    "Exercise {}: longer training, with and without dropout (runs thin, mean bold, 95% band)",
                    SPEC.number
                ),
                panels: vec![
                    panel("train loss (training mode)", |e| e.train_loss, true),
                    panel("test loss (evaluation mode)", |e| e.test_loss, true),
                    panel("train accuracy (training mode)", |e| e.train_acc, false),
                    panel("test accuracy (evaluation mode)", |e| e.test_acc, false),
                ],
                cols: 2,
            },
        )?;
        plot::save(
            &r.out.join("gap.png"),
            &Panels {
                title: format!(
                    "Exercise {}: generalisation gap (runs thin, mean bold, 95% band)",
                    SPEC.number
                ),
                panels: vec![Panel {
                    title: "train accuracy (training mode) minus test accuracy".into(),
                    x_label: "epoch".into(),
                    y_label: "gap (percentage points)".into(),
                    series: figures::epoch_series(r, |e| e.train_acc - e.test_acc, 100.0),
                    hlines: vec![("no gap".into(), 0.0)],
                    clip: Some((-100.0, 100.0)),
                    ..Default::default()
                }],
                cols: 1,
            },
        )?;
        Ok(())
    }
}

/// Epochs, over all runs of a group, where the training loss rose by more
/// than half relative to the previous epoch.
pub fn blowups(g: &Group) -> usize {
    g.runs
        .iter()
        .map(|r| {
            r.rows
                .windows(2)
                .filter(|w| w[1].train_loss > 1.5 * w[0].train_loss || w[1].train_loss.is_nan())
                .count()
        })
        .sum()
}

impl Experiment for Longer {
    super::experiment_accessors!(SPEC);
    fn configs(&self) -> Vec<(String, TrainConfig)> {
        super::rate_configs(&self.common, &self.settings.rates)
    }
    fn pairs(&self) -> Vec<(String, String)> {
        super::first_vs_rest(&self.configs())
    }
    fn conclude(&self, r: &Finished) -> Result<String> {
        self.curves(r)?;
        let primary = r.primary();
        figures::effects(
            r,
            &r.out.join("effects.png"),
            &format!(
                "Exercise {}: after {} epochs",
                SPEC.number, self.common.base.epochs
            ),
            &primary,
            |c| format!("{} vs {}", c.b, c.a),
        )?;
        let answer = match primary.first() {
            Some(c) => format!(
                "After {} epochs, {} minus {}: {}.",
                self.common.base.epochs,
                c.b,
                c.a,
                short(c)
            ),
            None => "Nothing was compared.".into(),
        };
        write_verdict(r, answer, &self.verdict(r))
    }
}

impl Longer {
    fn verdict(&self, r: &Finished) -> String {
        let mut v = format!(
            "# {}\n\n{}; headline metric: test accuracy averaged over each run's last 3 epochs; comparisons paired by seed.\n\n",
            SPEC.heading(),
            seeds_note(&self.common)
        );
        for (a, b) in self.pairs() {
            for (m, what) in [
                (Metric::Last3, "over the last 3 epochs"),
                (Metric::Final, "at the final epoch"),
                (
                    Metric::Best,
                    "at each run's best epoch (chosen on the test set, so biased upwards)",
                ),
            ] {
                if let Some(c) = r.comparison(&a, &b, m) {
                    v += &format!("- {b} minus {a}, test accuracy {what}: {}.\n", describe(c));
                }
            }
        }
        v += "\n";
        let early = 10.min(self.common.base.epochs);
        for g in &r.groups {
            let s = r
                .summary
                .iter()
                .find(|s| s.config.label == g.label)
                .unwrap();
            let gap = g.curve(|e| e.train_acc - e.test_acc);
            let gap_at = |epoch: usize| {
                gap.get(epoch.saturating_sub(1))
                    .map_or(f64::NAN, |(_, e)| e.mean)
            };
            let test = g.curve(|e| e.test_acc);
            let peak = test
                .iter()
                .max_by(|a, b| a.1.mean.total_cmp(&b.1.mean))
                .map_or(0, |(e, _)| *e);
            v += &format!(
                "- **{}**: final test accuracy {:.2}%, best {:.2}% (runs peak at epoch {:.1} on average; the mean curve peaks at epoch {peak}). Gap (train - test accuracy) {:+.2} points at epoch {early}, {:+.2} at epoch {}. Training-loss blow-ups (loss up by more than half in one epoch): {}; diverged runs: {}; collapsed runs: {}.\n",
                g.label,
                100.0 * s.final_mean,
                100.0 * s.best_mean,
                s.best_epoch_mean,
                100.0 * gap_at(early),
                100.0 * gap_at(gap.len()),
                gap.len(),
                blowups(g),
                s.n_diverged,
                s.n_collapsed,
            );
        }
        v += "\n";
        v += &summary_table(&r.summary);
        v
    }
}
