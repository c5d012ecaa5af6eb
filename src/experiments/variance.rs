//! Exercise 3: the variance of the hidden activations, with and without dropout.
//!
//! Question: how does the variance of each hidden layer's activations change
//! over training, for a model trained with dropout and one without? And how
//! does dropout itself change it: by how much does the training-mode output of
//! a dropout layer spread more than its input, and than the activations the
//! network has at evaluation time?
//!
//! Primary contrasts (the question): per hidden layer, at the end of the
//! first epoch, of the middle one and of the last, the variance of the
//! activations of the network trained with dropout against the one trained
//! without, as the log of their ratio (paired by seed, two-sided: the
//! co-adaptation argument predicts less redundant, and so possibly less
//! spread, units, while rescaling by 1/(1-p) predicts more), with a
//! smallest effect of interest of a 10% ratio, in both modes: evaluation
//! mode (the network as tested) and training mode after the dropout layer
//! (what the next layer sees while training). The runs are at a learning
//! rate where training without dropout is stable (`experiments/variance.toml`);
//! a run that blows up is counted, not dropped.
//!
//! A check, not the answer: inverted dropout at rate p turns an activation
//! h with mean mu and variance s^2 into one with mean mu and variance
//! (s^2 + p mu^2) / (1 - p), so in training mode the output of a dropout
//! layer is more spread than its input by the factor (s^2 + p mu^2) /
//! ((1 - p) s^2); the verdict compares the measured factor with it.
//!
//! Swept: the (p1, p2) pairs of `experiments/variance.toml` (book's rates and
//! none), x seeds. About 20 times per epoch the activations of a fixed probe
//! batch (the first 512 training images) are measured, with the probe's own
//! noise stream so measuring never changes training.
//!
//! Outputs (besides the common CSVs): `variance.csv` with columns `step,
//! epoch, model, layer, stage, mean, variance, unit_variance, seed`, where
//! stage is `train_pre` (ReLU output in training mode, before dropout),
//! `train_post` (after dropout, training mode) or `eval` (evaluation mode),
//! `variance` is over all units and samples and `unit_variance` the mean over
//! units of each unit's variance over samples; `effects.png` (the primary
//! contrasts); with `--plot`, `variance.png` (a panel per hidden layer,
//! variance over steps, a line per model and stage, 95% band over seeds);
//! `verdict.md`.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, summary_table, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, Flag, FlagValue};
use super::{dropout_key, rates_label, Common, Experiment, Finished};
use crate::config::TrainConfig;
use crate::contrast::{Contrast, Measure, ProbeMeasure, Role, Sides};
use crate::data::Dataset;
use crate::output::plot::{self, Panel, Panels, Series};
use crate::output::write_csv;
use crate::probes::{ProbeRow, Recorder, Stage};
use crate::record::ConfigKey;
use crate::record::{RunSpec, StoredRun};
use crate::stats::{self, Estimate};
use crate::sweep::{RunResult, Worker};
use crate::train::TrainHook;

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "variance",
    number: 3,
    title: "The variance of the hidden activations",
    question: "How does the variance of each hidden layer's activations evolve over training, with and without dropout, and how much does dropout itself spread them?",
    about: "Exercise 3: how does each layer's activation variance evolve, with vs without dropout?",
    examples: "drop-exp variance --plot\n  \
               drop-exp variance --plot --epochs 3 --seeds 2 --train-subset 10000   # quick look",
    defaults: include_str!("../../experiments/variance.toml"),
    // Seeds planned for 80% power at a 10% ratio, at most 12.
    report: "plot = true\nplan_seeds = true\nmax_seeds = 12\n",
    quick: "plot = true\nseeds = 2\nepochs = 4\ntrain_subset = 20000\ntest_subset = 5000\n",
    // Redeclared at a stable learning rate, in both modes; the first
    // design's runs (lr 0.5, evaluation mode only) are not analysed.
    declared: super::spec::Declaration {
        commit: "157d7aa",
        at: "2026-12-04T01:07:43Z",
        before: "The first design (the book's lr 0.5, evaluation mode only, declared in a6507d4) came before it; its runs, 2 of whose 12 without dropout blew up, and their training-mode measurements led to this one.",
    },
    figures: &["effects.png", "variance.png"],
    secondary: None,
    flags: &[Flag {
        long: "plot",
        key: "plot",
        help: "Also draw variance.png (a panel per hidden layer)",
        value: FlagValue::Switch,
    }],
    user_layer: super::spec::as_given,
    build: |common, table| Ok(Box::new(Variance::new(common, parse(table)?))),
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    rates: Vec<[f64; 2]>,
    probes_per_epoch: u32,
    probe_size: u32,
    /// Draw `variance.png` (`--plot`).
    #[serde(default)]
    plot: bool,
}

impl super::CheckSettings for Settings {
    fn check(&self) -> Result<(), String> {
        if self.rates.is_empty() {
            return Err("`rates` is empty; give at least one [p1, p2] pair".into());
        }
        super::settings::check_probs("rates", self.rates.iter().flatten().copied())?;
        if self.probes_per_epoch == 0 || self.probe_size == 0 {
            return Err("`probes_per_epoch` and `probe_size` must be at least 1".into());
        }
        Ok(())
    }
}

struct Variance {
    common: Common,
    settings: Settings,
    worker: Box<Worker<'static>>,
}

/// The smallest effect of interest of the variance contrasts: a ratio of
/// 1.1 (ln 1.1), a 5% change in the activations' spread, below what would
/// change how a layer is initialised or normalised.
const VARIANCE_SESOI: f64 = 0.09531017980432493;

/// "1, 5 and 10".
fn epochs_text(epochs: &[usize]) -> String {
    let e: Vec<String> = epochs.iter().map(|e| e.to_string()).collect();
    match e.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => e.concat(),
    }
}

/// The two ways a network's activations are read: as the next layer sees
/// them in training (after the dropout layer: for the network without
/// dropout, its ReLU output, as in evaluation) and at test time.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Eval,
    Train,
}

impl Mode {
    fn id(self) -> &'static str {
        match self {
            Mode::Eval => "eval",
            Mode::Train => "train",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Mode::Eval => "evaluation-mode",
            Mode::Train => "training-mode",
        }
    }
    fn stage_note(self) -> &'static str {
        match self {
            Mode::Eval => "",
            Mode::Train => " after the dropout layer",
        }
    }
    fn stage(self) -> Stage {
        match self {
            Mode::Eval => Stage::Eval,
            Mode::Train => Stage::TrainPost,
        }
    }
    /// Added to a probe measure's id (layer * 1000 + epoch).
    fn offset(self) -> usize {
        match self {
            Mode::Eval => 0,
            Mode::Train => 100_000,
        }
    }
}

impl Variance {
    /// The epochs whose last probe the primary contrasts read: the first,
    /// the middle and the last.
    fn checkpoints(&self) -> Vec<usize> {
        let e = self.common.base.epochs;
        let mut c = vec![1, e.div_ceil(2), e];
        c.dedup();
        c
    }

    fn new(common: Common, settings: Settings) -> Self {
        let s = settings.clone();
        let worker =
            move |spec: &RunSpec, data: &Dataset, threads: usize, hook: &mut dyn TrainHook| {
                let mut rec = Recorder::new(
                    hook,
                    data,
                    spec,
                    s.probe_size as usize,
                    s.probes_per_epoch as usize,
                )?;
                let out = crate::train::train(&spec.config, spec.seed, data, threads, &mut rec)?;
                Ok(RunResult {
                    diverged: out.diverged,
                    rows: out.rows,
                    extra: serde_json::to_value(rec.into_rows())?,
                })
            };
        Self {
            common,
            settings,
            worker: Box::new(worker),
        }
    }

    /// Every stored run's probe rows, by configuration, each row's `model`
    /// the configuration's label now; a run whose rows do not decode is an
    /// error.
    fn rows(r: &Finished) -> Result<Vec<(ConfigKey, Vec<ProbeRow>)>> {
        let mut out = Vec::new();
        for g in &r.groups {
            let mut rows = Vec::new();
            for run in &g.runs {
                rows.extend(crate::sweep::decode_extra::<Vec<ProbeRow>>(run, r.out)?);
            }
            for row in &mut rows {
                row.model = g.label.clone();
            }
            out.push((g.key().clone(), rows));
        }
        Ok(out)
    }

    /// The probe rows of the configuration `key`, if swept.
    fn rows_of<'a>(by_config: &'a [(ConfigKey, Vec<ProbeRow>)], key: &ConfigKey) -> &'a [ProbeRow] {
        by_config
            .iter()
            .find(|(k, _)| k == key)
            .map_or(&[], |(_, rows)| rows.as_slice())
    }
}

/// Mean over seeds (with 95% CI) of a probe quantity, per step, from one
/// configuration's rows.
fn curve(
    rows: &[ProbeRow],
    layer: usize,
    stage: Stage,
    f: fn(&ProbeRow) -> f64,
) -> Vec<(f64, Estimate)> {
    let mut steps: Vec<usize> = rows
        .iter()
        .filter(|r| r.layer == layer && r.stage == stage)
        .map(|r| r.step)
        .collect();
    steps.sort_unstable();
    steps.dedup();
    steps
        .into_iter()
        .map(|s| {
            let xs: Vec<f64> = rows
                .iter()
                .filter(|r| r.layer == layer && r.stage == stage && r.step == s)
                .map(f)
                .collect();
            (s as f64, Estimate::of(&xs))
        })
        .collect()
}

impl Experiment for Variance {
    super::experiment_accessors!(SPEC);
    fn configs(&self) -> Vec<(String, TrainConfig)> {
        super::rate_configs(&self.common, &self.settings.rates)
    }
    fn pairs(&self) -> Vec<(ConfigKey, ConfigKey)> {
        super::first_vs_rest(&self.configs())
    }
    fn contrasts(&self) -> Vec<Contrast> {
        let rates = &self.settings.rates;
        let key = |[p1, p2]: [f64; 2]| dropout_key(&self.common, p1, p2);
        let Some(none) = self
            .settings
            .rates
            .iter()
            .position(|p| p[0] == 0.0 && p[1] == 0.0)
        else {
            return Vec::new();
        };
        let Some(with) = (0..rates.len()).find(|&i| i != none) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for mode in [Mode::Eval, Mode::Train] {
            for layer in 1..=2 {
                for epoch in self.checkpoints() {
                    out.push(Contrast {
                        id: format!("{}_layer{layer}_epoch{epoch}", mode.id()),
                        question: format!(
                            "does dropout change layer {layer}'s {} variance by the end of epoch {epoch}?",
                            mode.name()
                        ),
                        estimand: Some(format!(
                            "ln(variance {} / variance {})",
                            rates_label(rates[with][0], rates[with][1]),
                            rates_label(rates[none][0], rates[none][1])
                        )),
                        terms: vec![(key(rates[with]), 1.0), (key(rates[none]), -1.0)],
                        measure: Measure::Probe(ProbeMeasure {
                            id: mode.offset() + layer * 1000 + epoch,
                            name: format!(
                                "ln of layer {layer}'s {} activation variance{}, end of epoch {epoch}",
                                mode.name(),
                                mode.stage_note()
                            ),
                            scale: 1.0,
                            unit: "",
                            higher_is_better: None,
                        }),
                        sides: Sides::Two,
                        sesoi: VARIANCE_SESOI,
                        role: Role::Primary,
                    });
                }
            }
        }
        out
    }
    fn probe_value(&self, run: &StoredRun, m: &ProbeMeasure) -> Option<f64> {
        let mode = if m.id >= Mode::Train.offset() {
            Mode::Train
        } else {
            Mode::Eval
        };
        let id = m.id - mode.offset();
        let (layer, epoch) = (id / 1000, id % 1000);
        // Read in place: cloning the stored measurements for every value
        // asked for was most of this exercise's analysis time.
        let rows = Vec::<ProbeRow>::deserialize(&run.extra).ok()?;
        rows.iter()
            .filter(|r| r.layer == layer && r.epoch == epoch && r.stage == mode.stage())
            .max_by_key(|r| r.step)
            .map(|r| r.variance.ln())
            .filter(|v| v.is_finite())
    }
    /// Its runs carry measurements plain runs lack.
    fn adopts_plain_runs(&self) -> bool {
        false
    }
    fn worker(&self) -> Option<&Worker<'_>> {
        Some(self.worker.as_ref())
    }

    fn conclude(&self, r: &Finished) -> Result<String> {
        let rows = Self::rows(r)?;
        let all: Vec<&ProbeRow> = rows.iter().flat_map(|(_, rs)| rs).collect();
        write_csv(&r.out.join("variance.csv"), &all)?;
        if self.settings.plot {
            self.variance_figure(r, &rows)?;
        }
        figures::effects(
            r,
            &r.out.join("effects.png"),
            &format!(
                "Exercise {}: activation variance, with vs without dropout, evaluation and training mode (primary contrasts)",
                SPEC.number
            ),
            "ln of the ratio of activation variances",
            &r.primary(),
        )?;
        let primary = r.primary();
        // Per mode and layer, the checkpoints' ratios in one clause, with
        // one verdict where they share it.
        let of = |mode: Mode| -> Vec<String> {
            (1..=2)
                .filter_map(|layer| {
                    let rows: Vec<_> = primary
                        .iter()
                        .filter(|c| c.id.starts_with(&format!("{}_layer{layer}_", mode.id())))
                        .collect();
                    if rows.is_empty() {
                        return None;
                    }
                    let ratio = |x: f64| format!("{:.2}", x.exp());
                    let verdicts: Vec<String> = rows
                        .iter()
                        .map(|c| crate::contrast::verdict_text(c))
                        .collect();
                    let same = verdicts.iter().all(|v| *v == verdicts[0]);
                    let each: Vec<String> = rows
                        .iter()
                        .zip(&verdicts)
                        .map(|(c, v)| {
                            let epoch = c.id.rsplit("epoch").next().unwrap_or("?");
                            let range = match (c.ci_low, c.ci_high) {
                                (Some(lo), Some(hi)) => {
                                    format!(" ({} to {})", ratio(lo), ratio(hi))
                                }
                                _ => String::new(),
                            };
                            let verdict = if same {
                                String::new()
                            } else {
                                format!(", **{v}**")
                            };
                            format!("epoch {epoch} {}{range}{verdict}", ratio(c.estimate))
                        })
                        .collect();
                    Some(format!(
                        "layer {layer}, {}{}",
                        each.join(", "),
                        if same {
                            format!(": all **{}**", verdicts[0])
                        } else {
                            String::new()
                        }
                    ))
                })
                .collect()
        };
        let (eval, train) = (of(Mode::Eval), of(Mode::Train));
        let answer = if eval.is_empty() {
            "No configuration without dropout was swept, so nothing is compared.".to_string()
        } else {
            format!(
                "Ratio of the activation variances of the network trained with dropout and the one trained without (paired by seed, 95% CI; tested as its logarithm, smallest effect of interest ln 1.1), at lr {}{}, at the end of epochs {}. In evaluation mode (the network as it is tested): {}. In training mode, after the dropout layer (what the next layer sees while training; without dropout the same as evaluation mode): {}.",
                self.common.base.lr,
                self.blowups(r),
                epochs_text(&self.checkpoints()),
                eval.join("; "),
                train.join("; ")
            )
        };
        write_verdict(r, answer, &self.verdict(r, &rows))
    }
}

impl Variance {
    /// ", where no run blew up", or how many did (they are in the
    /// contrasts, counted as their rows say).
    fn blowups(&self, r: &Finished) -> String {
        let (k, n) = r
            .groups
            .iter()
            .fold((0, 0), |(k, n), g| (k + g.spiked(), n + g.runs.len()));
        match k {
            0 => format!(", where none of the {n} runs blew up"),
            k => format!(
                ", where {k} of the {n} runs blew up (a loss spike, divergence or collapse; they stay in every contrast)"
            ),
        }
    }

    fn verdict(&self, r: &Finished, rows: &[(ConfigKey, Vec<ProbeRow>)]) -> String {
        let mut v = format!(
            "# {}\n\n{}; {} probes per epoch on the first {} training images. The primary contrasts read the last probe of epochs {:?}.\n\n",
            SPEC.heading(),
            seeds_note(&self.common),
            self.settings.probes_per_epoch,
            self.settings.probe_size,
            self.checkpoints()
        );
        v += &self.factor_check(rows);
        v += "\n";
        v += &summary_table(&r.summary);
        v
    }

    /// The check (not the answer): in training mode, dropout multiplies a
    /// layer's variance by (s^2 + p mu^2) / ((1 - p) s^2). One estimator
    /// everywhere: per seed, the measured ratio and the predicted factor,
    /// then their means over seeds.
    fn factor_check(&self, by_config: &[(ConfigKey, Vec<ProbeRow>)]) -> String {
        let steps = || by_config.iter().flat_map(|(_, rs)| rs).map(|r| r.step);
        let last_step = steps().max().unwrap_or(0);
        let first_step = steps().min().unwrap_or(0);
        let mut v = "## A check: what dropout does to the variance in training mode\n\nPer seed, the variance after the dropout layer over the variance before it (training mode, probe batch), against the factor (s² + p mu²) / ((1 − p) s²) predicted from that seed's mean mu and variance s² before dropout, if the mask is independent of the activations; then the mean over seeds. It exceeds 1/(1 − p) because ReLU outputs have a positive mean that the mask also spreads. This checks the implementation; it holds by construction and does not answer the question.\n\n| model | layer | p | step | measured factor (95% CI over seeds) | predicted factor |\n|---|---|---|---|---|---|\n".to_string();
        for &[p1, p2] in &self.settings.rates {
            let model = rates_label(p1, p2);
            let rows = Self::rows_of(by_config, &dropout_key(&self.common, p1, p2));
            for (layer, p) in [(1, p1), (2, p2)] {
                if p == 0.0 {
                    continue;
                }
                for step in [first_step, last_step] {
                    let at = |stage: Stage, seed: u64| {
                        rows.iter()
                            .find(|r| {
                                r.layer == layer
                                    && r.stage == stage
                                    && r.step == step
                                    && r.seed == seed
                            })
                            .map(|r| (r.mean, r.variance))
                    };
                    let mut seeds: Vec<u64> = rows.iter().map(|r| r.seed).collect();
                    seeds.sort_unstable();
                    seeds.dedup();
                    let (mut measured, mut predicted) = (Vec::new(), Vec::new());
                    for seed in seeds {
                        if let (Some((mu, pre)), Some((_, post))) =
                            (at(Stage::TrainPre, seed), at(Stage::TrainPost, seed))
                        {
                            measured.push(post / pre);
                            predicted.push((pre + p * mu * mu) / ((1.0 - p) * pre));
                        }
                    }
                    let e = Estimate::of(&measured);
                    let ci = if e.ci_low.is_nan() {
                        format!("n = {}, too few for an interval", e.n)
                    } else {
                        format!("{:.3} to {:.3}", e.ci_low, e.ci_high)
                    };
                    v += &format!(
                        "| {model} | {layer} | {p} | {step} | {:.3} ({ci}) | {:.3} |\n",
                        e.mean,
                        stats::mean(&predicted)
                    );
                }
            }
        }
        v
    }
}

impl Variance {
    /// `variance.png`: per hidden layer, the variance of the activations over
    /// training, a colour per model (its family's), a line style per stage.
    fn variance_figure(
        &self,
        r: &Finished,
        by_config: &[(ConfigKey, Vec<ProbeRow>)],
    ) -> Result<()> {
        let colors = figures::config_colors(r);
        let mut panels = Vec::new();
        for layer in 1..=2 {
            let mut series = Vec::new();
            for &[p1, p2] in &self.settings.rates {
                let model = rates_label(p1, p2);
                let key = dropout_key(&self.common, p1, p2);
                let rows = Self::rows_of(by_config, &key);
                let p = if layer == 1 { p1 } else { p2 };
                let base = colors
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or(figures::NONE, |(_, c)| *c);
                for stage in Stage::ALL {
                    if stage == Stage::TrainPost && p == 0.0 {
                        continue; // identical to train_pre without dropout
                    }
                    // Evaluation mode bold and solid; training mode before
                    // the regulariser dashed, after it lighter.
                    let color = match stage {
                        Stage::TrainPost => base.lighter(0.45),
                        _ => base,
                    };
                    // Geometric mean over seeds and its 95% band (the
                    // interval of the mean log variance): one seed that
                    // blows up moves it by its share, not by its size.
                    let mut s = Series::band(
                        format!("{model}, {}", stage.describe()),
                        color,
                        curve(rows, layer, stage, |r| r.variance.ln())
                            .into_iter()
                            .map(|(x, e)| (x, e.mean.exp(), e.ci_low.exp(), e.ci_high.exp()))
                            .collect(),
                    );
                    s.dashed = stage == Stage::TrainPre;
                    series.push(s);
                }
            }
            panels.push(Panel {
                title: format!("hidden layer {layer}: variance of activations (probe batch)"),
                x_label: "training step".into(),
                y_label: "variance over units and samples".into(),
                series,
                clip: Some((0.0, f64::INFINITY)),
                ..Default::default()
            });
        }
        plot::save(
            &r.out.join("variance.png"),
            &Panels {
                title: format!(
                    "Exercise {}: activation variance over training (geometric mean over seeds, 95% band)",
                    SPEC.number
                ),
                panels,
                cols: 2,
            },
        )
    }
}
