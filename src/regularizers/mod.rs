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

mod concrete;
mod dropconnect;
mod dropconnect_gauss;
mod dropout;
mod noise;
mod rdrop;

pub use concrete::ConcreteDropout;
pub use dropconnect::{DropConnect, DropConnectOut};
pub use dropconnect_gauss::DropConnectGauss;
pub use dropout::Dropout;
pub use noise::{AnnealedDropout, GaussianAdd, GaussianMult, LogNormalMult, UniformMult};
pub use rdrop::RDrop;

use std::fmt;
use std::str::FromStr;

use candle_core::{Device, Result, Shape, Tensor, Var};
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
    /// (d) A penalty added to the loss, given the weights that consume the
    /// layer (`next_w`, [out, next]) and the number of training examples.
    /// Default: none.
    fn penalty(&self, _next_w: &Tensor, _n_train: usize) -> Result<Option<Tensor>> {
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
    /// Concrete dropout (Gal et al. 2017): a relaxed Bernoulli mask whose
    /// rate is learned, starting at `p`; `temperature` of the relaxation,
    /// `length_scale` of the prior that sets the penalty.
    ConcreteDropout {
        p: f64,
        #[serde(default = "concrete::default_temperature")]
        temperature: f64,
        #[serde(default = "concrete::default_length_scale")]
        length_scale: f64,
    },
    /// R-Drop (Liang et al. 2021): dropout at rate `p` in two passes, plus
    /// `alpha` times the symmetric KL divergence of their predictions.
    RDrop {
        p: f64,
        #[serde(default = "rdrop::default_alpha")]
        alpha: f64,
    },
    /// DropConnect on the weights that produce the hidden layer, per
    /// example, in its Gaussian form by local reparameterisation (Kingma et
    /// al. 2015); `p` is the drop probability.
    DropconnectGauss { p: f64 },
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
            Reg::ConcreteDropout { .. } => RegKind::ConcreteDropout,
            Reg::RDrop { .. } => RegKind::RDrop,
            Reg::DropconnectGauss { .. } => RegKind::DropconnectGauss,
        }
    }

    /// Whether the hand-written backward trains this regulariser (it
    /// states all its noise as (a) of the module's header); otherwise only
    /// candle's autograd does.
    pub fn hand_written(&self) -> bool {
        self.kind().hand_written()
    }

    /// The strength `p` that every kind has (a rate, or a noise's standard
    /// deviation); a kind's other parameters are named fields of its own.
    pub fn p(&self) -> f64 {
        match *self {
            Reg::Dropout { p }
            | Reg::Dropconnect { p }
            | Reg::DropconnectOut { p }
            | Reg::GaussianMult { p }
            | Reg::GaussianAdd { p }
            | Reg::UniformMult { p }
            | Reg::LognormalMult { p }
            | Reg::AnnealedDropout { p }
            | Reg::ConcreteDropout { p, .. }
            | Reg::RDrop { p, .. }
            | Reg::DropconnectGauss { p } => p,
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
        match *self {
            Reg::ConcreteDropout {
                temperature,
                length_scale,
                ..
            } => {
                if !(temperature.is_finite() && temperature > 0.0) {
                    return Err(format!(
                        "concrete-dropout temperature = {temperature} must be a finite number \
                         greater than 0 (0.1 is the paper's)"
                    ));
                }
                if !(length_scale.is_finite() && length_scale >= 0.0) {
                    return Err(format!(
                        "concrete-dropout length_scale = {length_scale} must be a finite number \
                         of at least 0"
                    ));
                }
            }
            Reg::RDrop { alpha, .. } if !(alpha.is_finite() && alpha >= 0.0) => {
                return Err(format!(
                    "r-drop alpha = {alpha} must be a finite number of at least 0"
                ));
            }
            _ => {}
        }
        if p == 1.0
            && matches!(
                self,
                Reg::GaussianMult { .. }
                    | Reg::LognormalMult { .. }
                    | Reg::ConcreteDropout { .. }
                    | Reg::DropconnectGauss { .. }
            )
        {
            return Err(format!(
                "p = 1 is not allowed for {} (its noise variance p/(1-p), or its rate's logit, is \
                 infinite); use a value below 1",
                self.kind()
            ));
        }
        Ok(())
    }

    /// Builds the regulariser (parameters already validated), its learned
    /// parameters, if any, on `dev`.
    pub fn build(&self, dev: &Device) -> Result<Box<dyn Regularizer>> {
        let p = self.p();
        if p == 0.0 {
            return Ok(Box::new(Identity));
        }
        Ok(match *self {
            Reg::Dropout { .. } => Box::new(Dropout::new(p)),
            Reg::Dropconnect { .. } => Box::new(DropConnect::new(p)),
            Reg::DropconnectOut { .. } => Box::new(DropConnectOut::new(p)),
            Reg::GaussianMult { .. } => Box::new(GaussianMult::new(p)),
            Reg::GaussianAdd { .. } => Box::new(GaussianAdd::new(p)),
            Reg::UniformMult { .. } => Box::new(UniformMult::new(p)),
            Reg::LognormalMult { .. } => Box::new(LogNormalMult::new(p)),
            Reg::AnnealedDropout { .. } => Box::new(AnnealedDropout::new(p)),
            Reg::ConcreteDropout {
                temperature,
                length_scale,
                ..
            } => Box::new(ConcreteDropout::new(p, temperature, length_scale, dev)?),
            Reg::RDrop { alpha, .. } => Box::new(RDrop::new(p, alpha)),
            Reg::DropconnectGauss { .. } => Box::new(DropConnectGauss::new(p)),
        })
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
    ConcreteDropout,
    RDrop,
    DropconnectGauss,
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
        RegKind::ConcreteDropout,
        RegKind::RDrop,
        RegKind::DropconnectGauss,
    ];

    /// Whether the hand-written backward trains this kind.
    pub fn hand_written(self) -> bool {
        !matches!(
            self,
            RegKind::ConcreteDropout | RegKind::RDrop | RegKind::DropconnectGauss
        )
    }

    /// The names of the kinds the hand-written backward trains.
    pub fn hand_written_names() -> Vec<&'static str> {
        RegKind::ALL
            .iter()
            .filter(|k| k.hand_written())
            .map(|k| k.name())
            .collect()
    }

    /// The kind's formula in one line and its source, for `drop-exp kinds`.
    pub fn summary(self) -> (&'static str, &'static str) {
        match self {
            RegKind::Dropout => (
                "h' = h m / (1-p), m ~ Bernoulli(1-p) per unit",
                "Srivastava et al. 2014",
            ),
            RegKind::Dropconnect => (
                "W' = W M / (1-p) on the producing weights, one M per mini-batch",
                "Wan et al. 2013 (mask shared by the batch)",
            ),
            RegKind::DropconnectOut => (
                "W' = W M / (1-p) on the consuming weights, one M per mini-batch",
                "Wan et al. 2013 (mask shared by the batch)",
            ),
            RegKind::GaussianMult => (
                "h' = h (1 + s e), e ~ N(0,1), s^2 = p/(1-p)",
                "Srivastava et al. 2014 (Gaussian dropout)",
            ),
            RegKind::GaussianAdd => ("h' = h + p e, e ~ N(0,1)", "additive noise injection"),
            RegKind::UniformMult => (
                "h' = h u, u uniform with mean 1 and variance p/(1-p) (p <= 0.25)",
                "uniform multiplicative noise",
            ),
            RegKind::LognormalMult => (
                "h' = h exp(m + s e), mean 1, variance p/(1-p)",
                "log-normal multiplicative noise",
            ),
            RegKind::AnnealedDropout => (
                "dropout at rate p (1 - t), t the share of training done",
                "Rennie et al. 2014 (annealed dropout)",
            ),
            RegKind::ConcreteDropout => (
                "h' = h (1 - sigmoid((logit q + logit u) / T)) / (1-q), q learned; \
                 + penalty l^2 ||W||^2/(N(1-q)) - 2 K H(q)/N",
                "Gal, Hron and Kendall 2017",
            ),
            RegKind::RDrop => (
                "dropout in 2 passes; loss = mean CE + alpha (KL(P1||P2) + KL(P2||P1)) / 2",
                "Liang et al. 2021",
            ),
            RegKind::DropconnectGauss => (
                "z = x W + b + sqrt((x^2)(W^2) p/(1-p)) e, e ~ N(0,1) per example",
                "Wan et al. 2013; Kingma, Salimans and Welling 2015 (local reparameterisation)",
            ),
        }
    }

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
            RegKind::ConcreteDropout => "concrete-dropout",
            RegKind::RDrop => "r-drop",
            RegKind::DropconnectGauss => "dropconnect-gauss",
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
            RegKind::ConcreteDropout => Reg::ConcreteDropout {
                p,
                temperature: concrete::default_temperature(),
                length_scale: concrete::default_length_scale(),
            },
            RegKind::RDrop => Reg::RDrop {
                p,
                alpha: rdrop::default_alpha(),
            },
            RegKind::DropconnectGauss => Reg::DropconnectGauss { p },
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
        let params = serde_json::to_value(kind.with(0.3)).expect("a kind serialises");
        let params: Vec<String> = params
            .as_object()
            .expect("a kind serialises to a table")
            .iter()
            .filter(|(k, _)| k.as_str() != "kind")
            .map(|(k, v)| match k.as_str() {
                "p" => "p".to_string(),
                _ => format!("{k} (default {v})"),
            })
            .collect();
        out.push_str(&format!(
            "{kind}\n  {formula}\n  parameters: {}; trained by: {paths}\n  source: {source}\n",
            params.join(", ")
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
