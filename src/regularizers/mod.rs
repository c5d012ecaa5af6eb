//! Regularisers that plug into the model's slot after each hidden layer.
//!
//! Each is one small type implementing [`Regularizer`], in training mode
//! only; in evaluation mode the model never calls it. The model holds a
//! `Box<dyn Regularizer>` per hidden layer and does not know which kind it
//! was given. A regulariser may
//!
//! - (a) state scale or shift noise on the activations and masks on the
//!   weights, which both gradient paths train (the hand-written backward of
//!   `crate::train` differentiates through them);
//! - (b) replace its layer's pre-activations or transform its activations
//!   with candle operations ([`Regularizer::pre_activations`],
//!   [`Regularizer::transform`]);
//! - (c) ask for several stochastic passes and add a loss term over their
//!   logits ([`Regularizer::passes`], [`Regularizer::pass_loss`]);
//! - (d) own learned parameters with their own learning rate and a penalty
//!   ([`Regularizer::learned`], [`Regularizer::penalty`]);
//! - (e) put noise on the weights per example, through (b).
//!
//! (b) to (e) are trained through candle's autograd only; a kind says
//! whether the hand-written backward covers it ([`Reg::hand_written`]).
//!
//! Every random number comes from the [`NoiseCtx`]'s seeded generator: masks
//! and noise are drawn on the host in bulk and uploaded as one tensor.

mod example_masks;
mod kind;

pub use dropout::Dropout;
pub use kind::{KindSpec, Param, Reg, MAX_PARAMS};

/// Declares the kinds' modules and [`RegKind`], in registry order, from one
/// `module => Variant` line per kind; each module holds its kind's
/// [`KindSpec`] as `SPEC`.
macro_rules! registry {
    ($($module:ident => $variant:ident,)*) => {
        $(pub mod $module;)*

        /// The kinds of regulariser, by name (`--reg`, the `kinds` of
        /// exercise 7), in registry order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RegKind {
            $($variant,)*
        }

        impl RegKind {
            pub const ALL: &'static [RegKind] = &[$(RegKind::$variant,)*];

            /// What the kind's file declares of it.
            pub fn spec(self) -> &'static KindSpec {
                match self {
                    $(RegKind::$variant => &$module::SPEC,)*
                }
            }
        }
    };
}

// The registry: a new kind is a file under this folder and one line here,
// appended (a kind's place sets its colour in the figures).
registry! {
    dropout => Dropout,
    dropconnect => Dropconnect,
    dropconnect_out => DropconnectOut,
    gaussian_mult => GaussianMult,
    gaussian_add => GaussianAdd,
    uniform_mult => UniformMult,
    lognormal_mult => LognormalMult,
    annealed_dropout => AnnealedDropout,
    concrete => ConcreteDropout,
    rdrop => RDrop,
    dropconnect_gauss => DropconnectGauss,
    multisample_dropout => MultisampleDropout,
    curriculum_dropout => CurriculumDropout,
    early_dropout => EarlyDropout,
    variational_dropout => VariationalDropout,
    dropconnect_example => DropconnectExample,
    dropout_shared => DropoutShared,
}

use std::fmt;

use candle_core::{Device, Result, Shape, Tensor, Var};

use crate::rng::Rng;

/// What a regulariser sees besides its input: the run's noise stream and how
/// far training has progressed.
pub struct NoiseCtx<'a> {
    pub rng: &'a mut Rng,
    /// Fraction of training done, in [0, 1] (for schedules).
    pub progress: f64,
}

/// The noise a regulariser puts on a layer's activations in one training step.
/// Training differentiates through it by hand (see `crate::train`), so
/// a regulariser states its noise instead of applying it.
#[derive(Debug, Clone)]
pub enum ActivationNoise {
    /// `h' = h * m`, elementwise.
    Scale(Tensor),
    /// `h' = h + a`, elementwise.
    Shift(Tensor),
}

impl ActivationNoise {
    /// `wrap(f(e))`, e ~ N(0, 1) drawn per element of `shape` from the
    /// context's generator (`wrap`: [`ActivationNoise::Scale`] or `Shift`).
    pub(crate) fn normal(
        shape: &Shape,
        dev: &Device,
        ctx: &mut NoiseCtx,
        wrap: fn(Tensor) -> Self,
        f: impl Fn(f32) -> f32,
    ) -> Result<Option<Self>> {
        Ok(Some(wrap(normals(ctx.rng, shape, dev, f)?)))
    }

    /// `wrap(f(u))`, u ~ U(0, 1) per element.
    pub(crate) fn uniform(
        shape: &Shape,
        dev: &Device,
        ctx: &mut NoiseCtx,
        wrap: fn(Tensor) -> Self,
        f: impl Fn(f32) -> f32,
    ) -> Result<Option<Self>> {
        Ok(Some(wrap(host_noise(ctx.rng, shape, dev, f)?)))
    }
}

/// What the autograd hooks of a hidden layer's regulariser see of the
/// layer: its input, weights (masked, if the step masks them) and bias.
pub struct LayerView<'a> {
    /// The layer's input, [n, in].
    pub xs: &'a Tensor,
    /// The weights, [in, out].
    pub w: &'a Tensor,
    /// The bias, [1, out].
    pub b: &'a Tensor,
}

/// A parameter a regulariser learns, stepped by plain SGD at `lr` (the
/// run's own learning rate when `None`), never decayed.
pub struct Learned<'a> {
    pub var: &'a Var,
    pub lr: Option<f64>,
}

/// A training-time transformation of one hidden layer: noise on its
/// activations (after the ReLU), a multiplicative mask on its weight matrix,
/// or both, and the autograd-only hooks (b) to (e) of the module's header.
/// Each call draws fresh noise from the context's generator; `None` leaves
/// the layer alone and draws nothing.
pub trait Regularizer: Send + Sync + fmt::Debug {
    /// Noise for activations of `shape`. Default: none.
    fn activation_noise(
        &self,
        _shape: &Shape,
        _dev: &Device,
        _ctx: &mut NoiseCtx,
    ) -> Result<Option<ActivationNoise>> {
        Ok(None)
    }
    /// Mask multiplying the weight matrix (of `shape`) elementwise. Default: none.
    fn weight_mask(
        &self,
        _shape: &Shape,
        _dev: &Device,
        _ctx: &mut NoiseCtx,
    ) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// Mask multiplying the weight matrix of the *next* layer (of `shape`,
    /// the matrix that consumes this hidden layer) elementwise. Default: none.
    fn outgoing_weight_mask(
        &self,
        _shape: &Shape,
        _dev: &Device,
        _ctx: &mut NoiseCtx,
    ) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// (b, e) The layer's pre-activations in place of `xs W + b` (for
    /// per-example weight noise, local reparameterisation). Default: `None`,
    /// the plain product.
    fn pre_activations(&self, _layer: &LayerView, _ctx: &mut NoiseCtx) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// (b) The activations `h` (after the ReLU and any stated noise),
    /// transformed. Default: unchanged.
    fn transform(&self, h: &Tensor, _ctx: &mut NoiseCtx) -> Result<Tensor> {
        Ok(h.clone())
    }
    /// (c) The stochastic forward passes a step needs (each with its own
    /// noise). Default: 1.
    fn passes(&self) -> usize {
        1
    }
    /// (c) A loss term over the passes' logits ([n, 10] each), added to the
    /// mean of their cross-entropies. Default: none.
    fn pass_loss(&self, _logits: &[Tensor]) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// (d) The parameters this regulariser learns. Default: none.
    fn learned(&self) -> Vec<Learned<'_>> {
        Vec::new()
    }
    /// (d) A penalty added to the loss, given the weights that produce the
    /// layer (`w`, [in, out]) and that consume it (`next_w`, [out, next]),
    /// and the number of training examples. Default: none.
    fn penalty(&self, _w: &Tensor, _next_w: &Tensor, _n_train: usize) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// `xs` with fresh activation noise applied (for tests of a kind's
    /// noise; training applies it in [`crate::model::forward`]).
    #[cfg(test)]
    fn activations(&self, xs: &Tensor, ctx: &mut NoiseCtx) -> Result<Tensor> {
        match self.activation_noise(xs.shape(), xs.device(), ctx)? {
            Some(ActivationNoise::Scale(m)) => xs.mul(&m),
            Some(ActivationNoise::Shift(a)) => xs.add(&a),
            None => Ok(xs.clone()),
        }
    }
    /// `w` with a fresh weight mask applied (for tests, as above).
    #[cfg(test)]
    fn weights(&self, w: &Tensor, ctx: &mut NoiseCtx) -> Result<Tensor> {
        match self.weight_mask(w.shape(), w.device(), ctx)? {
            Some(mask) => w.mul(&mask),
            None => Ok(w.clone()),
        }
    }
}

/// The identity: no regularisation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity;

impl Regularizer for Identity {}

/// Every kind, a paragraph each: its name, the gradient paths that train
/// it, its parameters with their defaults (as a settings file writes them),
/// its formula and its source.
pub fn kinds_table() -> String {
    let mut out = String::new();
    for &kind in RegKind::ALL {
        let (formula, source) = kind.summary();
        let paths = match kind.hand_written() {
            true => "hand-written backward and autograd",
            false => "autograd only",
        };
        out.push_str(&format!(
            "{kind}\n  {formula}\n  parameters: {}; trained by: {paths}\n  source: {source}\n",
            kind.spec().params_line()
        ));
    }
    out
}

/// Draws a host buffer of `shape` uniforms, maps each through `f` and uploads
/// the result to `dev` as one tensor.
pub(crate) fn host_noise(
    rng: &mut Rng,
    shape: &Shape,
    dev: &Device,
    f: impl Fn(f32) -> f32,
) -> Result<Tensor> {
    let mut buf = vec![0f32; shape.elem_count()];
    rng.fill_uniform(&mut buf);
    for x in buf.iter_mut() {
        *x = f(*x);
    }
    Tensor::from_vec(buf, shape, dev)
}

/// Draws a host buffer of `shape` standard normals, maps each through `f`
/// and uploads the result to `dev` as one tensor.
pub(crate) fn normals(
    rng: &mut Rng,
    shape: &Shape,
    dev: &Device,
    f: impl Fn(f32) -> f32,
) -> Result<Tensor> {
    let mut buf = vec![0f32; shape.elem_count()];
    rng.fill_normal(&mut buf);
    for x in buf.iter_mut() {
        *x = f(*x);
    }
    Tensor::from_vec(buf, shape, dev)
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use crate::rng::{Rng, Stream};

    /// Applies `reg` to a large tensor of ones*`h` and returns (mean, variance) of the output.
    pub fn moments(reg: &dyn Regularizer, h: f32, n: usize) -> (f64, f64) {
        let xs = Tensor::full(h, (n / 1000, 1000), &Device::Cpu).unwrap();
        let mut rng = Rng::new(42, Stream::Noise);
        let mut ctx = NoiseCtx {
            rng: &mut rng,
            progress: 0.5,
        };
        let out = reg.activations(&xs, &mut ctx).unwrap();
        let v: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        (mean, var)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `drop-exp kinds` lists every kind once, with its path, and its own
    /// parameters with their defaults.
    #[test]
    fn kinds_table_lists_every_kind_with_its_path() {
        let table = kinds_table();
        let lines: Vec<&str> = table.lines().collect();
        for &kind in RegKind::ALL {
            let name = kind.to_string();
            let at: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == name).collect();
            assert_eq!(at.len(), 1, "{kind}");
            let path = lines[at[0] + 2];
            assert_eq!(
                path.contains("autograd only"),
                !kind.hand_written(),
                "{kind}: {path}"
            );
        }
        assert!(table.contains("temperature (default 0.1)"));
        assert!(table.contains("alpha (default 1.0)"));
    }
}
