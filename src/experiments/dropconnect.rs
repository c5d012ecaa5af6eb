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

use super::figures;
use super::markdown::{seeds_note, summary_table, tally, verdict_list, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, QUICK};
use super::{dropout_config, Common, Experiment, Finished};
use crate::analysis::{Comparison, Metric};
use crate::config::TrainConfig;
use crate::output::plot::{self, Panel, Panels, Series};
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

    fn conclude(&self, r: &Finished) -> Result<String> {
        let rates = &self.settings.rates;
        let series: Vec<Series> = [RegKind::Dropout, RegKind::Dropconnect]
            .iter()
            .map(|&kind| {
                let labels: Vec<String> = rates.iter().map(|&p| label(kind, p)).collect();
                figures::headline_line(r, kind.to_string(), figures::kind_color(kind), &labels)
            })
            .collect();
        let none = r
            .summary
            .iter()
            .find(|s| s.config.label == NONE)
            .map(|s| 100.0 * s.last3_mean);
        plot::save(
            &r.out.join("rates.png"),
            &Panels {
                title: format!(
                    "Exercise {}: DropConnect vs dropout at equal rates",
                    SPEC.number
                ),
                panels: vec![Panel {
                    title: "test accuracy, mean of each run's last 3 epochs (95% CI over seeds)"
                        .into(),
                    x_label: "rate p (both hidden layers)".into(),
                    y_label: "test accuracy (%)".into(),
                    series,
                    x_ticks: Some(rates.iter().map(|p| p.to_string()).collect()),
                    hlines: none
                        .map(|m| vec![("no regularisation (mean)".to_string(), m)])
                        .unwrap_or_default(),
                    clip: Some((0.0, 100.0)),
                    ..Default::default()
                }],
                cols: 1,
            },
        )?;
        let primary = r.primary();
        figures::effects(
            r,
            &r.out.join("effects.png"),
            &format!(
                "Exercise {}: DropConnect against dropout, and each against none",
                SPEC.number
            ),
            &primary,
            |c| format!("{} vs {}", c.b, c.a),
        )?;
        figures::accuracy_panels(
            r,
            &r.out.join("curves.png"),
            &format!(
                "Exercise {}: test accuracy, DropConnect and dropout (no regularisation in both)",
                SPEC.number
            ),
            |g| (g.label != NONE).then(|| g.config.layers[0].kind().to_string()),
        )?;
        let head_to_head: Vec<&Comparison> =
            primary.iter().copied().filter(|c| c.a != NONE).collect();
        let answer = format!(
            "DropConnect minus dropout at equal rates ({}): {}.",
            self.settings
                .rates
                .iter()
                .map(|p| format!("p = {p}"))
                .collect::<Vec<_>>()
                .join(", "),
            tally(&head_to_head)
        );
        write_verdict(r, answer, &self.verdict(r))
    }
}

impl DropConnectExp {
    fn verdict(&self, r: &Finished) -> String {
        let mut v = format!(
            "# {}\n\n{}; both methods at the same rate p on both hidden layers; DropConnect draws one weight mask per mini-batch. Headline metric: test accuracy averaged over each run's last 3 epochs; differences paired by seed.\n\n",
            SPEC.heading(),
            seeds_note(&self.common)
        );
        let head_to_head: Vec<&Comparison> = self
            .settings
            .rates
            .iter()
            .filter_map(|&p| {
                r.comparison(
                    &label(RegKind::Dropout, p),
                    &label(RegKind::Dropconnect, p),
                    Metric::Last3,
                )
            })
            .collect();
        v += "**DropConnect against dropout at the same rate** (DropConnect minus dropout):\n\n";
        v += &verdict_list(&head_to_head, |c| c.b.clone());
        let vs_none: Vec<&Comparison> = self
            .pairs()
            .into_iter()
            .filter(|(a, _)| a == NONE)
            .filter_map(|(a, b)| r.comparison(&a, &b, Metric::Last3))
            .collect();
        v += "\n**Each against no regularisation:**\n\n";
        v += &verdict_list(&vs_none, |c| c.b.clone());
        v += "\n";
        v += &summary_table(&r.summary);
        v
    }
}
