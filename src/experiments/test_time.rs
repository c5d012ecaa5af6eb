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
use serde::{Deserialize, Serialize};

use super::figures;
use super::markdown::{seeds_note, summary_table, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, QUICK};
use super::{dropout_config, rates_label, Common, Experiment, Finished};
use crate::config::TrainConfig;
use crate::data::Dataset;
use crate::mc_dropout::{evaluate_mc, McRow, Mode};
use crate::output::plot::{self, DotRow, Panel, Panels, Series};
use crate::output::write_csv;
use crate::regularizers::RegKind;
use crate::rng::{Rng, Stream};
use crate::stats::{self, Estimate, TTest};
use crate::sweep::{RunResult, RunSpec, Worker};
use crate::train::TrainHook;
use crate::verdict::{p_text, pts, Verdict, ALPHA};

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
                let out = crate::cohort::train(&spec.config, spec.seed, data, threads, hook)?;
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
    /// Paired (by seed) difference to deterministic evaluation, with its 95% CI.
    pub accuracy_diff: f64,
    pub accuracy_diff_ci_low: f64,
    pub accuracy_diff_ci_high: f64,
    pub accuracy_diff_p: f64,
    /// `accuracy_diff_p` adjusted by Holm over the values of K.
    pub accuracy_p_holm: f64,
    /// TOST p-value of equivalence within the margin, Holm-adjusted likewise.
    pub accuracy_p_equiv: f64,
    /// Against deterministic evaluation (empty on its own row).
    #[serde(serialize_with = "verdict_or_empty")]
    pub verdict: Option<Verdict>,
    pub nll_diff: f64,
    pub nll_diff_p: f64,
}

fn verdict_or_empty<S: serde::Serializer>(v: &Option<Verdict>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&v.to_string()),
        None => s.serialize_str(""),
    }
}

/// Per mode and K, over seeds, with MC dropout's accuracy compared with
/// deterministic evaluation: paired by seed, Holm-adjusted over the values
/// of K, equivalence at `margin` (a fraction).
fn summarise(rows: &[McRow], margin: f64) -> Vec<McSummary> {
    let mut out = describe_levels(rows);
    let tests: Vec<Option<TTest>> = out
        .iter()
        .map(|s| (s.mode == Mode::Mc).then(|| paired_accuracy(rows, s.k)))
        .collect();
    let usable = |t: &Option<TTest>| t.filter(|t| t.n >= stats::MIN_RUNS_FOR_INTERVAL);
    let p: Vec<f64> = tests
        .iter()
        .map(|t| usable(t).map_or(f64::NAN, |t| t.p))
        .collect();
    let p_eq: Vec<f64> = tests
        .iter()
        .map(|t| usable(t).map_or(f64::NAN, |t| stats::tost(t.diff, t.se, t.df, margin)))
        .collect();
    let (p_holm, p_eq_holm) = (stats::holm(&p), stats::holm(&p_eq));
    for (i, s) in out.iter_mut().enumerate() {
        let Some(t) = tests[i] else { continue };
        s.accuracy_diff_ci_low = t.ci_low;
        s.accuracy_diff_ci_high = t.ci_high;
        s.accuracy_p_holm = p_holm[i];
        s.accuracy_p_equiv = p_eq_holm[i];
        s.verdict = Some(if s.accuracy_p_holm < ALPHA {
            if t.diff > 0.0 {
                Verdict::Better
            } else {
                Verdict::Worse
            }
        } else if s.accuracy_p_equiv < ALPHA {
            Verdict::Equivalent
        } else {
            Verdict::Undecided
        });
    }
    out
}

/// MC dropout with K passes minus deterministic evaluation, paired by seed.
fn paired_accuracy(rows: &[McRow], k: u32) -> TTest {
    let (a, b): (Vec<f64>, Vec<f64>) = rows
        .iter()
        .filter(|r| r.mode == Mode::Mc && r.k == k)
        .filter_map(|r| {
            rows.iter()
                .find(|d| d.mode == Mode::Deterministic && d.seed == r.seed)
                .map(|d| (d.accuracy, r.accuracy))
        })
        .unzip();
    stats::paired(&a, &b)
}

/// Means and intervals per mode and K.
fn describe_levels(rows: &[McRow]) -> Vec<McSummary> {
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
                accuracy_diff_ci_low: f64::NAN,
                accuracy_diff_ci_high: f64::NAN,
                accuracy_diff_p: pa.p,
                accuracy_p_holm: f64::NAN,
                accuracy_p_equiv: f64::NAN,
                verdict: None,
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
    /// Its runs carry measurements plain runs lack.
    fn adopts_plain_runs(&self) -> bool {
        false
    }
    fn worker(&self) -> Option<&Worker<'_>> {
        Some(self.worker.as_ref())
    }

    fn conclude(&self, r: &Finished) -> Result<String> {
        let mut rows: Vec<McRow> = Vec::new();
        for run in r.groups.iter().flat_map(|g| g.runs.iter()) {
            if !run.diverged {
                rows.extend(crate::sweep::decode_extra::<Vec<McRow>>(run, r.out)?);
            }
        }
        write_csv(&r.out.join("mc.csv"), &rows)?;
        let summary = summarise(&rows, self.common.margin / 100.0);
        write_csv(&r.out.join("mc_summary.csv"), &summary)?;
        self.figures(r, &summary)?;
        let answer = answer(&summary, self.common.margin);
        write_verdict(r, answer, &self.verdict(r, &summary))
    }
}

impl TestTime {
    fn verdict(&self, r: &Finished, summary: &[McSummary]) -> String {
        let mut v = format!(
            "# {}\n\n{}; models trained with rates {:?}; each run's final model evaluated on the test set (the comparisons below are all on that model, so no epoch is selected for them). Differences are paired by seed against deterministic evaluation (dropout off).\n\n",
            SPEC.heading(),
            seeds_note(&self.common),
            self.settings.rates
        );
        let Some(det) = summary.iter().find(|s| s.mode == Mode::Deterministic) else {
            return v + "No run finished; nothing to report.\n";
        };
        let mc: Vec<&McSummary> = summary.iter().filter(|s| s.mode == Mode::Mc).collect();
        v += &why_off(&mc, det, self.common.margin);
        v += "\n| mode | K | passes | accuracy (95% CI over seeds) | NLL | ECE | accuracy minus deterministic (95% CI) | Holm p | verdict |\n|---|---|---|---|---|---|---|---|---|\n";
        for s in summary {
            let interval = |lo: f64, hi: f64| {
                if lo.is_nan() {
                    "too few runs".to_string()
                } else {
                    format!("{:.2} to {:.2}", 100.0 * lo, 100.0 * hi)
                }
            };
            let (diff, p, verdict) = match s.verdict {
                Some(verdict) => (
                    format!(
                        "{} ({})",
                        pts(s.accuracy_diff),
                        interval(s.accuracy_diff_ci_low, s.accuracy_diff_ci_high)
                    ),
                    p_text(s.accuracy_p_holm),
                    verdict.to_string(),
                ),
                None => ("(reference)".into(), String::new(), String::new()),
            };
            v += &format!(
                "| {} | {} | {} | {:.2}% ({}) | {:.4} | {:.4} | {diff} | {p} | {verdict} |\n",
                s.mode,
                s.k,
                s.passes,
                100.0 * s.accuracy_mean,
                interval(s.accuracy_ci_low, s.accuracy_ci_high),
                s.nll_mean,
                s.ece_mean,
            );
        }
        v += "\n";
        v += &summary_table(&r.summary);
        v
    }
}

/// The answer in a sentence: what one noisy pass costs, from which K the
/// MC average is equivalent, and what it buys.
fn answer(summary: &[McSummary], margin: f64) -> String {
    let mc: Vec<&McSummary> = summary.iter().filter(|s| s.mode == Mode::Mc).collect();
    let Some(det) = summary.iter().find(|s| s.mode == Mode::Deterministic) else {
        return "No run finished.".into();
    };
    let mut a = String::new();
    if let Some(one) = mc.iter().find(|s| s.k == 1) {
        a += &format!(
            "One noisy pass (dropout left on) changes test accuracy by {} points: **{}**. ",
            pts(one.accuracy_diff),
            one.verdict.map_or("not compared".into(), |v| v.to_string())
        );
    }
    match mc.iter().find(|s| s.verdict == Some(Verdict::Equivalent)) {
        Some(s) => {
            a += &format!(
                "Averaging K noisy passes is equivalent to dropout off (within ±{margin:.2} points) from K = {}",
                s.k
            )
        }
        None => a += "Averaging noisy passes is never shown equivalent to dropout off",
    }
    if let Some(last) = mc.last() {
        a += &format!(
            "; at K = {} it is {} calibrated (mean ECE {:.3} against {:.3} with dropout off) for {} times the compute.",
            last.k,
            if last.ece_mean < det.ece_mean { "better" } else { "worse" },
            last.ece_mean,
            det.ece_mean,
            last.passes
        );
    }
    a
}

impl TestTime {
    /// `effects.png` (MC dropout minus deterministic accuracy, per K, with
    /// verdicts) and `mc.png` (NLL and ECE against K).
    fn figures(&self, r: &Finished, summary: &[McSummary]) -> Result<()> {
        let mc: Vec<&McSummary> = summary.iter().filter(|s| s.mode == Mode::Mc).collect();
        let det = summary.iter().find(|s| s.mode == Mode::Deterministic);
        let color = figures::kind_color(RegKind::Dropout);
        let margin = self.common.margin;
        let rows = mc
            .iter()
            .map(|s| DotRow {
                label: format!("K = {}", s.k),
                value: 100.0 * s.accuracy_diff,
                lo: 100.0 * s.accuracy_diff_ci_low,
                hi: 100.0 * s.accuracy_diff_ci_high,
                color,
                note: s.verdict.map(|v| {
                    let text = if s.accuracy_diff_ci_low.is_nan() {
                        "too few runs".to_string()
                    } else {
                        v.to_string()
                    };
                    (text, figures::verdict_color(v))
                }),
            })
            .collect();
        let title = format!(
            "Exercise {}: dropout left on (MC dropout, K passes) minus dropout off",
            SPEC.number
        );
        plot::save(
            &r.out.join("effects.png"),
            &figures::forest(&title, rows, margin),
        )?;
        self.mc_figure(r, &mc, det)
    }

    /// `mc.png`: NLL and ECE against K, deterministic evaluation as a line.
    fn mc_figure(&self, r: &Finished, mc: &[&McSummary], det: Option<&McSummary>) -> Result<()> {
        let color = figures::kind_color(RegKind::Dropout);
        let ticks: Vec<String> = mc.iter().map(|s| s.k.to_string()).collect();
        let panel = |title: &str, y: &str, pick: fn(&McSummary) -> (f64, f64, f64)| Panel {
            title: title.into(),
            x_label: "K, stochastic passes averaged (MC dropout)".into(),
            y_label: y.into(),
            series: vec![Series {
                bars: true,
                ..Series::band(
                    "MC dropout (mean over seeds, 95% CI)",
                    color,
                    mc.iter()
                        .enumerate()
                        .map(|(i, s)| {
                            let (m, lo, hi) = pick(s);
                            (i as f64, m, lo, hi)
                        })
                        .collect(),
                )
            }],
            x_ticks: Some(ticks.clone()),
            hlines: det
                .map(|d| vec![("dropout off (deterministic)".to_string(), pick(d).0)])
                .unwrap_or_default(),
            clip: Some((0.0, f64::INFINITY)),
            ..Default::default()
        };
        plot::save(
            &r.out.join("mc.png"),
            &Panels {
                title: format!(
                    "Exercise {}: what averaging K noisy passes buys: calibration",
                    SPEC.number
                ),
                panels: vec![
                    panel("test negative log-likelihood", "NLL (nats)", |s| {
                        (s.nll_mean, s.nll_ci_low, s.nll_ci_high)
                    }),
                    panel("expected calibration error (15 bins)", "ECE", |s| {
                        (s.ece_mean, f64::NAN, f64::NAN)
                    }),
                ],
                cols: 2,
            },
        )
    }
}

/// Why dropout is off at test time, from the measured numbers: what one
/// noisy pass costs, what averaging K passes gives back, at what price.
fn why_off(mc: &[&McSummary], det: &McSummary, margin_points: f64) -> String {
    let mut v = String::from("**Why dropout is off at test time.** With dropout left on, every prediction comes from one randomly thinned network. ");
    if let Some(one) = mc.iter().find(|s| s.k == 1) {
        let ci = if one.accuracy_diff_ci_low.is_nan() {
            "too few runs for an interval or a test".to_string()
        } else {
            format!(
                "95% CI {} to {}, Holm-adjusted p = {}",
                pts(one.accuracy_diff_ci_low),
                pts(one.accuracy_diff_ci_high),
                p_text(one.accuracy_p_holm)
            )
        };
        v += &format!(
            "One such noisy pass is **{}** than the deterministic network: {} points of accuracy ({ci}), NLL {:.4} against {:.4}. ",
            match one.verdict {
                Some(Verdict::Worse) => "worse".to_string(),
                Some(Verdict::Better) => "better".to_string(),
                Some(other) => format!("not shown worse ({other})"),
                None => "not compared".to_string(),
            },
            pts(one.accuracy_diff),
            one.nll_mean,
            det.nll_mean
        );
    }
    v += "Inverted dropout scales the kept activations by 1/(1-p) during training, so the plain network, every unit on and nothing rescaled, has the expected activations of the ensemble of thinned networks: one deterministic pass approximates the ensemble's average. ";
    let first_eq = mc.iter().find(|s| s.verdict == Some(Verdict::Equivalent));
    let any_better = mc.iter().any(|s| s.verdict == Some(Verdict::Better));
    match first_eq {
        Some(s) => v += &format!(
            "Averaging K noisy passes (MC dropout) approaches it: from K = {} the average is **equivalent** to the deterministic pass within ±{margin_points:.2} points ({} points, {} forward passes). ",
            s.k,
            pts(s.accuracy_diff),
            s.passes
        ),
        None => v += &format!(
            "Averaging up to K = {} noisy passes (MC dropout) is never shown equivalent to the deterministic pass within ±{margin_points:.2} points (see the table for each K). ",
            mc.last().map_or(0, |s| s.k)
        ),
    }
    if !any_better {
        v += "No K is better than the deterministic pass after correction, so the ensemble average buys no accuracy. ";
    }
    if let Some(last) = mc.last() {
        let buys = if last.ece_mean < det.ece_mean && last.nll_mean < det.nll_mean {
            "What it buys is calibration"
        } else {
            "It does not buy calibration here either"
        };
        v += &format!(
            "{buys}: at K = {} the mean ECE is {:.4} against {:.4} and the NLL {:.4} against {:.4} (lower is better), for {} times the compute of one pass.\n",
            last.k, last.ece_mean, det.ece_mean, last.nll_mean, det.nll_mean, last.passes
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seed: u64, mode: Mode, k: u32, accuracy: f64) -> McRow {
        McRow {
            seed,
            mode,
            k,
            accuracy,
            nll: 0.4,
            ece: 0.02,
            passes: k,
        }
    }

    /// Five seeds: one noisy pass clearly worse, 10 passes within a
    /// hundredth of a point of deterministic evaluation in every seed.
    #[test]
    fn mc_verdicts_and_why_off() {
        let mut rows = Vec::new();
        for seed in 0..5u64 {
            let det = 0.85 + 0.002 * seed as f64;
            rows.push(row(seed, Mode::Deterministic, 1, det));
            rows.push(row(
                seed,
                Mode::Mc,
                1,
                det - 0.01 - 0.0005 * (seed % 2) as f64,
            ));
            rows.push(row(seed, Mode::Mc, 10, det + 0.0001 * (seed as f64 - 2.0)));
        }
        let summary = summarise(&rows, 0.005);
        let get = |k| {
            summary
                .iter()
                .find(|s| s.mode == Mode::Mc && s.k == k)
                .unwrap()
        };
        assert_eq!(get(1).verdict, Some(Verdict::Worse));
        assert_eq!(get(10).verdict, Some(Verdict::Equivalent));
        let det = summary
            .iter()
            .find(|s| s.mode == Mode::Deterministic)
            .unwrap();
        assert_eq!(det.verdict, None);
        let mc: Vec<&McSummary> = summary.iter().filter(|s| s.mode == Mode::Mc).collect();
        let text = why_off(&mc, det, 0.5);
        assert!(text.contains("**worse**"), "{text}");
        assert!(text.contains("from K = 10"), "{text}");
        assert!(!text.contains("NaN"), "{text}");
    }
}
