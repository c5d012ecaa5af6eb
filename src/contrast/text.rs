//! Contrasts in words: the estimate with its interval, the verdict with
//! the seed plan, p-values, and the markdown tables verdicts and REPORT.md
//! show.

use super::{ContrastRow, Sides, Verdict, PLAN_CAP};
use crate::stats;

/// A value in the row's unit, signed: "+0.41 points".
fn signed(row: &ContrastRow, x: f64) -> String {
    let digits = if row.unit == "points" || row.unit == "points of rate" {
        2
    } else {
        3
    };
    format!("{:+.*}", digits, row.scale * x)
}

/// " points", or nothing for a unitless measure.
fn unit(row: &ContrastRow) -> String {
    if row.unit.is_empty() {
        String::new()
    } else {
        format!(" {}", row.unit)
    }
}

/// "+0.41 points (95% CI -0.10 to +0.92)", or why there is no interval.
pub fn estimate_text(row: &ContrastRow) -> String {
    if row.n == 0 {
        return "no value on one side (every run diverged first)".into();
    }
    match (row.ci_low, row.ci_high) {
        (Some(lo), Some(hi)) => format!(
            "{}{} (95% CI {} to {})",
            signed(row, row.estimate),
            unit(row),
            signed(row, lo),
            signed(row, hi)
        ),
        _ => format!(
            "{}{} from {} run(s) per side: too few for an interval",
            signed(row, row.estimate),
            unit(row),
            row.n
        ),
    }
}

/// The verdict in words, with the plan where undecided.
pub fn verdict_text(row: &ContrastRow) -> String {
    let sesoi = row
        .sesoi
        .map(|s| {
            format!(
                "{:.*}",
                if row.scale == 100.0 { 2 } else { 3 },
                row.scale * s
            )
        })
        .unwrap_or_default();
    let better = |up: bool| match row.higher_is_better {
        Some(h) if h == up => " (better)",
        Some(_) => " (worse)",
        None => "",
    };
    match row.verdict {
        None => "exploratory (no verdict)".into(),
        Some(_) if row.n < stats::MIN_RUNS_FOR_INTERVAL => {
            format!("undecided: {} run(s), fewer than 3", row.n)
        }
        Some(Verdict::Higher) => format!("higher{}", better(true)),
        Some(Verdict::Lower) => format!("lower{}", better(false)),
        Some(Verdict::Equivalent) => format!("equivalent within ±{sesoi}{}", unit(row)),
        Some(Verdict::ShortOfInterest) => {
            format!("short of the effect of interest (+{sesoi}{})", unit(row))
        }
        Some(Verdict::Undecided) => match (row.is_rate, row.planned_seeds()) {
            (true, _) => "undecided".into(),
            (false, Some(n)) => format!("undecided (plan: {n} seeds for 80% power)"),
            (false, None) => format!("undecided (80% power needs over {PLAN_CAP} seeds)"),
        },
    }
}

/// A p-value for text: three decimals, or "< 0.001", or "n/a".
fn p_text(p: Option<f64>) -> String {
    match p {
        None => "n/a".into(),
        Some(p) if p < 0.001 => "< 0.001".into(),
        Some(p) => format!("{p:.3}"),
    }
}

/// The markdown table of an exercise's primary contrasts.
pub fn primary_table(rows: &[&ContrastRow]) -> String {
    let mut s = String::from(
        "| question | contrast | metric | estimate (95% CI) | test | Holm p | verdict | n | failed runs |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {} | {}{} | {} | **{}** | {} | {} |\n",
            r.question,
            r.contrast,
            r.metric,
            estimate_text(r),
            r.test,
            if r.sides == Sides::Greater {
                ", one-sided"
            } else {
                ""
            },
            p_text(r.p_holm),
            verdict_text(r),
            r.n,
            r.failed
        );
    }
    s
}

/// Exploratory rows as a list: estimate and interval, no verdict.
pub fn exploratory_list(rows: &[&ContrastRow]) -> String {
    rows.iter()
        .map(|r| format!("- {} ({}): {}.\n", r.contrast, r.metric, estimate_text(r)))
        .collect()
}
