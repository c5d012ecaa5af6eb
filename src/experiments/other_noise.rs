//! Exercise 7: other ways of injecting noise, against dropout.
//!
//! Question: dropout is one way of adding noise to the hidden layers. Can
//! another kind of noise do better on this model: Gaussian multiplicative
//! noise, log-normal multiplicative noise, additive Gaussian noise, or this
//! project's annealed dropout (a rate falling to 0 over training)?
//!
//! What is matched: the multiplicative kinds have dropout's mean (1) and
//! variance (p/(1-p)) at every strength p. The log-normal multiplier is
//! positive at every rate; the Gaussian one ("Gaussian dropout", as
//! published) is negative with probability Phi(-sqrt((1-p)/p)), 16% at
//! p = 0.5; a uniform multiplier would be negative above p = 0.25, so it is
//! not swept at these strengths. Additive noise uses sigma = p (no variance
//! that grows with the activation can be matched by adding noise). Annealed
//! dropout falls linearly from p to 0, so its mean rate is p/2: it is also
//! compared with constant dropout at p/2, which separates "annealing" from
//! "less dropout".
//!
//! The answer is chosen on validation, never on test: the configuration
//! with the best mean validation accuracy is retrained, with the baseline,
//! on fresh seeds, and that confirmation decides on test whether it beats
//! dropout.
//!
//! Primary contrasts, on test accuracy at the validation-selected epoch:
//! the validation-chosen candidate minus dropout on the fresh seeds,
//! one-sided ("does it beat dropout?"); and annealed dropout minus constant
//! dropout at its mean rate, averaged over the strengths swept (two-sided).
//! Each kind against the baseline in the sweep is exploratory: the sweep
//! picks its winner among many.
//!
//! Hypothesis: the multiplicative kinds, at dropout's variance, should match
//! dropout (Srivastava et al. 2014 report Gaussian dropout as good or
//! slightly better); additive noise, blind to the activation's scale, should
//! do worse; annealing may help the final epochs by removing the train/test
//! mismatch.
//!
//! Swept: the baseline (dropout at the book's rates), each kind of
//! `experiments/noise.toml` at each strength pair (p1, p2), and constant
//! dropout at half of each strength when annealed dropout is swept, x
//! seeds; then the confirmation on fresh seeds (from 2^32 up, beyond any
//! sweep's seeds).
//!
//! Outputs (besides the common CSVs): `accuracy.png` (peak accuracy per
//! configuration, 95% CI, the baseline first), `effects.png`, `curves.png`,
//! `verdict.md`.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, short, summary_table, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, QUICK};
use super::{dropout_config, Common, Confirmation, Experiment, Finished};
use crate::analysis::{Metric, SummaryRow};
use crate::config::TrainConfig;
use crate::contrast::{Contrast, Measure, Role, Sides};
use crate::record::ConfigKey;
use crate::regularizers::RegKind;

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "noise",
    number: 7,
    title: "Other kinds of noise",
    question: "Can another way of injecting noise into the hidden layers beat the book's Bernoulli dropout?",
    about: "Exercise 7: can another kind of noise beat the book's dropout?",
    examples: "drop-exp noise\n  drop-exp noise --epochs 3 --seeds 2 --train-subset 10000",
    defaults: include_str!("../../experiments/noise.toml"),
    // Seeds planned for 80% power at the margin, at most 12 (for the
    // annealing contrast's six configurations); the confirmation trains
    // `seeds` fresh seeds of two configurations.
    report: "plan_seeds = true\nmax_seeds = 12\n",
    quick: QUICK,
    declared: super::spec::FIRST_DECLARATION,
    figures: &["effects.png", "accuracy.png"],
    flags: &[],
    user_layer: super::spec::as_given,
    build: |common, table| Ok(Box::new(OtherNoise::new(common, parse(table)?))),
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    baseline: [f64; 2],
    kinds: Vec<RegKind>,
    strengths: Vec<[f64; 2]>,
}

impl super::CheckSettings for Settings {
    fn check(&self) -> Result<(), String> {
        super::settings::check_probs("baseline", self.baseline)?;
        if self.kinds.is_empty() || self.strengths.is_empty() {
            return Err("`kinds` and `strengths` must each list at least one entry".into());
        }
        super::settings::check_probs("strengths", self.strengths.iter().flatten().copied())?;
        for k in &self.kinds {
            for &p in self.strengths.iter().flatten() {
                k.with(p)
                    .validate()
                    .map_err(|e| format!("`strengths` for {k}: {e}"))?;
            }
        }
        Ok(())
    }
}

struct OtherNoise {
    common: Common,
    settings: Settings,
}

impl OtherNoise {
    fn new(common: Common, settings: Settings) -> Self {
        Self { common, settings }
    }
    fn baseline_label(&self) -> String {
        let [a, b] = self.settings.baseline;
        format!("dropout ({a},{b})")
    }
    /// Dropout at the baseline's rates.
    fn baseline(&self) -> TrainConfig {
        let [b1, b2] = self.settings.baseline;
        dropout_config(&self.common, b1, b2)
    }
    /// Noise of `kind` at strengths (p1, p2).
    fn config(&self, kind: RegKind, [p1, p2]: [f64; 2]) -> TrainConfig {
        self.common.base.with_layers([kind.with(p1), kind.with(p2)])
    }
    fn key(&self, kind: RegKind, p: [f64; 2]) -> ConfigKey {
        ConfigKey::sweep(self.config(kind, p))
    }
    /// Constant dropout at half of strength (p1, p2).
    fn half(&self, [p1, p2]: [f64; 2]) -> ConfigKey {
        super::dropout_key(&self.common, p1 / 2.0, p2 / 2.0)
    }

    /// Constant dropout at half of strength (p1, p2): annealed dropout's
    /// mean rate.
    fn half_label(p: [f64; 2]) -> String {
        format!(
            "dropout ({},{}) = annealed's mean rate",
            p[0] / 2.0,
            p[1] / 2.0
        )
    }

    fn annealed(&self) -> bool {
        self.settings.kinds.contains(&RegKind::AnnealedDropout)
    }

    /// Among the baseline and the other kinds of noise (not the constant
    /// dropout controls), the configuration of the main sweep with the best
    /// mean validation accuracy (at each run's selected epoch), if
    /// validation was measured. A tie goes to the baseline.
    fn validation_winner<'a>(&self, r: &'a Finished) -> Option<&'a SummaryRow> {
        let base = ConfigKey::sweep(self.baseline());
        // The main sweep's configurations.
        let main: Vec<&SummaryRow> = r
            .groups
            .iter()
            .zip(&r.summary)
            .filter(|(g, _)| !g.is_confirmation())
            .map(|(_, s)| s)
            .collect();
        let others = main
            .iter()
            .copied()
            .filter(|s| s.config.train().layers[0].kind() != RegKind::Dropout);
        // `max_by` keeps the last of equal maxima: the baseline comes last.
        others
            .chain(main.iter().copied().filter(|s| s.config.key == base))
            .filter(|s| s.val_acc_mean.is_finite())
            .max_by(|a, b| a.val_acc_mean.total_cmp(&b.val_acc_mean))
    }
}

/// Suffix of the labels of the confirmation's runs (presentation only).
const FRESH: &str = " [fresh seeds]";

impl Experiment for OtherNoise {
    super::experiment_accessors!(SPEC);
    fn contrasts(&self) -> Vec<Contrast> {
        if !self.annealed() {
            return Vec::new();
        }
        let k = self.settings.strengths.len() as f64;
        let mut terms = Vec::new();
        for &[p1, p2] in &self.settings.strengths {
            terms.push((self.key(RegKind::AnnealedDropout, [p1, p2]), 1.0 / k));
            terms.push((self.half([p1, p2]), -1.0 / k));
        }
        vec![Contrast {
            id: "annealing".into(),
            question: "does annealing the rate beat constant dropout at the same mean rate?".into(),
            estimand: Some(
                "annealed dropout − constant dropout at its mean rate, mean over the strengths"
                    .into(),
            ),
            terms,
            measure: Measure::Accuracy(Metric::Selected),
            sides: Sides::Two,
            sesoi: self.common.margin / 100.0,
            role: Role::Primary,
        }]
    }
    fn configs(&self) -> Vec<(String, TrainConfig)> {
        let mut out = vec![(self.baseline_label(), self.baseline())];
        for &kind in &self.settings.kinds {
            for &[p1, p2] in &self.settings.strengths {
                out.push((format!("{kind} ({p1},{p2})"), self.config(kind, [p1, p2])));
            }
        }
        if self.annealed() {
            for &[p1, p2] in &self.settings.strengths {
                let c = dropout_config(&self.common, p1 / 2.0, p2 / 2.0);
                out.push((Self::half_label([p1, p2]), c));
            }
        }
        out
    }
    fn pairs(&self) -> Vec<(ConfigKey, ConfigKey)> {
        let mut out = super::first_vs_rest(&self.configs());
        if self.annealed() {
            for &p in &self.settings.strengths {
                out.push((self.half(p), self.key(RegKind::AnnealedDropout, p)));
            }
        }
        out
    }

    /// The validation winner against the baseline, retrained on fresh
    /// seeds; nothing when the baseline itself wins on validation.
    fn confirm(&self, r: &Finished) -> Option<Confirmation> {
        let winner = self.validation_winner(r)?;
        let base = self.baseline();
        if *winner.config.train() == base {
            return None;
        }
        let chosen = winner.config.train().clone();
        let beats = Contrast::difference(
            "confirmation",
            "does the validation-chosen kind beat dropout on fresh seeds?",
            ConfigKey::confirmation(chosen.clone()),
            ConfigKey::confirmation(base.clone()),
            Measure::Accuracy(Metric::Selected),
            self.common.margin / 100.0,
        )
        .greater();
        Some(Confirmation {
            configs: vec![
                (format!("{}{FRESH}", self.baseline_label()), base),
                (format!("{}{FRESH}", winner.config.label), chosen),
            ],
            contrasts: vec![beats],
            seeds: None,
        })
    }

    fn conclude(&self, r: &Finished) -> Result<String> {
        figures::peak_dots(
            r,
            &r.out.join("accuracy.png"),
            &format!(
                "Exercise {}: test accuracy by kind of noise and strength",
                SPEC.number
            ),
        )?;
        figures::effects(
            r,
            &r.out.join("effects.png"),
            &format!("Exercise {}: the primary contrasts", SPEC.number),
            &Metric::Selected.describe(r.end_k()),
            &r.primary(),
        )?;
        let baseline = ConfigKey::sweep(self.baseline());
        figures::accuracy_panels(
            r,
            &r.out.join("curves.png"),
            &format!(
                "Exercise {}: test accuracy by kind of noise, against {}",
                SPEC.number,
                self.baseline_label()
            ),
            |g| {
                (!g.is(&baseline)).then(|| {
                    let kind = g.config().layers[0].kind();
                    if g.is_confirmation() {
                        "confirmation on fresh seeds".to_string()
                    } else if kind == RegKind::Dropout {
                        "constant dropout at annealed's mean rate".to_string()
                    } else {
                        kind.to_string()
                    }
                })
            },
        )?;
        let mut answer = self.confirmation_sentence(r);
        if let Some(c) = r.contrast("annealing") {
            answer += &format!(
                " Annealed dropout minus constant dropout at its mean rate (mean over the strengths): {}.",
                short(Some(c))
            );
        }
        write_verdict(r, answer, &self.verdict(r))
    }
}

impl OtherNoise {
    /// What the confirmation on fresh seeds says, in a sentence.
    fn confirmation_sentence(&self, r: &Finished) -> String {
        let base = self.baseline_label();
        let Some(winner) = self.validation_winner(r) else {
            return "Without a validation split no configuration is chosen (the test set never chooses); nothing is confirmed.".into();
        };
        if *winner.config.train() == self.baseline() {
            return format!(
                "On validation, no kind of noise did better than {base} (the baseline had the best mean validation accuracy, {:.2}%), so none is a candidate to beat it.",
                100.0 * winner.val_acc_mean
            );
        }
        match r.contrast("confirmation") {
            Some(c) => format!(
                "The best on validation, {} ({:.2}% mean validation accuracy), retrained with {base} on {} fresh seeds; on test accuracy at the validation-selected epoch, {}: {}.",
                winner.config.label,
                100.0 * winner.val_acc_mean,
                c.n,
                c.contrast,
                short(Some(c)),
            ),
            None => "The confirmation on fresh seeds is missing.".into(),
        }
    }

    fn verdict(&self, r: &Finished) -> String {
        let base = self.baseline_label();
        format!(
            "# {}\n\n{}; baseline {base}. Multiplicative kinds match dropout's mean and variance p/(1-p) at each strength; lognormal-mult's multiplier is never negative, gaussian-mult's is (16% of the time at p = 0.5), and a uniform multiplier would be negative above p = 0.25, so it is not swept. gaussian-add uses sigma = p. The sweep's rows against the baseline are exploratory: its best is picked among many, so only the confirmation on fresh seeds decides whether it beats dropout.\n\n{}",
            SPEC.heading(),
            seeds_note(&self.common),
            summary_table(&r.summary)
        )
    }
}
