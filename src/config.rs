//! The configuration of one training run, defined once.
//!
//! [`TrainConfig`] is the only place its fields are listed. Its defaults are
//! the book's, read from `experiments/defaults.toml`; the CSV configuration
//! columns (`columns`), `check`'s matching and the sweep cache key
//! ([`canonical_json`]) are all derived from its serialised form, so a new
//! field or a new regulariser kind with parameters of its own needs no
//! hand-kept copy anywhere.

use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
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

/// How a run flag's value is read and where it goes in a configuration.
#[derive(Clone, Copy)]
pub enum FlagSetter {
    /// A regulariser kind.
    Reg(fn(&mut TrainConfig, RegKind)),
    /// A number of the given range.
    Number(NumberRange, fn(&mut TrainConfig, f64)),
    /// A whole number of at least 1.
    Count(fn(&mut TrainConfig, usize)),
    /// A gradient path.
    Backward(fn(&mut TrainConfig, Backward)),
}

/// The range a numeric flag accepts (checked when the flag is parsed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberRange {
    /// [0, 1].
    Probability,
    /// Finite, > 0.
    Positive,
    /// Finite, >= 0.
    NonNegative,
}

/// A configuration key that `drop-exp run` offers as a flag of its own:
/// the one place such a flag is written. The flag, its help (with the
/// default read from experiments/defaults.toml) and how it changes the
/// configuration all come from here.
pub struct RunFlag {
    pub long: &'static str,
    pub help: &'static str,
    pub setter: FlagSetter,
    /// The value in a configuration, as the help's default shows it.
    pub show: fn(&TrainConfig) -> String,
}

/// The flags of `drop-exp run`, applied in this order after `--config` and
/// `--set`.
pub const RUN_FLAGS: &[RunFlag] = &[
    RunFlag {
        long: "reg",
        help: "Regulariser of both hidden layers (keeping their strengths)",
        setter: FlagSetter::Reg(|c, kind| c.layers = c.layers.map(|l| kind.with(l.p()))),
        show: |c| c.layers[0].kind().to_string(),
    },
    RunFlag {
        long: "p1",
        help: "Strength (for dropout: drop probability) after the first hidden layer, in [0, 1]",
        setter: FlagSetter::Number(NumberRange::Probability, |c, p| {
            c.layers[0] = c.layers[0].kind().with(p)
        }),
        show: |c| c.layers[0].p().to_string(),
    },
    RunFlag {
        long: "p2",
        help: "Strength (for dropout: drop probability) after the second hidden layer, in [0, 1]",
        setter: FlagSetter::Number(NumberRange::Probability, |c, p| {
            c.layers[1] = c.layers[1].kind().with(p)
        }),
        show: |c| c.layers[1].p().to_string(),
    },
    RunFlag {
        long: "epochs",
        help: "Number of passes over the training set",
        setter: FlagSetter::Count(|c, n| c.epochs = n),
        show: |c| c.epochs.to_string(),
    },
    RunFlag {
        long: "lr",
        help: "SGD learning rate (> 0)",
        setter: FlagSetter::Number(NumberRange::Positive, |c, v| c.lr = v),
        show: |c| c.lr.to_string(),
    },
    RunFlag {
        long: "batch-size",
        help: "Mini-batch size; the last, partial batch of an epoch is kept",
        setter: FlagSetter::Count(|c, n| c.batch_size = n),
        show: |c| c.batch_size.to_string(),
    },
    RunFlag {
        long: "weight-decay",
        help: "L2 penalty lambda on the weights (not biases): loss + lambda/2 * ||w||^2",
        setter: FlagSetter::Number(NumberRange::NonNegative, |c, v| c.weight_decay = v),
        show: |c| c.weight_decay.to_string(),
    },
    RunFlag {
        long: "backward",
        help: "Gradient path: auto (the hand-written backward where it covers the regularisers, \
               else candle's autograd), hand, or autograd",
        setter: FlagSetter::Backward(|c, b| c.backward = b),
        show: |c| c.backward.to_string(),
    },
];

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

/// The canonical JSON of `value` as a `T`, for cache keys: object keys
/// sorted, and every field that `T` fills in by itself when it is absent
/// (`#[serde(default)]`) left out while it holds that default. So a field
/// added to `T` later, at its default, leaves every existing key unchanged.
pub fn canonical_json<T: Serialize + DeserializeOwned>(value: &T) -> Result<String> {
    let full = serde_json::to_value(value)?;
    let mut out = full.clone();
    for path in field_paths(&full) {
        let mut without = full.clone();
        remove_at(&mut without, &path);
        let refilled = serde_json::from_value::<T>(without)
            .ok()
            .map(|t| serde_json::to_value(t))
            .transpose()?;
        if refilled.as_ref() == Some(&full) {
            remove_at(&mut out, &path);
        }
    }
    Ok(sorted(&out).to_string())
}

/// A step into a JSON value: an object key or an array index.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// The paths of every object field in `v`, depth first.
fn field_paths(v: &Value) -> Vec<Vec<Step>> {
    fn walk(v: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    at.push(Step::Key(k.clone()));
                    out.push(at.clone());
                    walk(x, at, out);
                    at.pop();
                }
            }
            Value::Array(xs) => {
                for (i, x) in xs.iter().enumerate() {
                    at.push(Step::Index(i));
                    walk(x, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn remove_at(v: &mut Value, path: &[Step]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for step in parents {
        cur = match (step, cur) {
            (Step::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(x) => x,
                None => return,
            },
            (Step::Index(i), Value::Array(xs)) => match xs.get_mut(*i) {
                Some(x) => x,
                None => return,
            },
            _ => return,
        };
    }
    if let (Step::Key(k), Value::Object(m)) = (last, cur) {
        m.shift_remove(k);
    }
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(xs) => Value::Array(xs.iter().map(sorted).collect()),
        x => x.clone(),
    }
}

/// Overlays `over` onto `base` key by key (nested tables merge; other values,
/// lists included, are replaced).
pub fn overlay(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => overlay(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// One layer of settings and where it came from (for messages): the
/// exercise's file, a preset, the user's `--config`, a `--set`, the flags.
pub struct Layer {
    source: String,
    pub table: toml::Table,
}

impl Layer {
    pub fn new(source: impl Into<String>, table: toml::Table) -> Self {
        Self {
            source: source.into(),
            table,
        }
    }

    /// The user's `--config` file.
    pub fn file(path: &std::path::Path) -> Result<Self> {
        Ok(Self::new(path.display().to_string(), read_toml(path)?))
    }

    /// A preset or override written as TOML text in the source.
    pub fn text(source: impl Into<String>, text: &str) -> Self {
        let source = source.into();
        let table =
            toml::from_str(text).unwrap_or_else(|e| panic!("{source} is not valid TOML: {e}"));
        Self::new(source, table)
    }
}

/// The one way settings are layered, for every command: `layers` applied in
/// order on top of `table`. A key that `known` rejects is an error naming
/// the layer and listing `known_keys`; after each non-empty layer, `build`
/// makes the result from the settings so far, and its error names the layer
/// that brought the bad value. Returns the last result (`build` of `table`
/// alone when no layer has anything).
pub fn resolve<T>(
    mut table: toml::Table,
    layers: Vec<Layer>,
    known: &dyn Fn(&str) -> bool,
    known_keys: &[&str],
    mut build: impl FnMut(toml::Table) -> Result<T>,
) -> Result<T> {
    let mut built = None;
    for layer in layers {
        if layer.table.is_empty() {
            continue;
        }
        if let Some(k) = layer.table.keys().find(|k| !known(k)) {
            anyhow::bail!(
                "{}: unknown key `{k}`; known keys: {}",
                layer.source,
                known_keys.join(", ")
            );
        }
        overlay(&mut table, layer.table);
        built = Some(
            build(table.clone()).with_context(|| format!("{}: invalid settings", layer.source))?,
        );
    }
    match built {
        Some(b) => Ok(b),
        None => build(table),
    }
}

/// Reads a TOML file as a table; the error names the file.
fn read_toml(path: &std::path::Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}; check the path", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[derive(Serialize, Deserialize)]
    struct Before {
        lr: f64,
        layers: Vec<Layer>,
    }
    #[derive(Serialize, Deserialize)]
    struct Layer {
        p: f64,
    }
    /// `Before` with a field added at the top and one inside the layers, as a
    /// later version of [`TrainConfig`] might.
    #[derive(Serialize, Deserialize)]
    struct After {
        lr: f64,
        layers: Vec<LayerAfter>,
        #[serde(default)]
        momentum: f64,
    }
    #[derive(Serialize, Deserialize)]
    struct LayerAfter {
        p: f64,
        #[serde(default = "one")]
        scale: f64,
    }
    fn one() -> f64 {
        1.0
    }

    #[test]
    fn new_fields_at_their_default_keep_the_key() {
        let before = Before {
            lr: 0.5,
            layers: vec![Layer { p: 0.2 }, Layer { p: 0.5 }],
        };
        let after = |momentum, scale| After {
            lr: 0.5,
            layers: vec![LayerAfter { p: 0.2, scale }, LayerAfter { p: 0.5, scale }],
            momentum,
        };
        let key = canonical_json(&before).unwrap();
        assert_eq!(canonical_json(&after(0.0, 1.0)).unwrap(), key);
        assert_ne!(canonical_json(&after(0.9, 1.0)).unwrap(), key);
        assert_ne!(canonical_json(&after(0.0, 2.0)).unwrap(), key);
        // Field order does not matter either.
        assert_eq!(
            canonical_json(&serde_json::json!({"layers": [{"p": 0.2}, {"p": 0.5}], "lr": 0.5}))
                .unwrap(),
            key
        );
    }

    #[test]
    fn overlay_merges_tables_and_replaces_values() {
        let mut base: toml::Table = toml::from_str("a = 1\nb = [1, 2]\n[t]\nx = 1\ny = 2").unwrap();
        overlay(&mut base, toml::from_str("b = [3]\n[t]\ny = 5").unwrap());
        assert_eq!(base["a"].as_integer(), Some(1));
        assert_eq!(base["b"].as_array().unwrap().len(), 1);
        assert_eq!(base["t"]["x"].as_integer(), Some(1));
        assert_eq!(base["t"]["y"].as_integer(), Some(5));
    }
}
