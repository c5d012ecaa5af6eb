//! From stored runs to the rows of `runs.csv`, `summary.csv` and
//! `comparisons.csv`. Pure functions: runs in, rows out.
//!
//! The headline metric of every verdict is the test accuracy averaged over
//! a run's last three epochs (robust to the single-epoch swings of lr 0.5);
//! final-epoch and best-epoch accuracy are reported beside it.

use serde::Serialize;

use crate::config::TrainConfig;
use crate::stats::{self, Estimate, TTest};
use crate::sweep::StoredRun;
use crate::train::EpochRow;

/// Epochs averaged by the headline metric.
pub const LAST_K: usize = 3;

/// A finished run whose final test accuracy is at most this (chance is 0.1
/// for ten classes) has collapsed: typically a blow-up left its ReLUs dead
/// and its loss stuck at ln 10. Like diverged runs, collapsed runs are an
/// outcome of their own: counted, given a rate with an interval, and left
/// out of the accuracy statistics (which say so).
pub const COLLAPSED_ACC: f64 = 0.15;

/// Per-run summary numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunMetrics {
    /// Mean test accuracy of the last (up to) three epochs.
    pub last3: f64,
    pub final_acc: f64,
    pub best: f64,
    pub best_epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    /// Final train accuracy minus final test accuracy.
    pub gap: f64,
}

impl RunMetrics {
    pub fn of(rows: &[EpochRow]) -> Self {
        let last = rows.last().expect("a run has at least one epoch");
        let tail = &rows[rows.len().saturating_sub(LAST_K)..];
        let best = rows
            .iter()
            .max_by(|a, b| a.test_acc.total_cmp(&b.test_acc))
            .unwrap();
        Self {
            last3: tail.iter().map(|r| r.test_acc).sum::<f64>() / tail.len() as f64,
            final_acc: last.test_acc,
            best: best.test_acc,
            best_epoch: best.epoch,
            train_loss: last.train_loss,
            train_acc: last.train_acc,
            gap: last.train_acc - last.test_acc,
        }
    }
}

/// The metrics compared between configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Last3,
    Final,
    Best,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Last3, Metric::Final, Metric::Best];
    pub fn of(self, m: &RunMetrics) -> f64 {
        match self {
            Metric::Last3 => m.last3,
            Metric::Final => m.final_acc,
            Metric::Best => m.best,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Metric::Last3 => "last3",
            Metric::Final => "final",
            Metric::Best => "best",
        }
    }
}

/// The configuration columns that open every CSV row: the label, then the
/// configuration flattened by [`TrainConfig::columns`]. The first column
/// after them is `seed` in `runs.csv` and `n` in `summary.csv`, which is how
/// `drop-exp check` finds them.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigCols {
    pub label: String,
    #[serde(flatten)]
    pub columns: serde_json::Map<String, serde_json::Value>,
    /// The configuration itself, for code that reads rows.
    #[serde(skip)]
    pub train: TrainConfig,
}

impl ConfigCols {
    pub fn new(label: &str, c: &TrainConfig) -> Self {
        Self {
            label: label.to_string(),
            columns: c.columns(),
            train: c.clone(),
        }
    }
}

/// One row of `runs.csv`: one epoch of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    #[serde(flatten)]
    pub config: ConfigCols,
    pub seed: u64,
    pub diverged: bool,
    #[serde(flatten)]
    pub epoch: EpochRow,
}

pub fn run_rows(runs: &[&StoredRun]) -> Vec<RunRow> {
    runs.iter()
        .flat_map(|r| {
            r.rows.iter().map(|e| RunRow {
                config: ConfigCols::new(&r.spec.label, &r.spec.config),
                seed: r.spec.seed,
                diverged: r.diverged,
                epoch: e.clone(),
            })
        })
        .collect()
}

/// The runs of one configuration (all seeds), in seed order.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    pub label: String,
    pub config: TrainConfig,
    pub runs: Vec<&'a StoredRun>,
}

impl Group<'_> {
    /// (seed, metrics) of the runs that neither diverged nor collapsed:
    /// what the accuracy statistics use.
    pub fn finished(&self) -> Vec<(u64, RunMetrics)> {
        self.completed()
            .into_iter()
            .filter(|(_, m)| m.final_acc > COLLAPSED_ACC)
            .collect()
    }
    /// (seed, metrics) of the runs that did not diverge.
    fn completed(&self) -> Vec<(u64, RunMetrics)> {
        self.runs
            .iter()
            .filter(|r| !r.diverged && !r.rows.is_empty())
            .map(|r| (r.spec.seed, RunMetrics::of(&r.rows)))
            .collect()
    }
    pub fn diverged(&self) -> usize {
        self.runs.iter().filter(|r| r.diverged).count()
    }
    /// Runs that did not diverge but ended at chance level (see [`COLLAPSED_ACC`]).
    pub fn collapsed(&self) -> usize {
        self.completed()
            .iter()
            .filter(|(_, m)| m.final_acc <= COLLAPSED_ACC)
            .count()
    }
    /// Runs that diverged or collapsed.
    pub fn failed(&self) -> usize {
        self.diverged() + self.collapsed()
    }
    pub fn values(&self, metric: Metric) -> Vec<f64> {
        self.finished().iter().map(|(_, m)| metric.of(m)).collect()
    }
    /// Mean test accuracy per epoch over the finished runs, with its 95% CI.
    pub fn curve(&self, f: impl Fn(&EpochRow) -> f64) -> Vec<(usize, Estimate)> {
        let runs: Vec<_> = self.runs.iter().filter(|r| !r.diverged).collect();
        let epochs = runs.iter().map(|r| r.rows.len()).min().unwrap_or(0);
        (0..epochs)
            .map(|e| {
                let xs: Vec<f64> = runs.iter().map(|r| f(&r.rows[e])).collect();
                (e + 1, Estimate::of(&xs))
            })
            .collect()
    }
}

/// Groups runs by label, keeping first-appearance order.
pub fn groups<'a>(runs: &[&'a StoredRun]) -> Vec<Group<'a>> {
    let mut out: Vec<Group<'a>> = Vec::new();
    for r in runs {
        match out.iter_mut().find(|g| g.label == r.spec.label) {
            Some(g) => g.runs.push(r),
            None => out.push(Group {
                label: r.spec.label.clone(),
                config: r.spec.config.clone(),
                runs: vec![r],
            }),
        }
    }
    for g in &mut out {
        g.runs.sort_by_key(|r| r.spec.seed);
    }
    out
}

/// One row of `summary.csv`: one configuration over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryRow {
    #[serde(flatten)]
    pub config: ConfigCols,
    /// Runs that finished without diverging or collapsing: the accuracy
    /// statistics below are over these.
    pub n: usize,
    /// Runs whose loss became NaN or infinite.
    pub n_diverged: usize,
    /// Runs that ended at chance level (final test accuracy <= 0.15).
    pub n_collapsed: usize,
    /// Runs that diverged or collapsed, as a fraction of all runs, with its
    /// 95% Clopper-Pearson interval.
    pub failed_rate: f64,
    pub failed_ci_low: f64,
    pub failed_ci_high: f64,
    pub last3_mean: f64,
    pub last3_sd: f64,
    pub last3_ci_low: f64,
    pub last3_ci_high: f64,
    pub final_mean: f64,
    pub final_sd: f64,
    pub final_ci_low: f64,
    pub final_ci_high: f64,
    pub best_mean: f64,
    pub best_sd: f64,
    pub best_epoch_mean: f64,
    pub train_loss_mean: f64,
    pub train_loss_sd: f64,
    pub train_acc_mean: f64,
    pub train_acc_sd: f64,
    pub gap_mean: f64,
    pub gap_sd: f64,
}

pub fn summary(g: &Group) -> SummaryRow {
    let f = g.finished();
    let failed_ci = stats::clopper_pearson(g.failed(), g.runs.len(), 0.95);
    let col = |get: fn(&RunMetrics) -> f64| {
        Estimate::of(&f.iter().map(|(_, m)| get(m)).collect::<Vec<_>>())
    };
    let (l3, fin, best) = (col(|m| m.last3), col(|m| m.final_acc), col(|m| m.best));
    let (tl, ta, gap) = (col(|m| m.train_loss), col(|m| m.train_acc), col(|m| m.gap));
    SummaryRow {
        config: ConfigCols::new(&g.label, &g.config),
        n: f.len(),
        n_diverged: g.diverged(),
        n_collapsed: g.collapsed(),
        failed_rate: g.failed() as f64 / g.runs.len().max(1) as f64,
        failed_ci_low: failed_ci.0,
        failed_ci_high: failed_ci.1,
        last3_mean: l3.mean,
        last3_sd: l3.sd,
        last3_ci_low: l3.ci_low,
        last3_ci_high: l3.ci_high,
        final_mean: fin.mean,
        final_sd: fin.sd,
        final_ci_low: fin.ci_low,
        final_ci_high: fin.ci_high,
        best_mean: best.mean,
        best_sd: best.sd,
        best_epoch_mean: stats::mean(
            &f.iter()
                .map(|(_, m)| m.best_epoch as f64)
                .collect::<Vec<_>>(),
        ),
        train_loss_mean: tl.mean,
        train_loss_sd: tl.sd,
        train_acc_mean: ta.mean,
        train_acc_sd: ta.sd,
        gap_mean: gap.mean,
        gap_sd: gap.sd,
    }
}

/// What a comparison says, after correction for the exercise's many
/// comparisons (Holm) and with equivalence tested at a margin (TOST).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// b is higher than a (significant after correction).
    Better,
    /// b is lower than a (significant after correction).
    Worse,
    /// The difference lies within +/- margin (TOST, after correction).
    Equivalent,
    /// Neither: more seeds would decide it.
    Undecided,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Equivalent => "equivalent",
            Verdict::Undecided => "undecided",
        })
    }
}

/// The level of every test: 5%, two-sided, after Holm's correction.
pub const ALPHA: f64 = 0.05;

/// Most seeds that `seeds_to_decide` looks at.
const SEEDS_CAP: usize = 200;

/// One row of `comparisons.csv`: b minus a on one metric.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub metric: Metric,
    pub mean_a: f64,
    pub mean_b: f64,
    #[serde(flatten)]
    pub test: TTest,
    /// `p` adjusted by Holm over the exercise's comparisons on this metric.
    pub p_holm: f64,
    /// The equivalence margin (a fraction: 0.005 is half a point).
    pub margin: f64,
    /// TOST p-value of equivalence within +/- margin, Holm-adjusted likewise.
    pub p_equiv: f64,
    pub verdict: Verdict,
    /// For an undecided comparison: the seeds with which it would be decided
    /// at the measured sd and difference (empty when decided, or beyond 200).
    #[serde(serialize_with = "empty_if_none")]
    pub seeds_to_decide: Option<usize>,
}

fn empty_if_none<S: serde::Serializer>(v: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(n) => s.serialize_u64(*n as u64),
        None => s.serialize_str(""),
    }
}

/// Compares configuration `b` against `a` on `metric`: paired by seed over the
/// seeds both finished (runs of one seed share init and batch order), or
/// Welch's test when fewer than two seeds pair. The verdict columns are
/// filled in by [`decide`], once every comparison of the exercise is known.
pub fn compare(a: &Group, b: &Group, metric: Metric) -> Comparison {
    let (fa, fb) = (a.finished(), b.finished());
    let pairs: Vec<(f64, f64)> = fa
        .iter()
        .filter_map(|(s, ma)| {
            fb.iter()
                .find(|(t, _)| t == s)
                .map(|(_, mb)| (metric.of(ma), metric.of(mb)))
        })
        .collect();
    let (va, vb) = (a.values(metric), b.values(metric));
    let test = if pairs.len() >= 2 {
        let (x, y): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
        stats::paired(&x, &y)
    } else {
        stats::welch(&va, &vb)
    };
    Comparison {
        a: a.label.clone(),
        b: b.label.clone(),
        metric,
        mean_a: stats::mean(&va),
        mean_b: stats::mean(&vb),
        test,
        p_holm: f64::NAN,
        margin: f64::NAN,
        p_equiv: f64::NAN,
        verdict: Verdict::Undecided,
        seeds_to_decide: None,
    }
}

/// Fills in the verdicts of one exercise's comparisons: Holm's correction
/// within each metric (the headline metric's comparisons are one family, each
/// secondary metric another), equivalence by TOST at +/- `margin`, and for
/// what stays undecided, the seeds that would decide it. Fewer than
/// [`stats::MIN_RUNS_FOR_INTERVAL`] runs decide nothing.
pub fn decide(comparisons: &mut [Comparison], margin: f64) {
    for metric in Metric::ALL {
        let family: Vec<usize> = (0..comparisons.len())
            .filter(|&i| comparisons[i].metric == metric)
            .collect();
        let enough = |c: &Comparison| c.test.n >= stats::MIN_RUNS_FOR_INTERVAL;
        let p: Vec<f64> = family
            .iter()
            .map(|&i| &comparisons[i])
            .map(|c| if enough(c) { c.test.p } else { f64::NAN })
            .collect();
        let p_eq: Vec<f64> = family
            .iter()
            .map(|&i| &comparisons[i])
            .map(|c| {
                if enough(c) {
                    stats::tost(c.test.diff, c.test.se, c.test.df, margin)
                } else {
                    f64::NAN
                }
            })
            .collect();
        let (p_holm, p_eq_holm) = (stats::holm(&p), stats::holm(&p_eq));
        let k = family.len().max(1) as f64;
        for (j, &i) in family.iter().enumerate() {
            let c = &mut comparisons[i];
            c.margin = margin;
            c.p_holm = p_holm[j];
            c.p_equiv = p_eq_holm[j];
            c.verdict = if c.p_holm < ALPHA {
                if c.test.diff > 0.0 {
                    Verdict::Better
                } else {
                    Verdict::Worse
                }
            } else if c.p_equiv < ALPHA {
                Verdict::Equivalent
            } else {
                Verdict::Undecided
            };
            c.seeds_to_decide = (c.verdict == Verdict::Undecided)
                .then(|| {
                    // The sd of per-seed differences, from the standard error;
                    // Bonferroni's alpha / k, the strictest step of Holm's.
                    let sd = c.test.se * (c.test.n as f64).sqrt();
                    stats::seeds_to_decide(c.test.diff, sd, margin, ALPHA / k, SEEDS_CAP)
                })
                .flatten();
        }
    }
}

/// Percentage points, signed, for verdict text.
pub fn pts(x: f64) -> String {
    format!("{:+.2}", 100.0 * x)
}

/// A sentence on one comparison, e.g. "+0.41 points (95% CI -0.10 to
/// +0.92; paired t-test over 5 seeds, Holm-adjusted p = 0.36; equivalence
/// within ±0.50 points: p = 0.21): undecided; about 14 seeds would decide it".
pub fn describe(c: &Comparison) -> String {
    let n = c.test.n;
    if n < stats::MIN_RUNS_FOR_INTERVAL {
        return format!(
            "{} points from {n} run(s) per configuration: too few runs for an interval or a test; undecided",
            pts(c.test.diff)
        );
    }
    if c.test.diff == 0.0 && c.test.se == 0.0 {
        return format!("no difference (identical in all {n} seeds): {}", c.verdict);
    }
    let tail = match (c.verdict, c.seeds_to_decide) {
        (Verdict::Equivalent, _) => format!(
            "equivalent within ±{:.2} points",
            100.0 * c.margin
        ),
        (Verdict::Undecided, Some(s)) => format!(
            "undecided; about {s} seeds (now {n}) would decide it at the measured spread"
        ),
        (Verdict::Undecided, None) => format!(
            "undecided; even {SEEDS_CAP} seeds would not decide it (the difference sits at the edge of the ±{:.2}-point margin)",
            100.0 * c.margin
        ),
        (v, _) => v.to_string(),
    };
    format!(
        "{} points (95% CI {} to {}; {} t-test over {n} seeds, Holm-adjusted p = {}; equivalence within ±{:.2} points: p = {}): **{tail}**",
        pts(c.test.diff),
        pts(c.test.ci_low),
        pts(c.test.ci_high),
        c.test.test,
        p_text(c.p_holm),
        100.0 * c.margin,
        p_text(c.p_equiv),
    )
}

/// A p-value for text: three decimals, or "< 0.001".
pub fn p_text(p: f64) -> String {
    if p.is_nan() {
        "n/a".into()
    } else if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}
