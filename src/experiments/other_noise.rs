//! Exercise 7: other ways of injecting noise, against dropout.
//!
//! Question: dropout is one way of adding noise to the hidden layers. Can
//! another kind of noise do better on this model: Gaussian multiplicative
//! noise, additive Gaussian noise, uniform multiplicative noise, or this
//! project's annealed dropout (a rate falling to 0 over training)?
//!
//! Hypothesis: the multiplicative kinds, at dropout's variance, should match
//! dropout (Srivastava et al. 2014 report Gaussian dropout as good or
//! slightly better); additive noise, blind to the activation's scale, should
//! do worse; annealing may help the final epochs by removing the train/test
//! mismatch.
//!
//! Swept: the baseline (dropout at the book's rates), and each kind of
//! `experiments/noise.toml` at each strength pair (p1, p2), x seeds.
//!
//! Outputs (besides the common CSVs): `bars.png` (headline accuracy per
//! configuration, 95% CI, the baseline first), `curves.png`, `verdict.md`
//! naming the kinds that beat dropout, by how much, with p-values.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, short, summary_table, tally, verdict_list, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, QUICK};
use super::{dropout_config, Common, Experiment, Finished};
use crate::analysis::{pts, Comparison, Metric, Verdict};
use crate::config::TrainConfig;
use crate::regularizers::RegKind;

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "noise",
    number: 7,
    title: "Other kinds of noise",
    question: "Can another way of injecting noise into the hidden layers beat the book's Bernoulli dropout?",
    about: "Exercise 7: other noise-injection kinds against the book's dropout.",
    examples: "drop-exp noise\n  drop-exp noise --epochs 3 --seeds 2 --train-subset 10000",
    defaults: include_str!("../../experiments/noise.toml"),
    report: "",
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
}

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
        out
    }
    fn pairs(&self) -> Vec<(String, String)> {
        let base = self.baseline_label();
        self.configs()
            .into_iter()
            .skip(1)
            .map(|(l, _)| (base.clone(), l))
            .collect()
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
            |g| (g.label != baseline).then(|| g.config.layers[0].kind().to_string()),
        )?;
        let better: Vec<String> = primary
            .iter()
            .filter(|c| c.verdict == Verdict::Better)
            .map(|c| format!("{} ({})", c.b, short(c)))
            .collect();
        let answer = format!(
            "{} Of the {} configurations against {}: {}.",
            if better.is_empty() {
                "No kind of noise is better than dropout after correction.".to_string()
            } else {
                format!("Better than dropout: {}.", better.join("; "))
            },
            primary.len(),
            self.baseline_label(),
            tally(&primary)
        );
        write_verdict(r, answer, &self.verdict(r))
    }
}

impl OtherNoise {
    fn verdict(&self, r: &Finished) -> String {
        let base = self.baseline_label();
        let mut v = format!(
            "# {}\n\n{}; baseline {base}. Headline metric: test accuracy averaged over each run's last 3 epochs; each configuration is compared with the baseline, paired by seed.\n\n",
            SPEC.heading(),
            seeds_note(&self.common)
        );
        let comps: Vec<&Comparison> = r
            .comparisons
            .iter()
            .filter(|c| c.metric == Metric::Last3)
            .collect();
        let winners: Vec<String> = comps
            .iter()
            .filter(|c| c.verdict == Verdict::Better)
            .map(|c| format!("{} ({} points)", c.b, pts(c.test.diff)))
            .collect();
        if winners.is_empty() {
            v += &format!("**Does any noise beat dropout?** No: none of the {} configurations is better than {base} after Holm's correction", comps.len());
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
                "**Better than dropout after correction:** {}.\n\n",
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
