//! An experiment's settings, from layered TOML: the book's defaults
//! (`experiments/defaults.toml`), the exercise's own overrides
//! (`experiments/<name>.toml`), a preset (`report`), the user's `--config`
//! file, then the command-line flags, each overriding the one before.
//! The keys of [`TrainConfig`] set the base configuration, the keys of
//! [`Common`] the sweep, and the rest belong to the exercise, whose settings
//! type rejects what it does not know.

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::spec::ExerciseSpec;
use super::Experiment;
use crate::config::{self, TrainConfig};
use crate::data::{TEST_SIZE, TRAIN_SIZE};

/// Settings every experiment has: the seeds, the data, and the configuration
/// its runs start from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Common {
    /// Seeds 0..seeds-1.
    pub seeds: u32,
    /// Train on the first N training examples only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<u32>,
    /// Evaluate on the first N test examples only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_subset: Option<u32>,
    /// Equivalence margin, in points of accuracy (0.5 = half a point).
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Training images held out for validation (0: none); epochs are
    /// selected on them.
    #[serde(default)]
    pub validation: u32,
    /// K of the end-of-training metric (mean test accuracy of the last K
    /// epochs) [default: a fifth of the epochs].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_epochs: Option<u32>,
    /// After the first `seeds` seeds, train once more the seeds that give
    /// each undecided primary contrast 80% power at its smallest effect of
    /// interest (at most `max_seeds`), for its configurations only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plan_seeds: bool,
    /// The most seeds `plan_seeds` may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seeds: Option<u32>,
    /// The configuration every run starts from (the book's, with overrides).
    pub base: TrainConfig,
}

impl Common {
    /// The settings-file keys that belong to `Common` itself (the base
    /// configuration's keys sit at the top level of a settings file too).
    /// A unit test checks this list against the struct.
    pub const KEYS: [&'static str; 8] = [
        "seeds",
        "train_subset",
        "test_subset",
        "margin",
        "validation",
        "end_epochs",
        "plan_seeds",
        "max_seeds",
    ];

    pub fn seeds(&self) -> impl Iterator<Item = u64> {
        0..self.seeds as u64
    }

    /// K of the end-of-training metric.
    pub fn end_k(&self) -> usize {
        self.end_epochs.map_or_else(
            || crate::analysis::default_end_epochs(self.base.epochs),
            |k| k as usize,
        )
    }

    fn validate(&self) -> Result<()> {
        if self.seeds == 0 {
            bail!("`seeds` must be at least 1");
        }
        if !(self.margin.is_finite() && self.margin > 0.0) {
            bail!(
                "`margin` = {} must be a number of points greater than 0",
                self.margin
            );
        }
        if self
            .train_subset
            .is_some_and(|n| n == 0 || n as usize > TRAIN_SIZE)
        {
            bail!("`train_subset` must be between 1 and {TRAIN_SIZE}");
        }
        if self.validation as usize >= TRAIN_SIZE {
            bail!(
                "`validation` = {} holds out every training image; give fewer than {TRAIN_SIZE} (0 turns the split off)",
                self.validation
            );
        }
        if let Some(k) = self.end_epochs {
            if k == 0 || k as usize > self.base.epochs {
                bail!(
                    "`end_epochs` = {k} must be between 1 and `epochs` = {}",
                    self.base.epochs
                );
            }
        }
        if let Some(m) = self.max_seeds {
            if m < self.seeds {
                bail!(
                    "`max_seeds` = {m} is below `seeds` = {}; give at least as many as the first round's seeds",
                    self.seeds
                );
            }
        }
        if self
            .test_subset
            .is_some_and(|n| n == 0 || n as usize > TEST_SIZE)
        {
            bail!("`test_subset` must be between 1 and {TEST_SIZE}");
        }
        self.base.validate()
    }
}

/// The margin of `experiments/defaults.toml`, for sweep records written
/// before the margin existed.
fn default_margin() -> f64 {
    config::defaults_table()["margin"]
        .as_float()
        .expect("experiments/defaults.toml sets `margin`")
}

/// Checks an experiment's own settings; the error names the bad value.
pub trait CheckSettings {
    fn check(&self) -> std::result::Result<(), String>;
}

/// Checks that every value is a probability.
pub fn check_probs(
    key: &str,
    vals: impl IntoIterator<Item = f64>,
) -> std::result::Result<(), String> {
    for v in vals {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!(
                "`{key}` holds {v}, outside [0, 1]; rates are drop probabilities"
            ));
        }
    }
    Ok(())
}

/// Parses and checks an exercise's own settings from what is left of the
/// table once the common keys are taken.
pub fn parse<T: DeserializeOwned + CheckSettings>(table: toml::Table) -> Result<T> {
    let own: T = table.try_into()?;
    own.check().map_err(|e| anyhow!(e))?;
    Ok(own)
}

pub use crate::layers::Layer;

/// Builds the exercise `spec` from its defaults with `layers` on top
/// (presets, the user's file, flags, in that order).
pub fn resolve(spec: &ExerciseSpec, layers: Vec<Layer>) -> Result<Box<dyn Experiment>> {
    let own = Layer::text(
        format!("experiments/{}.toml (built in)", spec.name),
        spec.defaults,
    );
    let own_keys: Vec<String> = own.table.keys().cloned().collect();
    let known = |k: &str| {
        TrainConfig::is_field(k)
            || Common::KEYS.contains(&k)
            || own_keys.iter().any(|o| o == k)
            || spec.flags.iter().any(|f| f.key == k)
    };
    let table = config::defaults_table();
    let base_keys: Vec<String> = table.keys().cloned().collect();
    let mut known_keys: Vec<&str> = Common::KEYS.to_vec();
    for k in base_keys
        .iter()
        .map(String::as_str)
        .chain(own_keys.iter().map(String::as_str))
        .chain(spec.flags.iter().map(|f| f.key))
    {
        if !known_keys.contains(&k) {
            known_keys.push(k);
        }
    }
    // The user's layers pass through the exercise's own reading of them
    // (for example, a single `lr` replacing a sweep of rates).
    let layers = std::iter::once(own)
        .chain(layers.into_iter().map(|mut l| {
            (spec.user_layer)(&mut l.table);
            l
        }))
        .collect();
    crate::layers::resolve(table, layers, &known, &known_keys, |t| build(spec, t))
        .with_context(|| format!("settings of `{}`", spec.name))
}

/// Splits a merged table into common settings and the exercise's own, and
/// builds the exercise.
fn build(spec: &ExerciseSpec, mut table: toml::Table) -> Result<Box<dyn Experiment>> {
    let common = split_common(&mut table)?;
    common.validate()?;
    (spec.build)(common, table)
}

/// Takes the common keys (and the base configuration's) out of `table`.
fn split_common(table: &mut toml::Table) -> Result<Common> {
    let mut base = toml::Table::new();
    let mut common = toml::Table::new();
    for k in table.keys().cloned().collect::<Vec<_>>() {
        if TrainConfig::is_field(&k) {
            base.insert(k.clone(), table.remove(&k).expect("present"));
        } else if Common::KEYS.contains(&k.as_str()) {
            common.insert(k.clone(), table.remove(&k).expect("present"));
        }
    }
    common.insert("base".into(), toml::Value::Table(base));
    Ok(common.try_into()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_keys_are_the_structs_fields() {
        let c = Common {
            seeds: 1,
            train_subset: Some(1),
            test_subset: Some(1),
            margin: 0.5,
            validation: 1,
            end_epochs: Some(2),
            plan_seeds: true,
            max_seeds: Some(9),
            base: TrainConfig::default(),
        };
        let serde_json::Value::Object(m) = serde_json::to_value(c).unwrap() else {
            panic!()
        };
        let mut fields: Vec<&str> = m.keys().map(String::as_str).collect();
        fields.retain(|f| *f != "base");
        assert_eq!(fields, Common::KEYS);
    }
}
