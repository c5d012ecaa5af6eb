//! MC dropout: a trained model evaluated with its regularisers on, K noisy
//! passes averaged, against the deterministic pass (exercise 4). Passes draw
//! their own noise stream ([`crate::rng::Stream::Probe`]).

use anyhow::Result;
use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::calibration::{score, Scores};
use crate::model::Mlp;
use crate::regularizers::NoiseCtx;
use crate::rng::Rng;

/// How the test set is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Dropout off: one deterministic pass.
    Deterministic,
    /// Dropout on: the average of K noisy passes (MC dropout).
    Mc,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Deterministic => "deterministic",
            Mode::Mc => "mc",
        })
    }
}

/// One row of `mc.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McRow {
    pub seed: u64,
    pub mode: Mode,
    pub k: u32,
    pub accuracy: f64,
    pub nll: f64,
    pub ece: f64,
    /// Forward passes over the test set this estimate costs.
    pub passes: u32,
}

/// Softmax probabilities of one forward pass over `xs` (in chunks).
fn probs(model: &Mlp, xs: &Tensor, train: bool, rng: &mut Rng) -> candle_core::Result<Tensor> {
    let n = xs.dim(0)?;
    let mut ctx = NoiseCtx { rng, progress: 1.0 };
    let mut parts = Vec::new();
    for start in (0..n).step_by(2000) {
        let len = 2000.min(n - start);
        let logits = model
            .forward_t(&xs.narrow(0, start, len)?, train, &mut ctx)?
            .detach();
        parts.push(candle_nn::ops::softmax(&logits, D::Minus1)?);
    }
    Tensor::cat(&parts, 0)
}

/// Deterministic evaluation and MC dropout for each K in `ks` (nested: the
/// average of K passes reuses the first K), on `xs`/`ys`.
pub fn evaluate_mc(
    model: &Mlp,
    xs: &Tensor,
    ys: &Tensor,
    ks: &[u32],
    bins: usize,
    rng: &mut Rng,
) -> Result<Vec<(Mode, u32, Scores)>> {
    let labels: Vec<u32> = ys.to_vec1()?;
    let det = probs(model, xs, false, rng)?.to_vec2::<f32>()?;
    let mut out = vec![(Mode::Deterministic, 1, score(&det, &labels, bins))];
    let kmax = *ks.iter().max().unwrap_or(&0);
    let mut sum = Tensor::zeros((xs.dim(0)?, crate::data::CLASSES), DType::F32, xs.device())?;
    for k in 1..=kmax {
        sum = (sum + probs(model, xs, true, rng)?)?;
        if ks.contains(&k) {
            let avg = (&sum / k as f64)?.to_vec2::<f32>()?;
            out.push((Mode::Mc, k, score(&avg, &labels, bins)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;
    use crate::rng::Stream;
    use candle_core::Device;

    /// MC dropout with K = 1 is exactly one stochastic pass.
    #[test]
    fn mc_with_one_pass_is_a_single_stochastic_pass() {
        let dev = Device::Cpu;
        let cfg = TrainConfig::default();
        let model = crate::train::init_model(&cfg, 0, &dev).unwrap();
        let xs = Tensor::rand(0f32, 1., (50, 784), &dev).unwrap();
        let ys =
            Tensor::from_vec((0..50u32).map(|i| i % 10).collect::<Vec<_>>(), 50, &dev).unwrap();
        let mut rng = Rng::new(9, Stream::Probe);
        let res = evaluate_mc(&model, &xs, &ys, &[1], 15, &mut rng).unwrap();
        // The same generator state: one deterministic pass draws nothing, then one noisy pass.
        let mut rng2 = Rng::new(9, Stream::Probe);
        let _ = probs(&model, &xs, false, &mut rng2).unwrap();
        let single = probs(&model, &xs, true, &mut rng2)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let labels: Vec<u32> = ys.to_vec1().unwrap();
        assert_eq!(res[1].0, Mode::Mc);
        assert_eq!(res[1].2, score(&single, &labels, 15));
        // ...and differs from the deterministic pass.
        assert_ne!(res[0].2, res[1].2);
    }
}
