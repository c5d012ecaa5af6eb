//! The exercises, one file each, on one sweep engine.
//!
//! An experiment turns its settings into a list of runs (configurations x
//! seeds) and, once they are finished, into a verdict and plots. The rest is
//! shared: [`registry`] lists the exercises, [`settings`] layers their TOML
//! settings, [`driver`] runs the sweep and writes the common outputs
//! (`runs.csv`, `summary.csv`, `comparisons.csv`), and [`markdown`] and
//! [`figures`] hold what several verdicts and plots have in common.

pub mod compare_wd;
pub mod driver;
pub mod dropconnect;
pub mod figures;
pub mod longer;
pub mod markdown;
pub mod other_noise;
pub mod registry;
pub mod settings;
pub mod spec;
pub mod swap_rates;
pub mod test_time;
pub mod variance;

use std::path::Path;

use anyhow::Result;

pub use registry::EXERCISES;
pub use settings::{CheckSettings, Common};
pub use spec::ExerciseSpec;

use crate::analysis::{Group, Metric, SummaryRow};
use crate::config::TrainConfig;
use crate::regularizers::Reg;
use crate::sweep::{RunSpec, Worker};
use crate::verdict::Comparison;

/// What an experiment concludes from: its finished runs, grouped.
pub struct Finished<'a> {
    pub out: &'a Path,
    pub groups: Vec<Group<'a>>,
    pub summary: Vec<SummaryRow>,
    pub comparisons: Vec<Comparison>,
    pub common: &'a Common,
}

impl Finished<'_> {
    pub fn group(&self, label: &str) -> &Group<'_> {
        self.groups
            .iter()
            .find(|g| g.label == label)
            .unwrap_or_else(|| panic!("no configuration labelled {label}"))
    }
    /// The comparisons on the headline metric: each exercise's primary ones.
    pub fn primary(&self) -> Vec<&Comparison> {
        self.comparisons
            .iter()
            .filter(|c| c.metric == Metric::HEADLINE)
            .collect()
    }
    pub fn comparison(&self, a: &str, b: &str, metric: Metric) -> Option<&Comparison> {
        self.comparisons
            .iter()
            .find(|c| c.a == a && c.b == b && c.metric == metric)
    }
}

/// Configurations rerun on fresh seeds to confirm a choice (see
/// [`Experiment::confirm`]); their labels must differ from the sweep's.
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub configs: Vec<(String, TrainConfig)>,
    pub pairs: Vec<(String, String)>,
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
    /// Its own resolved settings, as recorded in `sweep.json`.
    fn settings(&self) -> serde_json::Value;
    /// Labelled configurations, in display order.
    fn configs(&self) -> Vec<(String, TrainConfig)>;
    /// The pairs (a, b) to compare, b - a.
    fn pairs(&self) -> Vec<(String, String)>;
    /// Writes the verdict and plots from the finished runs; returns the
    /// answer in one sentence (the first line of the verdict, and REPORT.md's
    /// table of answers).
    fn conclude(&self, r: &Finished) -> Result<String>;
    /// A choice to confirm on fresh seeds, made from the finished main
    /// sweep (on validation, never on test): configurations to rerun with
    /// seeds the sweep did not use, and the pairs to compare among them.
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
    /// may batch into cohorts, see [`crate::cohort`]), or the experiment's
    /// own worker, run one run at a time.
    fn worker(&self) -> Option<&Worker<'_>> {
        None
    }

    /// Configurations x seeds.
    fn specs(&self) -> Vec<RunSpec> {
        let configs = self.configs();
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

/// The base configuration with dropout at rates (p1, p2).
pub fn dropout_config(common: &Common, p1: f64, p2: f64) -> TrainConfig {
    common
        .base
        .with_layers([Reg::Dropout { p: p1 }, Reg::Dropout { p: p2 }])
}

/// Label of a (p1, p2) dropout pair.
pub fn rates_label(p1: f64, p2: f64) -> String {
    format!("p=({p1},{p2})")
}

/// The book's configuration at each dropout pair, labelled by its rates.
pub fn rate_configs(common: &Common, rates: &[[f64; 2]]) -> Vec<(String, TrainConfig)> {
    rates
        .iter()
        .map(|&[p1, p2]| (rates_label(p1, p2), dropout_config(common, p1, p2)))
        .collect()
}

/// The first configuration against each of the others.
pub fn first_vs_rest(configs: &[(String, TrainConfig)]) -> Vec<(String, String)> {
    configs
        .iter()
        .skip(1)
        .map(|(l, _)| (configs[0].0.clone(), l.clone()))
        .collect()
}
