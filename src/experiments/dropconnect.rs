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
//! "Dropping weights" has two readings on this model, and both are measured.
//! The network is x -W1-> h1 -W2-> h2 -W3-> logits, with dropout after h1
//! (rate p1) and h2 (rate p2). Wan et al. (2013) mask the matrix that
//! *produces* each hidden layer: W1 at p1 and W2 at p2 (`dropconnect`,
//! labelled "W1,W2"). Dropout of a unit zeroes a whole row of the matrix
//! that *consumes* it, so its weight-level counterpart masks W2 at p1 and
//! W3 at p2 (`dropconnect-out`, labelled "W2,W3").
//!
//! Swept: for each rate p of `experiments/dropconnect.toml` (on both hidden
//! layers), dropout, DropConnect on W1,W2 and DropConnect on W2,W3; plus no
//! regularisation; x seeds. DropConnect draws one mask per mini-batch, not
//! per example as the paper does (`src/regularizers/dropconnect.rs` says
//! why: per-example masks cost two orders of magnitude more here).
//!
//! Outputs (besides the common CSVs): `rates.png` (headline accuracy against
//! the rate, a line per method with 95% CI bars, no regularisation as a
//! dashed line), `curves.png`, `verdict.md`. Comparisons: each DropConnect
//! reading minus dropout at each rate, and each configuration minus no
//! regularisation.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, summary_table, tally, verdict_list, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, QUICK};
use super::{dropout_config, Common, Experiment, Finished};
use crate::analysis::Metric;
use crate::config::TrainConfig;
use crate::output::plot::{self, Panel, Panels, Series};
use crate::regularizers::RegKind;
use crate::verdict::Comparison;

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "dropconnect",
    number: 6,
    title: "Dropping individual weights (DropConnect)",
    question: "What if individual weights are dropped instead of whole unit outputs? At equal rates, is it better or worse than dropout?",
    about: "Exercise 6: DropConnect (dropout on weights) against dropout at equal rates.",
    examples: "drop-exp dropconnect\n  drop-exp dropconnect --epochs 3 --seeds 2 --train-subset 10000",
    defaults: include_str!("../../experiments/dropconnect.toml"),
    // Seeds until every comparison's 95% CI is within ±0.5 points, at most
    // 8: a seed costs 130 run-epochs here.
    report: "target_ci = 0.5\nmax_seeds = 8\n",
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

/// The methods compared: dropout and the two DropConnect readings.
const KINDS: [RegKind; 3] = [
    RegKind::Dropout,
    RegKind::Dropconnect,
    RegKind::DropconnectOut,
];

/// The method's name, naming the matrices DropConnect masks.
fn method(kind: RegKind) -> &'static str {
    match kind {
        RegKind::Dropconnect => "DropConnect W1,W2",
        RegKind::DropconnectOut => "DropConnect W2,W3",
        _ => "dropout",
    }
}

fn label(kind: RegKind, p: f64) -> String {
    format!("{} p={p}", method(kind))
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
        for kind in KINDS {
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
            for kind in &KINDS[1..] {
                out.push((label(RegKind::Dropout, p), label(*kind, p)));
            }
        }
        for (l, _) in self.configs().into_iter().skip(1) {
            out.push((NONE.to_string(), l));
        }
        out
    }

    fn conclude(&self, r: &Finished) -> Result<String> {
        let rates = &self.settings.rates;
        let series: Vec<Series> = KINDS
            .iter()
            .map(|&kind| {
                let labels: Vec<String> = rates.iter().map(|&p| label(kind, p)).collect();
                figures::headline_line(r, method(kind).into(), figures::kind_color(kind), &labels)
            })
            .collect();
        let none = r
            .summary
            .iter()
            .find(|s| s.config.label == NONE)
            .map(|s| 100.0 * s.selected_mean);
        plot::save(
            &r.out.join("rates.png"),
            &Panels {
                title: format!(
                    "Exercise {}: DropConnect vs dropout at equal rates",
                    SPEC.number
                ),
                panels: vec![Panel {
                    title: "test accuracy at the epoch selected on validation (95% CI over seeds)"
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
            |g| (g.label != NONE).then(|| method(g.config.layers[0].kind()).to_string()),
        )?;
        let reading = |kind: RegKind| {
            let comps: Vec<&Comparison> = primary
                .iter()
                .copied()
                .filter(|c| c.a != NONE && c.b.starts_with(method(kind)))
                .collect();
            format!("{} minus dropout: {}", method(kind), tally(&comps))
        };
        let answer = format!(
            "At equal rates ({}), {}; {}.",
            self.settings
                .rates
                .iter()
                .map(|p| format!("p = {p}"))
                .collect::<Vec<_>>()
                .join(", "),
            reading(RegKind::Dropconnect),
            reading(RegKind::DropconnectOut)
        );
        write_verdict(r, answer, &self.verdict(r))
    }
}

impl DropConnectExp {
    fn verdict(&self, r: &Finished) -> String {
        let mut v = format!(
            "# {}\n\n{}. Every method at the same rate p after both hidden layers. The network is x -W1-> h1 -W2-> h2 -W3-> logits: \"DropConnect W1,W2\" masks the matrices that produce h1 and h2 (Wan et al.'s definition), \"DropConnect W2,W3\" the matrices that consume them, whose whole rows dropout zeroes. One weight mask per mini-batch (per-example masks would cost two orders of magnitude more on this machine). Differences paired by seed.\n\n",
            SPEC.heading(),
            seeds_note(&self.common)
        );
        for kind in &KINDS[1..] {
            let head_to_head: Vec<&Comparison> = self
                .settings
                .rates
                .iter()
                .filter_map(|&p| {
                    r.comparison(
                        &label(RegKind::Dropout, p),
                        &label(*kind, p),
                        Metric::HEADLINE,
                    )
                })
                .collect();
            v += &format!(
                "**{} against dropout at the same rate** ({} minus dropout):\n\n",
                method(*kind),
                method(*kind)
            );
            v += &verdict_list(&head_to_head, |c| c.b.clone());
            v += "\n";
        }
        let vs_none: Vec<&Comparison> = self
            .pairs()
            .into_iter()
            .filter(|(a, _)| a == NONE)
            .filter_map(|(a, b)| r.comparison(&a, &b, Metric::HEADLINE))
            .collect();
        v += "**Each against no regularisation:**\n\n";
        v += &verdict_list(&vs_none, |c| c.b.clone());
        v += "\n";
        v += &summary_table(&r.summary);
        v
    }
}
