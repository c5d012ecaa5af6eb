//! Exercise 6: DropConnect, dropout applied to individual weights.
//!
//! Question: instead of dropping a unit's output (all its outgoing
//! connections at once), drop individual weights. At equal rates, does it
//! regularise this model better or worse than dropout?
//!
//! Hypothesis: DropConnect's noise is finer-grained, so at equal rate it
//! perturbs each pre-activation less (it averages over many independently
//! masked weights) and regularises more weakly: it should do no better than
//! dropout at low rates and tolerate higher rates.
//!
//! Swept: for each rate p of `experiments/dropconnect.toml`, DropConnect with
//! p on both hidden layers' weight matrices and dropout with p on both hidden
//! layers' activations; plus no regularisation; x seeds. DropConnect draws
//! one mask per mini-batch (see `src/regularizers/dropconnect.rs` for how
//! that differs from the paper's per-example masks).
//!
//! Outputs (besides the common CSVs): `rates.png` (headline accuracy against
//! the rate, a line per method with 95% CI bars, no regularisation as a
//! dashed line), `curves.png`, `verdict.md`. Comparisons: DropConnect minus
//! dropout at each rate, and each configuration minus no regularisation.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::markdown::{seeds_note, summary_table, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, QUICK};
use super::{dropout_config, Common, Experiment, Finished};
use crate::analysis::{describe, Metric};
use crate::config::TrainConfig;
use crate::output::plot::{self, Panel, Series};
use crate::regularizers::RegKind;

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "dropconnect",
    number: 6,
    title: "Dropping individual weights (DropConnect)",
    question: "What if individual weights are dropped instead of whole unit outputs? At equal rates, is it better or worse than dropout?",
    about: "Exercise 6: DropConnect (dropout on weights) against dropout at equal rates.",
    examples: "drop-exp dropconnect\n  drop-exp dropconnect --epochs 3 --seeds 2 --train-subset 10000",
    defaults: include_str!("../../experiments/dropconnect.toml"),
    report: "",
    quick: QUICK,
    flags: &[],
    build: |common, table| Ok(Box::new(DropConnectExp::new(common, parse(table)?))),
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub rates: Vec<f64>,
}

impl super::CheckSettings for Settings {
    fn check(&self) -> Result<(), String> {
        if self.rates.is_empty() {
            return Err("`rates` is empty; give at least one rate".into());
        }
        super::settings::check_probs("rates", self.rates.iter().copied())
    }
}

pub struct DropConnectExp {
    common: Common,
    settings: Settings,
}

const NONE: &str = "none";

fn label(kind: RegKind, p: f64) -> String {
    format!("{kind} p={p}")
}

impl DropConnectExp {
    pub fn new(common: Common, settings: Settings) -> Self {
        Self { common, settings }
    }
}

impl Experiment for DropConnectExp {
    super::experiment_accessors!(SPEC);
    fn configs(&self) -> Vec<(String, TrainConfig)> {
        let mut out = vec![(NONE.to_string(), dropout_config(&self.common, 0.0, 0.0))];
        for kind in [RegKind::Dropout, RegKind::Dropconnect] {
            for &p in &self.settings.rates {
                out.push((
                    label(kind, p),
                    self.common.base.with_layers([kind.with(p); 2]),
                ));
            }
        }
        out
    }
    fn pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for &p in &self.settings.rates {
            out.push((label(RegKind::Dropout, p), label(RegKind::Dropconnect, p)));
        }
        for (l, _) in self.configs().into_iter().skip(1) {
            out.push((NONE.to_string(), l));
        }
        out
    }

    fn conclude(&self, r: &Finished) -> Result<()> {
        let rates = &self.settings.rates;
        let series: Vec<Series> = [RegKind::Dropout, RegKind::Dropconnect]
            .iter()
            .map(|&kind| {
                let labels: Vec<String> = rates.iter().map(|&p| label(kind, p)).collect();
                super::figures::headline_line(r, kind.to_string(), &labels)
            })
            .collect();
        let none = r
            .summary
            .iter()
            .find(|s| s.config.label == NONE)
            .map(|s| s.last3_mean);
        plot::panels(
            &r.out.join("rates.png"),
            &format!(
                "Exercise {}: DropConnect vs dropout at equal rates",
                SPEC.number
            ),
            &[Panel {
                title: "test accuracy, mean of last 3 epochs (95% CI)".into(),
                x_label: "rate p (both hidden layers)".into(),
                y_label: "test accuracy".into(),
                series,
                x_ticks: Some(rates.iter().map(|p| p.to_string()).collect()),
                hlines: none
                    .map(|m| vec![("no regularisation".to_string(), m)])
                    .unwrap_or_default(),
                log_y: false,
                clip: None,
            }],
            1,
        )?;
        super::figures::accuracy_curves(
            r,
            &r.out.join("curves.png"),
            &format!("Exercise {}: DropConnect and dropout", SPEC.number),
        )?;
        write_verdict(r, &self.verdict(r))
    }
}

impl DropConnectExp {
    fn verdict(&self, r: &Finished) -> String {
        let mut v = format!(
            "# {}\n\n{}; both methods at the same rate p on both hidden layers; DropConnect draws one weight mask per mini-batch. Headline metric: test accuracy averaged over each run's last 3 epochs; differences paired by seed.\n\n",
            SPEC.heading(),
            seeds_note(&self.common)
        );
        for &p in &self.settings.rates {
            if let Some(c) = r.comparison(
                &label(RegKind::Dropout, p),
                &label(RegKind::Dropconnect, p),
                Metric::Last3,
            ) {
                v += &format!("- p = {p}: DropConnect minus dropout: {}.\n", describe(c));
            }
        }
        v += "\nAgainst no regularisation:\n\n";
        for (a, b) in self.pairs().into_iter().filter(|(a, _)| a == NONE) {
            if let Some(c) = r.comparison(&a, &b, Metric::Last3) {
                v += &format!("- {b}: {}.\n", describe(c));
            }
        }
        let best = |kind: RegKind| {
            r.summary
                .iter()
                .filter(|s| {
                    s.config.train.layers[0].kind() == kind && s.config.label != NONE && s.n > 0
                })
                .max_by(|a, b| a.last3_mean.total_cmp(&b.last3_mean))
                .map(|s| format!("{} ({:.2}%)", s.config.label, 100.0 * s.last3_mean))
                .unwrap_or_else(|| "none finished".into())
        };
        v += &format!(
            "\nBest of each: {}; {}.\n\n",
            best(RegKind::Dropout),
            best(RegKind::Dropconnect)
        );
        v += &summary_table(&r.summary);
        v
    }
}
