//! Exercise 3: the variance of the hidden activations, with and without dropout.
//!
//! Question: how does the variance of each hidden layer's activations change
//! over training, for a model trained with dropout and one without? And how
//! does dropout itself change it: by how much does the training-mode output of
//! a dropout layer spread more than its input, and than the activations the
//! network has at evaluation time?
//!
//! Hypotheses, each measured: (1) inverted dropout at rate p turns an
//! activation h with mean mu and variance s^2 into one with mean mu and
//! variance (s^2 + p mu^2) / (1 - p), so in training mode the output of a
//! dropout layer is more spread than its input, most in the second layer
//! (p = 0.5); (2) training with dropout changes the activations the network
//! learns: their evaluation-mode variance at the end of training differs
//! from that of the same network trained without dropout (tested per layer,
//! paired by seed, Holm-adjusted over the layers; the direction is left open,
//! since the co-adaptation argument predicts less redundant, and so possibly
//! less spread, units, while rescaling by 1/(1-p) predicts more).
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
//! units of each unit's variance over samples; with `--plot`,
//! `variance.png` (a panel per hidden layer, variance over steps, a line per
//! model and stage, 95% band over seeds); `verdict.md`.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, summary_table, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, Flag, FlagValue};
use super::{rates_label, Common, Experiment, Finished};
use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::output::plot::{self, DotRow, Dots, Panel, Panels, Series};
use crate::output::write_csv;
use crate::probes::{ProbeRow, Recorder, Stage};
use crate::stats::{self, Estimate, TTest};
use crate::sweep::{RunResult, RunSpec, Worker};
use crate::train::TrainHook;
use crate::verdict::{p_text, ALPHA};

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "variance",
    number: 3,
    title: "The variance of the hidden activations",
    question: "How does the variance of each hidden layer's activations evolve over training, with and without dropout, and how much does dropout itself spread them?",
    about: "Exercise 3: variance of the hidden activations over training, with and without dropout.",
    examples: "drop-exp variance --plot\n  \
               drop-exp variance --plot --epochs 3 --seeds 2 --train-subset 10000   # quick look",
    defaults: include_str!("../../experiments/variance.toml"),
    report: "plot = true\ntarget_ci = 0.5\nmax_seeds = 8\n",
    quick: "plot = true\nseeds = 2\nepochs = 4\ntrain_subset = 20000\ntest_subset = 5000\n",
    flags: &[Flag {
        long: "plot",
        key: "plot",
        help: "Also draw variance.png (a panel per hidden layer)",
        value: FlagValue::Switch,
    }],
    build: |common, table| Ok(Box::new(Variance::new(common, parse(table)?))),
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub rates: Vec<[f64; 2]>,
    pub probes_per_epoch: u32,
    pub probe_size: u32,
    /// Draw `variance.png` (`--plot`).
    #[serde(default)]
    pub plot: bool,
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

pub struct Variance {
    common: Common,
    settings: Settings,
    worker: Box<Worker<'static>>,
}

impl Variance {
    pub fn new(common: Common, settings: Settings) -> Self {
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

    /// Every stored run's probe rows; a run whose rows do not decode is an error.
    fn rows(r: &Finished) -> Result<Vec<ProbeRow>> {
        let mut out = Vec::new();
        for run in r.groups.iter().flat_map(|g| g.runs.iter()) {
            out.extend(crate::sweep::decode_extra::<Vec<ProbeRow>>(run, r.out)?);
        }
        Ok(out)
    }
}

/// Mean over seeds (with 95% CI) of a probe quantity, per step.
fn curve(
    rows: &[ProbeRow],
    model: &str,
    layer: usize,
    stage: Stage,
    f: fn(&ProbeRow) -> f64,
) -> Vec<(f64, Estimate)> {
    let mut steps: Vec<usize> = rows
        .iter()
        .filter(|r| r.model == model && r.layer == layer && r.stage == stage)
        .map(|r| r.step)
        .collect();
    steps.sort_unstable();
    steps.dedup();
    steps
        .into_iter()
        .map(|s| {
            let xs: Vec<f64> = rows
                .iter()
                .filter(|r| r.model == model && r.layer == layer && r.stage == stage && r.step == s)
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
    fn pairs(&self) -> Vec<(String, String)> {
        super::first_vs_rest(&self.configs())
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
        write_csv(&r.out.join("variance.csv"), &rows)?;
        let factors = self.factors_figure(r, &rows)?;
        if self.settings.plot {
            self.variance_figure(r, &rows)?;
        }
        let answer = format!(
            "In training mode dropout multiplies a layer's variance by the predicted factor (s² + p mu²) / ((1 - p) s²): {}. {}",
            factors.join("; "),
            self.eval_variance_answer(&rows)
        );
        write_verdict(r, answer, &self.verdict(r, &rows))
    }
}

impl Variance {
    fn verdict(&self, r: &Finished, rows: &[ProbeRow]) -> String {
        let mut v = format!(
            "# {}\n\n{}; {} probes per epoch on the first {} training images.\n\n",
            SPEC.heading(),
            seeds_note(&self.common),
            self.settings.probes_per_epoch,
            self.settings.probe_size
        );
        let last_step = rows.iter().map(|r| r.step).max().unwrap_or(0);
        let first_step = rows.iter().map(|r| r.step).min().unwrap_or(0);
        let at = |model: &str,
                  layer: usize,
                  stage: Stage,
                  step: usize,
                  f: fn(&ProbeRow) -> f64|
         -> f64 {
            let xs: Vec<f64> = rows
                .iter()
                .filter(|r| {
                    r.model == model && r.layer == layer && r.stage == stage && r.step == step
                })
                .map(f)
                .collect();
            crate::stats::mean(&xs)
        };
        v += "## What dropout does to the variance (training mode)\n\n| model | layer | p | step | var before dropout | var after dropout | measured factor | predicted factor | var in eval mode | after / eval |\n|---|---|---|---|---|---|---|---|---|---|\n";
        for &[p1, p2] in &self.settings.rates {
            let model = rates_label(p1, p2);
            for (layer, p) in [(1, p1), (2, p2)] {
                if p == 0.0 {
                    continue;
                }
                for step in [first_step, last_step] {
                    let pre = at(&model, layer, Stage::TrainPre, step, |r| r.variance);
                    let mu = at(&model, layer, Stage::TrainPre, step, |r| r.mean);
                    let post = at(&model, layer, Stage::TrainPost, step, |r| r.variance);
                    let eval = at(&model, layer, Stage::Eval, step, |r| r.variance);
                    // E[h'^2] = E[h^2] / (1 - p), E[h'] = mu:
                    // Var[h'] = (s^2 + mu^2) / (1 - p) - mu^2 = (s^2 + p mu^2) / (1 - p).
                    let predicted = (pre + p * mu * mu) / ((1.0 - p) * pre);
                    v += &format!(
                        "| {model} | {layer} | {p} | {step} | {pre:.4} | {post:.4} | {:.3} | {predicted:.3} | {eval:.4} | {:.3} |\n",
                        post / pre,
                        post / eval
                    );
                }
            }
        }
        v += "\nThe predicted factor is what inverted dropout does to a variable with the measured mean mu and variance s^2 before dropout, if the mask is independent of the activations: (s^2 + p mu^2) / ((1 - p) s^2). It exceeds 1/(1-p) because ReLU outputs have a positive mean that the mask also spreads.\n\n## With vs without dropout (evaluation mode, end of training)\n\n";
        for layer in 1..=2 {
            let parts: Vec<String> = self
                .settings
                .rates
                .iter()
                .map(|&[p1, p2]| {
                    let m = rates_label(p1, p2);
                    format!(
                        "{m}: variance {:.4} (mean {:.4}, per-unit variance {:.4})",
                        at(&m, layer, Stage::Eval, last_step, |r| r.variance),
                        at(&m, layer, Stage::Eval, last_step, |r| r.mean),
                        at(&m, layer, Stage::Eval, last_step, |r| r.unit_variance)
                    )
                })
                .collect();
            v += &format!("- Layer {layer}: {}.\n", parts.join("; "));
        }
        v += &self.eval_variance_tests(rows, last_step);
        v += "\n";
        v += &summary_table(&r.summary);
        v
    }
}

impl Variance {
    /// `variance.png`: per hidden layer, the variance of the activations over
    /// training, a colour per model (its family's), a line style per stage.
    fn variance_figure(&self, r: &Finished, rows: &[ProbeRow]) -> Result<()> {
        let colors = figures::config_colors(r);
        let mut panels = Vec::new();
        for layer in 1..=2 {
            let mut series = Vec::new();
            for &[p1, p2] in &self.settings.rates {
                let model = rates_label(p1, p2);
                let p = if layer == 1 { p1 } else { p2 };
                let base = colors
                    .iter()
                    .find(|(l, _)| *l == model)
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
                    let mut s = Series::band(
                        format!("{model}, {}", stage.describe()),
                        color,
                        curve(rows, &model, layer, stage, |r| r.variance)
                            .into_iter()
                            .map(|(x, e)| (x, e.mean, e.ci_low, e.ci_high))
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
                    "Exercise {}: activation variance over training (mean over seeds, 95% band)",
                    SPEC.number
                ),
                panels,
                cols: 2,
            },
        )
    }

    /// `effects.png`: by how much dropout multiplies a layer's variance in
    /// training mode at the end of training, measured (per seed, 95% CI)
    /// against the prediction (s^2 + p mu^2) / ((1 - p) s^2).
    fn factors_figure(&self, r: &Finished, rows: &[ProbeRow]) -> Result<Vec<String>> {
        let last = rows.iter().map(|r| r.step).max().unwrap_or(0);
        let colors = figures::config_colors(r);
        let mut dots = Vec::new();
        let mut answers = Vec::new();
        for &[p1, p2] in &self.settings.rates {
            let model = rates_label(p1, p2);
            for (layer, p) in [(1, p1), (2, p2)] {
                if p == 0.0 {
                    continue;
                }
                let at = |stage: Stage, seed: u64| {
                    rows.iter()
                        .find(|r| {
                            r.model == model
                                && r.layer == layer
                                && r.stage == stage
                                && r.step == last
                                && r.seed == seed
                        })
                        .map(|r| (r.mean, r.variance))
                };
                let (mut measured, mut predicted) = (Vec::new(), Vec::new());
                for seed in self.common.seeds() {
                    if let (Some((mu, pre)), Some((_, post))) =
                        (at(Stage::TrainPre, seed), at(Stage::TrainPost, seed))
                    {
                        measured.push(post / pre);
                        predicted.push((pre + p * mu * mu) / ((1.0 - p) * pre));
                    }
                }
                let e = Estimate::of(&measured);
                answers.push(format!(
                    "layer {layer} at p = {p}: measured {:.3}, predicted {:.3}",
                    e.mean,
                    stats::mean(&predicted)
                ));
                let color = colors
                    .iter()
                    .find(|(l, _)| *l == model)
                    .map_or(figures::NONE, |(_, c)| *c);
                dots.push(DotRow {
                    label: format!("{model}, layer {layer} (p = {p})"),
                    value: e.mean,
                    lo: e.ci_low,
                    hi: e.ci_high,
                    color,
                    note: Some((
                        format!("predicted {:.3}", stats::mean(&predicted)),
                        plot::INK,
                    )),
                });
            }
        }
        plot::save(
            &r.out.join("effects.png"),
            &Dots {
                title: format!(
                    "Exercise {}: how much dropout multiplies the variance (training mode, end of training)",
                    SPEC.number
                ),
                x_label: "variance after dropout / before (measured; 95% CI over seeds)".into(),
                rows: dots,
                ..Default::default()
            },
        )?;
        Ok(answers)
    }

    /// Hypothesis (2): per layer, the evaluation-mode variance at the end of
    /// training of each other model minus the first's (the book's rates),
    /// paired by seed, Holm-adjusted over the layers and models.
    fn eval_variance_results(&self, rows: &[ProbeRow], step: usize) -> Vec<EvalTest> {
        let labels: Vec<String> = self
            .settings
            .rates
            .iter()
            .map(|&[a, b]| rates_label(a, b))
            .collect();
        let Some((reference, others)) = labels.split_first() else {
            return Vec::new();
        };
        let per_seed = |model: &str, layer: usize| -> Vec<(u64, f64)> {
            rows.iter()
                .filter(|r| {
                    r.model == model && r.layer == layer && r.stage == Stage::Eval && r.step == step
                })
                .map(|r| (r.seed, r.variance))
                .collect()
        };
        let mut tests = Vec::new();
        for other in others {
            for layer in 1..=2 {
                let base = per_seed(reference, layer);
                let (a, b): (Vec<f64>, Vec<f64>) = per_seed(other, layer)
                    .into_iter()
                    .filter_map(|(seed, x)| {
                        base.iter().find(|(s, _)| *s == seed).map(|(_, y)| (*y, x))
                    })
                    .unzip();
                tests.push(EvalTest {
                    reference: reference.clone(),
                    other: other.clone(),
                    layer,
                    lower: a.iter().zip(&b).filter(|(x, y)| y < x).count(),
                    test: stats::paired(&a, &b),
                    p_holm: f64::NAN,
                });
            }
        }
        let p: Vec<f64> = tests
            .iter()
            .map(|t| {
                if t.test.n >= stats::MIN_RUNS_FOR_INTERVAL {
                    t.test.p
                } else {
                    f64::NAN
                }
            })
            .collect();
        for (t, ph) in tests.iter_mut().zip(stats::holm(&p)) {
            t.p_holm = ph;
        }
        tests
    }

    fn eval_variance_tests(&self, rows: &[ProbeRow], step: usize) -> String {
        let tests = self.eval_variance_results(rows, step);
        let Some(first) = tests.first() else {
            return String::new();
        };
        let mut v = format!(
            "\n**Does training with dropout change the evaluation-mode variance?** Each model against {}, at the last probe, paired by seed, Holm-adjusted over {} tests:\n\n",
            first.reference,
            tests.len()
        );
        for t in &tests {
            let ci = if t.test.ci_low.is_nan() {
                "no interval from fewer than 3 seeds".to_string()
            } else {
                format!("95% CI {:+.4} to {:+.4}", t.test.ci_low, t.test.ci_high)
            };
            v += &format!(
                "- Layer {}: {} minus {}: {:+.4} ({ci}; {} of {} seeds lower; Holm-adjusted p = {}): {}.\n",
                t.layer,
                t.other,
                t.reference,
                t.test.diff,
                t.lower,
                t.test.n,
                p_text(t.p_holm),
                t.word()
            );
        }
        v
    }

    /// Hypothesis (2) in a sentence, for the answer.
    fn eval_variance_answer(&self, rows: &[ProbeRow]) -> String {
        let step = rows.iter().map(|r| r.step).max().unwrap_or(0);
        let tests = self.eval_variance_results(rows, step);
        let parts: Vec<String> = tests
            .iter()
            .map(|t| format!("layer {}: {}", t.layer, t.word()))
            .collect();
        match tests.first() {
            Some(t) => format!(
                "Evaluation-mode variance at the end of training, {} against {}: {}.",
                t.other,
                t.reference,
                parts.join("; ")
            ),
            None => String::new(),
        }
    }
}

/// One test of hypothesis (2).
struct EvalTest {
    reference: String,
    other: String,
    layer: usize,
    /// Seeds where `other` is lower.
    lower: usize,
    test: TTest,
    p_holm: f64,
}

impl EvalTest {
    fn word(&self) -> String {
        if self.test.n < stats::MIN_RUNS_FOR_INTERVAL {
            "too few seeds to test".to_string()
        } else if self.p_holm < ALPHA {
            format!(
                "**{}** with {}",
                if self.test.diff < 0.0 {
                    "lower"
                } else {
                    "higher"
                },
                self.other
            )
        } else {
            "no difference shown (undecided)".to_string()
        }
    }
}
