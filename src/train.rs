//! One training loop for every experiment: mini-batch SGD on the book's MLP.
//!
//! Per epoch it reports what the book's `train_ch3` reports, accumulated during
//! the epoch in training mode (mean cross-entropy and accuracy over the
//! epoch's batches), plus test loss and accuracy in evaluation mode (dropout
//! off). Weight decay is the L2 penalty (lambda/2)*||w||^2 on the weights only,
//! not the biases, applied as the gradient term lambda*w; the reported losses
//! are the plain cross-entropy, without the penalty.
//!
//! A non-finite loss ends the run and marks it diverged; what was measured
//! until then is kept.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::model::Mlp;
use crate::regularizers::{NoiseCtx, RegKind};
use crate::rng::{Rng, Stream};
use crate::step::{self, StepPlan};

/// Revision of the training arithmetic. Part of every sweep cache key: bump
/// it whenever a change alters the numbers a seeded run produces, so stored
/// runs from older code are not reused.
pub const TRAINER_REVISION: u32 = 2;

/// Everything that determines a run, besides its seed and data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Which regulariser sits after each hidden layer.
    pub reg: RegKind,
    /// Its strength after the first hidden layer (for dropout: drop probability).
    pub p1: f64,
    /// Its strength after the second hidden layer.
    pub p2: f64,
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub weight_decay: f64,
}

impl TrainConfig {
    /// Checks what the flag parsers cannot see alone (the strength a kind accepts).
    pub fn validate(&self) -> Result<()> {
        for (name, p) in [("p1", self.p1), ("p2", self.p2)] {
            if !(0.0..=1.0).contains(&p) {
                anyhow::bail!("{name} = {p} is outside [0, 1]");
            }
            if p == 1.0 && !self.reg.allows_one() {
                anyhow::bail!(
                    "{name} = 1 is not allowed for {} (its noise variance p/(1-p) is infinite); use a value below 1",
                    self.reg
                );
            }
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    /// The book's configuration.
    fn default() -> Self {
        Self {
            reg: RegKind::Dropout,
            p1: 0.2,
            p2: 0.5,
            epochs: 10,
            lr: 0.5,
            batch_size: 256,
            weight_decay: 0.0,
        }
    }
}

/// One epoch's measurements. Timing columns come last so that outputs can be
/// compared byte for byte with them cut off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: usize,
    // JSON has no NaN: a diverged epoch's values are stored as null.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_acc: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub test_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub test_acc: f64,
    /// Seconds spent in the training pass of this epoch.
    pub train_seconds: f64,
    /// Seconds for the whole epoch, evaluation included.
    pub seconds: f64,
}

/// Reads a JSON null (how serde_json writes NaN) back as NaN.
pub fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Hooks into the loop, for progress bars and probes.
pub trait TrainHook {
    /// Called after each optimisation step (`step` counts from 1 over the run).
    fn after_step(&mut self, _step: usize, _epoch: usize, _model: &Mlp) -> Result<()> {
        Ok(())
    }
    /// Called after each epoch's evaluation.
    fn after_epoch(&mut self, _row: &EpochRow) {}
}

impl TrainHook for () {}

/// The result of one run.
#[derive(Debug)]
pub struct RunOutcome {
    pub rows: Vec<EpochRow>,
    /// A loss became NaN or infinite; `rows` ends with the epoch where it did.
    pub diverged: bool,
    /// The model as training left it.
    pub model: Mlp,
}

/// Builds the model for `cfg` with the initial weights of `seed`.
pub fn init_model(cfg: &TrainConfig, seed: u64, dev: &Device) -> Result<Mlp> {
    let slots = vec![cfg.reg.build(cfg.p1), cfg.reg.build(cfg.p2)];
    Ok(Mlp::new(slots, &mut Rng::new(seed, Stream::Init), dev)?)
}

/// Trains a fresh model for `cfg` on `data` with `seed`.
pub fn train(
    cfg: &TrainConfig,
    seed: u64,
    data: &Dataset,
    hook: &mut dyn TrainHook,
) -> Result<RunOutcome> {
    cfg.validate()?;
    let dev = data.train_x.device().clone();
    let model = init_model(cfg, seed, &dev)?;
    let mut shuffle = Rng::new(seed, Stream::Shuffle);
    let mut noise = Rng::new(seed, Stream::Noise);
    let n = data.train_len();
    let steps_per_epoch = n.div_ceil(cfg.batch_size);
    let total_steps = (steps_per_epoch * cfg.epochs) as f64;
    let (lr, wd) = (cfg.lr, cfg.weight_decay);
    let plan = StepPlan::for_device(&dev, crate::device::threads());
    let targets_all = candle_nn::encoding::one_hot(data.train_y.clone(), 10, 1f32, 0f32)?;
    let mut rows = Vec::with_capacity(cfg.epochs);
    let mut step = 0usize;
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        let order = Tensor::from_vec(shuffle.permutation(n), n, &dev)?;
        // Accumulated on the device and read once per epoch: no host round
        // trip per batch.
        let mut loss_sum = Tensor::zeros((), DType::F32, &dev)?;
        let mut correct = Tensor::zeros((), DType::F32, &dev)?;
        for start in (0..n).step_by(cfg.batch_size) {
            let len = cfg.batch_size.min(n - start);
            let idx = order.narrow(0, start, len)?;
            let xs = data.train_x.index_select(&idx, 0)?;
            let ys = data.train_y.index_select(&idx, 0)?;
            let mut ctx = NoiseCtx {
                rng: &mut noise,
                progress: step as f64 / total_steps,
            };
            let targets = targets_all.index_select(&idx, 0)?;
            let step_out = step::loss_and_grads(&model, &xs, &targets, &mut ctx, plan)?;
            for (layer, (gw, gb)) in model.layers.iter().zip(&step_out.grads) {
                // w <- w - lr * (g + wd * w), b <- b - lr * g
                let w = layer.w.as_tensor().detach();
                let w = if wd == 0.0 {
                    w
                } else {
                    w.affine(1.0 - lr * wd, 0.0)?
                };
                layer.w.set(&(w - (gw * lr)?)?)?;
                layer.b.set(&(layer.b.as_tensor().detach() - (gb * lr)?)?)?;
            }
            let (logits, loss) = (step_out.logits, step_out.loss);
            loss_sum = (loss_sum + (loss * len as f64)?)?;
            correct = (correct + count_correct(&logits, &ys)?)?;
            step += 1;
            hook.after_step(step, epoch, &model)?;
        }
        let train_seconds = t0.elapsed().as_secs_f64();
        let train_loss = loss_sum.to_scalar::<f32>()? as f64 / n as f64;
        let train_acc = correct.to_scalar::<f32>()? as f64 / n as f64;
        let (test_loss, test_acc) = evaluate(&model, &data.test_x, &data.test_y)?;
        let row = EpochRow {
            epoch,
            train_loss,
            train_acc,
            test_loss,
            test_acc,
            train_seconds,
            seconds: t0.elapsed().as_secs_f64(),
        };
        hook.after_epoch(&row);
        let diverged = !(train_loss.is_finite() && test_loss.is_finite());
        rows.push(row);
        if diverged {
            return Ok(RunOutcome {
                rows,
                diverged: true,
                model,
            });
        }
    }
    Ok(RunOutcome {
        rows,
        diverged: false,
        model,
    })
}

/// Number of rows of `logits` whose arg-max equals the label, as an f32 scalar.
fn count_correct(logits: &Tensor, ys: &Tensor) -> candle_core::Result<Tensor> {
    logits
        .argmax(D::Minus1)?
        .eq(ys)?
        .to_dtype(DType::F32)?
        .sum_all()
}

/// Mean cross-entropy and accuracy in evaluation mode (no regularisers).
pub fn evaluate(model: &Mlp, xs: &Tensor, ys: &Tensor) -> Result<(f64, f64)> {
    let n = xs.dim(0)?;
    let mut noise = Rng::new(0, Stream::Noise); // never drawn from in eval mode
    let mut ctx = NoiseCtx {
        rng: &mut noise,
        progress: 1.0,
    };
    let mut loss_sum = 0f64;
    let mut correct = 0f64;
    const CHUNK: usize = 2000;
    for start in (0..n).step_by(CHUNK) {
        let len = CHUNK.min(n - start);
        let x = xs.narrow(0, start, len)?;
        let y = ys.narrow(0, start, len)?;
        let logits = model.forward_t(&x, false, &mut ctx)?.detach();
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        loss_sum += loss.to_scalar::<f32>()? as f64 * len as f64;
        correct += count_correct(&logits, &y)?.to_scalar::<f32>()? as f64;
    }
    Ok((loss_sum / n as f64, correct / n as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{self, DataOptions};

    fn weights(cfg: &TrainConfig, seed: u64) -> Vec<Vec<f32>> {
        let m = init_model(cfg, seed, &Device::Cpu).unwrap();
        m.vars()
            .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    }

    /// Common random numbers: the seed alone fixes the initial weights,
    /// whatever the configuration.
    #[test]
    fn configurations_share_initial_weights() {
        let book = TrainConfig::default();
        let other = TrainConfig {
            p1: 0.0,
            p2: 0.9,
            weight_decay: 1e-3,
            lr: 0.1,
            ..book.clone()
        };
        assert_eq!(weights(&book, 3), weights(&other, 3));
        assert_ne!(weights(&book, 3), weights(&book, 4));
    }

    /// ...and the batch order: two configurations that differ only by a
    /// negligible weight decay follow the same trajectory (a different batch
    /// order would move the loss by far more than 1e-4).
    #[test]
    fn configurations_share_batch_order() {
        let data = data::load(
            &DataOptions {
                synthetic: true,
                ..Default::default()
            },
            &Device::Cpu,
        )
        .unwrap();
        let a = TrainConfig {
            p1: 0.0,
            p2: 0.0,
            epochs: 2,
            batch_size: 64,
            ..TrainConfig::default()
        };
        let b = TrainConfig {
            weight_decay: 1e-9,
            ..a.clone()
        };
        let ra = train(&a, 1, &data, &mut ()).unwrap().rows;
        let rb = train(&b, 1, &data, &mut ()).unwrap().rows;
        for (x, y) in ra.iter().zip(&rb) {
            assert!((x.train_loss - y.train_loss).abs() < 1e-4, "{x:?} vs {y:?}");
        }
        // A different seed (different order and init) does move it.
        let rc = train(&a, 2, &data, &mut ()).unwrap().rows;
        assert!((ra[1].train_loss - rc[1].train_loss).abs() > 1e-3);
    }
}
