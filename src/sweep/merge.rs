//! Combining the folders of a sharded sweep: stored runs copied into one
//! folder, a run stored twice compared bit for bit.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::record::StoredRun;

impl StoredRun {
    /// Whether two stored copies of a run hold the same results, bit for
    /// bit (a NaN loss equal to itself): every metric of every epoch, the
    /// diverged flag and the measurements; the timing columns, the machine
    /// and the time it finished may differ.
    fn same_results(&self, other: &StoredRun) -> bool {
        fn bits(x: f64) -> u64 {
            // JSON carries no NaN payload: every stored NaN reads back as
            // the same one.
            if x.is_nan() {
                f64::NAN.to_bits()
            } else {
                x.to_bits()
            }
        }
        let key = |e: &crate::record::EpochRow| {
            (
                e.epoch,
                [
                    e.train_loss,
                    e.train_acc,
                    e.test_loss,
                    e.test_acc,
                    e.train_eval_acc,
                ]
                .map(bits),
                [e.val_loss, e.val_acc].map(|v| v.map(bits)),
            )
        };
        self.spec.config == other.spec.config
            && self.spec.seed == other.spec.seed
            && self.data_digest == other.data_digest
            && self.diverged == other.diverged
            && self.extra == other.extra
            && self.rows.len() == other.rows.len()
            && self
                .rows
                .iter()
                .zip(&other.rows)
                .all(|(a, b)| key(a) == key(b))
    }
}

/// Copies the stored runs of several shard folders into `dest`. Conflicting
/// copies of one run (same key, different results) are an error.
pub fn merge_runs(dest: &Path, sources: &[PathBuf]) -> Result<usize> {
    let mut copied = 0;
    std::fs::create_dir_all(dest.join("runs"))
        .with_context(|| format!("creating {}", dest.join("runs").display()))?;
    for src in sources {
        let dir = src.join("runs");
        let entries = std::fs::read_dir(&dir).with_context(|| {
            format!(
                "{} has no runs/ folder; is it an output folder of a sweep?",
                src.display()
            )
        })?;
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let target = dest.join("runs").join(path.file_name().unwrap());
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if let Ok(existing) = std::fs::read(&target) {
                let a: StoredRun = serde_json::from_slice(&existing)?;
                let b: StoredRun = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a valid stored run", path.display()))?;
                if !a.same_results(&b) {
                    bail!(
                        "{} and {} hold different results for the same run; remove one of them",
                        target.display(),
                        path.display()
                    );
                }
                continue;
            }
            crate::output::write_atomic(&target, &bytes)?;
            copied += 1;
        }
    }
    Ok(copied)
}
