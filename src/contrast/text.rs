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
            "{}{} (n={}, no interval)",
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
            format!("undecided: {} runs, fewer than 3", row.n)
        }
        Some(Verdict::Higher) => format!("higher{}{}", better(true), against_sesoi(row)),
        Some(Verdict::Lower) => format!("lower{}{}", better(false), against_sesoi(row)),
        Some(Verdict::Equivalent) => format!("equivalent within ±{sesoi}{}", unit(row)),
        Some(Verdict::ShortOfInterest) => {
            format!("short of the effect of interest (+{sesoi}{})", unit(row))
        }
        Some(Verdict::Undecided) => undecided_text(row),
    }
}

/// How a decided difference compares with the smallest effect of
/// interest: by less (its estimate inside it), by more (its whole
/// interval beyond it), or the estimate beyond it and the interval not.
fn against_sesoi(row: &ContrastRow) -> String {
    // A rate contrast without a margin (blow-ups: any difference counts).
    let Some(sesoi) = row.sesoi.filter(|s| *s > 0.0) else {
        return String::new();
    };
    let shown = format!(
        "{:.*}{}",
        if row.scale == 100.0 { 2 } else { 3 },
        row.scale * sesoi,
        unit(row)
    );
    // The interval's end nearest zero, as a magnitude in the estimate's
    // direction.
    let near = match (row.ci_low, row.ci_high) {
        (Some(lo), Some(hi)) => Some(if row.estimate > 0.0 { lo } else { -hi }),
        _ => None,
    };
    if row.estimate.abs() < sesoi {
        format!(", by less than the smallest effect of interest ({shown})")
    } else if near.is_some_and(|n| n >= sesoi) {
        format!(", by more than the smallest effect of interest ({shown})")
    } else {
        format!(
            "; its estimate exceeds the smallest effect of interest ({shown}), its interval \
             reaches inside it"
        )
    }
}

/// An undecided verdict: the seed plan still to carry out, what a plan
/// carried out gave, or the seed cap it stopped at.
fn undecided_text(row: &ContrastRow) -> String {
    if row.is_rate {
        return "undecided".into();
    }
    let need = match row.planned_seeds() {
        Some(n) => format!("{n} seeds"),
        None => format!("over {PLAN_CAP} seeds"),
    };
    let planned_run = row.max_seeds.is_some() && row.n > row.pilot_seeds;
    let at_cap = row.max_seeds.is_some_and(|m| row.n >= m);
    let enough = row.planned_seeds().is_some_and(|m| m <= row.n);
    match (planned_run, enough, at_cap) {
        (true, true, _) => format!(
            "undecided after its seed plan was carried out ({} seeds, which give 80% power at \
             this spread)",
            row.n
        ),
        (true, false, true) => format!(
            "undecided at the seed cap of {}: underpowered (80% power at this spread needs {need})",
            row.n
        ),
        (true, false, false) => format!(
            "undecided after its seed plan was carried out ({} seeds; at this spread 80% power \
             needs {need})",
            row.n
        ),
        (false, _, _) => match row.planned_seeds() {
            Some(n) => format!("undecided (plan: {n} seeds for 80% power)"),
            None => format!("undecided (80% power needs over {PLAN_CAP} seeds)"),
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
        "| question | contrast | metric | estimate (95% CI, not adjusted) | test | Holm p | verdict (Holm-adjusted) | n | failed runs; recovered blow-ups |\n|---|---|---|---|---|---|---|---|---|\n",
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
            failed_text(r)
        );
    }
    s
}

/// The failed runs of a row by kind, and the blow-ups that recovered:
/// "0", "2 (1 diverged, 1 collapsed)", "0; 2 blew up and recovered".
pub fn failed_text(row: &ContrastRow) -> String {
    let mut s = row.failed.to_string();
    let kinds: Vec<String> = [(row.diverged, "diverged"), (row.collapsed, "collapsed")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if !kinds.is_empty() {
        s += &format!(" ({})", kinds.join(", "));
    }
    if row.recovered > 0 {
        s += &format!("; {} blew up and recovered", row.recovered);
    }
    s
}

/// Exploratory rows as a list: estimate and interval, no verdict.
pub fn exploratory_list(rows: &[&ContrastRow]) -> String {
    rows.iter()
        .map(|r| format!("- {} ({}): {}.\n", r.contrast, r.metric, estimate_text(r)))
        .collect()
}
