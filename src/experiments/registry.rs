//! The exercises, listed once. CLI dispatch, `report`, restoring a stored
//! sweep (`merge`) and every heading that names an exercise read this list;
//! its order is the order of `--help` and of REPORT.md.
//!
//! Adding an exercise: its file under `src/experiments/` declaring a
//! `pub const SPEC: ExerciseSpec` (see [`super::spec`]), its
//! `experiments/<name>.toml`, and one line in [`EXERCISES`].

use super::spec::ExerciseSpec;
use super::{compare_wd, dropconnect, longer, other_noise, swap_rates, test_time, variance};

/// Every exercise, in the book's order.
pub const EXERCISES: &[&ExerciseSpec] = &[
    &swap_rates::SPEC,
    &longer::SPEC,
    &variance::SPEC,
    &test_time::SPEC,
    &compare_wd::SPEC,
    &dropconnect::SPEC,
    &other_noise::SPEC,
];

/// The exercise called `name` (a subcommand, a folder, `sweep.json`'s
/// `experiment`).
pub fn find(name: &str) -> Option<&'static ExerciseSpec> {
    EXERCISES.iter().copied().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_unique_and_in_order() {
        for (i, s) in EXERCISES.iter().enumerate() {
            assert_eq!(s.number as usize, i + 1, "{}", s.name);
            assert_eq!(find(s.name).unwrap().number, s.number);
        }
    }

    /// Each exercise builds from its defaults, its report preset and its quick preset.
    #[test]
    fn every_exercise_builds_from_its_presets() {
        use super::super::settings::{resolve, Layer};
        for s in EXERCISES {
            for (what, text) in [("defaults", ""), ("report", s.report), ("quick", s.quick)] {
                let exp = resolve(s, vec![Layer::text(what, text)])
                    .unwrap_or_else(|e| panic!("{} {what}: {e:#}", s.name));
                assert_eq!(exp.spec().name, s.name);
                assert!(!exp.configs().is_empty());
            }
            // A secondary sweep builds from its file, alone and under the
            // quick preset, and answers to its own declaration.
            if let Some(second) = &s.secondary {
                for quick in [false, true] {
                    let mut layers = vec![Layer::text(second.folder, second.settings)];
                    if quick {
                        layers.push(Layer::text("quick", s.quick));
                    }
                    let exp = resolve(s, layers)
                        .unwrap_or_else(|e| panic!("{} (quick: {quick}): {e:#}", second.folder));
                    assert!(!exp.configs().is_empty());
                    let (got, want) = (exp.declared(), &second.declared);
                    assert_eq!((got.commit, got.at), (want.commit, want.at));
                    assert_ne!((got.commit, got.at), (s.declared.commit, s.declared.at));
                }
            }
        }
    }

    /// Every configuration an exercise's contrasts and pairs read is one it
    /// sweeps (by key: configuration and round), with its default settings
    /// and with rate 0 swept; its labels are distinct.
    #[test]
    fn contrasts_and_pairs_read_swept_configurations() {
        use super::super::settings::{resolve, Layer};
        use crate::record::ConfigKey;
        // Dropout at rate 0 is no regularisation: one configuration, under
        // the first of its labels.
        let extra = [
            ("swap-rates", "grid = [0.0, 0.5]"),
            ("dropconnect", "rates = [0.0, 0.2]\nunpooled_rates = []"),
        ];
        let secondaries = EXERCISES
            .iter()
            .filter_map(|s| s.secondary.as_ref().map(|d| (*s, d.settings)));
        let cases = EXERCISES
            .iter()
            .map(|s| (*s, ""))
            .chain(
                extra
                    .iter()
                    .map(|(name, text)| (find(name).unwrap(), *text)),
            )
            .chain(secondaries);
        for (s, text) in cases {
            let what = if text.is_empty() { "defaults" } else { text };
            let exp = resolve(s, vec![Layer::text(what, text)]).unwrap();
            let configs = super::super::distinct(exp.configs());
            let keys: Vec<ConfigKey> = configs
                .iter()
                .map(|(_, c)| ConfigKey::sweep(c.clone()))
                .collect();
            for c in exp.contrasts() {
                for (k, _) in &c.terms {
                    assert!(
                        keys.contains(k),
                        "{} {what}: contrast {} reads {k}",
                        s.name,
                        c.id
                    );
                }
            }
            for (a, b) in exp.pairs() {
                assert!(
                    keys.contains(&a) && keys.contains(&b),
                    "{} {what}: pair {a} / {b}",
                    s.name
                );
            }
            let mut labels: Vec<&str> = configs.iter().map(|(l, _)| l.as_str()).collect();
            labels.sort_unstable();
            labels.dedup();
            assert_eq!(
                labels.len(),
                configs.len(),
                "{} {what}: a label repeats",
                s.name
            );
        }
    }
}
