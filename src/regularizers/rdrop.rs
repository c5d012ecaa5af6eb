//! R-Drop (Liang et al. 2021): each step runs the batch through the network
//! twice, each pass with its own dropout masks at rate p, and asks the two
//! predictive distributions P1 and P2 to agree:
//!
//! ```text
//! loss = (CE(P1) + CE(P2)) / 2 + alpha (KL(P1 || P2) + KL(P2 || P1)) / 2
//! ```
//!
//! (the paper sums the two cross-entropies; the mean keeps the data term on
//! the scale of one pass, so `alpha` here is twice the paper's). The KL
//! terms are means over the batch. Each layer set to r-drop adds its own
//! `alpha` term. A step costs two forward and backward passes. Trained
//! through autograd only: the loss couples two passes.

use candle_core::{Device, Result, Shape, Tensor, D};

use super::dropout::bernoulli_scale;
use super::kind::{KindSpec, Param, Reg, P};
use super::{ActivationNoise, NoiseCtx, Regularizer};

pub static SPEC: KindSpec = KindSpec {
    name: "r-drop",
    formula: "dropout in 2 passes; loss = mean CE + alpha (KL(P1||P2) + KL(P2||P1)) / 2",
    source: "Liang et al. 2021",
    hand_written: false,
    params: &[
        P,
        // The agreement weight.
        Param {
            name: "alpha",
            default: Some(1.0),
        },
    ],
    check,
    build: |r, _| Ok(Box::new(RDrop::new(r.p(), r.get("alpha")))),
};

fn check(reg: &Reg) -> std::result::Result<(), String> {
    match reg.get("alpha") {
        a if a < 0.0 => Err(format!("r-drop alpha = {a} must be at least 0")),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RDrop {
    p: f32,
    alpha: f64,
}

impl RDrop {
    pub fn new(p: f64, alpha: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&p),
            "r-drop p must be in [0, 1], got {p}"
        );
        Self { p: p as f32, alpha }
    }
}

impl Regularizer for RDrop {
    fn activation_noise(
        &self,
        shape: &Shape,
        dev: &Device,
        ctx: &mut NoiseCtx,
    ) -> Result<Option<ActivationNoise>> {
        Ok(bernoulli_scale(self.p, shape, dev, ctx)?.map(ActivationNoise::Scale))
    }

    fn passes(&self) -> usize {
        2
    }

    fn pass_loss(&self, logits: &[Tensor]) -> Result<Option<Tensor>> {
        let [a, b] = logits else {
            return Ok(None);
        };
        let n = a.dim(0)? as f64;
        let (la, lb) = (
            candle_nn::ops::log_softmax(a, D::Minus1)?,
            candle_nn::ops::log_softmax(b, D::Minus1)?,
        );
        let diff = (&la - &lb)?;
        // KL(A||B) + KL(B||A) = sum (pA - pB) (log pA - log pB).
        let sym = ((la.exp()? - lb.exp()?)? * diff)?.sum_all()?;
        Ok(Some((sym * (self.alpha / (2.0 * n)))?.reshape(1)?))
    }
}
