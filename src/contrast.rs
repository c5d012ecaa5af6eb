//! Questions as data: each exercise declares its questions, before any run,
//! as *primary contrasts* (a difference of two configurations or a linear
//! contrast over several, the measure it is read on, one- or two-sided, the
//! smallest effect of interest), and this module answers them from the
//! stored runs. Holm's correction runs over an exercise's primary contrasts
//! only; every other comparison is *exploratory*: an estimate and an
//! interval, never a verdict.
//!
//! A contrast is evaluated per seed (runs of one seed share their
//! initialisation and batch order): the weighted sum of its configurations'
//! values at that seed, then a one-sample t-test on those sums. Rates of
//! blow-ups are counted over runs instead and compared with Fisher's exact
//! test. For a primary contrast still undecided, the seeds that would give
//! 80% power at the measured spread are a *plan*: adding seeds until a
//! verdict appears is not a valid test.

use anyhow::{bail, Result};
use serde::Serialize;

use crate::analysis::{Group, Metric};
use crate::record::{ConfigKey, StoredRun};
use crate::stats;

/// The level of every primary test, after Holm's correction.
pub const ALPHA: f64 = 0.05;
/// The power a seed plan aims at.
pub const POWER: f64 = 0.8;
/// Most seeds a plan looks at.
const PLAN_CAP: usize = 500;

/// Which way a contrast's question points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sides {
    /// "Is there a difference, either way?"
    Two,
    /// "Is the contrast above zero?" (one-sided: "does A beat B?")
    Greater,
}

/// Whether a contrast decides anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Declared before the data; tested, Holm-adjusted, given a verdict.
    Primary,
    /// Estimate and interval only.
    Exploratory,
}

/// What a contrast is read on, per run.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// A test-accuracy metric of the run (a fraction).
    Accuracy(Metric),
    /// How much the generalisation gap (evaluation-mode accuracy on the
    /// fixed training subset minus test accuracy) grew from epoch `from` to
    /// the mean of the last K epochs (a fraction).
    GapGrowth { from: usize },
    /// Whether the run blew up (a loss spike, divergence or collapse):
    /// counted over runs, not paired by seed.
    BlowUp,
    /// A quantity the experiment measures itself (its probes), by index.
    Probe(ProbeMeasure),
}

/// A per-run quantity an experiment computes from its own measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeMeasure {
    /// The experiment's own index of the quantity.
    pub id: usize,
    /// What it is, for tables ("log eval-mode variance, layer 1, epoch 5").
    pub name: String,
    /// How it is written: the factor to its unit and the unit.
    pub scale: f64,
    pub unit: &'static str,
    /// Whether higher is better (None: neither).
    pub higher_is_better: Option<bool>,
}

impl Measure {
    /// The measure in words, for every table and sentence.
    fn name(&self, end_k: usize) -> String {
        match self {
            Measure::Accuracy(m) => m.describe(end_k),
            Measure::GapGrowth { from } => format!(
                "growth of the train-test gap (eval mode) from epoch {from} to the last {end_k} epochs"
            ),
            Measure::BlowUp => "share of runs that blew up (loss spike, divergence or collapse)".into(),
            Measure::Probe(p) => p.name.clone(),
        }
    }
    /// Factor from the stored value to the written one, and its unit.
    fn scale(&self) -> (f64, &'static str) {
        match self {
            Measure::Accuracy(_) | Measure::GapGrowth { .. } => (100.0, "points"),
            Measure::BlowUp => (100.0, "points of rate"),
            Measure::Probe(p) => (p.scale, p.unit),
        }
    }
    fn higher_is_better(&self) -> Option<bool> {
        match self {
            Measure::Accuracy(_) => Some(true),
            Measure::GapGrowth { .. } => None,
            Measure::BlowUp => Some(false),
            Measure::Probe(p) => p.higher_is_better,
        }
    }
    fn is_rate(&self) -> bool {
        matches!(self, Measure::BlowUp)
    }
}

/// One question: a weighted sum of configurations' values.
#[derive(Debug, Clone)]
pub struct Contrast {
    /// Short, unique within the exercise (`swap`, `p1_main`).
    pub id: String,
    /// The question it answers, in a few words.
    pub question: String,
    /// The contrast in words; `None` writes its terms with their
    /// configurations' labels ("A − B").
    pub estimand: Option<String>,
    /// (configuration, weight); the weights of a difference are +1 and -1,
    /// those of a main effect ±1/2.
    pub terms: Vec<(ConfigKey, f64)>,
    pub measure: Measure,
    pub sides: Sides,
    /// The smallest effect of interest, in the measure's stored units (a
    /// fraction for accuracy): the equivalence margin, and the effect a
    /// seed plan is powered to detect.
    pub sesoi: f64,
    pub role: Role,
}

impl Contrast {
    /// `a` minus `b`, as a primary contrast (two-sided).
    pub fn difference(
        id: &str,
        question: &str,
        a: ConfigKey,
        b: ConfigKey,
        measure: Measure,
        sesoi: f64,
    ) -> Self {
        Self {
            id: id.into(),
            question: question.into(),
            estimand: None,
            terms: vec![(a, 1.0), (b, -1.0)],
            measure,
            sides: Sides::Two,
            sesoi,
            role: Role::Primary,
        }
    }
    /// The same, one-sided: "is `a` above `b`?"
    pub fn greater(self) -> Self {
        Self {
            sides: Sides::Greater,
            ..self
        }
    }
    /// An exploratory difference `a` − `b` on `metric`.
    pub fn exploratory(a: &Group, b: &Group, metric: Metric) -> Self {
        Self {
            id: format!("{} − {} [{}]", a.label, b.label, metric.name()),
            question: String::new(),
            estimand: None,
            terms: vec![(a.key().clone(), 1.0), (b.key().clone(), -1.0)],
            measure: Measure::Accuracy(metric),
            sides: Sides::Two,
            sesoi: f64::NAN,
            role: Role::Exploratory,
        }
    }
}

/// Terms written with their configurations' labels: "A − B" for a
/// difference, "0.5·A + 0.5·B − 0.5·C − 0.5·D" for a linear contrast.
fn written(gs: &[(&Group, f64)]) -> String {
    let mut out = String::new();
    for (i, (g, w)) in gs.iter().enumerate() {
        let sign = if *w < 0.0 { "−" } else { "+" };
        match (i, sign) {
            (0, "+") => {}
            (0, _) => out.push('−'),
            _ => out.push_str(&format!(" {sign} ")),
        }
        let m = w.abs();
        if m != 1.0 {
            let digits = format!("{m:.3}");
            out.push_str(digits.trim_end_matches('0').trim_end_matches('.'));
            out.push('·');
        }
        out.push_str(&g.label);
    }
    out
}

/// What a primary contrast says, after Holm's correction over the
/// exercise's primary contrasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Above zero (significant after correction).
    Higher,
    /// Below zero (two-sided contrasts only).
    Lower,
    /// Within ± the smallest effect of interest (TOST, after correction).
    Equivalent,
    /// One-sided: shown to fall short of the smallest effect of interest.
    ShortOfInterest,
    /// Neither.
    Undecided,
}

/// One row of `comparisons.csv`: a primary contrast with its verdict, or
/// an exploratory one with its estimate and interval only.
#[derive(Debug, Clone, Serialize)]
pub struct ContrastRow {
    pub role: Role,
    pub id: String,
    pub question: String,
    /// "A − B", or the linear contrast.
    pub contrast: String,
    pub metric: String,
    pub sides: Sides,
    /// The smallest effect of interest (stored units; empty for exploratory rows).
    #[serde(serialize_with = "empty_if_none")]
    pub sesoi: Option<f64>,
    /// Seeds paired (runs per side for a rate).
    pub n: usize,
    /// Runs of these configurations that diverged or collapsed.
    pub failed: usize,
    /// Runs of these configurations whose loss blew up and that went on to
    /// train every epoch.
    pub recovered: usize,
    /// Of `failed`: diverged and collapsed, for text.
    #[serde(skip)]
    pub diverged: usize,
    #[serde(skip)]
    pub collapsed: usize,
    /// Seeds left out because a configuration's run has no value there
    /// (diverged before the measure exists).
    pub missing: usize,
    pub estimate: f64,
    /// 95% two-sided interval (empty from fewer than 3 runs).
    #[serde(serialize_with = "empty_if_none")]
    pub ci_low: Option<f64>,
    #[serde(serialize_with = "empty_if_none")]
    pub ci_high: Option<f64>,
    /// Standard deviation of the per-seed contrast values.
    #[serde(serialize_with = "empty_if_none")]
    pub sd: Option<f64>,
    pub test: &'static str,
    /// Unadjusted p (two-sided, or one-sided for `greater`); primary only.
    #[serde(serialize_with = "empty_if_none")]
    pub p: Option<f64>,
    /// Holm-adjusted over the exercise's primary contrasts.
    #[serde(serialize_with = "empty_if_none")]
    pub p_holm: Option<f64>,
    /// Holm-adjusted p of equivalence within ± sesoi (two-sided) or of
    /// falling short of sesoi (one-sided).
    #[serde(serialize_with = "empty_if_none")]
    pub p_equiv: Option<f64>,
    #[serde(serialize_with = "empty_if_none")]
    pub verdict: Option<Verdict>,
    /// For an undecided primary contrast: seeds for 80% power to detect
    /// the smallest effect of interest at the measured spread.
    #[serde(serialize_with = "empty_if_none")]
    pub seeds_80_detect: Option<usize>,
    /// ... and to show equivalence (or falling short) when the true
    /// contrast is 0.
    #[serde(serialize_with = "empty_if_none")]
    pub seeds_80_equiv: Option<usize>,
    /// Written scale and unit, for text.
    #[serde(skip)]
    pub scale: f64,
    #[serde(skip)]
    pub unit: &'static str,
    #[serde(skip)]
    pub higher_is_better: Option<bool>,
    /// The configurations read (for figures and seed plans).
    #[serde(skip)]
    pub keys: Vec<ConfigKey>,
    #[serde(skip)]
    pub is_rate: bool,
    /// The exercise's first seeds, before any seed plan.
    #[serde(skip)]
    pub pilot_seeds: usize,
    /// The most seeds a plan may take, where the exercise plans seeds.
    #[serde(skip)]
    pub max_seeds: Option<usize>,
    /// The equivalence (or falling-short) p before Holm's correction.
    #[serde(skip)]
    pub p_equiv_raw: Option<f64>,
}

/// An absent value as an empty CSV cell (not "NaN", which reads as a
/// number that failed).
fn empty_if_none<S: serde::Serializer, T: Serialize>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) => x.serialize(s),
        None => s.serialize_str(""),
    }
}

impl ContrastRow {
    /// Whether it has an interval (3 runs or more).
    pub fn has_interval(&self) -> bool {
        self.ci_low.is_some()
    }
    /// The seeds a plan asks for: enough to detect the effect of interest
    /// and to show its absence, each with 80% power.
    pub fn planned_seeds(&self) -> Option<usize> {
        match (self.seeds_80_detect, self.seeds_80_equiv) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        }
    }
}

/// The value of a run on a measure that needs no experiment-specific data
/// (None for [`Measure::Probe`], and where the run has no such value: a run
/// that diverged has no end-of-training value, one that diverged before any
/// validated epoch no selected one).
fn run_value(run: &StoredRun, measure: &Measure, end_k: usize) -> Option<f64> {
    match measure {
        Measure::Accuracy(metric) => metric.of_run(run, end_k),
        Measure::GapGrowth { from } => {
            let complete = !run.diverged && run.rows.len() >= run.spec.config.epochs;
            if !complete || *from == 0 || *from > run.rows.len() {
                return None;
            }
            let gap = |r: &crate::record::EpochRow| r.train_eval_acc - r.test_acc;
            let tail = &run.rows[run.rows.len().saturating_sub(end_k.max(1))..];
            let late = tail.iter().map(gap).sum::<f64>() / tail.len() as f64;
            Some(late - gap(&run.rows[from - 1]))
        }
        Measure::BlowUp | Measure::Probe(_) => None,
    }
}

/// Everything [`evaluate`] needs besides the contrasts and groups.
pub struct Context<'a> {
    pub end_k: usize,
    /// The exercise's first seeds, and the most a seed plan may take (None:
    /// the exercise plans no seeds).
    pub pilot_seeds: usize,
    pub max_seeds: Option<usize>,
    /// The value of a run on a [`Measure::Probe`].
    pub probe: &'a dyn Fn(&StoredRun, &ProbeMeasure) -> Option<f64>,
}

/// Evaluates `contrasts` on `groups`: primary ones tested, Holm-adjusted
/// together, decided and (where undecided) planned; exploratory ones
/// estimated. A contrast naming a configuration not in `groups` is an error.
pub fn evaluate(
    contrasts: &[Contrast],
    groups: &[Group],
    ctx: &Context,
) -> Result<Vec<ContrastRow>> {
    let mut rows = Vec::with_capacity(contrasts.len());
    for c in contrasts {
        let mut gs = Vec::new();
        for (key, w) in &c.terms {
            let Some(g) = groups.iter().find(|g| g.is(key)) else {
                bail!(
                    "contrast `{}` reads configuration `{key}`, which has no runs here (configurations: {}); \
                     the exercise's settings no longer sweep it: restore it, or rerun the sweep",
                    c.id,
                    groups.iter().map(|g| g.label.as_str()).collect::<Vec<_>>().join(", ")
                );
            };
            gs.push((g, *w));
        }
        let mut row = if c.measure.is_rate() {
            rate_row(c, &gs, ctx.end_k)
        } else {
            paired_row(c, &gs, ctx)
        };
        row.pilot_seeds = ctx.pilot_seeds;
        row.max_seeds = ctx.max_seeds;
        rows.push(row);
    }
    decide(&mut rows, contrasts);
    Ok(rows)
}

fn base_row(c: &Contrast, gs: &[(&Group, f64)], end_k: usize) -> ContrastRow {
    let (scale, unit) = c.measure.scale();
    ContrastRow {
        role: c.role,
        id: c.id.clone(),
        question: c.question.clone(),
        contrast: c.estimand.clone().unwrap_or_else(|| written(gs)),
        metric: c.measure.name(end_k),
        sides: c.sides,
        sesoi: (c.role == Role::Primary).then_some(c.sesoi),
        n: 0,
        failed: gs.iter().map(|(g, _)| g.failed()).sum(),
        recovered: gs.iter().map(|(g, _)| g.recovered()).sum(),
        diverged: gs.iter().map(|(g, _)| g.diverged()).sum(),
        collapsed: gs.iter().map(|(g, _)| g.collapsed()).sum(),
        missing: 0,
        estimate: f64::NAN,
        ci_low: None,
        ci_high: None,
        sd: None,
        test: "",
        p: None,
        p_holm: None,
        p_equiv: None,
        verdict: None,
        seeds_80_detect: None,
        seeds_80_equiv: None,
        scale,
        unit,
        higher_is_better: c.measure.higher_is_better(),
        keys: c.terms.iter().map(|(k, _)| k.clone()).collect(),
        is_rate: c.measure.is_rate(),
        pilot_seeds: 0,
        max_seeds: None,
        p_equiv_raw: None,
    }
}

/// Per seed, the weighted sum of the configurations' values; a one-sample
/// t-test on those.
fn paired_row(c: &Contrast, gs: &[(&Group, f64)], ctx: &Context) -> ContrastRow {
    let mut row = base_row(c, gs, ctx.end_k);
    let value = |run: &StoredRun| match &c.measure {
        Measure::Probe(p) => (ctx.probe)(run, p),
        m => run_value(run, m, ctx.end_k),
    };
    let mut seeds: Vec<u64> = gs
        .iter()
        .flat_map(|(g, _)| g.runs.iter().map(|r| r.spec.seed))
        .collect();
    seeds.sort_unstable();
    seeds.dedup();
    let mut sums = Vec::new();
    for seed in seeds {
        let runs: Option<Vec<(&StoredRun, f64)>> = gs
            .iter()
            .map(|(g, w)| {
                g.runs
                    .iter()
                    .find(|r| r.spec.seed == seed)
                    .map(|r| (*r, *w))
            })
            .collect();
        // A seed some configuration never trained (its seed plan was
        // another's) pairs nothing and is not missing.
        let Some(runs) = runs else {
            continue;
        };
        let at: Option<f64> = runs.iter().map(|(r, w)| value(r).map(|v| w * v)).sum();
        match at {
            Some(x) => sums.push(x),
            None => row.missing += 1,
        }
    }
    row.n = sums.len();
    row.test = "paired t";
    let zeros = vec![0.0; sums.len()];
    if sums.is_empty() {
        return row;
    }
    let t = stats::paired(&zeros, &sums);
    row.estimate = t.diff;
    if t.n < stats::MIN_RUNS_FOR_INTERVAL {
        return row;
    }
    row.ci_low = Some(t.ci_low);
    row.ci_high = Some(t.ci_high);
    row.sd = Some(t.se * (t.n as f64).sqrt());
    if c.role == Role::Primary {
        let (p, p_eq) = match c.sides {
            Sides::Two => (t.p, stats::tost(t.diff, t.se, t.df, c.sesoi)),
            Sides::Greater => (
                greater_p(t.diff, t.se, t.df),
                stats::below_margin_p(t.diff, t.se, t.df, c.sesoi),
            ),
        };
        row.p = Some(p);
        row.p_equiv = Some(p_eq);
    }
    row
}

/// One-sided p of "above 0", handling a zero standard error.
fn greater_p(diff: f64, se: f64, df: f64) -> f64 {
    if se > 0.0 {
        stats::greater_p(diff / se, df)
    } else if diff > 0.0 {
        0.0
    } else {
        1.0
    }
}

/// Blow-ups counted over the runs of the positive terms against those of
/// the negative terms: the difference of rates with Newcombe's interval,
/// Fisher's exact test.
fn rate_row(c: &Contrast, gs: &[(&Group, f64)], end_k: usize) -> ContrastRow {
    let mut row = base_row(c, gs, end_k);
    let count = |positive: bool| {
        gs.iter()
            .filter(|(_, w)| (*w > 0.0) == positive)
            .fold((0, 0), |(k, n), (g, _)| (k + g.spiked(), n + g.runs.len()))
    };
    let ((ka, na), (kb, nb)) = (count(true), count(false));
    row.n = na.min(nb);
    row.test = "Fisher exact";
    if na == 0 || nb == 0 {
        return row;
    }
    row.estimate = ka as f64 / na as f64 - kb as f64 / nb as f64;
    if row.n < stats::MIN_RUNS_FOR_INTERVAL {
        return row;
    }
    let (lo, hi) = stats::newcombe(kb, nb, ka, na, 0.95);
    row.ci_low = Some(lo.max(-1.0));
    row.ci_high = Some(hi.min(1.0));
    if c.role == Role::Primary {
        let (ka, na, kb, nb) = (ka as u64, na as u64, kb as u64, nb as u64);
        row.p = Some(stats::fisher_exact(ka, na - ka, kb, nb - kb));
    }
    row
}

mod text;
mod verdict;

use verdict::decide;
pub use verdict::holm_across;

pub use text::{estimate_text, exploratory_list, primary_table, verdict_text};

#[cfg(test)]
mod tests;
