//! One training loop for every experiment: mini-batch SGD on the book's MLP.
//!
//! Per epoch it reports what the book's `train_ch3` reports, accumulated during
//! the epoch in training mode (mean cross-entropy and accuracy over the
//! epoch's batches), plus test loss and accuracy in evaluation mode (dropout
//! off), validation loss and accuracy when a split is held out, and
//! evaluation-mode accuracy on a fixed subset of the training images (the
//! training side of the generalisation gap). Weight decay is the L2 penalty (lambda/2)*||w||^2 on the weights only,
//! not the biases, applied as the gradient term lambda*w; the reported losses
//! are the plain cross-entropy, without the penalty.
//!
//! A non-finite loss ends the run and marks it diverged; what was measured
//! until then is kept.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::model::Mlp;
use crate::regularizers::NoiseCtx;
use crate::rng::{Rng, Stream};
use crate::step::{self, StepPlan};

/// Revision of the training arithmetic. Part of every sweep cache key: bump
/// it whenever a change alters the numbers a seeded run produces, so stored
/// runs from older code are not reused.
pub const TRAINER_REVISION: u32 = 3;

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
    /// Loss and accuracy on the held-out validation images, in evaluation
    /// mode; empty without a validation split. Epochs are selected on these.
    #[serde(default)]
    pub val_loss: Option<f64>,
    #[serde(default)]
    pub val_acc: Option<f64>,
    /// Accuracy in evaluation mode on a fixed subset of the training images
    /// (see [`crate::data::Dataset::train_eval`]): the training side of the
    /// generalisation gap, measured as the test side is (dropout off).
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub train_eval_acc: f64,
    /// Seconds spent in the training pass of this epoch.
    pub train_seconds: f64,
    /// Seconds for the whole epoch, evaluation included.
    pub seconds: f64,
}

fn nan() -> f64 {
    f64::NAN
}

/// Reads a JSON null (how serde_json writes NaN) back as NaN.
pub fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Hooks into the loop, for progress bars, probes and writers.
pub trait TrainHook {
    /// Called after each optimisation step (`step` counts from 1 over the
    /// run), with the model as that step left it where the trainer keeps
    /// one between steps: the step-by-step trainer does, the CPU cohort
    /// trainer ([`crate::cohort`]) passes `None`. A hook that needs it says
    /// so with [`TrainHook::reads_model`].
    fn after_step(&mut self, _step: usize, _epoch: usize, _model: Option<&Mlp>) -> Result<()> {
        Ok(())
    }
    /// Whether [`TrainHook::after_step`] needs the model after every step;
    /// such runs are trained step by step, never in a cohort.
    fn reads_model(&self) -> bool {
        false
    }
    /// Called after each epoch's evaluation, with every epoch so far.
    fn after_epoch(&mut self, _rows: &[EpochRow]) -> Result<()> {
        Ok(())
    }
    /// Checked after each step: true ends the run early, as interrupted,
    /// keeping the epochs finished so far (Ctrl-C in `drop-exp run`).
    fn stop_requested(&self) -> bool {
        false
    }
}

impl TrainHook for () {}

/// The result of one run.
#[derive(Debug)]
pub struct RunOutcome {
    pub rows: Vec<EpochRow>,
    /// A loss became NaN or infinite; `rows` ends with the epoch where it did.
    pub diverged: bool,
    /// The hook asked to stop; `rows` holds the epochs finished before.
    pub interrupted: bool,
    /// The model as training left it.
    pub model: Mlp,
}

/// Builds the model for `cfg` with the initial weights of `seed`.
pub fn init_model(cfg: &TrainConfig, seed: u64, dev: &Device) -> Result<Mlp> {
    let slots = cfg.layers.iter().map(|r| r.build()).collect();
    Ok(Mlp::new(slots, &mut Rng::new(seed, Stream::Init), dev)?)
}

/// Trains a fresh model for `cfg` on `data` with `seed`, each step using
/// `threads` CPU threads: with candle tensors, one step at a time, keeping
/// the model current after every step. It runs on every device and is the
/// reference the CPU trainer ([`crate::cohort`]) is tested against;
/// [`crate::cohort::train`] picks between the two.
pub fn train(
    cfg: &TrainConfig,
    seed: u64,
    data: &Dataset,
    threads: usize,
    hook: &mut dyn TrainHook,
) -> Result<RunOutcome> {
    cfg.validate()?;
    let dev = data.train_x.device().clone();
    let mut run = Trainer {
        cfg,
        data,
        model: init_model(cfg, seed, &dev)?,
        shuffle: Rng::new(seed, Stream::Shuffle),
        noise: Rng::new(seed, Stream::Noise),
        plan: StepPlan::for_device(&dev, threads),
        targets_all: candle_nn::encoding::one_hot(data.train_y.clone(), 10, 1f32, 0f32)?,
        step: 0,
    };
    let mut rows = Vec::with_capacity(cfg.epochs);
    let (mut diverged, mut interrupted) = (false, false);
    for epoch in 1..=cfg.epochs {
        let Some(row) = run.epoch(epoch, hook)? else {
            interrupted = true;
            break;
        };
        diverged = !(row.train_loss.is_finite() && row.test_loss.is_finite());
        rows.push(row);
        hook.after_epoch(&rows)?;
        if diverged {
            break;
        }
    }
    Ok(RunOutcome {
        rows,
        diverged,
        interrupted,
        model: run.model,
    })
}

/// The state of one run between epochs.
struct Trainer<'a> {
    cfg: &'a TrainConfig,
    data: &'a Dataset,
    model: Mlp,
    shuffle: Rng,
    noise: Rng,
    plan: StepPlan,
    /// One-hot targets of the whole training set, gathered per batch.
    targets_all: Tensor,
    /// Steps taken so far over the run.
    step: usize,
}

impl Trainer<'_> {
    /// One epoch: a training pass in a fresh order, then evaluation. `None`
    /// when the hook asked to stop part way.
    fn epoch(&mut self, epoch: usize, hook: &mut dyn TrainHook) -> Result<Option<EpochRow>> {
        let (cfg, data) = (self.cfg, self.data);
        let dev = data.train_x.device().clone();
        let t0 = Instant::now();
        let n = data.train_len();
        let total_steps = (n.div_ceil(cfg.batch_size) * cfg.epochs) as f64;
        let order = Tensor::from_vec(self.shuffle.permutation(n), n, &dev)?;
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
                rng: &mut self.noise,
                progress: self.step as f64 / total_steps,
            };
            let targets = self.targets_all.index_select(&idx, 0)?;
            let out = step::loss_and_grads(&self.model, &xs, &targets, &mut ctx, self.plan)?;
            self.sgd_update(&out.grads)?;
            loss_sum = (loss_sum + (out.loss * len as f64)?)?;
            correct = (correct + count_correct(&out.logits, &ys)?)?;
            self.step += 1;
            hook.after_step(self.step, epoch, Some(&self.model))?;
            if hook.stop_requested() {
                return Ok(None);
            }
        }
        let train_seconds = t0.elapsed().as_secs_f64();
        let train_loss = loss_sum.to_scalar::<f32>()? as f64 / n as f64;
        let train_acc = correct.to_scalar::<f32>()? as f64 / n as f64;
        Ok(Some(evaluate_epoch(
            &self.model,
            data,
            epoch,
            train_loss,
            train_acc,
            train_seconds,
        )?))
    }

    /// w <- w - lr * (g + wd * w), b <- b - lr * g
    fn sgd_update(&self, grads: &[(Tensor, Tensor)]) -> Result<()> {
        let (lr, wd) = (self.cfg.lr, self.cfg.weight_decay);
        for (layer, (gw, gb)) in self.model.layers.iter().zip(grads) {
            let w = layer.w.as_tensor().detach();
            let w = if wd == 0.0 {
                w
            } else {
                w.affine(1.0 - lr * wd, 0.0)?
            };
            layer.w.set(&(w - (gw * lr)?)?)?;
            layer.b.set(&(layer.b.as_tensor().detach() - (gb * lr)?)?)?;
        }
        Ok(())
    }
}

/// An epoch's row: the training pass's measurements, then evaluation-mode
/// loss and accuracy of `model` on the test set, the validation split (if
/// any) and the fixed training subset of the gap. The epoch's `seconds`
/// are `train_seconds` plus the evaluation's.
pub(crate) fn evaluate_epoch(
    model: &Mlp,
    data: &Dataset,
    epoch: usize,
    train_loss: f64,
    train_acc: f64,
    train_seconds: f64,
) -> Result<EpochRow> {
    let t0 = Instant::now();
    let (test_loss, test_acc) = evaluate(model, &data.test_x, &data.test_y)?;
    let (val_loss, val_acc) = match &data.val {
        Some((x, y)) => {
            let (l, a) = evaluate(model, x, y)?;
            (Some(l), Some(a))
        }
        None => (None, None),
    };
    let (tx, ty) = data.train_eval()?;
    let (_, train_eval_acc) = evaluate(model, &tx, &ty)?;
    Ok(EpochRow {
        epoch,
        train_loss,
        train_acc,
        test_loss,
        test_acc,
        val_loss,
        val_acc,
        train_eval_acc,
        train_seconds,
        seconds: train_seconds + t0.elapsed().as_secs_f64(),
    })
}

/// Number of rows of `logits` whose arg-max equals the label, as an f32 scalar.
pub(crate) fn count_correct(logits: &Tensor, ys: &Tensor) -> candle_core::Result<Tensor> {
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
    use crate::regularizers::Reg;

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
            layers: [Reg::Dropout { p: 0.0 }, Reg::Dropconnect { p: 0.9 }],
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
            layers: [Reg::Dropout { p: 0.0 }; 2],
            epochs: 2,
            batch_size: 64,
            ..TrainConfig::default()
        };
        let b = TrainConfig {
            weight_decay: 1e-9,
            ..a.clone()
        };
        let ra = train(&a, 1, &data, 1, &mut ()).unwrap().rows;
        let rb = train(&b, 1, &data, 1, &mut ()).unwrap().rows;
        for (x, y) in ra.iter().zip(&rb) {
            assert!((x.train_loss - y.train_loss).abs() < 1e-4, "{x:?} vs {y:?}");
        }
        // A different seed (different order and init) does move it.
        let rc = train(&a, 2, &data, 1, &mut ()).unwrap().rows;
        assert!((ra[1].train_loss - rc[1].train_loss).abs() > 1e-3);
    }
}
