//! Early dropout (Liu et al. 2023, "Dropout reduces underfitting"):
//! dropout at rate p for the first part of training only, then none:
//!
//! ```text
//! p_t = p  while t < until,  0 after,   t = fraction of training done
//! ```
//!
//! The paper's claim is the reverse of dropout's usual one: early in
//! training dropout lowers the variance of mini-batch gradients and aligns
//! them with the whole-data gradient, which helps a model that underfits;
//! its ImageNet runs drop for the first 50 of 300 epochs, about a sixth.
//! The default `until` here is 0.2 (2 of 10 epochs). Inverted dropout at
//! every step, so the fast path trains it.

use super::kind::{KindSpec, Param, Reg, P};
use super::dropout::RateSchedule;

pub static SPEC: KindSpec = KindSpec {
    name: "early-dropout",
    formula: "dropout at rate p while t < until, none after, t the share of training done",
    source: "Liu et al. 2023",
    hand_written: true,
    params: &[
        P,
        // The share of training with dropout.
        Param {
            name: "until",
            default: Some(0.2),
        },
    ],
    check,
    build: |r, _| Ok(Box::new(EarlyDropout::new(r.p(), r.get("until")))),
};

fn check(reg: &Reg) -> std::result::Result<(), String> {
    match reg.get("until") {
        u if !(0.0..=1.0).contains(&u) => Err(format!(
            "early-dropout until = {u} is the share of training with dropout and must be in [0, 1]"
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct EarlyDropout {
    p: f64,
    until: f64,
}

impl EarlyDropout {
    pub fn new(p: f64, until: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&p) && (0.0..=1.0).contains(&until),
            "early dropout needs p and until in [0, 1], got {p}, {until}"
        );
        Self { p, until }
    }
}

impl RateSchedule for EarlyDropout {
    fn rate(&self, t: f64) -> f64 {
        match t < self.until {
            true => self.p,
            false => 0.0,
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_stops_at_until() {
        let e = EarlyDropout::new(0.5, 0.2);
        assert_eq!(e.rate(0.0), 0.5);
        assert_eq!(e.rate(0.19), 0.5);
        assert_eq!(e.rate(0.2), 0.0);
        assert_eq!(e.rate(0.9), 0.0);
    }
}
