//! Choosing the compute device and the CPU thread count.

use anyhow::{bail, Result};
use candle_core::Device;

use crate::cli::{ComputeArgs, DeviceKind};

/// Threads candle's CPU matrix products will use.
pub fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// Sets the CPU thread count (before any tensor work) and opens the device.
pub fn setup(args: &ComputeArgs) -> Result<Device> {
    if let Some(n) = args.threads {
        // candle reads RAYON_NUM_THREADS on every matrix product; set it
        // before rayon's pool exists so both agree. Single-threaded here: no
        // other thread reads the environment yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads())
        .build_global();
    open(args.device)
}

static JOBS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// Concurrent runs of a sweep, as set by [`setup_jobs`].
pub fn jobs() -> usize {
    JOBS.load(std::sync::atomic::Ordering::Relaxed)
}

/// As [`setup`], then splits the threads between concurrent runs: `jobs`
/// of them, or by default one per thread (on CPU; one job on CUDA). Measured
/// on this project's 2-core machine, two 1-thread runs side by side train
/// twice as many epochs per minute as one 2-thread run, because only the
/// matrix products are multi-threaded.
pub fn setup_jobs(args: &ComputeArgs, jobs: Option<usize>) -> Result<Device> {
    let dev = setup(args)?;
    let jobs = jobs
        .unwrap_or(if dev.is_cuda() { 1 } else { threads() })
        .max(1);
    JOBS.store(jobs, std::sync::atomic::Ordering::Relaxed);
    if jobs > 1 {
        let per_job = (threads() / jobs).max(1);
        std::env::set_var("RAYON_NUM_THREADS", per_job.to_string());
    }
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
