//! The seed plan of `--plan-seeds`, from a pilot's primary contrasts to
//! the seeds each configuration gets (pure: rows in, seeds out; the driver
//! reads the pilot and trains the plan).

use crate::contrast::{ContrastRow, Role, Verdict};
use crate::record::ConfigKey;

/// Whether a primary contrast gets planned seeds: undecided, not a rate
/// (its runs' failures are the outcome), no run of its configurations failed.
pub fn want_row(row: &ContrastRow) -> bool {
    row.role == Role::Primary
        && row.verdict == Some(Verdict::Undecided)
        && !row.is_rate
        && row.failed == 0
}

/// The seeds each configuration needs: for each contrast that
/// [`want_row`], its plan (at most `max`, and `max` where 80% power is out
/// of reach), for each configuration it reads; the most any contrast asks.
pub fn seed_plan(rows: &[ContrastRow], max: u32) -> Vec<(ConfigKey, u32)> {
    let mut want: Vec<(ConfigKey, u32)> = Vec::new();
    for row in rows.iter().filter(|r| want_row(r)) {
        let n = row.planned_seeds().map_or(max, |n| (n as u32).min(max));
        for key in &row.keys {
            match want.iter_mut().find(|(k, _)| k == key) {
                Some((_, m)) => *m = (*m).max(n),
                None => want.push((key.clone(), n)),
            }
        }
    }
    want
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;
    use crate::contrast::{Role, Sides};

    /// A distinct configuration per name (its batch size).
    fn key(name: &str) -> ConfigKey {
        let batch_size = name.bytes().fold(1, |h, b| h * 131 + b as usize) % 100_000;
        ConfigKey::sweep(TrainConfig {
            batch_size,
            ..TrainConfig::default()
        })
    }

    fn row(id: &str, labels: &[&str], verdict: Verdict, plan: Option<usize>) -> ContrastRow {
        ContrastRow {
            role: Role::Primary,
            id: id.into(),
            question: String::new(),
            contrast: String::new(),
            metric: String::new(),
            sides: Sides::Two,
            sesoi: Some(0.005),
            n: 5,
            failed: 0,
            missing: 0,
            estimate: 0.0,
            ci_low: Some(-0.01),
            ci_high: Some(0.01),
            sd: Some(0.01),
            test: "paired t",
            p: Some(0.5),
            p_holm: Some(0.5),
            p_equiv: Some(0.5),
            verdict: Some(verdict),
            seeds_80_detect: plan,
            seeds_80_equiv: plan,
            scale: 100.0,
            unit: "points",
            higher_is_better: Some(true),
            keys: labels.iter().map(|l| key(l)).collect(),
            is_rate: false,
            pilot_seeds: 5,
            recovered: 0,
            diverged: 0,
            collapsed: 0,
            max_seeds: None,
            p_equiv_raw: None,
        }
    }

    /// Only the configurations of undecided, non-failing, non-rate primary
    /// contrasts get seeds; a configuration shared by two takes the larger
    /// plan; plans are capped at `max`, and one out of reach takes `max`.
    #[test]
    fn decided_contrasts_get_no_new_seeds() {
        let mut failing = row("failing", &["f", "a"], Verdict::Undecided, Some(9));
        failing.failed = 1;
        let mut rate = row("rate", &["r", "a"], Verdict::Undecided, None);
        rate.is_rate = true;
        let mut exploratory = row("x", &["x", "a"], Verdict::Undecided, Some(9));
        exploratory.role = Role::Exploratory;
        let rows = [
            row("decided", &["d1", "d2"], Verdict::Higher, None),
            row("equivalent", &["e1", "e2"], Verdict::Equivalent, None),
            row("small", &["a", "b"], Verdict::Undecided, Some(7)),
            row("big", &["b", "c"], Verdict::Undecided, Some(40)),
            row("unreachable", &["u"], Verdict::Undecided, None),
            failing,
            rate,
            exploratory,
        ];
        let plan = seed_plan(&rows, 12);
        assert_eq!(
            plan,
            vec![
                (key("a"), 7),
                (key("b"), 12),
                (key("c"), 12),
                (key("u"), 12)
            ]
        );
    }
}
