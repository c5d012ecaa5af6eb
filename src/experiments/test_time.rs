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
use super::markdown::{seeds_note, short, summary_table, write_verdict};
use super::settings::parse;
use super::spec::{ExerciseSpec, QUICK};
use super::{dropout_config, rates_label, Common, Experiment, Finished};
use crate::config::TrainConfig;
use crate::contrast::{Contrast, Measure, ProbeMeasure, Role, Sides};
use crate::data::Dataset;
use crate::mc_dropout::{evaluate_mc, McRow, Mode};
use crate::output::plot::{self, Panel, Panels, Series};
use crate::output::write_csv;
use crate::record::ConfigKey;
use crate::record::{RunSpec, StoredRun};
use crate::regularizers::RegKind;
use crate::rng::{Rng, Stream};
use crate::stats::Estimate;
use crate::sweep::{RunResult, Worker};
use crate::train::TrainHook;

pub const SPEC: ExerciseSpec = ExerciseSpec {
    name: "test-time",
    number: 4,
    title: "Why dropout is off at test time",
    question: "What happens if dropout stays on when the model is evaluated: how much does one noisy pass cost, and does averaging many noisy passes (MC dropout) match the deterministic network, at what price?",
    about: "Exercise 4: why is dropout off at test time? One noisy pass vs MC dropout.",
    examples: "drop-exp test-time\n  drop-exp test-time --seeds 3 --epochs 5",
    defaults: include_str!("../../experiments/test-time.toml"),
    // Seeds planned for 80% power, at most 10.
    report: "plan_seeds = true\nmax_seeds = 10\n",
    quick: QUICK,
    declared: super::spec::FIRST_DECLARATION,
    figures: &["effects.png", "mc.png"],
    secondary: None,
    flags: &[],
    user_layer: super::spec::as_given,
    build: |common, table| Ok(Box::new(TestTime::new(common, parse(table)?))),
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    rates: [f64; 2],
    passes: Vec<u32>,
    ece_bins: u32,
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

struct TestTime {
    common: Common,
    settings: Settings,
    worker: Box<Worker<'static>>,
}

impl TestTime {
    fn new(common: Common, settings: Settings) -> Self {
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

/// One row of `mc_summary.csv`: one evaluation mode and K over seeds, and
/// its paired difference to deterministic evaluation (exploratory; the
/// primary contrasts are in `comparisons.csv`).
#[derive(Debug, Clone, Serialize)]
struct McSummary {
    mode: Mode,
    k: u32,
    passes: u32,
    n: usize,
    accuracy_mean: f64,
    accuracy_ci_low: f64,
    accuracy_ci_high: f64,
    nll_mean: f64,
    nll_ci_low: f64,
    nll_ci_high: f64,
    ece_mean: f64,
    ece_ci_low: f64,
    ece_ci_high: f64,
    /// Paired (by seed) differences to deterministic evaluation, each with
    /// its 95% CI.
    accuracy_diff: f64,
    accuracy_diff_ci_low: f64,
    accuracy_diff_ci_high: f64,
    nll_diff: f64,
    nll_diff_ci_low: f64,
    nll_diff_ci_high: f64,
    ece_diff: f64,
    ece_diff_ci_low: f64,
    ece_diff_ci_high: f64,
}

/// A quantity of `mc.csv`: its name and how to read it.
type Quantity = (&'static str, fn(&McRow) -> f64);

/// The quantities read from `mc.csv`.
const QUANTITIES: [Quantity; 3] = [
    ("accuracy", |r| r.accuracy),
    ("nll", |r| r.nll),
    ("ece", |r| r.ece),
];

/// Means, intervals and paired differences to deterministic evaluation,
/// per mode and K.
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
            let level = |f: fn(&McRow) -> f64| {
                Estimate::of(&these.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            let diff = |f: fn(&McRow) -> f64| {
                let d: Vec<f64> = these
                    .iter()
                    .filter_map(|r| det.iter().find(|d| d.seed == r.seed).map(|d| f(r) - f(d)))
                    .collect();
                Estimate::of(&d)
            };
            let [acc, nll, ece] = QUANTITIES.map(|(_, f)| level(f));
            let [da, dn, de] = QUANTITIES.map(|(_, f)| diff(f));
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
                ece_mean: ece.mean,
                ece_ci_low: ece.ci_low,
                ece_ci_high: ece.ci_high,
                accuracy_diff: da.mean,
                accuracy_diff_ci_low: da.ci_low,
                accuracy_diff_ci_high: da.ci_high,
                nll_diff: dn.mean,
                nll_diff_ci_low: dn.ci_low,
                nll_diff_ci_high: dn.ci_high,
                ece_diff: de.mean,
                ece_diff_ci_low: de.ci_low,
                ece_diff_ci_high: de.ci_high,
            }
        })
        .collect()
}

/// The smallest effects of interest: half a point of accuracy (the
/// margin, from the settings), 0.01 nats of NLL (2.5% of the
/// deterministic model's 0.40) and half a point of calibration error.
const NLL_SESOI: f64 = 0.01;
const ECE_SESOI: f64 = 0.005;

impl TestTime {
    /// The passes K of the "many passes" contrasts: the most swept.
    fn k_max(&self) -> u32 {
        self.settings.passes.iter().copied().max().unwrap_or(1)
    }

    /// A primary contrast: MC dropout with `k` passes minus dropout off, on
    /// quantity `q` (0 accuracy, 1 NLL, 2 ECE).
    fn mc_contrast(&self, id: &str, question: &str, k: u32, q: usize) -> Contrast {
        let [p1, p2] = self.settings.rates;
        let (name, scale, unit, higher, sesoi) = match q {
            0 => (
                "test accuracy",
                100.0,
                "points",
                Some(true),
                self.common.margin / 100.0,
            ),
            1 => ("test NLL", 1.0, "nats", Some(false), NLL_SESOI),
            _ => ("test ECE (15 bins)", 1.0, "", Some(false), ECE_SESOI),
        };
        Contrast {
            id: id.into(),
            question: question.into(),
            estimand: Some(format!("MC dropout, K = {k} − dropout off")),
            terms: vec![(super::dropout_key(&self.common, p1, p2), 1.0)],
            measure: Measure::Probe(ProbeMeasure {
                id: q * 100_000 + k as usize,
                name: format!("{name} of the final model (paired within each run)"),
                scale,
                unit,
                higher_is_better: higher,
            }),
            sides: Sides::Two,
            sesoi,
            role: Role::Primary,
        }
    }
}

impl Experiment for TestTime {
    super::experiment_accessors!(SPEC);
    fn configs(&self) -> Vec<(String, TrainConfig)> {
        let [p1, p2] = self.settings.rates;
        vec![(rates_label(p1, p2), dropout_config(&self.common, p1, p2))]
    }
    fn pairs(&self) -> Vec<(ConfigKey, ConfigKey)> {
        Vec::new()
    }
    fn contrasts(&self) -> Vec<Contrast> {
        let k = self.k_max();
        vec![
            self.mc_contrast("one_pass", "what does one noisy pass cost?", 1, 0),
            self.mc_contrast(
                "accuracy_k",
                &format!("does averaging {k} noisy passes change accuracy?"),
                k,
                0,
            ),
            self.mc_contrast(
                "nll_k",
                &format!("does averaging {k} noisy passes change the NLL?"),
                k,
                1,
            ),
            self.mc_contrast(
                "ece_k",
                &format!("does averaging {k} noisy passes change calibration?"),
                k,
                2,
            ),
        ]
    }
    fn probe_value(&self, run: &StoredRun, m: &ProbeMeasure) -> Option<f64> {
        let (q, k) = (m.id / 100_000, (m.id % 100_000) as u32);
        let rows: Vec<McRow> = serde_json::from_value(run.extra.clone()).ok()?;
        let f = QUANTITIES.get(q)?.1;
        let mc = rows.iter().find(|r| r.mode == Mode::Mc && r.k == k)?;
        let det = rows.iter().find(|r| r.mode == Mode::Deterministic)?;
        Some(f(mc) - f(det)).filter(|v| v.is_finite())
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
        let summary = summarise(&rows);
        write_csv(&r.out.join("mc_summary.csv"), &summary)?;
        self.figures(r, &summary)?;
        write_verdict(r, self.answer(r), &self.verdict(r, &summary))
    }
}

impl TestTime {
    fn verdict(&self, r: &Finished, summary: &[McSummary]) -> String {
        let mut v = format!(
            "# {}\n\n{}; models trained with rates {:?}; each run's final model evaluated on the test set with dropout off (deterministic) and with dropout on, averaging K noisy passes (MC dropout). Every difference is paired within a run, so no epoch is selected for it.\n\n",
            SPEC.heading(),
            seeds_note(&self.common),
            self.settings.rates
        );
        v += "**Why dropout is off at test time.** With dropout on, every prediction comes from one randomly thinned network. Inverted dropout scales the kept activations by 1/(1 − p) during training, so the plain network, every unit on and nothing rescaled, has the expected activations of the ensemble of thinned networks: one deterministic pass approximates the ensemble's average at the cost of one pass. The primary contrasts measure what one noisy pass costs and what averaging K of them buys back, at K times the compute.\n\n";
        v += "## Every K (exploratory)\n\nMeans over seeds with 95% CIs; differences are MC dropout minus dropout off, paired within each run.\n\n| mode | K | accuracy | NLL | ECE | accuracy − off (points, 95% CI) | NLL − off (95% CI) | ECE − off (95% CI) |\n|---|---|---|---|---|---|---|---|\n";
        let ci = |m: f64, lo: f64, hi: f64, scale: f64, d: usize| {
            if lo.is_nan() {
                format!("{:+.*} (no interval)", d, scale * m)
            } else {
                format!(
                    "{:+.*} ({:+.*} to {:+.*})",
                    d,
                    scale * m,
                    d,
                    scale * lo,
                    d,
                    scale * hi
                )
            }
        };
        for s in summary {
            let diffs = if s.mode == Mode::Deterministic {
                "(reference) | | ".to_string()
            } else {
                format!(
                    "{} | {} | {}",
                    ci(
                        s.accuracy_diff,
                        s.accuracy_diff_ci_low,
                        s.accuracy_diff_ci_high,
                        100.0,
                        2
                    ),
                    ci(s.nll_diff, s.nll_diff_ci_low, s.nll_diff_ci_high, 1.0, 4),
                    ci(s.ece_diff, s.ece_diff_ci_low, s.ece_diff_ci_high, 1.0, 4)
                )
            };
            v += &format!(
                "| {} | {} | {:.2}% | {:.4} | {:.4} | {diffs} |\n",
                s.mode,
                s.k,
                100.0 * s.accuracy_mean,
                s.nll_mean,
                s.ece_mean,
            );
        }
        v += "\n";
        v += &summary_table(&r.summary);
        v
    }

    /// The answer in a sentence, from the primary contrasts only.
    fn answer(&self, r: &Finished) -> String {
        let k = self.k_max();
        format!(
            "One noisy pass (dropout left on) minus dropout off, test accuracy: {}. Averaging K = {k} noisy passes minus dropout off: accuracy {}; NLL {}; ECE {}; at {k} times the compute of one pass.",
            short(r.contrast("one_pass")),
            short(r.contrast("accuracy_k")),
            short(r.contrast("nll_k")),
            short(r.contrast("ece_k")),
        )
    }

    /// `effects.png` (the primary accuracy contrasts) and `mc.png` (the
    /// paired differences to dropout off, per K, for accuracy, NLL and ECE).
    fn figures(&self, r: &Finished, summary: &[McSummary]) -> Result<()> {
        let accuracy: Vec<_> = r
            .primary()
            .into_iter()
            .filter(|c| c.unit == "points")
            .collect();
        figures::effects(
            r,
            &r.out.join("effects.png"),
            &format!(
                "Exercise {}: dropout left on at test time minus dropout off (primary, accuracy)",
                SPEC.number
            ),
            "test accuracy of the final model",
            &accuracy,
        )?;
        let mc: Vec<&McSummary> = summary.iter().filter(|s| s.mode == Mode::Mc).collect();
        let color = figures::kind_color(RegKind::Dropout);
        let ticks: Vec<String> = mc.iter().map(|s| s.k.to_string()).collect();
        let panel = |title: &str, y: &str, pick: fn(&McSummary) -> (f64, f64, f64)| Panel {
            title: title.into(),
            x_label: "K, noisy passes averaged (MC dropout)".into(),
            y_label: y.into(),
            series: vec![Series {
                bars: true,
                ..Series::band(
                    "MC dropout − dropout off (mean over seeds, 95% CI)",
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
            hlines: vec![("no difference".to_string(), 0.0)],
            no_legend: true,
            ..Default::default()
        };
        plot::save(
            &r.out.join("mc.png"),
            &Panels {
                title: format!(
                    "Exercise {}: MC dropout with K passes minus dropout off (mean over seeds, 95% CI; dashed: 0)",
                    SPEC.number
                ),
                panels: vec![
                    panel("test accuracy", "difference (points)", |s| {
                        (
                            100.0 * s.accuracy_diff,
                            100.0 * s.accuracy_diff_ci_low,
                            100.0 * s.accuracy_diff_ci_high,
                        )
                    }),
                    panel("test negative log-likelihood", "difference (nats)", |s| {
                        (s.nll_diff, s.nll_diff_ci_low, s.nll_diff_ci_high)
                    }),
                    panel(
                        "expected calibration error (15 bins)",
                        "difference in ECE",
                        |s| (s.ece_diff, s.ece_diff_ci_low, s.ece_diff_ci_high),
                    ),
                ],
                cols: 3,
            },
        )
    }
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
            nll: 0.4 + 0.01 * k as f64,
            ece: 0.02,
            passes: k,
        }
    }

    /// The summary's differences are paired within each seed's run.
    #[test]
    fn differences_are_paired_within_runs() {
        let mut rows = Vec::new();
        for seed in 0..5u64 {
            let det = 0.85 + 0.002 * seed as f64;
            rows.push(row(seed, Mode::Deterministic, 1, det));
            rows.push(row(seed, Mode::Mc, 10, det - 0.01));
        }
        let summary = summarise(&rows);
        let mc = summary.iter().find(|s| s.mode == Mode::Mc).unwrap();
        assert!((mc.accuracy_diff + 0.01).abs() < 1e-12);
        assert!(mc.accuracy_diff_ci_high - mc.accuracy_diff_ci_low < 1e-9);
        assert!((mc.nll_diff - 0.09).abs() < 1e-12);
    }
}
