//! Everything that leaves the process as a file. Serialisers are pure
//! (rows in, bytes out); [`write_atomic`] is the only way a file is written,
//! so an interrupted command never leaves a half-written output behind.

pub mod plot;

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, creating the directory if needed (see `write_atomic_with`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        std::fs::write(tmp, bytes)
            .with_context(|| format!("cannot write {} (is the disk full?)", tmp.display()))
    })
}

/// Writes a file through `write(tmp)` into a temporary file next to `path`
/// (tempfile's, with a name of its own), then renames it into place; the
/// temporary file is removed on failure.
/// For writers (such as plot backends) that want a path rather than bytes.
fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    let name = path.file_name().context("output path has no file name")?;
    // The extension stays last: some writers pick the format by it. The
    // temporary file is removed when dropped, so on every failure.
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .suffix(name)
        .tempfile_in(dir.unwrap_or(Path::new(".")))
        .with_context(|| format!("cannot create a temporary file next to {}", path.display()))?;
    write(tmp.path())?;
    let shown = tmp.path().display().to_string();
    tmp.persist(path)
        .with_context(|| format!("cannot move {shown} into place as {}", path.display()))?;
    Ok(())
}

/// Serialises rows as CSV with a header line. Rows go through JSON objects
/// so that `#[serde(flatten)]` works (the csv crate cannot flatten); field
/// order is kept, and NaN (JSON null) is written as `NaN`. The header is the
/// union of the rows' fields in order of first appearance (rows whose
/// regularisers have different parameters have different fields); a field
/// a row lacks is left empty.
fn csv_bytes<T: Serialize>(rows: &[T]) -> Result<Vec<u8>> {
    let mut maps = Vec::with_capacity(rows.len());
    let mut header: Vec<String> = Vec::new();
    for r in rows {
        let serde_json::Value::Object(map) = serde_json::to_value(r)? else {
            anyhow::bail!("a CSV row must serialise to an object");
        };
        let keys: Vec<&String> = map.keys().collect();
        for (i, k) in keys.iter().enumerate() {
            if header.contains(k) {
                continue;
            }
            // Before the next of this row's fields that the header has, so
            // fields stay in their row's order.
            let at = keys[i + 1..]
                .iter()
                .find_map(|next| header.iter().position(|h| h == *next))
                .unwrap_or(header.len());
            header.insert(at, (*k).clone());
        }
        maps.push(map);
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    if !maps.is_empty() {
        w.write_record(&header)?;
    }
    for map in &maps {
        let cells = header.iter().map(|h| match map.get(h) {
            None => String::new(),
            Some(serde_json::Value::Null) => "NaN".to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        a: u32,
        #[serde(flatten)]
        extra: serde_json::Map<String, serde_json::Value>,
        z: f64,
    }

    #[test]
    fn csv_header_is_the_union_of_the_rows_fields() {
        let row = |pairs: &[(&str, f64)], z| Row {
            a: 1,
            extra: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect(),
            z,
        };
        let rows = [row(&[("p", 0.5)], 1.0), row(&[("sigma", 2.0)], f64::NAN)];
        let text = String::from_utf8(csv_bytes(&rows).unwrap()).unwrap();
        assert_eq!(text, "a,p,sigma,z\n1,0.5,,1.0\n1,,2.0,NaN\n");
    }

    #[test]
    fn failed_writes_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let err = write_atomic_with(&path, |tmp| {
            std::fs::write(tmp, b"half")?;
            anyhow::bail!("disk full")
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // A directory in the way makes the rename fail after the write.
        std::fs::create_dir(dir.path().join("y.csv")).unwrap();
        std::fs::write(dir.path().join("y.csv").join("f"), b"").unwrap();
        assert!(write_atomic(&dir.path().join("y.csv"), b"data").is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["y.csv"]);
    }
}
