//! Small-sample statistics for comparing configurations over seeds: mean,
//! sample standard deviation, Student-t confidence intervals, the paired
//! t-test (runs of one seed share init and batch order, so differences pair
//! by seed) and Welch's test where they do not pair; Holm's correction for
//! many comparisons, two one-sided tests (TOST) for equivalence within a
//! margin, the seeds a comparison would need to be decided, and, for counts
//! of failed runs, Clopper-Pearson intervals and Fisher's exact test. The
//! distributions are statrs'; every function is tested against scipy.

use statrs::distribution::{Beta, ContinuousCDF, Discrete, Hypergeometric, StudentsT};

/// Mean of `xs` (NaN when empty).
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (n - 1 in the denominator; NaN below 2 values).
pub fn sd(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return f64::NAN;
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// Runs below which no interval is given: an interval from two runs
/// (t = 12.7) says nothing a reader can use.
pub const MIN_RUNS_FOR_INTERVAL: usize = 3;

/// Mean with a two-sided 95% Student-t confidence interval (NaN from fewer
/// than [`MIN_RUNS_FOR_INTERVAL`] values).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

impl Estimate {
    pub fn of(xs: &[f64]) -> Self {
        let (n, m, s) = (xs.len(), mean(xs), sd(xs));
        let half = if n >= MIN_RUNS_FOR_INTERVAL {
            t_quantile(0.975, (n - 1) as f64) * s / (n as f64).sqrt()
        } else {
            f64::NAN
        };
        Self {
            n,
            mean: m,
            sd: s,
            ci_low: m - half,
            ci_high: m + half,
        }
    }
    pub fn half_width(&self) -> f64 {
        (self.ci_high - self.ci_low) / 2.0
    }
}

/// Which t-test compared two configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TestKind {
    /// On per-seed differences (runs of one seed share init and batch order).
    Paired,
    /// Welch's unequal-variance test, where too few seeds pair.
    Welch,
}

impl std::fmt::Display for TestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TestKind::Paired => "paired",
            TestKind::Welch => "Welch",
        })
    }
}

/// The result of a two-sided t-test of a difference (b - a).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TTest {
    pub test: TestKind,
    pub n: usize,
    pub diff: f64,
    /// Standard error of `diff`.
    pub se: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub t: f64,
    pub df: f64,
    pub p: f64,
}

/// Paired t-test on per-seed pairs (a_i, b_i) of the difference b - a.
pub fn paired(a: &[f64], b: &[f64]) -> TTest {
    assert_eq!(a.len(), b.len(), "paired samples must have equal length");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    let e = Estimate::of(&d);
    let se = e.sd / (e.n as f64).sqrt();
    let df = e.n as f64 - 1.0;
    let t = e.mean / se;
    TTest {
        test: TestKind::Paired,
        n: e.n,
        diff: e.mean,
        se,
        ci_low: e.ci_low,
        ci_high: e.ci_high,
        t,
        df,
        p: two_sided_p(t, df),
    }
}

/// Welch's unequal-variance t-test of mean(b) - mean(a).
pub fn welch(a: &[f64], b: &[f64]) -> TTest {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (sd(a).powi(2) / na, sd(b).powi(2) / nb);
    let se = (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va.powi(2) / (na - 1.0) + vb.powi(2) / (nb - 1.0));
    let diff = mean(b) - mean(a);
    let half = t_quantile(0.975, df) * se;
    let t = diff / se;
    TTest {
        test: TestKind::Welch,
        n: a.len().min(b.len()),
        diff,
        se,
        ci_low: diff - half,
        ci_high: diff + half,
        t,
        df,
        p: two_sided_p(t, df),
    }
}

/// Student's t with `df` degrees of freedom (None unless df > 0).
fn student(df: f64) -> Option<StudentsT> {
    (df.is_finite() && df > 0.0).then(|| StudentsT::new(0.0, 1.0, df).expect("valid df"))
}

/// Two-sided p-value of a t statistic with `df` degrees of freedom.
pub fn two_sided_p(t: f64, df: f64) -> f64 {
    match student(df) {
        Some(_) if t.is_infinite() => 0.0,
        Some(d) if t.is_finite() => (2.0 * d.sf(t.abs())).min(1.0),
        _ => f64::NAN,
    }
}

/// Cumulative distribution function of Student's t.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    student(df).map_or(f64::NAN, |d| d.cdf(t))
}

/// Quantile of Student's t (q in (0, 1)).
pub fn t_quantile(q: f64, df: f64) -> f64 {
    match student(df) {
        Some(d) if q > 0.0 && q < 1.0 => d.inverse_cdf(q),
        _ => f64::NAN,
    }
}

/// Holm's step-down adjustment of p-values for a family of comparisons
/// (NaN p-values are left out of the family and stay NaN).
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..ps.len()).filter(|&i| !ps[i].is_nan()).collect();
    order.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]));
    let k = order.len();
    let mut out = vec![f64::NAN; ps.len()];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((k - rank) as f64 * ps[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Equivalence within +/- `margin` by two one-sided t-tests: the larger of
/// the p-values of "diff <= -margin" and "diff >= +margin", for a difference
/// estimated as `diff` with standard error `se` on `df` degrees of freedom.
/// Below alpha, the (1 - 2 alpha) interval lies inside the margin.
pub fn tost(diff: f64, se: f64, df: f64, margin: f64) -> f64 {
    match student(df) {
        Some(d) if se > 0.0 && se.is_finite() && diff.is_finite() => {
            let lower = d.sf((diff + margin) / se);
            let upper = d.cdf((diff - margin) / se);
            lower.max(upper)
        }
        // Every seed gave the same difference: decided by where it lies.
        Some(_) if se == 0.0 && diff.is_finite() => {
            if diff.abs() < margin {
                0.0
            } else {
                1.0
            }
        }
        _ => f64::NAN,
    }
}

/// The smallest number of seeds (at most `cap`) with which a paired
/// comparison whose per-seed differences have sd `sd` would be decided, if
/// the difference stayed `diff`: found different at level `alpha` (two-sided),
/// or equivalent within +/- `margin` at level `alpha` (TOST). `None` when
/// neither happens by `cap` seeds (a difference at the edge of the margin).
pub fn seeds_to_decide(diff: f64, sd: f64, margin: f64, alpha: f64, cap: usize) -> Option<usize> {
    if !(diff.is_finite() && sd.is_finite()) {
        return None;
    }
    (2..=cap).find(|&n| {
        let df = (n - 1) as f64;
        let se = sd / (n as f64).sqrt();
        let different = t_quantile(1.0 - alpha / 2.0, df) * se < diff.abs();
        let equivalent = diff.abs() + t_quantile(1.0 - alpha, df) * se < margin;
        different || equivalent
    })
}

/// The fewest runs n (at least [`MIN_RUNS_FOR_INTERVAL`], at most `cap`)
/// for which a 95% t-interval of a mean with standard deviation `sd` has
/// half-width at most `half`.
pub fn seeds_for_half_width(sd: f64, half: f64, cap: usize) -> usize {
    (MIN_RUNS_FOR_INTERVAL..=cap)
        .find(|&n| t_quantile(0.975, (n - 1) as f64) * sd / (n as f64).sqrt() <= half)
        .unwrap_or(cap)
}

/// Clopper-Pearson (exact) two-sided `conf` interval for a binomial rate
/// after `k` events in `n` trials.
pub fn clopper_pearson(k: usize, n: usize, conf: f64) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let a = 1.0 - conf;
    let (kf, nf) = (k as f64, n as f64);
    let lo = if k == 0 {
        0.0
    } else {
        Beta::new(kf, nf - kf + 1.0)
            .expect("valid shapes")
            .inverse_cdf(a / 2.0)
    };
    let hi = if k == n {
        1.0
    } else {
        Beta::new(kf + 1.0, nf - kf)
            .expect("valid shapes")
            .inverse_cdf(1.0 - a / 2.0)
    };
    (lo, hi)
}

/// Fisher's exact test (two-sided, as scipy's `fisher_exact`) of the 2x2
/// table [[a, b], [c, d]]: do the rates a/(a+b) and c/(c+d) differ?
pub fn fisher_exact(a: u64, b: u64, c: u64, d: u64) -> f64 {
    let (n, row1, col1) = (a + b + c + d, a + b, a + c);
    if n == 0 {
        return 1.0;
    }
    let h = Hypergeometric::new(n, col1, row1).expect("a valid table");
    let observed = h.pmf(a);
    let lo = col1.saturating_sub(c + d);
    let hi = row1.min(col1);
    // Tables at most as likely as the observed one (with scipy's relative
    // tolerance for ties).
    (lo..=hi)
        .map(|x| h.pmf(x))
        .filter(|&p| p <= observed * (1.0 + 1e-7))
        .sum::<f64>()
        .min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() < tol, "{a} vs {b}");
    }

    /// Reference values from scipy.stats.t (ppf, sf, cdf).
    #[test]
    fn t_distribution_matches_tables() {
        close(t_quantile(0.975, 4.0), 2.776445, 1e-5);
        close(t_quantile(0.975, 9.0), 2.262157, 1e-5);
        close(t_quantile(0.975, 1.0), 12.706205, 1e-4);
        close(t_quantile(0.975, 1000.0), 1.962339, 1e-5);
        close(two_sided_p(2.0, 10.0), 0.07338803, 1e-7);
        close(two_sided_p(0.0, 5.0), 1.0, 1e-12);
        close(t_cdf(-1.5, 3.0), 0.1152919, 1e-6);
        close(t_quantile(0.95, 4.0), 2.131847, 1e-5);
    }

    /// Holm by hand (as statsmodels' multipletests(method="holm")).
    #[test]
    fn holm_adjustment() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.005]);
        for (a, b) in adj.iter().zip([0.03, 0.06, 0.06, 0.02]) {
            close(*a, b, 1e-12);
        }
        let with_nan = holm(&[0.02, f64::NAN, 0.04]);
        close(with_nan[0], 0.04, 1e-12);
        assert!(with_nan[1].is_nan());
        close(with_nan[2], 0.04, 1e-12);
    }

    /// scipy: max(t.sf((d + m) / se, df), t.cdf((d - m) / se, df)).
    #[test]
    fn tost_matches_scipy() {
        close(tost(0.001, 0.002, 4.0, 0.005), 0.058058262, 1e-7);
        close(tost(0.004, 0.002, 4.0, 0.005), 0.321664982, 1e-7);
        close(tost(-0.0055, 0.001, 9.0, 0.005), 0.685464350, 1e-7);
    }

    #[test]
    fn seeds_to_decide_by_hand() {
        // A clear difference (d = 2 sd) is decided by a handful of seeds;
        // a zero difference is shown equivalent once the CI fits the margin.
        let n = seeds_to_decide(0.02, 0.01, 0.005, 0.05, 1000).unwrap();
        assert!((3..=5).contains(&n), "{n}");
        let e = seeds_to_decide(0.0, 0.01, 0.005, 0.05, 1000).unwrap();
        // 2.13 * 0.01 / sqrt(n) < 0.005 -> n around 12-15.
        assert!((11..=16).contains(&e), "{e}");
        // A small difference under a wide spread needs more than 50 seeds either way.
        assert_eq!(seeds_to_decide(0.001, 0.05, 0.005, 0.05, 50), None);
    }

    /// scipy.stats.beta.ppf, as in statsmodels' proportion_confint(method="beta").
    #[test]
    fn clopper_pearson_matches_scipy() {
        let (lo, hi) = clopper_pearson(0, 5, 0.95);
        close(lo, 0.0, 1e-12);
        close(hi, 0.521823750, 1e-7);
        let (lo, hi) = clopper_pearson(2, 5, 0.95);
        close(lo, 0.052744951, 1e-7);
        close(hi, 0.853367200, 1e-7);
        let (lo, hi) = clopper_pearson(1, 10, 0.95);
        close(lo, 0.002528579, 1e-7);
        close(hi, 0.445016117, 1e-7);
        assert_eq!(clopper_pearson(5, 5, 0.95).1, 1.0);
    }

    /// scipy.stats.fisher_exact(...).pvalue.
    #[test]
    fn fisher_exact_matches_scipy() {
        close(fisher_exact(2, 3, 0, 5), 0.444444444, 1e-7);
        close(fisher_exact(5, 0, 0, 5), 0.007936508, 1e-7);
        close(fisher_exact(1, 4, 2, 3), 1.0, 1e-9);
    }

    #[test]
    fn mean_sd_ci() {
        let e = Estimate::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        close(e.mean, 3.0, 1e-12);
        close(e.sd, 1.5811388, 1e-7);
        // 3 +- 2.776445 * 1.5811388 / sqrt(5)
        close(e.ci_low, 1.0367568, 1e-6);
        close(e.ci_high, 4.9632432, 1e-6);
        assert!(Estimate::of(&[1.0]).ci_low.is_nan());
        assert!(Estimate::of(&[1.0, 2.0]).ci_low.is_nan());
    }

    /// Differences 1, 2, 3, 2, 2 -> mean 2, sd 0.7071068,
    /// t = 2 / (0.7071068 / sqrt 5) = 6.324555, df 4; scipy's ttest_rel
    /// gives p = 0.0031982.
    #[test]
    fn paired_test() {
        let a = [10.0, 11.0, 12.0, 13.0, 14.0];
        let b = [11.0, 13.0, 15.0, 15.0, 16.0];
        let r = paired(&a, &b);
        close(r.diff, 2.0, 1e-12);
        close(r.t, 6.324555, 1e-5);
        close(r.p, 0.003198, 1e-5);
    }

    /// scipy.stats.ttest_ind(b, a, equal_var=False) for a = 1..5,
    /// b = [2, 4, 6, 8, 11]: t = 1.866278, df = 5.573280, p = 0.114990.
    #[test]
    fn welch_test() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [2.0, 4.0, 6.0, 8.0, 11.0];
        let r = welch(&a, &b);
        close(r.diff, 3.2, 1e-12);
        close(r.t, 1.866278, 1e-5);
        close(r.df, 5.573280, 1e-5);
        close(r.p, 0.114990, 1e-5);
    }

    /// The seeds for a target half-width: t(0.975, n-1) sd / sqrt(n) <= h.
    /// With sd = 1 and h = 1, n = 7 (t = 2.447, 0.925) is the first (n = 6:
    /// 2.571 / 2.449 = 1.05); never fewer than 3, at most the cap.
    #[test]
    fn seeds_for_a_target_half_width() {
        assert_eq!(seeds_for_half_width(1.0, 1.0, 200), 7);
        assert_eq!(seeds_for_half_width(0.0, 1.0, 200), 3);
        assert_eq!(seeds_for_half_width(10.0, 0.01, 50), 50);
    }
}
