//! Uniform multiplicative noise with dropout's variance at rate p:
//!
//! ```text
//! h' = h * u,  u ~ U(1 - a, 1 + a),  a = sqrt(3 p / (1 - p))
//! ```
//!
//! Unbiased, with Var(u) = a^2 / 3 = p / (1 - p). The multiplier is
//! non-negative only up to p = 0.25, so the kind is limited to it.

use candle_core::{Device, Result, Shape};

use super::kind::{KindSpec, Reg, P};
use super::{ActivationNoise, NoiseCtx, Regularizer};

pub static SPEC: KindSpec = KindSpec {
    name: "uniform-mult",
    formula: "h' = h u, u uniform with mean 1 and variance p/(1-p) (p <= 0.25)",
    source: "uniform multiplicative noise",
    hand_written: true,
    params: &[P],
    check,
    build: |r, _| Ok(Box::new(UniformMult::new(r.p()))),
};

fn check(reg: &Reg) -> std::result::Result<(), String> {
    let p = reg.p();
    if p > UniformMult::MAX_P {
        return Err(format!(
            "uniform-mult p = {p}: a uniform multiplier with dropout's variance p/(1-p) takes \
             negative values above p = {}; use lognormal-mult (non-negative at every rate)",
            UniformMult::MAX_P
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub struct UniformMult {
    a: f32,
}

impl UniformMult {
    /// Above this rate the multiplier's range 1 +/- a reaches below 0.
    pub const MAX_P: f64 = 0.25;

    pub fn new(p: f64) -> Self {
        assert!(
            (0.0..1.0).contains(&p),
            "uniform noise needs p in [0, 1), got {p}"
        );
        Self {
            a: (3.0 * p / (1.0 - p)).sqrt() as f32,
        }
    }
}

impl Regularizer for UniformMult {
    fn activation_noise(
        &self,
        shape: &Shape,
        dev: &Device,
        ctx: &mut NoiseCtx,
    ) -> Result<Option<ActivationNoise>> {
        let a = self.a;
        ActivationNoise::uniform(shape, dev, ctx, ActivationNoise::Scale, |u| {
            1.0 + a * (2.0 * u - 1.0)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::regularizers::RegKind;

    /// A uniform multiplier with dropout's variance would go negative above
    /// p = 0.25: rejected there, with the fix named.
    #[test]
    fn uniform_is_limited_to_non_negative_multipliers() {
        assert!(RegKind::UniformMult.with(0.25).validate().is_ok());
        let e = RegKind::UniformMult.with(0.3).validate().unwrap_err();
        assert!(e.contains("lognormal-mult"), "{e}");
    }
}
