//! Small-sample statistics for comparing configurations over seeds: mean,
//! sample standard deviation, Student-t confidence intervals, the paired
//! t-test (runs of one seed share init and batch order, so differences pair
//! by seed) and Welch's test where they do not pair.

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

/// Mean with a two-sided 95% Student-t confidence interval.
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
        let half = if n >= 2 {
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

/// The result of a two-sided t-test of a difference (b - a).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TTest {
    /// "paired" or "welch".
    pub test: &'static str,
    pub n: usize,
    pub diff: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub t: f64,
    pub df: f64,
    pub p: f64,
}

impl TTest {
    /// Whether the 95% interval excludes zero.
    pub fn significant(&self) -> bool {
        self.p < 0.05
    }
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
        test: "paired",
        n: e.n,
        diff: e.mean,
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
        test: "welch",
        n: a.len().min(b.len()),
        diff,
        ci_low: diff - half,
        ci_high: diff + half,
        t,
        df,
        p: two_sided_p(t, df),
    }
}

/// Two-sided p-value of a t statistic with `df` degrees of freedom.
pub fn two_sided_p(t: f64, df: f64) -> f64 {
    if !t.is_finite() || !df.is_finite() || df <= 0.0 {
        return if t.is_infinite() && df > 0.0 {
            0.0
        } else {
            f64::NAN
        };
    }
    // P(|T| > |t|) = I_x(df/2, 1/2) with x = df / (df + t^2).
    inc_beta(df / 2.0, 0.5, df / (df + t * t))
}

/// Cumulative distribution function of Student's t.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * two_sided_p(t, df);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// Quantile of Student's t (bisection on the CDF; q in (0, 1)).
pub fn t_quantile(q: f64, df: f64) -> f64 {
    if df.is_nan() || df <= 0.0 || q <= 0.0 || q >= 1.0 || q.is_nan() {
        return f64::NAN;
    }
    let (mut lo, mut hi) = (-1e4, 1e4);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// ln Gamma(x) for x > 0 (Lanczos approximation, g = 7, 9 terms).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection formula.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, &c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularised incomplete beta function I_x(a, b).
fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The continued fraction converges fast for x < (a + 1) / (a + b + 2).
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Continued fraction for the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..500 {
        let m = m as f64;
        for num in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + num * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + num / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
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
        assert!(r.significant());
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
}
