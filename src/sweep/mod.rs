//! Sweeps: a list of (configuration, seed) runs, executed with caching,
//! parallel jobs and sharding.
//!
//! Each finished run is stored as `runs/<key>.json` in the experiment's
//! output folder, the key being a hash of its configuration, seed and data
//! identity. A rerun skips stored runs (unless forced), so killing a sweep,
//! even with kill -9, loses at most the runs in progress. `--shard K/N` runs
//! every N-th run starting at the K-th, so machines can split a sweep; `merge`
//! puts their folders back together.
//!
//! This file schedules the runs (which to train, on how many jobs, in which
//! stacks); `key.rs` is the cache key, `store.rs` the stored runs and their
//! adoption from sibling folders, `claim.rs` the locks between concurrent
//! invocations, `plan.rs` the stacks and `merge.rs` the copying of shards.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::data::{DataSource, Dataset};
use crate::output::{now_rfc3339, write_json};
use crate::progress::SweepBars;
use crate::record::{EpochRow, RunSpec, StoredRun};
use crate::train::TrainHook;

mod claim;
pub mod key;
mod merge;
mod plan;
mod store;

use claim::Claim;
pub use merge::merge_runs;
use plan::stacks;
use store::{adopt, run_path};
pub use store::{collect, decode_extra};

/// What a worker returns for one run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub diverged: bool,
    pub rows: Vec<EpochRow>,
    /// Experiment-specific measurements (probes), or null.
    pub extra: serde_json::Value,
}

/// What a sweep runs for each spec, given the data, the CPU threads for the
/// run and a hook: plain training by default; experiments with probes supply
/// their own.
pub type Worker<'a> =
    dyn Fn(&RunSpec, &Dataset, usize, &mut dyn TrainHook) -> Result<RunResult> + Sync + 'a;

/// The plain worker: train and keep the per-epoch rows.
fn train_worker(
    spec: &RunSpec,
    data: &Dataset,
    threads: usize,
    hook: &mut dyn TrainHook,
) -> Result<RunResult> {
    let out = crate::train::train(&spec.config, spec.seed, data, threads, hook)?;
    Ok(RunResult {
        diverged: out.diverged,
        rows: out.rows,
        extra: serde_json::Value::Null,
    })
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
    fn owns(&self, i: usize) -> bool {
        i % self.count == self.index - 1
    }
}

/// How to execute a sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub out: PathBuf,
    pub jobs: usize,
    /// CPU threads of each run.
    pub threads: usize,
    pub shard: Option<Shard>,
    pub force: bool,
    pub device: String,
    /// Output folders of other experiments whose identical runs are adopted
    /// instead of trained again (for a sweep in `results/<name>`, the other
    /// exercises' `results/<other>`).
    pub adopt_from: Vec<PathBuf>,
    /// The most runs of one seed trained together as one stack (plain
    /// training, see [`crate::train`]); 1 trains each run alone.
    pub batch_runs: usize,
}

/// A run that failed with an error (not a divergence): reported, not stored.
#[derive(Debug, Clone)]
pub struct Failure {
    pub spec: RunSpec,
    pub error: String,
}

/// What one invocation of a sweep did.
#[derive(Debug, Default)]
pub struct SweepOutcome {
    /// Runs this process trained and stored.
    pub trained: usize,
    /// Runs found stored already (by an earlier or a concurrent invocation).
    pub reused: usize,
    /// Runs that failed with an error: reported, not stored.
    pub failures: Vec<Failure>,
}

/// Runs every spec this shard owns that is not stored yet, `jobs` at a time:
/// with `worker`, one run at a time each; without one (plain training),
/// runs of one seed together in stacks of up to `batch_runs` (`plan::stacks`). `on_done` is called (under a lock) after each run is
/// stored, so callers can refresh their outputs. Runs that another drop-exp
/// process is training in the same folder are waited for, not trained
/// twice. Failures are collected and returned, not raised.
pub fn execute(
    specs: &[RunSpec],
    data: &DataSource,
    opts: &SweepOptions,
    worker: Option<&Worker>,
    on_done: &(dyn Fn() -> Result<()> + Sync),
) -> Result<SweepOutcome> {
    let started = std::time::SystemTime::now();
    let digest = data.identity.digest();
    let (owned, todo) = to_train(specs, opts, &digest)?;
    if todo.is_empty() {
        return Ok(SweepOutcome {
            reused: owned.len(),
            ..Default::default()
        });
    }
    let data = data.get()?;
    let bars = SweepBars::new(owned.len(), owned.len() - todo.len());
    let sweep = Sweep {
        data,
        opts,
        worker: worker.unwrap_or(&train_worker),
        on_done,
        digest: &digest,
        bars: &bars,
        failures: Mutex::new(Vec::new()),
        done_lock: Mutex::new(()),
        trained: AtomicUsize::new(0),
        started,
    };
    // First pass: every run nobody else holds. Second: wait for the runs
    // another process held, and train those it did not finish (one by one).
    let batch = match worker {
        None => opts.batch_runs.max(1),
        Some(_) => 1,
    };
    let held = sweep.train_unheld(&stacks(&todo, batch, opts.jobs));
    sweep.train_held(held);
    bars.finish();
    let trained = sweep.trained.into_inner();
    let failures = sweep.failures.into_inner().unwrap();
    Ok(SweepOutcome {
        trained,
        reused: owned.len() - trained - failures.len(),
        failures,
    })
}

/// The specs this process owns (its shard's), and of those the ones to
/// train: not stored (nor adopted from a sibling folder), or all with
/// `force`.
fn to_train<'s>(
    specs: &'s [RunSpec],
    opts: &SweepOptions,
    digest: &str,
) -> Result<(Vec<&'s RunSpec>, Vec<&'s RunSpec>)> {
    let stored = |s: &RunSpec| run_path(&opts.out, &s.key(digest)).is_file();
    let owned: Vec<&RunSpec> = specs
        .iter()
        .enumerate()
        .filter(|(i, _)| opts.shard.is_none_or(|s| s.owns(*i)))
        .map(|(_, s)| s)
        .collect();
    let mut adopted = 0;
    if !opts.force {
        for s in owned.iter().filter(|s| !stored(s)) {
            adopted += usize::from(adopt(&opts.out, &opts.adopt_from, &s.key(digest))?);
        }
    }
    if adopted > 0 {
        eprintln!(
            "reused {adopted} identical run(s) stored by other experiments next to {}",
            opts.out.display()
        );
    }
    let todo = owned
        .iter()
        .copied()
        .filter(|s| opts.force || !stored(s))
        .collect();
    Ok((owned, todo))
}

/// What the workers of one sweep share.
struct Sweep<'a> {
    data: &'a Dataset,
    opts: &'a SweepOptions,
    worker: &'a Worker<'a>,
    on_done: &'a (dyn Fn() -> Result<()> + Sync),
    digest: &'a str,
    bars: &'a SweepBars,
    failures: Mutex<Vec<Failure>>,
    done_lock: Mutex<()>,
    trained: AtomicUsize,
    /// When this invocation began: with `force`, a run stored after it was
    /// redone by a concurrent invocation, and is not redone again.
    started: std::time::SystemTime,
}

impl Sweep<'_> {
    /// Trains the runs of `items` (stacks) that no other process holds;
    /// returns the held ones.
    fn train_unheld<'s>(&self, items: &[Vec<&'s RunSpec>]) -> Vec<&'s RunSpec> {
        let held: Mutex<Vec<&RunSpec>> = Mutex::new(Vec::new());
        self.in_parallel(items, |item| {
            let mut claimed = Vec::with_capacity(item.len());
            for &spec in item {
                match Claim::take(&self.opts.out, &spec.key(self.digest), false)? {
                    Some(claim) => claimed.push((spec, claim)),
                    None => held.lock().unwrap().push(spec),
                }
            }
            match claimed.len() {
                0 => Ok(()),
                1 => {
                    let (spec, claim) = claimed.pop().expect("one claim");
                    self.run_claimed(spec, claim, self.opts.force)
                }
                _ => self.run_stack(claimed, self.opts.force),
            }
        });
        held.into_inner().unwrap()
    }

    /// Waits for each run another process held, and trains those it did
    /// not finish, one by one.
    fn train_held(&self, held: Vec<&RunSpec>) {
        if held.is_empty() {
            return;
        }
        self.bars.println(format!(
            "waiting for {} run(s) that another drop-exp process is training in {}",
            held.len(),
            self.opts.out.display()
        ));
        let held: Vec<Vec<&RunSpec>> = held.into_iter().map(|s| vec![s]).collect();
        self.in_parallel(&held, |item| {
            let spec = item[0];
            let claim = Claim::take(&self.opts.out, &spec.key(self.digest), true)?
                .expect("a blocking lock is always taken");
            self.run_claimed(spec, claim, self.opts.force)
        });
    }

    /// Whether the run at `path` needs no training: stored, and (with
    /// `force`) stored during this invocation, by a concurrent one.
    fn done(&self, path: &Path, force: bool) -> bool {
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        !force || meta.modified().is_ok_and(|t| t >= self.started)
    }

    /// Calls `f` on each item (runs trained together), `jobs` at a time;
    /// an error is recorded as the failure of each of the item's runs.
    fn in_parallel<'s>(
        &self,
        items: &[Vec<&'s RunSpec>],
        f: impl Fn(&[&'s RunSpec]) -> Result<()> + Sync,
    ) {
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..self.opts.jobs.clamp(1, items.len().max(1)) {
                scope.spawn(|| {
                    while let Some(item) = items.get(next.fetch_add(1, Ordering::SeqCst)) {
                        if let Err(e) = f(item) {
                            let e = format!("{e:#}");
                            for spec in item {
                                self.fail(spec, anyhow::anyhow!("{e}"));
                            }
                        }
                    }
                });
            }
        });
    }

    fn fail(&self, spec: &RunSpec, e: anyhow::Error) {
        self.bars.println(format!(
            "run {} seed {} failed: {e:#}",
            spec.label, spec.seed
        ));
        self.failures.lock().unwrap().push(Failure {
            spec: spec.clone(),
            error: format!("{e:#}"),
        });
    }

    /// Trains and stores a run whose claim is held, unless (without `force`)
    /// it is stored already; then refreshes the outputs.
    fn run_claimed(&self, spec: &RunSpec, claim: Claim, force: bool) -> Result<()> {
        let path = run_path(&self.opts.out, &spec.key(self.digest));
        if self.done(&path, force) {
            return Ok(()); // finished by another process meanwhile
        }
        let mut bar = self.bars.run_bar(
            spec.config.epochs,
            format!("{} seed {}", spec.label, spec.seed),
        );
        let result = (self.worker)(spec, self.data, self.opts.threads, &mut bar);
        self.bars.run_done(bar);
        self.store(spec, claim, result)
    }

    /// Trains runs of one seed together as a stack (their claims held),
    /// skipping (without `force`) those stored meanwhile, then stores each.
    fn run_stack(&self, claimed: Vec<(&RunSpec, Claim)>, force: bool) -> Result<()> {
        let path = |s: &RunSpec| run_path(&self.opts.out, &s.key(self.digest));
        let claimed: Vec<_> = claimed
            .into_iter()
            .filter(|(s, _)| !self.done(&path(s), force))
            .collect();
        let mut bars: Vec<_> = claimed
            .iter()
            .map(|(s, _)| {
                self.bars.run_bar(
                    s.config.epochs,
                    format!("{} seed {} (stack of {})", s.label, s.seed, claimed.len()),
                )
            })
            .collect();
        let Some(&(first, _)) = claimed.first() else {
            return Ok(());
        };
        let mut members: Vec<crate::train::Member> = claimed
            .iter()
            .zip(bars.iter_mut())
            .map(|((s, _), bar)| crate::train::Member {
                cfg: &s.config,
                hook: bar,
            })
            .collect();
        let outcomes =
            crate::train::train_stack(&mut members, first.seed, self.data, self.opts.threads);
        drop(members);
        for bar in bars {
            self.bars.run_done(bar);
        }
        let outcomes = outcomes?;
        let mut errors = Vec::new();
        for ((spec, claim), out) in claimed.into_iter().zip(outcomes) {
            let result = Ok(RunResult {
                diverged: out.diverged,
                rows: out.rows,
                extra: serde_json::Value::Null,
            });
            if let Err(e) = self.store(spec, claim, result) {
                errors.push(format!("{} seed {}: {e:#}", spec.label, spec.seed));
            }
        }
        if !errors.is_empty() {
            bail!("could not store: {}", errors.join("; "));
        }
        Ok(())
    }

    /// Stores a finished run (releasing its claim) and refreshes the outputs.
    fn store(&self, spec: &RunSpec, claim: Claim, result: Result<RunResult>) -> Result<()> {
        let path = run_path(&self.opts.out, &spec.key(self.digest));
        let stored = result.and_then(|r| {
            let run = StoredRun {
                spec: spec.clone(),
                data_digest: self.digest.to_string(),
                diverged: r.diverged,
                rows: r.rows,
                extra: r.extra,
                drop_exp_version: env!("CARGO_PKG_VERSION").into(),
                device: self.opts.device.clone(),
                threads: self.opts.threads,
                finished_at: now_rfc3339(),
            };
            write_json(&path, &run)
        });
        drop(claim);
        stored?;
        self.trained.fetch_add(1, Ordering::SeqCst);
        let _guard = self.done_lock.lock().unwrap();
        if let Err(e) = (self.on_done)() {
            self.bars
                .println(format!("could not refresh outputs: {e:#}"));
        }
        Ok(())
    }
}
