//! Additive Gaussian noise on the activations:
//!
//! ```text
//! h' = h + sigma * eps,  eps ~ N(0, 1),  sigma = p
//! ```
//!
//! Unbiased; its variance does not depend on h (activations of this model
//! are of order 1, so sigma = p puts it on the scale of the multiplicative
//! kinds).

use candle_core::{Device, Result, Shape};

use super::kind::{no_check, KindSpec, P};
use super::{ActivationNoise, NoiseCtx, Regularizer};

pub static SPEC: KindSpec = KindSpec {
    name: "gaussian-add",
    formula: "h' = h + p e, e ~ N(0,1)",
    source: "additive noise injection",
    hand_written: true,
    params: &[P],
    check: no_check,
    build: |r, _| Ok(Box::new(GaussianAdd::new(r.p()))),
};

#[derive(Debug, Clone, Copy)]
pub struct GaussianAdd {
    sigma: f32,
}

impl GaussianAdd {
    pub fn new(p: f64) -> Self {
        Self { sigma: p as f32 }
    }
}

impl Regularizer for GaussianAdd {
    fn activation_noise(
        &self,
        shape: &Shape,
        dev: &Device,
        ctx: &mut NoiseCtx,
    ) -> Result<Option<ActivationNoise>> {
        let s = self.sigma;
        ActivationNoise::normal(shape, dev, ctx, ActivationNoise::Shift, |e| s * e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regularizers::testutil::moments;

    #[test]
    fn additive_gaussian_is_unbiased_with_variance_sigma_squared() {
        let (mean, var) = moments(&GaussianAdd::new(0.3), 2.0, 1_000_000);
        assert!((mean - 2.0).abs() < 0.0015, "mean {mean}");
        assert!((var - 0.09).abs() < 0.02 * 0.09, "var {var}");
    }
}
