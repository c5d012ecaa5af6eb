//! Dropout with one mask shared by the mini-batch: each step drops the
//! same units for every example of the batch (inverted, at rate p). Not a
//! technique anyone recommends: the control that separates, in exercise 6,
//! "weights or units" from "one mask per batch or one per example", since
//! batch-shared DropConnect (`dropconnect`) shares its mask the same way.
//! Its noise is stated as a scale on the activations, so the fast path
//! trains it.

use candle_core::{Device, Result, Shape};

use super::kind::{no_check, KindSpec, P};
use super::{host_noise, ActivationNoise, NoiseCtx, Regularizer};

pub static SPEC: KindSpec = KindSpec {
    name: "dropout-shared",
    formula: "h' = h m / (1-p), m ~ Bernoulli(1-p) per unit, one m for the whole mini-batch",
    source: "this project's control for exercise 6",
    hand_written: true,
    params: &[P],
    check: no_check,
    build: |r, _| Ok(Box::new(DropoutShared::new(r.p()))),
};

#[derive(Debug, Clone, Copy)]
pub struct DropoutShared {
    p: f32,
}

impl DropoutShared {
    pub fn new(p: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&p),
            "dropout-shared p must be in [0, 1], got {p}"
        );
        Self { p: p as f32 }
    }
}

impl Regularizer for DropoutShared {
    fn activation_noise(
        &self,
        shape: &Shape,
        dev: &Device,
        ctx: &mut NoiseCtx,
    ) -> Result<Option<ActivationNoise>> {
        let (n, units) = shape.dims2()?;
        let p = self.p;
        let scale = match p {
            1.0 => 0.0,
            _ => 1.0 / (1.0 - p),
        };
        let row = host_noise(ctx.rng, &(1, units).into(), dev, |u| {
            if u > p {
                scale
            } else {
                0.0
            }
        })?;
        // Materialised: the fast path slices the noise into halves by rows.
        let m = row.broadcast_as((n, units))?.contiguous()?;
        Ok(Some(ActivationNoise::Scale(m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Rng, Stream};

    #[test]
    fn every_example_shares_the_mask() {
        let mut rng = Rng::new(3, Stream::Noise);
        let mut ctx = NoiseCtx {
            rng: &mut rng,
            progress: 0.0,
        };
        let xs = candle_core::Tensor::ones((6, 1000), candle_core::DType::F32, &Device::Cpu).unwrap();
        let v: Vec<Vec<f32>> = DropoutShared::new(0.3)
            .activations(&xs, &mut ctx)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert!(v.iter().all(|r| r == &v[0]));
        let kept = v[0].iter().filter(|&&x| x != 0.0).count();
        assert!((650..=750).contains(&kept), "kept {kept} of 1000");
    }
}
