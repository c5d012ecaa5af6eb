//! The trainer's arithmetic: hand-written gradients against autograd, and a
//! stack against its runs trained alone.

use candle_core::Var;

use super::grads::{loss_and_grads, Batch, StepPlan};
use super::noise::StepNoise;
use super::*;
use crate::data::{self, DataOptions};
use crate::model::WIDTHS;
use crate::regularizers::{Reg, RegKind};

fn batch(n: usize) -> (Tensor, Tensor, Tensor) {
    let mut rng = Rng::new(11, Stream::Probe);
    let mut x = vec![0f32; n * WIDTHS[0]];
    rng.fill_uniform(&mut x);
    let labels: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % 10).collect();
    let xs = Tensor::from_vec(x, (n, WIDTHS[0]), &Device::Cpu).unwrap();
    let ys = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
    let targets = candle_nn::encoding::one_hot(ys.clone(), 10, 1f32, 0f32).unwrap();
    (xs, ys, targets)
}

fn model(kind: RegKind, p: f64) -> Mlp {
    let build = || kind.with(p).build(&Device::Cpu).unwrap();
    let slots = vec![build(), build()];
    let m = Mlp::new(slots, &mut Rng::new(5, Stream::Init), &Device::Cpu).unwrap();
    // Larger weights than the book's init, so every layer's gradient is
    // far from zero and a wrong formula cannot hide under the tolerance.
    for v in m.vars() {
        v.set(&(v.as_tensor() * 10.0).unwrap()).unwrap();
    }
    m
}

fn ctx(rng: &mut Rng) -> NoiseCtx<'_> {
    NoiseCtx { rng, progress: 0.3 }
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// What one step computed: loss, hits, and per layer the summed and masked
/// gradients.
struct Step {
    loss: Tensor,
    correct: Tensor,
    layers: Vec<(Tensor, Tensor)>,
}

/// One step of `m` (a stack of one) on `xs` with the noise of seed 9.
fn step(m: &Mlp, xs: &Tensor, ys: &Tensor, targets: &Tensor, plan: StepPlan) -> Step {
    let rule = stack::Sgd {
        lr: 0.5,
        weight_decay: 0.0,
    };
    let stack = Stack::new(&[m], vec![rule]).unwrap();
    let mut rng = Rng::new(9, Stream::Noise);
    let drawn = m.draw_noise(xs.dim(0).unwrap(), &Device::Cpu, &mut ctx(&mut rng));
    let noise = StepNoise::new(vec![drawn.unwrap()]).unwrap();
    let batch = Batch {
        x: xs,
        y: ys,
        targets,
    };
    let g = loss_and_grads(&stack.params, &batch, &noise, plan).unwrap();
    Step {
        layers: (0..m.layers.len()).map(|i| g.layer(i).unwrap()).collect(),
        loss: g.loss,
        correct: g.correct,
    }
}

/// The hand-written backward pass equals candle's autograd through the
/// model's forward pass with the same noise, for every regulariser kind, an
/// odd batch (unequal halves), with and without halves.
#[test]
fn gradients_match_autograd() {
    let (xs, ys, targets) = batch(7);
    for &kind in RegKind::ALL.iter().filter(|k| k.hand_written()) {
        let m = model(kind, 0.3);
        let mut rng = Rng::new(9, Stream::Noise);
        let logits = m.forward_t(&xs, true, &mut ctx(&mut rng)).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &ys).unwrap();
        let auto = loss.backward().unwrap();
        for halves in [false, true] {
            let plan = StepPlan {
                halves,
                parallel: false,
            };
            let s = step(&m, &xs, &ys, &targets, plan);
            let close = |a: &[f32], b: &[f32], what: &str| {
                let scale = b.iter().fold(0f32, |s, v| s.max(v.abs()));
                assert!(scale > 0.0, "{kind} {what}: zero gradient");
                for (x, y) in a.iter().zip(b) {
                    assert!(
                        (x - y).abs() <= 1e-4 * scale,
                        "{kind} halves={halves} {what}: {x} vs {y} (scale {scale})"
                    );
                }
            };
            let l: f32 = loss.to_scalar().unwrap();
            close(&flat(&s.loss), &[l], "loss");
            for (i, (layer, (gw, gb))) in m.layers.iter().zip(&s.layers).enumerate() {
                let want = |v: &Var| flat(auto.get(v).unwrap());
                close(&flat(gw), &want(&layer.w), &format!("dW{i}"));
                close(&flat(gb), &want(&layer.b), &format!("db{i}"));
            }
        }
    }
}

/// Computing the halves on two threads gives the same bits as one after
/// the other; a batch of one cannot be halved and is processed whole.
#[test]
fn parallel_halves_are_bit_identical() {
    let m = model(RegKind::Dropout, 0.5);
    let run = |n: usize, parallel| {
        let (xs, ys, targets) = batch(n);
        let plan = StepPlan {
            halves: true,
            parallel,
        };
        let s = step(&m, &xs, &ys, &targets, plan);
        let mut all = vec![flat(&s.loss), flat(&s.correct)];
        for (gw, gb) in &s.layers {
            all.push(flat(gw));
            all.push(flat(gb));
        }
        all
    };
    assert_eq!(run(9, false), run(9, true));
    // A batch of one: the same bits as the plan without halves, and the
    // loss of the model's own forward pass with the same noise.
    let one = run(1, true);
    let (xs, ys, targets) = batch(1);
    let whole = step(
        &m,
        &xs,
        &ys,
        &targets,
        StepPlan {
            halves: false,
            parallel: false,
        },
    );
    assert_eq!(one[0], flat(&whole.loss));
    for (k, (gw, gb)) in whole.layers.iter().enumerate() {
        assert_eq!(one[2 + 2 * k], flat(gw));
        assert_eq!(one[3 + 2 * k], flat(gb));
    }
    let mut rng = Rng::new(9, Stream::Noise);
    let logits = m.forward_t(&xs, true, &mut ctx(&mut rng)).unwrap();
    let log_p = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1).unwrap();
    let label = ys.to_vec1::<u32>().unwrap()[0] as usize;
    let want = -flat(&log_p)[label];
    assert!(
        (one[0][0] - want).abs() <= 1e-5 * want.abs(),
        "batch of one: loss {} vs the forward pass's {want}",
        one[0][0]
    );
}

fn weights(m: &Mlp) -> Vec<Vec<u32>> {
    m.vars()
        .map(|v| flat(v.as_tensor()).into_iter().map(f32::to_bits).collect())
        .collect()
}

/// Common random numbers: the seed alone fixes the initial weights,
/// whatever the configuration.
#[test]
fn configurations_share_initial_weights() {
    let book = TrainConfig::default();
    let other = TrainConfig {
        layers: [RegKind::Dropout.with(0.0), RegKind::Dropconnect.with(0.9)],
        weight_decay: 1e-3,
        lr: 0.1,
        ..book.clone()
    };
    let init = |cfg: &TrainConfig, seed| weights(&init_model(cfg, seed, &Device::Cpu).unwrap());
    assert_eq!(init(&book, 3), init(&other, 3));
    assert_ne!(init(&book, 3), init(&book, 4));
}

fn synthetic(validation: usize) -> Dataset {
    let opts = DataOptions {
        synthetic: true,
        validation,
        ..Default::default()
    };
    data::load(&opts, &Device::Cpu).unwrap()
}

/// ...and the batch order: two configurations that differ only by a
/// negligible weight decay follow the same trajectory (a different batch
/// order would move the loss by far more than 1e-4).
#[test]
fn configurations_share_batch_order() {
    let data = synthetic(0);
    let a = TrainConfig {
        layers: [RegKind::Dropout.with(0.0); 2],
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

/// Every number of a row but the timings, as bits (NaN included).
fn bits(rows: &[EpochRow]) -> Vec<Vec<u64>> {
    rows.iter()
        .map(|r| {
            let opt = |v: Option<f64>| v.map_or(u64::MAX, f64::to_bits);
            vec![
                r.epoch as u64,
                r.train_loss.to_bits(),
                r.train_acc.to_bits(),
                r.test_loss.to_bits(),
                r.test_acc.to_bits(),
                opt(r.val_loss),
                opt(r.val_acc),
                r.train_eval_acc.to_bits(),
            ]
        })
        .collect()
}

/// Stops its run after `at` steps, as Ctrl-C does.
struct StopAt {
    at: usize,
    steps: usize,
}

impl TrainHook for StopAt {
    fn after_step(&mut self, step: usize, _: usize, _: Option<&Mlp>) -> Result<()> {
        self.steps = step;
        Ok(())
    }
    fn stop_requested(&self) -> bool {
        self.steps >= self.at
    }
}

/// A stack of every regulariser kind (on both gradient paths), with weight decay, two other
/// learning rates, fewer epochs, a run that diverges and one interrupted
/// part way, on two threads, gives each run exactly (bit for bit) the rows
/// and final weights of that run trained alone, on one thread. The batch
/// (95) makes unequal halves and a short last batch.
#[test]
fn stack_equals_runs_trained_alone() {
    let data = synthetic(200);
    let base = TrainConfig {
        epochs: 3,
        batch_size: 95,
        ..TrainConfig::default()
    };
    let with = |l: [Reg; 2]| base.with_layers(l);
    let configs = vec![
        base.clone(),
        TrainConfig {
            epochs: 2,
            ..with([RegKind::Dropout.with(0.0); 2])
        },
        TrainConfig {
            weight_decay: 1e-3,
            ..with([RegKind::Dropconnect.with(0.3); 2])
        },
        TrainConfig {
            lr: 0.1,
            ..with([RegKind::DropconnectOut.with(0.3); 2])
        },
        with([RegKind::GaussianMult.with(0.3); 2]),
        TrainConfig {
            lr: 0.05,
            weight_decay: 5e-4,
            ..with([RegKind::GaussianAdd.with(0.2); 2])
        },
        with([RegKind::LognormalMult.with(0.4); 2]),
        with([RegKind::UniformMult.with(0.2); 2]),
        with([RegKind::AnnealedDropout.with(0.5); 2]),
        with([RegKind::Dropout.with(0.5), RegKind::GaussianAdd.with(0.1)]),
        // Autograd-path runs in the same stack: trained as a stack of their own.
        TrainConfig {
            weight_decay: 1e-3,
            ..with([RegKind::ConcreteDropout.with(0.2), RegKind::RDrop.with(0.3)])
        },
        TrainConfig {
            backward: crate::config::Backward::Autograd,
            lr: 0.1,
            ..with([
                RegKind::Dropout.with(0.3),
                RegKind::DropconnectGauss.with(0.2),
            ])
        },
        TrainConfig {
            lr: 1e30,
            ..with([RegKind::Dropout.with(0.0); 2])
        },
        base.clone(),
    ];
    let seed = 7;
    let interrupted = configs.len() - 1;
    let stop = |k: usize| StopAt {
        at: if k == interrupted { 7 } else { usize::MAX },
        steps: 0,
    };
    let mut hooks: Vec<StopAt> = (0..configs.len()).map(stop).collect();
    let mut members: Vec<Member> = configs
        .iter()
        .zip(hooks.iter_mut())
        .map(|(cfg, hook)| Member { cfg, hook })
        .collect();
    let together = train_stack(&mut members, seed, &data, 2).unwrap();
    for (k, (cfg, got)) in configs.iter().zip(&together).enumerate() {
        let alone = train(cfg, seed, &data, 1, &mut stop(k)).unwrap();
        assert_eq!(bits(&got.rows), bits(&alone.rows), "{cfg:?}");
        assert_eq!(got.diverged, alone.diverged, "{cfg:?}");
        assert_eq!(got.interrupted, alone.interrupted, "{cfg:?}");
        assert_eq!(weights(&got.model), weights(&alone.model), "{cfg:?}");
    }
    assert!(together[interrupted - 1].diverged, "lr 1e30 should diverge");
    assert!(together[interrupted].interrupted && together[interrupted].rows.is_empty());
    assert_eq!(together[1].rows.len(), 2);
    assert_eq!(together[0].rows.len(), 3);
}

/// One SGD step with weight decay on the weights only,
/// `w <- w (1 - lr wd) - lr g` and `b <- b - lr g`, for a stack of two runs with different decays
/// (the per-run factor) and for each run alone (candle's `affine`), against
/// PyTorch's `torch.optim.SGD` with the decay on the weights' parameter
/// group only. The case is defined by formulas, so both sides build it
/// without sharing a generator: W_l[i, j] = 0.05 sin(0.37 i + 0.11 j + l),
/// b_l[j] = 0.01 cos(0.5 j + l), x[n, k] = ((31 n + 17 k) mod 97) / 97,
/// y[n] = (3 n + 1) mod 10, 8 examples, lr 0.5, no dropout. The values
/// below are what `python3 scripts/torch_reference.py --wd-step-check`
/// printed (PyTorch 2.15.0, CPU, float32):
///
/// ```text
/// wd=0.01 loss=2.30399108
///   W1[5,7]=0.0248469636 W1[783,255]=-0.0221265499
///   W2[17,200]=-0.0422297157 W3[255,9]=0.00245527201
///   b1[3]=0.000795816013 b3[9]=0.0216676947
///   sum|W1|=6356.71882 sum|W3|=81.0094883
/// wd=0.001 loss=2.30399108
///   W1[5,7]=0.0249590725 W1[783,255]=-0.0222262647
///   W2[17,200]=-0.0424209274 W3[255,9]=0.00246637641
///   b1[3]=0.000795816013 b3[9]=0.0216676947
///   sum|W1|=6385.46765 sum|W3|=81.3758718
/// ```
#[test]
fn a_weight_decay_step_matches_pytorch() {
    let dev = Device::Cpu;
    let n = 8;
    let model = || {
        let m = model(RegKind::Dropout, 0.0);
        for (l, layer) in m.layers.iter().enumerate() {
            let (fan_in, fan_out) = layer.w.as_tensor().dims2().unwrap();
            let w: Vec<f32> = (0..fan_in * fan_out)
                .map(|k| {
                    let (i, j) = ((k / fan_out) as f64, (k % fan_out) as f64);
                    (0.05 * (0.37 * i + 0.11 * j + l as f64).sin()) as f32
                })
                .collect();
            let b: Vec<f32> = (0..fan_out)
                .map(|j| (0.01 * (0.5 * j as f64 + l as f64).cos()) as f32)
                .collect();
            layer
                .w
                .set(&Tensor::from_vec(w, (fan_in, fan_out), &dev).unwrap())
                .unwrap();
            layer
                .b
                .set(&Tensor::from_vec(b, fan_out, &dev).unwrap())
                .unwrap();
        }
        m
    };
    let x: Vec<f32> = (0..n * WIDTHS[0])
        .map(|k| ((31 * (k / WIDTHS[0]) + 17 * (k % WIDTHS[0])) % 97) as f32 / 97.0)
        .collect();
    let xs = Tensor::from_vec(x, (n, WIDTHS[0]), &dev).unwrap();
    let labels: Vec<u32> = (0..n as u32).map(|i| (3 * i + 1) % 10).collect();
    let ys = Tensor::new(labels.as_slice(), &dev).unwrap();
    let targets = candle_nn::encoding::one_hot(ys.clone(), 10, 1f32, 0f32).unwrap();
    // (wd, loss, W1[5,7], W1[783,255], W2[17,200], W3[255,9], b1[3], b3[9],
    //  sum|W1|, sum|W3|), from the comment above.
    let torch: [(f64, [f64; 9]); 2] = [
        (
            1e-2,
            [
                2.30399108,
                0.0248469636,
                -0.0221265499,
                -0.0422297157,
                0.00245527201,
                0.000795816013,
                0.0216676947,
                6356.71882,
                81.0094883,
            ],
        ),
        (
            1e-3,
            [
                2.30399108,
                0.0249590725,
                -0.0222262647,
                -0.0424209274,
                0.00246637641,
                0.000795816013,
                0.0216676947,
                6385.46765,
                81.3758718,
            ],
        ),
    ];
    let read = |stack: &Stack, k: usize, loss: f64| -> [f64; 9] {
        let at = |l: usize, i: usize, j: usize| {
            let w = stack.params[l].0.get(k).unwrap();
            w.get(i)
                .unwrap()
                .get(j)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let bias = |l: usize, j: usize| {
            let b = stack.params[l].1.get(k).unwrap().squeeze(0).unwrap();
            b.get(j).unwrap().to_scalar::<f32>().unwrap() as f64
        };
        let abs_sum = |l: usize| {
            let w = stack.params[l].0.get(k).unwrap();
            flat(&w).iter().map(|v| v.abs() as f64).sum::<f64>()
        };
        [
            loss,
            at(0, 5, 7),
            at(0, 783, 255),
            at(1, 17, 200),
            at(2, 255, 9),
            bias(0, 3),
            bias(2, 9),
            abs_sum(0),
            abs_sum(2),
        ]
    };
    let batch = Batch {
        x: &xs,
        y: &ys,
        targets: &targets,
    };
    let plan = StepPlan {
        halves: false,
        parallel: false,
    };
    // The stack of both runs, then each run alone.
    let cases: Vec<Vec<usize>> = vec![vec![0, 1], vec![0], vec![1]];
    for runs in cases {
        let models: Vec<Mlp> = runs.iter().map(|_| model()).collect();
        let rules = runs
            .iter()
            .map(|&r| stack::Sgd {
                lr: 0.5,
                weight_decay: torch[r].0,
            })
            .collect();
        let mut stack = Stack::new(&models.iter().collect::<Vec<_>>(), rules).unwrap();
        let mut rng = Rng::new(9, Stream::Noise);
        let drawn = models
            .iter()
            .map(|m| m.draw_noise(n, &dev, &mut ctx(&mut rng)).unwrap())
            .collect();
        let noise = StepNoise::new(drawn).unwrap();
        let g = loss_and_grads(&stack.params, &batch, &noise, plan).unwrap();
        let losses: Vec<f32> = flat(&g.loss);
        stack.sgd(|i| g.layer(i), false).unwrap();
        for (k, &r) in runs.iter().enumerate() {
            let got = read(&stack, k, losses[k] as f64);
            for (q, (g, w)) in got.iter().zip(torch[r].1).enumerate() {
                assert!(
                    (g - w).abs() <= 2e-6 * w.abs().max(1e-2),
                    "runs {runs:?}, wd {}: value {q} is {g}, PyTorch {w}",
                    torch[r].0
                );
            }
        }
    }
}
