//! `drop-exp check`: has accuracy regressed between two accuracy CSVs?
//!
//! Both files are `summary.csv` or `runs.csv` files written by an experiment.
//! Rows are matched on the configuration columns: every column before `seed`
//! (runs.csv) or `n` (summary.csv), as the writers lay them out (see
//! [`crate::analysis::ConfigCols`]). For each configuration the
//! last-3 accuracy (mean over seeds of each run's last-3-epoch test
//! accuracy; optionally the final-epoch accuracy too) and the final train
//! loss are compared with a tolerance derived from the spread over seeds:
//!
//! ```text
//! se      = sqrt(sd_base^2 / n_base + sd_cur^2 / n_cur)
//! allowed = max(k * se, floor)
//! ```
//!
//! where a side with a single seed (no sd of its own) borrows the other
//! side's sd. Accuracy regresses when current - baseline < -allowed; train
//! loss when current - baseline > +allowed. With identical inputs the
//! difference is exactly 0 (CPU runs are deterministic); the tolerance is
//! there for other CPUs and for CUDA.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::stats;

/// The input could not be used (the caller exits with code 2).
fn input_err<T>(msg: String) -> Result<T> {
    Err(anyhow::anyhow!(msg))
}

/// Tolerance parameters.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tolerance {
    /// Multiple of the standard error of the difference.
    pub k: f64,
    /// Smallest allowed accuracy difference (fraction, 0.005 = half a point).
    pub acc_floor: f64,
    /// Smallest allowed train-loss difference.
    pub loss_floor: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self {
            k: 3.0,
            acc_floor: 0.005,
            loss_floor: 0.01,
        }
    }
}

/// Mean, sd and n of one quantity for one configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
struct Stat {
    mean: f64,
    sd: f64,
    n: usize,
}

/// A quantity compared between the two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum Quantity {
    /// Mean over seeds of each run's last-3-epoch test accuracy.
    Last3Acc,
    /// Final-epoch test accuracy.
    FinalAcc,
    /// Final train loss.
    TrainLoss,
}

impl Quantity {
    const ALL: [Quantity; 3] = [Quantity::Last3Acc, Quantity::FinalAcc, Quantity::TrainLoss];

    fn name(self) -> &'static str {
        match self {
            Quantity::Last3Acc => "last3_acc",
            Quantity::FinalAcc => "final_acc",
            Quantity::TrainLoss => "train_loss",
        }
    }

    fn higher_is_better(self) -> bool {
        self != Quantity::TrainLoss
    }

    /// The summary.csv columns of its mean and sd.
    fn summary_columns(self) -> (&'static str, &'static str) {
        match self {
            Quantity::Last3Acc => ("last3_mean", "last3_sd"),
            Quantity::FinalAcc => ("final_mean", "final_sd"),
            Quantity::TrainLoss => ("train_loss_mean", "train_loss_sd"),
        }
    }
}

/// A configuration's quantities as read from one file.
#[derive(Debug, Clone, Default)]
pub struct Side {
    quantities: BTreeMap<Quantity, Stat>,
}

/// How a quantity moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Ok,
    Regressed,
    Improved,
}

/// The allowed difference for two sides of one quantity.
fn allowed(base: Stat, cur: Stat, floor: f64, k: f64) -> f64 {
    let sd_b = if base.n >= 2 && base.sd.is_finite() {
        base.sd
    } else {
        cur.sd
    };
    let sd_c = if cur.n >= 2 && cur.sd.is_finite() {
        cur.sd
    } else {
        sd_b
    };
    let se = (sd_b.powi(2) / base.n.max(1) as f64 + sd_c.powi(2) / cur.n.max(1) as f64).sqrt();
    if se.is_finite() {
        (k * se).max(floor)
    } else {
        floor
    }
}

/// One line of the comparison.
#[derive(Debug, Clone, Serialize)]
struct Line {
    configuration: String,
    quantity: Quantity,
    baseline: Stat,
    current: Stat,
    diff: f64,
    allowed: f64,
    verdict: Verdict,
}

#[derive(Debug, Clone, Serialize)]
struct Outcome {
    baseline: PathBuf,
    current: PathBuf,
    tolerance: Tolerance,
    lines: Vec<Line>,
    regressed: usize,
    improved: usize,
    failed: bool,
}

/// One file's header and rows, with helpers that name the file in errors.
struct Table<'a> {
    path: &'a Path,
    headers: csv::StringRecord,
    records: Vec<csv::StringRecord>,
    /// Indices of the configuration columns.
    config: Vec<usize>,
}

impl Table<'_> {
    fn col(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// The configuration of a row, as `column=value` pairs.
    fn key(&self, r: &csv::StringRecord) -> String {
        self.config
            .iter()
            .map(|&i| format!("{}={}", &self.headers[i], &r[i]))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn num(&self, r: &csv::StringRecord, name: &str, line: usize) -> Result<f64> {
        let i = self
            .col(name)
            .ok_or_else(|| anyhow::anyhow!("{}: missing column `{name}`", self.path.display()))?;
        let v: f64 = r[i].trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "{}: row {line}: `{name}` is `{}`, not a number",
                self.path.display(),
                &r[i]
            )
        })?;
        Ok(v)
    }
}

/// Reads a `summary.csv` or `runs.csv` into per-configuration statistics.
pub fn read_side(path: &Path) -> Result<BTreeMap<String, Side>> {
    let mut rdr = csv::Reader::from_path(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let headers = rdr
        .headers()
        .map_err(|e| anyhow::anyhow!("{}: unreadable header: {e}", path.display()))?
        .clone();
    let is_summary = headers.iter().any(|h| h == "last3_mean");
    let is_runs = ["epoch", "seed"]
        .iter()
        .all(|c| headers.iter().any(|h| h == *c));
    if !is_summary && !is_runs {
        return input_err(format!(
            "{}: neither a summary.csv (no `last3_mean` column) nor a runs.csv (no `epoch` and `seed` columns)",
            path.display()
        ));
    }
    let first_after = if is_summary { "n" } else { "seed" };
    let end = headers.iter().position(|h| h == first_after);
    let config: Vec<usize> = (0..end.unwrap_or(0)).collect();
    if headers.get(0) != Some("label") || end.is_none() {
        return input_err(format!(
            "{}: the configuration columns (`label` first, up to `{first_after}`) are missing; give a summary.csv or runs.csv written by drop-exp",
            path.display()
        ));
    }
    let records: Vec<csv::StringRecord> = rdr
        .records()
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{}: malformed CSV: {e}", path.display()))?;
    if records.is_empty() {
        return input_err(format!("{}: no rows", path.display()));
    }
    let table = Table {
        path,
        headers,
        records,
        config,
    };
    if is_summary {
        read_summary(&table)
    } else {
        read_runs(&table)
    }
}

/// summary.csv: one row per configuration.
fn read_summary(t: &Table) -> Result<BTreeMap<String, Side>> {
    let mut out = BTreeMap::new();
    for (i, r) in t.records.iter().enumerate() {
        let line = i + 2;
        let n = t.num(r, "n", line)? as usize;
        let mut side = Side::default();
        for q in Quantity::ALL {
            let (m, s) = q.summary_columns();
            side.quantities.insert(
                q,
                Stat {
                    mean: t.num(r, m, line)?,
                    sd: t.num(r, s, line)?,
                    n,
                },
            );
        }
        if out.insert(t.key(r), side).is_some() {
            return input_err(format!(
                "{}: configuration on row {line} appears twice",
                t.path.display()
            ));
        }
    }
    Ok(out)
}

/// runs.csv: rows per epoch per seed, reduced to per-run values first.
fn read_runs(t: &Table) -> Result<BTreeMap<String, Side>> {
    // (configuration, seed) -> (epoch, test_acc, train_loss, diverged) per row.
    type Rows = Vec<(f64, f64, f64, bool)>;
    let mut runs: BTreeMap<(String, String), Rows> = BTreeMap::new();
    let (seed, diverged) = (t.col("seed").expect("checked"), t.col("diverged"));
    for (i, r) in t.records.iter().enumerate() {
        let line = i + 2;
        runs.entry((t.key(r), r[seed].to_string()))
            .or_default()
            .push((
                t.num(r, "epoch", line)?,
                t.num(r, "test_acc", line)?,
                t.num(r, "train_loss", line)?,
                diverged.is_some_and(|c| &r[c] == "true"),
            ));
    }
    let mut per_config: BTreeMap<String, Vec<[f64; 3]>> = BTreeMap::new();
    for ((k, _), mut rows) in runs {
        if rows.iter().any(|r| r.3) {
            continue; // diverged runs carry no accuracy to compare
        }
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let tail = &rows[rows.len().saturating_sub(crate::analysis::LAST_K)..];
        let last3 = tail.iter().map(|r| r.1).sum::<f64>() / tail.len() as f64;
        let last = rows.last().expect("a run has rows");
        per_config
            .entry(k)
            .or_default()
            .push([last3, last.1, last.2]);
    }
    let mut out = BTreeMap::new();
    for (k, vals) in per_config {
        let mut side = Side::default();
        for (j, q) in Quantity::ALL.into_iter().enumerate() {
            let xs: Vec<f64> = vals.iter().map(|v| v[j]).collect();
            side.quantities.insert(
                q,
                Stat {
                    mean: stats::mean(&xs),
                    sd: stats::sd(&xs),
                    n: xs.len(),
                },
            );
        }
        out.insert(k, side);
    }
    Ok(out)
}

/// One quantity of one configuration, baseline against current.
fn compare_stat(k: &str, q: Quantity, bs: Stat, cs: Stat, tol: Tolerance) -> Result<Line> {
    if !(bs.mean.is_finite() && cs.mean.is_finite()) {
        return input_err(format!(
            "{k}: `{}` is not a number (baseline {}, current {}); were all runs of this configuration diverged?",
            q.name(),
            bs.mean,
            cs.mean
        ));
    }
    let higher_better = q.higher_is_better();
    let floor = if higher_better {
        tol.acc_floor
    } else {
        tol.loss_floor
    };
    let allow = allowed(bs, cs, floor, tol.k);
    let diff = cs.mean - bs.mean;
    let signed = if higher_better { diff } else { -diff };
    let verdict = if signed < -allow {
        Verdict::Regressed
    } else if signed > allow {
        Verdict::Improved
    } else {
        Verdict::Ok
    };
    Ok(Line {
        configuration: k.to_string(),
        quantity: q,
        baseline: bs,
        current: cs,
        diff,
        allowed: allow,
        verdict,
    })
}

/// Compares two files.
fn check(
    base_path: &Path,
    cur_path: &Path,
    tol: Tolerance,
    final_too: bool,
    improvements_fail: bool,
) -> Result<Outcome> {
    let base = read_side(base_path)?;
    let cur = read_side(cur_path)?;
    let only_base: Vec<&String> = base.keys().filter(|k| !cur.contains_key(*k)).collect();
    let only_cur: Vec<&String> = cur.keys().filter(|k| !base.contains_key(*k)).collect();
    if base.keys().all(|k| !cur.contains_key(k)) {
        return input_err(format!(
            "no configuration in common between {} and {}; were they made by the same experiment and preset?",
            base_path.display(),
            cur_path.display()
        ));
    }
    if !only_base.is_empty() || !only_cur.is_empty() {
        let mut msg = String::from("the two files do not hold the same configurations:");
        for k in &only_base {
            msg += &format!("\n  only in the baseline {}: {k}", base_path.display());
        }
        for k in &only_cur {
            msg += &format!("\n  only in the current {}: {k}", cur_path.display());
        }
        return input_err(msg);
    }
    let mut lines = Vec::new();
    for (k, b) in &base {
        let c = &cur[k];
        for q in Quantity::ALL {
            if q == Quantity::FinalAcc && !final_too {
                continue;
            }
            lines.push(compare_stat(k, q, b.quantities[&q], c.quantities[&q], tol)?);
        }
    }
    let count = |v| lines.iter().filter(|l| l.verdict == v).count();
    let (regressed, improved) = (count(Verdict::Regressed), count(Verdict::Improved));
    Ok(Outcome {
        baseline: base_path.to_path_buf(),
        current: cur_path.to_path_buf(),
        tolerance: tol,
        failed: regressed > 0 || (improvements_fail && improved > 0),
        lines,
        regressed,
        improved,
    })
}

/// The human-readable report.
fn render(o: &Outcome) -> String {
    let mut s = String::new();
    for l in &o.lines {
        let (scale, unit) = if l.quantity == Quantity::TrainLoss {
            (1.0, "")
        } else {
            (100.0, "%")
        };
        let label = l
            .configuration
            .split(' ')
            .next()
            .and_then(|x| x.strip_prefix("label="))
            .unwrap_or(&l.configuration);
        s += &format!(
            "{label:<24} {:<10} baseline {:.4}{unit} ± {:.4} (n={})  current {:.4}{unit} ± {:.4} (n={})  diff {:+.4}  allowed ±{:.4}  {}\n",
            l.quantity.name(),
            scale * l.baseline.mean,
            scale * l.baseline.sd,
            l.baseline.n,
            scale * l.current.mean,
            scale * l.current.sd,
            l.current.n,
            scale * l.diff,
            scale * l.allowed,
            format!("{:?}", l.verdict).to_uppercase()
        );
    }
    let configs = o
        .lines
        .iter()
        .map(|l| &l.configuration)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    s += &format!(
        "check: {configs} configurations, {} comparisons: {} regressed, {} improved beyond tolerance: {}\n",
        o.lines.len(),
        o.regressed,
        o.improved,
        if o.failed { "FAIL" } else { "PASS" }
    );
    s
}

/// What `drop-exp check` compares, and how.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub baseline: PathBuf,
    pub current: PathBuf,
    pub tolerance: Tolerance,
    /// Also compare final-epoch test accuracy.
    pub final_epoch: bool,
    /// Also fail when a quantity improves beyond the tolerance.
    pub improvements_fail: bool,
    /// Write the comparison as JSON here.
    pub json: Option<PathBuf>,
}

/// `drop-exp check`: prints the report, writes JSON if asked; returns whether it passed.
pub fn cmd_check(opts: &CheckOptions) -> Result<bool> {
    let o = check(
        &opts.baseline,
        &opts.current,
        opts.tolerance,
        opts.final_epoch,
        opts.improvements_fail,
    )?;
    print!("{}", render(&o));
    if let Some(path) = &opts.json {
        crate::output::write_json(path, &o)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(!o.failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(mean: f64, sd: f64, n: usize) -> Stat {
        Stat { mean, sd, n }
    }

    /// Hand-computed: sd 0.01 on both sides, n = 3 each:
    /// se = sqrt(0.0001/3 * 2) = 0.0081650, k = 3 -> 0.0244949.
    #[test]
    fn tolerance_rule() {
        let a = allowed(st(0.8, 0.01, 3), st(0.8, 0.01, 3), 0.005, 3.0);
        assert!((a - 0.0244949).abs() < 1e-6, "{a}");
        // The floor wins for tiny spreads.
        assert_eq!(
            allowed(st(0.8, 0.0001, 3), st(0.8, 0.0001, 3), 0.005, 3.0),
            0.005
        );
        // A single-seed side borrows the other side's sd: se = sqrt(1e-4/3 + 1e-4/1).
        let b = allowed(st(0.8, 0.01, 3), st(0.8, f64::NAN, 1), 0.0, 3.0);
        assert!(
            (b - 3.0 * (1e-4f64 / 3.0 + 1e-4).sqrt()).abs() < 1e-9,
            "{b}"
        );
        // Unequal n: sd_b 0.02 (n 5), sd_c 0.01 (n 2): se = sqrt(0.0004/5 + 0.0001/2) = 0.0114018.
        let c = allowed(st(0.8, 0.02, 5), st(0.8, 0.01, 2), 0.0, 2.0);
        assert!((c - 2.0 * 0.0114018).abs() < 1e-6, "{c}");
    }
}
