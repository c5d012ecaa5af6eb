//! One training step's gradients through candle's autograd: the path for
//! every regulariser, including those the hand-written backward (`grads`)
//! does not cover (learned rates, losses over several passes, per-example
//! weight noise; see [`crate::regularizers`]).
//!
//! Each run of the stack makes its passes through the one forward pass
//! ([`crate::model::forward`], a stack of one, with the regularisers'
//! hooks), drawing its noise from its own stream in the order the hand
//! path draws it: the stated noise of a pass ([`Mlp::draw_noise`]), then
//! whatever the hooks draw. A kind both paths train therefore sees the same
//! noise on either. The objective of run r is
//!
//! ```text
//! mean over passes of CE  +  the regularisers' pass losses  +  their penalties
//! ```
//!
//! and the objectives of the stack are summed before one `backward()`: each
//! run's parameters are a slice of the stacked [R, in, out] variables, so
//! their gradients are that run's own. The regularisers' learned parameters
//! take their SGD step here; the weights and biases take theirs with the
//! hand path's, in `stack`. The reported loss is the mean cross-entropy
//! alone, as on the hand path.
//!
//! Cost: the stacked parameters are copied into fresh variables each step,
//! and autograd computes the gradient with respect to the input images that
//! the hand path skips (see docs/performance.md for the measured ratio).

use candle_core::{Result, Tensor, Var, D};

use super::grads::{count_correct, Batch, Grads};
use crate::model::{forward, stack_of_one, Hooks, Mlp};
use crate::regularizers::NoiseCtx;
use crate::rng::Rng;

/// What a step needs of one run of the stack.
pub(super) struct AutoRun<'r> {
    pub(super) model: &'r Mlp,
    pub(super) rng: &'r mut Rng,
    /// The share of its training done.
    pub(super) progress: f64,
    /// Its learning rate (for learned parameters without their own).
    pub(super) lr: f64,
}

/// The gradients of the stack's parameters `params` (per layer: weights
/// [R, in, out], biases [R, 1, out]) on `batch`, for the runs `runs` (in
/// stack order), on a training set of `n_train` examples. Steps the
/// regularisers' learned parameters.
pub(super) fn loss_and_grads(
    params: &[(Tensor, Tensor)],
    batch: &Batch,
    runs: &mut [AutoRun],
    n_train: usize,
) -> Result<Grads> {
    let vars = params
        .iter()
        .map(|(w, b)| Ok((Var::from_tensor(w)?, Var::from_tensor(b)?)))
        .collect::<Result<Vec<_>>>()?;
    let (mut losses, mut hits, mut objective) = (Vec::new(), Vec::new(), None);
    for (r, run) in runs.iter_mut().enumerate() {
        let own = vars
            .iter()
            .map(|(w, b)| Ok((w.as_tensor().get(r)?, b.as_tensor().get(r)?)))
            .collect::<Result<Vec<_>>>()?;
        let (loss, correct, obj) = run_objective(&own, batch, run, n_train)?;
        losses.push(loss);
        hits.push(correct);
        objective = Some(match objective {
            None => obj,
            Some(sum) => (sum + obj)?,
        });
    }
    let objective = objective.expect("a stack has runs");
    let store = objective.backward()?;
    for run in runs.iter() {
        for p in run.model.learned() {
            if let Some(g) = store.get(p.var) {
                let lr = p.lr.unwrap_or(run.lr);
                p.var.set(&(p.var.as_tensor() - (g * lr)?)?.detach())?;
            }
        }
    }
    // Detached: a gradient that kept its graph would keep every step's alive.
    let grad = |v: &Var| match store.get(v) {
        Some(g) => Ok(g.detach()),
        None => v.as_tensor().zeros_like(),
    };
    let layers = vars
        .iter()
        .map(|(w, b)| Ok((grad(w)?, grad(b)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Grads {
        loss: Tensor::cat(&losses, 0)?.detach(),
        correct: Tensor::cat(&hits, 0)?.detach(),
        parts: vec![layers],
        w_masks: vec![None; params.len()],
    })
}

/// One run's mean cross-entropy ([1]), hits ([1]) and objective ([1]) on
/// `batch`, with its parameters `own` (per layer: weights [in, out], bias
/// [1, out]).
pub(super) fn run_objective(
    own: &[(Tensor, Tensor)],
    batch: &Batch,
    run: &mut AutoRun,
    n_train: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let n = batch.x.dim(0)?;
    let dev = batch.x.device();
    let mut ctx = NoiseCtx {
        rng: run.rng,
        progress: run.progress,
    };
    let passes = run.model.passes();
    let mut logits = Vec::with_capacity(passes);
    for _ in 0..passes {
        let noise = run.model.draw_noise(n, dev, &mut ctx)?;
        let layers = stack_of_one(own, Some(&noise))?;
        let hooks = Hooks {
            slots: run.model.slots(),
            ctx: &mut ctx,
        };
        logits.push(
            forward(&layers, batch.x, false, Some(hooks))?
                .logits
                .squeeze(0)?,
        );
    }
    let mut ce = None;
    for l in &logits {
        let log_p = candle_nn::ops::log_softmax(l, D::Minus1)?;
        let term = (log_p.mul(batch.targets)?.sum_all()? * (-1.0 / (n * passes) as f64))?;
        ce = Some(match ce {
            None => term,
            Some(sum) => (sum + term)?,
        });
    }
    let ce = ce.expect("at least one pass").reshape(1)?;
    let mut objective = ce.clone();
    for (i, slot) in run.model.slots().into_iter().enumerate() {
        if let Some(extra) = slot.pass_loss(&logits)? {
            objective = (objective + extra)?;
        }
        if let Some(extra) = slot.penalty(&own[i].0, &own[i + 1].0, n_train)? {
            objective = (objective + extra)?;
        }
    }
    let correct = count_correct(&logits[0].unsqueeze(0)?, batch.y)?;
    Ok((ce, correct, objective))
}
