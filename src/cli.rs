//! Command-line parsing. Every value is validated here, at parse time, with a
//! message naming the flag; later stages receive settings that are known good.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::data::{DataOptions, TEST_SIZE, TRAIN_SIZE};
use crate::regularizers::RegKind;
use crate::sweep::Shard;
use crate::train::TrainConfig;

#[derive(Debug, Parser)]
#[command(
    name = "drop-exp",
    version,
    about = "Measured answers to the dropout exercises of Dive into Deep Learning (section 4.6)",
    long_about = "Trains the book's MLP (784-256-256-10) on Fashion-MNIST with candle and answers \
                  each exercise of the Dropout section with a seeded, repeatable experiment that \
                  writes CSV files, plots and a verdict.",
    after_help = "Example:\n  drop-exp run --epochs 10 --seed 0 --out results/run"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one model and write its per-epoch metrics (metrics.csv, run.json).
    #[command(
        after_help = "Examples:\n  drop-exp run\n  drop-exp run --p1 0.5 --p2 0.2 --seed 3 --out results/swapped\n  \
                            drop-exp run --epochs 1 --train-subset 5000 --test-subset 1000"
    )]
    Run(RunArgs),
    /// Exercise 1: swap and vary the dropout rates of the two hidden layers.
    #[command(
        after_help = "Examples:\n  drop-exp swap-rates\n  drop-exp swap-rates --grid 0,0.2,0.5,0.8 --seeds 3\n  \
                            drop-exp swap-rates --epochs 3 --seeds 2 --train-subset 10000   # quick look"
    )]
    SwapRates(SwapRatesArgs),
    /// Exercise 2: train longer (default 50 epochs) with and without dropout.
    #[command(
        after_help = "Examples:\n  drop-exp longer\n  drop-exp longer --epochs 100 --jobs 2\n  \
                            drop-exp longer --epochs 15 --seeds 3 --train-subset 20000   # quick look"
    )]
    Longer(LongerArgs),
    /// Exercise 3: variance of the hidden activations over training, with and without dropout.
    #[command(after_help = "Examples:\n  drop-exp variance --plot\n  \
                            drop-exp variance --plot --epochs 3 --seeds 2 --train-subset 10000   # quick look")]
    Variance(VarianceArgs),
    /// Exercise 4: why dropout is off at test time: dropout left on, and MC dropout.
    #[command(
        after_help = "Examples:\n  drop-exp test-time\n  drop-exp test-time --seeds 3 --epochs 5"
    )]
    TestTime(LongerArgs),
    /// Exercise 6: DropConnect (dropout on weights) against dropout at equal rates.
    #[command(
        after_help = "Examples:\n  drop-exp dropconnect\n  drop-exp dropconnect --epochs 3 --seeds 2 --train-subset 10000"
    )]
    Dropconnect(LongerArgs),
    /// Exercise 7: other noise-injection kinds against the book's dropout.
    #[command(
        after_help = "Examples:\n  drop-exp noise\n  drop-exp noise --epochs 3 --seeds 2 --train-subset 10000"
    )]
    Noise(LongerArgs),
    /// Run every exercise (1-7) and write REPORT.md with all the answers.
    #[command(
        after_help = "Examples:\n  drop-exp report            # the full defaults; writes results/REPORT.md\n  \
                            drop-exp report --quick    # minutes, on subsets; writes results/quick/REPORT.md"
    )]
    Report(ReportArgs),
    /// Exercise 5: dropout against weight decay, and both together.
    #[command(
        after_help = "Examples:\n  drop-exp compare-wd --epochs 50\n  drop-exp compare-wd --weight-decays 0,1e-4,1e-3\n  \
                            drop-exp compare-wd --shard 1/2 --out part1   # then merge"
    )]
    CompareWd(CompareWdArgs),
    /// Combine the output folders of a sharded sweep (`--shard K/N`).
    #[command(
        after_help = "Example:\n  drop-exp compare-wd --shard 1/2 --out a & drop-exp compare-wd --shard 2/2 --out b; \
                            drop-exp merge --out results/compare-wd a b"
    )]
    Merge(MergeArgs),
    /// Compare accuracy CSVs (summary.csv or runs.csv) against a baseline; exit 1 on regression.
    #[command(
        after_help = "Exit status: 0 nothing regressed, 1 something regressed, 2 unusable input.\n\n\
                            Example:\n  drop-exp check --baseline results/baseline/summary.csv --current target/ci/summary.csv"
    )]
    Check(CheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The reference CSV (summary.csv or runs.csv).
    #[arg(long, value_name = "BASE.csv")]
    pub baseline: PathBuf,
    /// The CSV to check (same experiment and preset).
    #[arg(long, value_name = "CUR.csv")]
    pub current: PathBuf,
    /// Tolerance: allowed difference = max(K * standard error of the difference, floor).
    #[arg(long, default_value_t = 3.0, value_parser = parse_positive)]
    pub k: f64,
    /// Smallest allowed accuracy difference (fraction; 0.005 = half a point).
    #[arg(long, default_value_t = 0.005, value_parser = parse_nonnegative)]
    pub acc_floor: f64,
    /// Smallest allowed train-loss difference.
    #[arg(long, default_value_t = 0.01, value_parser = parse_nonnegative)]
    pub loss_floor: f64,
    /// Also compare final-epoch test accuracy (besides the last-3-epoch mean and train loss).
    #[arg(long)]
    pub final_epoch: bool,
    /// Also fail when a quantity improves beyond the tolerance (to pin exact behaviour).
    #[arg(long)]
    pub improvements_fail: bool,
    /// Write the comparison as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Flags every experiment (sweep) takes.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Number of seeds (seeds 0..N-1) [default: from the experiment's TOML, usually 5].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub seeds: Option<u32>,
    /// Epochs per run [default: from the experiment's TOML].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub epochs: Option<u32>,
    /// SGD learning rate [default: 0.5].
    #[arg(long, value_parser = parse_positive)]
    pub lr: Option<f64>,
    /// Mini-batch size [default: 256].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: Option<u32>,
    /// TOML file overriding the experiment's defaults (experiments/<name>.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output folder [default: results/<experiment>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Runs trained at once, the threads split between them [default: the number of threads,
    /// one each, which measured here trains twice as many runs per minute as one 2-thread
    /// run]. Results do not depend on it.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Run only the K-th of N slices of the run list (for job arrays); combine with `merge`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Redo runs already stored in the output folder.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SwapRatesArgs {
    /// Sweep every (p1, p2) pair of this comma-separated list of rates, and draw a heatmap.
    #[arg(long, value_delimiter = ',', value_parser = parse_prob, value_name = "P,P,...")]
    pub grid: Option<Vec<f64>>,
    #[command(flatten)]
    pub sweep: SweepArgs,
}

#[derive(Debug, Clone, Args)]
pub struct LongerArgs {
    #[command(flatten)]
    pub sweep: SweepArgs,
}

#[derive(Debug, Clone, Args)]
pub struct VarianceArgs {
    /// Also draw variance.png (a panel per hidden layer).
    #[arg(long)]
    pub plot: bool,
    #[command(flatten)]
    pub sweep: SweepArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A quick version (subsets, few epochs and seeds), labelled as such in the report.
    #[arg(long)]
    pub quick: bool,
    /// Folder for the experiments' outputs and REPORT.md [default: results, or results/quick].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Runs trained at once [default: one per thread].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Redo runs already stored.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CompareWdArgs {
    /// Comma-separated weight decays (lambda >= 0); 0 is always included as the baseline.
    #[arg(long, value_delimiter = ',', value_parser = parse_nonnegative, value_name = "L,L,...")]
    pub weight_decays: Option<Vec<f64>>,
    #[command(flatten)]
    pub sweep: SweepArgs,
}

#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// Folder to write the merged outputs to.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Output folders of the shards.
    #[arg(required = true, value_name = "FOLDER")]
    pub folders: Vec<PathBuf>,
}

/// Where and how to compute: shared by every training command.
#[derive(Debug, Clone, Args)]
pub struct ComputeArgs {
    /// Device to train on. `cuda` needs a build with `--features cuda`.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// CPU threads [default: for `run`, 2 (each batch is computed as two
    /// halves, one per thread) or 1 on a single-core machine; for sweeps, the
    /// number of physical cores, one per concurrent run]. Results do not
    /// depend on it.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Directory with the four Fashion-MNIST IDX files (gzipped or not).
    /// Searched first; then $DROP_EXP_DATA, ./data/fashion-mnist, the user
    /// cache directory and /usr/share/datasets/fashion-mnist.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Train on the first N training examples only (quick runs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=TRAIN_SIZE as i64))]
    pub train_subset: Option<u32>,
    /// Evaluate on the first N test examples only (quick runs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=TEST_SIZE as i64))]
    pub test_subset: Option<u32>,
    /// Use a tiny generated dataset instead of Fashion-MNIST (for tests).
    #[arg(long, hide = true)]
    pub synthetic: bool,
}

impl ComputeArgs {
    pub fn data_options(&self) -> DataOptions {
        DataOptions {
            data_dir: self.data_dir.clone(),
            train_subset: self.train_subset.map(|n| n as usize),
            test_subset: self.test_subset.map(|n| n as usize),
            synthetic: self.synthetic,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Cpu,
    Cuda,
}

/// Hyper-parameters of one training run.
#[derive(Debug, Clone, Args)]
pub struct HyperArgs {
    /// Regulariser after each hidden layer.
    #[arg(long, default_value = "dropout", value_parser = parse_reg)]
    pub reg: RegKind,
    /// Dropout probability (regulariser strength) after the first hidden layer, in [0, 1].
    #[arg(long, default_value_t = 0.2, value_parser = parse_prob)]
    pub p1: f64,
    /// Dropout probability (regulariser strength) after the second hidden layer, in [0, 1].
    #[arg(long, default_value_t = 0.5, value_parser = parse_prob)]
    pub p2: f64,
    /// Number of passes over the training set.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub epochs: u32,
    /// SGD learning rate (> 0).
    #[arg(long, default_value_t = 0.5, value_parser = parse_positive)]
    pub lr: f64,
    /// Mini-batch size; the last, partial batch of an epoch is kept.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// L2 penalty lambda on the weights (not biases): loss + lambda/2 * ||w||^2.
    #[arg(long, default_value_t = 0.0, value_parser = parse_nonnegative)]
    pub weight_decay: f64,
}

impl HyperArgs {
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            reg: self.reg,
            p1: self.p1,
            p2: self.p2,
            epochs: self.epochs as usize,
            lr: self.lr,
            batch_size: self.batch_size as usize,
            weight_decay: self.weight_decay,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub hyper: HyperArgs,
    /// Seed for weight init, batch order and dropout masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory for metrics.csv and run.json.
    #[arg(long, value_name = "DIR", default_value = "results/run")]
    pub out: PathBuf,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

fn parse_f64(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| format!("`{s}` is not a number"))
}

/// A probability in [0, 1] (NaN rejected).
pub fn parse_prob(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{s} is outside [0, 1]; a dropout probability must be between 0 and 1"
        ))
    }
}

/// A finite number > 0.
pub fn parse_positive(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{s} must be a finite number greater than 0"))
    }
}

/// A finite number >= 0.
pub fn parse_nonnegative(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{s} must be a finite number of at least 0"))
    }
}

fn parse_reg(s: &str) -> Result<RegKind, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("drop-exp").chain(args.iter().copied()))
    }

    #[test]
    fn rejects_invalid_values_naming_the_flag() {
        for (args, flag) in [
            (vec!["run", "--p1", "1.5"], "--p1"),
            (vec!["run", "--p2", "NaN"], "--p2"),
            (vec!["run", "--p1=-0.1"], "--p1"),
            (vec!["run", "--lr", "0"], "--lr"),
            (vec!["run", "--lr=-1"], "--lr"),
            (vec!["run", "--batch-size", "0"], "--batch-size"),
            (vec!["run", "--epochs", "0"], "--epochs"),
            (vec!["run", "--train-subset", "60001"], "--train-subset"),
            (vec!["run", "--test-subset", "10001"], "--test-subset"),
            (vec!["run", "--weight-decay=-1"], "--weight-decay"),
            (vec!["run", "--reg", "magic"], "--reg"),
            (vec!["swap-rates", "--grid", "0,1.5"], "--grid"),
            (vec!["swap-rates", "--seeds", "0"], "--seeds"),
            (vec!["longer", "--shard", "3/2"], "--shard"),
            (vec!["longer", "--jobs", "0"], "--jobs"),
            (vec!["compare-wd", "--weight-decays=-1"], "--weight-decays"),
        ] {
            let err = parse(&args).unwrap_err().to_string();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn accepts_edge_values() {
        let cli = parse(&["run", "--p1", "1", "--p2", "0", "--train-subset", "60000"]).unwrap();
        let Command::Run(a) = cli.command else {
            panic!()
        };
        assert_eq!((a.hyper.p1, a.hyper.p2), (1.0, 0.0));
        assert_eq!(
            a.hyper.config(),
            TrainConfig {
                p1: 1.0,
                p2: 0.0,
                ..TrainConfig::default()
            }
        );
    }
}
