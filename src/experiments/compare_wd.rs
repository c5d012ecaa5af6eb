//! Exercise 5: dropout against weight decay, and both together.
//!
//! Question: weight decay and dropout both regularise. Which helps this
//! model more, and when used together, do their gains add up, or does one
//! make the other redundant?
//!
//! Hypothesis: both shrink the effective capacity, so their gains overlap
//! (a negative, "diminishing" interaction).
//!
//! Swept: dropout {off, the book's rates} x the weight decays x the
//! learning rates of `experiments/compare-wd.toml` (lambda in loss +
//! lambda/2 ||w||^2), x seeds. At the book's lr 0.5 the network without
//! dropout blows up, which mixes "dropout keeps training stable" into
//! "dropout regularises"; the accuracy questions are read at the sweep's
//! smallest rate, the blow-up questions at the book's.
//!
//! Weight decay is a tuned hyperparameter: for each dropout setting and
//! rate, the value of the grid with the best validation accuracy over the
//! last K epochs ([`CompareWd::tuned`]). The tuned configurations are then
//! retrained on fresh seeds ([`Experiment::confirm`]), and the primary
//! accuracy contrasts read those, on the end-of-training metric: weight
//! decay alone, both together, dropout against weight decay, and the
//! interaction (both - dropout - weight decay + neither, margin
//! [`INTERACTION_MARGIN`] of the others'); at the book's rate, adding weight
//! decay to dropout. The main sweep answers the blow-up questions at the
//! book's rate and gives every value of the grid as exploratory rows.
//!
//! Outputs (besides the common CSVs): `wd.png` (accuracy against weight
//! decay, a line per dropout setting, a panel per learning rate);
//! `effects.png` (the primary accuracy contrasts); `curves.png`;
//! `verdict.md`.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, summary_table, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, Flag, FlagValue};
use super::{Common, Confirmation, Experiment, Finished};
use crate::analysis::Metric;
use crate::config::TrainConfig;
use crate::contrast::{Contrast, Measure, Role, Sides};
use crate::output::plot::{self, Panel, Panels, Series};
use crate::record::ConfigKey;
use crate::regularizers::RegKind;

mod answer;

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "compare-wd",
    number: 5,
    title: "Dropout and weight decay",
    question: "Which helps this model more, dropout or weight decay, and when both are used, do their gains add up?",
    about: "Exercise 5: dropout or weight decay, and do their effects add up?",
    examples: "drop-exp compare-wd --epochs 50\n  drop-exp compare-wd --weight-decays 0,1e-4,1e-3\n  \
               drop-exp compare-wd --shard 1/2 --out part1   # then merge",
    defaults: include_str!("../../experiments/compare-wd.toml"),
    // Regularisation matters more the longer a model trains. Seeds planned
    // for 80% power, at most 10: at 50 epochs each seed of the stable
    // rate's configurations costs 300 run-epochs.
    report: "epochs = 50\nplan_seeds = true\nmax_seeds = 10\n",
    quick: "seeds = 2\nepochs = 4\ntrain_subset = 20000\ntest_subset = 5000\nweight_decays = [0.0, 1e-4, 1e-3]\nlrs = [0.5, 0.1]\n",
    // Redeclared: weight decay tuned on validation, the accuracy questions
    // confirmed on fresh seeds; the blow-up questions are the first ones.
    declared: super::spec::Declaration {
        commit: "768f1ce",
        at: "2026-12-04T01:04:57Z",
        before: "The main sweep's runs, on which weight decay is tuned, came before it (its blow-up questions were declared in a6507d4, before the seed plans); the confirmation's runs on fresh seeds, which answer the accuracy questions, came after: its first 5 seeds, then the seeds planned from them for its undecided contrasts, by the rule every primary contrast follows, though the code that plans a confirmation's seeds was written after those 5 were seen.",
    },
    figures: &["effects.png", "wd.png", "curves.png"],
    secondary: None,
    flags: &[Flag {
        long: "weight-decays",
        key: "weight_decays",
        help: "Comma-separated weight decays (lambda >= 0); 0 is always included as the baseline",
        value: FlagValue::NonNegatives,
    }],
    // `--lr X` (or `lr` in a file) trains at X only.
    user_layer: super::spec::lr_replaces_lrs,
    build: |common, table| Ok(Box::new(CompareWd::new(common, parse(table)?))),
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The dropout rates (p1, p2) of the "on" setting.
    dropout: [f64; 2],
    /// Weight decays; 0 is added if missing (it is the baseline).
    weight_decays: Vec<f64>,
    /// Learning rates, each a separate set of comparisons; the first is the
    /// book's.
    lrs: Vec<f64>,
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

struct CompareWd {
    common: Common,
    settings: Settings,
}

fn label(dropout: bool, wd: f64, lr: f64) -> String {
    format!(
        "dropout={} wd={} lr={lr}",
        if dropout { "on" } else { "off" },
        crate::output::plot::scientific(wd)
    )
}

impl CompareWd {
    fn new(common: Common, mut settings: Settings) -> Self {
        if !settings.weight_decays.contains(&0.0) {
            settings.weight_decays.insert(0, 0.0);
        }
        Self { common, settings }
    }

    /// The learning rate of the accuracy questions: the sweep's smallest.
    fn stable_lr(&self) -> f64 {
        super::stable_lr(&self.settings.lrs)
    }
    /// The weight decays above 0.
    fn decays(&self) -> Vec<f64> {
        self.settings
            .weight_decays
            .iter()
            .copied()
            .filter(|&w| w > 0.0)
            .collect()
    }
    /// "wd ∈ {1e-4, 1e-3}" for estimands.
    fn decays_text(&self) -> String {
        let ws: Vec<String> = self.decays().iter().map(|&w| plot::scientific(w)).collect();
        format!("wd ∈ {{{}}}", ws.join(", "))
    }
    /// The configuration with or without the sweep's dropout, at weight
    /// decay `wd` and learning rate `lr`.
    fn config(&self, dropout: bool, wd: f64, lr: f64) -> TrainConfig {
        let [p1, p2] = if dropout {
            self.settings.dropout
        } else {
            [0.0, 0.0]
        };
        TrainConfig {
            weight_decay: wd,
            lr,
            ..self
                .common
                .base
                .with_layers([RegKind::Dropout.with(p1), RegKind::Dropout.with(p2)])
        }
    }
    fn key(&self, dropout: bool, wd: f64, lr: f64) -> ConfigKey {
        ConfigKey::sweep(self.config(dropout, wd, lr))
    }
    /// Terms of the configurations (dropout, every wd > 0) at `lr`, each
    /// weighted `w` / the number of weight decays.
    fn over_decays(&self, dropout: bool, lr: f64, w: f64) -> Vec<(ConfigKey, f64)> {
        let ws = self.decays();
        let k = ws.len() as f64;
        ws.iter()
            .map(|&wd| (self.key(dropout, wd, lr), w / k))
            .collect()
    }
}

impl CompareWd {
    /// A two-sided primary contrast at the sweep's margin.
    fn primary(
        &self,
        id: &str,
        question: &str,
        estimand: String,
        terms: Vec<(ConfigKey, f64)>,
        measure: Measure,
    ) -> Contrast {
        Contrast {
            id: id.into(),
            question: question.into(),
            estimand: Some(estimand),
            terms,
            measure,
            sides: Sides::Two,
            sesoi: self.common.margin / 100.0,
            role: Role::Primary,
        }
    }
    /// Both − dropout − weight decay + neither, at weight decay `wd` and
    /// rate `lr`, with keys made by `key` (the sweep's or the
    /// confirmation's).
    fn interaction_terms(
        &self,
        wd: f64,
        lr: f64,
        key: fn(TrainConfig) -> ConfigKey,
    ) -> Vec<(ConfigKey, f64)> {
        vec![
            (key(self.config(true, wd, lr)), 1.0),
            (key(self.config(true, 0.0, lr)), -1.0),
            (key(self.config(false, wd, lr)), -1.0),
            (key(self.config(false, 0.0, lr)), 1.0),
        ]
    }
    /// The weight decay chosen on validation for dropout `dropout` at rate
    /// `lr`: of the values above 0, the one whose runs have the best mean
    /// validation accuracy over the last K epochs (the validation
    /// counterpart of the end-of-training metric; an epoch without a
    /// finite value, after a divergence, counts at chance, 10%). The
    /// smaller value wins a tie. None without a validation split.
    fn tuned(&self, r: &Finished, dropout: bool, lr: f64) -> Option<f64> {
        if self.common.validation == 0 {
            return None;
        }
        let epochs = self.common.base.epochs;
        let k = r.end_k().clamp(1, epochs);
        let score = |wd: f64| -> Option<f64> {
            let g = r.group(&self.key(dropout, wd, lr)).ok()?;
            let per_run: Vec<f64> = g
                .runs
                .iter()
                .map(|run| {
                    (epochs - k..epochs)
                        .map(|e| {
                            run.rows
                                .get(e)
                                .and_then(|row| row.val_acc)
                                .filter(|v| v.is_finite())
                                .unwrap_or(super::CHANCE)
                        })
                        .sum::<f64>()
                        / k as f64
                })
                .collect();
            (!per_run.is_empty()).then(|| per_run.iter().sum::<f64>() / per_run.len() as f64)
        };
        let mut best: Option<(f64, f64)> = None;
        for wd in self.decays() {
            let Some(v) = score(wd) else { continue };
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((wd, v));
            }
        }
        best.map(|(wd, _)| wd)
    }
}

/// The interaction's smallest effect of interest, as a share of the main
/// effects' margin: an interaction is only worth reading at a resolution
/// finer than the effects it qualifies.
const INTERACTION_MARGIN: f64 = 0.5;

/// Suffix of the labels of the confirmation's runs (presentation only).
const FRESH: &str = " [fresh seeds]";

impl Experiment for CompareWd {
    super::experiment_accessors!(SPEC);
    fn configs(&self) -> Vec<(String, TrainConfig)> {
        let mut out = Vec::new();
        for &lr in &self.settings.lrs {
            for dropout in [false, true] {
                for &wd in &self.settings.weight_decays {
                    out.push((label(dropout, wd, lr), self.config(dropout, wd, lr)));
                }
            }
        }
        out
    }
    /// The main sweep's questions: the blow-up rates at the book's rate
    /// (weight decay pooled: without dropout every value blows up alike),
    /// and, exploratory, the interaction at each weight decay and rate.
    /// The accuracy questions are the confirmation's ([`Experiment::confirm`]).
    fn contrasts(&self) -> Vec<Contrast> {
        if self.decays().is_empty() {
            return Vec::new();
        }
        let avg = self.decays_text();
        let mut out = Vec::new();
        let book = self.settings.lrs[0];
        if book != self.stable_lr() {
            let mut wd_up = self.over_decays(false, book, 1.0);
            wd_up.push((self.key(false, 0.0, book), -1.0));
            let mut dropout_up = self.over_decays(true, book, 1.0);
            dropout_up.extend(self.over_decays(false, book, -1.0));
            out.push(self.primary(
                "wd_blowups",
                &format!("does weight decay change how often training without dropout blows up (lr {book})?"),
                format!("weight decay − neither, no dropout ({avg} pooled)"),
                wd_up,
                Measure::BlowUp,
            ));
            out.push(self.primary(
                "dropout_blowups_with_wd",
                &format!("with weight decay on, does dropout change how often training blows up (lr {book})?"),
                format!("dropout − no dropout, with weight decay ({avg} pooled)"),
                dropout_up,
                Measure::BlowUp,
            ));
        }
        for &lr in &self.settings.lrs {
            for wd in self.decays() {
                let w = plot::scientific(wd);
                out.push(Contrast {
                    id: format!("interaction wd={w} lr={lr}"),
                    role: Role::Exploratory,
                    ..self.primary(
                        "",
                        "",
                        format!("interaction at wd={w} lr={lr}: both − dropout − weight decay + neither"),
                        self.interaction_terms(wd, lr, ConfigKey::sweep),
                        Measure::Accuracy(Metric::End),
                    )
                });
            }
        }
        out
    }
    fn pairs(&self) -> Vec<(ConfigKey, ConfigKey)> {
        let mut out = Vec::new();
        for &lr in &self.settings.lrs {
            let neither = self.key(false, 0.0, lr);
            out.push((neither.clone(), self.key(true, 0.0, lr)));
            for &wd in self.settings.weight_decays.iter().filter(|&&w| w > 0.0) {
                out.push((neither.clone(), self.key(false, wd, lr)));
                out.push((neither.clone(), self.key(true, wd, lr)));
                out.push((self.key(true, 0.0, lr), self.key(true, wd, lr)));
            }
        }
        out
    }

    /// Weight decay tuned on validation for each dropout setting, then the
    /// accuracy questions on fresh seeds: at the stable rate, weight decay
    /// alone, both together, dropout against weight decay and the
    /// interaction (at the weight decay tuned for both); at the book's
    /// rate, what adding weight decay to dropout does at the end of
    /// training. Nothing without a validation split.
    fn confirm(&self, r: &Finished) -> Option<Confirmation> {
        let lr = self.stable_lr();
        let (w_off, w_on) = (self.tuned(r, false, lr)?, self.tuned(r, true, lr)?);
        let fresh = |d: bool, wd: f64, lr: f64| ConfigKey::confirmation(self.config(d, wd, lr));
        let mut runs = vec![
            (false, 0.0, lr),
            (true, 0.0, lr),
            (false, w_off, lr),
            (true, w_on, lr),
        ];
        if w_on != w_off {
            runs.push((false, w_on, lr));
        }
        let end = || Measure::Accuracy(Metric::End);
        let (neither, dropout) = (fresh(false, 0.0, lr), fresh(true, 0.0, lr));
        let (wd, both) = (fresh(false, w_off, lr), fresh(true, w_on, lr));
        let (a, b) = (plot::scientific(w_off), plot::scientific(w_on));
        let mut contrasts = vec![
            self.primary(
                "wd",
                &format!("does weight decay alone change accuracy (lr {lr})?"),
                format!("weight decay (wd={a}, tuned) − neither"),
                vec![(wd.clone(), 1.0), (neither.clone(), -1.0)],
                end(),
            ),
            self.primary(
                "both",
                &format!("do both together change accuracy (lr {lr})?"),
                format!("dropout + weight decay (wd={b}, tuned) − neither"),
                vec![(both, 1.0), (neither.clone(), -1.0)],
                end(),
            ),
            self.primary(
                "dropout_vs_wd",
                &format!("which helps more, dropout or weight decay (lr {lr})?"),
                format!("dropout − weight decay (wd={a}, tuned)"),
                vec![(dropout.clone(), 1.0), (wd, -1.0)],
                end(),
            ),
            Contrast {
                sesoi: INTERACTION_MARGIN * self.common.margin / 100.0,
                ..self.primary(
                    "interaction",
                    &format!("do their effects add up (lr {lr})?"),
                    format!("both − dropout − weight decay + neither (wd={b}, tuned for both)"),
                    self.interaction_terms(w_on, lr, ConfigKey::confirmation),
                    end(),
                )
            },
            Contrast {
                role: Role::Exploratory,
                ..self.primary(
                    "dropout",
                    "",
                    format!("dropout − neither (lr {lr}, fresh seeds)"),
                    vec![(dropout, 1.0), (neither, -1.0)],
                    end(),
                )
            },
        ];
        let book = self.settings.lrs[0];
        if let Some(w5) = self.tuned(r, true, book).filter(|_| book != lr) {
            runs.extend([(true, 0.0, book), (true, w5, book)]);
            contrasts.push(self.primary(
                "wd_with_dropout_book",
                &format!("at the book's rate, does adding weight decay to dropout change accuracy at the end of training (lr {book})?"),
                format!("dropout + weight decay (wd={}, tuned) − dropout", plot::scientific(w5)),
                vec![(fresh(true, w5, book), 1.0), (fresh(true, 0.0, book), -1.0)],
                end(),
            ));
        }
        Some(Confirmation {
            configs: runs
                .into_iter()
                .map(|(d, wd, lr)| {
                    (
                        format!("{}{FRESH}", label(d, wd, lr)),
                        self.config(d, wd, lr),
                    )
                })
                .collect(),
            contrasts,
            seeds: None,
        })
    }

    fn conclude(&self, r: &Finished) -> Result<String> {
        self.wd_figure(r)?;
        let accuracy: Vec<_> = r.primary().into_iter().filter(|c| !c.is_rate).collect();
        figures::effects(
            r,
            &r.out.join("effects.png"),
            &format!(
                "Exercise {}: dropout and weight decay at lr {} (primary contrasts)",
                SPEC.number,
                self.stable_lr()
            ),
            &Metric::End.describe(r.end_k()),
            &accuracy,
        )?;
        figures::accuracy_panels(
            r,
            &r.out.join("curves.png"),
            &format!(
                "Exercise {}: test accuracy, without and with dropout",
                SPEC.number
            ),
            |g| {
                let with = if g.config().layers.iter().any(|l| l.p() > 0.0) {
                    "with"
                } else {
                    "without"
                };
                Some(format!(
                    "lr {}, {with} dropout, by weight decay",
                    g.config().lr
                ))
            },
        )?;
        write_verdict(r, self.answer(r), &self.verdict(r))
    }
}

impl CompareWd {
    /// `wd.png`: end-of-training accuracy against weight decay, with and without
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
                    "Exercise {}: dropout and weight decay, mean test accuracy of the last {} epochs",
                    SPEC.number,
                    r.end_k()
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
                let keys: Vec<ConfigKey> = wds.iter().map(|&wd| self.key(d, wd, lr)).collect();
                figures::accuracy_line(r, name, color, &keys, Metric::End)
            })
            .collect();
        Panel {
            title: format!("lr {lr}"),
            x_label: "weight decay lambda".into(),
            y_label: "test accuracy (%), mean of the last epochs, 95% CI".into(),
            legend_top: true,
            series,
            x_ticks: Some(wds.iter().map(|&w| plot::scientific(w)).collect()),
            clip: Some((0.0, 100.0)),
            ..Default::default()
        }
    }

    fn verdict(&self, r: &Finished) -> String {
        let mut v = format!(
            "# {}\n\n{}. Learning rates {:?}: the book's, at which the network without dropout blows up, and a smaller one, at which none of this sweep's runs without dropout blew up (the table below); the accuracy questions are read at lr {} on the end-of-training metric, at the weight decay chosen on validation for each dropout setting, on fresh seeds; each value of the grid is compared in the exploratory rows.\n\n",
            SPEC.heading(),
            seeds_note(&self.common),
            self.settings.lrs,
            self.stable_lr()
        );
        v += "Dropout alone against neither is exercise 2's question (answered there, in its overfitting regime); here it is an exploratory estimate, the main effect the interaction is read against.\n\n";
        v += "How often training blew up (a loss spike, divergence or collapse), per configuration:\n\n| configuration | blew up | runs |\n|---|---|---|\n";
        for g in &r.groups {
            v += &format!("| {} | {} | {} |\n", g.label, g.spiked(), g.runs.len());
        }
        v += "\n";
        v += &summary_table(&r.summary);
        v
    }
}
