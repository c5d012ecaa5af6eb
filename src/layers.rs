//! Settings as layers of TOML, each with where it came from (a file, a
//! preset, `--set`, the flags), applied in order; the one way every
//! command layers its settings, and the errors that name the layer.

use anyhow::{Context, Result};

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
    fn overlay_merges_tables_and_replaces_values() {
        let mut base: toml::Table = toml::from_str("a = 1\nb = [1, 2]\n[t]\nx = 1\ny = 2").unwrap();
        overlay(&mut base, toml::from_str("b = [3]\n[t]\ny = 5").unwrap());
        assert_eq!(base["a"].as_integer(), Some(1));
        assert_eq!(base["b"].as_array().unwrap().len(), 1);
        assert_eq!(base["t"]["x"].as_integer(), Some(1));
        assert_eq!(base["t"]["y"].as_integer(), Some(5));
    }
}
