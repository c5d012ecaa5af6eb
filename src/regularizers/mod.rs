//! Regularisers that plug into the model's slot after each hidden layer.
//!
//! Each is one small type implementing [`Regularizer`]. It may transform the
//! layer's activations, its weight matrix, or both, in training mode only; in
//! evaluation mode the model never calls it. The model holds a
//! `Box<dyn Regularizer>` per hidden layer and does not know which kind it
//! was given.
//!
//! Every random number comes from the [`NoiseCtx`]'s seeded generator: masks
//! and noise are drawn on the host in bulk and uploaded as one tensor.

mod dropconnect;
mod dropout;
mod noise;

pub use dropconnect::{DropConnect, DropConnectOut};
pub use dropout::Dropout;
pub use noise::{AnnealedDropout, GaussianAdd, GaussianMult, LogNormalMult, UniformMult};

use std::fmt;
use std::str::FromStr;

use candle_core::{Device, Result, Shape, Tensor};
use serde::{Deserialize, Serialize};

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

/// A training-time transformation of one hidden layer: noise on its
/// activations (after the ReLU), a multiplicative mask on its weight matrix,
/// or both. Each call draws fresh noise from the context's generator; `None`
/// leaves the layer alone and draws nothing.
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
struct Identity;

impl Regularizer for Identity {}

/// The regulariser of one hidden layer: its kind and that kind's own
/// parameters, as written in settings files
/// (`{ kind = "dropout", p = 0.2 }`) and stored with every run. Strength 0
/// means no regularisation, whatever the kind. A new kind is one variant
/// here, one in [`RegKind`] and a file of its own.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Reg {
    /// Inverted Bernoulli dropout on activations; `p` is the drop probability.
    Dropout { p: f64 },
    /// Bernoulli masks on the weights that produce the hidden layer (W1
    /// after layer 1, W2 after layer 2), one per mini-batch; `p` is the drop
    /// probability.
    Dropconnect { p: f64 },
    /// Bernoulli masks on the weights that consume the hidden layer (W2
    /// after layer 1, W3 after layer 2: the rows dropout zeroes as whole
    /// rows), one per mini-batch.
    DropconnectOut { p: f64 },
    /// Multiplicative Gaussian noise with dropout's variance at rate `p`.
    GaussianMult { p: f64 },
    /// Additive Gaussian noise with standard deviation `p`.
    GaussianAdd { p: f64 },
    /// Multiplicative uniform noise with dropout's variance at rate `p`
    /// (non-negative only up to p = 0.25, so limited to it).
    UniformMult { p: f64 },
    /// Multiplicative log-normal noise with dropout's mean and variance at
    /// rate `p` (non-negative at every rate).
    LognormalMult { p: f64 },
    /// Dropout whose rate falls linearly from `p` to 0 over training.
    AnnealedDropout { p: f64 },
}

impl Reg {
    /// The kind, without its parameters.
    pub fn kind(&self) -> RegKind {
        match self {
            Reg::Dropout { .. } => RegKind::Dropout,
            Reg::Dropconnect { .. } => RegKind::Dropconnect,
            Reg::DropconnectOut { .. } => RegKind::DropconnectOut,
            Reg::GaussianMult { .. } => RegKind::GaussianMult,
            Reg::GaussianAdd { .. } => RegKind::GaussianAdd,
            Reg::UniformMult { .. } => RegKind::UniformMult,
            Reg::LognormalMult { .. } => RegKind::LognormalMult,
            Reg::AnnealedDropout { .. } => RegKind::AnnealedDropout,
        }
    }

    /// The strength parameter `p` (every current kind has exactly one).
    pub fn p(&self) -> f64 {
        match *self {
            Reg::Dropout { p }
            | Reg::Dropconnect { p }
            | Reg::DropconnectOut { p }
            | Reg::GaussianMult { p }
            | Reg::GaussianAdd { p }
            | Reg::UniformMult { p }
            | Reg::LognormalMult { p }
            | Reg::AnnealedDropout { p } => p,
        }
    }

    /// Checks the parameters; the message names the value and the range.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let p = self.p();
        if !(0.0..=1.0).contains(&p) {
            return Err(format!("p = {p} is outside [0, 1]"));
        }
        if let Reg::UniformMult { .. } = self {
            if p > UniformMult::MAX_P {
                return Err(format!(
                    "uniform-mult p = {p}: a uniform multiplier with dropout's variance p/(1-p) takes \
                     negative values above p = {}; use lognormal-mult (non-negative at every rate)",
                    UniformMult::MAX_P
                ));
            }
        }
        if p == 1.0 && matches!(self, Reg::GaussianMult { .. } | Reg::LognormalMult { .. }) {
            return Err(format!(
                "p = 1 is not allowed for {} (its noise variance p/(1-p) is infinite); use a value below 1",
                self.kind()
            ));
        }
        Ok(())
    }

    /// Builds the regulariser (parameters already validated).
    pub fn build(&self) -> Box<dyn Regularizer> {
        let p = self.p();
        if p == 0.0 {
            return Box::new(Identity);
        }
        match self {
            Reg::Dropout { .. } => Box::new(Dropout::new(p)),
            Reg::Dropconnect { .. } => Box::new(DropConnect::new(p)),
            Reg::DropconnectOut { .. } => Box::new(DropConnectOut::new(p)),
            Reg::GaussianMult { .. } => Box::new(GaussianMult::new(p)),
            Reg::GaussianAdd { .. } => Box::new(GaussianAdd::new(p)),
            Reg::UniformMult { .. } => Box::new(UniformMult::new(p)),
            Reg::LognormalMult { .. } => Box::new(LogNormalMult::new(p)),
            Reg::AnnealedDropout { .. } => Box::new(AnnealedDropout::new(p)),
        }
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} p={}", self.kind(), self.p())
    }
}

/// The kinds of regulariser, by name (`--reg`, the `kinds` of exercise 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum RegKind {
    Dropout,
    Dropconnect,
    DropconnectOut,
    GaussianMult,
    GaussianAdd,
    UniformMult,
    LognormalMult,
    AnnealedDropout,
}

impl RegKind {
    pub const ALL: &'static [RegKind] = &[
        RegKind::Dropout,
        RegKind::Dropconnect,
        RegKind::DropconnectOut,
        RegKind::GaussianMult,
        RegKind::GaussianAdd,
        RegKind::UniformMult,
        RegKind::LognormalMult,
        RegKind::AnnealedDropout,
    ];

    fn name(self) -> &'static str {
        match self {
            RegKind::Dropout => "dropout",
            RegKind::Dropconnect => "dropconnect",
            RegKind::DropconnectOut => "dropconnect-out",
            RegKind::GaussianMult => "gaussian-mult",
            RegKind::GaussianAdd => "gaussian-add",
            RegKind::UniformMult => "uniform-mult",
            RegKind::LognormalMult => "lognormal-mult",
            RegKind::AnnealedDropout => "annealed-dropout",
        }
    }

    /// This kind at strength `p`.
    pub fn with(self, p: f64) -> Reg {
        match self {
            RegKind::Dropout => Reg::Dropout { p },
            RegKind::Dropconnect => Reg::Dropconnect { p },
            RegKind::DropconnectOut => Reg::DropconnectOut { p },
            RegKind::GaussianMult => Reg::GaussianMult { p },
            RegKind::GaussianAdd => Reg::GaussianAdd { p },
            RegKind::UniformMult => Reg::UniformMult { p },
            RegKind::LognormalMult => Reg::LognormalMult { p },
            RegKind::AnnealedDropout => Reg::AnnealedDropout { p },
        }
    }
}

impl fmt::Display for RegKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RegKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        RegKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = RegKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown regulariser `{s}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
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
