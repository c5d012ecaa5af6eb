//! Inverted dropout on activations (Srivastava et al. 2014), as the book's
//! from-scratch `dropout_layer`:
//!
//! ```text
//! h' = 0           with probability p
//! h' = h / (1 - p) otherwise          so that E[h'] = h
//! ```
//!
//! An element is kept where a uniform draw u satisfies u > p. p = 0 is the
//! identity and draws nothing; p = 1 drops everything (all zeros).

use candle_core::{DType, Device, Result, Shape, Tensor};

use super::kind::{no_check, KindSpec, P};
use super::{host_noise, ActivationNoise, NoiseCtx, Regularizer};

pub static SPEC: KindSpec = KindSpec {
    name: "dropout",
    formula: "h' = h m / (1-p), m ~ Bernoulli(1-p) per unit",
    source: "Srivastava et al. 2014",
    hand_written: true,
    params: &[P],
    check: no_check,
    build: |r, _| Ok(Box::new(Dropout::new(r.p()))),
};

#[derive(Debug, Clone, Copy)]
pub struct Dropout {
    p: f32,
}

impl Dropout {
    /// `p` is the drop probability, in [0, 1].
    pub fn new(p: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&p),
            "dropout p must be in [0, 1], got {p}"
        );
        Self { p: p as f32 }
    }
}

impl Regularizer for Dropout {
    fn activation_noise(
        &self,
        shape: &Shape,
        dev: &Device,
        ctx: &mut NoiseCtx,
    ) -> Result<Option<ActivationNoise>> {
        Ok(bernoulli_scale(self.p, shape, dev, ctx)?.map(ActivationNoise::Scale))
    }
}

/// Dropout whose rate follows a schedule over training (annealed,
/// curriculum, early): a kind states its rate at each point of training and
/// is inverted dropout at that rate, trained by both paths.
pub(crate) trait RateSchedule: Send + Sync + std::fmt::Debug {
    /// The drop rate at training progress `t` in [0, 1].
    fn rate(&self, t: f64) -> f64;
}

impl<T: RateSchedule> Regularizer for T {
    fn activation_noise(
        &self,
        shape: &Shape,
        dev: &Device,
        ctx: &mut NoiseCtx,
    ) -> Result<Option<ActivationNoise>> {
        Dropout::new(self.rate(ctx.progress)).activation_noise(shape, dev, ctx)
    }
}

/// The inverted-dropout mask for drop rate `p`: 0 with probability `p`, else
/// 1 / (1 - p). `None` (nothing drawn) for p = 0; all zeros (nothing drawn)
/// for p = 1.
pub(crate) fn bernoulli_scale(
    p: f32,
    shape: &Shape,
    dev: &Device,
    ctx: &mut NoiseCtx,
) -> Result<Option<Tensor>> {
    if p == 0.0 {
        return Ok(None);
    }
    if p == 1.0 {
        return Tensor::zeros(shape, DType::F32, dev).map(Some);
    }
    let scale = 1.0 / (1.0 - p);
    host_noise(ctx.rng, shape, dev, |u| if u > p { scale } else { 0.0 }).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regularizers::testutil::moments;
    use crate::rng::{Rng, Stream};
    use candle_core::Device;

    fn apply(p: f64, xs: &Tensor) -> Vec<Vec<f32>> {
        let mut rng = Rng::new(0, Stream::Noise);
        let mut ctx = NoiseCtx {
            rng: &mut rng,
            progress: 0.0,
        };
        Dropout::new(p)
            .activations(xs, &mut ctx)
            .unwrap()
            .to_vec2()
            .unwrap()
    }

    /// The book's own example: X = arange(16) as 2x8 with p = 0, 0.5, 1.
    #[test]
    fn book_example() {
        let xs = Tensor::arange(0f32, 16., &Device::Cpu)
            .unwrap()
            .reshape((2, 8))
            .unwrap();
        let orig: Vec<Vec<f32>> = xs.to_vec2().unwrap();
        assert_eq!(apply(0.0, &xs), orig);
        assert!(apply(1.0, &xs).iter().flatten().all(|&v| v == 0.0));
        let half = apply(0.5, &xs);
        for (row, orow) in half.iter().zip(&orig) {
            for (&v, &o) in row.iter().zip(orow) {
                assert!(v == 0.0 || v == 2.0 * o, "{v} is neither 0 nor 2*{o}");
            }
        }
    }

    /// On 10^6 elements of value 1 the keep rate is 1-p and the mean is 1.
    /// The kept fraction has sd sqrt(p(1-p)/n) <= 0.0005; the mean's sd is
    /// that divided by (1-p). We allow 5 standard deviations.
    #[test]
    fn keep_rate_and_mean_preserved() {
        for p in [0.2, 0.5, 0.8] {
            let n = 1_000_000;
            let (mean, var) = moments(&Dropout::new(p), 1.0, n);
            let sd_mean = (p * (1.0 - p) / n as f64).sqrt() / (1.0 - p);
            assert!((mean - 1.0).abs() < 5.0 * sd_mean, "p={p} mean={mean}");
            // Var[h'] = h^2 p/(1-p) for inverted dropout.
            let want = p / (1.0 - p);
            assert!(
                (var - want).abs() < 0.02 * want.max(1.0),
                "p={p} var={var} want={want}"
            );
            let keep = mean * (1.0 - p);
            assert!((keep - (1.0 - p)).abs() < 5.0 * (p * (1.0 - p) / n as f64).sqrt());
        }
    }
}
