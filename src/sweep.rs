//! Sweeps: a list of (configuration, seed) runs, executed with caching,
//! parallel jobs and sharding.
//!
//! Each finished run is stored as `runs/<key>.json` in the experiment's
//! output folder, the key being a hash of its configuration, seed and data
//! identity. A rerun skips stored runs (unless forced), so killing a sweep,
//! even with kill -9, loses at most the runs in progress. `--shard K/N` runs
//! every N-th run starting at the K-th, so machines can split a sweep; `merge`
//! puts their folders back together.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::Dataset;
use crate::output::{now_rfc3339, write_json};
use crate::train::{EpochRow, TrainConfig, TrainHook};

/// One unit of work: a labelled configuration and a seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The configuration's name in tables and plots, e.g. `p=(0.2,0.5)`.
    pub label: String,
    pub config: TrainConfig,
    pub seed: u64,
}

impl RunSpec {
    /// The cache key: configuration, seed, data and trainer revision, nothing
    /// else (not the label, the thread count or the job count, which do not
    /// change results).
    pub fn key(&self, data_digest: &str) -> String {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&self.config).expect("config serialises"));
        h.update(self.seed.to_le_bytes());
        h.update(data_digest.as_bytes());
        h.update(crate::train::TRAINER_REVISION.to_le_bytes());
        crate::data::hex(&h.finalize()[..10])
    }
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

/// What a sweep runs for each spec: plain training by default; experiments
/// with probes supply their own.
pub type Worker<'a> = dyn Fn(&RunSpec, &Dataset, &mut dyn TrainHook) -> Result<(bool, Vec<EpochRow>, serde_json::Value)>
    + Sync
    + 'a;

/// The plain worker: train and keep the per-epoch rows.
pub fn train_worker(
    spec: &RunSpec,
    data: &Dataset,
    hook: &mut dyn TrainHook,
) -> Result<(bool, Vec<EpochRow>, serde_json::Value)> {
    let out = crate::train::train(&spec.config, spec.seed, data, hook)?;
    Ok((out.diverged, out.rows, serde_json::Value::Null))
}

/// `--shard K/N`: this process runs the K-th of N slices (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let err = || format!("`{s}` is not a shard: write K/N with 1 <= K <= N, e.g. 2/4");
        let (k, n) = s.split_once('/').ok_or_else(err)?;
        let (index, count): (usize, usize) = (
            k.trim().parse().map_err(|_| err())?,
            n.trim().parse().map_err(|_| err())?,
        );
        if count == 0 || index == 0 || index > count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether run number `i` (0-based, in sweep order) belongs to this shard.
    pub fn owns(&self, i: usize) -> bool {
        i % self.count == self.index - 1
    }
}

/// How to execute a sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub out: PathBuf,
    pub jobs: usize,
    pub shard: Option<Shard>,
    pub force: bool,
    pub device: String,
}

/// The stored file of a run.
pub fn run_path(out: &Path, key: &str) -> PathBuf {
    out.join("runs").join(format!("{key}.json"))
}

/// Loads a stored run, if present and readable.
pub fn load_run(path: &Path) -> Result<Option<StoredRun>> {
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

/// A run that failed with an error (not a divergence): reported, not stored.
#[derive(Debug, Clone)]
pub struct Failure {
    pub spec: RunSpec,
    pub error: String,
}

/// Runs every spec this shard owns that is not stored yet, `jobs` at a time.
/// `on_done` is called (under a lock) after each run is stored, so callers can
/// refresh their outputs. Failures are collected and returned, not raised.
pub fn execute(
    specs: &[RunSpec],
    data: &Dataset,
    opts: &SweepOptions,
    worker: &Worker,
    on_done: &(dyn Fn() -> Result<()> + Sync),
) -> Result<Vec<Failure>> {
    let digest = data.identity.digest();
    let todo: Vec<&RunSpec> = specs
        .iter()
        .enumerate()
        .filter(|(i, _)| opts.shard.is_none_or(|s| s.owns(*i)))
        .map(|(_, s)| s)
        .filter(|s| opts.force || !run_path(&opts.out, &s.key(&digest)).is_file())
        .collect();
    let owned = specs
        .iter()
        .enumerate()
        .filter(|(i, _)| opts.shard.is_none_or(|s| s.owns(*i)))
        .count();
    if todo.is_empty() {
        return Ok(Vec::new());
    }
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let overall = multi.add(ProgressBar::new(owned as u64));
    overall.set_style(
        ProgressStyle::with_template("runs [{bar:30}] {pos}/{len} ({elapsed}, eta {eta}) {msg}")
            .unwrap()
            .progress_chars("=> "),
    );
    overall.set_position((owned - todo.len()) as u64);
    overall.reset_eta();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let done_lock = Mutex::new(());
    let jobs = opts.jobs.clamp(1, todo.len());
    let threads = crate::device::threads();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(spec) = todo.get(i) else { break };
                let mut bar = crate::run::EpochBar::new(
                    spec.config.epochs,
                    format!("{} seed {}", spec.label, spec.seed),
                );
                bar.0 = multi.add(bar.0.clone());
                let result = worker(spec, data, &mut bar);
                bar.0.finish_and_clear();
                multi.remove(&bar.0);
                let stored = result.and_then(|(diverged, rows, extra)| {
                    let run = StoredRun {
                        spec: (*spec).clone(),
                        data_digest: digest.clone(),
                        diverged,
                        rows,
                        extra,
                        drop_exp_version: env!("CARGO_PKG_VERSION").into(),
                        device: opts.device.clone(),
                        threads,
                        finished_at: now_rfc3339(),
                    };
                    write_json(&run_path(&opts.out, &spec.key(&digest)), &run)
                });
                if let Err(e) = stored {
                    overall.println(format!(
                        "run {} seed {} failed: {e:#}",
                        spec.label, spec.seed
                    ));
                    failures.lock().unwrap().push(Failure {
                        spec: (*spec).clone(),
                        error: format!("{e:#}"),
                    });
                }
                overall.inc(1);
                let _guard = done_lock.lock().unwrap();
                if let Err(e) = on_done() {
                    overall.println(format!("could not refresh outputs: {e:#}"));
                }
            });
        }
    });
    overall.finish_and_clear();
    Ok(failures.into_inner().unwrap())
}

/// The stored runs for `specs`, in order; `None` where a run is missing.
pub fn collect(specs: &[RunSpec], out: &Path, data_digest: &str) -> Result<Vec<Option<StoredRun>>> {
    specs
        .iter()
        .map(|s| load_run(&run_path(out, &s.key(data_digest))))
        .collect()
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
                let strip = |r: &StoredRun| -> Vec<(usize, f64, f64, f64, f64)> {
                    r.rows
                        .iter()
                        .map(|x| (x.epoch, x.train_loss, x.train_acc, x.test_loss, x.test_acc))
                        .collect()
                };
                if strip(&a) != strip(&b) {
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
