//! The configuration of one training run, defined once.
//!
//! [`TrainConfig`] is the only place its fields are listed. Its defaults are
//! the book's, read from `experiments/defaults.toml`; the CSV configuration
//! columns (`columns`), `check`'s matching and the sweep cache key
//! (`crate::sweep::key`) are all derived from its serialised form, so a new
//! field or a new regulariser kind with parameters of its own needs no
//! hand-kept copy anywhere. The command line's flags for it live with the
//! CLI (`crate::cli::flags`); layering settings files, with the generic
//! TOML layering of `crate::layers`.

use std::sync::OnceLock;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::regularizers::{Reg, RegKind};

/// The built-in defaults file.
const DEFAULTS_TOML: &str = include_str!("../experiments/defaults.toml");

/// Everything that determines a run, besides its seed and data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The regulariser after each hidden layer, first to last.
    pub layers: [Reg; 2],
    /// L2 penalty lambda on the weights (not biases): loss + lambda/2 ||w||^2.
    pub weight_decay: f64,
    /// SGD learning rate.
    pub lr: f64,
    /// Mini-batch size; the last, partial batch of an epoch is kept.
    pub batch_size: usize,
    /// Passes over the training set.
    pub epochs: usize,
    /// How gradients are computed: `auto` (the hand-written backward when it
    /// covers both regularisers, else candle's autograd), `hand` or
    /// `autograd`. Left out of the serialised form at `auto`, so every
    /// configuration stored before the choice existed keeps its key.
    #[serde(default, skip_serializing_if = "Backward::is_auto")]
    pub backward: Backward,
}

/// The choice of gradient path (`--backward`, `backward = "..."`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backward {
    /// The hand-written backward when it covers the configuration, else
    /// autograd.
    #[default]
    Auto,
    /// The hand-written backward (`crate::train`'s fast path).
    Hand,
    /// candle's autograd through the regularisers' own operations.
    Autograd,
}

impl Backward {
    pub const ALL: [Backward; 3] = [Backward::Auto, Backward::Hand, Backward::Autograd];

    fn is_auto(&self) -> bool {
        *self == Backward::Auto
    }

    pub fn name(self) -> &'static str {
        match self {
            Backward::Auto => "auto",
            Backward::Hand => "hand",
            Backward::Autograd => "autograd",
        }
    }
}

impl std::fmt::Display for Backward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backward {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Backward::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown backward `{s}`; expected auto, hand or autograd"))
    }
}

/// The gradient path that trains a run: what [`Backward`] resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradPath {
    Hand,
    Autograd,
}

impl Default for TrainConfig {
    /// The book's configuration, from `experiments/defaults.toml`.
    fn default() -> Self {
        static BOOK: OnceLock<TrainConfig> = OnceLock::new();
        BOOK.get_or_init(|| {
            let mut table = defaults_table();
            table.retain(|k, _| TrainConfig::is_field(k));
            table
                .try_into()
                .expect("experiments/defaults.toml holds a valid configuration")
        })
        .clone()
    }
}

/// The defaults file as a TOML table.
pub fn defaults_table() -> toml::Table {
    toml::from_str(DEFAULTS_TOML).expect("experiments/defaults.toml is valid TOML")
}

impl TrainConfig {
    /// Whether `key` is a top-level field of the configuration (so a settings
    /// file's key belongs to it rather than to an experiment).
    pub fn is_field(key: &str) -> bool {
        static FIELDS: OnceLock<Vec<String>> = OnceLock::new();
        FIELDS
            .get_or_init(|| {
                // The field names, read off a serialised instance; the
                // instance is built without calling `default` (which uses this).
                let any = TrainConfig {
                    layers: [RegKind::Dropout.with(0.0); 2],
                    weight_decay: 0.0,
                    lr: 1.0,
                    batch_size: 1,
                    epochs: 1,
                    backward: Backward::Autograd,
                };
                match serde_json::to_value(any).expect("serialises") {
                    Value::Object(m) => m.keys().cloned().collect(),
                    _ => unreachable!("a struct serialises to an object"),
                }
            })
            .iter()
            .any(|f| f == key)
    }

    /// The same configuration with both hidden layers' regularisers replaced.
    pub fn with_layers(&self, layers: [Reg; 2]) -> Self {
        Self {
            layers,
            ..self.clone()
        }
    }

    /// The gradient path that trains this configuration: the one forced,
    /// or under `auto` the hand-written backward when it covers every
    /// regulariser.
    pub fn grad_path(&self) -> GradPath {
        match self.backward {
            Backward::Hand => GradPath::Hand,
            Backward::Autograd => GradPath::Autograd,
            Backward::Auto => match self.layers.iter().all(Reg::hand_written) {
                true => GradPath::Hand,
                false => GradPath::Autograd,
            },
        }
    }

    /// The configuration as its identity: a forced path that `auto` would
    /// pick anyway is written as `auto`, so forcing it keeps the key (and
    /// the stored runs) of the unforced configuration.
    pub fn identity(&self) -> Self {
        let mut auto = self.clone();
        auto.backward = Backward::Auto;
        match auto.grad_path() == self.grad_path() {
            true => auto,
            false => self.clone(),
        }
    }

    /// Checks every value; the error names the key and the allowed range.
    pub fn validate(&self) -> Result<()> {
        for (i, reg) in self.layers.iter().enumerate() {
            reg.validate()
                .map_err(|e| anyhow::anyhow!("layers[{i}] ({reg}): {e}"))?;
            if self.backward == Backward::Hand && !reg.hand_written() {
                bail!(
                    "layers[{i}] ({reg}): the hand-written backward cannot train {}; it covers {}. \
                     Use `backward = \"auto\"` (--backward auto) or `autograd`",
                    reg.kind(),
                    crate::regularizers::RegKind::hand_written_names().join(", ")
                );
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("lr = {} must be a finite number greater than 0", self.lr);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!(
                "weight_decay = {} must be a finite number of at least 0",
                self.weight_decay
            );
        }
        if self.batch_size == 0 {
            bail!("batch_size must be at least 1");
        }
        if self.epochs == 0 {
            bail!("epochs must be at least 1");
        }
        Ok(())
    }

    /// The configuration's CSV columns, in field order (see `columns`).
    pub fn columns(&self) -> Map<String, Value> {
        columns(&serde_json::to_value(self).expect("a configuration serialises"))
    }
}

/// Flattens a serialised configuration into CSV columns: nested fields are
/// joined with `.`, and the elements of a list field `xs` are named `x1`,
/// `x2`, ... (so `layers` gives `layer1.kind`, `layer1.p`, `layer2.kind`, ...).
fn columns(v: &Value) -> Map<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    walk(&join(k), x, out);
                }
            }
            Value::Array(xs) => {
                let stem = prefix.strip_suffix('s').unwrap_or(prefix);
                for (i, x) in xs.iter().enumerate() {
                    walk(&format!("{stem}{}", i + 1), x, out);
                }
            }
            scalar => {
                out.insert(prefix.to_string(), scalar.clone());
            }
        }
    }
    let mut out = Map::new();
    walk("", v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::key::canonical_json;

    #[test]
    fn defaults_are_the_books() {
        let c = TrainConfig::default();
        assert_eq!(
            c.layers,
            [RegKind::Dropout.with(0.2), RegKind::Dropout.with(0.5)]
        );
        assert_eq!((c.lr, c.batch_size, c.epochs), (0.5, 256, 10));
        assert_eq!(c.weight_decay, 0.0);
        c.validate().unwrap();
    }

    #[test]
    fn columns_flatten_layers() {
        let cols = TrainConfig::default().columns();
        let names: Vec<&str> = cols.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "layer1.kind",
                "layer1.p",
                "layer2.kind",
                "layer2.p",
                "weight_decay",
                "lr",
                "batch_size",
                "epochs"
            ]
        );
        assert_eq!(cols["layer2.p"], 0.5);
    }

    /// The key of the book's configuration, pinned: a change here would
    /// orphan every stored run, so it must be deliberate.
    #[test]
    fn canonical_form_is_pinned() {
        assert_eq!(
            canonical_json(&TrainConfig::default()).unwrap(),
            r#"{"batch_size":256,"epochs":10,"layers":[{"kind":"dropout","p":0.2},{"kind":"dropout","p":0.5}],"lr":0.5,"weight_decay":0.0}"#
        );
    }
}
