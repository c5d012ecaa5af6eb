//! Choosing the compute device and the CPU thread count.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Result};
use candle_core::Device;

use crate::cli::{ComputeArgs, DeviceKind};

static RUN_THREADS: AtomicUsize = AtomicUsize::new(1);

/// CPU threads each run uses, as set by [`setup`] or [`setup_jobs`].
pub fn threads() -> usize {
    RUN_THREADS.load(Ordering::Relaxed)
}

/// Gives each run `n` threads. A training step splits its batch in two
/// halves (see `crate::step`); with two or more threads they run at once and
/// each half's products get half of the threads. candle reads
/// RAYON_NUM_THREADS on each product (and for its elementwise pool); this
/// runs before any other thread exists.
fn set_threads(n: usize) {
    let n = n.max(1);
    RUN_THREADS.store(n, Ordering::Relaxed);
    std::env::set_var("RAYON_NUM_THREADS", (n / 2).max(1).to_string());
}

/// Opens the device for one run with `--threads` threads, by default two
/// (one if the machine has a single core).
///
/// Why two: a step's two half-batches then run at once, which is where a
/// second thread pays (more threads only go to each half's matrix products,
/// whose multi-threading gains little at these sizes). Measured on this
/// project's 2-core machine (README, "Speed"): 0.50 s per epoch with two
/// threads against 0.73 s with one, and 0.77 s with two when another process
/// holds a core.
pub fn setup(args: &ComputeArgs) -> Result<Device> {
    let total = args
        .threads
        .map_or_else(|| candle_core::utils::get_num_threads().min(2), usize::from)
        .max(1);
    set_threads(total);
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(total)
        .build_global();
    open(args.device)
}

static JOBS: AtomicUsize = AtomicUsize::new(1);

/// Concurrent runs of a sweep, as set by [`setup_jobs`].
pub fn jobs() -> usize {
    JOBS.load(Ordering::Relaxed)
}

/// Opens the device for a sweep: `--threads` in total (by default the
/// number of physical cores), split between `jobs` concurrent runs (by
/// default one per thread on CPU, one on CUDA). Two 1-thread runs side by
/// side train twice as many epochs per minute here as one 2-thread run.
pub fn setup_jobs(args: &ComputeArgs, jobs: Option<usize>) -> Result<Device> {
    let total = args
        .threads
        .map_or_else(candle_core::utils::get_num_threads, usize::from)
        .max(1);
    let dev = open(args.device)?;
    let jobs = jobs.unwrap_or(if dev.is_cuda() { 1 } else { total }).max(1);
    JOBS.store(jobs, Ordering::Relaxed);
    set_threads((total / jobs).max(1));
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(total)
        .build_global();
    Ok(dev)
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

/// A name for the device as recorded in outputs.
pub fn describe(dev: &Device) -> &'static str {
    if dev.is_cuda() {
        "cuda"
    } else {
        "cpu"
    }
}
