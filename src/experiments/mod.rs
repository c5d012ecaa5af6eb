//! The exercises, one file each, on one sweep engine.
//!
//! An experiment turns its settings into a list of runs (configurations x
//! seeds) and, once they are finished, into a verdict and plots. The rest is
//! shared: [`registry`] lists the exercises, [`settings`] layers their TOML
//! settings, [`driver`] runs the sweep and writes the common outputs
//! (`runs.csv`, `summary.csv`, `comparisons.csv`), and `markdown` and
//! `figures` hold what several verdicts and plots have in common.

mod compare_wd;
pub mod driver;
mod dropconnect;
mod figures;
mod longer;
mod markdown;
pub mod merge;
mod other_noise;
pub mod registry;
mod seed_plan;
pub mod settings;
pub mod spec;
mod swap_rates;
mod test_time;
mod variance;

use std::path::Path;

use anyhow::Result;

pub use registry::EXERCISES;

pub use settings::{CheckSettings, Common};
pub use spec::{Declaration, ExerciseSpec, Secondary};

use anyhow::Context;

use crate::analysis::{Group, SummaryRow};
use crate::config::TrainConfig;
use crate::contrast::{Contrast, ContrastRow, ProbeMeasure, Role};
use crate::record::{ConfigKey, RunSpec, StoredRun};
use crate::regularizers::RegKind;
use crate::sweep::Worker;

/// What an experiment concludes from: its finished runs, grouped, and its
/// contrasts answered.
pub struct Finished<'a> {
    out: &'a Path,
    groups: Vec<Group<'a>>,
    summary: Vec<SummaryRow>,
    /// The primary contrasts (decided) and the exploratory ones.
    contrasts: Vec<ContrastRow>,
    common: &'a Common,
    declared: &'a Declaration,
}

impl Finished<'_> {
    /// The runs of the configuration `key`; an error naming it when the
    /// sweep has none.
    fn group(&self, key: &ConfigKey) -> Result<&Group<'_>> {
        self.groups.iter().find(|g| g.is(key)).with_context(|| {
            format!(
                "no runs of the configuration `{key}` in {} (configurations: {})",
                self.out.display(),
                self.groups
                    .iter()
                    .map(|g| g.label.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
    /// The primary contrasts, in declared order.
    fn primary(&self) -> Vec<&ContrastRow> {
        self.contrasts
            .iter()
            .filter(|c| c.role == Role::Primary)
            .collect()
    }
    /// The exploratory contrasts.
    fn exploratory(&self) -> Vec<&ContrastRow> {
        self.contrasts
            .iter()
            .filter(|c| c.role == Role::Exploratory)
            .collect()
    }
    /// The contrast `id`.
    fn contrast(&self, id: &str) -> Option<&ContrastRow> {
        self.contrasts.iter().find(|c| c.id == id)
    }
    /// K of the end-of-training metric.
    fn end_k(&self) -> usize {
        self.common.end_k()
    }
}

/// Configurations rerun on fresh seeds to confirm a choice (see
/// [`Experiment::confirm`]): labelled configurations, whose keys are
/// [`ConfigKey::confirmation`]s. Its contrasts join the exercise's primary
/// ones.
#[derive(Debug, Clone)]
pub struct Confirmation {
    configs: Vec<(String, TrainConfig)>,
    contrasts: Vec<Contrast>,
    /// Fresh seeds fixed before any is drawn (a plan made from the main
    /// sweep); `None`: the sweep's first seeds as a pilot, then, with
    /// `--plan-seeds`, the once-only seed plan of its undecided primary
    /// contrasts, as for the main sweep.
    seeds: Option<usize>,
}

/// The three accessors every experiment writes the same way (its spec, its
/// `common` field and its `settings` field as JSON), for its `impl Experiment`.
macro_rules! experiment_accessors {
    ($spec:expr) => {
        fn spec(&self) -> &'static crate::experiments::ExerciseSpec {
            &$spec
        }
        fn common(&self) -> &crate::experiments::Common {
            &self.common
        }
        fn settings(&self) -> serde_json::Value {
            serde_json::to_value(&self.settings).expect("settings serialise to JSON")
        }
    };
}
pub(crate) use experiment_accessors;

/// One exercise.
pub trait Experiment: Sync {
    /// Which exercise it is.
    fn spec(&self) -> &'static ExerciseSpec;
    /// The settings shared by all experiments.
    fn common(&self) -> &Common;
    /// When the primary contrasts of this sweep were declared: the
    /// exercise's declaration, or its secondary sweep's.
    fn declared(&self) -> &'static Declaration {
        &self.spec().declared
    }
    /// Its own resolved settings, as recorded in `sweep.json`.
    fn settings(&self) -> serde_json::Value;
    /// Labelled configurations, in display order; a configuration is
    /// identified by itself ([`ConfigKey::sweep`]), its label is how tables
    /// and plots write it.
    fn configs(&self) -> Vec<(String, TrainConfig)>;
    /// Its questions, declared as data (see [`ExerciseSpec::declared`]): the primary contrasts,
    /// Holm-adjusted together and each given a verdict.
    fn contrasts(&self) -> Vec<Contrast>;
    /// Pairs (a, b) compared as exploratory contrasts b − a (estimate and
    /// interval only) on the peak and end-of-training metrics.
    fn pairs(&self) -> Vec<(ConfigKey, ConfigKey)>;
    /// The value of a run on one of its own measures ([`crate::contrast::Measure::Probe`]).
    fn probe_value(&self, _run: &StoredRun, _measure: &ProbeMeasure) -> Option<f64> {
        None
    }
    /// Writes the verdict and plots from the finished runs; returns the
    /// answer in one sentence (the first line of the verdict, and REPORT.md's
    /// table of answers).
    fn conclude(&self, r: &Finished) -> Result<String>;
    /// A choice to confirm on fresh seeds, made from the finished main
    /// sweep (on validation, never on test): configurations to rerun with
    /// seeds the sweep did not use, and the primary contrasts among them.
    /// None by default.
    fn confirm(&self, _r: &Finished) -> Option<Confirmation> {
        None
    }
    /// Whether identical plain runs stored by other experiments in the same
    /// results folder may be adopted instead of retrained: true unless the
    /// experiment's worker measures more than plain training does.
    fn adopts_plain_runs(&self) -> bool {
        true
    }
    /// What each run executes: `None` for plain training (which the sweep
    /// may stack, see [`crate::train`]), or the experiment's
    /// own worker, run one run at a time.
    fn worker(&self) -> Option<&Worker<'_>> {
        None
    }

    /// Configurations x seeds.
    fn specs(&self) -> Vec<RunSpec> {
        let configs = distinct(self.configs());
        let mut out = Vec::new();
        for seed in self.common().seeds() {
            for (label, config) in &configs {
                out.push(RunSpec {
                    label: label.clone(),
                    config: config.clone(),
                    seed,
                });
            }
        }
        out
    }
}

/// `configs` with each configuration once, under the first of its labels:
/// a configuration is itself, whatever it is called (dropout at rate 0 is
/// no regularisation).
fn distinct(configs: Vec<(String, TrainConfig)>) -> Vec<(String, TrainConfig)> {
    let mut out: Vec<(String, TrainConfig)> = Vec::with_capacity(configs.len());
    for (label, config) in configs {
        if out.iter().all(|(_, c)| *c != config) {
            out.push((label, config));
        }
    }
    out
}

/// The base configuration with dropout at rates (p1, p2).
fn dropout_config(common: &Common, p1: f64, p2: f64) -> TrainConfig {
    common
        .base
        .with_layers([RegKind::Dropout.with(p1), RegKind::Dropout.with(p2)])
}

/// The key of the base configuration with dropout at rates (p1, p2), in the
/// sweep.
fn dropout_key(common: &Common, p1: f64, p2: f64) -> ConfigKey {
    ConfigKey::sweep(dropout_config(common, p1, p2))
}

/// Label of a (p1, p2) dropout pair.
fn rates_label(p1: f64, p2: f64) -> String {
    format!("p=({p1},{p2})")
}

/// The book's configuration at each dropout pair, labelled by its rates.
fn rate_configs(common: &Common, rates: &[[f64; 2]]) -> Vec<(String, TrainConfig)> {
    rates
        .iter()
        .map(|&[p1, p2]| (rates_label(p1, p2), dropout_config(common, p1, p2)))
        .collect()
}

/// Validation accuracy a run without a value counts at where a
/// configuration is chosen on validation: chance, one class in ten. A run
/// that fails is an outcome of its configuration, not a missing value.
const CHANCE: f64 = 0.1;

/// Mean training seconds per epoch of a configuration's runs.
fn seconds_per_epoch(g: &Group) -> f64 {
    let xs: Vec<f64> = g
        .runs
        .iter()
        .flat_map(|r| &r.rows)
        .map(|e| e.train_seconds)
        .collect();
    crate::stats::mean(&xs)
}

/// The mean over a configuration's runs of their validation accuracy at
/// the selected epoch, a run without one (it diverged before any finite
/// epoch) counting at [`CHANCE`]: what a configuration is chosen on.
fn validation_score(g: &Group, end_k: usize) -> f64 {
    let xs: Vec<f64> = g
        .runs
        .iter()
        .map(|r| crate::analysis::selected_val_acc(r, end_k).unwrap_or(CHANCE))
        .collect();
    crate::stats::mean(&xs)
}

/// The smallest of the learning rates an exercise sweeps: the one its
/// accuracy questions are read at, where training without dropout is
/// stable (exercises 2 and 5).
fn stable_lr(lrs: &[f64]) -> f64 {
    lrs.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The first configuration against each of the others.
fn first_vs_rest(configs: &[(String, TrainConfig)]) -> Vec<(ConfigKey, ConfigKey)> {
    configs
        .iter()
        .skip(1)
        .map(|(_, c)| {
            (
                ConfigKey::sweep(configs[0].1.clone()),
                ConfigKey::sweep(c.clone()),
            )
        })
        .collect()
}
