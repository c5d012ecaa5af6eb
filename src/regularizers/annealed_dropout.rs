//! Annealed dropout (Rennie, Goel and Thomas 2014): Bernoulli dropout
//! whose rate falls linearly from p to 0 over training,
//!
//! ```text
//! p_t = p * (1 - t),  t = fraction of training done
//! ```
//!
//! Dropout's noise is most useful early, when units would otherwise
//! co-adapt; late in training it mostly adds variance to the gradient and
//! a train/test mismatch (the network is evaluated without it). Annealing
//! keeps the early regularisation and lets the last epochs fine-tune the
//! network that will be evaluated. Unbiased at every t (it is inverted
//! dropout at rate p_t).

use super::kind::{no_check, KindSpec, P};
use super::dropout::RateSchedule;

pub static SPEC: KindSpec = KindSpec {
    name: "annealed-dropout",
    formula: "dropout at rate p (1 - t), t the share of training done",
    source: "Rennie et al. 2014 (annealed dropout)",
    hand_written: true,
    params: &[P],
    check: no_check,
    build: |r, _| Ok(Box::new(AnnealedDropout::new(r.p()))),
};

#[derive(Debug, Clone, Copy)]
pub struct AnnealedDropout {
    p: f64,
}

impl AnnealedDropout {
    pub fn new(p: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&p),
            "annealed dropout needs p in [0, 1], got {p}"
        );
        Self { p }
    }
}

impl RateSchedule for AnnealedDropout {
    fn rate(&self, t: f64) -> f64 {
        self.p * (1.0 - t.clamp(0.0, 1.0))
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::regularizers::testutil::moments;

    #[test]
    fn annealed_dropout_rate_and_mean() {
        let a = AnnealedDropout::new(0.5);
        assert_eq!(a.rate(0.0), 0.5);
        assert_eq!(a.rate(0.5), 0.25);
        assert_eq!(a.rate(1.0), 0.0);
        // testutil::moments runs at progress 0.5: rate 0.25.
        let (mean, var) = moments(&a, 1.0, 1_000_000);
        assert!((mean - 1.0).abs() < 0.005, "mean {mean}");
        let want = 0.25 / 0.75;
        assert!((var - want).abs() < 0.02 * want, "var {var}");
    }
}
