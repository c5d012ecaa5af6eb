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
//! Training differentiates this network by hand, in [`crate::step`].

use candle_core::{Device, Result, Tensor, Var};

use crate::regularizers::{NoiseCtx, Regularizer};
use crate::rng::Rng;

/// Layer widths of the book's model.
pub const WIDTHS: [usize; 4] = [784, 256, 256, 10];
/// Standard deviation of the book's weight initialisation.
pub const INIT_SD: f32 = 0.01;

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

    fn forward(&self, xs: &Tensor, w: &Tensor) -> Result<Tensor> {
        xs.matmul(w)?.broadcast_add(self.b.as_tensor())
    }
}

/// The activations of one forward pass, for probes (exercise 3).
#[derive(Debug)]
pub struct Trace {
    /// Per hidden layer: ReLU output before the regulariser.
    pub relu: Vec<Tensor>,
    /// Per hidden layer: output of the regulariser (equal to `relu` in eval mode).
    pub after: Vec<Tensor>,
    pub logits: Tensor,
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
    pub fn slot(&self, i: usize) -> Option<&dyn Regularizer> {
        self.slots.get(i).map(|s| s.as_ref())
    }

    /// All trainable variables, weights and biases.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.layers.iter().flat_map(|l| [&l.w, &l.b])
    }

    /// Logits for `xs` ([n, 784]); the regularisers act only when `train`.
    pub fn forward_t(&self, xs: &Tensor, train: bool, ctx: &mut NoiseCtx) -> Result<Tensor> {
        Ok(self.trace(xs, train, ctx)?.logits)
    }

    /// The forward pass, keeping every hidden activation.
    pub fn trace(&self, xs: &Tensor, train: bool, ctx: &mut NoiseCtx) -> Result<Trace> {
        let (mut relu, mut after) = (Vec::new(), Vec::new());
        let mut h = xs.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            // The output layer (i = 2) has no slot.
            let hidden = self.slots.get(i);
            let mut w = match (hidden, train) {
                (Some(slot), true) => slot.weights(layer.w.as_tensor(), ctx)?,
                _ => layer.w.as_tensor().clone(),
            };
            // The previous hidden layer's regulariser may mask this matrix,
            // the one that consumes its output (same draw order as training).
            if let (Some(prev), true) = (i.checked_sub(1).and_then(|j| self.slots.get(j)), train) {
                w = prev.outgoing_weights(&w, ctx)?;
            }
            let z = layer.forward(&h, &w)?;
            match hidden {
                None => {
                    return Ok(Trace {
                        relu,
                        after,
                        logits: z,
                    })
                }
                Some(slot) => {
                    let r = z.relu()?;
                    h = if train {
                        slot.activations(&r, ctx)?
                    } else {
                        r.clone()
                    };
                    relu.push(r);
                    after.push(h.clone());
                }
            }
        }
        unreachable!("the last layer returns")
    }
}
