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
//! Swept: dropout {off, the book's rates} x the weight decays x the
//! learning rates of `experiments/compare-wd.toml` (lambda in loss +
//! lambda/2 ||w||^2), x seeds. The book's lr 0.5 makes the network without
//! dropout blow up (exercise 2 measures it), which mixes "dropout keeps
//! training stable" into "dropout regularises"; so every comparison is made
//! at the book's rate and again at a rate where training without dropout is
//! stable, each rate its own set of comparisons.
//!
//! Outputs (besides the common CSVs): `interaction.csv` with, per learning
//! rate and weight decay, the per-seed interaction acc(both) - acc(dropout only) - acc(wd
//! only) + acc(neither) on the headline metric, its mean, 95% CI and p-value,
//! Holm-adjusted p and equivalence p, and a reading: additive (equivalent to 0
//! within the margin), diminishing (below 0), super-additive (above 0) or
//! undecided; `wd.png` (headline accuracy against weight
//! decay, a line per dropout setting, 95% CI bars); `curves.png`;
//! `verdict.md`.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, short, summary_table, tally, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, Flag, FlagValue};
use super::{Common, Experiment, Finished};
use crate::analysis::{Metric, RunMetrics};
use crate::config::TrainConfig;
use crate::output::plot::{self, Panel, Panels, Series};
use crate::output::write_csv;
use crate::regularizers::Reg;
use crate::regularizers::RegKind;
use crate::stats::{self, Estimate};
use crate::verdict::{describe, p_text, Comparison, ALPHA};

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "compare-wd",
    number: 5,
    title: "Dropout and weight decay",
    question: "Which helps this model more, dropout or weight decay, and when both are used, do their gains add up?",
    about: "Exercise 5: dropout against weight decay, and both together.",
    examples: "drop-exp compare-wd --epochs 50\n  drop-exp compare-wd --weight-decays 0,1e-4,1e-3\n  \
               drop-exp compare-wd --shard 1/2 --out part1   # then merge",
    defaults: include_str!("../../experiments/compare-wd.toml"),
    // Regularisation matters more the longer a model trains. Five seeds
    // only: at 50 epochs each seed costs 600 run-epochs, and the report's
    // 90-minute budget allows no second round (the verdict states the
    // precision reached against the target).
    report: "epochs = 50\ntarget_ci = 1.0\nmax_seeds = 5\n",
    quick: "seeds = 2\nepochs = 4\ntrain_subset = 20000\ntest_subset = 5000\nweight_decays = [0.0, 1e-4, 1e-3]\nlrs = [0.5, 0.1]\n",
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
    /// Learning rates, each a separate set of comparisons; the first is the
    /// book's.
    pub lrs: Vec<f64>,
}

impl super::CheckSettings for Settings {
    fn check(&self) -> Result<(), String> {
        super::settings::check_probs("dropout", self.dropout)?;
        if self.lrs.is_empty() {
            return Err("`lrs` is empty; give at least one learning rate".into());
        }
        if let Some(lr) = self.lrs.iter().find(|l| !(l.is_finite() && **l > 0.0)) {
            return Err(format!("`lrs` holds {lr}; each learning rate must be > 0"));
        }
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
    pub lr: f64,
    pub weight_decay: f64,
    pub n: usize,
    pub dropout_gain: f64,
    pub wd_gain: f64,
    pub both_gain: f64,
    pub interaction_mean: f64,
    pub interaction_ci_low: f64,
    pub interaction_ci_high: f64,
    pub p: f64,
    /// `p` adjusted by Holm over the learning rates and weight decays.
    pub p_holm: f64,
    /// TOST p-value of "interaction within +/- margin", Holm-adjusted likewise.
    pub p_equiv: f64,
    pub reading: Reading,
}

/// What an interaction says, after Holm's correction over the weight
/// decays and with equivalence to 0 tested at the margin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(into = "String")]
pub enum Reading {
    /// Fewer than 3 seeds where all four configurations finished.
    TooFewSeeds,
    /// Equivalent to 0 within the margin: the gains add up.
    Additive,
    /// Below 0: the gains overlap or cancel.
    Diminishing,
    /// Above 0: together they gain more than the sum.
    SuperAdditive,
    /// None of these yet; `seeds` would decide it at the measured spread.
    Undecided { seeds: Option<usize> },
}

impl std::fmt::Display for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reading::TooFewSeeds => f.write_str("too few seeds to tell"),
            Reading::Additive => f.write_str("additive (equivalent to 0)"),
            Reading::Diminishing => f.write_str("diminishing or cancelling (below 0)"),
            Reading::SuperAdditive => f.write_str("super-additive (above 0)"),
            Reading::Undecided { seeds: Some(n) } => {
                write!(f, "undecided ({n} seeds would decide it)")
            }
            Reading::Undecided { seeds: None } => f.write_str("undecided"),
        }
    }
}

impl From<Reading> for String {
    fn from(r: Reading) -> String {
        r.to_string()
    }
}

fn label(dropout: bool, wd: f64, lr: f64) -> String {
    format!(
        "dropout={} wd={} lr={lr}",
        if dropout { "on" } else { "off" },
        crate::output::plot::scientific(wd)
    )
}

impl CompareWd {
    pub fn new(common: Common, mut settings: Settings) -> Self {
        if !settings.weight_decays.contains(&0.0) {
            settings.weight_decays.insert(0, 0.0);
        }
        Self { common, settings }
    }

    /// Per learning rate and weight decay > 0: the interaction of dropout
    /// and weight decay.
    pub fn interactions(&self, r: &Finished) -> Vec<InteractionRow> {
        let mut out = Vec::new();
        let mut sds = Vec::new();
        for &lr in &self.settings.lrs {
            self.interactions_at(r, lr, &mut out, &mut sds);
        }
        self.read(&mut out, &sds);
        out
    }

    fn interactions_at(
        &self,
        r: &Finished,
        lr: f64,
        out: &mut Vec<InteractionRow>,
        sds: &mut Vec<f64>,
    ) {
        let per_seed = |l: &str| -> Vec<(u64, RunMetrics)> { r.group(l).finished() };
        let (off0, on0) = (
            per_seed(&label(false, 0.0, lr)),
            per_seed(&label(true, 0.0, lr)),
        );
        for &wd in self.settings.weight_decays.iter().filter(|&&w| w > 0.0) {
            let (offw, onw) = (
                per_seed(&label(false, wd, lr)),
                per_seed(&label(true, wd, lr)),
            );
            let find = |v: &[(u64, RunMetrics)], s: u64| {
                v.iter()
                    .find(|x| x.0 == s)
                    .map(|x| Metric::HEADLINE.of(&x.1))
            };
            let mut inter = Vec::new();
            let (mut gd, mut gw, mut gb) = (Vec::new(), Vec::new(), Vec::new());
            for &(s, m) in &off0 {
                if let (Some(a), Some(b), Some(c)) = (find(&on0, s), find(&offw, s), find(&onw, s))
                {
                    let base = Metric::HEADLINE.of(&m);
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
            out.push(InteractionRow {
                lr,
                weight_decay: wd,
                n: e.n,
                dropout_gain: stats::mean(&gd),
                wd_gain: stats::mean(&gw),
                both_gain: stats::mean(&gb),
                interaction_mean: e.mean,
                interaction_ci_low: e.ci_low,
                interaction_ci_high: e.ci_high,
                p,
                p_holm: f64::NAN,
                p_equiv: f64::NAN,
                reading: Reading::TooFewSeeds,
            });
            sds.push(e.sd);
        }
    }

    /// Holm over every learning rate and weight decay, TOST at the margin,
    /// and the reading.
    fn read(&self, rows: &mut [InteractionRow], sds: &[f64]) {
        let margin = self.common.margin / 100.0;
        let enough = |r: &InteractionRow| r.n >= stats::MIN_RUNS_FOR_INTERVAL;
        let se = |r: &InteractionRow, sd: f64| sd / (r.n as f64).sqrt();
        let p: Vec<f64> = rows
            .iter()
            .map(|r| if enough(r) { r.p } else { f64::NAN })
            .collect();
        let p_eq: Vec<f64> = rows
            .iter()
            .zip(sds)
            .map(|(r, &sd)| {
                if enough(r) {
                    stats::tost(r.interaction_mean, se(r, sd), r.n as f64 - 1.0, margin)
                } else {
                    f64::NAN
                }
            })
            .collect();
        let (p_holm, p_eq_holm) = (stats::holm(&p), stats::holm(&p_eq));
        let k = rows.len().max(1) as f64;
        for (i, r) in rows.iter_mut().enumerate() {
            r.p_holm = p_holm[i];
            r.p_equiv = p_eq_holm[i];
            r.reading = if !enough(r) {
                Reading::TooFewSeeds
            } else if r.p_holm < ALPHA {
                if r.interaction_mean < 0.0 {
                    Reading::Diminishing
                } else {
                    Reading::SuperAdditive
                }
            } else if r.p_equiv < ALPHA {
                Reading::Additive
            } else {
                Reading::Undecided {
                    seeds: stats::seeds_to_decide(
                        r.interaction_mean,
                        sds[i],
                        margin,
                        ALPHA / k,
                        200,
                    ),
                }
            };
        }
    }
}

impl Experiment for CompareWd {
    super::experiment_accessors!(SPEC);
    fn configs(&self) -> Vec<(String, TrainConfig)> {
        let base = &self.common.base;
        let [p1, p2] = self.settings.dropout;
        let mut out = Vec::new();
        for &lr in &self.settings.lrs {
            for dropout in [false, true] {
                for &wd in &self.settings.weight_decays {
                    let (q1, q2) = if dropout { (p1, p2) } else { (0.0, 0.0) };
                    out.push((
                        label(dropout, wd, lr),
                        TrainConfig {
                            weight_decay: wd,
                            lr,
                            ..base.with_layers([Reg::Dropout { p: q1 }, Reg::Dropout { p: q2 }])
                        },
                    ));
                }
            }
        }
        out
    }
    fn pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for &lr in &self.settings.lrs {
            let neither = label(false, 0.0, lr);
            out.push((neither.clone(), label(true, 0.0, lr)));
            for &wd in self.settings.weight_decays.iter().filter(|&&w| w > 0.0) {
                out.push((neither.clone(), label(false, wd, lr)));
                out.push((neither.clone(), label(true, wd, lr)));
                out.push((label(true, 0.0, lr), label(true, wd, lr)));
            }
        }
        out
    }

    fn conclude(&self, r: &Finished) -> Result<String> {
        let inter = self.interactions(r);
        write_csv(&r.out.join("interaction.csv"), &inter)?;
        self.wd_figure(r)?;
        let primary = r.primary();
        figures::effects(
            r,
            &r.out.join("effects.png"),
            &format!(
                "Exercise {}: dropout and weight decay, paired differences",
                SPEC.number
            ),
            &primary,
            |c| format!("{} vs {}", c.b, c.a),
        )?;
        figures::accuracy_panels(
            r,
            &r.out.join("curves.png"),
            &format!(
                "Exercise {}: test accuracy, without and with dropout",
                SPEC.number
            ),
            |g| {
                let with = if g.config.layers.iter().any(|l| l.p() > 0.0) {
                    "with"
                } else {
                    "without"
                };
                Some(format!(
                    "lr {}, {with} dropout, by weight decay",
                    g.config.lr
                ))
            },
        )?;
        let answer = self
            .settings
            .lrs
            .iter()
            .map(|&lr| self.answer_at(r, &primary, &inter, lr))
            .collect::<Vec<_>>()
            .join(" ");
        write_verdict(r, answer, &self.verdict(r, &inter))
    }
}

impl CompareWd {
    /// The answer at one learning rate.
    fn answer_at(
        &self,
        r: &Finished,
        primary: &[&Comparison],
        inter: &[InteractionRow],
        lr: f64,
    ) -> String {
        let neither = label(false, 0.0, lr);
        let dropout = r.comparison(&neither, &label(true, 0.0, lr), Metric::HEADLINE);
        let at_lr = |c: &&&Comparison| c.a.ends_with(&format!(" lr={lr}"));
        let wd_alone: Vec<&Comparison> = primary
            .iter()
            .filter(at_lr)
            .copied()
            .filter(|c| c.a == neither && c.b.starts_with("dropout=off"))
            .collect();
        let added: Vec<&Comparison> = primary
            .iter()
            .filter(at_lr)
            .copied()
            .filter(|c| c.a == label(true, 0.0, lr))
            .collect();
        let readings: Vec<String> = inter
            .iter()
            .filter(|i| i.lr == lr)
            .map(|i| format!("{}: {}", plot::scientific(i.weight_decay), i.reading))
            .collect();
        format!(
            "At lr {lr}: dropout alone {}; weight decay alone {}; adding weight decay to dropout {}; do the gains add up (by weight decay)? {}.",
            dropout.map_or("not compared".into(), short),
            tally(&wd_alone),
            tally(&added),
            readings.join("; ")
        )
    }

    /// `wd.png`: headline accuracy against weight decay, with and without
    /// dropout, one panel per learning rate.
    fn wd_figure(&self, r: &Finished) -> Result<()> {
        let panels = self
            .settings
            .lrs
            .iter()
            .map(|&lr| self.wd_panel(r, lr))
            .collect();
        plot::save(
            &r.out.join("wd.png"),
            &Panels {
                title: format!(
                    "Exercise {}: dropout and weight decay, test accuracy at the epoch selected on validation",
                    SPEC.number
                ),
                panels,
                cols: self.settings.lrs.len().min(2),
            },
        )
    }

    fn wd_panel(&self, r: &Finished, lr: f64) -> Panel {
        let wds = &self.settings.weight_decays;
        let series: Vec<Series> = [false, true]
            .iter()
            .map(|&d| {
                let (name, color) = if d {
                    (
                        format!("dropout {:?}", self.settings.dropout),
                        figures::kind_color(RegKind::Dropout),
                    )
                } else {
                    ("no dropout".into(), figures::WEIGHT_DECAY)
                };
                let labels: Vec<String> = wds.iter().map(|&wd| label(d, wd, lr)).collect();
                figures::headline_line(r, name, color, &labels)
            })
            .collect();
        Panel {
            title: format!("lr {lr}"),
            x_label: "weight decay lambda".into(),
            y_label: "test accuracy (%) at the selected epoch, 95% CI".into(),
            series,
            x_ticks: Some(wds.iter().map(|&w| plot::scientific(w)).collect()),
            clip: Some((0.0, 100.0)),
            ..Default::default()
        }
    }

    fn verdict(&self, r: &Finished, inter: &[InteractionRow]) -> String {
        let mut v = format!(
            "# {}\n\n{}. Learning rates {:?}: the book's, at which the network without dropout blows up, and a smaller one (exercise 2 measures where it stops blowing up); at each, comparisons are paired by seed against no regularisation at that rate.\n\n",
            SPEC.heading(),
            seeds_note(&self.common),
            self.settings.lrs
        );
        for &lr in &self.settings.lrs {
            v += &format!("## At lr {lr}\n\n");
            v += &self.comparisons_at(r, lr);
            v += "\n";
        }
        v += "## Do the gains add up?\n\nInteraction = acc(both) - acc(dropout only) - acc(weight decay only) + acc(neither), per seed, on the headline metric, at each learning rate.\n\n| lr | weight decay | n | dropout gain | wd gain | both gain | interaction (95% CI) | Holm p | equivalence p | reading |\n|---|---|---|---|---|---|---|---|---|---|\n";
        for i in inter {
            v += &format!(
                "| {} | {:e} | {} | {:+.2} | {:+.2} | {:+.2} | {:+.2} ({}) | {} | {} | {} |\n",
                i.lr,
                i.weight_decay,
                i.n,
                100.0 * i.dropout_gain,
                100.0 * i.wd_gain,
                100.0 * i.both_gain,
                100.0 * i.interaction_mean,
                if i.interaction_ci_low.is_nan() {
                    "too few runs".to_string()
                } else {
                    format!(
                        "{:+.2} to {:+.2}",
                        100.0 * i.interaction_ci_low,
                        100.0 * i.interaction_ci_high
                    )
                },
                p_text(i.p_holm),
                p_text(i.p_equiv),
                i.reading
            );
        }
        if inter.iter().any(|i| i.reading == Reading::TooFewSeeds) {
            v += "\nWith fewer than 3 seeds where all four configurations finished, an interaction is not tested; rerun with more `--seeds`.\n";
        }
        if inter
            .iter()
            .any(|i| matches!(i.reading, Reading::Undecided { .. }))
        {
            v += "\nAn undecided interaction is neither shown to differ from 0 nor to lie within the margin; the seeds named would decide it at the measured spread. Runs without dropout at lr 0.5 blow up, diverge or collapse (see Stability below), which widens these intervals.\n";
        }
        v += &format!(
            "\nReadings: additive (the interaction is equivalent to 0 within ±{:.2} points), diminishing or cancelling (below 0), super-additive (above 0), each after Holm's correction over the learning rates and weight decays.\n",
            self.common.margin
        );
        v += "\n(Points are percentage points of test accuracy.)\n\n";
        v += &summary_table(&r.summary);
        v
    }

    /// The comparisons at one learning rate, described.
    fn comparisons_at(&self, r: &Finished, lr: f64) -> String {
        let neither = label(false, 0.0, lr);
        let g = r.group(&neither);
        let mut v = format!(
            "Runs without any regularisation whose training loss blew up (jumped by more than half in an epoch, or diverged): {} of {}; diverged or collapsed: {}.\n\n",
            g.spiked(),
            g.runs.len(),
            g.failed()
        );
        let m = Metric::HEADLINE;
        if let Some(c) = r.comparison(&neither, &label(true, 0.0, lr), m) {
            v += &format!("- Dropout alone: {}.\n", describe(c));
        }
        for &wd in self.settings.weight_decays.iter().filter(|&&w| w > 0.0) {
            if let Some(c) = r.comparison(&neither, &label(false, wd, lr), m) {
                v += &format!("- Weight decay {wd:e} alone: {}.\n", describe(c));
            }
            if let Some(c) = r.comparison(&neither, &label(true, wd, lr), m) {
                v += &format!("- Both (weight decay {wd:e}): {}.\n", describe(c));
            }
        }
        for &wd in self.settings.weight_decays.iter().filter(|&&w| w > 0.0) {
            if let Some(c) = r.comparison(&label(true, 0.0, lr), &label(true, wd, lr), m) {
                v += &format!(
                    "- Adding weight decay {wd:e} to dropout: {}.\n",
                    describe(c)
                );
            }
        }
        v
    }
}
