//! Small-sample statistics for comparing configurations over seeds: mean,
//! sample standard deviation, Student-t confidence intervals, the paired
//! t-test (runs of one seed share init and batch order, so differences pair
//! by seed); Holm's correction for many comparisons, two one-sided tests (TOST) for equivalence within a
//! margin, one-sided tests, the power of the t-test and of TOST (for seed
//! plans), and, for counts of runs that blew up, Clopper-Pearson intervals,
//! Newcombe's interval of a difference of rates and Fisher's exact test.
//! The distributions are statrs'; every function is tested against scipy
//! or statsmodels.

use statrs::distribution::{
    Beta, ChiSquared, ContinuousCDF, Discrete, Hypergeometric, Normal, StudentsT,
};

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
}

/// The result of a two-sided t-test of a difference (b - a).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TTest {
    pub n: usize,
    pub diff: f64,
    /// Standard error of `diff`.
    pub se: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    t: f64,
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

/// Student's t with `df` degrees of freedom (None unless df > 0).
fn student(df: f64) -> Option<StudentsT> {
    (df.is_finite() && df > 0.0).then(|| StudentsT::new(0.0, 1.0, df).expect("valid df"))
}

/// Two-sided p-value of a t statistic with `df` degrees of freedom.
fn two_sided_p(t: f64, df: f64) -> f64 {
    match student(df) {
        Some(_) if t.is_infinite() => 0.0,
        Some(d) if t.is_finite() => (2.0 * d.sf(t.abs())).min(1.0),
        _ => f64::NAN,
    }
}

/// Cumulative distribution function of Student's t.
#[cfg(test)]
fn t_cdf(t: f64, df: f64) -> f64 {
    student(df).map_or(f64::NAN, |d| d.cdf(t))
}

/// Quantile of Student's t (q in (0, 1)).
fn t_quantile(q: f64, df: f64) -> f64 {
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

/// One-sided p-value of a t statistic: P(T >= t), for the claim that the
/// estimated quantity is above zero.
pub fn greater_p(t: f64, df: f64) -> f64 {
    match student(df) {
        Some(_) if t == f64::INFINITY => 0.0,
        Some(_) if t == f64::NEG_INFINITY => 1.0,
        Some(d) if t.is_finite() => d.sf(t),
        _ => f64::NAN,
    }
}

/// Non-superiority by one one-sided t-test: the p-value of "diff >= +margin"
/// for a difference estimated as `diff` with standard error `se` on `df`
/// degrees of freedom. Below alpha, the difference is shown to fall short of
/// `margin`.
pub fn below_margin_p(diff: f64, se: f64, df: f64, margin: f64) -> f64 {
    match student(df) {
        Some(d) if se > 0.0 && se.is_finite() && diff.is_finite() => d.cdf((diff - margin) / se),
        Some(_) if se == 0.0 && diff.is_finite() => {
            if diff < margin {
                0.0
            } else {
                1.0
            }
        }
        _ => f64::NAN,
    }
}

/// The expectation of `f(V)` for V chi-square with `df` degrees of freedom
/// (the sample variance's distribution, scaled), as the mean of `f` at the
/// midpoints of 400 equal-probability slices.
fn over_chi2(df: f64, f: impl Fn(f64) -> f64) -> f64 {
    let points = chi2_midpoints(df);
    points.iter().map(|&v| f(v)).sum::<f64>() / points.len() as f64
}

/// The quantiles of the chi-square with `df` degrees of freedom at the
/// midpoints of [`over_chi2`]'s slices, computed once per `df` in a
/// process: each is an iterative inverse of the incomplete gamma function,
/// and a seed plan asks for the same few `df` again and again.
fn chi2_midpoints(df: f64) -> std::sync::Arc<Vec<f64>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    const SLICES: usize = 400;
    static CACHE: OnceLock<Mutex<HashMap<u64, Arc<Vec<f64>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(points) = cache.lock().expect("not poisoned").get(&df.to_bits()) {
        return points.clone();
    }
    let d = ChiSquared::new(df).expect("df > 0");
    let points: Arc<Vec<f64>> = Arc::new(
        (0..SLICES)
            .map(|i| d.inverse_cdf((i as f64 + 0.5) / SLICES as f64))
            .collect(),
    );
    let mut map = cache.lock().expect("not poisoned");
    map.entry(df.to_bits()).or_insert(points).clone()
}

fn std_normal() -> Normal {
    Normal::new(0.0, 1.0).expect("a standard normal")
}

/// Power of a t-test on `n` paired differences whose true mean is `effect`
/// and true standard deviation `sd`, at level `alpha`: two-sided, or
/// one-sided for the claim "effect > 0" when `one_sided`. Computed from the
/// noncentral t distribution (the sample sd's chi-square averaged out
/// numerically), accurate to about 1e-3.
pub fn t_power(n: usize, effect: f64, sd: f64, alpha: f64, one_sided: bool) -> f64 {
    if n < 2 || !(sd > 0.0 && effect.is_finite()) {
        return f64::NAN;
    }
    let df = (n - 1) as f64;
    let crit = t_quantile(
        if one_sided {
            1.0 - alpha
        } else {
            1.0 - alpha / 2.0
        },
        df,
    );
    let ncp = effect.abs() * (n as f64).sqrt() / sd;
    let z = std_normal();
    over_chi2(df, |v| {
        let c = crit * (v / df).sqrt();
        let upper = z.sf(c - ncp);
        if one_sided {
            upper
        } else {
            upper + z.cdf(-c - ncp)
        }
    })
}

/// Power of two one-sided tests (TOST) at level `alpha` to show equivalence
/// within +/- `margin` from `n` paired differences of true mean 0 and true
/// standard deviation `sd`.
pub fn tost_power(n: usize, margin: f64, sd: f64, alpha: f64) -> f64 {
    if n < 2 || !(sd > 0.0 && margin > 0.0) {
        return f64::NAN;
    }
    let df = (n - 1) as f64;
    let crit = t_quantile(1.0 - alpha, df);
    let root_n = (n as f64).sqrt();
    let z = std_normal();
    over_chi2(df, |v| {
        // Equivalent when |mean| + crit * s / sqrt(n) < margin.
        let room = margin - crit * sd * (v / df).sqrt() / root_n;
        if room <= 0.0 {
            0.0
        } else {
            2.0 * z.cdf(room * root_n / sd) - 1.0
        }
    })
}

/// The fewest seeds n (at least [`MIN_RUNS_FOR_INTERVAL`], at most `cap`)
/// whose `power(n)` reaches `target`; None when even `cap` does not.
/// `power` must not fall as n grows (a test's power at a fixed effect
/// does not), so the first n is found by bisection: about log2(cap)
/// evaluations instead of one per n.
pub fn seeds_for_power(power: impl Fn(usize) -> f64, target: f64, cap: usize) -> Option<usize> {
    let (mut lo, mut hi) = (MIN_RUNS_FOR_INTERVAL, cap);
    // A NaN power reaches nothing.
    let reaches = |n: usize| power(n) >= target;
    if lo > hi || !reaches(hi) {
        return None;
    }
    // Invariant: power(hi) reaches the target; every n below lo does not.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match reaches(mid) {
            true => hi = mid,
            false => lo = mid + 1,
        }
    }
    Some(hi)
}

/// Newcombe's hybrid score interval (method 10) for the difference of two
/// rates k2/n2 - k1/n1, at confidence `conf`, from Wilson's intervals of
/// each rate.
pub fn newcombe(k1: usize, n1: usize, k2: usize, n2: usize, conf: f64) -> (f64, f64) {
    if n1 == 0 || n2 == 0 {
        return (f64::NAN, f64::NAN);
    }
    let z = std_normal().inverse_cdf(1.0 - (1.0 - conf) / 2.0);
    let wilson = |k: usize, n: usize| {
        let (p, n) = (k as f64 / n as f64, n as f64);
        let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
        let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
        (p, centre - half, centre + half)
    };
    let (p1, l1, u1) = wilson(k1, n1);
    let (p2, l2, u2) = wilson(k2, n2);
    let d = p2 - p1;
    (
        (d - ((p2 - l2).powi(2) + (u1 - p1).powi(2)).sqrt()).max(-1.0),
        (d + ((u2 - p2).powi(2) + (p1 - l1).powi(2)).sqrt()).min(1.0),
    )
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

    /// Power of the paired t-test against scipy's noncentral t
    /// (statsmodels' TTestPower gives the same values).
    #[test]
    fn t_power_matches_noncentral_t() {
        close(t_power(5, 1.0, 1.0, 0.05, false), 0.4013899, 2e-3);
        close(t_power(10, 0.5, 1.0, 0.05, false), 0.2931756, 2e-3);
        close(t_power(8, 0.8, 1.0, 0.025, true), 0.4963455, 2e-3);
        close(t_power(20, 0.3, 1.0, 0.0125, false), 0.1033898, 2e-3);
        // Scale-free: effect and sd in other units.
        close(t_power(10, 0.005, 0.01, 0.05, false), 0.2931756, 2e-3);
    }

    /// TOST power at a true difference of 0, against numerical
    /// integration in scipy (and a simulation: 0.796 and 0.394).
    #[test]
    fn tost_power_matches_integration() {
        close(tost_power(10, 1.0, 1.0, 0.05), 0.7952073, 2e-3);
        close(tost_power(20, 0.5, 1.0, 0.05), 0.3934631, 2e-3);
        close(tost_power(6, 1.5, 1.0, 0.0125), 0.4781811, 2e-3);
    }

    /// The plan is the first n reaching the target, none past the cap.
    #[test]
    fn seeds_for_power_finds_the_first_n() {
        let n = seeds_for_power(|n| t_power(n, 0.5, 1.0, 0.05, false), 0.8, 500).unwrap();
        assert!(t_power(n, 0.5, 1.0, 0.05, false) >= 0.8);
        assert!(t_power(n - 1, 0.5, 1.0, 0.05, false) < 0.8);
        assert_eq!(n, 34); // pwr.t.test(d = 0.5, power = 0.8, type = "paired"): 33.4
        assert_eq!(seeds_for_power(|_| 0.1, 0.8, 50), None);
        // The same n as a scan from the smallest n up, over effects whose
        // plans span the range.
        for effect in [0.3, 0.6, 1.0, 2.0, 4.0] {
            let power = |n| tost_power(n, effect, 1.0, 0.05);
            let scan = (MIN_RUNS_FOR_INTERVAL..=60).find(|&n| power(n) >= 0.8);
            assert_eq!(seeds_for_power(power, 0.8, 60), scan, "effect {effect}");
        }
    }

    /// Newcombe's hybrid score interval, against statsmodels
    /// (confint_proportions_2indep, method "newcomb") and Newcombe (1998).
    #[test]
    fn newcombe_matches_statsmodels() {
        let (lo, hi) = newcombe(48, 80, 56, 70, 0.95);
        close(lo, 0.0524315, 1e-6);
        close(hi, 0.3338727, 1e-6);
        let (lo, hi) = newcombe(0, 5, 5, 5, 0.95);
        close(lo, 0.3855490, 1e-6);
        close(hi, 1.0, 1e-9);
    }

    /// One-sided p-values: of "above 0", and of "at least the margin".
    #[test]
    fn one_sided_p_values() {
        close(greater_p(2.0, 10.0), 0.07338803 / 2.0, 1e-7);
        close(greater_p(-2.0, 10.0), 1.0 - 0.07338803 / 2.0, 1e-7);
        // diff 0.1, se 0.1, margin 0.5: t = -4 on 4 df.
        close(below_margin_p(0.1, 0.1, 4.0, 0.5), t_cdf(-4.0, 4.0), 1e-12);
        assert_eq!(below_margin_p(0.1, 0.0, 4.0, 0.5), 0.0);
    }
}
