//! What a run leaves behind, as every reader sees it: the per-epoch rows,
//! the run's specification and the stored run. Readers (analysis, probes,
//! figures) import these without importing the trainer or the sweep.

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;

/// First seed of a confirmation on fresh seeds: above every seed a sweep can
/// have (`seeds` and `max_seeds` are 32-bit, so sweeps use seeds below 2^32).
/// A run's seed tells whether it confirms; its label is only presentation.
pub const FRESH_SEED_BASE: u64 = 1 << 32;

/// Which seeds a configuration's runs use: the sweep's, or a confirmation's
/// fresh ones (from [`FRESH_SEED_BASE`] up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    Sweep,
    Confirmation,
}

impl Round {
    /// The round a run of `seed` belongs to.
    fn of_seed(seed: u64) -> Self {
        if seed >= FRESH_SEED_BASE {
            Round::Confirmation
        } else {
            Round::Sweep
        }
    }
}

/// A configuration's identity within an exercise: what trains and in which
/// round. Contrasts, seed plans and figures find configurations by this
/// key; a label is only how a configuration is written in tables and plots.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigKey {
    pub config: TrainConfig,
    pub round: Round,
}

impl ConfigKey {
    /// `config` in the sweep.
    pub fn sweep(config: TrainConfig) -> Self {
        Self {
            config,
            round: Round::Sweep,
        }
    }
    /// `config` in a confirmation on fresh seeds.
    pub fn confirmation(config: TrainConfig) -> Self {
        Self {
            config,
            round: Round::Confirmation,
        }
    }
}

/// The configuration's columns (`layer1.kind=dropout layer1.p=0.2 ...`),
/// for messages about a configuration that has no label at hand.
impl std::fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cols: Vec<String> = self
            .config
            .columns()
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                v => format!("{k}={v}"),
            })
            .collect();
        write!(f, "{}", cols.join(" "))?;
        if self.round == Round::Confirmation {
            write!(f, " (fresh seeds)")?;
        }
        Ok(())
    }
}

/// One unit of work: a labelled configuration and a seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The configuration's name in tables and plots, e.g. `p=(0.2,0.5)`.
    pub label: String,
    pub config: TrainConfig,
    pub seed: u64,
}

impl RunSpec {
    /// The key of its configuration (its round told by its seed).
    pub fn config_key(&self) -> ConfigKey {
        ConfigKey {
            config: self.config.clone(),
            round: Round::of_seed(self.seed),
        }
    }
}

/// One epoch's measurements. Timing columns come last so that outputs can be
/// compared byte for byte with them cut off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: usize,
    // JSON has no NaN: a diverged epoch's values are stored as null.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub train_acc: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub test_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub test_acc: f64,
    /// Loss and accuracy on the held-out validation images, in evaluation
    /// mode; empty without a validation split. Epochs are selected on these.
    #[serde(default)]
    pub val_loss: Option<f64>,
    #[serde(default)]
    pub val_acc: Option<f64>,
    /// Accuracy in evaluation mode on a fixed subset of the training images
    /// (see [`crate::data::Dataset::train_eval`]): the training side of the
    /// generalisation gap, measured as the test side is (dropout off).
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub train_eval_acc: f64,
    /// Seconds spent in the training pass of this epoch.
    pub train_seconds: f64,
    /// Seconds for the whole epoch, evaluation included.
    pub seconds: f64,
}

fn nan() -> f64 {
    f64::NAN
}

/// Reads a JSON null (how serde_json writes NaN) back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A finished run as stored on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRun {
    pub spec: RunSpec,
    pub data_digest: String,
    pub diverged: bool,
    pub rows: Vec<EpochRow>,
    /// Experiment-specific measurements (probes), if any.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub extra: serde_json::Value,
    pub drop_exp_version: String,
    pub device: String,
    pub threads: usize,
    pub finished_at: String,
}
