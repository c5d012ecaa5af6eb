//! Gaussian multiplicative noise, "Gaussian dropout" (Srivastava et al.
//! 2014), with the variance of Bernoulli dropout at rate p:
//!
//! ```text
//! h' = h * (1 + sigma * eps),  eps ~ N(0, 1),  sigma^2 = p / (1 - p)
//! ```
//!
//! Unbiased (E[h'] = h).

use candle_core::{Device, Result, Shape};

use super::kind::{below_one, KindSpec, P};
use super::{ActivationNoise, NoiseCtx, Regularizer};

pub static SPEC: KindSpec = KindSpec {
    name: "gaussian-mult",
    formula: "h' = h (1 + s e), e ~ N(0,1), s^2 = p/(1-p)",
    source: "Srivastava et al. 2014 (Gaussian dropout)",
    hand_written: true,
    params: &[P],
    check: below_one,
    build: |r, _| Ok(Box::new(GaussianMult::new(r.p()))),
};

#[derive(Debug, Clone, Copy)]
pub struct GaussianMult {
    sigma: f32,
}

impl GaussianMult {
    pub fn new(p: f64) -> Self {
        assert!(
            (0.0..1.0).contains(&p),
            "Gaussian dropout needs p in [0, 1), got {p}"
        );
        Self {
            sigma: (p / (1.0 - p)).sqrt() as f32,
        }
    }
}

impl Regularizer for GaussianMult {
    fn activation_noise(
        &self,
        shape: &Shape,
        dev: &Device,
        ctx: &mut NoiseCtx,
    ) -> Result<Option<ActivationNoise>> {
        let s = self.sigma;
        ActivationNoise::normal(shape, dev, ctx, ActivationNoise::Scale, |e| 1.0 + s * e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regularizers::lognormal_mult::LogNormalMult;
    use crate::regularizers::testutil::moments;
    use crate::regularizers::Dropout;

    /// Mean of 10^6 outputs for h = 1: the noise has sd <= sqrt(p/(1-p)) <= 1.23
    /// at p = 0.6, so the mean's sd is <= 0.0013; we allow 0.006 (about 5 sd).
    /// Variances are checked within 2% (their sampling sd is about 0.2%).
    #[test]
    fn multiplicative_kinds_are_unbiased_with_dropouts_variance() {
        for p in [0.2, 0.5, 0.6] {
            let want = p / (1.0 - p);
            for (name, reg) in [
                (
                    "gaussian",
                    Box::new(GaussianMult::new(p)) as Box<dyn Regularizer>,
                ),
                ("log-normal", Box::new(LogNormalMult::new(p))),
                ("dropout", Box::new(Dropout::new(p))),
            ] {
                let (mean, var) = moments(reg.as_ref(), 1.0, 1_000_000);
                assert!((mean - 1.0).abs() < 0.006, "{name} p={p}: mean {mean}");
                assert!(
                    (var - want).abs() < 0.02 * want,
                    "{name} p={p}: var {var}, want {want}"
                );
            }
        }
    }
}
