//! Exercise 4: why dropout is switched off at test time.
//!
//! Question: the book evaluates with dropout off. What happens if it stays
//! on? How much does a single noisy forward pass cost, and does averaging the
//! predictions of many noisy passes (MC dropout, Gal & Ghahramani 2016) match
//! or beat the deterministic network, and at what compute price?
//!
//! Hypothesis: one noisy pass loses accuracy (it is one random thinned
//! network); averaging K passes recovers it as K grows and can improve
//! calibration and likelihood slightly, at K times the cost; the
//! deterministic pass (inverted dropout's weight scaling) is a cheap, close
//! approximation of that average, which is why dropout is turned off.
//!
//! Swept: models trained with the book's rates, x seeds. Each is evaluated
//! on the test set deterministically and with MC dropout for K in `passes`.
//!
//! Outputs (besides the common CSVs): `mc.csv` (per seed and K: mode, K,
//! accuracy, NLL, ECE with 15 bins, forward passes), `mc_summary.csv` (mean,
//! sd and 95% CI over seeds, and the paired difference to deterministic
//! evaluation), `mc.png` (accuracy and NLL against K, deterministic as a
//! dashed line), `verdict.md`.

use anyhow::Result;
use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use super::markdown::{seeds_note, summary_table, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, QUICK};
use super::{dropout_config, rates_label, Common, Experiment, Finished};
use crate::analysis::pts;
use crate::calibration::{score, Scores};
use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::model::Mlp;
use crate::output::plot::{self, Panel, Series, Spread};
use crate::output::write_csv;
use crate::regularizers::NoiseCtx;
use crate::rng::{Rng, Stream};
use crate::stats::{self, Estimate};
use crate::sweep::{RunResult, RunSpec, Worker};
use crate::train::TrainHook;

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "test-time",
    number: 4,
    title: "Why dropout is off at test time",
    question: "What happens if dropout stays on when the model is evaluated: how much does one noisy pass cost, and does averaging many noisy passes (MC dropout) match the deterministic network, at what price?",
    about: "Exercise 4: why dropout is off at test time: dropout left on, and MC dropout.",
    examples: "drop-exp test-time\n  drop-exp test-time --seeds 3 --epochs 5",
    defaults: include_str!("../../experiments/test-time.toml"),
    report: "",
    quick: QUICK,
    flags: &[],
    build: |common, table| Ok(Box::new(TestTime::new(common, parse(table)?))),
};

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub rates: [f64; 2],
    pub passes: Vec<u32>,
    pub ece_bins: u32,
}

impl super::CheckSettings for Settings {
    fn check(&self) -> Result<(), String> {
        super::settings::check_probs("rates", self.rates)?;
        if self.passes.is_empty() || self.passes.contains(&0) {
            return Err("`passes` must list numbers of passes of at least 1".into());
        }
        if self.ece_bins == 0 {
            return Err("`ece_bins` must be at least 1".into());
        }
        Ok(())
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

pub struct TestTime {
    common: Common,
    settings: Settings,
    worker: Box<Worker<'static>>,
}

impl TestTime {
    pub fn new(common: Common, settings: Settings) -> Self {
        let s = settings.clone();
        let worker =
            move |spec: &RunSpec, data: &Dataset, threads: usize, hook: &mut dyn TrainHook| {
                let out = crate::train::train(&spec.config, spec.seed, data, threads, hook)?;
                if out.diverged {
                    return Ok(RunResult {
                        diverged: true,
                        rows: out.rows,
                        extra: serde_json::Value::Null,
                    });
                }
                let mut rng = Rng::new(spec.seed, Stream::Probe);
                let rows: Vec<McRow> = evaluate_mc(
                    &out.model,
                    &data.test_x,
                    &data.test_y,
                    &s.passes,
                    s.ece_bins as usize,
                    &mut rng,
                )?
                .into_iter()
                .map(|(mode, k, sc)| McRow {
                    seed: spec.seed,
                    passes: k,
                    mode,
                    k,
                    accuracy: sc.accuracy,
                    nll: sc.nll,
                    ece: sc.ece,
                })
                .collect();
                Ok(RunResult {
                    diverged: false,
                    rows: out.rows,
                    extra: serde_json::to_value(rows)?,
                })
            };
        Self {
            common,
            settings,
            worker: Box::new(worker),
        }
    }
}

/// One row of `mc_summary.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct McSummary {
    pub mode: Mode,
    pub k: u32,
    pub passes: u32,
    pub n: usize,
    pub accuracy_mean: f64,
    pub accuracy_ci_low: f64,
    pub accuracy_ci_high: f64,
    pub nll_mean: f64,
    pub nll_ci_low: f64,
    pub nll_ci_high: f64,
    pub ece_mean: f64,
    /// Paired (by seed) difference to deterministic evaluation.
    pub accuracy_diff: f64,
    pub accuracy_diff_p: f64,
    pub nll_diff: f64,
    pub nll_diff_p: f64,
}

fn summarise(rows: &[McRow]) -> Vec<McSummary> {
    let det: Vec<&McRow> = rows
        .iter()
        .filter(|r| r.mode == Mode::Deterministic)
        .collect();
    let mut keys: Vec<(Mode, u32)> = rows.iter().map(|r| (r.mode, r.k)).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|(mode, k)| {
            let these: Vec<&McRow> = rows.iter().filter(|r| r.mode == mode && r.k == k).collect();
            let pair = |f: fn(&McRow) -> f64| {
                let (a, b): (Vec<f64>, Vec<f64>) = these
                    .iter()
                    .filter_map(|r| det.iter().find(|d| d.seed == r.seed).map(|d| (f(d), f(r))))
                    .unzip();
                stats::paired(&a, &b)
            };
            let acc = Estimate::of(&these.iter().map(|r| r.accuracy).collect::<Vec<_>>());
            let nll = Estimate::of(&these.iter().map(|r| r.nll).collect::<Vec<_>>());
            let (pa, pn) = (pair(|r| r.accuracy), pair(|r| r.nll));
            McSummary {
                mode,
                k,
                passes: k,
                n: these.len(),
                accuracy_mean: acc.mean,
                accuracy_ci_low: acc.ci_low,
                accuracy_ci_high: acc.ci_high,
                nll_mean: nll.mean,
                nll_ci_low: nll.ci_low,
                nll_ci_high: nll.ci_high,
                ece_mean: stats::mean(&these.iter().map(|r| r.ece).collect::<Vec<_>>()),
                accuracy_diff: pa.diff,
                accuracy_diff_p: pa.p,
                nll_diff: pn.diff,
                nll_diff_p: pn.p,
            }
        })
        .collect()
}

impl Experiment for TestTime {
    super::experiment_accessors!(SPEC);
    fn configs(&self) -> Vec<(String, TrainConfig)> {
        let [p1, p2] = self.settings.rates;
        vec![(rates_label(p1, p2), dropout_config(&self.common, p1, p2))]
    }
    fn pairs(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn worker(&self) -> &Worker<'_> {
        self.worker.as_ref()
    }

    fn conclude(&self, r: &Finished) -> Result<()> {
        let mut rows: Vec<McRow> = Vec::new();
        for run in r.groups.iter().flat_map(|g| g.runs.iter()) {
            if !run.diverged {
                rows.extend(crate::sweep::decode_extra::<Vec<McRow>>(run, r.out)?);
            }
        }
        write_csv(&r.out.join("mc.csv"), &rows)?;
        let summary = summarise(&rows);
        write_csv(&r.out.join("mc_summary.csv"), &summary)?;
        let mc: Vec<&McSummary> = summary.iter().filter(|s| s.mode == Mode::Mc).collect();
        let det = summary.iter().find(|s| s.mode == Mode::Deterministic);
        let ticks: Vec<String> = mc.iter().map(|s| s.k.to_string()).collect();
        let panel = |title: &str, y: &str, pick: fn(&McSummary) -> (f64, f64, f64)| Panel {
            title: title.into(),
            x_label: "K, stochastic passes averaged (MC dropout)".into(),
            y_label: y.into(),
            series: vec![Series {
                name: "MC dropout (mean over seeds, 95% CI)".into(),
                points: mc
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let (m, lo, hi) = pick(s);
                        (i as f64, m, lo, hi)
                    })
                    .collect(),
                spread: Spread::Bars,
                dashed: false,
            }],
            x_ticks: Some(ticks.clone()),
            hlines: det
                .map(|d| vec![("dropout off (deterministic)".to_string(), pick(d).0)])
                .unwrap_or_default(),
            log_y: false,
            clip: None,
        };
        plot::panels(
            &r.out.join("mc.png"),
            &format!("Exercise {}: dropout at test time", SPEC.number),
            &[
                panel("test accuracy", "accuracy", |s| {
                    (s.accuracy_mean, s.accuracy_ci_low, s.accuracy_ci_high)
                }),
                panel("test negative log-likelihood", "NLL (nats)", |s| {
                    (s.nll_mean, s.nll_ci_low, s.nll_ci_high)
                }),
            ],
            2,
        )?;
        write_verdict(r, &self.verdict(r, &summary))
    }
}

impl TestTime {
    fn verdict(&self, r: &Finished, summary: &[McSummary]) -> String {
        let mut v = format!(
            "# {}\n\n{}; models trained with rates {:?}, evaluated on the test set. Differences are paired by seed against deterministic evaluation (dropout off).\n\n",
            SPEC.heading(),
            seeds_note(&self.common),
            self.settings.rates
        );
        let Some(det) = summary.iter().find(|s| s.mode == Mode::Deterministic) else {
            return v + "No run finished; nothing to report.\n";
        };
        let mc: Vec<&McSummary> = summary.iter().filter(|s| s.mode == Mode::Mc).collect();
        if let Some(one) = mc.iter().find(|s| s.k == 1) {
            v += &format!(
                "- **One noisy pass** (dropout left on): accuracy {:.2}% vs {:.2}% deterministic, {} points (paired p = {:.3}); NLL {:.4} vs {:.4}.\n",
                100.0 * one.accuracy_mean,
                100.0 * det.accuracy_mean,
                pts(one.accuracy_diff),
                one.accuracy_diff_p,
                one.nll_mean,
                det.nll_mean
            );
        }
        v += &mc_accuracy_sentence(&mc, det);
        if let Some(s) = mc.iter().find(|s| s.nll_mean <= det.nll_mean) {
            v += &format!(
                "- On NLL, MC dropout matches or beats deterministic evaluation from K = {} ({:.4} vs {:.4}, paired p = {:.3}).\n",
                s.k, s.nll_mean, det.nll_mean, s.nll_diff_p
            );
        } else {
            v += "- On NLL, MC dropout never matches deterministic evaluation.\n";
        }
        if let Some(last) = mc.last() {
            v += &format!(
                "- At K = {}: accuracy {:.2}% ({} points vs deterministic, p = {:.3}), NLL {:.4}, ECE {:.4} (deterministic ECE {:.4}), {} forward passes.\n",
                last.k,
                100.0 * last.accuracy_mean,
                pts(last.accuracy_diff),
                last.accuracy_diff_p,
                last.nll_mean,
                last.ece_mean,
                det.ece_mean,
                last.passes
            );
        }
        v += "\n| mode | K | passes | accuracy (95% CI) | NLL | ECE | accuracy vs deterministic (p) |\n|---|---|---|---|---|---|---|\n";
        for s in summary {
            v += &format!(
                "| {} | {} | {} | {:.2}% ({:.2} to {:.2}) | {:.4} | {:.4} | {} ({:.3}) |\n",
                s.mode,
                s.k,
                s.passes,
                100.0 * s.accuracy_mean,
                100.0 * s.accuracy_ci_low,
                100.0 * s.accuracy_ci_high,
                s.nll_mean,
                s.ece_mean,
                pts(s.accuracy_diff),
                s.accuracy_diff_p
            );
        }
        v += "\n";
        v += &summary_table(&r.summary);
        v
    }
}

/// The verdict's sentence on how MC dropout's accuracy compares with
/// deterministic evaluation as K grows.
fn mc_accuracy_sentence(mc: &[&McSummary], det: &McSummary) -> String {
    let mut v = String::new();
    let matches = mc.iter().find(|s| s.accuracy_mean >= det.accuracy_mean);
    match matches {
        Some(s) => {
            v += &format!(
                "- **MC dropout** first matches the deterministic accuracy at K = {} ({:.2}% vs {:.2}%, difference {} points, paired p = {:.3}), at {} times the compute of one pass.\n",
                s.k,
                100.0 * s.accuracy_mean,
                100.0 * det.accuracy_mean,
                pts(s.accuracy_diff),
                s.accuracy_diff_p,
                s.passes
            )
        }
        None => {
            v += &format!(
                "- **MC dropout** never reaches the deterministic accuracy for K up to {}",
                mc.last().map_or(0, |s| s.k)
            );
            match mc.iter().position(|s| s.accuracy_diff_p >= 0.05) {
                Some(i) => {
                    let s = mc[i];
                    v += &format!(
                        "; the shortfall is first not significant at K = {} ({} forward passes: {} points, paired p = {:.3})",
                        s.k,
                        s.passes,
                        pts(s.accuracy_diff),
                        s.accuracy_diff_p
                    );
                    let again: Vec<String> = mc[i + 1..]
                        .iter()
                        .filter(|s| s.accuracy_diff_p < 0.05)
                        .map(|s| {
                            format!(
                                "K = {} ({} points, p = {:.3})",
                                s.k,
                                pts(s.accuracy_diff),
                                s.accuracy_diff_p
                            )
                        })
                        .collect();
                    if again.is_empty() {
                        v += " and stays so for larger K.\n";
                    } else {
                        v += &format!(
                            ", but is significant again at {} ({} values of K were tested, each at the 5% level).\n",
                            again.join(", "),
                            mc.len()
                        );
                    }
                }
                None => v += ", and the shortfall stays significant.\n",
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn mc(k: u32, acc: f64, p: f64) -> McSummary {
        McSummary {
            mode: if k == 0 {
                Mode::Deterministic
            } else {
                Mode::Mc
            },
            k,
            passes: k,
            n: 5,
            accuracy_mean: acc,
            accuracy_ci_low: acc,
            accuracy_ci_high: acc,
            nll_mean: 0.4,
            nll_ci_low: 0.4,
            nll_ci_high: 0.4,
            ece_mean: 0.02,
            accuracy_diff: acc - 0.85,
            accuracy_diff_p: p,
            nll_diff: 0.0,
            nll_diff_p: 1.0,
        }
    }

    /// The sentence names the first K whose shortfall is not significant and
    /// any larger K where it is significant again, instead of claiming "from
    /// K on".
    #[test]
    fn mc_sentence_reports_later_significant_k() {
        let det = mc(0, 0.85, f64::NAN);
        let rows = [mc(1, 0.84, 0.001), mc(5, 0.849, 0.3), mc(50, 0.8492, 0.02)];
        let refs: Vec<&McSummary> = rows.iter().collect();
        let s = mc_accuracy_sentence(&refs, &det);
        assert!(s.contains("never reaches"), "{s}");
        assert!(s.contains("first not significant at K = 5"), "{s}");
        assert!(s.contains("significant again at K = 50"), "{s}");
        let s = mc_accuracy_sentence(&refs[..2], &det);
        assert!(s.contains("stays so for larger K"), "{s}");
        let rows = [mc(1, 0.84, 0.001), mc(10, 0.851, 0.5)];
        let refs: Vec<&McSummary> = rows.iter().collect();
        let s = mc_accuracy_sentence(&refs, &det);
        assert!(
            s.contains("first matches the deterministic accuracy at K = 10"),
            "{s}"
        );
    }

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
