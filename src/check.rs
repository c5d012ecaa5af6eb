//! `drop-exp check`: has accuracy regressed between two accuracy CSVs?
//!
//! Both files are `summary.csv` or `runs.csv` files written by an experiment.
//! Rows are matched on the configuration columns. For each configuration the
//! headline accuracy (mean over seeds of each run's last-3-epoch test
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

/// The input could not be used (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

fn input_err<T>(msg: String) -> Result<T> {
    Err(InputError(msg).into())
}

/// The columns identifying a configuration.
pub const CONFIG_COLUMNS: [&str; 8] = [
    "label",
    "reg",
    "p1",
    "p2",
    "weight_decay",
    "lr",
    "batch_size",
    "epochs",
];

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
pub struct Stat {
    pub mean: f64,
    pub sd: f64,
    pub n: usize,
}

/// A configuration's quantities as read from one file.
#[derive(Debug, Clone, Default)]
pub struct Side {
    pub quantities: BTreeMap<&'static str, Stat>,
}

/// The quantities compared: name, higher is better?
const QUANTITIES: [(&str, bool); 3] = [
    ("last3_acc", true),
    ("final_acc", true),
    ("train_loss", false),
];

/// The allowed difference for two sides of one quantity.
pub fn allowed(base: Stat, cur: Stat, floor: f64, k: f64) -> f64 {
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
pub struct Line {
    pub configuration: String,
    pub quantity: &'static str,
    pub baseline: Stat,
    pub current: Stat,
    pub diff: f64,
    pub allowed: f64,
    /// "ok", "regressed" or "improved".
    pub verdict: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub baseline: PathBuf,
    pub current: PathBuf,
    pub tolerance: Tolerance,
    pub lines: Vec<Line>,
    pub regressed: usize,
    pub improved: usize,
    pub failed: bool,
}

/// Reads a `summary.csv` or `runs.csv` into per-configuration statistics.
pub fn read_side(path: &Path) -> Result<BTreeMap<String, Side>> {
    let mut rdr = csv::Reader::from_path(path)
        .map_err(|e| InputError(format!("cannot read {}: {e}", path.display())))?;
    let headers = rdr
        .headers()
        .map_err(|e| InputError(format!("{}: unreadable header: {e}", path.display())))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let missing: Vec<&str> = CONFIG_COLUMNS
        .iter()
        .copied()
        .filter(|c| col(c).is_none())
        .collect();
    if !missing.is_empty() {
        return input_err(format!(
            "{}: missing configuration column(s) {}; give a summary.csv or runs.csv written by drop-exp",
            path.display(),
            missing.join(", ")
        ));
    }
    let records: Vec<csv::StringRecord> = rdr
        .records()
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| InputError(format!("{}: malformed CSV: {e}", path.display())))?;
    if records.is_empty() {
        return input_err(format!("{}: no rows", path.display()));
    }
    let key = |r: &csv::StringRecord| -> String {
        CONFIG_COLUMNS
            .iter()
            .map(|c| format!("{c}={}", &r[col(c).unwrap()]))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let num = |r: &csv::StringRecord, name: &str, line: usize| -> Result<f64> {
        let i = col(name)
            .ok_or_else(|| InputError(format!("{}: missing column `{name}`", path.display())))?;
        let v: f64 = r[i].trim().parse().map_err(|_| {
            InputError(format!(
                "{}: row {line}: `{name}` is `{}`, not a number",
                path.display(),
                &r[i]
            ))
        })?;
        Ok(v)
    };
    let mut out: BTreeMap<String, Side> = BTreeMap::new();
    if col("last3_mean").is_some() {
        // summary.csv: one row per configuration.
        for (i, r) in records.iter().enumerate() {
            let line = i + 2;
            let n = num(r, "n", line)? as usize;
            let stat = |m: &str, s: &str| -> Result<Stat> {
                Ok(Stat {
                    mean: num(r, m, line)?,
                    sd: num(r, s, line)?,
                    n,
                })
            };
            let mut side = Side::default();
            side.quantities
                .insert("last3_acc", stat("last3_mean", "last3_sd")?);
            side.quantities
                .insert("final_acc", stat("final_mean", "final_sd")?);
            side.quantities
                .insert("train_loss", stat("train_loss_mean", "train_loss_sd")?);
            if out.insert(key(r), side).is_some() {
                return input_err(format!(
                    "{}: configuration on row {line} appears twice",
                    path.display()
                ));
            }
        }
    } else if col("epoch").is_some() && col("seed").is_some() {
        // runs.csv: rows per epoch per seed; reduce to per-run values first.
        // (configuration, seed) -> (epoch, test_acc, train_loss, diverged) per row.
        type Rows = Vec<(f64, f64, f64, bool)>;
        let mut runs: BTreeMap<(String, String), Rows> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            let line = i + 2;
            let diverged = col("diverged").is_some_and(|c| &r[c] == "true");
            let seed = r[col("seed").unwrap()].to_string();
            runs.entry((key(r), seed)).or_default().push((
                num(r, "epoch", line)?,
                num(r, "test_acc", line)?,
                num(r, "train_loss", line)?,
                diverged,
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
            let last = rows.last().unwrap();
            per_config
                .entry(k)
                .or_default()
                .push([last3, last.1, last.2]);
        }
        for (k, vals) in per_config {
            let stat = |j: usize| {
                let xs: Vec<f64> = vals.iter().map(|v| v[j]).collect();
                Stat {
                    mean: stats::mean(&xs),
                    sd: stats::sd(&xs),
                    n: xs.len(),
                }
            };
            let mut side = Side::default();
            side.quantities.insert("last3_acc", stat(0));
            side.quantities.insert("final_acc", stat(1));
            side.quantities.insert("train_loss", stat(2));
            out.insert(k, side);
        }
    } else {
        return input_err(format!(
            "{}: neither a summary.csv (no `last3_mean` column) nor a runs.csv (no `epoch` and `seed` columns)",
            path.display()
        ));
    }
    Ok(out)
}

/// Compares two files.
pub fn check(
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
        for (q, higher_better) in QUANTITIES {
            if q == "final_acc" && !final_too {
                continue;
            }
            let (bs, cs) = (b.quantities[q], c.quantities[q]);
            if !(bs.mean.is_finite() && cs.mean.is_finite()) {
                return input_err(format!(
                    "{k}: `{q}` is not a number (baseline {}, current {}); were all runs of this configuration diverged?",
                    bs.mean, cs.mean
                ));
            }
            let floor = if higher_better {
                tol.acc_floor
            } else {
                tol.loss_floor
            };
            let allow = allowed(bs, cs, floor, tol.k);
            let diff = cs.mean - bs.mean;
            let signed = if higher_better { diff } else { -diff };
            let verdict = if signed < -allow {
                "regressed"
            } else if signed > allow {
                "improved"
            } else {
                "ok"
            };
            lines.push(Line {
                configuration: k.clone(),
                quantity: q,
                baseline: bs,
                current: cs,
                diff,
                allowed: allow,
                verdict,
            });
        }
    }
    let regressed = lines.iter().filter(|l| l.verdict == "regressed").count();
    let improved = lines.iter().filter(|l| l.verdict == "improved").count();
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
pub fn render(o: &Outcome) -> String {
    let mut s = String::new();
    for l in &o.lines {
        let scale = if l.quantity == "train_loss" {
            1.0
        } else {
            100.0
        };
        let unit = if l.quantity == "train_loss" { "" } else { "%" };
        let label = l
            .configuration
            .split(' ')
            .next()
            .and_then(|x| x.strip_prefix("label="))
            .unwrap_or(&l.configuration);
        s += &format!(
            "{label:<24} {:<10} baseline {:.4}{unit} ± {:.4} (n={})  current {:.4}{unit} ± {:.4} (n={})  diff {:+.4}  allowed ±{:.4}  {}\n",
            l.quantity,
            scale * l.baseline.mean,
            scale * l.baseline.sd,
            l.baseline.n,
            scale * l.current.mean,
            scale * l.current.sd,
            l.current.n,
            scale * l.diff,
            scale * l.allowed,
            l.verdict.to_uppercase()
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

/// `drop-exp check`: prints the report, writes JSON if asked; returns whether it passed.
pub fn cmd_check(args: &crate::cli::CheckArgs) -> Result<bool> {
    let tol = Tolerance {
        k: args.k,
        acc_floor: args.acc_floor,
        loss_floor: args.loss_floor,
    };
    let o = check(
        &args.baseline,
        &args.current,
        tol,
        args.final_epoch,
        args.improvements_fail,
    )?;
    print!("{}", render(&o));
    if let Some(path) = &args.json {
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
