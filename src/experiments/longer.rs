//! Exercise 2: longer training with and without dropout.
//!
//! Question: the book trains for 10 epochs. Trained until the network
//! without dropout overfits, how do the networks with and without dropout
//! compare, at their best epoch and at the end of training, and does the
//! gap between training and test accuracy grow more without dropout?
//!
//! The regime: "train longer" is a question about overfitting, so the runs
//! must reach it. The network without dropout is said to overfit when its
//! evaluation-mode train-test gap averages at least [`OVERFIT_GAP`] over the
//! last K epochs and its end-of-training test accuracy is below its peak;
//! on the full training set it does not within 50 epochs, so
//! `experiments/longer.toml` trains on a stated smaller set for longer. The
//! answer says whether the regime was reached.
//!
//! The book's lr 0.5 confounds the answer: without dropout the network blows
//! up at that rate, so "dropout helps" could mean "dropout keeps lr 0.5
//! stable" as much as "dropout regularises". The accuracy questions are read
//! at the sweep's smallest rate (the verdict checks that no run without
//! dropout blew up there), the blow-up question at the book's.
//!
//! Primary contrasts (declared in `contrasts`), at the stable rate: dropout
//! minus none on the peak metric (test accuracy at the validation-selected
//! epoch) and on the end-of-training metric (mean test accuracy of the last
//! K epochs); none minus dropout of the gap's growth from epoch 10 to the
//! last K epochs (one-sided); at the book's rate, the blow-up rate without
//! minus with dropout (Fisher's exact test). Exploratory: the epoch from
//! which the two networks' test accuracies part.
//!
//! Hypothesis: without dropout the gap keeps widening and test loss rises
//! while test accuracy flattens; dropout ends ahead on the end-of-training
//! metric by more than at its peak.
//!
//! Swept: the (p1, p2) pairs x learning rates of `experiments/longer.toml`,
//! for its epochs, on its training subset, x seeds.
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
use crate::analysis::Metric;
use crate::config::TrainConfig;
use crate::contrast::{Contrast, Measure};
use crate::record::ConfigKey;
use crate::stats;

mod plots;

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "longer",
    number: 2,
    title: "Training longer, with and without dropout",
    question: "Over many more epochs than the book's ten, how do the networks with and without dropout compare, and does the gap between training and test accuracy grow without dropout?",
    about: "Exercise 2: with vs without dropout over long training: accuracy, gap, blow-ups?",
    examples: "drop-exp longer\n  drop-exp longer --epochs 400 --jobs 2\n  \
               drop-exp longer --epochs 40 --seeds 3 --train-subset 2000   # quick look",
    defaults: include_str!("../../experiments/longer.toml"),
    // Seeds planned for 80% power, at most 10: a seed of the stable rate's
    // two configurations costs 500 run-epochs on 5,000 images (about 3
    // minutes on two cores).
    report: "plan_seeds = true\nmax_seeds = 10\n",
    quick: "seeds = 2\nepochs = 20\ntrain_subset = 2000\ntest_subset = 5000\nlrs = [0.5, 0.1]\n",
    // Redeclared for the overfitting regime at a stable rate; the earlier
    // designs' runs are not analysed.
    declared: super::spec::Declaration {
        commit: "e944935",
        at: "2026-12-04T01:24:33Z",
        before: "Before it came the first design (every training image, 50 epochs, declared in a6507d4), which never reached overfitting; pilots of one or two seeds per configuration (not among these runs) that chose the training subset, the rate and the number of epochs; and the design of 768f1ce (the same subset, 200 epochs, lr 0.1), whose 22 runs showed every run without dropout blowing up at lr 0.1.",
    },
    figures: &["effects.png", "curves.png", "gap.png"],
    secondary: None,
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
    /// At the rate of the accuracy questions, test accuracy with dropout
    /// minus without, paired by seed over the seeds where both runs have a
    /// finite value: per epoch, the difference of the runs' mean test
    /// accuracy over the `window` epochs ending there (1: that epoch
    /// alone); (epoch, estimate), from the first full window, for the
    /// epochs with at least 3 pairs.
    fn paired_by_epoch(&self, r: &Finished, window: usize) -> Vec<(usize, stats::Estimate)> {
        let lr = self.stable_lr();
        let reference = self.settings.rates[0];
        let Some(none) = self.none().filter(|&n| n != reference) else {
            return Vec::new();
        };
        let (Ok(with), Ok(without)) = (
            r.group(&self.key(reference, lr)),
            r.group(&self.key(none, lr)),
        ) else {
            return Vec::new();
        };
        let w = window.max(1);
        let mean_to = |run: &crate::record::StoredRun, e: usize| -> Option<f64> {
            let rows = run.rows.get(e - w..e)?;
            Some(rows.iter().map(|row| row.test_acc).sum::<f64>() / w as f64)
        };
        (w..=self.common.base.epochs)
            .filter_map(|e| {
                let d: Vec<f64> = with
                    .runs
                    .iter()
                    .filter_map(|a| {
                        let b = without.runs.iter().find(|b| b.spec.seed == a.spec.seed)?;
                        Some(mean_to(a, e)? - mean_to(b, e)?)
                    })
                    .filter(|x| x.is_finite())
                    .collect();
                (d.len() >= stats::MIN_RUNS_FOR_INTERVAL).then(|| (e, stats::Estimate::of(&d)))
            })
            .collect()
    }

    /// The epoch from which the two networks part at the stable rate: the
    /// first from which, through the last epoch, the paired 95% interval
    /// of dropout minus none in test accuracy, each run's mean over the
    /// [`PART_WINDOW`] epochs ending there (single epochs swing by points),
    /// lies on one side of 0, with whether dropout is the one ahead. None
    /// when the last epoch's interval covers 0.
    fn parting(&self, r: &Finished) -> Option<(usize, bool)> {
        let d = self.paired_by_epoch(r, PART_WINDOW);
        let (_, last) = d.last()?;
        let ahead = last.ci_low > 0.0;
        if !ahead && last.ci_high >= 0.0 {
            return None;
        }
        let apart = |e: &stats::Estimate| {
            if ahead {
                e.ci_low > 0.0
            } else {
                e.ci_high < 0.0
            }
        };
        let first = d.iter().rev().take_while(|(_, e)| apart(e)).last()?;
        Some((first.0, ahead))
    }

    /// Whether the network without dropout overfits at the stable rate, per
    /// run: its evaluation-mode train-test gap at the end (mean of the last
    /// K epochs), and its end-of-training test accuracy minus its peak
    /// (test accuracy at the validation-selected epoch), over the runs that
    /// trained every epoch.
    fn overfitting(&self, r: &Finished) -> Option<(stats::Estimate, stats::Estimate)> {
        let none = self.none()?;
        let g = r.group(&self.key(none, self.stable_lr())).ok()?;
        let k = r.end_k();
        let complete = |run: &&&crate::record::StoredRun| {
            !run.diverged && run.rows.len() >= run.spec.config.epochs
        };
        let gaps: Vec<f64> = g
            .runs
            .iter()
            .filter(complete)
            .map(|run| {
                let tail = &run.rows[run.rows.len().saturating_sub(k.max(1))..];
                tail.iter()
                    .map(|e| e.train_eval_acc - e.test_acc)
                    .sum::<f64>()
                    / tail.len() as f64
            })
            .collect();
        let drops: Vec<f64> = g
            .runs
            .iter()
            .filter(complete)
            .filter_map(|run| Some(Metric::End.of_run(run, k)? - Metric::Selected.of_run(run, k)?))
            .collect();
        (!gaps.is_empty()).then(|| (stats::Estimate::of(&gaps), stats::Estimate::of(&drops)))
    }

    /// The mean test loss of the network without dropout at the stable
    /// rate: (the epoch of its minimum, the minimum, its last value).
    fn test_loss_turn(&self, r: &Finished) -> Option<(usize, f64, f64)> {
        let g = r.group(&self.key(self.none()?, self.stable_lr())).ok()?;
        let curve = g.curve(|e| e.test_loss);
        let (epoch, min) = curve
            .iter()
            .map(|(e, est)| (*e, est.mean))
            .filter(|(_, m)| m.is_finite())
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        Some((epoch, min, curve.last()?.1.mean))
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

/// The eval-mode train-test gap (a fraction) from which the network
/// without dropout is said to overfit, together with an end-of-training
/// test accuracy below its peak.
const OVERFIT_GAP: f64 = 0.08;

/// Epochs over which each run's test accuracy is averaged when finding the
/// epoch the two networks part.
const PART_WINDOW: usize = 10;

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
                "peak",
                &format!("does dropout change accuracy at its best epoch (lr {lr})?"),
                with.clone(),
                without.clone(),
                Measure::Accuracy(Metric::Selected),
                sesoi,
            ),
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
        let mut s = self.regime(r);
        s += &format!(
            " Dropout minus none at lr {lr}: on test accuracy at the validation-selected epoch (the peak metric), {}; on the mean test accuracy of the last {} epochs (the end-of-training metric), {}; the eval-mode train-test gap's growth from epoch {} to the end, none minus dropout: {}.",
            short(r.contrast("peak")),
            r.end_k(),
            short(Some(end)),
            self.gap_from(),
            short(r.contrast("gap_growth")),
        );
        s += &match self.parting(r) {
            Some((e, true)) => format!(" On test accuracy averaged over {PART_WINDOW} epochs, dropout is ahead from epoch {e} on (paired 95% interval above 0 at every later epoch)."),
            Some((e, false)) => format!(" On test accuracy averaged over {PART_WINDOW} epochs, the network without dropout is ahead from epoch {e} on (paired 95% interval below 0 at every later epoch)."),
            None => format!(" On test accuracy averaged over {PART_WINDOW} epochs, the two do not part by the last epoch (its paired 95% interval covers 0)."),
        };
        if let Some(c) = r.contrast("blowups") {
            s += &format!(
                " At the book's lr {}, the share of runs that blew up, none minus dropout: {}.",
                self.settings.lrs[0],
                short(Some(c))
            );
        }
        s
    }

    /// Whether the runs reach the regime the question is about, in a
    /// sentence: the network without dropout overfits when its end gap is
    /// at least [`OVERFIT_GAP`] and its end-of-training test accuracy is
    /// below its peak (the interval of the difference below 0).
    fn regime(&self, r: &Finished) -> String {
        let lr = self.stable_lr();
        let data = match self.common.train_subset {
            Some(n) => format!("the first {n} training images"),
            None => "the full training set".into(),
        };
        let Some((gap, drop)) = self.overfitting(r) else {
            return format!("At lr {lr} no run without dropout trained every epoch, so whether it overfits is not measured.");
        };
        let interval = |e: &stats::Estimate| {
            if e.n >= stats::MIN_RUNS_FOR_INTERVAL {
                format!(
                    "{:+.2} points (95% CI {:+.2} to {:+.2}, {} runs)",
                    100.0 * e.mean,
                    100.0 * e.ci_low,
                    100.0 * e.ci_high,
                    e.n
                )
            } else {
                format!(
                    "{:+.2} points ({} runs, too few for an interval)",
                    100.0 * e.mean,
                    e.n
                )
            }
        };
        let overfits = gap.mean >= OVERFIT_GAP && drop.ci_high < 0.0;
        let loss = match self.test_loss_turn(r) {
            Some((e, min, end)) if e < self.common.base.epochs => {
                format!(" Mean test loss lowest at epoch {e} ({min:.3}), {end:.3} at the end.")
            }
            Some((_, _, end)) => {
                format!(" Mean test loss still falling at the end ({end:.3}).")
            }
            None => String::new(),
        };
        let mut s = format!(
            "Trained {} epochs on {data} at lr {lr}, the network without dropout {}: eval-mode train-test gap {} over the last {} epochs; end-of-training test accuracy minus peak {}.",
            self.common.base.epochs,
            if overfits {
                "overfits"
            } else {
                "does not reach the overfitting regime asked about (a gap of at least 8 points and an end below its peak)"
            },
            interval(&gap),
            r.end_k(),
            interval(&drop),
        );
        s += &loss;
        s += &self.turn(r);
        s
    }

    /// Whether the network without dropout's test accuracy turned down: its
    /// mean validation-selected epoch against the end-of-training window.
    fn turn(&self, r: &Finished) -> String {
        let Some(none) = self.none() else {
            return String::new();
        };
        let key = self.key(none, self.stable_lr());
        let Some((_, s)) = r.groups.iter().zip(&r.summary).find(|(g, _)| g.is(&key)) else {
            return String::new();
        };
        let (epochs, k) = (self.common.base.epochs, r.end_k());
        let at = s.selected_epoch_mean;
        if !at.is_finite() {
            return String::new();
        }
        if at > (epochs - k.min(epochs)) as f64 {
            format!(" Its best validation epoch comes late ({at:.0} of {epochs} on average): test accuracy has not turned down; the end metric trails the peak because it averages {k} epochs, dips included.")
        } else {
            format!(" Its best validation epoch is {at:.0} of {epochs} on average, before the last {k}: test accuracy turned down after it.")
        }
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
                format!("\nAt lr {}, no run without dropout blew up, so blow-ups do not enter the accuracy contrasts there (whether dropout also smooths training at that rate is not tested).\n\n", self.stable_lr())
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
