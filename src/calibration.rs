//! How good predicted class probabilities are: accuracy, negative
//! log-likelihood, and expected calibration error (used by exercise 4's
//! MC dropout).

use serde::{Deserialize, Serialize};

/// Accuracy, negative log-likelihood and expected calibration error of
/// predicted class probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub accuracy: f64,
    pub nll: f64,
    pub ece: f64,
}

/// Scores `probs` ([n, classes] rows summing to 1) against `labels`.
/// ECE: examples binned by confidence (max probability) into `bins` equal
/// bins of [0, 1]; sum over bins of (bin size / n) * |accuracy - mean
/// confidence| in the bin.
pub fn score(probs: &[Vec<f32>], labels: &[u32], bins: usize) -> Scores {
    let n = labels.len() as f64;
    let (mut correct, mut nll) = (0.0, 0.0);
    let mut bin_n = vec![0.0; bins];
    let mut bin_correct = vec![0.0; bins];
    let mut bin_conf = vec![0.0; bins];
    for (p, &y) in probs.iter().zip(labels) {
        let (arg, conf) =
            p.iter().enumerate().fold(
                (0, f32::MIN),
                |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
            );
        let ok = (arg as u32 == y) as u32 as f64;
        correct += ok;
        nll -= (p[y as usize] as f64).max(1e-12).ln();
        let b = ((conf as f64 * bins as f64) as usize).min(bins - 1);
        bin_n[b] += 1.0;
        bin_correct[b] += ok;
        bin_conf[b] += conf as f64;
    }
    let ece = (0..bins)
        .filter(|&b| bin_n[b] > 0.0)
        .map(|b| bin_n[b] / n * (bin_correct[b] / bin_n[b] - bin_conf[b] / bin_n[b]).abs())
        .sum();
    Scores {
        accuracy: correct / n,
        nll: nll / n,
        ece,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed: 4 examples, 2 classes, 2 bins.
    /// confidences 0.9 (right), 0.8 (wrong), 0.6 (right), 0.55 (right):
    /// bin [0.5, 1) only... with 2 bins of [0, 0.5) and [0.5, 1]: all four in
    /// bin 1: accuracy 0.75, mean confidence 0.7125 -> ECE 0.0375.
    /// NLL = -(ln 0.9 + ln 0.2 + ln 0.6 + ln 0.55) / 4.
    #[test]
    fn ece_and_nll_by_hand() {
        let probs = vec![
            vec![0.9, 0.1],
            vec![0.8, 0.2],
            vec![0.4, 0.6],
            vec![0.55, 0.45],
        ];
        let labels = [0, 1, 1, 0];
        let s = score(&probs, &labels, 2);
        assert!((s.accuracy - 0.75).abs() < 1e-12);
        assert!((s.ece - 0.0375).abs() < 1e-6, "{}", s.ece);
        let nll = -((0.9f64).ln() + (0.2f64).ln() + (0.6f64).ln() + (0.55f64).ln()) / 4.0;
        assert!((s.nll - nll).abs() < 1e-6);
        // 15 bins: 0.9 -> bin 13 (right), 0.8 -> bin 12 (wrong), 0.6 -> bin 9,
        // 0.55 -> bin 8: ECE = (0.1 + 0.8 + 0.4 + 0.45) / 4 = 0.4375.
        let s = score(&probs, &labels, 15);
        assert!((s.ece - 0.4375).abs() < 1e-6, "{}", s.ece);
    }
}
