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
        }
    }
}
