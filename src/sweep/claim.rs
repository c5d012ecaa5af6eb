//! Claims on runs: advisory file locks, so that concurrent invocations on
//! one output folder never train a run twice.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A claim on one run, so that two invocations on the same output folder
/// never train it twice: an advisory lock on `runs/.<key>.lock`, released
/// when dropped or when the process dies (even by kill -9).
pub(super) struct Claim {
    path: PathBuf,
    _file: File,
}

impl Claim {
    /// Takes the run's lock; with `wait`, blocks until the process holding
    /// it lets go, otherwise returns `None` if it is held.
    pub(super) fn take(out: &Path, key: &str, wait: bool) -> Result<Option<Claim>> {
        let path = out.join("runs").join(format!(".{key}.lock"));
        std::fs::create_dir_all(out.join("runs"))
            .with_context(|| format!("creating {}", out.join("runs").display()))?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot create the lock file {}", path.display()))?;
        if wait {
            file.lock()
                .with_context(|| format!("locking {}", path.display()))?;
        } else {
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()))
                }
            }
        }
        Ok(Some(Claim { path, _file: file }))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Whoever takes the lock next finds the run stored and skips it, so
        // removing the file while another process waits on it is harmless.
        let _ = std::fs::remove_file(&self.path);
    }
}
