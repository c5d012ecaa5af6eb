//! Exercise 2: longer training with and without dropout.
//!
//! Question: the book trains for 10 epochs. Over many more epochs, how do the
//! models with and without dropout compare: does the one without dropout
//! overfit (training accuracy rising while test accuracy stalls or falls),
//! and does dropout's advantage grow?
//!
//! The book's lr 0.5 confounds the answer: without dropout the network blows
//! up at that rate (its training loss jumps, some runs diverge or collapse),
//! so "dropout helps" could mean "dropout keeps lr 0.5 stable" as much as
//! "dropout regularises". The sweep therefore runs every configuration at
//! several learning rates; the accuracy questions are read at the smallest
//! (declared stable: the verdict checks that no run without dropout blew up
//! there), the blow-up question at the book's.
//!
//! Primary contrasts (declared in `contrasts`): at the stable rate, dropout
//! minus none on the end-of-training metric (mean test accuracy of the last
//! K epochs), and whether the generalisation gap grows more without dropout
//! (none minus dropout of the gap's growth from epoch 10 to the last K
//! epochs, one-sided); at the book's rate, the blow-up rate without minus
//! with dropout (Fisher's exact test).
//!
//! Hypothesis: without dropout the generalisation gap keeps widening and
//! test accuracy peaks early; at a stable rate dropout still ends ahead,
//! by less than at lr 0.5.
//!
//! Swept: the (p1, p2) pairs x learning rates of `experiments/longer.toml`,
//! for `--epochs` (default 50), x seeds.
//!
//! Outputs (besides the common CSVs): `verdict.md`; `curves.png` (test
//! accuracy per epoch, one panel per learning rate); `loss.png` (training
//! loss per epoch, one panel per learning rate: the blow-ups); `gap.png`
//! (evaluation-mode train minus test accuracy per epoch); `effects.png`.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, short, summary_table, write_verdict};
use super::settings::parse;
use super::spec::ExerciseSpec;
use super::{Common, Experiment, Finished};
use crate::analysis::{Group, Metric};
use crate::config::TrainConfig;
use crate::contrast::{Contrast, Measure};
use crate::output::plot::{self, Panel, Panels, Series};
use crate::record::ConfigKey;
use crate::record::EpochRow;
use crate::stats;

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "longer",
    number: 2,
    title: "Training longer, with and without dropout",
    question: "Over many more epochs than the book's ten, how do the networks with and without dropout compare, and does the gap between training and test accuracy grow without dropout?",
    about: "Exercise 2: with vs without dropout over long training: accuracy, gap, blow-ups?",
    examples: "drop-exp longer\n  drop-exp longer --epochs 100 --jobs 2\n  \
               drop-exp longer --epochs 15 --seeds 3 --train-subset 20000   # quick look",
    defaults: include_str!("../../experiments/longer.toml"),
    // Seeds planned for 80% power, at most 10: at 50 epochs a seed of the
    // stable rate's two configurations costs 100 run-epochs.
    report: "plan_seeds = true\nmax_seeds = 10\n",
    quick: "seeds = 2\nepochs = 10\ntrain_subset = 20000\ntest_subset = 5000\nlrs = [0.5, 0.1]\n",
    figures: &["effects.png", "curves.png", "gap.png"],
    flags: &[],
    // `--lr X` (or `lr` in a file) trains at X only.
    user_layer: super::spec::lr_replaces_lrs,
    build: |common, table| Ok(Box::new(Longer::new(common, parse(table)?))),
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// (p1, p2) pairs; the first is the reference.
    rates: Vec<[f64; 2]>,
    /// Learning rates, each with every pair; the first is the book's.
    lrs: Vec<f64>,
}

impl super::CheckSettings for Settings {
    fn check(&self) -> Result<(), String> {
        if self.rates.is_empty() {
            return Err("`rates` is empty; give at least one [p1, p2] pair".into());
        }
        if self.lrs.is_empty() {
            return Err("`lrs` is empty; give at least one learning rate".into());
        }
        if let Some(lr) = self.lrs.iter().find(|l| !(l.is_finite() && **l > 0.0)) {
            return Err(format!("`lrs` holds {lr}; each learning rate must be > 0"));
        }
        super::settings::check_probs("rates", self.rates.iter().flatten().copied())
    }
}

struct Longer {
    common: Common,
    settings: Settings,
}

impl Longer {
    fn new(common: Common, settings: Settings) -> Self {
        Self { common, settings }
    }
    /// Dropout at rates `p` and learning rate `lr`.
    fn config(&self, p: [f64; 2], lr: f64) -> TrainConfig {
        TrainConfig {
            lr,
            ..super::dropout_config(&self.common, p[0], p[1])
        }
    }
    fn key(&self, p: [f64; 2], lr: f64) -> ConfigKey {
        ConfigKey::sweep(self.config(p, lr))
    }
}

/// The label of rates (p1, p2) at learning rate `lr`.
fn label(p: [f64; 2], lr: f64) -> String {
    format!("{} lr={lr}", super::rates_label(p[0], p[1]))
}

impl Longer {
    /// `curves.png` (test accuracy), `loss.png` (training loss) and
    /// `gap.png`, one panel per learning rate.
    fn curves(&self, r: &Finished) -> Result<()> {
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
    /// minus without, per epoch, paired by seed over the seeds where both
    /// runs have the epoch, with its 95% CI.
    fn difference_panel(&self, r: &Finished) -> Panel {
        let reference = self.settings.rates[0];
        let mut series = Vec::new();
        if let Some(none) = self.none().filter(|&n| n != reference) {
            for lr in [self.stable_lr()] {
                let (Ok(with), Ok(without)) = (
                    r.group(&self.key(reference, lr)),
                    r.group(&self.key(none, lr)),
                ) else {
                    continue;
                };
                let epochs = self.common.base.epochs;
                let points: Vec<(f64, f64, f64, f64)> = (1..=epochs)
                    .filter_map(|e| {
                        let d: Vec<f64> = with
                            .runs
                            .iter()
                            .filter_map(|a| {
                                let b = without.runs.iter().find(|b| b.spec.seed == a.spec.seed)?;
                                Some(a.rows.get(e - 1)?.test_acc - b.rows.get(e - 1)?.test_acc)
                            })
                            .filter(|x| x.is_finite())
                            .collect();
                        (d.len() >= stats::MIN_RUNS_FOR_INTERVAL).then(|| {
                            let est = stats::Estimate::of(&d);
                            (
                                e as f64,
                                100.0 * est.mean,
                                100.0 * est.ci_low,
                                100.0 * est.ci_high,
                            )
                        })
                    })
                    .collect();
                series.push(Series::band(
                    format!("dropout − none at lr {lr} (mean, 95% CI)"),
                    figures::kind_color(crate::regularizers::RegKind::Dropout),
                    points,
                ));
            }
        }
        Panel {
            title: format!("dropout − none at lr {}, paired by seed", self.stable_lr()),
            x_label: "epoch".into(),
            y_label: "difference in test accuracy (points)".into(),
            series,
            hlines: vec![("no difference".into(), 0.0)],
            ..Default::default()
        }
    }

    /// The learning rate of the accuracy questions: the sweep's smallest.
    fn stable_lr(&self) -> f64 {
        super::stable_lr(&self.settings.lrs)
    }

    /// The rates without dropout, if swept.
    fn none(&self) -> Option<[f64; 2]> {
        self.settings
            .rates
            .iter()
            .copied()
            .find(|p| p[0] == 0.0 && p[1] == 0.0)
    }

    /// The epoch the gap's growth is measured from: the book's 10, or the
    /// first when the runs are too short for that.
    fn gap_from(&self) -> usize {
        let epochs = self.common.base.epochs;
        if epochs >= 10 + self.common.end_k() {
            10
        } else {
            1
        }
    }
}

/// "k of n (95% CI a-b%)" for a count of runs (no interval from fewer
/// than 3 runs).
fn rate(k: usize, n: usize) -> String {
    if n < stats::MIN_RUNS_FOR_INTERVAL {
        return format!("{k} of {n}");
    }
    let (lo, hi) = stats::clopper_pearson(k, n, 0.95);
    format!("{k} of {n} (95% CI {:.0}-{:.0}%)", 100.0 * lo, 100.0 * hi)
}

impl Experiment for Longer {
    super::experiment_accessors!(SPEC);
    fn configs(&self) -> Vec<(String, TrainConfig)> {
        let mut out = Vec::new();
        for &lr in &self.settings.lrs {
            for &p in &self.settings.rates {
                out.push((label(p, lr), self.config(p, lr)));
            }
        }
        out
    }
    fn contrasts(&self) -> Vec<Contrast> {
        let reference = self.settings.rates[0];
        let Some(none) = self.none().filter(|&n| n != reference) else {
            return Vec::new();
        };
        let lr = self.stable_lr();
        let sesoi = self.common.margin / 100.0;
        let (with, without) = (self.key(reference, lr), self.key(none, lr));
        let from = self.gap_from();
        let mut out = vec![
            Contrast::difference(
                "end",
                &format!("does dropout change accuracy at the end of long training (lr {lr})?"),
                with.clone(),
                without.clone(),
                Measure::Accuracy(Metric::End),
                sesoi,
            ),
            Contrast::difference(
                "gap_growth",
                &format!("does the train-test gap grow more without dropout (lr {lr})?"),
                without,
                with,
                Measure::GapGrowth { from },
                sesoi,
            )
            .greater(),
        ];
        let book = self.settings.lrs[0];
        if book != lr {
            out.push(Contrast::difference(
                "blowups",
                &format!("does dropout change how often training blows up (lr {book})?"),
                self.key(none, book),
                self.key(reference, book),
                Measure::BlowUp,
                0.0,
            ));
        }
        out
    }
    fn pairs(&self) -> Vec<(ConfigKey, ConfigKey)> {
        let reference = self.settings.rates[0];
        let mut out = Vec::new();
        for &lr in &self.settings.lrs {
            for &p in &self.settings.rates[1..] {
                out.push((self.key(reference, lr), self.key(p, lr)));
            }
        }
        out
    }
    fn conclude(&self, r: &Finished) -> Result<String> {
        self.curves(r)?;
        let accuracy: Vec<_> = r.primary().into_iter().filter(|c| !c.is_rate).collect();
        figures::effects(
            r,
            &r.out.join("effects.png"),
            &format!(
                "Exercise {}: {} epochs at lr {} (primary contrasts)",
                SPEC.number,
                self.common.base.epochs,
                self.stable_lr()
            ),
            "points of test accuracy (end-of-training mean, or gap growth)",
            &accuracy,
        )?;
        let answer = self.answer(r);
        write_verdict(r, answer, &self.verdict(r)?)
    }
}

impl Longer {
    fn answer(&self, r: &Finished) -> String {
        let lr = self.stable_lr();
        let Some(end) = r.contrast("end") else {
            return "No configuration without dropout was swept, so nothing is compared.".into();
        };
        let mut s = format!(
            "At lr {lr}, dropout minus none on the mean test accuracy of the last {} epochs: {}; the train-test gap's growth from epoch {} to the end, none minus dropout: {}.",
            r.end_k(),
            short(Some(end)),
            self.gap_from(),
            short(r.contrast("gap_growth")),
        );
        if let Some(c) = r.contrast("blowups") {
            s += &format!(
                " At the book's lr {}, the share of runs that blew up, none minus dropout: {}.",
                self.settings.lrs[0],
                short(Some(c))
            );
        }
        s
    }

    fn verdict(&self, r: &Finished) -> Result<String> {
        let mut v = format!(
            "# {}\n\n{}. Learning rates {:?} (the book's first); the accuracy questions are read at lr {}, the blow-up question at lr {}.\n\n",
            SPEC.heading(),
            seeds_note(&self.common),
            self.settings.lrs,
            self.stable_lr(),
            self.settings.lrs[0]
        );
        v += "## Stability by learning rate (exploratory)\n\n";
        v += "A run blew up when its training loss jumped by more than half in one epoch (whether or not it recovered), diverged (its loss stopped being a finite number) or collapsed (ended at chance). Intervals are 95% Clopper-Pearson over runs.\n\n";
        v += "| lr | configuration | blew up | diverged or collapsed |\n|---|---|---|---|\n";
        for &lr in &self.settings.lrs {
            for &p in &self.settings.rates {
                let g = r.group(&self.key(p, lr))?;
                v += &format!(
                    "| {lr} | {} | {} | {} |\n",
                    super::rates_label(p[0], p[1]),
                    rate(g.spiked(), g.runs.len()),
                    rate(g.failed(), g.runs.len()),
                );
            }
        }
        if let Some(none) = self.none() {
            let g = r.group(&self.key(none, self.stable_lr()))?;
            v += &if g.spiked() == 0 {
                format!("\nAt lr {}, no run without dropout blew up: the accuracy contrasts there measure dropout as a regulariser, not as a stabiliser.\n\n", self.stable_lr())
            } else {
                format!("\n**At lr {}, {} of {} runs without dropout blew up**: the accuracy contrasts there still mix stability into regularisation; add a smaller rate to `lrs`.\n\n", self.stable_lr(), g.spiked(), g.runs.len())
            };
        }
        v += "## Per configuration\n\n";
        let early = self.gap_from();
        for (g, s) in r.groups.iter().zip(&r.summary) {
            let gap = g.curve(|e| e.train_eval_acc - e.test_acc);
            if gap.is_empty() {
                v += &format!(
                    "- **{}**: every run diverged or collapsed; no gap to show.\n",
                    g.label
                );
                continue;
            }
            let gap_at = |epoch: usize| {
                gap.get(epoch.saturating_sub(1))
                    .map_or(f64::NAN, |(_, e)| e.mean)
            };
            v += &format!(
                "- **{}**: selected epoch {:.1} on average (of {}); gap (evaluation-mode train minus test accuracy, runs that neither diverged nor collapsed) {:+.2} points at epoch {early}, {:+.2} at epoch {}.\n",
                g.label,
                s.selected_epoch_mean,
                self.common.base.epochs,
                100.0 * gap_at(early),
                100.0 * gap_at(gap.len()),
                gap.len(),
            );
        }
        v += "\n";
        v += &summary_table(&r.summary);
        Ok(v)
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
