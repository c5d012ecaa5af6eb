//! The two gradient paths against each other, the autograd-only kinds
//! against finite differences, and the fast path's bits pinned.

use sha2::{Digest, Sha256};

use super::autograd::{run_objective, AutoRun};
use super::grads::Batch;
use super::*;
use crate::config::Backward;
use crate::data::{self, DataOptions};
use crate::model::WIDTHS;
use crate::regularizers::{Reg, RegKind};

fn synthetic() -> Dataset {
    let opts = DataOptions {
        synthetic: true,
        validation: 200,
        ..Default::default()
    };
    data::load(&opts, &Device::Cpu).unwrap()
}

/// Each kind at a strength it accepts and trains at here (lr 0.5, batches
/// of 32): dropout-shared at 0.3 blows up in its first epochs on both
/// paths, so the paths' rows part for chaos, not for a gradient.
/// Multi-sample dropout with 3 passes, fewer than its default 4, to keep
/// the test short.
fn reg(kind: RegKind) -> Reg {
    let r = kind.with(match kind {
        RegKind::UniformMult => 0.2,
        RegKind::GaussianAdd => 0.1,
        RegKind::DropoutShared => 0.05,
        _ => 0.3,
    });
    match kind {
        RegKind::MultisampleDropout => {
            toml::from_str(&format!("kind = \"{kind}\"\np = 0.3\nsamples = 3")).unwrap()
        }
        _ => r,
    }
}

fn config(kind: RegKind, backward: Backward) -> TrainConfig {
    TrainConfig {
        layers: [reg(kind); 2],
        weight_decay: 1e-3,
        batch_size: 32,
        epochs: 10,
        backward,
        ..TrainConfig::default()
    }
}

/// Tolerance of the paths' agreement. The paths sum the same products in
/// another order (two half-batches against one batch; autograd's own
/// reductions), so their weights differ by float rounding (about 1e-8)
/// from the first step on. Where a pre-activation lies that close to the
/// ReLU's kink, one path counts the unit active and the other not, and
/// the weights then part by about 1e-4 in one step (seen for gaussian-add
/// at step 42 of this run); training carries that on. Rows then differ by
/// up to about a hundredth of the loss and of the accuracy: the tolerance.
/// Measured here: dropout and the other multiplicative kinds agree within
/// 6.4e-7 in loss and exactly in accuracy; gaussian-add, which met such a
/// kink, within 6.5e-3 and 3.0e-3. A wrong gradient moves rows by more:
/// the test fails at epoch 1 when the autograd path leaves out the
/// additive noise.
const LOSS_TOL: f64 = 0.02;
const ACC_TOL: f64 = 0.01;

/// Every kind the hand-written backward trains, trained both ways for
/// several hundred steps (with weight decay and a short last batch):
/// the same rows within the tolerance above.
#[test]
fn both_paths_train_the_same_runs() {
    let data = synthetic();
    let steps = data.train_len().div_ceil(32) * 10;
    assert!(steps >= 200, "only {steps} steps");
    for &kind in RegKind::ALL.iter().filter(|k| k.hand_written()) {
        let hand = train(&config(kind, Backward::Hand), 3, &data, 1, &mut ()).unwrap();
        let auto = train(&config(kind, Backward::Autograd), 3, &data, 1, &mut ()).unwrap();
        assert_eq!(hand.rows.len(), auto.rows.len(), "{kind}");
        let mut worst = (0f64, 0f64);
        for (h, a) in hand.rows.iter().zip(&auto.rows) {
            let loss = [
                (h.train_loss, a.train_loss),
                (h.test_loss, a.test_loss),
                (h.val_loss.unwrap(), a.val_loss.unwrap()),
            ];
            let acc = [
                (h.train_acc, a.train_acc),
                (h.test_acc, a.test_acc),
                (h.val_acc.unwrap(), a.val_acc.unwrap()),
                (h.train_eval_acc, a.train_eval_acc),
            ];
            for (x, y) in loss {
                assert!(
                    (x - y).abs() <= LOSS_TOL,
                    "{kind} epoch {}: {h:?} vs {a:?}",
                    h.epoch
                );
                worst.0 = worst.0.max((x - y).abs());
            }
            for (x, y) in acc {
                assert!(
                    (x - y).abs() <= ACC_TOL,
                    "{kind} epoch {}: {h:?} vs {a:?}",
                    h.epoch
                );
                worst.1 = worst.1.max((x - y).abs());
            }
        }
        // The run must have learned something, or agreement means little.
        assert!(
            hand.rows.last().unwrap().test_acc > 0.5,
            "{kind}: {:?}",
            hand.rows
        );
        eprintln!(
            "{kind}: largest loss gap {:.1e}, accuracy gap {:.1e}",
            worst.0, worst.1
        );
    }
}

/// `auto` picks the hand-written backward exactly where it covers both
/// layers, and `hand` on a kind it cannot train is an error naming the kind
/// and the way out.
#[test]
fn auto_picks_the_path_and_hand_refuses_what_it_cannot_train() {
    use crate::config::GradPath;
    for &kind in RegKind::ALL {
        let want = match kind.hand_written() {
            true => GradPath::Hand,
            false => GradPath::Autograd,
        };
        assert_eq!(config(kind, Backward::Auto).grad_path(), want, "{kind}");
        let forced = config(kind, Backward::Hand).validate();
        match kind.hand_written() {
            true => forced.unwrap(),
            false => {
                let e = forced.unwrap_err().to_string();
                assert!(
                    e.contains(&kind.to_string()) && e.contains("--backward auto"),
                    "{e}"
                );
            }
        }
    }
    // A forced path that auto picks anyway keeps the unforced identity.
    let book = TrainConfig::default();
    let forced = TrainConfig {
        backward: Backward::Hand,
        ..book.clone()
    };
    assert_eq!(forced.identity(), book);
    let other = TrainConfig {
        backward: Backward::Autograd,
        ..book.clone()
    };
    assert_ne!(other.identity(), book);
}

/// One batch of synthetic images, its labels and one-hot targets.
fn batch(n: usize) -> (Tensor, Tensor, Tensor) {
    let mut rng = Rng::new(21, Stream::Probe);
    let mut x = vec![0f32; n * WIDTHS[0]];
    rng.fill_uniform(&mut x);
    let labels: Vec<u32> = (0..n as u32).map(|i| (i * 3 + 1) % 10).collect();
    let xs = Tensor::from_vec(x, (n, WIDTHS[0]), &Device::Cpu).unwrap();
    let ys = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
    let targets = candle_nn::encoding::one_hot(ys.clone(), 10, 1f32, 0f32).unwrap();
    (xs, ys, targets)
}

/// For every kind only autograd trains, the gradient of a step's
/// objective (weights, biases and learned parameters) against a central
/// finite difference along a random direction, with the same noise drawn
/// for every evaluation. Weights are 10x the book's so that no gradient
/// is near zero; in f32 with a step of 1e-2 along a direction of sd 0.01
/// the two agree within 2%.
#[test]
fn autograd_only_kinds_match_finite_differences() {
    let (xs, ys, targets) = batch(16);
    let batch = Batch {
        x: &xs,
        y: &ys,
        targets: &targets,
    };
    // Multi-sample dropout is dropout's gradient averaged over passes:
    // checked exactly by `multisample_is_the_mean_of_its_passes` against
    // one-pass dropout on autograd, itself checked against the hand-written
    // backward. Its finite difference is no test of it: at these weights
    // one-pass dropout's own, through autograd, is 2.0% off for the ReLU
    // kinks a step of 1e-2 crosses.
    let fd_kinds = RegKind::ALL
        .iter()
        .filter(|k| !k.hand_written() && **k != RegKind::MultisampleDropout);
    for &kind in fd_kinds {
        let cfg = config(kind, Backward::Auto);
        let model = init_model(&cfg, 4, &Device::Cpu).unwrap();
        let mut params: Vec<Tensor> = Vec::new();
        for l in &model.layers {
            for v in [&l.w, &l.b] {
                v.set(&(v.as_tensor() * 10.0).unwrap()).unwrap();
                params.push(v.as_tensor().clone());
            }
        }
        let learned: Vec<Tensor> = model
            .learned()
            .iter()
            .map(|p| p.var.as_tensor().copy().unwrap())
            .collect();
        // A random direction over every parameter, learned ones included.
        let mut dir_rng = Rng::new(8, Stream::Probe);
        let mut direction = |t: &Tensor| {
            // Elements of sd 0.01: a step of 1e-2 along it moves each
            // parameter by about 1e-4, crossing few ReLU kinks.
            let mut d = vec![0f32; t.elem_count()];
            dir_rng.fill_normal(&mut d);
            d.iter_mut().for_each(|x| *x *= 0.01);
            Tensor::from_vec(d, t.shape(), &Device::Cpu).unwrap()
        };
        let dirs: Vec<Tensor> = params.iter().map(&mut direction).collect();
        let ldirs: Vec<Tensor> = learned.iter().map(&mut direction).collect();
        // The objective at params + t * dirs (learned + t * ldirs), with the
        // noise of seed 6, and its autograd gradient's directional value.
        let objective = |t: f64| -> (f64, f64) {
            let vars: Vec<candle_core::Var> = params
                .iter()
                .zip(&dirs)
                .map(|(p, d)| {
                    candle_core::Var::from_tensor(&(p + (d * t).unwrap()).unwrap()).unwrap()
                })
                .collect();
            for ((p, l), d) in model.learned().iter().zip(&learned).zip(&ldirs) {
                p.var.set(&(l + (d * t).unwrap()).unwrap()).unwrap();
            }
            let own: Vec<(Tensor, Tensor)> = vars
                .chunks(2)
                .map(|c| {
                    (
                        c[0].as_tensor().clone(),
                        c[1].as_tensor().reshape((1, ())).unwrap(),
                    )
                })
                .collect();
            let mut rng = Rng::new(6, Stream::Noise);
            let mut run = AutoRun {
                model: &model,
                rng: &mut rng,
                progress: 0.4,
                lr: 0.5,
            };
            let (_, _, obj) = run_objective(&own, &batch, &mut run, 1000).unwrap();
            let store = obj.backward().unwrap();
            let mut along = 0f64;
            let grads = vars.iter().map(|v| store.get(v).unwrap().clone());
            let learned_grads = model
                .learned()
                .iter()
                .map(|p| store.get(p.var).unwrap().clone())
                .collect::<Vec<_>>();
            for (g, d) in grads.chain(learned_grads).zip(dirs.iter().chain(&ldirs)) {
                along += (g * d)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap() as f64;
            }
            (
                obj.sum_all().unwrap().to_scalar::<f32>().unwrap() as f64,
                along,
            )
        };
        let eps = 1e-2;
        let (_, analytic) = objective(0.0);
        let numeric = (objective(eps).0 - objective(-eps).0) / (2.0 * eps);
        let rel = (analytic - numeric).abs() / analytic.abs().max(numeric.abs());
        assert!(
            rel < 0.02 && analytic.abs() > 1e-3,
            "{kind}: autograd {analytic} vs finite difference {numeric} (relative gap {rel:.3})"
        );
        if !learned.is_empty() {
            assert!(ldirs.iter().all(|d| d.elem_count() > 0));
        }
    }
}

/// Multi-sample dropout's objective and gradient are the mean of one-pass
/// dropout's over the same noise, drawn pass after pass.
#[test]
fn multisample_is_the_mean_of_its_passes() {
    let (xs, ys, targets) = batch(16);
    let batch = Batch {
        x: &xs,
        y: &ys,
        targets: &targets,
    };
    let k = 3;
    let multi = config(RegKind::MultisampleDropout, Backward::Auto);
    assert_eq!(init_model(&multi, 4, &Device::Cpu).unwrap().passes(), k);
    let one = config(RegKind::Dropout, Backward::Autograd);
    // (objective, gradients) of `cfg` summed over `calls` calls, each
    // continuing the same noise stream.
    let run = |cfg: &TrainConfig, calls: usize| -> (f64, Vec<Vec<f32>>) {
        let model = init_model(cfg, 4, &Device::Cpu).unwrap();
        let vars: Vec<candle_core::Var> = model
            .layers
            .iter()
            .flat_map(|l| {
                [
                    l.w.as_tensor().clone(),
                    l.b.as_tensor().reshape((1, ())).unwrap(),
                ]
            })
            .map(|t| candle_core::Var::from_tensor(&t).unwrap())
            .collect();
        let own: Vec<(Tensor, Tensor)> = vars
            .chunks(2)
            .map(|c| (c[0].as_tensor().clone(), c[1].as_tensor().clone()))
            .collect();
        let mut rng = Rng::new(6, Stream::Noise);
        let mut total: Option<Tensor> = None;
        for _ in 0..calls {
            let mut auto = AutoRun {
                model: &model,
                rng: &mut rng,
                progress: 0.4,
                lr: 0.5,
            };
            let (_, _, obj) = run_objective(&own, &batch, &mut auto, 1000).unwrap();
            total = Some(match total {
                None => obj,
                Some(t) => (t + obj).unwrap(),
            });
        }
        let total = (total.unwrap() / calls as f64).unwrap();
        let store = total.backward().unwrap();
        let grads = vars.iter().map(|v| flat(store.get(v).unwrap())).collect();
        (flat(&total)[0] as f64, grads)
    };
    let (obj_multi, g_multi) = run(&multi, 1);
    let (obj_one, g_one) = run(&one, k);
    assert!(
        (obj_multi - obj_one).abs() < 1e-6,
        "{obj_multi} vs {obj_one}"
    );
    for (a, b) in g_multi.iter().flatten().zip(g_one.iter().flatten()) {
        assert!((a - b).abs() <= 1e-6 + 1e-4 * b.abs(), "{a} vs {b}");
    }
    assert!(g_multi.iter().flatten().any(|g| g.abs() > 1e-3));
}

/// The fast path's output, pinned: a short synthetic run per kind (with
/// weight decay, validation, a short last batch) hashed over every row's
/// numbers and the final weights, as bits. A change to the trainer that
/// moves any bit fails here; when the change is meant, bump
/// `TRAINER_REVISION` (stored runs of the old arithmetic are then not
/// reused) and update the digests.
#[test]
fn fast_path_bits_are_pinned() {
    let data = synthetic();
    let mut got = Vec::new();
    for &kind in RegKind::ALL.iter().filter(|k| k.hand_written()) {
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 100,
            ..config(kind, Backward::Auto)
        };
        let out = train(&cfg, 5, &data, 2, &mut ()).unwrap();
        let mut h = Sha256::new();
        for r in &out.rows {
            for v in [
                r.train_loss,
                r.train_acc,
                r.test_loss,
                r.test_acc,
                r.train_eval_acc,
            ] {
                h.update(v.to_bits().to_le_bytes());
            }
            h.update(r.val_loss.unwrap().to_bits().to_le_bytes());
            h.update(r.val_acc.unwrap().to_bits().to_le_bytes());
        }
        for v in out.model.vars() {
            for x in v
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
            {
                h.update(x.to_bits().to_le_bytes());
            }
        }
        got.push((kind, format!("{:x}", h.finalize())[..16].to_string()));
    }
    let pinned = PINNED;
    let mismatched: Vec<String> = got
        .iter()
        .filter(|(k, d)| {
            pinned
                .iter()
                .find(|(pk, _)| pk == &k.to_string())
                .map(|(_, pd)| pd)
                != Some(&d.as_str())
        })
        .map(|(k, d)| format!("(\"{k}\", \"{d}\")"))
        .collect();
    assert!(
        mismatched.is_empty(),
        "the fast path's bits changed (TRAINER_REVISION = {TRAINER_REVISION}). If the change \
         is meant, bump TRAINER_REVISION in src/train/mod.rs and pin the new digests: {}. \
         If the trainer did not change, this CPU ({}) computes other bits than the one the \
         digests were taken on (a 2-core AVX2 AMD EPYC)",
        mismatched.join(", "),
        cpu_features()
    );
}

/// The digests of [`fast_path_bits_are_pinned`], per kind.
const PINNED: &[(&str, &str)] = &[
    ("dropout", "c9d5afe569b7b8e1"),
    ("dropconnect", "017a4ef4e599b832"),
    ("dropconnect-out", "30b837b9cf02dd76"),
    ("gaussian-mult", "34803dd941bf5191"),
    ("gaussian-add", "3c3a1f1d99705396"),
    ("uniform-mult", "72618a044f25200a"),
    ("lognormal-mult", "7ffbbb41f4eb47da"),
    ("annealed-dropout", "120a07093272f4f7"),
    ("curriculum-dropout", "d1c8548632e5439f"),
    ("early-dropout", "aff18363d5fc6f8a"),
    ("dropout-shared", "18400474b377e4eb"),
];

fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let f = [
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
        ];
        f.iter()
            .map(|(n, on)| format!("{n}: {}", if *on { "yes" } else { "no" }))
            .collect::<Vec<_>>()
            .join(", ")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}
