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
//! Hypothesis: the multiplicative kinds, at dropout's variance, should match
//! dropout (Srivastava et al. 2014 report Gaussian dropout as good or
//! slightly better); additive noise, blind to the activation's scale, should
//! do worse; annealing may help the final epochs by removing the train/test
//! mismatch.
//!
//! Swept: the baseline (dropout at the book's rates), each kind of
//! `experiments/noise.toml` at each strength pair (p1, p2), and constant
//! dropout at half of each strength when annealed dropout is swept, x
//! seeds; then the confirmation on seeds 1000 and up.
//!
//! Outputs (besides the common CSVs): `accuracy.png` (headline accuracy per
//! configuration, 95% CI, the baseline first), `effects.png`, `curves.png`,
//! `verdict.md`.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, short, summary_table, tally, verdict_list, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, QUICK};
use super::{dropout_config, Common, Confirmation, Experiment, Finished};
use crate::analysis::{Metric, SummaryRow};
use crate::config::TrainConfig;
use crate::regularizers::RegKind;
use crate::verdict::{describe, pts, Comparison, Verdict};

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "noise",
    number: 7,
    title: "Other kinds of noise",
    question: "Can another way of injecting noise into the hidden layers beat the book's Bernoulli dropout?",
    about: "Exercise 7: other noise-injection kinds against the book's dropout.",
    examples: "drop-exp noise\n  drop-exp noise --epochs 3 --seeds 2 --train-subset 10000",
    defaults: include_str!("../../experiments/noise.toml"),
    // Seeds until every comparison's 95% CI is within ±0.5 points, at most
    // 8: a seed costs 160 run-epochs here, and the confirmation as many
    // fresh seeds again for two configurations.
    report: "target_ci = 0.5\nmax_seeds = 8\n",
    quick: QUICK,
    flags: &[],
    build: |common, table| Ok(Box::new(OtherNoise::new(common, parse(table)?))),
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub baseline: [f64; 2],
    pub kinds: Vec<RegKind>,
    pub strengths: Vec<[f64; 2]>,
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

pub struct OtherNoise {
    common: Common,
    settings: Settings,
}

impl OtherNoise {
    pub fn new(common: Common, settings: Settings) -> Self {
        Self { common, settings }
    }
    fn baseline_label(&self) -> String {
        let [a, b] = self.settings.baseline;
        format!("dropout ({a},{b})")
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
    fn validation_winner<'a>(&self, summary: &'a [SummaryRow]) -> Option<&'a SummaryRow> {
        let base = self.baseline_label();
        let others = summary.iter().filter(|s| {
            s.config.train.layers[0].kind() != RegKind::Dropout && !s.config.label.ends_with(FRESH)
        });
        // `max_by` keeps the last of equal maxima: the baseline comes last.
        others
            .chain(summary.iter().filter(|s| s.config.label == base))
            .filter(|s| s.val_acc_mean.is_finite())
            .max_by(|a, b| a.val_acc_mean.total_cmp(&b.val_acc_mean))
    }
}

/// Suffix of the labels of the confirmation's runs.
const FRESH: &str = " [fresh seeds]";

impl Experiment for OtherNoise {
    super::experiment_accessors!(SPEC);
    fn configs(&self) -> Vec<(String, TrainConfig)> {
        let [b1, b2] = self.settings.baseline;
        let mut out = vec![(self.baseline_label(), dropout_config(&self.common, b1, b2))];
        for &kind in &self.settings.kinds {
            for &[p1, p2] in &self.settings.strengths {
                let label = format!("{kind} ({p1},{p2})");
                if out.iter().all(|(l, _)| *l != label) {
                    let layers = [kind.with(p1), kind.with(p2)];
                    out.push((label, self.common.base.with_layers(layers)));
                }
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
    fn pairs(&self) -> Vec<(String, String)> {
        let base = self.baseline_label();
        let mut out: Vec<(String, String)> = self
            .configs()
            .into_iter()
            .skip(1)
            .map(|(l, _)| (base.clone(), l))
            .collect();
        if self.annealed() {
            for &[p1, p2] in &self.settings.strengths {
                out.push((
                    Self::half_label([p1, p2]),
                    format!("{} ({p1},{p2})", RegKind::AnnealedDropout),
                ));
            }
        }
        out
    }

    /// The validation winner against the baseline, retrained on fresh
    /// seeds; nothing when the baseline itself wins on validation.
    fn confirm(&self, r: &Finished) -> Option<Confirmation> {
        let winner = self.validation_winner(&r.summary)?;
        let base = self.baseline_label();
        if winner.config.label == base {
            return None;
        }
        let base_config = self.configs().into_iter().next()?.1;
        let (b, w) = (
            format!("{base}{FRESH}"),
            format!("{}{FRESH}", winner.config.label),
        );
        Some(Confirmation {
            configs: vec![
                (b.clone(), base_config),
                (w.clone(), winner.config.train.clone()),
            ],
            pairs: vec![(b, w)],
        })
    }

    fn conclude(&self, r: &Finished) -> Result<String> {
        figures::headline_dots(
            r,
            &r.out.join("accuracy.png"),
            &format!(
                "Exercise {}: test accuracy by kind of noise and strength",
                SPEC.number
            ),
        )?;
        let primary = r.primary();
        figures::effects(
            r,
            &r.out.join("effects.png"),
            &format!(
                "Exercise {}: each kind of noise minus dropout {:?}",
                SPEC.number, self.settings.baseline
            ),
            &primary,
            |c| c.b.clone(),
        )?;
        let baseline = self.baseline_label();
        figures::accuracy_panels(
            r,
            &r.out.join("curves.png"),
            &format!(
                "Exercise {}: test accuracy by kind of noise, against {baseline}",
                SPEC.number
            ),
            |g| {
                (g.label != baseline).then(|| {
                    let kind = g.config.layers[0].kind();
                    if g.label.ends_with(FRESH) {
                        "confirmation on fresh seeds".to_string()
                    } else if kind == RegKind::Dropout {
                        "constant dropout at annealed's mean rate".to_string()
                    } else {
                        kind.to_string()
                    }
                })
            },
        )?;
        let answer = format!(
            "{} In the sweep, against {baseline}: {}.",
            self.confirmation_sentence(r),
            tally(&self.vs_baseline(r))
        );
        write_verdict(r, answer, &self.verdict(r))
    }
}

impl OtherNoise {
    /// The main sweep's comparisons against the baseline.
    fn vs_baseline<'a>(&self, r: &'a Finished) -> Vec<&'a Comparison> {
        let base = self.baseline_label();
        r.primary().into_iter().filter(|c| c.a == base).collect()
    }

    /// What the confirmation on fresh seeds says, in a sentence.
    fn confirmation_sentence(&self, r: &Finished) -> String {
        let base = self.baseline_label();
        let Some(winner) = self.validation_winner(&r.summary) else {
            return "Without a validation split no configuration is chosen (the test set never chooses); nothing is confirmed.".into();
        };
        if winner.config.label == base {
            return format!(
                "On validation, no kind of noise did better than {base} (the baseline had the best mean validation accuracy, {:.2}%), so none is a candidate to beat it.",
                100.0 * winner.val_acc_mean
            );
        }
        let (b, w) = (
            format!("{base}{FRESH}"),
            format!("{}{FRESH}", winner.config.label),
        );
        match r.comparison(&b, &w, Metric::HEADLINE) {
            Some(c) => format!(
                "The best on validation, {} ({:.2}% mean validation accuracy), retrained with {base} on {} fresh seeds: {} minus dropout {}, so it {}.",
                winner.config.label,
                100.0 * winner.val_acc_mean,
                c.test.n,
                winner.config.label,
                short(c),
                match c.verdict {
                    Verdict::Better => "beats dropout",
                    Verdict::Worse => "does not beat dropout (it is worse)",
                    Verdict::Equivalent => "does not beat dropout (equivalent within the margin)",
                    Verdict::Undecided => "is not shown to beat dropout (undecided)",
                }
            ),
            None => "The confirmation on fresh seeds is missing.".into(),
        }
    }

    fn verdict(&self, r: &Finished) -> String {
        let base = self.baseline_label();
        let mut v = format!(
            "# {}\n\n{}; baseline {base}. Each configuration is compared with the baseline, paired by seed. Multiplicative kinds match dropout's mean and variance p/(1-p) at each strength; lognormal-mult's multiplier is never negative, gaussian-mult's is (16% of the time at p = 0.5), and a uniform multiplier would be negative above p = 0.25, so it is not swept. gaussian-add uses sigma = p.\n\n",
            SPEC.heading(),
            seeds_note(&self.common)
        );
        v += &format!(
            "**Chosen on validation, confirmed on fresh seeds.** {}\n\n",
            self.confirmation_sentence(r)
        );
        if self.annealed() {
            v += "**Annealed dropout against constant dropout at the same mean rate** (annealed minus constant):\n\n";
            for &[p1, p2] in &self.settings.strengths {
                let a = format!("{} ({p1},{p2})", RegKind::AnnealedDropout);
                if let Some(c) = r.comparison(&Self::half_label([p1, p2]), &a, Metric::HEADLINE) {
                    v += &format!("- {a}: {}.\n", describe(c));
                }
            }
            v += "\n";
        }
        let comps = self.vs_baseline(r);
        let winners: Vec<String> = comps
            .iter()
            .filter(|c| c.verdict == Verdict::Better)
            .map(|c| format!("{} ({} points)", c.b, pts(c.test.diff)))
            .collect();
        if winners.is_empty() {
            v += &format!("**In the sweep:** none of the {} configurations is better than {base} after Holm's correction", comps.len());
            let undecided = comps
                .iter()
                .filter(|c| c.verdict == Verdict::Undecided)
                .count();
            if undecided > 0 {
                v += &format!(
                    ", and {undecided} are undecided (neither better, worse nor equivalent within the margin): more seeds could still find one better, as the list below says for each"
                );
            }
            v += ".\n\n";
        } else {
            v += &format!(
                "**In the sweep, better than dropout after correction:** {} (the confirmation above is the test that counts: the sweep's winner is picked among many).\n\n",
                winners.join("; ")
            );
        }
        v += &format!("Each configuration against {base}, by verdict:\n\n");
        v += &verdict_list(&comps, |c| c.b.clone());
        v += "\n";
        v += &summary_table(&r.summary);
        v
    }
}
