//! Exercise 3: the variance of the hidden activations, with and without dropout.
//!
//! Question: how does the variance of each hidden layer's activations change
//! over training, for a model trained with dropout and one without? And how
//! does dropout itself change it: by how much does the training-mode output of
//! a dropout layer spread more than its input, and than the activations the
//! network has at evaluation time?
//!
//! Hypothesis: inverted dropout at rate p turns an activation h with mean mu
//! and variance s^2 into one with mean mu and variance
//! (s^2 + p mu^2) / (1 - p), so the training-mode output is
//! noticeably more spread than the evaluation-mode activations, most in the
//! second layer (p = 0.5); over training the network with dropout learns
//! larger, more redundant activations than the one without.
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
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::markdown::{seeds_note, summary_table, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, Flag, FlagValue};
use super::{rates_label, Common, Experiment, Finished};
use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::model::Mlp;
use crate::output::plot::{self, Panel, Series};
use crate::output::write_csv;
use crate::regularizers::NoiseCtx;
use crate::rng::{Rng, Stream};
use crate::stats::Estimate;
use crate::sweep::{RunResult, RunSpec, Worker};
use crate::train::{EpochRow, TrainHook};

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "variance",
    number: 3,
    title: "The variance of the hidden activations",
    question: "How does the variance of each hidden layer's activations evolve over training, with and without dropout, and how much does dropout itself spread them?",
    about: "Exercise 3: variance of the hidden activations over training, with and without dropout.",
    examples: "drop-exp variance --plot\n  \
               drop-exp variance --plot --epochs 3 --seeds 2 --train-subset 10000   # quick look",
    defaults: include_str!("../../experiments/variance.toml"),
    report: "plot = true\n",
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

/// Where in the network a probe measures a hidden layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// ReLU output in training mode, before the regulariser.
    TrainPre,
    /// After the regulariser, training mode.
    TrainPost,
    /// ReLU output in evaluation mode.
    Eval,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::TrainPre, Stage::TrainPost, Stage::Eval];
    pub fn name(self) -> &'static str {
        match self {
            Stage::TrainPre => "train_pre",
            Stage::TrainPost => "train_post",
            Stage::Eval => "eval",
        }
    }
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

/// One measurement: one layer, one stage, at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRow {
    pub step: usize,
    pub epoch: usize,
    pub model: String,
    pub layer: usize,
    pub stage: Stage,
    pub mean: f64,
    pub variance: f64,
    pub unit_variance: f64,
    pub seed: u64,
}

/// Mean, variance over all elements, and mean per-column (unit) variance of
/// an [n, units] matrix.
pub fn moments(xs: &Tensor) -> candle_core::Result<(f64, f64, f64)> {
    let rows: Vec<Vec<f32>> = xs.to_vec2()?;
    let n = rows.len() as f64;
    let units = rows.first().map_or(0, |r| r.len());
    let total = n * units as f64;
    let mean = rows.iter().flatten().map(|&x| x as f64).sum::<f64>() / total;
    let variance = rows
        .iter()
        .flatten()
        .map(|&x| (x as f64 - mean).powi(2))
        .sum::<f64>()
        / total;
    let mut unit_var = 0.0;
    for u in 0..units {
        let m = rows.iter().map(|r| r[u] as f64).sum::<f64>() / n;
        unit_var += rows.iter().map(|r| (r[u] as f64 - m).powi(2)).sum::<f64>() / n;
    }
    Ok((mean, variance, unit_var / units as f64))
}

/// The hook that measures the probe batch during training; it passes every
/// call on to the sweep's own hook (the progress bar).
struct Recorder<'a> {
    inner: &'a mut dyn TrainHook,
    probe: Tensor,
    every: usize,
    total_steps: usize,
    rng: Rng,
    model: String,
    seed: u64,
    rows: Vec<ProbeRow>,
}

impl Recorder<'_> {
    fn record(&mut self, step: usize, epoch: usize, model: &Mlp) -> Result<()> {
        let mut ctx = NoiseCtx {
            rng: &mut self.rng,
            progress: step as f64 / self.total_steps as f64,
        };
        let train = model.trace(&self.probe, true, &mut ctx)?;
        let eval = model.trace(&self.probe, false, &mut ctx)?;
        for layer in 0..train.relu.len() {
            for (stage, t) in [
                (Stage::TrainPre, &train.relu[layer]),
                (Stage::TrainPost, &train.after[layer]),
                (Stage::Eval, &eval.relu[layer]),
            ] {
                let (mean, variance, unit_variance) = moments(t)?;
                self.rows.push(ProbeRow {
                    step,
                    epoch,
                    model: self.model.clone(),
                    layer: layer + 1,
                    stage,
                    mean,
                    variance,
                    unit_variance,
                    seed: self.seed,
                });
            }
        }
        Ok(())
    }
}

impl TrainHook for Recorder<'_> {
    fn after_step(&mut self, step: usize, epoch: usize, model: &Mlp) -> Result<()> {
        self.inner.after_step(step, epoch, model)?;
        if step.is_multiple_of(self.every) || step == 1 {
            self.record(step, epoch, model)?;
        }
        Ok(())
    }
    fn after_epoch(&mut self, rows: &[EpochRow]) -> Result<()> {
        self.inner.after_epoch(rows)
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
                let n = data.train_len();
                let steps_per_epoch = n.div_ceil(spec.config.batch_size);
                let size = (s.probe_size as usize).min(n);
                let mut rec = Recorder {
                    inner: hook,
                    probe: data.train_x.narrow(0, 0, size)?,
                    every: (steps_per_epoch / s.probes_per_epoch as usize).max(1),
                    total_steps: steps_per_epoch * spec.config.epochs,
                    rng: Rng::new(spec.seed, Stream::Probe),
                    model: spec.label.clone(),
                    seed: spec.seed,
                    rows: Vec::new(),
                };
                let out = crate::train::train(&spec.config, spec.seed, data, threads, &mut rec)?;
                Ok(RunResult {
                    diverged: out.diverged,
                    rows: out.rows,
                    extra: serde_json::to_value(&rec.rows)?,
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
    fn worker(&self) -> &Worker<'_> {
        self.worker.as_ref()
    }

    fn conclude(&self, r: &Finished) -> Result<()> {
        let rows = Self::rows(r)?;
        write_csv(&r.out.join("variance.csv"), &rows)?;
        if self.settings.plot {
            let mut panels = Vec::new();
            for layer in 1..=2 {
                let mut series = Vec::new();
                for (i, &[p1, p2]) in self.settings.rates.iter().enumerate() {
                    let model = rates_label(p1, p2);
                    let p = if layer == 1 { p1 } else { p2 };
                    for stage in Stage::ALL {
                        if stage == Stage::TrainPost && p == 0.0 {
                            continue; // identical to train_pre without dropout
                        }
                        let mut s = Series::band(
                            format!("{model} {}", stage.name()),
                            curve(&rows, &model, layer, stage, |r| r.variance)
                                .into_iter()
                                .map(|(x, e)| (x, e.mean, e.ci_low, e.ci_high))
                                .collect(),
                        );
                        s.dashed = i > 0;
                        series.push(s);
                    }
                }
                panels.push(Panel {
                    title: format!("hidden layer {layer}: variance of activations (probe batch)"),
                    x_label: "training step".into(),
                    y_label: "variance over units and samples".into(),
                    series,
                    log_y: true,
                    clip: Some((1e-6, f64::INFINITY)),
                    ..Default::default()
                });
            }
            plot::panels(
                &r.out.join("variance.png"),
                &format!(
                    "Exercise {}: activation variance over training (mean over seeds, 95% band)",
                    SPEC.number
                ),
                &panels,
                2,
            )?;
        }
        write_verdict(r, &self.verdict(r, &rows))
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
        v += "\n";
        v += &summary_table(&r.summary);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Hand-computed on [[1, 2], [3, 6]]: mean 3, variance over all
    /// elements ((4 + 1 + 0 + 9) / 4) = 3.5; unit variances: column 0
    /// (1, 3) -> 1, column 1 (2, 6) -> 4; mean 2.5.
    #[test]
    fn moments_by_hand() {
        let xs = Tensor::new(&[[1f32, 2.], [3., 6.]], &Device::Cpu).unwrap();
        let (m, v, u) = moments(&xs).unwrap();
        assert_eq!((m, v, u), (3.0, 3.5, 2.5));
    }

    /// The verdict's prediction (s^2 + p mu^2) / (1 - p) for the variance
    /// after inverted dropout, checked on 10^6 values uniform in [0, 2)
    /// (mu = 1, s^2 = 1/3) at p = 0.5: (1/3 + 1/2) / (1/2) = 5/3.
    #[test]
    fn dropout_variance_prediction() {
        use crate::regularizers::{Dropout, Regularizer};
        let mut rng = Rng::new(5, Stream::Probe);
        let mut v = vec![0f32; 1_000_000];
        rng.fill_uniform(&mut v);
        let xs = (Tensor::from_vec(v, (1000, 1000), &Device::Cpu).unwrap() * 2.0).unwrap();
        let (mu, s2, _) = moments(&xs).unwrap();
        let mut ctx = NoiseCtx {
            rng: &mut rng,
            progress: 0.0,
        };
        let out = Dropout::new(0.5).activations(&xs, &mut ctx).unwrap();
        let (_, after, _) = moments(&out).unwrap();
        let predicted = (s2 + 0.5 * mu * mu) / 0.5;
        assert!((predicted - 5.0 / 3.0).abs() < 0.01, "{predicted}");
        assert!(
            (after - predicted).abs() < 0.01 * predicted,
            "{after} vs {predicted}"
        );
    }
}
