//! Verdicts: Holm over an exercise's primary contrasts, each verdict from
//! its corrected p-values, the seed plan of an undecided one, and what one
//! correction over several exercises would make of them.

use super::{Contrast, ContrastRow, Role, Sides, Verdict, ALPHA, PLAN_CAP, POWER};
use crate::stats;

/// Holm over the primary rows, then each one's verdict and, where
/// undecided, its seed plan.
pub(super) fn decide(rows: &mut [ContrastRow], contrasts: &[Contrast]) {
    let primary: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].role == Role::Primary)
        .collect();
    let p: Vec<f64> = primary
        .iter()
        .map(|&i| rows[i].p.unwrap_or(f64::NAN))
        .collect();
    let p_eq: Vec<f64> = primary
        .iter()
        .map(|&i| rows[i].p_equiv.unwrap_or(f64::NAN))
        .collect();
    let (p_holm, p_eq_holm) = (stats::holm(&p), stats::holm(&p_eq));
    let k = primary.len().max(1) as f64;
    for (j, &i) in primary.iter().enumerate() {
        let c = &contrasts[i];
        let row = &mut rows[i];
        row.p_equiv_raw = row.p_equiv;
        row.p_holm = finite(p_holm[j]);
        row.p_equiv = finite(p_eq_holm[j]);
        row.verdict = Some(verdict_of(row.p_holm, row.p_equiv, c.sides, row.estimate));
        if row.verdict != Some(Verdict::Undecided) || row.is_rate {
            continue;
        }
        // The plan: Bonferroni's alpha / k, the strictest step of Holm's,
        // at the measured sd of the per-seed contrast.
        let Some(sd) = row.sd.filter(|s| *s > 0.0) else {
            continue;
        };
        let alpha = ALPHA / k;
        let one_sided = c.sides == Sides::Greater;
        let detect = |n| stats::t_power(n, c.sesoi, sd, alpha, one_sided);
        row.seeds_80_detect = stats::seeds_for_power(detect, POWER, PLAN_CAP);
        row.seeds_80_equiv = if one_sided {
            // Falling short of sesoi when the truth is 0 is the mirror image.
            row.seeds_80_detect
        } else {
            stats::seeds_for_power(
                |n| stats::tost_power(n, c.sesoi, sd, alpha),
                POWER,
                PLAN_CAP,
            )
        };
    }
}

/// The verdict of corrected p-values: of a difference (`p`) and of
/// equivalence or falling short (`p_equiv`).
fn verdict_of(p: Option<f64>, p_equiv: Option<f64>, sides: Sides, estimate: f64) -> Verdict {
    let sig = p.is_some_and(|p| p < ALPHA);
    let eq = p_equiv.is_some_and(|p| p < ALPHA);
    match (sig, eq, sides) {
        (true, _, Sides::Greater) => Verdict::Higher,
        (true, _, Sides::Two) if estimate > 0.0 => Verdict::Higher,
        (true, _, Sides::Two) => Verdict::Lower,
        (false, true, Sides::Two) => Verdict::Equivalent,
        (false, true, Sides::Greater) => Verdict::ShortOfInterest,
        (false, false, _) => Verdict::Undecided,
    }
}

/// What one Holm correction over `rows` (primary contrasts of several
/// exercises at once) would make of their verdicts: the ids, as
/// `exercise/id`, of the decided verdicts that would be undecided, and how
/// many were decided. Rows of fewer than 3 runs count as undecided.
pub fn holm_across(rows: &[(&str, &ContrastRow)]) -> (usize, Vec<String>) {
    let p: Vec<f64> = rows.iter().map(|(_, r)| r.p.unwrap_or(f64::NAN)).collect();
    let p_eq: Vec<f64> = rows
        .iter()
        .map(|(_, r)| r.p_equiv_raw.unwrap_or(f64::NAN))
        .collect();
    let (p, p_eq) = (stats::holm(&p), stats::holm(&p_eq));
    let decided = |r: &ContrastRow, v: Option<Verdict>| {
        r.n >= stats::MIN_RUNS_FOR_INTERVAL && v.is_some_and(|v| v != Verdict::Undecided)
    };
    let mut before = 0;
    let mut lost = Vec::new();
    for (j, (exercise, r)) in rows.iter().enumerate() {
        if !decided(r, r.verdict) {
            continue;
        }
        before += 1;
        let after = verdict_of(finite(p[j]), finite(p_eq[j]), r.sides, r.estimate);
        if !decided(r, Some(after)) {
            lost.push(format!("{exercise}/{}", r.id));
        }
    }
    (before, lost)
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}
