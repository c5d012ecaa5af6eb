//! Exercise 1: swapping and varying the dropout rates of the two layers.
//!
//! Question: the book drops 20% of the first hidden layer's units and 50% of
//! the second's. What if the rates are swapped (0.5 first, 0.2 second), or
//! both equal, or zero? Does the order matter, and by how much?
//!
//! Hypothesis: heavier dropout on the first, wider-input layer discards more
//! information the rest of the network cannot recover, so the swapped rates
//! should do slightly worse than the book's.
//!
//! Swept: the (p1, p2) pairs of `experiments/swap-rates.toml`, or with
//! `--grid a,b,...` every pair of the list (p1 x p2), x seeds.
//!
//! Primary contrasts, on test accuracy at the validation-selected epoch:
//! the swap ((0.5, 0.2) − (0.2, 0.5), or the first pair swept in both
//! orders), and, where the four corners of {low, high}² are swept, the main
//! effect of each layer's rate (the mean of the two differences high − low
//! of that layer's rate, over the other layer's two rates). Every other
//! configuration against the book's rates is exploratory.
//!
//! Outputs (besides the common CSVs): `verdict.md`; `accuracy.png` (peak
//! accuracy per configuration with 95% CI); `effects.png` (the primary
//! contrasts); `curves.png` (test accuracy and train loss per epoch, mean
//! and 95% band); with `--grid`, `heatmap.png` (mean peak accuracy for
//! every p1 x p2).

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, short, summary_table, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, Flag, FlagValue, QUICK};
use super::{dropout_key, rate_configs, Common, Experiment, Finished};
use crate::analysis::Metric;
use crate::config::TrainConfig;
use crate::contrast::{Contrast, Measure, Role, Sides};
use crate::output::plot::{self, Heatmap};
use crate::record::ConfigKey;

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "swap-rates",
    number: 1,
    title: "Swapping the dropout rates of the two layers",
    question: "The book drops 20% of the first hidden layer's outputs and 50% of the second's. What changes when the two rates are swapped, or set to other values? Is the difference real or within seed noise?",
    about: "Exercise 1: does swapping or changing the two layers' dropout rates matter?",
    examples: "drop-exp swap-rates\n  drop-exp swap-rates --grid 0,0.2,0.5,0.8 --seeds 3\n  \
               drop-exp swap-rates --epochs 3 --seeds 2 --train-subset 10000   # quick look",
    defaults: include_str!("../../experiments/swap-rates.toml"),
    // Seeds planned for 80% power at the margin, at most 20: a seed of
    // the four corners costs 40 run-epochs here.
    report: "plan_seeds = true\nmax_seeds = 20\n",
    quick: QUICK,
    declared: super::spec::FIRST_DECLARATION,
    figures: &["effects.png", "accuracy.png", "curves.png"],
    secondary: None,
    flags: &[Flag {
        long: "grid",
        key: "grid",
        help: "Sweep every (p1, p2) pair of this comma-separated list of rates, and draw a heatmap",
        value: FlagValue::Probabilities,
    }],
    user_layer: super::spec::as_given,
    build: |common, table| Ok(Box::new(SwapRates::new(common, parse(table)?))),
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// (p1, p2) pairs; the first is the reference.
    rates: Vec<[f64; 2]>,
    /// When set, every (p1, p2) in grid x grid, replacing `rates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grid: Option<Vec<f64>>,
}

impl super::CheckSettings for Settings {
    fn check(&self) -> Result<(), String> {
        if self.rates.is_empty() {
            return Err("`rates` is empty; give at least one [p1, p2] pair".into());
        }
        super::settings::check_probs("rates", self.rates.iter().flatten().copied())?;
        if let Some(g) = &self.grid {
            if g.is_empty() {
                return Err("`grid` is empty; give at least one rate".into());
            }
            super::settings::check_probs("grid", g.iter().copied())?;
        }
        Ok(())
    }
}

struct SwapRates {
    common: Common,
    settings: Settings,
}

impl SwapRates {
    fn new(common: Common, settings: Settings) -> Self {
        Self { common, settings }
    }

    fn pairs_swept(&self) -> Vec<[f64; 2]> {
        match &self.settings.grid {
            Some(g) => g
                .iter()
                .flat_map(|&a| g.iter().map(move |&b| [a, b]))
                .collect(),
            None => self.settings.rates.clone(),
        }
    }

    /// Pairs (a, b), a < b, swept in both orders: (a, b) and (b, a). The
    /// book's order (lower rate first) comes first.
    fn swaps(&self) -> Vec<(f64, f64)> {
        let swept = self.pairs_swept();
        swept
            .iter()
            .filter(|[a, b]| a < b && swept.contains(&[*b, *a]))
            .map(|[a, b]| (*a, *b))
            .collect()
    }

    /// The reference: the book's rates when swept, else the first pair.
    fn reference(&self) -> [f64; 2] {
        let pairs = self.pairs_swept();
        pairs
            .iter()
            .copied()
            .find(|p| *p == [0.2, 0.5])
            .unwrap_or(pairs[0])
    }
}

impl Experiment for SwapRates {
    super::experiment_accessors!(SPEC);
    fn contrasts(&self) -> Vec<Contrast> {
        let Some(&(lo, hi)) = self.swaps().first() else {
            return Vec::new();
        };
        let peak = Measure::Accuracy(Metric::Selected);
        let sesoi = self.common.margin / 100.0;
        let l = |p1, p2| dropout_key(&self.common, p1, p2);
        let mut out = vec![Contrast::difference(
            "swap",
            "does swapping the two rates change accuracy?",
            l(hi, lo),
            l(lo, hi),
            peak.clone(),
            sesoi,
        )];
        let swept = self.pairs_swept();
        if [[lo, lo], [hi, hi]].iter().all(|p| swept.contains(p)) {
            let main = |id: &str, layer: &str, terms: Vec<(ConfigKey, f64)>| Contrast {
                id: id.into(),
                question: format!("does the {layer} layer's rate matter ({lo} → {hi})?"),
                estimand: Some(format!(
                    "mean over the other layer's rate of p{} = {hi} − p{} = {lo}",
                    if layer == "first" { 1 } else { 2 },
                    if layer == "first" { 1 } else { 2 }
                )),
                terms,
                measure: peak.clone(),
                sides: Sides::Two,
                sesoi,
                role: Role::Primary,
            };
            out.push(main(
                "p1_main",
                "first",
                vec![
                    (l(hi, lo), 0.5),
                    (l(hi, hi), 0.5),
                    (l(lo, lo), -0.5),
                    (l(lo, hi), -0.5),
                ],
            ));
            out.push(main(
                "p2_main",
                "second",
                vec![
                    (l(lo, hi), 0.5),
                    (l(hi, hi), 0.5),
                    (l(lo, lo), -0.5),
                    (l(hi, lo), -0.5),
                ],
            ));
        }
        out
    }
    fn configs(&self) -> Vec<(String, TrainConfig)> {
        rate_configs(&self.common, &self.pairs_swept())
    }
    fn pairs(&self) -> Vec<(ConfigKey, ConfigKey)> {
        let key = |p1, p2| dropout_key(&self.common, p1, p2);
        let [r1, r2] = self.reference();
        let reference = key(r1, r2);
        let mut out: Vec<(ConfigKey, ConfigKey)> = self
            .configs()
            .into_iter()
            .map(|(_, c)| ConfigKey::sweep(c))
            .filter(|k| *k != reference)
            .map(|k| (reference.clone(), k))
            .collect();
        for (a, b) in self.swaps() {
            let pair = (key(a, b), key(b, a));
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
        out
    }

    fn conclude(&self, r: &Finished) -> Result<String> {
        figures::peak_dots(
            r,
            &r.out.join("accuracy.png"),
            &format!(
                "Exercise {}: test accuracy by dropout rates (p1, p2)",
                SPEC.number
            ),
        )?;
        figures::effects(
            r,
            &r.out.join("effects.png"),
            &format!(
                "Exercise {}: the dropout rates (primary contrasts)",
                SPEC.number
            ),
            &Metric::Selected.describe(r.end_k()),
            &r.primary(),
        )?;
        figures::accuracy_curves(
            r,
            &r.out.join("curves.png"),
            &format!("Exercise {}: dropout rates (p1, p2)", SPEC.number),
        )?;
        if let Some(grid) = &self.settings.grid {
            let values: Vec<Vec<f64>> = grid
                .iter()
                .map(|&p1| {
                    grid.iter()
                        .map(|&p2| {
                            r.summary
                                .iter()
                                .find(|s| s.config.train().layers.map(|l| l.p()) == [p1, p2])
                                .map_or(f64::NAN, |s| s.selected_mean)
                        })
                        .collect()
                })
                .collect();
            plot::save(
                &r.out.join("heatmap.png"),
                &Heatmap {
                    title: format!(
                        "Exercise {}: test accuracy (%) by dropout rates, at the epoch selected on validation",
                        SPEC.number
                    ),
                    x_label: "p2 (after second hidden layer)".into(),
                    y_label: "p1 (after first hidden layer)".into(),
                    xs: grid.clone(),
                    ys: grid.clone(),
                    values,
                },
            )?;
        }
        let answer = match r.contrast("swap") {
            Some(c) => {
                let mut a = format!(
                    "On test accuracy at the validation-selected epoch, swapping ({}) {}.",
                    c.contrast,
                    short(Some(c))
                );
                for (id, layer) in [("p1_main", "first"), ("p2_main", "second")] {
                    if let Some(c) = r.contrast(id) {
                        a += &format!(" Raising the {layer} layer's rate: {}.", short(Some(c)));
                    }
                }
                a
            }
            None => "No pair of rates was swept in both orders, so nothing primary is tested; the configurations are compared with the reference as exploratory estimates.".into(),
        };
        write_verdict(r, answer, &self.verdict(r))
    }
}

impl SwapRates {
    fn verdict(&self, r: &Finished) -> String {
        let mut v = format!(
            "# {}\n\n{}. Differences are paired by seed (same init and batch order); the exploratory rows are each configuration against the reference.\n\n",
            SPEC.heading(),
            seeds_note(&self.common)
        );
        if self.swaps().is_empty() {
            v += "No pair of rates was swept in both orders, so this sweep says nothing about swapping.\n\n";
        }
        v += &summary_table(&r.summary);
        v
    }
}
