//! Log-normal multiplicative noise with dropout's mean and variance at
//! rate p:
//!
//! ```text
//! h' = h * exp(mu + s * eps),  eps ~ N(0, 1),  s^2 = -ln(1 - p),  mu = -s^2 / 2
//! ```
//!
//! E(m) = 1 and Var(m) = exp(s^2) - 1 = p / (1 - p), with a multiplier
//! that is positive at every rate (unlike the Gaussian's, or the uniform's
//! above p = 0.25).

use candle_core::{Device, Result, Shape};

use super::kind::{below_one, KindSpec, P};
use super::{ActivationNoise, NoiseCtx, Regularizer};

pub static SPEC: KindSpec = KindSpec {
    name: "lognormal-mult",
    formula: "h' = h exp(m + s e), mean 1, variance p/(1-p)",
    source: "log-normal multiplicative noise",
    hand_written: true,
    params: &[P],
    check: below_one,
    build: |r, _| Ok(Box::new(LogNormalMult::new(r.p()))),
};

#[derive(Debug, Clone, Copy)]
pub struct LogNormalMult {
    mu: f32,
    s: f32,
}

impl LogNormalMult {
    pub fn new(p: f64) -> Self {
        assert!(
            (0.0..1.0).contains(&p),
            "log-normal noise needs p in [0, 1), got {p}"
        );
        let var = -(1.0 - p).ln();
        Self {
            mu: (-var / 2.0) as f32,
            s: var.sqrt() as f32,
        }
    }
}

impl Regularizer for LogNormalMult {
    fn activation_noise(
        &self,
        shape: &Shape,
        dev: &Device,
        ctx: &mut NoiseCtx,
    ) -> Result<Option<ActivationNoise>> {
        let (mu, s) = (self.mu, self.s);
        ActivationNoise::normal(shape, dev, ctx, ActivationNoise::Scale, |e| {
            (mu + s * e).exp()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Rng, Stream};
    use candle_core::Tensor;

    #[test]
    fn the_multiplier_is_positive_at_a_high_rate() {
        let xs = Tensor::ones((100, 1000), candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut rng = Rng::new(1, Stream::Noise);
        let mut ctx = NoiseCtx {
            rng: &mut rng,
            progress: 0.0,
        };
        let v: Vec<f32> = LogNormalMult::new(0.6)
            .activations(&xs, &mut ctx)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(v.iter().all(|&x| x > 0.0));
    }
}
