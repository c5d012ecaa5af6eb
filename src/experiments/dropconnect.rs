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
//! Primary contrasts, one per reading, on test accuracy at the
//! validation-selected epoch: DropConnect minus dropout, averaged over the
//! rates of `pooled_rates` (those where both train; per-rate differences
//! and each configuration against no regularisation are exploratory).
//!
//! Outputs (besides the common CSVs): `rates.png` (peak accuracy against
//! the rate, a line per method with 95% CI bars, no regularisation as a
//! dashed line), `effects.png` (the primary contrasts), `curves.png`,
//! `verdict.md`.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, short, summary_table, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, QUICK};
use super::{dropout_config, Common, Experiment, Finished};
use crate::analysis::Metric;
use crate::config::TrainConfig;
use crate::contrast::{Contrast, Measure, Role, Sides};
use crate::output::plot::{self, Panel, Panels, Series};
use crate::record::ConfigKey;
use crate::regularizers::RegKind;

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "dropconnect",
    number: 6,
    title: "Dropping individual weights (DropConnect)",
    question: "What if individual weights are dropped instead of whole unit outputs? At equal rates, is it better or worse than dropout?",
    about: "Exercise 6: is dropping weights (DropConnect) better or worse than dropout?",
    examples: "drop-exp dropconnect\n  drop-exp dropconnect --epochs 3 --seeds 2 --train-subset 10000",
    defaults: include_str!("../../experiments/dropconnect.toml"),
    // Seeds planned for 80% power at the margin, at most 12: a seed costs
    // up to 130 run-epochs here.
    report: "plan_seeds = true\nmax_seeds = 12\n",
    quick: QUICK,
    declared: super::spec::FIRST_DECLARATION,
    figures: &["effects.png", "rates.png"],
    flags: &[],
    user_layer: super::spec::as_given,
    build: |common, table| Ok(Box::new(DropConnectExp::new(common, parse(table)?))),
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    rates: Vec<f64>,
    /// Rates left out of the primary contrasts' average (where a method
    /// does not train); they stay as exploratory rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unpooled_rates: Vec<f64>,
}

impl Settings {
    /// The rates the primary contrasts average over.
    fn pooled(&self) -> Vec<f64> {
        self.rates
            .iter()
            .copied()
            .filter(|p| !self.unpooled_rates.contains(p))
            .collect()
    }
}

impl super::CheckSettings for Settings {
    fn check(&self) -> Result<(), String> {
        if self.rates.is_empty() {
            return Err("`rates` is empty; give at least one rate".into());
        }
        super::settings::check_probs("rates", self.rates.iter().copied())?;
        if self.pooled().is_empty() {
            return Err(format!(
                "`unpooled_rates` = {:?} leaves none of `rates` = {:?} to average over; remove one from `unpooled_rates`",
                self.unpooled_rates, self.rates
            ));
        }
        Ok(())
    }
}

struct DropConnectExp {
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
    fn new(common: Common, settings: Settings) -> Self {
        Self { common, settings }
    }
    /// `kind` at rate `p` after both hidden layers.
    fn config(&self, kind: RegKind, p: f64) -> TrainConfig {
        self.common.base.with_layers([kind.with(p); 2])
    }
    fn key(&self, kind: RegKind, p: f64) -> ConfigKey {
        ConfigKey::sweep(self.config(kind, p))
    }
    /// No regularisation.
    fn none(&self) -> ConfigKey {
        super::dropout_key(&self.common, 0.0, 0.0)
    }
}

impl Experiment for DropConnectExp {
    super::experiment_accessors!(SPEC);
    fn contrasts(&self) -> Vec<Contrast> {
        let pooled = self.settings.pooled();
        let k = pooled.len() as f64;
        KINDS[1..]
            .iter()
            .map(|&kind| {
                let mut terms = Vec::new();
                for &p in &pooled {
                    terms.push((self.key(kind, p), 1.0 / k));
                    terms.push((self.key(RegKind::Dropout, p), -1.0 / k));
                }
                Contrast {
                    id: format!("{kind}"),
                    question: format!(
                        "is {} better or worse than dropout at equal rates?",
                        method(kind)
                    ),
                    estimand: Some(format!(
                        "{} − dropout, mean over p ∈ {{{}}}",
                        method(kind),
                        pooled
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    terms,
                    measure: Measure::Accuracy(Metric::Selected),
                    sides: Sides::Two,
                    sesoi: self.common.margin / 100.0,
                    role: Role::Primary,
                }
            })
            .collect()
    }
    fn configs(&self) -> Vec<(String, TrainConfig)> {
        let mut out = vec![(NONE.to_string(), dropout_config(&self.common, 0.0, 0.0))];
        for kind in KINDS {
            for &p in &self.settings.rates {
                out.push((label(kind, p), self.config(kind, p)));
            }
        }
        out
    }
    fn pairs(&self) -> Vec<(ConfigKey, ConfigKey)> {
        let mut out = Vec::new();
        for &p in &self.settings.rates {
            for &kind in &KINDS[1..] {
                out.push((self.key(RegKind::Dropout, p), self.key(kind, p)));
            }
        }
        for (_, c) in self.configs().into_iter().skip(1) {
            out.push((self.none(), ConfigKey::sweep(c)));
        }
        out
    }

    fn conclude(&self, r: &Finished) -> Result<String> {
        let rates = &self.settings.rates;
        let series: Vec<Series> = KINDS
            .iter()
            .map(|&kind| {
                let keys: Vec<ConfigKey> = rates.iter().map(|&p| self.key(kind, p)).collect();
                figures::accuracy_line(
                    r,
                    method(kind).into(),
                    figures::kind_color(kind),
                    &keys,
                    Metric::Selected,
                )
            })
            .collect();
        let none = r
            .summary
            .iter()
            .find(|s| s.config.key == self.none())
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
        figures::effects(
            r,
            &r.out.join("effects.png"),
            &format!(
                "Exercise {}: DropConnect against dropout (primary contrasts)",
                SPEC.number
            ),
            &Metric::Selected.describe(r.end_k()),
            &r.primary(),
        )?;
        figures::accuracy_panels(
            r,
            &r.out.join("curves.png"),
            &format!(
                "Exercise {}: test accuracy, DropConnect and dropout (no regularisation in both)",
                SPEC.number
            ),
            |g| (!g.is(&self.none())).then(|| method(g.config().layers[0].kind()).to_string()),
        )?;
        let reading = |kind: RegKind| {
            format!(
                "{} minus dropout {}",
                method(kind),
                short(r.contrast(&kind.to_string()))
            )
        };
        let answer = format!(
            "On test accuracy at the validation-selected epoch, averaged over the rates where both train: {}; {}. Masks are shared by a mini-batch, not drawn per example as in Wan et al.",
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
        if !self.settings.unpooled_rates.is_empty() {
            v += &format!(
                "The primary contrasts average over p ∈ {:?}; `experiments/dropconnect.toml` declares {:?} as rates where a method does not train, which appear only as exploratory rows.\n\n",
                self.settings.pooled(),
                self.settings.unpooled_rates
            );
        }
        v += &summary_table(&r.summary);
        v
    }
}
