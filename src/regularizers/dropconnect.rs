//! DropConnect (Wan et al. 2013): dropout on individual weights instead of
//! activations. During training each weight of the layer is kept with
//! probability 1 - p and the survivors are scaled by 1 / (1 - p):
//!
//! ```text
//! W' = M * W / (1 - p),   M_ij ~ Bernoulli(1 - p),   so E[W'] = W
//! ```
//!
//! One mask is drawn per mini-batch and shared by all its examples. The paper
//! draws a mask per example, which costs a [fan_in, fan_out] mask and a
//! separate product for every example; a per-batch mask keeps one product
//! per layer (and, like the paper's, gives unbiased pre-activations), but its
//! noise is correlated across the batch's examples. Evaluation uses the
//! unmasked weights (the "mean network"; the paper's Gaussian moment-matching
//! inference is not implemented). p = 1 zeroes the weights.
//!
//! Two readings of "dropout on individual weights": [`DropConnect`] masks
//! the matrix that *produces* the hidden layer (Wan et al.'s definition: W1
//! for hidden layer 1, W2 for hidden layer 2); `dropconnect-out` masks the
//! matrix that *consumes* it (W2 for hidden layer 1, W3 for hidden layer 2),
//! the matrix whose whole rows dropout zeroes when it drops a unit.
//!
//! Masks here are shared by the mini-batch: every example of a step sees
//! the same thinned network. Per-example masks, as Wan et al. draw them,
//! are `dropconnect-example` (exact) and `dropconnect-gauss` (its Gaussian
//! form); exercise 6 compares the three.

use candle_core::{Device, Result, Shape, Tensor};

use super::dropout::bernoulli_scale;
use super::kind::{no_check, KindSpec, P};
use super::{NoiseCtx, Regularizer};

pub static SPEC: KindSpec = KindSpec {
    name: "dropconnect",
    formula: "W' = W M / (1-p) on the producing weights, one M per mini-batch",
    source: "Wan et al. 2013 (mask shared by the batch)",
    hand_written: true,
    params: &[P],
    check: no_check,
    build: |r, _| Ok(Box::new(DropConnect::new(r.p()))),
};

#[derive(Debug, Clone, Copy)]
pub struct DropConnect {
    p: f32,
}

impl DropConnect {
    pub fn new(p: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&p),
            "DropConnect p must be in [0, 1], got {p}"
        );
        Self { p: p as f32 }
    }
}

impl Regularizer for DropConnect {
    fn weight_mask(
        &self,
        shape: &Shape,
        dev: &Device,
        ctx: &mut NoiseCtx,
    ) -> Result<Option<Tensor>> {
        bernoulli_scale(self.p, shape, dev, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mlp;
    use crate::regularizers::dropconnect_out::DropConnectOut;
    use crate::regularizers::Identity;
    use crate::rng::{Rng, Stream};
    use candle_core::Device;

    /// On a 1000x1000 matrix of ones the kept fraction is 1 - p (sd of the
    /// fraction sqrt(p(1-p)/10^6) = 0.0005; 5 sd allowed) and survivors are
    /// exactly 1/(1-p).
    #[test]
    fn mask_rate_and_scale() {
        let w = Tensor::ones((1000, 1000), candle_core::DType::F32, &Device::Cpu).unwrap();
        for p in [0.1, 0.5] {
            let mut rng = Rng::new(1, Stream::Noise);
            let mut ctx = NoiseCtx {
                rng: &mut rng,
                progress: 0.0,
            };
            let out: Vec<f32> = DropConnect::new(p)
                .weights(&w, &mut ctx)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let kept = out.iter().filter(|&&x| x != 0.0).count() as f64 / out.len() as f64;
            assert!((kept - (1.0 - p)).abs() < 0.0025, "p={p}: kept {kept}");
            let scale = 1.0 / (1.0 - p as f32);
            assert!(out.iter().all(|&x| x == 0.0 || (x - scale).abs() < 1e-6));
        }
    }

    /// Evaluation uses the unmasked weights: a model with DropConnect slots
    /// gives exactly the eval-mode output of the same model without them.
    #[test]
    fn evaluation_is_unmasked() {
        let dev = Device::Cpu;
        let with = Mlp::new(
            vec![
                Box::new(DropConnect::new(0.5)),
                Box::new(DropConnect::new(0.5)),
            ],
            &mut Rng::new(3, Stream::Init),
            &dev,
        )
        .unwrap();
        let without = Mlp::new(
            vec![Box::new(Identity), Box::new(Identity)],
            &mut Rng::new(3, Stream::Init),
            &dev,
        )
        .unwrap();
        let xs = Tensor::rand(0f32, 1., (4, 784), &dev).unwrap();
        let mut rng = Rng::new(0, Stream::Noise);
        let mut ctx = NoiseCtx {
            rng: &mut rng,
            progress: 0.0,
        };
        let a: Vec<Vec<f32>> = with
            .forward_t(&xs, false, &mut ctx)
            .unwrap()
            .to_vec2()
            .unwrap();
        let b: Vec<Vec<f32>> = without
            .forward_t(&xs, false, &mut ctx)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(a, b);
        let c: Vec<Vec<f32>> = with
            .forward_t(&xs, true, &mut ctx)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_ne!(a, c, "training mode does mask");
    }

    /// The two readings mask different matrices. With p = 1 after hidden
    /// layer 1, `dropconnect` zeroes W1 (so h1 = relu(b1) whatever the
    /// input) and `dropconnect-out` zeroes W2 (so h1 still depends on the
    /// input, and h2 = relu(b2) does not).
    #[test]
    fn the_two_readings_mask_the_producing_and_the_consuming_matrix() {
        let dev = Device::Cpu;
        let xs = (Tensor::arange(0f32, 3136f32, &dev)
            .unwrap()
            .reshape((4, 784))
            .unwrap()
            / 3136.0)
            .unwrap();
        let trace = |slot: Box<dyn Regularizer>| {
            let m = Mlp::new(
                vec![slot, Box::new(Identity)],
                &mut Rng::new(3, Stream::Init),
                &dev,
            )
            .unwrap();
            let mut rng = Rng::new(1, Stream::Noise);
            let mut ctx = NoiseCtx {
                rng: &mut rng,
                progress: 0.0,
            };
            m.trace(&xs, true, &mut ctx).unwrap()
        };
        // Rows of a layer's output that differ between examples.
        let varies = |t: &Tensor| {
            let v: Vec<Vec<f32>> = t.to_vec2().unwrap();
            v.iter().any(|r| r != &v[0])
        };
        let produce = trace(Box::new(DropConnect::new(1.0)));
        assert!(!varies(&produce.relu[0]), "W1 masked: h1 = relu(b1)");
        let consume = trace(Box::new(DropConnectOut::new(1.0)));
        assert!(varies(&consume.relu[0]), "W1 untouched");
        assert!(!varies(&consume.relu[1]), "W2 masked: h2 = relu(b2)");
        assert!(DropConnectOut::new(0.5)
            .weight_mask(
                &(3, 3).into(),
                &dev,
                &mut NoiseCtx {
                    rng: &mut Rng::new(1, Stream::Noise),
                    progress: 0.0
                }
            )
            .unwrap()
            .is_none());
    }
}
