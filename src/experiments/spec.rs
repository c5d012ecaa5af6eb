//! What an exercise declares about itself ([`ExerciseSpec`]), for the
//! registry, the command line and `report`.

use anyhow::Result;

use super::{Common, Experiment};

/// One exercise: what it asks, its settings and how to build it.
pub struct ExerciseSpec {
    /// Subcommand and output folder name.
    pub name: &'static str,
    /// The exercise's number in the book's section.
    pub number: u8,
    /// A short title.
    pub title: &'static str,
    /// The question, in this project's words.
    pub question: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// Example command lines for `--help`.
    pub examples: &'static str,
    /// Its `experiments/<name>.toml`: only what differs from the defaults.
    pub defaults: &'static str,
    /// Overrides (TOML) with which `drop-exp report` runs it.
    pub report: &'static str,
    /// Overrides (TOML) with which `drop-exp report --quick` runs it.
    pub quick: &'static str,
    /// When its primary contrasts, as they now stand, were declared.
    pub declared: Declaration,
    /// The figures REPORT.md shows (at most three), in its output folder.
    pub figures: &'static [&'static str],
    /// A second sweep of the exercise with its own questions, if any.
    pub secondary: Option<Secondary>,
    /// Flags of its own, each setting one settings key.
    pub flags: &'static [Flag],
    /// How it reads a layer of the user's settings before it is applied
    /// (most exercises: as it is, [`as_given`]).
    pub user_layer: fn(&mut toml::Table),
    /// Builds it from the common settings and the remaining keys.
    pub build: fn(Common, toml::Table) -> Result<Box<dyn Experiment>>,
}

impl ExerciseSpec {
    /// "Exercise N: title".
    pub fn heading(&self) -> String {
        format!("Exercise {}: {}", self.number, self.title)
    }
}

/// A second sweep of an exercise, in a regime its main sweep does not
/// reach: its own settings file, output folder and primary contrasts (a
/// Holm family of their own). `report` runs it after the exercise, with the
/// exercise's preset and then its file.
pub struct Secondary {
    /// Its output folder beside the exercise's; its settings are
    /// `experiments/<folder>.toml`.
    pub folder: &'static str,
    /// What it asks, for its heading.
    pub title: &'static str,
    /// Its `experiments/<folder>.toml`: what it changes in the exercise's settings.
    pub settings: &'static str,
    /// When its primary contrasts were declared.
    pub declared: Declaration,
    /// The figures REPORT.md shows, in its output folder.
    pub figures: &'static [&'static str],
}

/// When an exercise's primary contrasts, as they now stand, were declared:
/// the commit that declared them and its time. Runs that finished before
/// it were trained while the questions were still being chosen; the
/// verdicts say how many.
pub struct Declaration {
    pub commit: &'static str,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ` (compared with a run's `finished_at`).
    pub at: &'static str,
    /// What preceded the declaration besides stored runs (a pilot, an
    /// earlier design), in a sentence; empty when nothing did.
    pub before: &'static str,
}

/// The first declaration, which made every exercise's questions data
/// (a6507d4, 2026-11-29 21:44:30 UTC).
pub const FIRST_DECLARATION: Declaration = Declaration {
    commit: "a6507d4",
    at: "2026-11-29T21:44:30Z",
    before: "",
};

/// A flag of one exercise that sets one of its settings keys.
pub struct Flag {
    /// The flag without dashes, e.g. `grid` for `--grid`.
    pub long: &'static str,
    /// The settings key it sets.
    pub key: &'static str,
    pub help: &'static str,
    pub value: FlagValue,
}

/// What a [`Flag`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagValue {
    /// No value: sets the key to true.
    Switch,
    /// A comma-separated list of probabilities in [0, 1].
    Probabilities,
    /// A comma-separated list of finite numbers >= 0.
    NonNegatives,
}

/// A layer of the user's settings, as given.
pub fn as_given(_: &mut toml::Table) {}

/// For exercises that sweep learning rates (`lrs`): a layer that names one
/// rate `lr` without `lrs` trains at that rate only.
pub fn lr_replaces_lrs(layer: &mut toml::Table) {
    if let (Some(lr), false) = (layer.get("lr").cloned(), layer.contains_key("lrs")) {
        layer.insert("lrs".into(), toml::Value::Array(vec![lr]));
    }
}

/// The quick preset most exercises share: minutes, not answers.
pub const QUICK: &str = "seeds = 2\nepochs = 4\ntrain_subset = 20000\ntest_subset = 5000\n";
