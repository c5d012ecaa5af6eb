//! Exercise 5: dropout against weight decay, and both together.
//!
//! Question: weight decay and dropout both regularise. Which helps this
//! model more, and when used together, do their gains add up, or does one
//! make the other redundant?
//!
//! Hypothesis: both shrink the effective capacity, so their gains overlap:
//! the gain of both together is less than the sum of the gains alone
//! (a negative, "diminishing" interaction), growing with the weight decay.
//!
//! Swept: dropout {off, the book's rates} x the weight decays of
//! `experiments/compare-wd.toml` (lambda in loss + lambda/2 ||w||^2), x seeds.
//!
//! Outputs (besides the common CSVs): `interaction.csv` with, per weight
//! decay, the per-seed interaction acc(both) - acc(dropout only) - acc(wd
//! only) + acc(neither) on the headline metric, its mean, 95% CI and p-value,
//! and a reading: additive (CI contains 0), diminishing (CI below 0) or
//! super-additive (CI above 0); `wd.png` (headline accuracy against weight
//! decay, a line per dropout setting, 95% CI bars); `curves.png`;
//! `verdict.md`.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::markdown::{seeds_note, summary_table, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, Flag, FlagValue};
use super::{Common, Experiment, Finished};
use crate::analysis::{describe, Metric, RunMetrics};
use crate::config::TrainConfig;
use crate::output::plot::{self, Panel, Series};
use crate::output::write_csv;
use crate::regularizers::Reg;
use crate::stats::{self, Estimate};

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "compare-wd",
    number: 5,
    title: "Dropout and weight decay",
    question: "Which helps this model more, dropout or weight decay, and when both are used, do their gains add up?",
    about: "Exercise 5: dropout against weight decay, and both together.",
    examples: "drop-exp compare-wd --epochs 50\n  drop-exp compare-wd --weight-decays 0,1e-4,1e-3\n  \
               drop-exp compare-wd --shard 1/2 --out part1   # then merge",
    defaults: include_str!("../../experiments/compare-wd.toml"),
    // Regularisation matters more the longer a model trains.
    report: "epochs = 50\n",
    quick: "seeds = 2\nepochs = 4\ntrain_subset = 20000\ntest_subset = 5000\nweight_decays = [0.0, 1e-4, 1e-3]\n",
    flags: &[Flag {
        long: "weight-decays",
        key: "weight_decays",
        help: "Comma-separated weight decays (lambda >= 0); 0 is always included as the baseline",
        value: FlagValue::NonNegatives,
    }],
    build: |common, table| Ok(Box::new(CompareWd::new(common, parse(table)?))),
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The dropout rates (p1, p2) of the "on" setting.
    pub dropout: [f64; 2],
    /// Weight decays; 0 is added if missing (it is the baseline).
    pub weight_decays: Vec<f64>,
}

impl super::CheckSettings for Settings {
    fn check(&self) -> Result<(), String> {
        super::settings::check_probs("dropout", self.dropout)?;
        if let Some(w) = self
            .weight_decays
            .iter()
            .find(|w| !(w.is_finite() && **w >= 0.0))
        {
            return Err(format!(
                "`weight_decays` holds {w}; each must be a finite number >= 0"
            ));
        }
        Ok(())
    }
}

pub struct CompareWd {
    common: Common,
    settings: Settings,
}

/// One row of `interaction.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct InteractionRow {
    pub weight_decay: f64,
    pub n: usize,
    pub dropout_gain: f64,
    pub wd_gain: f64,
    pub both_gain: f64,
    pub interaction_mean: f64,
    pub interaction_ci_low: f64,
    pub interaction_ci_high: f64,
    pub p: f64,
    pub reading: Reading,
}

/// What an interaction's interval says.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(into = "String")]
pub enum Reading {
    TooFewSeeds,
    /// The interval is wider than [`MAX_READABLE_CI`] (its width, in fractions).
    CannotTell {
        width: f64,
    },
    /// The interval contains 0.
    Additive,
    /// The interval lies below 0.
    Diminishing,
    /// The interval lies above 0.
    SuperAdditive,
}

impl std::fmt::Display for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reading::TooFewSeeds => f.write_str("too few seeds to tell"),
            Reading::CannotTell { width } => {
                write!(f, "cannot tell: the CI spans {:.1} points", 100.0 * width)
            }
            Reading::Additive => f.write_str("additive (CI contains 0)"),
            Reading::Diminishing => f.write_str("diminishing (CI below 0)"),
            Reading::SuperAdditive => f.write_str("super-additive (CI above 0)"),
        }
    }
}

impl From<Reading> for String {
    fn from(r: Reading) -> String {
        r.to_string()
    }
}

/// An interaction CI wider than this (10 points of accuracy) is reported as
/// "cannot tell" rather than "additive": it would contain almost any effect.
const MAX_READABLE_CI: f64 = 0.10;

fn label(dropout: bool, wd: f64) -> String {
    format!("dropout={} wd={wd:e}", if dropout { "on" } else { "off" })
}

impl CompareWd {
    pub fn new(common: Common, mut settings: Settings) -> Self {
        if !settings.weight_decays.contains(&0.0) {
            settings.weight_decays.insert(0, 0.0);
        }
        Self { common, settings }
    }

    /// Per weight decay > 0: the interaction of dropout and weight decay.
    pub fn interactions(&self, r: &Finished) -> Vec<InteractionRow> {
        let per_seed = |l: &str| -> Vec<(u64, RunMetrics)> { r.group(l).finished() };
        let (off0, on0) = (per_seed(&label(false, 0.0)), per_seed(&label(true, 0.0)));
        let mut out = Vec::new();
        for &wd in self.settings.weight_decays.iter().filter(|&&w| w > 0.0) {
            let (offw, onw) = (per_seed(&label(false, wd)), per_seed(&label(true, wd)));
            let find =
                |v: &[(u64, RunMetrics)], s: u64| v.iter().find(|x| x.0 == s).map(|x| x.1.last3);
            let mut inter = Vec::new();
            let (mut gd, mut gw, mut gb) = (Vec::new(), Vec::new(), Vec::new());
            for &(s, m) in &off0 {
                if let (Some(a), Some(b), Some(c)) = (find(&on0, s), find(&offw, s), find(&onw, s))
                {
                    let base = m.last3;
                    inter.push(c - a - b + base);
                    gd.push(a - base);
                    gw.push(b - base);
                    gb.push(c - base);
                }
            }
            let e = Estimate::of(&inter);
            let p = if e.n >= 2 {
                stats::two_sided_p(e.mean / (e.sd / (e.n as f64).sqrt()), e.n as f64 - 1.0)
            } else {
                f64::NAN
            };
            let reading = if e.n < 2 || e.ci_low.is_nan() {
                Reading::TooFewSeeds
            } else if e.ci_high - e.ci_low > MAX_READABLE_CI {
                Reading::CannotTell {
                    width: e.ci_high - e.ci_low,
                }
            } else if e.ci_low <= 0.0 && e.ci_high >= 0.0 {
                Reading::Additive
            } else if e.ci_high < 0.0 {
                Reading::Diminishing
            } else {
                Reading::SuperAdditive
            };
            out.push(InteractionRow {
                weight_decay: wd,
                n: e.n,
                dropout_gain: stats::mean(&gd),
                wd_gain: stats::mean(&gw),
                both_gain: stats::mean(&gb),
                interaction_mean: e.mean,
                interaction_ci_low: e.ci_low,
                interaction_ci_high: e.ci_high,
                p,
                reading,
            });
        }
        out
    }
}

impl Experiment for CompareWd {
    super::experiment_accessors!(SPEC);
    fn configs(&self) -> Vec<(String, TrainConfig)> {
        let base = &self.common.base;
        let [p1, p2] = self.settings.dropout;
        let mut out = Vec::new();
        for dropout in [false, true] {
            for &wd in &self.settings.weight_decays {
                let (q1, q2) = if dropout { (p1, p2) } else { (0.0, 0.0) };
                out.push((
                    label(dropout, wd),
                    TrainConfig {
                        weight_decay: wd,
                        ..base.with_layers([Reg::Dropout { p: q1 }, Reg::Dropout { p: q2 }])
                    },
                ));
            }
        }
        out
    }
    fn pairs(&self) -> Vec<(String, String)> {
        let neither = label(false, 0.0);
        let mut out = vec![(neither.clone(), label(true, 0.0))];
        for &wd in self.settings.weight_decays.iter().filter(|&&w| w > 0.0) {
            out.push((neither.clone(), label(false, wd)));
            out.push((neither.clone(), label(true, wd)));
            out.push((label(true, 0.0), label(true, wd)));
        }
        out
    }

    fn conclude(&self, r: &Finished) -> Result<()> {
        let inter = self.interactions(r);
        write_csv(&r.out.join("interaction.csv"), &inter)?;
        let wds = &self.settings.weight_decays;
        let series: Vec<Series> = [false, true]
            .iter()
            .map(|&d| {
                let name = if d {
                    format!("dropout {:?}", self.settings.dropout)
                } else {
                    "no dropout".into()
                };
                let labels: Vec<String> = wds.iter().map(|&wd| label(d, wd)).collect();
                super::figures::headline_line(r, name, &labels)
            })
            .collect();
        plot::panels(
            &r.out.join("wd.png"),
            &format!("Exercise {}: dropout and weight decay", SPEC.number),
            &[Panel {
                title: "test accuracy, mean of last 3 epochs (95% CI)".into(),
                x_label: "weight decay lambda".into(),
                y_label: "test accuracy".into(),
                series,
                x_ticks: Some(wds.iter().map(|w| format!("{w:e}")).collect()),
                ..Default::default()
            }],
            1,
        )?;
        super::figures::accuracy_curves(
            r,
            &r.out.join("curves.png"),
            &format!("Exercise {}: dropout x weight decay", SPEC.number),
        )?;
        write_verdict(r, &self.verdict(r, &inter))
    }
}

impl CompareWd {
    fn verdict(&self, r: &Finished, inter: &[InteractionRow]) -> String {
        let neither = label(false, 0.0);
        let mut v = format!(
            "# {}\n\n{}; headline metric: test accuracy averaged over each run's last 3 epochs; comparisons paired by seed against no regularisation ({neither}).\n\n",
            SPEC.heading(),
            seeds_note(&self.common)
        );
        if let Some(c) = r.comparison(&neither, &label(true, 0.0), Metric::Last3) {
            v += &format!("- Dropout alone: {}.\n", describe(c));
        }
        for &wd in self.settings.weight_decays.iter().filter(|&&w| w > 0.0) {
            if let Some(c) = r.comparison(&neither, &label(false, wd), Metric::Last3) {
                v += &format!("- Weight decay {wd:e} alone: {}.\n", describe(c));
            }
            if let Some(c) = r.comparison(&neither, &label(true, wd), Metric::Last3) {
                v += &format!("- Both (weight decay {wd:e}): {}.\n", describe(c));
            }
        }
        for &wd in self.settings.weight_decays.iter().filter(|&&w| w > 0.0) {
            if let Some(c) = r.comparison(&label(true, 0.0), &label(true, wd), Metric::Last3) {
                v += &format!(
                    "- Adding weight decay {wd:e} to dropout: {}.\n",
                    describe(c)
                );
            }
        }
        if let Some(best) = r
            .summary
            .iter()
            .filter(|s| s.n > 0)
            .max_by(|a, b| a.last3_mean.total_cmp(&b.last3_mean))
        {
            v += &format!(
                "\nBest configuration: {} at {:.2}% (mean of last 3 epochs).\n",
                best.config.label,
                100.0 * best.last3_mean
            );
        }
        v += "\n## Do the gains add up?\n\nInteraction = acc(both) - acc(dropout only) - acc(weight decay only) + acc(neither), per seed, on the headline metric.\n\n| weight decay | n | dropout gain | wd gain | both gain | interaction (95% CI) | p | reading |\n|---|---|---|---|---|---|---|---|\n";
        for i in inter {
            v += &format!(
                "| {:e} | {} | {:+.2} | {:+.2} | {:+.2} | {:+.2} ({:+.2} to {:+.2}) | {:.3} | {} |\n",
                i.weight_decay,
                i.n,
                100.0 * i.dropout_gain,
                100.0 * i.wd_gain,
                100.0 * i.both_gain,
                100.0 * i.interaction_mean,
                100.0 * i.interaction_ci_low,
                100.0 * i.interaction_ci_high,
                i.p,
                i.reading
            );
        }
        let widest = inter
            .iter()
            .map(|i| i.interaction_ci_high - i.interaction_ci_low)
            .fold(0.0, f64::max);
        if inter.iter().any(|i| i.n < 2) {
            v += "\nWith fewer than 2 seeds per cell the interaction cannot be tested; rerun with more `--seeds`.\n";
        } else if inter
            .iter()
            .any(|i| matches!(i.reading, Reading::CannotTell { .. }))
        {
            v += "\nWhere the reading is \"cannot tell\", the seeds disagree too much (see the collapsed and diverged runs below) for the interaction to be estimated; more seeds, or a smaller learning rate that stops the runs without dropout from blowing up, would be needed.\n";
        } else if inter.iter().all(|i| i.reading == Reading::Additive) {
            v += &format!(
                "\nNo interaction is distinguishable from zero: as far as {} seeds can tell (CI widths up to {:.2} points), the gains add up. An interaction smaller than that width would go unseen; more seeds narrow it.\n",
                self.common.seeds,
                100.0 * widest
            );
        }
        v += "\n(Points are percentage points of test accuracy.)\n\n";
        v += &summary_table(&r.summary);
        v
    }
}
