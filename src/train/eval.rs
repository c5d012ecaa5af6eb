//! Evaluation-mode loss and accuracy of every network of a stack.

use std::time::Instant;

use candle_core::{Result, Tensor, D};

use super::grads::count_correct;
use crate::data::Dataset;
use crate::model::{forward, StackLayer};

/// Per network of the stack: mean cross-entropy and accuracy on `xs`
/// ([n, 784]) with labels `ys`, regularisers off.
fn evaluate(layers: &[StackLayer], xs: &Tensor, ys: &Tensor) -> Result<Vec<(f64, f64)>> {
    let r = layers[0].w.dim(0)?;
    let n = xs.dim(0)?;
    let (mut loss_sum, mut correct) = (vec![0f64; r], vec![0f64; r]);
    const CHUNK: usize = 2000;
    for start in (0..n).step_by(CHUNK) {
        let len = CHUNK.min(n - start);
        let x = xs.narrow(0, start, len)?;
        let y = ys.narrow(0, start, len)?;
        let logits = forward(layers, &x, false, None)?.logits;
        // candle_nn's cross-entropy, per network: the mean of the label's
        // negative log-probability.
        let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let picked = y
            .reshape((1, len, 1))?
            .broadcast_as((r, len, 1))?
            .contiguous()?;
        let loss = log_p
            .gather(&picked, 2)?
            .sum((1, 2))?
            .affine(-1f64 / len as f64, 0.)?;
        let loss: Vec<f32> = loss.to_vec1()?;
        let hits: Vec<f32> = count_correct(&logits, &y)?.to_vec1()?;
        for k in 0..r {
            loss_sum[k] += loss[k] as f64 * len as f64;
            correct[k] += hits[k] as f64;
        }
    }
    Ok((0..r)
        .map(|k| (loss_sum[k] / n as f64, correct[k] / n as f64))
        .collect())
}

/// One epoch's evaluation of every network of the stack.
pub(super) struct Evaluation {
    pub(super) test: Vec<(f64, f64)>,
    pub(super) val: Option<Vec<(f64, f64)>>,
    /// Accuracy on the fixed training subset of the gap.
    pub(super) train_eval_acc: Vec<f64>,
    /// Seconds the evaluation took, per network (the stack's time shared).
    pub(super) seconds_each: f64,
}

impl Evaluation {
    /// Test, validation (if any) and training-subset measurements.
    pub(super) fn run(layers: &[StackLayer], data: &Dataset) -> anyhow::Result<Self> {
        let t0 = Instant::now();
        let test = evaluate(layers, &data.test_x, &data.test_y)?;
        let val = match &data.val {
            Some((x, y)) => Some(evaluate(layers, x, y)?),
            None => None,
        };
        let (tx, ty) = data.train_eval()?;
        let train_eval_acc = evaluate(layers, &tx, &ty)?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        Ok(Self {
            test,
            val,
            train_eval_acc,
            seconds_each: t0.elapsed().as_secs_f64() / layers[0].w.dim(0)? as f64,
        })
    }
}
