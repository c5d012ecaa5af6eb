//! Everything that leaves the process as a file. Serialisers are pure
//! (rows in, bytes out); [`write_atomic`] is the only way a file is written,
//! so an interrupted command never leaves a half-written output behind.

pub mod plot;

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, creating the directory if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    let name = path.file_name().context("output path has no file name")?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!(
            "cannot move {} into place as {}",
            tmp.display(),
            path.display()
        )
    })
}

/// Serialises rows as CSV with a header line. Rows go through JSON objects
/// so that `#[serde(flatten)]` works (the csv crate cannot flatten); field
/// order is kept, and NaN (JSON null) is written as `NaN`.
pub fn csv_bytes<T: Serialize>(rows: &[T]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Option<Vec<String>> = None;
    for r in rows {
        let serde_json::Value::Object(map) = serde_json::to_value(r)? else {
            anyhow::bail!("a CSV row must serialise to an object");
        };
        if header.is_none() {
            let h: Vec<String> = map.keys().cloned().collect();
            w.write_record(&h)?;
            header = Some(h);
        }
        let cells = map.values().map(|v| match v {
            serde_json::Value::Null => "NaN".to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        w.write_record(cells)?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Writes rows as CSV, atomically.
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    write_atomic(path, &csv_bytes(rows)?)
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
