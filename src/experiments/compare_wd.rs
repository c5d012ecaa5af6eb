//! Exercise 5: dropout against weight decay, and both together.
//!
//! Question: weight decay and dropout both regularise. Which helps this
//! model more, and when used together, do their gains add up, or does one
//! make the other redundant?
//!
//! Hypothesis: both shrink the effective capacity, so their gains overlap:
//! the gain of both together is less than the sum of the gains alone
//! (a negative, "diminishing" interaction).
//!
//! Swept: dropout {off, the book's rates} x the weight decays x the
//! learning rates of `experiments/compare-wd.toml` (lambda in loss +
//! lambda/2 ||w||^2), x seeds. The book's lr 0.5 makes the network without
//! dropout blow up (exercise 2 measures it), which mixes "dropout keeps
//! training stable" into "dropout regularises"; so the accuracy questions
//! are read at the smallest learning rate of the sweep, where training
//! without dropout is stable, and the blow-up questions at the book's.
//!
//! Primary contrasts (declared in [`CompareWd::contrasts`]), weight decay
//! averaged over the non-zero values swept, on the end-of-training metric
//! at the stable rate: weight decay alone, both together, dropout alone
//! against weight decay alone, and the interaction (both - dropout only -
//! weight decay only + neither); at the book's rate, whether weight decay
//! changes the blow-up rate without dropout, and whether dropout does with
//! weight decay on. Dropout alone against neither is exercise 2's question,
//! on the same runs: answered there, exploratory here.
//!
//! Outputs (besides the common CSVs): `wd.png` (accuracy against weight
//! decay, a line per dropout setting, a panel per learning rate);
//! `effects.png` (the primary accuracy contrasts); `curves.png`;
//! `verdict.md`.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, short, summary_table, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, Flag, FlagValue};
use super::{Common, Experiment, Finished};
use crate::analysis::Metric;
use crate::config::TrainConfig;
use crate::contrast::{Contrast, Measure, Role, Sides};
use crate::output::plot::{self, Panel, Panels, Series};
use crate::record::ConfigKey;
use crate::regularizers::RegKind;

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
    figures: &["effects.png", "wd.png", "curves.png"],
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
    fn contrasts(&self) -> Vec<Contrast> {
        let lr = self.stable_lr();
        if self.decays().is_empty() {
            return Vec::new();
        }
        let end = Measure::Accuracy(Metric::End);
        let sesoi = self.common.margin / 100.0;
        let avg = self.decays_text();
        let neither = (self.key(false, 0.0, lr), -1.0);
        let dropout = self.key(true, 0.0, lr);
        let contrast = |id: &str, question: &str, estimand: String, terms, measure| Contrast {
            id: id.into(),
            question: question.into(),
            estimand: Some(estimand),
            terms,
            measure,
            sides: Sides::Two,
            sesoi,
            role: Role::Primary,
        };
        let mut wd = self.over_decays(false, lr, 1.0);
        wd.push(neither.clone());
        let mut both = self.over_decays(true, lr, 1.0);
        both.push(neither.clone());
        let mut versus = vec![(dropout.clone(), 1.0)];
        versus.extend(self.over_decays(false, lr, -1.0));
        let mut inter = self.over_decays(true, lr, 1.0);
        inter.extend(self.over_decays(false, lr, -1.0));
        inter.push((dropout.clone(), -1.0));
        inter.push((self.key(false, 0.0, lr), 1.0));
        let mut out = vec![
            contrast(
                "wd",
                &format!("does weight decay alone change accuracy (lr {lr})?"),
                format!("weight decay − neither (mean over {avg})"),
                wd,
                end.clone(),
            ),
            contrast(
                "both",
                &format!("do both together change accuracy (lr {lr})?"),
                format!("dropout + weight decay − neither (mean over {avg})"),
                both,
                end.clone(),
            ),
            contrast(
                "dropout_vs_wd",
                &format!("which helps more, dropout or weight decay (lr {lr})?"),
                format!("dropout − weight decay (mean over {avg})"),
                versus,
                end.clone(),
            ),
            contrast(
                "interaction",
                &format!("do their effects add up (lr {lr})?"),
                format!("both − dropout − weight decay + neither (mean over {avg})"),
                inter,
                end,
            ),
        ];
        let book = self.settings.lrs[0];
        if book != lr {
            let mut wd_up = self.over_decays(false, book, 1.0);
            wd_up.push((self.key(false, 0.0, book), -1.0));
            let mut dropout_up = self.over_decays(true, book, 1.0);
            dropout_up.extend(self.over_decays(false, book, -1.0));
            out.push(contrast(
                "wd_blowups",
                &format!("does weight decay change how often training without dropout blows up (lr {book})?"),
                format!("weight decay − neither, no dropout ({avg} pooled)"),
                wd_up,
                Measure::BlowUp,
            ));
            out.push(contrast(
                "dropout_blowups_with_wd",
                &format!("with weight decay on, does dropout change how often training blows up (lr {book})?"),
                format!("dropout − no dropout, with weight decay ({avg} pooled)"),
                dropout_up,
                Measure::BlowUp,
            ));
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
    fn answer(&self, r: &Finished) -> String {
        let lr = self.stable_lr();
        let k = r.end_k();
        let mut s = format!(
            "At lr {lr}, on the mean test accuracy of the last {k} epochs: weight decay alone {}; both together {}; dropout minus weight decay {}; interaction (do the gains add up?) {}.",
            short(r.contrast("wd")),
            short(r.contrast("both")),
            short(r.contrast("dropout_vs_wd")),
            short(r.contrast("interaction")),
        );
        if let Some(c) = r.contrast("wd_blowups") {
            s += &format!(
                " At the book's lr {}, the share of runs without dropout that blew up, weight decay minus none: {}; dropout's with weight decay on: {}.",
                self.settings.lrs[0],
                short(Some(c)),
                short(r.contrast("dropout_blowups_with_wd"))
            );
        }
        s
    }

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
            "# {}\n\n{}. Learning rates {:?}: the book's, at which the network without dropout blows up, and a smaller one, where exercise 2 finds it stable; the accuracy questions are read at lr {} on the end-of-training metric, weight decay averaged over the values above 0.\n\n",
            SPEC.heading(),
            seeds_note(&self.common),
            self.settings.lrs,
            self.stable_lr()
        );
        v += "Dropout alone against neither is exercise 2's primary contrast, on the same runs (`drop-exp longer` at the same rates): it is answered there and only estimated here.\n\n";
        v += "How often training blew up (a loss spike, divergence or collapse), per configuration:\n\n| configuration | blew up | runs |\n|---|---|---|\n";
        for g in &r.groups {
            v += &format!("| {} | {} | {} |\n", g.label, g.spiked(), g.runs.len());
        }
        v += "\n";
        v += &summary_table(&r.summary);
        v
    }
}
