//! Variational dropout (Kingma, Salimans and Welling 2015), its type B:
//! independent Gaussian noise on each weight that produces the hidden
//! layer, W' = W (1 + sqrt(a) e), with the variance a learned, one per
//! layer, sampled per example by local reparameterisation:
//!
//! ```text
//! z       = x W + b + sqrt(a (x * x)(W * W)) e,   e ~ N(0, 1) per example and unit
//! a       = min(exp(theta), 1),                    theta learned from ln(p / (1 - p))
//! penalty = -(0.5 ln a + c1 a + c2 a^2 + c3 a^3) |W| / N
//! ```
//!
//! The penalty is the paper's approximation of the KL divergence from the
//! log-uniform prior to the weights' posterior, per weight (c1 = 1.16145124,
//! c2 = -1.50204118, c3 = 0.58629921, its constant dropped), times the |W|
//! weights of the layer, over the N training examples: the variational
//! bound's complexity term, in the units of the mean cross-entropy. It
//! falls as a grows, so the data term alone keeps a from the cap of 1
//! (the paper's, where the approximation holds). At p the noise has the
//! variance of Gaussian dropout at rate p, so `p` must be below 0.5 (a
//! below 1). theta is stepped by plain SGD at `alpha_lr`. Evaluation uses
//! the mean weights. Trained through autograd only.

use candle_core::{Device, Result, Tensor, Var};

use super::kind::{KindSpec, Param, Reg, P};
use super::{normals, LayerView, Learned, NoiseCtx, Regularizer};

pub static SPEC: KindSpec = KindSpec {
    name: "variational-dropout",
    formula: "z = x W + b + sqrt(a (x^2)(W^2)) e per example, a learned (<= 1); \
              + penalty -(0.5 ln a + c1 a + c2 a^2 + c3 a^3) |W|/N",
    source: "Kingma, Salimans and Welling 2015 (type B, one a per layer)",
    hand_written: false,
    params: &[
        P,
        // The learning rate of theta = ln a.
        Param {
            name: "alpha_lr",
            default: Some(0.01),
        },
    ],
    check,
    build: |r, dev| {
        let v = VariationalDropout::new(r.p(), r.get("alpha_lr"), dev)?;
        Ok(Box::new(v))
    },
};

fn check(reg: &Reg) -> std::result::Result<(), String> {
    let p = reg.p();
    if p >= 0.5 {
        return Err(format!(
            "variational-dropout p = {p} must be below 0.5: the noise variance starts at \
             p/(1-p), and the paper's approximation holds up to 1"
        ));
    }
    match reg.get("alpha_lr") {
        lr if lr < 0.0 => Err(format!(
            "variational-dropout alpha_lr = {lr} must be at least 0 (0 keeps a fixed)"
        )),
        _ => Ok(()),
    }
}

const C1: f64 = 1.16145124;
const C2: f64 = -1.50204118;
const C3: f64 = 0.58629921;

/// Added to the variance so that its square root has a finite gradient.
const VAR_FLOOR: f64 = 1e-8;

#[derive(Debug)]
pub struct VariationalDropout {
    /// ln a, [1].
    theta: Var,
    alpha_lr: f64,
}

impl VariationalDropout {
    /// Starts at a = p / (1 - p), `p` in (0, 0.5).
    pub fn new(p: f64, alpha_lr: f64, dev: &Device) -> Result<Self> {
        assert!(
            p > 0.0 && p < 0.5,
            "variational dropout starts at p in (0, 0.5), got {p}"
        );
        let theta = Var::from_tensor(&Tensor::new(&[(p / (1.0 - p)).ln() as f32], dev)?)?;
        Ok(Self {
            theta,
            alpha_lr,
        })
    }

    /// a now, min(exp(theta), 1), as a [1] tensor.
    fn alpha(&self) -> Result<Tensor> {
        self.theta.as_tensor().exp()?.minimum(1.0)
    }
}

impl Regularizer for VariationalDropout {
    fn pre_activations(&self, layer: &LayerView, ctx: &mut NoiseCtx) -> Result<Option<Tensor>> {
        let mean = layer.xs.matmul(layer.w)?.broadcast_add(layer.b)?;
        let var = layer
            .xs
            .sqr()?
            .matmul(&layer.w.sqr()?)?
            .broadcast_mul(&self.alpha()?)?;
        let e = normals(ctx.rng, mean.shape(), mean.device(), |e| e)?;
        Ok(Some((mean + (var + VAR_FLOOR)?.sqrt()?.mul(&e)?)?))
    }

    fn learned(&self) -> Vec<Learned<'_>> {
        vec![Learned {
            var: &self.theta,
            lr: Some(self.alpha_lr),
        }]
    }

    fn penalty(&self, w: &Tensor, _next_w: &Tensor, n_train: usize) -> Result<Option<Tensor>> {
        let count = w.elem_count();
        let a = self.alpha()?;
        let neg_kl = ((a.log()? * 0.5)?
            + (&a * C1)?
            + (a.sqr()? * C2)?
            + (a.powf(3.0)? * C3)?)?;
        Ok(Some((neg_kl * (-(count as f64) / n_train as f64))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The penalty falls as a grows (the data term alone holds a back), is
    /// the paper's polynomial per weight, and a is capped at 1.
    #[test]
    fn penalty_and_cap() {
        let dev = Device::Cpu;
        let v = VariationalDropout::new(0.2, 0.01, &dev).unwrap();
        let w = Tensor::zeros((20, 50), candle_core::DType::F32, &dev).unwrap();
        let at = |theta: f32| {
            v.theta.set(&Tensor::new(&[theta], &dev).unwrap()).unwrap();
            let p: Vec<f32> = v.penalty(&w, &w, 500).unwrap().unwrap().to_vec1().unwrap();
            p[0] as f64
        };
        let a: f64 = 0.25;
        let want = -(0.5 * a.ln() + C1 * a + C2 * a * a + C3 * a.powi(3)) * 1000.0 / 500.0;
        assert!((at(a.ln() as f32) - want).abs() < 1e-4, "{}", at(a.ln() as f32));
        assert!(at(-2.0) > at(-1.0) && at(-1.0) > at(-0.1));
        let capped: Vec<f32> = {
            v.theta.set(&Tensor::new(&[2f32], &dev).unwrap()).unwrap();
            v.alpha().unwrap().to_vec1().unwrap()
        };
        assert_eq!(capped, vec![1.0]);
    }
}
