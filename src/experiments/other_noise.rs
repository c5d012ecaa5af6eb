//! Exercise 7: other ways of injecting noise, against dropout tuned alike.
//!
//! Question: dropout is one way of adding noise to the hidden layers. Can
//! another kind of noise do better on this model, when dropout is given
//! the same tuning as its challengers: the multiplicative and additive
//! noises of the first dropout papers, the scheduled dropouts (annealed,
//! curriculum, early), multi-sample dropout, dropout with learned rates
//! (concrete, variational) and R-Drop's consistency loss?
//!
//! The protocol is a referee's. Every family, dropout included, is tuned on
//! the same budget (the same number of strengths) on the selection seeds;
//! each family's winner is its strength with the best mean validation
//! accuracy at the selected epoch ([`OtherNoise::winner`]: a run without
//! one counts at chance). Dropout's winner, *tuned dropout*, is the
//! baseline; the book's (0.2, 0.5) is a reference row. Then every other
//! family's winner is retrained with tuned dropout on fresh seeds (2^32 and
//! up), as many as 80% power at the smallest effect of interest needs
//! (one-sided, at Bonferroni's level over the families, from the selection
//! seeds' spread of the paired validation difference), fixed before they
//! are drawn; only those runs decide, on test, whether a family beats
//! dropout.
//!
//! Primary contrasts (declared in [`OtherNoise::confirm`]), on test
//! accuracy at the validation-selected epoch, on the fresh seeds: each
//! family's winner minus tuned dropout, one-sided ("does it beat
//! dropout?"), Holm over the families. Exploratory: every configuration of
//! the selection against the book's rates; each winner and tuned dropout
//! against the book's rates on the fresh seeds; each winner's training time
//! per epoch against dropout's.
//!
//! Hypothesis: the multiplicative kinds, matched to dropout's variance,
//! match it (Srivastava et al. 2014 report Gaussian dropout as good or
//! slightly better); additive noise, blind to the activation's scale, does
//! worse; at 10 epochs and lr 0.5 little separates the rest.
//!
//! Outputs (besides the common CSVs): `accuracy.png` (peak accuracy per
//! configuration, 95% CI), `effects.png` (the primary contrasts),
//! `curves.png`, `verdict.md` (with the selection table and the costs).
//!
//! Secondary sweep ([`LONG`], `experiments/noise-long.toml`, its own Holm
//! family): at 10 epochs and lr 0.5 no dropout is about as good as the
//! book's rates, so beating dropout there says little. At exercise 2's
//! stable long protocol, where dropout's gain over none is decided, the
//! two families with the best validation accuracy in the selection sweep,
//! at their selected strengths, are retrained with tuned dropout on fresh
//! seeds: each minus tuned dropout, one-sided, on test accuracy at the
//! validation-selected epoch. The settings name those configurations
//! (`recheck`), fixed before the runs; nothing is tuned at that protocol.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, summary_table, write_verdict};
use super::settings::parse;
use super::spec::{Declaration, ExerciseSpec, Secondary, QUICK};
use super::{Common, Confirmation, Experiment, Finished};
use crate::analysis::{Group, Metric};
use crate::config::TrainConfig;
use crate::contrast::{Contrast, ContrastRow, Measure, Role, Sides, Verdict};
use crate::record::ConfigKey;
use crate::regularizers::RegKind;
use crate::stats;

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "noise",
    number: 7,
    title: "Other kinds of noise",
    question: "Can another way of injecting noise into the hidden layers beat dropout, when both are tuned alike?",
    about: "Exercise 7: can another kind of noise beat dropout tuned the same way?",
    examples: "drop-exp noise\n  drop-exp noise --epochs 3 --seeds 2 --train-subset 10000",
    defaults: include_str!("../../experiments/noise.toml"),
    // The fresh seeds of the confirmation are planned for 80% power, at
    // most 12 (each costs a run of every family's winner).
    report: "plan_seeds = true\nmax_seeds = 12\n",
    quick: QUICK,
    // Redeclared as a fair protocol; the first design (four kinds against
    // dropout at the book's rates, declared in a6507d4) had 108 runs.
    declared: super::spec::Declaration {
        commit: "60e5670",
        at: "2026-12-04T02:48:11Z",
        before: "The first design (four noise kinds against dropout fixed at the book's rates, one validation winner confirmed on 5 fresh seeds, and annealed against constant dropout, declared in a6507d4) came before it; its runs of those four kinds at these strengths, and of dropout at the book's rates, are reused by this sweep, so their outcome was known when this design was chosen, and its 10 runs on fresh seeds (annealed-dropout (0.1,0.3) and dropout (0.2,0.5), the first 5 fresh seeds) are reused wherever this design confirms the same configurations.",
    },
    figures: &["effects.png", "accuracy.png"],
    secondary: Some(LONG),
    flags: &[],
    user_layer: super::spec::as_given,
    build: |common, table| Ok(Box::new(OtherNoise::new(common, parse(table)?))),
};

/// The secondary sweep: the two best families against tuned dropout at
/// exercise 2's protocol.
const LONG: Secondary = Secondary {
    folder: "noise-long",
    title: "the two best families against dropout where dropout matters",
    settings: include_str!("../../experiments/noise-long.toml"),
    declared: Declaration {
        commit: "676f2ee",
        at: "2026-12-04T21:08:02Z",
        before: "The selection sweep at 10 epochs and lr 0.5 chose these configurations on validation, and its confirmation on fresh seeds (both undecided there) had been read; exercise 2's runs of dropout at the book's rates and of no dropout at this protocol, reused as reference rows, were known.",
    },
    figures: &["effects.png"],
};

/// A configuration the secondary sweep retrains: a kind at strengths (p1, p2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Chosen {
    kind: RegKind,
    p: [f64; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The families, dropout first.
    kinds: Vec<RegKind>,
    /// Every family's strengths (p1, p2): the tuning budget.
    strengths: Vec<[f64; 2]>,
    /// A family's own strengths where its parameters forbid some of
    /// `strengths`; as many as `strengths`.
    #[serde(default)]
    strengths_for: BTreeMap<String, Vec<[f64; 2]>>,
    /// The secondary sweep's configurations, tuned dropout first, each
    /// retrained on fresh seeds instead of the selection; empty for the
    /// selection sweep.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recheck: Vec<Chosen>,
}

impl super::CheckSettings for Settings {
    fn check(&self) -> Result<(), String> {
        if self.kinds.first() != Some(&RegKind::Dropout) {
            return Err(
                "`kinds` must start with \"dropout\": its validation winner is the baseline".into(),
            );
        }
        if self.strengths.is_empty() {
            return Err("`strengths` is empty; give at least one [p1, p2] pair".into());
        }
        for (name, grid) in &self.strengths_for {
            let kind = RegKind::from_str(name).map_err(|e| format!("`strengths_for`: {e}"))?;
            if !self.kinds.contains(&kind) {
                return Err(format!(
                    "`strengths_for` names {name}, which is not in `kinds`; add it there or remove its grid"
                ));
            }
            if grid.len() != self.strengths.len() {
                return Err(format!(
                    "`strengths_for` gives {name} {} strengths and `strengths` has {}: every family gets the same budget",
                    grid.len(),
                    self.strengths.len()
                ));
            }
        }
        if let Some(first) = self.recheck.first() {
            if first.kind != RegKind::Dropout || self.recheck.len() < 2 {
                return Err(
                    "`recheck` must start with tuned dropout (kind = \"dropout\") and name at least one challenger after it"
                        .into(),
                );
            }
        }
        for c in &self.recheck {
            if !self.kinds.contains(&c.kind) {
                return Err(format!(
                    "`recheck` names {}, which is not among the families of `kinds`; recheck only what the selection tuned",
                    c.kind
                ));
            }
            super::settings::check_probs("recheck", c.p)?;
            for p in c.p {
                c.kind
                    .with(p)
                    .validate()
                    .map_err(|e| format!("`recheck` for {}: {e}", c.kind))?;
            }
        }
        for &k in &self.kinds {
            let grid = self.grid(k);
            super::settings::check_probs("strengths", grid.iter().flatten().copied())?;
            for &p in grid.iter().flatten() {
                k.with(p).validate().map_err(|e| {
                    format!(
                        "`strengths` for {k}: {e}; give {k} a grid of its own in `strengths_for`"
                    )
                })?;
            }
        }
        Ok(())
    }
}

impl Settings {
    /// The strengths family `kind` is tuned over.
    fn grid(&self, kind: RegKind) -> &[[f64; 2]] {
        self.strengths_for
            .get(&kind.to_string())
            .unwrap_or(&self.strengths)
    }
}

struct OtherNoise {
    common: Common,
    settings: Settings,
}

/// Suffix of the labels of the confirmation's runs (presentation only).
const FRESH: &str = " [fresh seeds]";

/// The id of the secondary sweep's reference contrast.
const BOOK_VS_NONE: &str = "the book's − no dropout";

/// The id of the exploratory contrast of the confirmation's `label`
/// against the book's rates.
fn book_id(label: &str) -> String {
    format!("{label} − the book's")
}

impl OtherNoise {
    fn new(common: Common, settings: Settings) -> Self {
        Self { common, settings }
    }
    /// Noise of `kind` at strengths (p1, p2).
    fn config(&self, kind: RegKind, [p1, p2]: [f64; 2]) -> TrainConfig {
        self.common.base.with_layers([kind.with(p1), kind.with(p2)])
    }
    fn label(kind: RegKind, [p1, p2]: [f64; 2]) -> String {
        format!("{kind} ({p1},{p2})")
    }
    /// The book's configuration (dropout at its rates): the reference.
    fn book(&self) -> TrainConfig {
        self.common.base.clone()
    }
    /// No noise at all.
    fn none(&self) -> TrainConfig {
        self.config(RegKind::Dropout, [0.0, 0.0])
    }
    fn book_label(&self) -> String {
        let p = |i: usize| self.common.base.layers[i].p();
        format!("dropout ({},{}), the book's", p(0), p(1))
    }
    /// The families other than dropout.
    fn challengers(&self) -> impl Iterator<Item = RegKind> + '_ {
        self.settings.kinds.iter().copied().skip(1)
    }

    /// Family `kind`'s configuration with the best mean validation
    /// accuracy at the selected epoch over the main sweep's runs (a run
    /// without a selected epoch counts at chance), and that mean; the
    /// weaker strength wins a tie. None without a validation split.
    fn winner<'a>(&self, r: &'a Finished, kind: RegKind) -> Option<(&'a Group<'a>, f64)> {
        if self.common.validation == 0 {
            return None;
        }
        let mut best: Option<(&Group, f64)> = None;
        for &p in self.settings.grid(kind) {
            let Ok(g) = r.group(&ConfigKey::sweep(self.config(kind, p))) else {
                continue;
            };
            let v = super::validation_score(g, r.end_k());
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((g, v));
            }
        }
        best
    }

    /// Fresh seeds for 80% power at the smallest effect of interest, for
    /// every family's winner against tuned dropout (one-sided, Bonferroni
    /// over the families), from the selection seeds' spread of their paired
    /// validation difference: the most any family needs, at least the
    /// sweep's seeds and at most `max_seeds` (the sweep's seeds without
    /// `--plan-seeds`).
    fn fresh_seeds(&self, r: &Finished, tuned: &Group) -> usize {
        let seeds = self.common.seeds as usize;
        let cap = match self.common.plan_seeds {
            true => self.common.max_seeds.map_or(seeds, |m| m as usize),
            false => seeds,
        };
        let k = self.challengers().count().max(1) as f64;
        let alpha = crate::contrast::ALPHA / k;
        let sesoi = self.common.margin / 100.0;
        let mut want = seeds;
        for kind in self.challengers() {
            let Some((g, _)) = self.winner(r, kind) else {
                continue;
            };
            let d: Vec<f64> = g
                .runs
                .iter()
                .filter_map(|a| {
                    let b = tuned.runs.iter().find(|b| b.spec.seed == a.spec.seed)?;
                    let val = |run| crate::analysis::selected_val_acc(run, r.end_k());
                    Some(val(a).unwrap_or(super::CHANCE) - val(b).unwrap_or(super::CHANCE))
                })
                .collect();
            let sd = stats::Estimate::of(&d).sd;
            let power = |n| stats::t_power(n, sesoi, sd, alpha, true);
            want =
                want.max(stats::seeds_for_power(power, crate::contrast::POWER, cap).unwrap_or(cap));
        }
        want.clamp(seeds, cap.max(seeds))
    }
}

impl Experiment for OtherNoise {
    super::experiment_accessors!(SPEC);
    fn declared(&self) -> &'static Declaration {
        match self.settings.recheck.is_empty() {
            true => &SPEC.declared,
            false => &LONG.declared,
        }
    }
    /// The main sweep decides nothing: its winners are confirmed. In the
    /// secondary sweep it holds the reference rows, the book's rates
    /// against none (exploratory).
    fn contrasts(&self) -> Vec<Contrast> {
        if self.settings.recheck.is_empty() {
            return Vec::new();
        }
        vec![Contrast {
            id: BOOK_VS_NONE.into(),
            role: Role::Exploratory,
            sesoi: f64::NAN,
            ..Contrast::difference(
                "",
                "",
                ConfigKey::sweep(self.book()),
                ConfigKey::sweep(self.none()),
                Measure::Accuracy(Metric::Selected),
                0.0,
            )
        }]
    }
    fn configs(&self) -> Vec<(String, TrainConfig)> {
        if !self.settings.recheck.is_empty() {
            return vec![
                (self.book_label(), self.book()),
                ("no dropout".into(), self.none()),
            ];
        }
        let mut out = Vec::new();
        for &kind in &self.settings.kinds {
            for &p in self.settings.grid(kind) {
                out.push((Self::label(kind, p), self.config(kind, p)));
            }
        }
        out
    }
    fn pairs(&self) -> Vec<(ConfigKey, ConfigKey)> {
        if !self.settings.recheck.is_empty() {
            return Vec::new();
        }
        let book = ConfigKey::sweep(self.book());
        self.configs()
            .into_iter()
            .map(|(_, c)| (book.clone(), ConfigKey::sweep(c)))
            .collect()
    }

    /// Tuned dropout, every other family's winner and the book's rates, on
    /// fresh seeds; nothing without a validation split.
    fn confirm(&self, r: &Finished) -> Option<Confirmation> {
        if !self.settings.recheck.is_empty() {
            return Some(self.recheck());
        }
        let (tuned, _) = self.winner(r, RegKind::Dropout)?;
        let base = tuned.config().clone();
        let fresh = |c: &TrainConfig| ConfigKey::confirmation(c.clone());
        let mut configs = vec![(format!("tuned {}{FRESH}", tuned.label), base.clone())];
        let mut contrasts = Vec::new();
        for kind in self.challengers() {
            let Some((g, _)) = self.winner(r, kind) else {
                continue;
            };
            let c = g.config().clone();
            configs.push((format!("{}{FRESH}", g.label), c.clone()));
            contrasts.push(Contrast {
                id: format!("beats_{kind}"),
                question: format!("does {kind}, tuned, beat tuned dropout on fresh seeds?"),
                estimand: Some(format!("{} − tuned {}", g.label, tuned.label)),
                terms: vec![(fresh(&c), 1.0), (fresh(&base), -1.0)],
                measure: Measure::Accuracy(Metric::Selected),
                sides: Sides::Greater,
                sesoi: self.common.margin / 100.0,
                role: Role::Primary,
            });
        }
        let book = self.book();
        if book != base {
            configs.push((format!("{}{FRESH}", self.book_label()), book.clone()));
        }
        for (label, c) in &configs {
            if *c == book {
                continue;
            }
            contrasts.push(Contrast {
                id: book_id(label),
                role: Role::Exploratory,
                sesoi: f64::NAN,
                ..Contrast::difference(
                    "",
                    "",
                    fresh(c),
                    fresh(&book),
                    Measure::Accuracy(Metric::Selected),
                    0.0,
                )
            });
        }
        Some(Confirmation {
            configs,
            contrasts,
            seeds: Some(self.fresh_seeds(r, tuned)),
        })
    }

    fn conclude(&self, r: &Finished) -> Result<String> {
        if !self.settings.recheck.is_empty() {
            return self.conclude_recheck(r);
        }
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
            &format!(
                "Exercise {}: each family's winner − tuned dropout, fresh seeds (primary contrasts)",
                SPEC.number
            ),
            &Metric::Selected.describe(r.end_k()),
            &r.primary(),
        )?;
        figures::accuracy_panels(
            r,
            &r.out.join("curves.png"),
            &format!("Exercise {}: test accuracy by kind of noise", SPEC.number),
            |g| {
                Some(match g.is_confirmation() {
                    true => "confirmation on fresh seeds".to_string(),
                    false => g.config().layers[0].kind().to_string(),
                })
            },
        )?;
        write_verdict(r, self.answer(r), &self.verdict(r))
    }
}

impl OtherNoise {
    fn answer(&self, r: &Finished) -> String {
        let Some((tuned, tv)) = self.winner(r, RegKind::Dropout) else {
            return "Without a validation split nothing is tuned (the test set never chooses), so nothing is confirmed.".into();
        };
        let n = self.settings.strengths.len();
        let book = r.group(&ConfigKey::sweep(self.book())).ok();
        let book_v = book.map_or(f64::NAN, |g| super::validation_score(g, r.end_k()));
        let primary = r.primary();
        let fresh = primary.first().map_or(0, |c| c.n);
        // One clause per verdict, the families that share it listed in it
        // with their estimates; more than three undecided ones are
        // summarised by the range of their estimates, upper bounds and
        // planned seeds (each one is in the primary table).
        let mut by_verdict: Vec<(String, Vec<&ContrastRow>)> = Vec::new();
        for c in &primary {
            let v = match c.verdict {
                Some(Verdict::Undecided) if c.n >= stats::MIN_RUNS_FOR_INTERVAL => {
                    format!("undecided on {} fresh seeds", c.n)
                }
                _ => crate::contrast::verdict_text(c),
            };
            match by_verdict.iter_mut().find(|(w, _)| *w == v) {
                Some((_, rows)) => rows.push(c),
                None => by_verdict.push((v, vec![c])),
            }
        }
        // A family's name: its winner's strengths are in the primary table.
        let family = |c: &ContrastRow| {
            let name = c.contrast.split(" − ").next().unwrap_or(&c.contrast);
            name.split(" (").next().unwrap_or(name).to_string()
        };
        let clause = |v: &str, rows: &[&ContrastRow]| {
            let undecided = rows
                .iter()
                .all(|c| c.verdict == Some(Verdict::Undecided) && c.ci_high.is_some());
            if !undecided || rows.len() <= 3 {
                let items: Vec<String> = rows
                    .iter()
                    .map(|c| format!("{} {}", family(c), crate::contrast::estimate_text(c)))
                    .collect();
                return format!("**{v}**: {}", items.join("; "));
            }
            let span = |xs: Vec<f64>| {
                let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (lo, hi)
            };
            let (e_lo, e_hi) = span(rows.iter().map(|c| c.scale * c.estimate).collect());
            let (_, u_hi) = span(
                rows.iter()
                    .filter_map(|c| c.ci_high.map(|h| c.scale * h))
                    .collect(),
            );
            let needs: Vec<usize> = rows.iter().filter_map(|c| c.planned_seeds()).collect();
            let power = match (needs.iter().min(), needs.iter().max()) {
                (Some(a), Some(b)) => format!("; 80% power needs {a} to {b} seeds"),
                _ => String::new(),
            };
            format!(
                "**{v}**: {} (estimates {e_lo:+.2} to {e_hi:+.2} points, upper 95% bounds at most {u_hi:+.2}{power})",
                rows.iter()
                    .map(|c| family(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let beat = primary
            .iter()
            .filter(|c| c.verdict == Some(Verdict::Higher))
            .count();
        let lead = match beat {
            0 => "none beats it".to_string(),
            b => format!("{b} of the {} beat it", primary.len()),
        };
        let parts: Vec<String> = by_verdict.iter().map(|(v, rows)| clause(v, rows)).collect();
        let mut s = format!(
            "Every family tuned on validation over {n} strengths: dropout's best is {} ({:.2}% mean validation accuracy; the book's rates {:.2}%). Each other family's winner against it on {fresh} fresh seeds, test accuracy at the validation-selected epoch, one-sided, Holm over {}: {lead}. {}.",
            tuned.label,
            100.0 * tv,
            100.0 * book_v,
            primary.len(),
            parts.join(". "),
        );
        if let Some((g, _)) = self
            .challengers()
            .filter_map(|k| self.winner(r, k))
            .max_by(|a, b| a.1.total_cmp(&b.1))
        {
            let cost = super::seconds_per_epoch(g) / super::seconds_per_epoch(tuned);
            s += &format!(
                " The best on validation, {}, costs {cost:.1}x tuned dropout's time per epoch; minus the book's rates on the fresh seeds: {}.",
                g.label,
                r.contrast(&book_id(&format!("{}{FRESH}", g.label)))
                    .map_or("not measured".into(), crate::contrast::estimate_text),
            );
        }
        s
    }

    fn verdict(&self, r: &Finished) -> String {
        let mut v = format!(
            "# {}\n\n{}. Families and their winners on validation (mean validation accuracy at the selected epoch, a run without one at chance; training seconds per epoch against tuned dropout's, as the runs recorded them, two runs at once):\n\n| family | winner | validation accuracy | time per epoch |\n|---|---|---|---|\n",
            SPEC.heading(),
            seeds_note(&self.common),
        );
        let tuned = self.winner(r, RegKind::Dropout);
        for &kind in &self.settings.kinds {
            let Some((g, val)) = self.winner(r, kind) else {
                continue;
            };
            let cost = tuned.map_or(f64::NAN, |(t, _)| {
                super::seconds_per_epoch(g) / super::seconds_per_epoch(t)
            });
            v += &format!(
                "| {kind} | {} | {:.2}% | {cost:.1}x |\n",
                g.label,
                100.0 * val
            );
        }
        v += &format!("\nA secondary sweep retrains the two best families and tuned dropout at exercise 2's protocol, where dropout matters: `experiments/{}.toml`, its verdict in `../{}/verdict.md`.\n", LONG.folder, LONG.folder);
        v += "\nThe sweep's rows against the book's rates are exploratory: each family's winner is picked among its strengths, so only the fresh seeds decide whether it beats dropout.\n\n";
        v += &summary_table(&r.summary);
        v
    }
}

/// The secondary sweep ([`LONG`]).
impl OtherNoise {
    fn recheck_label(&self, i: usize, c: &Chosen) -> String {
        let label = Self::label(c.kind, c.p);
        match i {
            0 => format!("tuned {label}{FRESH}"),
            _ => format!("{label}{FRESH}"),
        }
    }

    /// The configurations of `recheck` on fresh seeds (the sweep's first
    /// seeds, then, with `plan_seeds`, the seeds planned for 80% power),
    /// each challenger against tuned dropout, one-sided.
    fn recheck(&self) -> Confirmation {
        let chosen = &self.settings.recheck;
        let fresh = |c: &Chosen| ConfigKey::confirmation(self.config(c.kind, c.p));
        let configs = chosen
            .iter()
            .enumerate()
            .map(|(i, c)| (self.recheck_label(i, c), self.config(c.kind, c.p)))
            .collect();
        let base = &chosen[0];
        let contrasts = chosen[1..]
            .iter()
            .map(|c| Contrast {
                id: format!("long_beats_{}", c.kind),
                question: format!("does {}, tuned, beat tuned dropout here?", c.kind),
                estimand: Some(format!(
                    "{} − tuned {}",
                    Self::label(c.kind, c.p),
                    Self::label(base.kind, base.p)
                )),
                terms: vec![(fresh(c), 1.0), (fresh(base), -1.0)],
                measure: Measure::Accuracy(Metric::Selected),
                sides: Sides::Greater,
                sesoi: self.common.margin / 100.0,
                role: Role::Primary,
            })
            .collect();
        Confirmation {
            configs,
            contrasts,
            seeds: None,
        }
    }

    fn protocol(&self) -> String {
        let c = &self.common;
        format!(
            "{} training images, {} epochs, lr {}",
            c.train_subset.map_or("all".into(), |n| n.to_string()),
            c.base.epochs,
            c.base.lr
        )
    }

    fn conclude_recheck(&self, r: &Finished) -> Result<String> {
        figures::effects(
            r,
            &r.out.join("effects.png"),
            &format!(
                "Exercise {}, at {}: each family − tuned dropout (primary contrasts)",
                SPEC.number,
                self.protocol()
            ),
            &Metric::Selected.describe(r.end_k()),
            &r.primary(),
        )?;
        figures::accuracy_panels(
            r,
            &r.out.join("curves.png"),
            &format!(
                "Exercise {}: test accuracy at {}",
                SPEC.number,
                self.protocol()
            ),
            |g| {
                Some(match g.is_confirmation() {
                    true => "on fresh seeds".to_string(),
                    false => "reference rows (seeds 0 and up)".to_string(),
                })
            },
        )?;
        let answer = self.recheck_answer(r);
        let mut v = format!(
            "# {}, secondary: {}\n\n{}. The configurations are those the selection sweep (`results/noise`) chose on validation, unchanged: tuned dropout and the two families whose winners had the best mean validation accuracy there; nothing is tuned at this protocol. Training seconds per epoch against tuned dropout's, as the runs recorded them: ",
            SPEC.heading(),
            LONG.title,
            seeds_note(&self.common),
        );
        let groups: Vec<&Group> = self
            .settings
            .recheck
            .iter()
            .filter_map(|c| {
                r.group(&ConfigKey::confirmation(self.config(c.kind, c.p)))
                    .ok()
            })
            .collect();
        let costs: Vec<String> = groups
            .iter()
            .map(|g| {
                format!(
                    "{} {:.1}x",
                    g.label.trim_end_matches(FRESH),
                    super::seconds_per_epoch(g) / super::seconds_per_epoch(groups[0])
                )
            })
            .collect();
        v += &format!("{}.\n\n", costs.join(", "));
        v += &summary_table(&r.summary);
        write_verdict(r, answer, &v)
    }

    fn recheck_answer(&self, r: &Finished) -> String {
        let primary = r.primary();
        let n = primary.first().map_or(0, |c| c.n);
        let items: Vec<String> = primary
            .iter()
            .map(|c| {
                let name = c.contrast.split(" − ").next().unwrap_or(&c.contrast);
                format!(
                    "{name} {}: **{}**",
                    crate::contrast::estimate_text(c),
                    crate::contrast::verdict_text(c)
                )
            })
            .collect();
        let reference = r
            .contrast(BOOK_VS_NONE)
            .map_or("not measured".into(), crate::contrast::estimate_text);
        format!(
            "At exercise 2's protocol ({}; the book's rates minus none: {reference}, exploratory), test accuracy at the validation-selected epoch minus tuned {} on {n} fresh seeds, one-sided, Holm over {}: {}.",
            self.protocol(),
            Self::label(self.settings.recheck[0].kind, self.settings.recheck[0].p),
            primary.len(),
            items.join("; "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::SPEC;
    use crate::experiments::settings::{resolve, Layer};

    /// `recheck` names tuned dropout first, then challengers the selection
    /// tuned, at valid strengths; anything else is an error saying so.
    #[test]
    fn recheck_names_what_the_selection_tuned() {
        let bad = [
            (
                r#"recheck = [{ kind = "early-dropout", p = [0.3, 0.6] }]"#,
                "must start with tuned dropout",
            ),
            (
                r#"recheck = [{ kind = "dropout", p = [0.1, 0.3] }]"#,
                "at least one challenger",
            ),
            (
                r#"recheck = [{ kind = "dropout", p = [0.1, 0.3] }, { kind = "dropconnect", p = [0.2, 0.5] }]"#,
                "not among the families of `kinds`",
            ),
            (
                r#"recheck = [{ kind = "dropout", p = [0.1, 1.3] }, { kind = "r-drop", p = [0.2, 0.5] }]"#,
                "recheck",
            ),
        ];
        for (text, want) in bad {
            let err = match resolve(&SPEC, vec![Layer::text("test", text)]) {
                Ok(_) => panic!("{text} was accepted"),
                Err(e) => format!("{e:#}"),
            };
            assert!(err.contains(want), "{text}: {err}");
        }
        let good = r#"recheck = [{ kind = "dropout", p = [0.1, 0.3] }, { kind = "r-drop", p = [0.2, 0.5] }]"#;
        let exp = resolve(&SPEC, vec![Layer::text("test", good)]).unwrap();
        let labels: Vec<String> = exp.configs().into_iter().map(|(l, _)| l).collect();
        assert_eq!(labels, ["dropout (0.2,0.5), the book's", "no dropout"]);
    }
}
