//! The book's MLP: 784 -> 256 -> ReLU -> slot -> 256 -> ReLU -> slot -> 10.
//!
//! Initialisation follows the book's concise implementation: weights are drawn
//! from N(0, 0.01^2); biases keep PyTorch's default U(-1/sqrt(fan_in),
//! 1/sqrt(fan_in)) because the book re-initialises only the weights. Weights
//! are stored as [fan_in, fan_out] so a layer is `xs.matmul(w) + b`.
//!
//! After each hidden layer sits a regulariser slot ([`Regularizer`]); it is
//! consulted only when `train` is true, so evaluation is deterministic.
//!
//! The forward pass is written once, for a stack of R networks of this shape
//! ([`forward`]: weights [R, in, out], one shared input batch): training
//! stacks runs ([`crate::train`]) and [`Mlp::trace`] is the stack of one.
//! Training differentiates it by hand, in `crate::train`.

use candle_core::{Device, Result, Shape, Tensor, Var};

use crate::regularizers::{ActivationNoise, LayerView, Learned, NoiseCtx, Regularizer};
use crate::rng::Rng;

/// Layer widths of the book's model.
pub const WIDTHS: [usize; 4] = [784, 256, 256, 10];
/// Standard deviation of the book's weight initialisation.
const INIT_SD: f32 = 0.01;

#[derive(Debug)]
pub struct Linear {
    pub w: Var,
    pub b: Var,
}

impl Linear {
    /// A layer initialised as the book does, drawing from `rng`.
    fn new(fan_in: usize, fan_out: usize, rng: &mut Rng, dev: &Device) -> Result<Self> {
        let mut w = vec![0f32; fan_in * fan_out];
        rng.fill_normal(&mut w);
        w.iter_mut().for_each(|x| *x *= INIT_SD);
        let bound = 1.0 / (fan_in as f32).sqrt();
        let mut b = vec![0f32; fan_out];
        rng.fill_uniform(&mut b);
        b.iter_mut().for_each(|x| *x = (2.0 * *x - 1.0) * bound);
        Ok(Self {
            w: Var::from_tensor(&Tensor::from_vec(w, (fan_in, fan_out), dev)?)?,
            b: Var::from_tensor(&Tensor::from_vec(b, fan_out, dev)?)?,
        })
    }
}

/// The activations of one forward pass, for probes (exercise 3).
#[derive(Debug)]
pub struct Trace {
    /// Per hidden layer: ReLU output before the regulariser.
    pub relu: Vec<Tensor>,
    /// Per hidden layer: output of the regulariser (equal to `relu` in eval mode).
    pub after: Vec<Tensor>,
    logits: Tensor,
}

/// The noise of one training step for one layer of one network.
#[derive(Debug)]
pub struct LayerNoise {
    /// The mask multiplying the layer's weight matrix, if any: the layer's
    /// own regulariser's times the previous hidden layer's outgoing mask.
    pub w_mask: Option<Tensor>,
    /// Noise on the layer's activations (hidden layers only), for all `n`
    /// rows of the batch.
    pub noise: Option<ActivationNoise>,
}

/// One layer of a stack of R networks, as a pass uses it.
#[derive(Debug, Clone)]
pub struct StackLayer {
    /// Weights [R, in, out] (masked, if this step masks them).
    pub w: Tensor,
    /// Biases [R, 1, out].
    pub b: Tensor,
    /// Noise on the layer's activations, [R, n, out] (hidden layers only):
    /// `h' = relu(z) * scale + shift`; a network without noise has ones in
    /// `scale` and zeros in `shift`.
    pub scale: Option<Tensor>,
    pub shift: Option<Tensor>,
}

/// What a forward pass computed, per layer of the stack.
#[derive(Debug)]
pub struct Pass {
    /// Each layer's input: the shared batch [n, 784] for the first, then
    /// [R, n, 256].
    pub inputs: Vec<Tensor>,
    /// Per hidden layer, relu'(z) times the noise's scale (the factor the
    /// backward pass multiplies by); empty unless asked for.
    pub gates: Vec<Tensor>,
    /// Per hidden layer, the ReLU output before the noise.
    relu: Vec<Tensor>,
    /// Logits, [R, n, 10].
    pub logits: Tensor,
}

/// The regularisers' own operations, for a pass through one network (a
/// stack of one): (b) to (e) of [`crate::regularizers`], drawing from `ctx`.
pub struct Hooks<'h, 'c> {
    /// The regulariser after each hidden layer.
    pub slots: Vec<&'h dyn Regularizer>,
    pub ctx: &'h mut NoiseCtx<'c>,
}

/// The forward pass of a stack of networks on one batch `x` ([n, 784],
/// shared by every network of the stack): z = h W + b, and after each hidden
/// layer h = relu(z) * scale + shift. The products are batched over the
/// stack, each network's its own product. With `hooks` (a stack of one),
/// each hidden layer's regulariser may replace z and transform h.
pub fn forward(
    layers: &[StackLayer],
    x: &Tensor,
    gates: bool,
    mut hooks: Option<Hooks>,
) -> Result<Pass> {
    let r = layers[0].w.dim(0)?;
    // Without hooks nothing differentiates this pass through autograd: the
    // products need not be tracked.
    let tracked = hooks.is_some();
    // z = h W + b; the first input is shared: a stride-0 view, not R copies.
    let affine = |h: &Tensor, layer: &StackLayer| -> Result<Tensor> {
        let lhs = match h.rank() {
            2 => h.broadcast_as((r, h.dim(0)?, h.dim(1)?))?,
            _ => h.clone(),
        };
        let z = match tracked {
            true => lhs.matmul(&layer.w)?,
            false => crate::product::product(&lhs, &layer.w)?,
        };
        z.broadcast_add(&layer.b)
    };
    let (last, hidden) = layers.split_last().expect("a network has layers");
    let mut inputs = Vec::with_capacity(layers.len());
    let (mut gate_list, mut relu_list) = (Vec::new(), Vec::new());
    let mut h = x.clone();
    for (i, layer) in hidden.iter().enumerate() {
        let replaced = match hooks.as_mut() {
            Some(hk) => {
                let xs = match h.rank() {
                    3 => h.squeeze(0)?,
                    _ => h.clone(),
                };
                let w = layer.w.squeeze(0)?;
                let view = LayerView {
                    xs: &xs,
                    w: &w,
                    b: &layer.b.squeeze(0)?,
                };
                hk.slots[i].pre_activations(&view, hk.ctx)?
            }
            None => None,
        };
        let z = match replaced {
            Some(z) => z.unsqueeze(0)?,
            None => affine(&h, layer)?,
        };
        inputs.push(h);
        let relu = z.relu()?;
        let mut out = relu.clone();
        if gates {
            let mut gate = relu.sign()?; // relu'(z)
            if let Some(m) = &layer.scale {
                gate = gate.mul(m)?;
            }
            gate_list.push(gate);
        }
        if let Some(m) = &layer.scale {
            out = out.mul(m)?;
        }
        if let Some(a) = &layer.shift {
            out = out.add(a)?;
        }
        if let Some(hk) = hooks.as_mut() {
            out = hk.slots[i]
                .transform(&out.squeeze(0)?, hk.ctx)?
                .unsqueeze(0)?;
        }
        relu_list.push(relu);
        h = out;
    }
    let logits = affine(&h, last)?;
    inputs.push(h);
    Ok(Pass {
        inputs,
        gates: gate_list,
        relu: relu_list,
        logits,
    })
}

#[derive(Debug)]
pub struct Mlp {
    pub layers: Vec<Linear>,
    slots: Vec<Box<dyn Regularizer>>,
}

impl Mlp {
    /// The book's model with one regulariser per hidden layer. All random
    /// numbers come from `init_rng`, so the initial weights depend only on it.
    pub fn new(slots: Vec<Box<dyn Regularizer>>, init_rng: &mut Rng, dev: &Device) -> Result<Self> {
        assert_eq!(
            slots.len(),
            WIDTHS.len() - 2,
            "one regulariser per hidden layer"
        );
        let layers = WIDTHS
            .windows(2)
            .map(|w| Linear::new(w[0], w[1], init_rng, dev))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers, slots })
    }

    /// The regulariser after hidden layer `i` (`None` for the output layer).
    fn slot(&self, i: usize) -> Option<&dyn Regularizer> {
        self.slots.get(i).map(|s| s.as_ref())
    }

    /// All trainable variables, weights and biases.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.layers.iter().flat_map(|l| [&l.w, &l.b])
    }

    /// Draws a step's noise for a batch of `n`, layer by layer: the layer's
    /// own weight mask, the previous hidden layer's mask on this layer's
    /// weights, then the noise on its activations. Every pass draws in this
    /// order, so a seed fixes the noise whoever draws it.
    pub fn draw_noise(
        &self,
        n: usize,
        dev: &Device,
        ctx: &mut NoiseCtx,
    ) -> Result<Vec<LayerNoise>> {
        let mut out = Vec::with_capacity(self.layers.len());
        for i in 0..self.layers.len() {
            let shape: Shape = (WIDTHS[i], WIDTHS[i + 1]).into();
            let own = match self.slot(i) {
                Some(slot) => slot.weight_mask(&shape, dev, ctx)?,
                None => None,
            };
            // The previous hidden layer's regulariser may mask this matrix,
            // the one that consumes its output.
            let from_prev = match i.checked_sub(1).and_then(|j| self.slot(j)) {
                Some(prev) => prev.outgoing_weight_mask(&shape, dev, ctx)?,
                None => None,
            };
            let w_mask = match (own, from_prev) {
                (Some(a), Some(b)) => Some(a.mul(&b)?),
                (a, b) => a.or(b),
            };
            let noise = match self.slot(i) {
                Some(slot) => slot.activation_noise(&(n, WIDTHS[i + 1]).into(), dev, ctx)?,
                None => None,
            };
            out.push(LayerNoise { w_mask, noise });
        }
        Ok(out)
    }

    /// The regulariser after each hidden layer.
    pub fn slots(&self) -> Vec<&dyn Regularizer> {
        self.slots.iter().map(|s| s.as_ref()).collect()
    }

    /// The stochastic passes a training step needs: the most any
    /// regulariser asks for.
    pub fn passes(&self) -> usize {
        self.slots.iter().map(|s| s.passes()).max().unwrap_or(1)
    }

    /// Every parameter the regularisers learn.
    pub fn learned(&self) -> Vec<Learned<'_>> {
        self.slots.iter().flat_map(|s| s.learned()).collect()
    }

    /// This network as a stack of one, with `noise` (one entry per layer)
    /// applied, or none.
    fn as_stack(&self, noise: Option<&[LayerNoise]>) -> Result<Vec<StackLayer>> {
        let params: Vec<(Tensor, Tensor)> = self
            .layers
            .iter()
            .map(|l| (l.w.as_tensor().clone(), l.b.as_tensor().clone()))
            .collect();
        stack_of_one(&params, noise)
    }

    /// Logits for `xs` ([n, 784]); the regularisers act only when `train`.
    pub fn forward_t(&self, xs: &Tensor, train: bool, ctx: &mut NoiseCtx) -> Result<Tensor> {
        Ok(self.trace(xs, train, ctx)?.logits)
    }

    /// The forward pass, keeping every hidden activation.
    pub fn trace(&self, xs: &Tensor, train: bool, ctx: &mut NoiseCtx) -> Result<Trace> {
        let noise = match train {
            true => Some(self.draw_noise(xs.dim(0)?, xs.device(), ctx)?),
            false => None,
        };
        let slots = self.slots();
        let hooks = match train {
            true => Some(Hooks { slots, ctx }),
            false => None,
        };
        let pass = forward(&self.as_stack(noise.as_deref())?, xs, false, hooks)?;
        let (mut relu, mut after) = (Vec::new(), Vec::new());
        for (r, h) in pass.relu.iter().zip(&pass.inputs[1..]) {
            relu.push(r.squeeze(0)?);
            after.push(h.squeeze(0)?);
        }
        Ok(Trace {
            relu,
            after,
            logits: pass.logits.squeeze(0)?,
        })
    }
}

/// One network's parameters (per layer: weights [in, out], bias [out] or
/// [1, out]) as a stack of one, with `noise` (one entry per layer) applied,
/// or none.
pub fn stack_of_one(
    params: &[(Tensor, Tensor)],
    noise: Option<&[LayerNoise]>,
) -> Result<Vec<StackLayer>> {
    let mut out = Vec::with_capacity(params.len());
    for (i, (w, b)) in params.iter().enumerate() {
        let mut w = w.clone();
        let (mut scale, mut shift) = (None, None);
        if let Some(n) = noise.map(|n| &n[i]) {
            if let Some(m) = &n.w_mask {
                w = w.mul(m)?;
            }
            match &n.noise {
                Some(ActivationNoise::Scale(m)) => scale = Some(m.unsqueeze(0)?),
                Some(ActivationNoise::Shift(a)) => shift = Some(a.unsqueeze(0)?),
                None => {}
            }
        }
        out.push(StackLayer {
            w: w.unsqueeze(0)?,
            b: b.reshape((1, 1, b.elem_count()))?,
            scale,
            shift,
        });
    }
    Ok(out)
}
