//! Many runs trained in one pass on the CPU: a cohort.
//!
//! Runs that share a seed and a batch size see the same batches in the same
//! order (the seed alone fixes the order and the initial weights, see
//! [`crate::train`]); they differ only in configuration: regulariser, rates,
//! learning rate, weight decay, epochs. A cohort trains R such runs side by
//! side. Each batch is gathered once, and the first layer's products, most of
//! the arithmetic, are one product for all runs: the runs' first weight
//! matrices sit side by side as one [784, R x 256] matrix, so the batch is
//! packed once and the products are wide. The other layers are per run, on
//! buffers allocated once per cohort, with bias, ReLU and noise applied in
//! one pass and the SGD update in another. Each run keeps its own noise
//! stream, regulariser, learning rate and weight decay; a run that diverges
//! or finishes its epochs leaves the cohort at the end of that epoch, and the
//! others go on.
//!
//! The arithmetic is that of [`crate::train::train`] (candle's CPU
//! products call the same `gemm` routine with the same shapes; the
//! element-wise operations are candle's, in the same order; the small
//! output-layer loss is computed with candle itself), so a run in a cohort
//! gives bit for bit the numbers it gives trained alone, which
//! `tests::cohort_equals_runs_trained_alone` checks for every regulariser
//! kind, weight decay and several learning rates. Hooks get no model after
//! each step (the weights live in these buffers until the epoch ends);
//! [`train`] sends runs whose hooks need one step by step.

use std::time::Instant;

use anyhow::{bail, ensure, Result};
use candle_core::{Device, Storage, Tensor};

use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::model::{Mlp, WIDTHS};
use crate::regularizers::{ActivationNoise, NoiseCtx};
use crate::rng::{Rng, Stream};
mod first;
mod pass;
#[cfg(test)]
mod tests;

use crate::train::{evaluate_epoch, init_model, EpochRow, RunOutcome, TrainHook};
use first::{mul_into, step_rows, First, Rule, Sgd, SPLIT_ROW};
use pass::{Half, Step};

const IN: usize = WIDTHS[0];
const H1: usize = WIDTHS[1];
const H2: usize = WIDTHS[2];
const C: usize = WIDTHS[3];

/// One run of a cohort: its configuration and the hook that follows it.
pub struct Member<'a> {
    pub cfg: &'a TrainConfig,
    pub hook: &'a mut dyn TrainHook,
}

/// Trains one run: on the CPU as a cohort of one (the same numbers,
/// faster), unless its hook reads the model after every step; otherwise,
/// and on other devices, step by step ([`crate::train::train`]).
pub fn train(
    cfg: &TrainConfig,
    seed: u64,
    data: &Dataset,
    threads: usize,
    hook: &mut dyn TrainHook,
) -> Result<RunOutcome> {
    if available(data) && !hook.reads_model() {
        let mut members = [Member { cfg, hook }];
        let out = train_cohort(&mut members, seed, data, threads)?;
        return Ok(out.into_iter().next().expect("one outcome per member"));
    }
    crate::train::train(cfg, seed, data, threads, hook)
}

/// Whether `data` lives where the cohort trainer works (the CPU).
pub fn available(data: &Dataset) -> bool {
    data.train_x.device().is_cpu()
}

/// Trains every member with `seed` on `data`, as one cohort; each step's two
/// half-batches run on two threads when `threads` >= 2. All members must
/// share the batch size. Returns one outcome per member, in order.
pub fn train_cohort(
    members: &mut [Member],
    seed: u64,
    data: &Dataset,
    threads: usize,
) -> Result<Vec<RunOutcome>> {
    ensure!(!members.is_empty(), "a cohort needs at least one run");
    ensure!(available(data), "the cohort trainer runs on the CPU only");
    let bs = members[0].cfg.batch_size;
    for m in members.iter() {
        m.cfg.validate()?;
        ensure!(
            m.cfg.batch_size == bs,
            "runs of one cohort share a batch size ({} and {})",
            bs,
            m.cfg.batch_size
        );
    }
    let (storage, layout) = data.train_x.storage_and_layout();
    let x_all: &[f32] = match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(cpu), Some((a, b))) => &cpu.as_slice::<f32>()?[a..b],
        _ => bail!("the cohort trainer needs the training images as one contiguous CPU array"),
    };
    let labels: Vec<u32> = data.train_y.to_vec1()?;
    let n = data.train_len();
    ensure!(
        x_all.len() == n * IN && labels.len() == n,
        "training data of unexpected shape"
    );

    let mut runs = members
        .iter_mut()
        .map(|m| Run::new(m, seed, n))
        .collect::<Result<Vec<_>>>()?;
    let mut first = First::new(&runs)?;
    let half = bs.div_ceil(2);
    let mut halves = [Half::default(), Half::default()];
    let mut shuffle = Rng::new(seed, Stream::Shuffle);
    let mut xb = vec![0f32; bs * IN];
    let mut yb = vec![0u32; bs];
    let mut onehot = vec![0f32; bs * C];
    let ones = vec![1f32; half];
    let max_epochs = runs.iter().map(|r| r.cfg.epochs).max().unwrap_or(0);
    for epoch in 1..=max_epochs {
        // Runs that stopped leave; the first layer's matrix is rebuilt
        // without them.
        let live: Vec<usize> = (0..runs.len())
            .filter(|&i| runs[i].end.is_none() && epoch <= runs[i].cfg.epochs)
            .collect();
        if live.is_empty() {
            break;
        }
        first.keep(&mut runs, &live);
        for h in &mut halves {
            h.resize(half, live.len());
        }
        let t0 = Instant::now();
        let order = shuffle.permutation(n);
        for &i in &live {
            runs[i].loss_sum = 0.0;
            runs[i].correct = 0.0;
        }
        for start in (0..n).step_by(bs) {
            let len = bs.min(n - start);
            // The batch is gathered while the runs draw their noise (on a
            // second thread when there is one).
            let picked = &order[start..start + len];
            let mut batch = Batch {
                x: &mut xb,
                labels: &mut yb,
                onehot: &mut onehot,
            };
            let mut draw_all = || -> Result<usize> {
                let mut stepping = 0;
                for &i in &live {
                    let run = &mut runs[i];
                    run.p.live = run.end.is_none();
                    if run.p.live {
                        run.draw(len)?;
                        stepping += 1;
                    }
                }
                Ok(stepping)
            };
            let stepping = if threads >= 2 {
                rayon::in_place_scope(|s| {
                    s.spawn(|_| batch.gather(picked, x_all, &labels));
                    draw_all()
                })?
            } else {
                batch.gather(picked, x_all, &labels);
                draw_all()?
            };
            if stepping == 0 {
                break;
            }
            first.apply_masks(&runs, &live);
            let params: Vec<&Params> = live.iter().map(|&i| &runs[i].p).collect();
            let step = Step {
                x: &xb,
                labels: &yb,
                onehot: &onehot,
                w1: first.used(),
                runs: &params,
                ones: &ones,
                n: len,
            };
            let h = len.div_ceil(2);
            let parts = if h == len { 1 } else { 2 };
            {
                let (a, b) = halves.split_at_mut(1);
                let (a, b) = (&mut a[0], &mut b[0]);
                if parts == 1 {
                    a.pass(&step, 0, len)?;
                } else if threads >= 2 {
                    let mut second = Ok(());
                    let first = rayon::in_place_scope(|s| {
                        s.spawn(|_| second = b.pass(&step, h, len - h));
                        a.pass(&step, 0, h)
                    });
                    first?;
                    second?;
                } else {
                    a.pass(&step, 0, h)?;
                    b.pass(&step, h, len - h)?;
                }
            }
            // The SGD step: the first layer's rows for every run (the
            // lower rows on a second thread when there is one), then each
            // run's own tensors.
            let masks: Vec<Option<Vec<f32>>> =
                live.iter().map(|&i| runs[i].p.mask[0].take()).collect();
            {
                let rules: Vec<Rule> = live
                    .iter()
                    .zip(&masks)
                    .map(|(&i, m)| runs[i].p.live.then(|| (runs[i].sgd(), m.as_deref())))
                    .collect();
                let parts = &halves[..parts];
                let grads = (&parts[0].gw1[..], parts.get(1).map(|h| &h.gw1[..]));
                let rw = first.width();
                let split = if threads >= 2 { SPLIT_ROW } else { IN };
                let (upper, lower) = first.w.split_at_mut(split * rw);
                let mut rest = |runs: &mut [Run]| {
                    step_rows(upper, 0, rw, &rules, grads);
                    for (col, &i) in live.iter().enumerate() {
                        if runs[i].p.live {
                            runs[i].update(col, parts, len);
                        }
                    }
                };
                if split < IN {
                    rayon::in_place_scope(|s| {
                        s.spawn(|_| step_rows(lower, split, rw, &rules, grads));
                        rest(&mut runs);
                    });
                } else {
                    rest(&mut runs);
                }
            }
            for (&i, m) in live.iter().zip(masks) {
                runs[i].p.mask[0] = m;
            }
            for &i in &live {
                let run = &mut runs[i];
                if !run.p.live {
                    continue;
                }
                run.step += 1;
                run.hook.after_step(run.step, epoch, None)?;
                if run.hook.stop_requested() {
                    run.end = Some(End::Interrupted);
                }
            }
        }
        let pass = t0.elapsed().as_secs_f64();
        let share = pass / live.len() as f64;
        for (col, &i) in live.iter().enumerate() {
            let run = &mut runs[i];
            if run.end.is_some() {
                continue; // interrupted: the epoch is not finished
            }
            first.copy_out(col, &mut run.w1);
            run.sync_model()?;
            let row = evaluate_epoch(
                &run.model,
                data,
                epoch,
                run.loss_sum as f64 / n as f64,
                run.correct as f64 / n as f64,
                share,
            )?;
            let diverged = !(row.train_loss.is_finite() && row.test_loss.is_finite());
            run.rows.push(row);
            run.hook.after_epoch(&run.rows)?;
            if diverged {
                run.end = Some(End::Diverged);
            }
        }
    }
    // Interrupted runs' weights are where they stopped; finished ones were
    // copied out at their last epoch.
    for (col, &i) in first.members.clone().iter().enumerate() {
        if runs[i].end == Some(End::Interrupted) {
            first.copy_out(col, &mut runs[i].w1);
        }
    }
    runs.into_iter()
        .map(|mut r| {
            r.sync_model()?;
            Ok(RunOutcome {
                rows: r.rows,
                diverged: r.end == Some(End::Diverged),
                interrupted: r.end == Some(End::Interrupted),
                model: r.model,
            })
        })
        .collect()
}

/// A step's batch: the images, labels and one-hot labels of its rows.
struct Batch<'a> {
    x: &'a mut [f32],
    labels: &'a mut [u32],
    onehot: &'a mut [f32],
}

impl Batch<'_> {
    /// Copies the images `picked` of `x_all` (and their labels) into rows
    /// 0.. of the batch.
    fn gather(&mut self, picked: &[u32], x_all: &[f32], labels: &[u32]) {
        for (r, &k) in picked.iter().enumerate() {
            let k = k as usize;
            self.x[r * IN..(r + 1) * IN].copy_from_slice(&x_all[k * IN..(k + 1) * IN]);
            self.labels[r] = labels[k];
            let row = &mut self.onehot[r * C..(r + 1) * C];
            row.fill(0.0);
            row[labels[k] as usize] = 1.0;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Diverged,
    Interrupted,
}

/// A step's noise on one hidden layer's activations, on the host.
#[derive(Debug, Default)]
enum Act {
    #[default]
    None,
    Scale(Vec<f32>),
    Shift(Vec<f32>),
}

/// What the half-batch passes read of one run.
#[derive(Debug, Default)]
struct Params {
    /// Takes part in this step.
    live: bool,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
    w3: Vec<f32>,
    b3: Vec<f32>,
    /// This step's weight masks (layers 1 to 3), if any.
    mask: [Option<Vec<f32>>; 3],
    /// The masked weights of layers 2 and 3 when masked.
    w2u: Vec<f32>,
    w3u: Vec<f32>,
    act: [Act; 2],
}

impl Params {
    fn w2_used(&self) -> &[f32] {
        if self.mask[1].is_some() {
            &self.w2u
        } else {
            &self.w2
        }
    }
    fn w3_used(&self) -> &[f32] {
        if self.mask[2].is_some() {
            &self.w3u
        } else {
            &self.w3
        }
    }
}

struct Run<'m> {
    cfg: &'m TrainConfig,
    hook: &'m mut dyn TrainHook,
    /// The regularisers, and the weights at the end of each epoch (for
    /// evaluation and the outcome).
    model: Mlp,
    noise: Rng,
    p: Params,
    /// The first layer's weights while the run is outside the cohort's
    /// matrix (before it joins and after it leaves).
    w1: Vec<f32>,
    loss_sum: f32,
    correct: f32,
    step: usize,
    total_steps: f64,
    rows: Vec<EpochRow>,
    end: Option<End>,
}

impl<'m> Run<'m> {
    fn new(m: &'m mut Member, seed: u64, n: usize) -> Result<Self> {
        let model = init_model(m.cfg, seed, &Device::Cpu)?;
        let flat = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1()?) };
        let l = &model.layers;
        let p = Params {
            b1: flat(l[0].b.as_tensor())?,
            w2: flat(l[1].w.as_tensor())?,
            b2: flat(l[1].b.as_tensor())?,
            w3: flat(l[2].w.as_tensor())?,
            b3: flat(l[2].b.as_tensor())?,
            ..Default::default()
        };
        Ok(Self {
            cfg: m.cfg,
            total_steps: (n.div_ceil(m.cfg.batch_size) * m.cfg.epochs) as f64,
            w1: flat(l[0].w.as_tensor())?,
            hook: &mut *m.hook,
            model,
            noise: Rng::new(seed, Stream::Noise),
            p,
            loss_sum: 0.0,
            correct: 0.0,
            step: 0,
            rows: Vec::new(),
            end: None,
        })
    }

    /// Draws this step's noise for a batch of `len`, as the step-by-step
    /// trainer does, and masks the weights of layers 2 and 3.
    fn draw(&mut self, len: usize) -> Result<()> {
        let mut ctx = NoiseCtx {
            rng: &mut self.noise,
            progress: self.step as f64 / self.total_steps,
        };
        let drawn = crate::step::draw_noise(&self.model, len, &Device::Cpu, &mut ctx)?;
        let host = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1()?) };
        for (i, layer) in drawn.into_iter().enumerate() {
            self.p.mask[i] = layer.w_mask.as_ref().map(host).transpose()?;
            if i < 2 {
                self.p.act[i] = match &layer.noise {
                    None => Act::None,
                    Some(ActivationNoise::Scale(m)) => Act::Scale(host(m)?),
                    Some(ActivationNoise::Shift(a)) => Act::Shift(host(a)?),
                };
            }
        }
        let p = &mut self.p;
        if let Some(m) = &p.mask[1] {
            p.w2u.resize(p.w2.len(), 0.0);
            mul_into(&mut p.w2u, &p.w2, m);
        }
        if let Some(m) = &p.mask[2] {
            p.w3u.resize(p.w3.len(), 0.0);
            mul_into(&mut p.w3u, &p.w3, m);
        }
        Ok(())
    }

    /// The SGD step on the run's weights:
    /// w <- w * (1 - lr wd) - lr g, as the step-by-step trainer takes it.
    fn sgd(&self) -> Sgd {
        let (lr, wd) = (self.cfg.lr, self.cfg.weight_decay);
        Sgd {
            lr: lr as f32,
            decay: (wd != 0.0).then_some((1.0 - lr * wd) as f32),
        }
    }

    /// Sums the halves' gradients, masks them and takes the SGD step
    /// ([`Run::sgd`]; biases b <- b - lr g) on every tensor of the run
    /// but the first layer's weights; accumulates the step's loss and hits.
    fn update(&mut self, col: usize, parts: &[Half], len: usize) {
        let sgd = self.sgd();
        let bias = Sgd {
            lr: sgd.lr,
            decay: None, // biases never decay
        };
        let (a, b) = (&parts[0].runs[col], parts.get(1).map(|h| &h.runs[col]));
        let p = &mut self.p;
        // Layers 3 and 2: the run's own matrices.
        sgd.apply(
            &mut p.w3,
            &a.gw3,
            b.map(|b| &b.gw3[..]),
            p.mask[2].as_deref(),
        );
        bias.apply(&mut p.b3, &a.gb3, b.map(|b| &b.gb3[..]), None);
        sgd.apply(
            &mut p.w2,
            &a.gw2,
            b.map(|b| &b.gw2[..]),
            p.mask[1].as_deref(),
        );
        bias.apply(&mut p.b2, &a.gb2, b.map(|b| &b.gb2[..]), None);
        // Layer 1's weights live in the cohort's matrix ([`step_rows`]).
        bias.apply(&mut p.b1, &a.gb1, b.map(|b| &b.gb1[..]), None);
        let parts = [Some(a), b];
        let parts = parts.iter().flatten();
        // loss = first + second; loss_sum += loss * len (candle's affine).
        let loss = parts
            .clone()
            .map(|h| h.loss)
            .reduce(|a, b| a + b)
            .unwrap_or(0.0);
        self.loss_sum += loss * len as f32 + 0.0;
        self.correct += parts.map(|h| h.correct).sum::<f32>();
    }

    /// Writes the run's buffers into its model's variables.
    fn sync_model(&mut self) -> Result<()> {
        let dev = Device::Cpu;
        let l = &self.model.layers;
        let set = |v: &candle_core::Var, data: &[f32], shape: (usize, usize)| -> Result<()> {
            let t = Tensor::from_slice(data, shape, &dev)?;
            Ok(v.set(&t.reshape(v.as_tensor().shape())?)?)
        };
        set(&l[0].w, &self.w1, (IN, H1))?;
        set(&l[0].b, &self.p.b1, (1, H1))?;
        set(&l[1].w, &self.p.w2, (H1, H2))?;
        set(&l[1].b, &self.p.b2, (1, H2))?;
        set(&l[2].w, &self.p.w3, (H2, C))?;
        set(&l[2].b, &self.p.b3, (1, C))?;
        Ok(())
    }
}
