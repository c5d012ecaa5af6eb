//! The sweep's store: one JSON file per run under `<out>/runs/`, named by
//! its key; reading it back, and adopting identical runs from sibling
//! folders.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::record::{RunSpec, StoredRun};

/// The stored file of a run.
pub(super) fn run_path(out: &Path, key: &str) -> PathBuf {
    out.join("runs").join(format!("{key}.json"))
}

/// Loads a stored run, if present and readable.
pub(super) fn load_run(path: &Path) -> Result<Option<StoredRun>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
            format!(
                "{} is not a valid stored run; delete it to redo that run",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Decodes a stored run's experiment-specific data (`extra`); data that does
/// not decode is an error naming the run's file, never an empty value.
pub fn decode_extra<T: serde::de::DeserializeOwned>(run: &StoredRun, out: &Path) -> Result<T> {
    serde_json::from_value(run.extra.clone()).with_context(|| {
        format!(
            "{}: its measurements (`extra`) do not decode; it was written by another version \
             of drop-exp or damaged: delete it and rerun the same command to redo that run",
            run_path(out, &run.spec.key(&run.data_digest)).display()
        )
    })
}

/// Copies the run `key` from one of the folders `from` into `out`, if one
/// has it: the key fixes configuration, seed, data and trainer, so the run
/// is the one this sweep would train. Returns whether one was copied.
pub(super) fn adopt(out: &Path, from: &[PathBuf], key: &str) -> Result<bool> {
    for dir in from {
        let Ok(bytes) = std::fs::read(run_path(dir, key)) else {
            continue;
        };
        // Only readable plain runs: measurements of another experiment's
        // worker (`extra`) are not this one's.
        match serde_json::from_slice::<StoredRun>(&bytes) {
            Ok(run) if run.extra.is_null() => {
                crate::output::write_atomic(&run_path(out, key), &bytes)?;
                return Ok(true);
            }
            _ => continue,
        }
    }
    Ok(false)
}

/// The stored runs for `specs`, in order; `None` where a run is missing.
/// A run found by its spec's key carries that spec: the label it has now
/// (labels are presentation, not part of the key, so renaming a
/// configuration reuses its runs), and the configuration exactly as the
/// code builds it, which is what configurations are matched on (see
/// [`crate::record::ConfigKey`]), whatever a number's round trip through
/// JSON gave.
pub fn collect(specs: &[RunSpec], out: &Path, data_digest: &str) -> Result<Vec<Option<StoredRun>>> {
    specs
        .iter()
        .map(|s| {
            let run = load_run(&run_path(out, &s.key(data_digest)))?;
            Ok(run.map(|mut r| {
                r.spec = s.clone();
                r
            }))
        })
        .collect()
}
