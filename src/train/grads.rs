//! One training step's forward and backward pass for a stack of runs,
//! written out by hand.
//!
//! This is the fast path: it trains the regularisers whose noise is stated
//! as scale and shift noise and weight masks; `super::autograd` trains the
//! rest through candle's autograd. For this fixed network the
//! backward pass is a few products, and writing it out skips work autograd
//! cannot know is unneeded: the gradient with respect to the input images (a
//! [batch, 256] x [256, 784] product per step, a quarter of all the
//! arithmetic) and the zero-fill-then-add of its gradient store.
//!
//! With z = x W + b and h = relu(z) * s + a for a hidden layer (s and a the
//! layer's noise, see [`crate::model::forward`]), and d = dLoss/dz:
//!
//! ```text
//! output layer:  d = (softmax(logits) - onehot(y)) / n
//! every layer:   dW = x^T d  (times the weight mask, if any),  db = 1^T d
//! layer below:   d' = (d W^T) * relu'(z') * s'
//! ```
//!
//! Every product is batched over the stack: each run's is its own, with the
//! shapes and strides of that run trained alone, so a run's numbers do not
//! depend on the stack it is in. `tests` checks the formulas against
//! autograd for every regulariser kind.
//!
//! On the CPU the batch is processed as two halves whose gradients are
//! summed; with two or more threads the halves run at once, on the thread
//! pool. The halves are the same whatever the thread count, so a seeded run
//! gives the same numbers with one thread or several.

use candle_core::{DType, Device, Result, Tensor, D};

use super::noise::StepNoise;
use crate::model::{forward, StackLayer};
use crate::product::product;

/// How a step splits its batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct StepPlan {
    /// Process the batch as two halves (what the CPU does; a GPU runs the
    /// whole batch at once).
    pub(super) halves: bool,
    /// Compute the two halves on two threads at once.
    pub(super) parallel: bool,
}

impl StepPlan {
    /// The plan for `dev` when a run has `threads` CPU threads.
    pub(super) fn for_device(dev: &Device, threads: usize) -> Self {
        let halves = dev.is_cpu();
        Self {
            halves,
            parallel: halves && threads >= 2,
        }
    }
}

/// What one step computes for every run of the stack: the mean
/// cross-entropy of the batch ([R]), the number of rows classified right
/// ([R], f32) and the gradients of each part of the batch (one or two
/// halves), summed per layer by [`Grads::layer`].
pub(super) struct Grads {
    pub(super) loss: Tensor,
    pub(super) correct: Tensor,
    /// Per part, per layer: the gradients of the weights ([R, in, out]) and
    /// the biases ([R, 1, out]), before the weight masks.
    pub(super) parts: Vec<Vec<(Tensor, Tensor)>>,
    /// Per layer, the step's weight masks that the parts' weight gradients
    /// are still to be multiplied by, if any.
    pub(super) w_masks: Vec<Option<Tensor>>,
}

impl Grads {
    /// Layer `i`'s gradients: the parts summed (first + second), the
    /// weights' masked with this step's mask, if any.
    pub(super) fn layer(&self, i: usize) -> Result<(Tensor, Tensor)> {
        let (mut gw, mut gb) = self.parts[0][i].clone();
        for part in &self.parts[1..] {
            gw = (gw + &part[i].0)?;
            gb = (gb + &part[i].1)?;
        }
        if let Some(m) = &self.w_masks[i] {
            gw = gw.broadcast_mul(m)?;
        }
        Ok((gw, gb))
    }
}

/// One step's batch: images [n, 784], labels [n], one-hot labels [n, 10].
pub(super) struct Batch<'a> {
    pub(super) x: &'a Tensor,
    pub(super) y: &'a Tensor,
    pub(super) targets: &'a Tensor,
}

/// The gradients of the stack's parameters `params` (per layer: weights
/// [R, in, out], biases [R, 1, out]) on `batch` with `noise`.
pub(super) fn loss_and_grads(
    params: &[(Tensor, Tensor)],
    batch: &Batch,
    noise: &StepNoise,
    plan: StepPlan,
) -> Result<Grads> {
    let n = batch.x.dim(0)?;
    let used = params
        .iter()
        .zip(&noise.w_masks)
        .map(|((w, _), m)| match m {
            Some(m) => w.broadcast_mul(m),
            None => Ok(w.clone()),
        })
        .collect::<Result<Vec<_>>>()?;
    let part = |start, len| partial(params, &used, batch, noise, start, len, n);
    let half = if plan.halves { n.div_ceil(2) } else { n };
    let (mut a, b) = match half == n {
        true => (part(0, n)?, None),
        false => {
            let (first, second) =
                super::both(plan.parallel, || part(0, half), || part(half, n - half));
            (first?, Some(second?))
        }
    };
    if let Some(b) = b {
        a.loss = (a.loss + b.loss)?;
        a.correct = (a.correct + b.correct)?;
        a.parts.extend(b.parts);
    }
    a.w_masks = noise.w_masks.clone();
    Ok(a)
}

/// The step's share of rows `start..start + len` of a batch of `n`: its part
/// of the summed loss, its hits, and its part of each (unmasked) gradient.
fn partial(
    params: &[(Tensor, Tensor)],
    used: &[Tensor],
    batch: &Batch,
    noise: &StepNoise,
    start: usize,
    len: usize,
    n: usize,
) -> Result<Grads> {
    let r = used[0].dim(0)?;
    let mut layers = Vec::with_capacity(used.len());
    for (i, (w, (_, b))) in used.iter().zip(params).enumerate() {
        let act = match i + 1 < used.len() {
            true => Some(noise.rows(i, start, len)?),
            false => None,
        };
        let (scale, shift) = act.map_or((None, None), |a| (a.scale, a.shift));
        layers.push(StackLayer {
            w: w.clone(),
            b: b.clone(),
            scale,
            shift,
        });
    }
    let x = batch.x.narrow(0, start, len)?;
    let y = batch.targets.narrow(0, start, len)?;
    let pass = forward(&layers, &x, true, None)?;
    let log_p = candle_nn::ops::log_softmax(&pass.logits, D::Minus1)?;
    let scale = 1.0 / n as f64;
    let loss = (log_p.broadcast_mul(&y)?.sum((1, 2))? * -scale)?;
    let correct = count_correct(&pass.logits, &batch.y.narrow(0, start, len)?)?;
    let mut d = (log_p.exp()?.broadcast_sub(&y)? * scale)?;
    // Bias gradients as 1^T d: a product, much faster than candle's sum over
    // the batch dimension.
    let ones = Tensor::ones((1, len), DType::F32, d.device())?.broadcast_as((r, 1, len))?;
    let mut grads = Vec::with_capacity(layers.len());
    for i in (0..layers.len()).rev() {
        let input_t = match i {
            // The shared batch, transposed, as a stride-0 view.
            0 => x.t()?.broadcast_as((r, x.dim(1)?, len))?,
            _ => pass.inputs[i].t()?,
        };
        grads.push((product(&input_t, &d)?, product(&ones, &d)?));
        if i > 0 {
            d = product(&d, &layers[i].w.t()?)?.mul(&pass.gates[i - 1])?;
        }
    }
    grads.reverse();
    Ok(Grads {
        loss,
        correct,
        parts: vec![grads],
        w_masks: Vec::new(),
    })
}

/// Per network of a stack, the number of rows of `logits` ([R, n, 10])
/// whose arg-max equals the label (`ys`, [n]), as f32: [R].
pub(super) fn count_correct(logits: &Tensor, ys: &Tensor) -> Result<Tensor> {
    logits
        .argmax(D::Minus1)?
        .broadcast_eq(ys)?
        .to_dtype(DType::F32)?
        .sum(1)
}
