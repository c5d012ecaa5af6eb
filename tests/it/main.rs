//! The integration tests: one binary, driving the real `drop-exp` binary
//! (and, for CUDA, the library). Most run on the hidden `--synthetic`
//! dataset (1200 tiny examples), so each takes about a second; a few use the
//! real Fashion-MNIST when it is installed (CI installs it).

mod check;
mod cli;
#[cfg(feature = "cuda")]
mod cuda;
mod props;
mod sweeps;
mod util;
