//! drop-exp: measured, reproducible answers to the exercises of the Dropout
//! section of Dive into Deep Learning, on candle.
//!
//! Data flows one way: flags + settings files ([`cli`], [`config`]) ->
//! runs ([`train`], [`sweep`]) -> rows ([`analysis`]) -> CSV, plots,
//! verdicts ([`output`], [`experiments`], [`report`]). Only [`cli`] knows the
//! command line.

pub mod analysis;
pub mod calibration;
pub mod check;
pub mod cli;
pub mod config;
pub mod contrast;
pub mod data;
pub mod device;
pub mod experiments;
pub mod layers;
pub mod mc_dropout;
pub mod model;
pub mod output;
pub mod probes;
pub mod product;
pub mod progress;
pub mod record;
pub mod regularizers;
pub mod report;
pub mod rng;
pub mod run;
pub mod stats;
pub mod sweep;
pub mod train;

/// The version and commit this binary was built from.
fn provenance() -> (&'static str, &'static str) {
    (env!("CARGO_PKG_VERSION"), env!("DROP_EXP_GIT_COMMIT"))
}
