//! DropConnect with a mask per example, in its Gaussian form by local
//! reparameterisation (Wang and Manning 2013; Kingma, Salimans and Welling
//! 2015). DropConnect on the weights that produce the hidden layer,
//! W' = W M / (1 - p) with M_ij ~ Bernoulli(1 - p) drawn for each example,
//! gives each pre-activation the mean and variance
//!
//! ```text
//! E[z]   = x W + b
//! Var[z] = (x * x)(W * W) p / (1 - p)
//! z      = E[z] + sqrt(Var[z]) e,   e ~ N(0, 1) per example and unit
//! ```
//!
//! and this kind samples z from the Gaussian with those moments (a sum of
//! 784 or 256 independent terms, close to normal) instead of drawing a
//! [in, out] mask per example. Its cost is one more product per layer
//! (x^2 by W^2). Every example sees its own thinned network, unlike
//! [`super::DropConnect`]'s one mask per mini-batch. Evaluation uses the
//! mean network. Trained through autograd only.

use candle_core::{Result, Tensor};

use super::kind::{below_one, KindSpec, P};
use super::{normals, LayerView, NoiseCtx, Regularizer};

pub static SPEC: KindSpec = KindSpec {
    name: "dropconnect-gauss",
    formula: "z = x W + b + sqrt((x^2)(W^2) p/(1-p)) e, e ~ N(0,1) per example",
    source: "Wan et al. 2013; Kingma, Salimans and Welling 2015 (local reparameterisation)",
    hand_written: false,
    params: &[P],
    check: below_one,
    build: |r, _| Ok(Box::new(DropConnectGauss::new(r.p()))),
};

/// Added to the variance so that its square root has a finite gradient.
const VAR_FLOOR: f64 = 1e-8;

#[derive(Debug, Clone, Copy)]
pub struct DropConnectGauss {
    /// p / (1 - p): the variance of W' relative to W^2.
    ratio: f64,
}

impl DropConnectGauss {
    /// `p` in [0, 1).
    pub fn new(p: f64) -> Self {
        assert!(
            (0.0..1.0).contains(&p),
            "dropconnect-gauss needs p in [0, 1), got {p}"
        );
        Self {
            ratio: p / (1.0 - p),
        }
    }
}

impl Regularizer for DropConnectGauss {
    fn pre_activations(&self, layer: &LayerView, ctx: &mut NoiseCtx) -> Result<Option<Tensor>> {
        let mean = layer.xs.matmul(layer.w)?.broadcast_add(layer.b)?;
        let var = (layer.xs.sqr()?.matmul(&layer.w.sqr()?)? * self.ratio)?;
        let e = normals(ctx.rng, mean.shape(), mean.device(), |e| e)?;
        Ok(Some((mean + (var + VAR_FLOOR)?.sqrt()?.mul(&e)?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regularizers::dropconnect::DropConnect;
    use crate::rng::{Rng, Stream};
    use candle_core::Device;

    /// The sampled pre-activations have the mean and variance of exact
    /// per-example DropConnect: checked against Bernoulli masks drawn for
    /// each of 4000 examples of one input row.
    #[test]
    fn moments_match_exact_dropconnect() {
        let dev = Device::Cpu;
        let p = 0.3;
        let (n, k) = (4000, 40);
        let mut rng = Rng::new(5, Stream::Probe);
        let mut xv = vec![0f32; k];
        rng.fill_uniform(&mut xv);
        let mut wv = vec![0f32; k * 2];
        rng.fill_normal(&mut wv);
        let x = Tensor::from_vec(xv, (1, k), &dev).unwrap();
        let xs = x.broadcast_as((n, k)).unwrap().contiguous().unwrap();
        let w = Tensor::from_vec(wv, (k, 2), &dev).unwrap();
        let b = Tensor::zeros((1, 2), candle_core::DType::F32, &dev).unwrap();
        let mut ctx = NoiseCtx {
            rng: &mut rng,
            progress: 0.0,
        };
        let layer = LayerView {
            xs: &xs,
            w: &w,
            b: &b,
        };
        let gauss = DropConnectGauss::new(p)
            .pre_activations(&layer, &mut ctx)
            .unwrap()
            .unwrap();
        let exact: Vec<Tensor> = (0..n)
            .map(|_| {
                x.matmul(&DropConnect::new(p).weights(&w, &mut ctx).unwrap())
                    .unwrap()
            })
            .collect();
        let exact = Tensor::cat(&exact, 0).unwrap();
        let moments = |t: &Tensor| -> Vec<(f64, f64)> {
            let v: Vec<Vec<f32>> = t.to_vec2().unwrap();
            (0..2)
                .map(|j| {
                    let col: Vec<f64> = v.iter().map(|r| r[j] as f64).collect();
                    let m = col.iter().sum::<f64>() / n as f64;
                    let var = col.iter().map(|c| (c - m).powi(2)).sum::<f64>() / n as f64;
                    (m, var)
                })
                .collect()
        };
        for ((gm, gv), (em, ev)) in moments(&gauss).into_iter().zip(moments(&exact)) {
            // Means within 5 sd of their difference; variances within 10%.
            let sd = ((gv + ev) / n as f64).sqrt();
            assert!((gm - em).abs() < 5.0 * sd, "mean {gm} vs {em}");
            assert!((gv / ev - 1.0).abs() < 0.1, "variance {gv} vs {ev}");
        }
    }
}
