//! Concrete dropout (Gal, Hron and Kendall 2017): dropout whose rate is
//! learned with the weights, through a continuous relaxation of the
//! Bernoulli mask. With q = sigmoid(theta) the layer's drop rate (theta is
//! learned, starting at logit(p)), u ~ U(0, 1) per unit and temperature T:
//!
//! ```text
//! drop  = sigmoid((logit q + log u - log(1 - u)) / T)
//! h'    = h (1 - drop) / (1 - q)
//! penalty = l^2 ||W||^2 / (N (1 - q)) + 2 K (q log q + (1 - q) log(1 - q)) / N
//! ```
//!
//! W is the matrix that consumes the layer, K its number of rows (the units
//! dropped), N the number of training examples and l the prior's length
//! scale: the paper's regulariser with its precision tau = 1, added to the
//! mean cross-entropy. Evaluation uses no mask (dropout off, as for
//! inverted dropout). Trained through autograd only: the rate is a learned
//! parameter and the mask a function of it.

use candle_core::{Device, Result, Tensor, Var};

use super::kind::{below_one, KindSpec, Param, Reg, P};
use super::{host_noise, Learned, NoiseCtx, Regularizer};

pub static SPEC: KindSpec = KindSpec {
    name: "concrete-dropout",
    formula: "h' = h (1 - sigmoid((logit q + logit u) / T)) / (1-q), q learned; \
              + penalty l^2 ||W||^2/(N(1-q)) - 2 K H(q)/N",
    source: "Gal, Hron and Kendall 2017",
    hand_written: false,
    params: &[
        P,
        // The relaxation's temperature T: the paper's 0.1.
        Param {
            name: "temperature",
            default: Some(0.1),
        },
        // The prior's length scale l: 1e-4, as in the paper's code for its
        // MNIST-sized examples.
        Param {
            name: "length_scale",
            default: Some(1e-4),
        },
    ],
    check,
    build: |r, dev| {
        let c = ConcreteDropout::new(r.p(), r.get("temperature"), r.get("length_scale"), dev)?;
        Ok(Box::new(c))
    },
};

fn check(reg: &Reg) -> std::result::Result<(), String> {
    below_one(reg)?;
    let (temperature, length_scale) = (reg.get("temperature"), reg.get("length_scale"));
    if temperature <= 0.0 {
        return Err(format!(
            "concrete-dropout temperature = {temperature} must be greater than 0 (0.1 is the \
             paper's)"
        ));
    }
    if length_scale < 0.0 {
        return Err(format!(
            "concrete-dropout length_scale = {length_scale} must be at least 0"
        ));
    }
    Ok(())
}

/// Uniforms are kept this far from 0 and 1 so their logits stay finite.
const EPS: f32 = 1e-7;

#[derive(Debug)]
pub struct ConcreteDropout {
    /// logit of the drop rate, [1].
    theta: Var,
    temperature: f64,
    length_scale: f64,
}

impl ConcreteDropout {
    /// Starts at drop rate `p` in (0, 1).
    pub fn new(p: f64, temperature: f64, length_scale: f64, dev: &Device) -> Result<Self> {
        assert!(
            p > 0.0 && p < 1.0,
            "concrete dropout starts at a rate in (0, 1), got {p}"
        );
        let theta = Var::from_tensor(&Tensor::new(&[(p / (1.0 - p)).ln() as f32], dev)?)?;
        Ok(Self {
            theta,
            temperature,
            length_scale,
        })
    }

    /// The drop rate now, sigmoid(theta), as a [1] tensor.
    fn rate(&self) -> Result<Tensor> {
        sigmoid(self.theta.as_tensor())
    }
}

/// 1 / (1 + exp(-x)) as candle's op, whose gradient (s (1 - s)) stays
/// finite where exp overflows; written out as exp and recip, its gradient
/// is inf / inf there, and a run diverged in its first epoch.
fn sigmoid(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::sigmoid(x)
}

impl Regularizer for ConcreteDropout {
    fn transform(&self, h: &Tensor, ctx: &mut NoiseCtx) -> Result<Tensor> {
        // logit u = log u - log(1 - u), drawn on the host.
        let logit_u = host_noise(ctx.rng, h.shape(), h.device(), |u| {
            let u = u.clamp(EPS, 1.0 - EPS);
            (u / (1.0 - u)).ln()
        })?;
        let drop = sigmoid(&(logit_u.broadcast_add(self.theta.as_tensor())? / self.temperature)?)?;
        let keep = (1.0 - drop)?;
        let scale = (1.0 - self.rate()?)?.recip()?;
        h.mul(&keep)?.broadcast_mul(&scale)
    }

    fn learned(&self) -> Vec<Learned<'_>> {
        vec![Learned {
            var: &self.theta,
            lr: None,
        }]
    }

    fn penalty(&self, _w: &Tensor, next_w: &Tensor, n_train: usize) -> Result<Option<Tensor>> {
        let q = self.rate()?;
        let n = n_train as f64;
        let k = next_w.dim(0)? as f64;
        let weights = (next_w.sqr()?.sum_all()?.reshape(1)? * (self.length_scale.powi(2) / n))?
            .div(&(1.0 - &q)?)?;
        let one_minus = (1.0 - &q)?;
        let neg_entropy = ((&q * q.log()?)? + (&one_minus * one_minus.log()?)?)?;
        Ok(Some((weights + (neg_entropy * (2.0 * k / n))?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Rng, Stream};

    /// At a low temperature the relaxed mask is nearly binary, drops about
    /// the starting rate and keeps the mean.
    #[test]
    fn relaxed_mask_drops_at_its_rate() {
        let dev = Device::Cpu;
        let reg = ConcreteDropout::new(0.3, 0.01, 1e-4, &dev).unwrap();
        let h = Tensor::ones((1000, 200), candle_core::DType::F32, &dev).unwrap();
        let mut rng = Rng::new(3, Stream::Noise);
        let mut ctx = NoiseCtx {
            rng: &mut rng,
            progress: 0.0,
        };
        let out: Vec<f32> = reg
            .transform(&h, &mut ctx)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let dropped = out.iter().filter(|&&v| v < 0.5).count() as f64 / out.len() as f64;
        let mean = out.iter().map(|&v| v as f64).sum::<f64>() / out.len() as f64;
        // sd of the dropped share: sqrt(0.21 / 2e5) = 0.001.
        assert!((dropped - 0.3).abs() < 0.01, "dropped {dropped}");
        assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
    }
}
