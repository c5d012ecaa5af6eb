//! One training loop for every experiment: mini-batch SGD on the book's MLP,
//! for one run or a stack of R runs trained together.
//!
//! Per epoch it reports what the book's `train_ch3` reports, accumulated
//! during the epoch in training mode (mean cross-entropy and accuracy over
//! the epoch's batches), plus test loss and accuracy in evaluation mode
//! (dropout off), validation loss and accuracy when a split is held out, and
//! evaluation-mode accuracy on a fixed subset of the training images (the
//! training side of the generalisation gap). Weight decay is the L2 penalty
//! (lambda/2)*||w||^2 on the weights only, not the biases, applied as the
//! gradient term lambda*w; the reported losses are the plain cross-entropy,
//! without the penalty.
//!
//! Runs of one seed see the same initial weights and the same batches in
//! the same order (the seed alone fixes both); they differ only in
//! configuration. A stack trains R such runs at once: weights \[R, in, out\],
//! each product batched over the stack ([`crate::model::forward`],
//! `grads`), each run with its own noise stream, regulariser, learning
//! rate and weight decay. A run that diverges (a non-finite loss) or
//! finishes its epochs leaves the stack at the end of that epoch, keeping
//! what was measured; the others go on. The same code runs on the CPU and on
//! CUDA; a run gives the same numbers alone or in a stack
//! (`tests::stack_equals_runs_trained_alone`).

use std::time::Instant;

use anyhow::{ensure, Result};
use candle_core::{Device, Tensor};

use crate::config::{GradPath, TrainConfig};
use crate::data::Dataset;
use crate::model::{LayerNoise, Mlp};
use crate::record::EpochRow;
use crate::regularizers::NoiseCtx;
use crate::rng::{Rng, Stream};

mod autograd;
mod eval;
mod grads;
mod noise;
#[cfg(test)]
mod path_tests;
mod stack;
#[cfg(test)]
mod tests;

use grads::{loss_and_grads, Batch, StepPlan};
use noise::StepNoise;
use stack::{Sgd, Stack};

/// Revision of the training arithmetic. Part of every sweep cache key: bump
/// it whenever a change alters the numbers a seeded run produces, so stored
/// runs from older code are not reused.
pub const TRAINER_REVISION: u32 = 3;

/// Hooks into the loop, for progress bars, probes and writers.
pub trait TrainHook {
    /// Called after each optimisation step (`step` counts from 1 over the
    /// run), with the model as that step left it when the hook asked for it
    /// ([`TrainHook::reads_model`]), else `None`.
    fn after_step(&mut self, _step: usize, _epoch: usize, _model: Option<&Mlp>) -> Result<()> {
        Ok(())
    }
    /// Whether [`TrainHook::after_step`] needs the model after every step
    /// (it is then copied out of the stack after every step).
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

/// One run of a stack: its configuration and the hook that follows it.
pub struct Member<'a> {
    pub cfg: &'a TrainConfig,
    pub hook: &'a mut dyn TrainHook,
}

/// Builds the model for `cfg` with the initial weights of `seed`.
pub fn init_model(cfg: &TrainConfig, seed: u64, dev: &Device) -> Result<Mlp> {
    let slots = cfg
        .layers
        .iter()
        .map(|r| r.build(dev))
        .collect::<candle_core::Result<_>>()?;
    Ok(Mlp::new(slots, &mut Rng::new(seed, Stream::Init), dev)?)
}

/// Trains a fresh model for `cfg` on `data` with `seed`, each step using
/// `threads` CPU threads: a stack of one.
pub fn train(
    cfg: &TrainConfig,
    seed: u64,
    data: &Dataset,
    threads: usize,
    hook: &mut dyn TrainHook,
) -> Result<RunOutcome> {
    let out = train_stack(&mut [Member { cfg, hook }], seed, data, threads)?;
    Ok(out.into_iter().next().expect("one outcome per member"))
}

/// Trains every member with `seed` on `data`, as one stack, on the device
/// the data lives on; on the CPU each step's two half-batches run on two
/// threads when `threads` >= 2. All members must share the batch size.
/// Members trained by different gradient paths
/// ([`TrainConfig::grad_path`]) are trained as one stack per path, one
/// after the other (a run's numbers do not depend on its stack). Returns
/// one outcome per member, in order.
pub fn train_stack(
    members: &mut [Member],
    seed: u64,
    data: &Dataset,
    threads: usize,
) -> Result<Vec<RunOutcome>> {
    ensure!(!members.is_empty(), "a stack needs at least one run");
    let path = members[0].cfg.grad_path();
    if members.iter().all(|m| m.cfg.grad_path() == path) {
        return train_one_path(members, path, seed, data, threads);
    }
    let mut outcomes: Vec<Option<RunOutcome>> = members.iter().map(|_| None).collect();
    for path in [GradPath::Hand, GradPath::Autograd] {
        let (at, mut part): (Vec<usize>, Vec<Member>) = members
            .iter_mut()
            .enumerate()
            .filter(|(_, m)| m.cfg.grad_path() == path)
            .map(|(i, m)| {
                let member = Member {
                    cfg: m.cfg,
                    hook: &mut *m.hook,
                };
                (i, member)
            })
            .unzip();
        let out = train_one_path(&mut part, path, seed, data, threads)?;
        for (i, o) in at.into_iter().zip(out) {
            outcomes[i] = Some(o);
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every member is on one path"))
        .collect())
}

/// [`train_stack`] for members that share the gradient path `path`.
fn train_one_path(
    members: &mut [Member],
    path: GradPath,
    seed: u64,
    data: &Dataset,
    threads: usize,
) -> Result<Vec<RunOutcome>> {
    let bs = members[0].cfg.batch_size;
    for m in members.iter() {
        m.cfg.validate()?;
        ensure!(
            m.cfg.batch_size == bs,
            "runs of one stack share a batch size ({} and {})",
            bs,
            m.cfg.batch_size
        );
    }
    let dev = data.train_x.device().clone();
    let n = data.train_len();
    let mut runs = members
        .iter_mut()
        .map(|m| Run::new(m, seed, n, &dev))
        .collect::<Result<Vec<_>>>()?;
    // Positions in `runs` of the stack's members, in stack order.
    let mut live: Vec<usize> = (0..runs.len()).collect();
    let mut stack = Stack::new(
        &runs.iter().map(|r| &r.model).collect::<Vec<_>>(),
        runs.iter().map(Run::sgd).collect(),
    )?;
    let plan = StepPlan::for_device(&dev, threads);
    let targets_all = candle_nn::encoding::one_hot(data.train_y.clone(), 10, 1f32, 0f32)?;
    let mut shuffle = Rng::new(seed, Stream::Shuffle);
    let max_epochs = runs.iter().map(|r| r.cfg.epochs).max().unwrap_or(0);
    for epoch in 1..=max_epochs {
        // Runs that diverged or finished their epochs leave.
        let stay: Vec<usize> = (0..live.len())
            .filter(|&k| runs[live[k]].end.is_none() && epoch <= runs[live[k]].cfg.epochs)
            .collect();
        (stack, live) = leave(stack, live, &stay, &runs)?;
        if live.is_empty() {
            break;
        }
        let t0 = Instant::now();
        let order = Tensor::from_vec(shuffle.permutation(n), n, &dev)?;
        // Accumulated on the device and read once per epoch.
        let mut loss_sum = Tensor::zeros(live.len(), candle_core::DType::F32, &dev)?;
        let mut correct = loss_sum.clone();
        for start in (0..n).step_by(bs) {
            let len = bs.min(n - start);
            let idx = order.narrow(0, start, len)?;
            let batch = StepBatch {
                data,
                targets: &targets_all,
                idx: &idx,
                len,
                n,
            };
            let out = step_grads(path, &mut runs, &live, &stack, &batch, plan, &dev)?;
            let grads = |i: usize| out.layer(i);
            stack.sgd(grads, plan.parallel)?;
            loss_sum = (loss_sum + out.loss.affine(len as f64, 0.0)?)?;
            correct = (correct + out.correct)?;
            let stay = after_step(&mut runs, &live, &stack, epoch)?;
            if stay.len() < live.len() {
                let idx =
                    Tensor::from_vec(stay.iter().map(|&k| k as u32).collect(), stay.len(), &dev)?;
                if !stay.is_empty() {
                    loss_sum = loss_sum.index_select(&idx, 0)?;
                    correct = correct.index_select(&idx, 0)?;
                }
                (stack, live) = leave(stack, live, &stay, &runs)?;
                if live.is_empty() {
                    break;
                }
            }
        }
        if live.is_empty() {
            break;
        }
        let train_seconds = t0.elapsed().as_secs_f64() / live.len() as f64;
        let loss_sum: Vec<f32> = loss_sum.to_vec1()?;
        let correct: Vec<f32> = correct.to_vec1()?;
        record_epoch(
            &mut runs,
            &live,
            &stack,
            data,
            epoch,
            &loss_sum,
            &correct,
            train_seconds,
        )?;
    }
    for (k, &i) in live.iter().enumerate() {
        stack.write_to(k, &runs[i].model)?;
    }
    Ok(runs
        .into_iter()
        .map(|r| RunOutcome {
            rows: r.rows,
            diverged: r.end == Some(End::Diverged),
            interrupted: r.end == Some(End::Interrupted),
            model: r.model,
        })
        .collect())
}

/// One step's batch: rows `idx` (`len` of them) of the `n` training
/// examples, with their one-hot targets among `targets`.
struct StepBatch<'a> {
    data: &'a Dataset,
    targets: &'a Tensor,
    idx: &'a Tensor,
    len: usize,
    n: usize,
}

/// The gradients of the live runs (`live`: positions in `runs`, in stack
/// order) on one batch, by `path`. On the hand-written path each run draws
/// its step's noise from its own stream while the batch is gathered (on a
/// second thread when there is one).
fn step_grads(
    path: GradPath,
    runs: &mut [Run],
    live: &[usize],
    stack: &Stack,
    b: &StepBatch,
    plan: StepPlan,
    dev: &Device,
) -> Result<grads::Grads> {
    let gather = || -> candle_core::Result<_> {
        let x = b.data.train_x.index_select(b.idx, 0)?;
        let y = b.data.train_y.index_select(b.idx, 0)?;
        Ok((x, y, b.targets.index_select(b.idx, 0)?))
    };
    let live_runs = runs
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| live.contains(i))
        .map(|(_, r)| r);
    Ok(match path {
        GradPath::Hand => {
            let mut draws: Vec<Draw> = live_runs.map(|r| r.next_draw()).collect();
            let draw = || -> candle_core::Result<StepNoise> {
                let drawn = draws
                    .iter_mut()
                    .map(|d| d.draw(b.len, dev))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                StepNoise::new(drawn)
            };
            let (noise, batch) = both(plan.parallel, draw, gather);
            let ((x, y, targets), noise) = (batch?, noise?);
            let batch = Batch {
                x: &x,
                y: &y,
                targets: &targets,
            };
            loss_and_grads(&stack.params, &batch, &noise, plan)?
        }
        GradPath::Autograd => {
            let (x, y, targets) = gather()?;
            let batch = Batch {
                x: &x,
                y: &y,
                targets: &targets,
            };
            let mut autos: Vec<autograd::AutoRun> = live_runs.map(|r| r.next_auto()).collect();
            autograd::loss_and_grads(&stack.params, &batch, &mut autos, b.n)?
        }
    })
}

/// After a step: each live run's hook, with the model copied out of the
/// stack where the hook reads it. Returns the positions (in `live`) of the
/// runs that go on; a run whose hook asked to stop ends as interrupted.
fn after_step(runs: &mut [Run], live: &[usize], stack: &Stack, epoch: usize) -> Result<Vec<usize>> {
    let mut stay = Vec::with_capacity(live.len());
    for (k, &i) in live.iter().enumerate() {
        let run = &mut runs[i];
        run.step += 1;
        let model = match run.hook.reads_model() {
            true => {
                stack.write_to(k, &run.model)?;
                Some(&run.model)
            }
            false => None,
        };
        run.hook.after_step(run.step, epoch, model)?;
        match run.hook.stop_requested() {
            true => run.end = Some(End::Interrupted),
            false => stay.push(k),
        }
    }
    Ok(stay)
}

/// The end of an epoch: every live run evaluated and its row recorded
/// (`loss_sum` and `correct` summed over the epoch's batches, per live
/// run); a run whose loss is no longer finite ends as diverged.
#[allow(clippy::too_many_arguments)]
fn record_epoch(
    runs: &mut [Run],
    live: &[usize],
    stack: &Stack,
    data: &Dataset,
    epoch: usize,
    loss_sum: &[f32],
    correct: &[f32],
    train_seconds: f64,
) -> Result<()> {
    let n = data.train_len();
    let eval = eval::Evaluation::run(&stack.layers(), data)?;
    for (k, &i) in live.iter().enumerate() {
        let run = &mut runs[i];
        let row = EpochRow {
            epoch,
            train_loss: loss_sum[k] as f64 / n as f64,
            train_acc: correct[k] as f64 / n as f64,
            test_loss: eval.test[k].0,
            test_acc: eval.test[k].1,
            val_loss: eval.val.as_ref().map(|v| v[k].0),
            val_acc: eval.val.as_ref().map(|v| v[k].1),
            train_eval_acc: eval.train_eval_acc[k],
            train_seconds,
            seconds: train_seconds + eval.seconds_each,
        };
        let diverged = !(row.train_loss.is_finite() && row.test_loss.is_finite());
        run.rows.push(row);
        run.hook.after_epoch(&run.rows)?;
        if diverged {
            run.end = Some(End::Diverged);
        }
    }
    Ok(())
}

/// Runs `a` on this thread and `b` on the thread pool at once when
/// `parallel` (the pool's other thread picks it up), else one after the
/// other.
fn both<RA, RB: Send>(
    parallel: bool,
    a: impl FnOnce() -> RA,
    b: impl FnOnce() -> RB + Send,
) -> (RA, RB) {
    if !parallel {
        return (a(), b());
    }
    let mut rb = None;
    let ra = rayon::in_place_scope(|s| {
        s.spawn(|_| rb = Some(b()));
        a()
    });
    (ra, rb.expect("the scope waits for its spawned work"))
}

/// The stack and its members without those not at positions `stay`; the
/// leaving runs' weights are copied into their models first.
fn leave(
    stack: Stack,
    live: Vec<usize>,
    stay: &[usize],
    runs: &[Run],
) -> Result<(Stack, Vec<usize>)> {
    if stay.len() == live.len() {
        return Ok((stack, live));
    }
    for (k, &i) in live.iter().enumerate() {
        if !stay.contains(&k) {
            stack.write_to(k, &runs[i].model)?;
        }
    }
    let kept: Vec<usize> = stay.iter().map(|&k| live[k]).collect();
    if kept.is_empty() {
        return Ok((stack, kept));
    }
    Ok((stack.keep(stay)?, kept))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Diverged,
    Interrupted,
}

/// One run of a stack: its configuration, hook, noise stream and rows.
struct Run<'m> {
    cfg: &'m TrainConfig,
    hook: &'m mut dyn TrainHook,
    /// The regularisers, and the weights whenever they are copied out of
    /// the stack (when the hook reads them, when the run leaves, at the end).
    model: Mlp,
    noise: Rng,
    step: usize,
    total_steps: f64,
    rows: Vec<EpochRow>,
    end: Option<End>,
}

impl<'m> Run<'m> {
    fn new(m: &'m mut Member, seed: u64, n: usize, dev: &Device) -> Result<Self> {
        Ok(Self {
            cfg: m.cfg,
            hook: &mut *m.hook,
            model: init_model(m.cfg, seed, dev)?,
            noise: Rng::new(seed, Stream::Noise),
            step: 0,
            total_steps: (n.div_ceil(m.cfg.batch_size) * m.cfg.epochs) as f64,
            rows: Vec::new(),
            end: None,
        })
    }

    fn sgd(&self) -> Sgd {
        Sgd {
            lr: self.cfg.lr,
            weight_decay: self.cfg.weight_decay,
        }
    }

    /// What an autograd step needs of the run.
    fn next_auto(&mut self) -> autograd::AutoRun<'_> {
        autograd::AutoRun {
            model: &self.model,
            rng: &mut self.noise,
            progress: self.step as f64 / self.total_steps,
            lr: self.cfg.lr,
        }
    }

    /// What drawing this step's noise needs of the run.
    fn next_draw(&mut self) -> Draw<'_> {
        Draw {
            model: &self.model,
            rng: &mut self.noise,
            progress: self.step as f64 / self.total_steps,
        }
    }
}

/// One run's noise stream at one step (`progress`: the share of its
/// training done, for schedules).
struct Draw<'r> {
    model: &'r Mlp,
    rng: &'r mut Rng,
    progress: f64,
}

impl Draw<'_> {
    fn draw(&mut self, len: usize, dev: &Device) -> candle_core::Result<Vec<LayerNoise>> {
        let mut ctx = NoiseCtx {
            rng: self.rng,
            progress: self.progress,
        };
        self.model.draw_noise(len, dev, &mut ctx)
    }
}
