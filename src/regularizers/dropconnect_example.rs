//! DropConnect as Wan et al. (2013) define it: a Bernoulli mask on the
//! weights that produce the hidden layer, drawn for each example, so that
//! every example of a mini-batch sees its own thinned network:
//!
//! ```text
//! z_n = x_n (W * M_n) / (1 - p) + b,   M_n[i, j] ~ Bernoulli(1 - p), per example n
//! ```
//!
//! Exact, and costly: a step draws in x out uniforms per example (784 x
//! 256 for the first hidden layer, 51 million for a batch of 256) and
//! replaces the layer's one matrix product by a product per example on a
//! [n, in, out] tensor of masked weights. `dropconnect` shares one mask
//! between the batch's examples; `dropconnect-gauss` samples the same
//! per-example pre-activations' mean and variance from a Gaussian. The
//! paper's Gaussian moment-matching inference is not used: evaluation takes
//! the mean network. Trained through autograd only.

use candle_core::{Result, Tensor};

use super::kind::{below_one, KindSpec, P};
use super::{host_noise, LayerView, NoiseCtx, Regularizer};

pub static SPEC: KindSpec = KindSpec {
    name: "dropconnect-example",
    formula: "z_n = x_n (W M_n) / (1-p) + b, M_n ~ Bernoulli(1-p), one mask per example",
    source: "Wan et al. 2013 (masks per example, exact)",
    hand_written: false,
    params: &[P],
    check: below_one,
    build: |r, _| Ok(Box::new(DropConnectExample::new(r.p()))),
};

#[derive(Debug, Clone, Copy)]
pub struct DropConnectExample {
    p: f32,
}

impl DropConnectExample {
    /// `p` in [0, 1).
    pub fn new(p: f64) -> Self {
        assert!(
            (0.0..1.0).contains(&p),
            "dropconnect-example needs p in [0, 1), got {p}"
        );
        Self { p: p as f32 }
    }
}

impl Regularizer for DropConnectExample {
    fn pre_activations(&self, layer: &LayerView, ctx: &mut NoiseCtx) -> Result<Option<Tensor>> {
        let (n, k) = layer.xs.dims2()?;
        let (_, out) = layer.w.dims2()?;
        let (p, scale) = (self.p, 1.0 / (1.0 - self.p));
        // Example by example, row by row: the order a seed fixes.
        let masks = host_noise(ctx.rng, &(n, k, out).into(), layer.w.device(), |u| {
            if u > p {
                scale
            } else {
                0.0
            }
        })?;
        let w = masks.broadcast_mul(&layer.w.unsqueeze(0)?)?;
        let z = layer.xs.unsqueeze(1)?.matmul(&w)?.squeeze(1)?;
        Ok(Some(z.broadcast_add(layer.b)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regularizers::dropconnect::DropConnect;
    use crate::rng::{Rng, Stream};
    use candle_core::Device;

    /// Example n's pre-activations are those of the batch-shared kind with
    /// the mask drawn n-th: the same masks, one per example.
    #[test]
    fn each_example_has_its_own_mask() {
        let dev = Device::Cpu;
        let (n, k, out) = (3, 5, 4);
        let mut rng = Rng::new(2, Stream::Probe);
        let mut xv = vec![0f32; n * k];
        rng.fill_uniform(&mut xv);
        let mut wv = vec![0f32; k * out];
        rng.fill_normal(&mut wv);
        let xs = Tensor::from_vec(xv, (n, k), &dev).unwrap();
        let w = Tensor::from_vec(wv, (k, out), &dev).unwrap();
        let b = Tensor::ones((1, out), candle_core::DType::F32, &dev).unwrap();
        let layer = LayerView {
            xs: &xs,
            w: &w,
            b: &b,
        };
        let mut a = Rng::new(7, Stream::Noise);
        let got: Vec<Vec<f32>> = DropConnectExample::new(0.4)
            .pre_activations(
                &layer,
                &mut NoiseCtx {
                    rng: &mut a,
                    progress: 0.0,
                },
            )
            .unwrap()
            .unwrap()
            .to_vec2()
            .unwrap();
        let mut b_rng = Rng::new(7, Stream::Noise);
        let mut ctx = NoiseCtx {
            rng: &mut b_rng,
            progress: 0.0,
        };
        for (i, row) in got.iter().enumerate() {
            let wi = DropConnect::new(0.4).weights(&w, &mut ctx).unwrap();
            let want: Vec<f32> = (xs.get(i).unwrap().unsqueeze(0).unwrap().matmul(&wi).unwrap()
                + 1.0)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (g, w) in row.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "example {i}: {g} vs {w}");
            }
        }
        assert_ne!(got[0], got[1]);
    }
}
