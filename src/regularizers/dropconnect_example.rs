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
//! replaces the layer's one matrix product by a product per example. On
//! the CPU that product is one operation over masks kept as bits
//! (`super::example_masks`); elsewhere it is written with candle tensors
//! on an [n, in, out] tensor of masked weights. `dropconnect` shares one mask
//! between the batch's examples; `dropconnect-gauss` samples the same
//! per-example pre-activations' mean and variance from a Gaussian. The
//! paper's Gaussian moment-matching inference is not used: evaluation takes
//! the mean network. Trained through autograd only.

use candle_core::{Device, Result, Tensor};

use super::example_masks::{draw_rows, masked_product, Masks};
use super::kind::{below_one, KindSpec, P};
use super::{LayerView, NoiseCtx, Regularizer};
use crate::rng::Rng;

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
        let z = match layer.w.device() {
            Device::Cpu => {
                let masks = Masks::draw(ctx.rng, n, k, out, self.p);
                masked_product(layer.xs, layer.w, masks)?
            }
            dev => self.as_tensors(layer, ctx.rng, dev)?,
        };
        Ok(Some(z.broadcast_add(layer.b)?))
    }
}

impl DropConnectExample {
    /// The same product written with candle tensors, for devices other
    /// than the CPU: an [n, in, out] tensor of masked weights, one matrix
    /// per example, from the same draws as the CPU's masks.
    fn as_tensors(&self, layer: &LayerView, rng: &mut Rng, dev: &Device) -> Result<Tensor> {
        let (n, k) = layer.xs.dims2()?;
        let (_, out) = layer.w.dims2()?;
        let (p, scale) = (self.p, 1.0 / (1.0 - self.p));
        let mut buf = Vec::with_capacity(n * k * out);
        draw_rows(rng, n * k, out, |u| {
            buf.extend(u.iter().map(|&x| if x > p { scale } else { 0.0 }))
        });
        let masks = Tensor::from_vec(buf, (n, k, out), dev)?;
        let w = masks.broadcast_mul(&layer.w.unsqueeze(0)?)?;
        layer.xs.unsqueeze(1)?.matmul(&w)?.squeeze(1)
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

    /// The CPU's masked product over bits and the tensor form agree on the
    /// pre-activations and on both gradients, for odd sizes and inputs with
    /// zeros (rows the CPU form skips).
    #[test]
    fn the_cpu_product_matches_the_tensor_form() {
        let dev = Device::Cpu;
        let (n, k, out) = (4, 7, 67);
        let mut rng = Rng::new(3, Stream::Probe);
        let mut xv = vec![0f32; n * k];
        rng.fill_normal(&mut xv);
        xv.iter_mut().step_by(3).for_each(|x| *x = 0.0);
        let mut wv = vec![0f32; k * out];
        rng.fill_normal(&mut wv);
        let mut gv = vec![0f32; n * out];
        rng.fill_normal(&mut gv);
        let g = Tensor::from_vec(gv, (n, out), &dev).unwrap();
        let x = candle_core::Var::from_vec(xv, (n, k), &dev).unwrap();
        let w = candle_core::Var::from_vec(wv, (k, out), &dev).unwrap();
        let b = Tensor::zeros((1, out), candle_core::DType::F32, &dev).unwrap();
        let kind = DropConnectExample::new(0.3);
        let both = |z: Tensor| {
            let grads = (z.clone() * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            [
                flat(&z),
                flat(grads.get(&x).unwrap()),
                flat(grads.get(&w).unwrap()),
            ]
        };
        let layer = LayerView {
            xs: x.as_tensor(),
            w: w.as_tensor(),
            b: &b,
        };
        let mut a = Rng::new(9, Stream::Noise);
        let cpu = kind
            .pre_activations(
                &layer,
                &mut NoiseCtx {
                    rng: &mut a,
                    progress: 0.0,
                },
            )
            .unwrap()
            .unwrap();
        let mut b_rng = Rng::new(9, Stream::Noise);
        let tensors = kind.as_tensors(&layer, &mut b_rng, &dev).unwrap();
        for (what, (c, t)) in ["z", "dx", "dW"]
            .iter()
            .zip(both(cpu).iter().zip(&both(tensors)))
        {
            for (u, v) in c.iter().zip(t) {
                assert!((u - v).abs() <= 1e-5 * (1.0 + v.abs()), "{what}: {u} vs {v}");
            }
        }
        assert_eq!(a.next_u64(), b_rng.next_u64(), "the same draws");
    }
}
