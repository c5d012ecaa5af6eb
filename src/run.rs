//! `drop-exp run`: one training run, written as `metrics.csv` and `run.json`.
//!
//! `metrics.csv` is rewritten (atomically) after every epoch, so an
//! interrupted run keeps what it measured; `run.json` records how the run
//! ended: finished, diverged, or interrupted (Ctrl-C). A run killed outright
//! leaves `status: "running"` behind.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::config::TrainConfig;
use crate::data::{self, DataIdentity, DataOptions};
use crate::device::Compute;
use crate::model::Mlp;
use crate::output::{now_rfc3339, write_csv, write_json};
use crate::progress::EpochBar;
use crate::record::EpochRow;
use crate::train::TrainHook;

/// What `drop-exp run` trains, and where it writes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: TrainConfig,
    pub seed: u64,
    pub out: PathBuf,
    pub data: DataOptions,
}

/// How a run ended, as recorded in `run.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum RunStatus {
    /// Training (or killed before it could record anything else).
    Running,
    Finished,
    /// A loss became NaN or infinite.
    Diverged,
    /// Stopped by Ctrl-C; the finished epochs are kept.
    Interrupted,
}

/// The provenance and outcome written to `run.json`.
#[derive(Debug, Serialize)]
struct RunRecord<'a> {
    drop_exp_version: &'static str,
    git_commit: &'static str,
    config: &'a TrainConfig,
    /// The gradient path that trains the run (what `backward` resolved to).
    grad_path: crate::config::GradPath,
    seed: u64,
    device: &'static str,
    threads: usize,
    data: &'a DataIdentity,
    started_at: String,
    status: RunStatus,
    finished_at: Option<String>,
    seconds: Option<f64>,
    /// Epochs finished (and in metrics.csv).
    epochs_done: usize,
    final_epoch: Option<EpochRow>,
}

/// The progress bar, plus metrics.csv rewritten after each epoch and the
/// Ctrl-C flag.
struct RunHook {
    bar: EpochBar,
    metrics: PathBuf,
    stop: Arc<AtomicBool>,
}

impl TrainHook for RunHook {
    fn after_step(&mut self, step: usize, epoch: usize, model: Option<&Mlp>) -> Result<()> {
        self.bar.after_step(step, epoch, model)
    }
    fn after_epoch(&mut self, rows: &[EpochRow]) -> Result<()> {
        write_csv(&self.metrics, rows)?;
        self.bar.after_epoch(rows)
    }
    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Ctrl-C sets the flag: the run stops after the current step and records
/// itself as interrupted. A second Ctrl-C ends the process at once.
fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let seen = flag.clone();
    let installed = ctrlc::set_handler(move || {
        if seen.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: stopping after this step (Ctrl-C again to quit at once)");
    });
    if let Err(e) = installed {
        eprintln!("warning: Ctrl-C will end the run without recording it ({e})");
    }
    flag
}

pub fn cmd_run(opts: &RunOptions, compute: &Compute) -> Result<()> {
    let cfg = &opts.config;
    cfg.validate()?;
    let data = data::load(&opts.data, &compute.dev)?;
    let out = &opts.out;
    let (version, commit) = crate::provenance();
    let mut record = RunRecord {
        drop_exp_version: version,
        git_commit: commit,
        config: cfg,
        grad_path: cfg.grad_path(),
        seed: opts.seed,
        device: compute.describe(),
        threads: compute.threads_per_run,
        data: &data.identity,
        started_at: now_rfc3339(),
        status: RunStatus::Running,
        finished_at: None,
        seconds: None,
        epochs_done: 0,
        final_epoch: None,
    };
    // The resolved configuration goes next to the outputs before training.
    write_json(&out.join("run.json"), &record)?;
    let t0 = std::time::Instant::now();
    let mut hook = RunHook {
        bar: EpochBar::new(cfg.epochs, format!("seed {}", opts.seed)),
        metrics: out.join("metrics.csv"),
        stop: stop_flag(),
    };
    let outcome = crate::train::train(cfg, opts.seed, &data, compute.threads_per_run, &mut hook)?;
    hook.bar.finish();
    record.status = if outcome.diverged {
        RunStatus::Diverged
    } else if outcome.interrupted {
        RunStatus::Interrupted
    } else {
        RunStatus::Finished
    };
    record.finished_at = Some(now_rfc3339());
    record.seconds = Some(t0.elapsed().as_secs_f64());
    record.epochs_done = outcome.rows.len();
    record.final_epoch = outcome.rows.last().cloned();
    write_json(&out.join("run.json"), &record)?;
    let metrics = out.join("metrics.csv");
    let Some(last) = outcome.rows.last() else {
        bail!(
            "interrupted before the first epoch ended; nothing was measured ({} records the run)",
            out.join("run.json").display()
        );
    };
    match record.status {
        RunStatus::Diverged => bail!(
            "training diverged at epoch {} (loss {}); metrics so far are in {}. Try a smaller --lr \
             (now {}) or more dropout",
            last.epoch,
            last.train_loss,
            metrics.display(),
            cfg.lr
        ),
        RunStatus::Interrupted => bail!(
            "interrupted after epoch {} of {}; its metrics are in {}",
            last.epoch,
            cfg.epochs,
            metrics.display()
        ),
        _ => {}
    }
    let median = median(outcome.rows.iter().map(|r| r.train_seconds).collect());
    eprintln!(
        "{} epochs: train loss {:.4}, train acc {:.4}, test acc {:.4}; median {:.2} s per training epoch; wrote {}",
        last.epoch,
        last.train_loss,
        last.train_acc,
        last.test_acc,
        median,
        out.display()
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
