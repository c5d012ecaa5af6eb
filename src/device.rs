//! Choosing the compute device and the CPU thread count.

use anyhow::{bail, Result};
use candle_core::Device;

use crate::cli::{ComputeArgs, DeviceKind};

/// Threads candle's CPU matrix products will use (per run).
pub fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// Sets the threads of every matrix product. candle reads RAYON_NUM_THREADS
/// on each product; this runs before any other thread exists.
fn set_threads(n: usize) {
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
}

/// Opens the device for one run with `--threads` threads, by default one.
///
/// Why one: measured on this project's 2-core machine (scripts/bench), a
/// second thread does not speed this model up (1.61 vs 1.60 s per epoch:
/// only the matrix products are multi-threaded, and they are small), while
/// its busy-waiting pool collapses when another process holds a core (3.7 to
/// 5.1 s per epoch instead of 1.7 s with one thread).
pub fn setup(args: &ComputeArgs) -> Result<Device> {
    let total = args.threads.map_or(1, usize::from);
    set_threads(total);
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(total)
        .build_global();
    open(args.device)
}

static JOBS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// Concurrent runs of a sweep, as set by [`setup_jobs`].
pub fn jobs() -> usize {
    JOBS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Opens the device for a sweep: `--threads` in total (by default the
/// number of physical cores), split between `jobs` concurrent runs (by
/// default one per thread on CPU, one on CUDA). Two 1-thread runs side by
/// side train twice as many epochs per minute here as one 2-thread run.
pub fn setup_jobs(args: &ComputeArgs, jobs: Option<usize>) -> Result<Device> {
    let total = args.threads.map_or_else(threads, usize::from).max(1);
    let dev = open(args.device)?;
    let jobs = jobs.unwrap_or(if dev.is_cuda() { 1 } else { total }).max(1);
    JOBS.store(jobs, std::sync::atomic::Ordering::Relaxed);
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
