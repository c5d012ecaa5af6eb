//! Where and how to compute: the device, and how the CPU's threads are shared
//! between the runs of a command. Resolved once, in `main`, and passed down
//! as a [`Compute`] value.

use std::str::FromStr;

use anyhow::{bail, Result};
use candle_core::Device;
use serde::Serialize;

/// Which device trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Cpu,
    Cuda,
}

impl FromStr for DeviceKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" => Ok(DeviceKind::Cuda),
            _ => Err(format!("unknown device `{s}`; use cpu or cuda")),
        }
    }
}

/// What the user asked for; [`Compute::single`] and [`Compute::sweep`] fill in the defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct ComputeRequest {
    pub device: DeviceKind,
    /// CPU threads in total.
    pub threads: Option<usize>,
    /// Runs trained at once (sweeps).
    pub jobs: Option<usize>,
    /// The most runs of one seed trained together by each job (sweeps).
    pub batch_runs: Option<usize>,
}

/// The resolved compute settings of one command.
#[derive(Debug, Clone)]
pub struct Compute {
    pub dev: Device,
    /// CPU threads each run uses. A training step splits its batch in two
    /// halves (see `crate::train`); with two or more threads they run at once.
    pub threads_per_run: usize,
    /// Runs trained at once.
    pub jobs: usize,
    /// The most runs of one seed a job trains together as one stack
    /// ([`crate::train`]; 1 trains each run alone).
    pub batch_runs: usize,
}

/// Stack size when none is asked for: one, each run alone. On the 2-core
/// CPU, stacks train a sweep no faster than runs one by one
/// (docs/performance.md), while a kill -9 loses every run of the stacks in
/// progress; on CUDA no measurement exists yet. `--batch-runs R` turns
/// stacks on, on either device.
const DEFAULT_BATCH_RUNS: usize = 1;

impl Compute {
    /// For one run (`drop-exp run`): `threads` for that run, by default two
    /// (one if the machine has a single core).
    ///
    /// Why two: a step's two half-batches then run at once, which is where a
    /// second thread pays (more threads only go to each half's matrix
    /// products, whose multi-threading gains little at these sizes). Measured
    /// by an earlier session on this project's 2-core machine: 0.50 s per
    /// epoch with two threads against 0.73 s with one, and 0.77 s with two
    /// when another process holds a core (docs/performance.md has the later
    /// side-by-side figures).
    pub fn single(req: ComputeRequest) -> Result<Self> {
        let total = req
            .threads
            .unwrap_or_else(|| candle_core::utils::get_num_threads().min(2))
            .max(1);
        Ok(Self {
            dev: open(req.device)?,
            threads_per_run: total,
            jobs: 1,
            batch_runs: 1,
        })
    }

    /// For a sweep: `threads` in total (by default the number of cores),
    /// split between `jobs` concurrent runs (by default one per thread on
    /// CPU, one on CUDA). Two 1-thread runs side by side train twice as many
    /// epochs per minute here as one 2-thread run.
    pub fn sweep(req: ComputeRequest) -> Result<Self> {
        let total = req
            .threads
            .unwrap_or_else(candle_core::utils::get_num_threads)
            .max(1);
        let dev = open(req.device)?;
        let jobs = req
            .jobs
            .unwrap_or(if dev.is_cuda() { 1 } else { total })
            .max(1);
        let batch_runs = req.batch_runs.unwrap_or(DEFAULT_BATCH_RUNS).max(1);
        Ok(Self {
            dev,
            threads_per_run: (total / jobs).max(1),
            jobs,
            batch_runs,
        })
    }

    /// Applies the settings that are process-wide by nature; called once by
    /// `main`, before any other thread exists. candle sizes each matrix
    /// product's thread pool from RAYON_NUM_THREADS, and nothing else: each
    /// half-batch's products get half of a run's threads.
    pub fn apply_process_wide(&self) {
        std::env::set_var(
            "RAYON_NUM_THREADS",
            (self.threads_per_run / 2).max(1).to_string(),
        );
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads_per_run * self.jobs)
            .build_global();
    }

    /// A name for the device as recorded in outputs.
    pub fn describe(&self) -> &'static str {
        if self.dev.is_cuda() {
            "cuda"
        } else {
            "cpu"
        }
    }
}

fn open(kind: DeviceKind) -> Result<Device> {
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda => {
            if !candle_core::utils::cuda_is_available() {
                bail!(
                    "--device cuda: this drop-exp was built without CUDA support; rebuild with \
                     `cargo build --release --features cuda` (see scripts/build-cuda), or use --device cpu"
                );
            }
            match Device::new_cuda(0) {
                Ok(d) => Ok(d),
                Err(e) => bail!(
                    "--device cuda: no usable CUDA GPU ({e}); check the driver with nvidia-smi, or use --device cpu"
                ),
            }
        }
    }
}
