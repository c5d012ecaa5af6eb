//! Curriculum dropout (Morerio et al. 2017): dropout whose rate rises
//! from 0 to its target p as training goes on, so that the network first
//! learns from easy (unperturbed) examples and meets dropout's noise later:
//!
//! ```text
//! p_t = p (1 - exp(-gamma t)),  t = fraction of training done
//! ```
//!
//! The paper writes the retain probability as (1 - p) + p exp(-gamma t)
//! with t in iterations and suggests gamma = 10 / T for T iterations; in
//! the fraction of training done that is gamma = 10, the default, at which
//! the rate is 95% of its target a third of the way through. Inverted
//! dropout at rate p_t at every step, so the fast path trains it.

use super::kind::{KindSpec, Param, Reg, P};
use super::dropout::RateSchedule;

pub static SPEC: KindSpec = KindSpec {
    name: "curriculum-dropout",
    formula: "dropout at rate p (1 - exp(-gamma t)), t the share of training done",
    source: "Morerio et al. 2017",
    hand_written: true,
    params: &[
        P,
        // How fast the rate approaches p, per unit of training.
        Param {
            name: "gamma",
            default: Some(10.0),
        },
    ],
    check,
    build: |r, _| Ok(Box::new(CurriculumDropout::new(r.p(), r.get("gamma")))),
};

fn check(reg: &Reg) -> std::result::Result<(), String> {
    match reg.get("gamma") {
        g if g <= 0.0 => Err(format!(
            "curriculum-dropout gamma = {g} must be greater than 0 (10 is the paper's)"
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct CurriculumDropout {
    p: f64,
    gamma: f64,
}

impl CurriculumDropout {
    pub fn new(p: f64, gamma: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&p) && gamma > 0.0,
            "curriculum dropout needs p in [0, 1] and gamma > 0, got {p}, {gamma}"
        );
        Self { p, gamma }
    }
}

impl RateSchedule for CurriculumDropout {
    fn rate(&self, t: f64) -> f64 {
        self.p * (1.0 - (-self.gamma * t.clamp(0.0, 1.0)).exp())
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::regularizers::testutil::moments;

    #[test]
    fn the_rate_rises_to_its_target() {
        let c = CurriculumDropout::new(0.5, 10.0);
        assert_eq!(c.rate(0.0), 0.0);
        assert!((c.rate(0.3) - 0.5 * (1.0 - (-3.0f64).exp())).abs() < 1e-12);
        assert!(c.rate(1.0) > 0.4999 && c.rate(1.0) < 0.5);
        // testutil::moments runs at progress 0.5: rate 0.5 (1 - e^-5).
        let p = c.rate(0.5);
        let (mean, var) = moments(&c, 1.0, 1_000_000);
        assert!((mean - 1.0).abs() < 0.006, "mean {mean}");
        let want = p / (1.0 - p);
        assert!((var - want).abs() < 0.02 * want, "var {var}, want {want}");
    }
}
