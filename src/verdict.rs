//! From groups of runs to the rows of `comparisons.csv` and their words:
//! paired tests, Holm's correction within an exercise, equivalence (TOST)
//! at a margin, the verdict (better, worse, equivalent, undecided) with the
//! seeds that would decide it, and how precise the comparisons are.

use serde::Serialize;

use crate::analysis::{Group, Metric};
use crate::stats::{self, TTest};

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

/// How precise an experiment's primary comparisons are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Precision {
    /// The widest 95% CI half-width (a fraction; infinite where a
    /// comparison has fewer than 3 runs).
    pub widest: f64,
    /// Seeds with which every comparison would reach the target at its
    /// measured spread (at least 3).
    pub seeds_needed: usize,
}

impl Precision {
    /// "the widest primary 95% CI is ±x points", or why there is none.
    pub fn widest_text(&self) -> String {
        if self.widest.is_finite() {
            format!(
                "the widest primary 95% CI is ±{:.2} points",
                100.0 * self.widest
            )
        } else {
            "a primary comparison has fewer than 3 runs on a side (too few for an interval)".into()
        }
    }

    /// Over the headline-metric comparisons of `comparisons`.
    pub fn of(comparisons: &[Comparison], target: f64) -> Self {
        let mut widest = 0f64;
        let mut needed = stats::MIN_RUNS_FOR_INTERVAL;
        for c in comparisons.iter().filter(|c| c.metric == Metric::HEADLINE) {
            let n = c.test.n;
            if n < stats::MIN_RUNS_FOR_INTERVAL {
                widest = f64::INFINITY;
                continue;
            }
            let half = (c.test.ci_high - c.test.ci_low) / 2.0;
            widest = widest.max(half);
            let sd = c.test.se * (n as f64).sqrt();
            needed = needed.max(stats::seeds_for_half_width(sd, target, SEEDS_CAP));
        }
        Self {
            widest,
            seeds_needed: needed,
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
    if n == 0 {
        return "no run finished on one side (all diverged or collapsed): nothing to compare; undecided".into();
    }
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
