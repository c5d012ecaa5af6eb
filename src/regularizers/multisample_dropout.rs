//! Multi-sample dropout (Inoue 2019): each step passes the batch through
//! the network `samples` times, each pass with its own dropout masks at
//! rate p, and the loss is the mean of the passes' cross-entropies:
//!
//! ```text
//! loss = (1/K) sum_k CE(f(x; m_k)),   m_k ~ Bernoulli(1-p) / (1-p),  K = samples
//! ```
//!
//! The paper shares the layers below the dropout between the samples; here
//! every pass is a whole forward pass (the same loss, at K times the
//! cost of a step, forward and backward). A lower-variance estimate of
//! dropout's expected loss per step, not a different regulariser. Trained
//! through autograd only (the fast path takes one pass per step).

use candle_core::{Device, Result, Shape};

use super::dropout::bernoulli_scale;
use super::kind::{KindSpec, Param, Reg, P};
use super::{ActivationNoise, NoiseCtx, Regularizer};

pub static SPEC: KindSpec = KindSpec {
    name: "multisample-dropout",
    formula: "dropout in K passes, loss = mean of their CE, K = samples",
    source: "Inoue 2019",
    hand_written: false,
    params: &[
        P,
        // The passes per step.
        Param {
            name: "samples",
            default: Some(4.0),
        },
    ],
    check,
    build: |r, _| {
        let d = MultisampleDropout::new(r.p(), r.get("samples") as usize);
        Ok(Box::new(d))
    },
};

/// The most passes a step may take.
const MAX_SAMPLES: f64 = 64.0;

fn check(reg: &Reg) -> std::result::Result<(), String> {
    let k = reg.get("samples");
    if k.fract() != 0.0 || !(1.0..=MAX_SAMPLES).contains(&k) {
        return Err(format!(
            "multisample-dropout samples = {k} must be a whole number from 1 to {MAX_SAMPLES}"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub struct MultisampleDropout {
    p: f32,
    samples: usize,
}

impl MultisampleDropout {
    pub fn new(p: f64, samples: usize) -> Self {
        assert!(
            (0.0..=1.0).contains(&p) && samples >= 1,
            "multisample dropout needs p in [0, 1] and samples >= 1, got {p}, {samples}"
        );
        Self {
            p: p as f32,
            samples,
        }
    }
}

impl Regularizer for MultisampleDropout {
    fn activation_noise(
        &self,
        shape: &Shape,
        dev: &Device,
        ctx: &mut NoiseCtx,
    ) -> Result<Option<ActivationNoise>> {
        Ok(bernoulli_scale(self.p, shape, dev, ctx)?.map(ActivationNoise::Scale))
    }

    fn passes(&self) -> usize {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use crate::regularizers::RegKind;

    #[test]
    fn samples_are_a_whole_number_of_passes() {
        let with = |k: f64| {
            let r: crate::regularizers::Reg = toml::from_str(&format!(
                "kind = \"multisample-dropout\"\np = 0.5\nsamples = {k:?}"
            ))
            .unwrap();
            r.validate().map(|_| r.build(&candle_core::Device::Cpu).unwrap().passes())
        };
        assert_eq!(with(8.0), Ok(8));
        assert!(with(2.5).unwrap_err().contains("whole number from 1 to 64"));
        assert!(with(0.0).is_err());
        assert_eq!(RegKind::MultisampleDropout.with(0.5).get("samples"), 4.0);
    }
}
