//! Probes: statistics of the hidden activations on a fixed batch, measured
//! during training (exercise 3). They draw their own noise stream
//! ([`Stream::Probe`]), so measuring never changes training.

use anyhow::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::model::Mlp;
use crate::record::EpochRow;
use crate::record::RunSpec;
use crate::regularizers::NoiseCtx;
use crate::rng::{Rng, Stream};
use crate::train::TrainHook;

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
    /// For legends.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::TrainPre => "training mode, before dropout",
            Stage::TrainPost => "training mode, after dropout",
            Stage::Eval => "evaluation mode",
        }
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
    unit_variance: f64,
    pub seed: u64,
}

/// Mean, variance over all elements, and mean per-column (unit) variance of
/// an [n, units] matrix.
fn moments(xs: &Tensor) -> candle_core::Result<(f64, f64, f64)> {
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
pub struct Recorder<'a> {
    inner: &'a mut dyn TrainHook,
    probe: Tensor,
    every: usize,
    total_steps: usize,
    rng: Rng,
    model: String,
    seed: u64,
    rows: Vec<ProbeRow>,
}

impl<'a> Recorder<'a> {
    /// Measures the first `probe_size` training images `per_epoch` times
    /// an epoch (and after the first step), passing every call on to `inner`.
    pub fn new(
        inner: &'a mut dyn TrainHook,
        data: &Dataset,
        spec: &RunSpec,
        probe_size: usize,
        per_epoch: usize,
    ) -> candle_core::Result<Self> {
        let n = data.train_len();
        let steps_per_epoch = n.div_ceil(spec.config.batch_size);
        Ok(Self {
            inner,
            probe: data.train_x.narrow(0, 0, probe_size.min(n))?,
            every: (steps_per_epoch / per_epoch.max(1)).max(1),
            total_steps: steps_per_epoch * spec.config.epochs,
            rng: Rng::new(spec.seed, Stream::Probe),
            model: spec.label.clone(),
            seed: spec.seed,
            rows: Vec::new(),
        })
    }

    /// The rows measured so far.
    pub fn into_rows(self) -> Vec<ProbeRow> {
        self.rows
    }

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
    fn after_step(&mut self, step: usize, epoch: usize, model: Option<&Mlp>) -> Result<()> {
        self.inner.after_step(step, epoch, model)?;
        if step.is_multiple_of(self.every) || step == 1 {
            let Some(model) = model else {
                anyhow::bail!("the trainer passed no model to the probes, whose hook reads it after every step (TrainHook::reads_model)");
            };
            self.record(step, epoch, model)?;
        }
        Ok(())
    }
    fn reads_model(&self) -> bool {
        true
    }
    fn after_epoch(&mut self, rows: &[EpochRow]) -> Result<()> {
        self.inner.after_epoch(rows)
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
