//! One training step's forward and backward pass, written out by hand.
//!
//! Training does not use candle's autograd. For this fixed network the
//! backward pass is a few products, and writing it out skips work autograd
//! cannot know is unneeded: the gradient with respect to the input images (a
//! [batch, 256] x [256, 784] product per step, a quarter of all the
//! arithmetic) and the zero-fill-then-add of its gradient store.
//!
//! With z = x W + b and h = noise(relu(z)) for a hidden layer, and d =
//! dLoss/dz:
//!
//! ```text
//! output layer:  d = (softmax(logits) - onehot(y)) / n
//! every layer:   dW = x^T d  (times the weight mask, if any),  db = 1^T d
//! layer below:   d' = (d W^T) * relu'(z') * m'
//! ```
//!
//! where m' is the layer below's multiplicative noise (additive noise passes
//! the gradient through unchanged). `tests` checks this against autograd for
//! every regulariser kind.
//!
//! On the CPU the batch is processed as two halves whose gradients are
//! summed; a run with two or more threads computes the halves at once, one
//! per thread. The halves are the same whatever the thread count, so a seeded
//! run gives the same numbers with one thread or several. All noise of a step
//! is drawn before the halves start, in the order [`Mlp::trace`] draws it.

use candle_core::{DType, Device, Result, Tensor, D};

use crate::model::{Mlp, WIDTHS};
use crate::regularizers::{ActivationNoise, NoiseCtx};

/// How a step splits its batch.
#[derive(Debug, Clone, Copy)]
pub struct StepPlan {
    /// Process the batch as two halves (what the CPU does; a GPU runs the
    /// whole batch at once).
    pub halves: bool,
    /// Compute the two halves on two threads at once.
    pub parallel: bool,
}

impl StepPlan {
    /// The plan for `dev` when a run has `threads` CPU threads.
    pub fn for_device(dev: &Device, threads: usize) -> Self {
        let halves = dev.is_cpu();
        Self {
            halves,
            parallel: halves && threads >= 2,
        }
    }
}

/// What one training step computes: the batch's logits, its mean
/// cross-entropy (a scalar tensor) and, per layer, the gradients of that loss
/// with respect to the weight and the bias.
#[derive(Debug)]
pub struct StepGrads {
    pub logits: Tensor,
    pub loss: Tensor,
    pub grads: Vec<(Tensor, Tensor)>,
}

/// One layer as this step uses it.
struct StepLayer {
    /// The weights used (masked, if the layer's regulariser masks weights).
    w: Tensor,
    /// That mask; the weight gradient is multiplied by it.
    w_mask: Option<Tensor>,
    b: Tensor,
    /// Noise on the layer's activations (hidden layers only), for the whole batch.
    noise: Option<ActivationNoise>,
    hidden: bool,
}

/// One half's share of the step: logits of its rows, its part of the summed
/// loss, and its part of each layer's (unmasked) weight and bias gradient.
struct Partial {
    logits: Tensor,
    loss: Tensor,
    grads: Vec<(Tensor, Tensor)>,
}

/// The noise of one training step for one layer.
#[derive(Debug)]
pub struct LayerNoise {
    /// The mask multiplying the layer's weight matrix, if any: the layer's
    /// own regulariser's times the previous hidden layer's outgoing mask.
    pub w_mask: Option<Tensor>,
    /// Noise on the layer's activations (hidden layers only), for all `n`
    /// rows of the batch.
    pub noise: Option<ActivationNoise>,
}

/// Draws a step's noise for a batch of `n`, layer by layer, in the order
/// every trainer draws it (own weight mask, the previous layer's outgoing
/// mask, activation noise), so that a seed fixes it whichever trainer runs.
pub fn draw_noise(
    model: &Mlp,
    n: usize,
    dev: &Device,
    ctx: &mut NoiseCtx,
) -> Result<Vec<LayerNoise>> {
    let mut out = Vec::with_capacity(model.layers.len());
    for i in 0..model.layers.len() {
        let shape: candle_core::Shape = (WIDTHS[i], WIDTHS[i + 1]).into();
        let slot = model.slot(i);
        let own = match slot {
            Some(slot) => slot.weight_mask(&shape, dev, ctx)?,
            None => None,
        };
        // The previous hidden layer's regulariser may mask this matrix, the
        // one that consumes its output.
        let from_prev = match i.checked_sub(1).and_then(|j| model.slot(j)) {
            Some(prev) => prev.outgoing_weight_mask(&shape, dev, ctx)?,
            None => None,
        };
        let w_mask = match (own, from_prev) {
            (Some(a), Some(b)) => Some(a.mul(&b)?),
            (a, b) => a.or(b),
        };
        let noise = match slot {
            Some(slot) => slot.activation_noise(&(n, WIDTHS[i + 1]).into(), dev, ctx)?,
            None => None,
        };
        out.push(LayerNoise { w_mask, noise });
    }
    Ok(out)
}

/// Forward pass in training mode and the gradients of the mean cross-entropy
/// of `xs` ([n, 784]) against `targets` (one-hot rows, [n, 10]).
pub fn loss_and_grads(
    model: &Mlp,
    xs: &Tensor,
    targets: &Tensor,
    ctx: &mut NoiseCtx,
    plan: StepPlan,
) -> Result<StepGrads> {
    let n = xs.dim(0)?;
    let drawn = draw_noise(model, n, xs.device(), ctx)?;
    let mut layers = Vec::with_capacity(model.layers.len());
    for ((i, layer), LayerNoise { w_mask, noise }) in model.layers.iter().enumerate().zip(drawn) {
        let w = layer.w.as_tensor().detach();
        layers.push(StepLayer {
            w: match &w_mask {
                Some(m) => w.mul(m)?,
                None => w,
            },
            w_mask,
            b: layer.b.as_tensor().detach(),
            noise,
            hidden: model.slot(i).is_some(),
        });
    }
    let half = if plan.halves { n.div_ceil(2) } else { n };
    let parts = if half == n {
        vec![partial(&layers, xs, targets, 0, n, n)?]
    } else {
        let first = || partial(&layers, xs, targets, 0, half, n);
        let second = || partial(&layers, xs, targets, half, n - half, n);
        if plan.parallel {
            let (a, b) = std::thread::scope(|s| {
                let b = s.spawn(second);
                let a = first();
                (a, b.join().expect("a training thread panicked"))
            });
            vec![a?, b?]
        } else {
            vec![first()?, second()?]
        }
    };
    // Sum the halves, first + second.
    let mut parts = parts.into_iter();
    let first = parts.next().expect("at least one part");
    let (mut logits, mut loss, mut grads) = (vec![first.logits], first.loss, first.grads);
    for p in parts {
        loss = (loss + p.loss)?;
        for ((gw, gb), (pw, pb)) in grads.iter_mut().zip(p.grads) {
            *gw = (&*gw + pw)?;
            *gb = (&*gb + pb)?;
        }
        logits.push(p.logits);
    }
    for ((gw, _), layer) in grads.iter_mut().zip(&layers) {
        if let Some(m) = &layer.w_mask {
            *gw = gw.mul(m)?;
        }
    }
    Ok(StepGrads {
        logits: Tensor::cat(&logits, 0)?,
        loss,
        grads,
    })
}

/// The step for rows `start..start + len` of a batch of `n`.
fn partial(
    layers: &[StepLayer],
    xs: &Tensor,
    targets: &Tensor,
    start: usize,
    len: usize,
    n: usize,
) -> Result<Partial> {
    let rows = |t: &Tensor| t.narrow(0, start, len);
    // Per layer: its input, and for hidden layers relu'(z) * m.
    let mut inputs = Vec::with_capacity(layers.len());
    let mut gates = Vec::with_capacity(layers.len());
    let mut h = rows(xs)?;
    for layer in layers {
        let z = h.matmul(&layer.w)?.broadcast_add(&layer.b)?;
        inputs.push(h);
        if !layer.hidden {
            h = z;
            break;
        }
        let relu = z.relu()?;
        let on = relu.sign()?; // relu'(z)
        let (out, gate) = match &layer.noise {
            None => (relu, on),
            Some(ActivationNoise::Scale(m)) => {
                let m = rows(m)?;
                (relu.mul(&m)?, on.mul(&m)?)
            }
            Some(ActivationNoise::Shift(a)) => (relu.add(&rows(a)?)?, on),
        };
        gates.push(gate);
        h = out;
    }
    let logits = h;
    let y = rows(targets)?;
    let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let scale = 1.0 / n as f64;
    let loss = (y.mul(&log_p)?.sum_all()? * -scale)?;
    let mut d = ((log_p.exp()? - y)? * scale)?;
    // Bias gradients as 1^T d: a product, much faster than candle's sum over
    // the batch dimension.
    let ones = Tensor::ones((1, len), DType::F32, d.device())?;
    let mut grads = Vec::with_capacity(layers.len());
    for i in (0..layers.len()).rev() {
        grads.push((inputs[i].t()?.matmul(&d)?, ones.matmul(&d)?.squeeze(0)?));
        if i > 0 {
            d = d.matmul(&layers[i].w.t()?)?.mul(&gates[i - 1])?;
        }
    }
    grads.reverse();
    Ok(Partial {
        logits,
        loss,
        grads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regularizers::RegKind;
    use crate::rng::{Rng, Stream};
    use candle_core::Var;

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
        let slots = vec![kind.with(p).build(), kind.with(p).build()];
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

    /// The hand-written backward pass equals candle's autograd through the
    /// same forward pass with the same noise, for every regulariser kind, an
    /// odd batch (unequal halves), with and without halves.
    #[test]
    fn gradients_match_autograd() {
        let (xs, ys, targets) = batch(7);
        for &kind in RegKind::ALL {
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
                let mut rng = Rng::new(9, Stream::Noise);
                let step = loss_and_grads(&m, &xs, &targets, &mut ctx(&mut rng), plan).unwrap();
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
                close(&[step.loss.to_scalar().unwrap()], &[l], "loss");
                close(&flat(&step.logits), &flat(&logits), "logits");
                for (i, (layer, (gw, gb))) in m.layers.iter().zip(&step.grads).enumerate() {
                    let want = |v: &Var| flat(auto.get(v).unwrap());
                    close(&flat(gw), &want(&layer.w), &format!("dW{i}"));
                    close(&flat(gb), &want(&layer.b), &format!("db{i}"));
                }
            }
        }
    }

    /// Computing the halves on two threads gives the same bits as one after
    /// the other.
    #[test]
    fn parallel_halves_are_bit_identical() {
        let (xs, _, targets) = batch(9);
        let m = model(RegKind::Dropout, 0.5);
        let run = |parallel| {
            let mut rng = Rng::new(3, Stream::Noise);
            let plan = StepPlan {
                halves: true,
                parallel,
            };
            let s = loss_and_grads(&m, &xs, &targets, &mut ctx(&mut rng), plan).unwrap();
            let mut all = vec![flat(&s.loss), flat(&s.logits)];
            for (gw, gb) in &s.grads {
                all.push(flat(gw));
                all.push(flat(gb));
            }
            all
        };
        assert_eq!(run(false), run(true));
    }

    /// A batch of one cannot be halved; it is processed whole.
    #[test]
    fn batch_of_one() {
        let (xs, _, targets) = batch(1);
        let m = model(RegKind::Dropout, 0.2);
        let mut rng = Rng::new(3, Stream::Noise);
        let plan = StepPlan {
            halves: true,
            parallel: true,
        };
        let s = loss_and_grads(&m, &xs, &targets, &mut ctx(&mut rng), plan).unwrap();
        assert_eq!(s.logits.dims(), &[1, 10]);
        assert!(s.loss.to_scalar::<f32>().unwrap().is_finite());
    }
}
