//! The command line: the only module that knows clap. It parses and
//! validates every flag (at parse time, with a message naming the flag), and
//! turns what was given into the plain values the rest of drop-exp takes.
//!
//! The exercises' subcommands are generated from the registry
//! ([`crate::experiments::EXERCISES`]): their order, help, examples and own
//! flags all come from each exercise's spec.

use std::path::PathBuf;

use anyhow::Result;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

mod exercise;
pub mod flags;
mod values;

use exercise::{defaults_in_help, exercise_command, exercise_invocation};
use values::{
    device_parser, parse_nonnegative, parse_positive, parse_prob, parse_reg, parse_setting,
};

use crate::check::CheckOptions;
use crate::config::{self, TrainConfig};
use crate::data::{DataOptions, TEST_SIZE, TRAIN_SIZE};
use crate::device::{ComputeRequest, DeviceKind};
use crate::experiments::driver::SweepPlan;
use crate::experiments::settings::Layer;
use crate::experiments::{Experiment, EXERCISES};
use crate::regularizers::RegKind;
use crate::report::ReportOptions;
use crate::run::RunOptions;
use crate::sweep::Shard;
use flags::{FlagSetter, NumberRange, RUN_FLAGS};

/// The top level; the exercises' subcommands are added by [`command`].
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
struct Cli {
    #[command(subcommand)]
    tool: Tool,
}

/// The subcommands that are not exercises, listed after them.
#[derive(Debug, Subcommand)]
enum Tool {
    /// Run every exercise (1-7) and write REPORT.md with all the answers.
    #[command(
        display_order = 20,
        after_help = "Examples:\n  drop-exp report            # the full defaults; writes results/REPORT.md\n  \
                      drop-exp report --quick    # minutes, on subsets; writes results/quick/REPORT.md"
    )]
    Report(ReportArgs),
    /// Train one model and write its per-epoch metrics (metrics.csv, run.json).
    #[command(
        display_order = 21,
        after_help = "Examples:\n  drop-exp run\n  drop-exp run --p1 0.5 --p2 0.2 --seed 3 --out results/swapped\n  \
                      drop-exp run --epochs 1 --train-subset 5000 --test-subset 1000\n  \
                      drop-exp run --set 'layers = [{ kind = \"gaussian-add\", p = 0.3 }, { kind = \"dropout\", p = 0.5 }]'"
    )]
    Run(RunArgs),
    /// Combine the output folders of a sharded sweep (`--shard K/N`).
    #[command(
        display_order = 22,
        after_help = "Example:\n  drop-exp compare-wd --shard 1/2 --out a & drop-exp compare-wd --shard 2/2 --out b; \
                      drop-exp merge --out results/compare-wd a b"
    )]
    Merge(MergeArgs),
    /// Compare accuracy CSVs (summary.csv or runs.csv) against a baseline; exit 1 on regression.
    #[command(
        display_order = 23,
        after_help = "Exit status: 0 nothing regressed, 1 something regressed, 2 unusable input.\n\n\
                      Example:\n  drop-exp check --baseline results/baseline/summary.csv --current target/ci/summary.csv"
    )]
    Check(CheckArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    #[command(
        display_order = 24,
        after_help = "Examples:\n  drop-exp completions bash > ~/.local/share/bash-completion/completions/drop-exp\n  \
                      drop-exp completions zsh > ~/.zfunc/_drop-exp      # with fpath+=~/.zfunc in ~/.zshrc\n  \
                      drop-exp completions fish > ~/.config/fish/completions/drop-exp.fish"
    )]
    Completions(CompletionsArgs),
    /// List every regulariser kind: its formula, its source, its parameters
    /// and the gradient paths that train it.
    #[command(
        display_order = 25,
        after_help = "Example:\n  drop-exp kinds\n  \
                      drop-exp run --set 'layers = [{ kind = \"concrete-dropout\", p = 0.2, temperature = 0.1 }, { kind = \"dropout\", p = 0.5 }]'"
    )]
    Kinds,
}

#[derive(Debug, Clone, Args)]
struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
struct CheckArgs {
    /// The reference CSV (summary.csv or runs.csv).
    #[arg(long, value_name = "BASE.csv")]
    baseline: PathBuf,
    /// The CSV to check (same experiment and preset).
    #[arg(long, value_name = "CUR.csv")]
    current: PathBuf,
    /// Tolerance: allowed difference = max(K * standard error of the difference, floor).
    #[arg(long, default_value_t = 3.0, value_parser = parse_positive, allow_negative_numbers = true)]
    k: f64,
    /// Smallest allowed accuracy difference (fraction; 0.005 = half a point).
    #[arg(long, default_value_t = 0.005, value_parser = parse_nonnegative, allow_negative_numbers = true)]
    acc_floor: f64,
    /// Smallest allowed train-loss difference.
    #[arg(long, default_value_t = 0.01, value_parser = parse_nonnegative, allow_negative_numbers = true)]
    loss_floor: f64,
    /// Also compare final-epoch test accuracy (besides the last-3-epoch mean and train loss).
    #[arg(long)]
    final_epoch: bool,
    /// Also fail when a quantity improves beyond the tolerance (to pin exact behaviour).
    #[arg(long)]
    improvements_fail: bool,
    /// Write the comparison as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

// The flags every exercise (sweep) takes. (A plain comment: a doc comment
// here would become every exercise's `about`.)
#[derive(Debug, Clone, Args)]
struct SweepArgs {
    /// Number of seeds (seeds 0..N-1).
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    seeds: Option<u32>,
    /// Epochs per run [default: from the experiment's settings].
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    epochs: Option<u32>,
    /// SGD learning rate [default: from the experiment's settings]. Exercises that sweep
    /// learning rates (`lrs`: longer, compare-wd) then train at this rate only.
    #[arg(long, allow_hyphen_values = true, value_parser = parse_positive)]
    lr: Option<f64>,
    /// Mini-batch size [default: from the experiment's settings].
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: Option<u32>,
    /// Gradient path of every run: auto (the hand-written backward where it
    /// covers the regularisers, else candle's autograd), hand, or autograd
    /// [default: auto].
    #[arg(long, value_parser = ["auto", "hand", "autograd"])]
    backward: Option<String>,
    /// Equivalence margin in points of accuracy: differences shown to lie within
    /// +/- this are called equivalent.
    #[arg(long, value_name = "POINTS", allow_hyphen_values = true, value_parser = parse_positive)]
    margin: Option<f64>,
    /// Training images held out for validation, on which each run's epoch is
    /// selected; 0 turns the split off.
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(0..TRAIN_SIZE as i64))]
    validation: Option<u32>,
    /// Epochs averaged by the end-of-training metric (mean test accuracy of the
    /// last K epochs) [default: a fifth of --epochs].
    #[arg(long, value_name = "K", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    end_epochs: Option<u32>,
    /// After the first --seeds seeds, train once the seeds that give each
    /// undecided primary contrast 80% power at its smallest effect of interest
    /// (for its configurations only, at most --max-seeds). A plan made once
    /// from the first seeds' spread, never repeated until a verdict appears.
    #[arg(long)]
    plan_seeds: bool,
    /// The most seeds --plan-seeds may take [default: --seeds, i.e. no extra seeds].
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_seeds: Option<u32>,
    /// TOML file overriding the experiment's settings (see experiments/<name>.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Output folder [default: results/<experiment>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    jobs: JobArgs,
    /// Run only the K-th of N slices of the run list (for job arrays); combine with `merge`.
    #[arg(long, value_name = "K/N")]
    shard: Option<Shard>,
    /// Redo runs already stored in the output folder.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    compute: ComputeArgs,
}

#[derive(Debug, Clone, Args)]
struct ReportArgs {
    /// A quick version (subsets, few epochs and seeds), labelled as such in the report.
    #[arg(long)]
    quick: bool,
    /// Folder for the experiments' outputs and REPORT.md [default: results, or results/quick].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    jobs: JobArgs,
    /// Training images held out for validation in every exercise; 0 turns the
    /// split off.
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(0..TRAIN_SIZE as i64))]
    validation: Option<u32>,
    /// Redo runs already stored.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    compute: ComputeArgs,
}

#[derive(Debug, Clone, Args)]
struct MergeArgs {
    /// Folder to write the merged outputs to.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Output folders of the shards.
    #[arg(required = true, value_name = "FOLDER")]
    folders: Vec<PathBuf>,
}

/// How a sweep spreads its runs: shared by the exercises and `report`.
#[derive(Debug, Clone, Args)]
struct JobArgs {
    /// Runs trained at once, the threads split between them [default: the number of threads,
    /// one each, which measured here trains twice as many runs per minute as one 2-thread
    /// run]. Results do not depend on it.
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// The most runs of one seed each job trains together as one stack,
    /// sharing each batch, with every product batched over the stack (CPU or
    /// CUDA) [default: 1, each run alone]. Results do not depend on it.
    #[arg(long, value_name = "R", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u16).range(1..))]
    batch_runs: Option<u16>,
}

/// Where and how to compute: shared by every training command.
#[derive(Debug, Clone, Args)]
struct ComputeArgs {
    /// Device to train on. `cuda` needs a build with `--features cuda`.
    #[arg(long, default_value = "cpu",
          value_parser = device_parser())]
    device: DeviceKind,
    /// CPU threads [default: for `run`, 2 (each batch is computed as two
    /// halves, one per thread) or 1 on a single-core machine; for sweeps, the
    /// number of physical cores, one per concurrent run]. Results do not
    /// depend on it.
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Directory with the four Fashion-MNIST IDX files (gzipped or not).
    /// Searched first; then $DROP_EXP_DATA, ./data/fashion-mnist, the user
    /// cache directory and /usr/share/datasets/fashion-mnist.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Train on the first N training examples only (quick runs).
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=TRAIN_SIZE as i64))]
    train_subset: Option<u32>,
    /// Evaluate on the first N test examples only (quick runs).
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=TEST_SIZE as i64))]
    test_subset: Option<u32>,
    /// Use a tiny generated dataset instead of Fashion-MNIST (for tests).
    #[arg(long, hide = true)]
    synthetic: bool,
    /// Accept IDX files whose content is not the pinned Fashion-MNIST (for
    /// tests on files made for them); recorded in run.json and sweep.json.
    #[arg(long, hide = true)]
    unpinned_data: bool,
}

impl ComputeArgs {
    fn request(&self, jobs: Option<&JobArgs>) -> ComputeRequest {
        ComputeRequest {
            device: self.device,
            threads: self.threads.map(usize::from),
            jobs: jobs.and_then(|j| j.jobs).map(usize::from),
            batch_runs: jobs.and_then(|j| j.batch_runs).map(usize::from),
        }
    }
    /// Where the data is; subsets are left to the caller.
    fn data_source(&self) -> DataOptions {
        DataOptions {
            data_dir: self.data_dir.clone(),
            synthetic: self.synthetic,
            unpinned: self.unpinned_data,
            ..Default::default()
        }
    }
}

/// `drop-exp run`'s flags besides the configuration keys of
/// [`RUN_FLAGS`], which [`command`] adds.
#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// TOML file with configuration keys (those of experiments/defaults.toml but `seeds`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// One configuration key as TOML, e.g. `lr = 0.1` (repeatable; after --config).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_setting)]
    set: Vec<toml::Table>,
    /// Seed for weight init, batch order and dropout masks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory for metrics.csv and run.json.
    #[arg(long, value_name = "DIR", default_value = "results/run")]
    out: PathBuf,
    #[command(flatten)]
    compute: ComputeArgs,
}

/// What the command line asks for, as plain values.
pub enum Invocation {
    Run {
        opts: RunOptions,
        compute: ComputeRequest,
    },
    Exercise {
        exp: Box<dyn Experiment>,
        plan: SweepPlan,
        compute: ComputeRequest,
        data: DataOptions,
    },
    Report {
        opts: ReportOptions,
        compute: ComputeRequest,
    },
    Merge {
        out: PathBuf,
        folders: Vec<PathBuf>,
    },
    Check(CheckOptions),
    /// Print the completion script for this shell.
    Completions(clap_complete::Shell),
    /// Print the regulariser kinds.
    Kinds,
}

impl Invocation {
    /// Where an invocation that loads data looks for it.
    pub fn data_mut(&mut self) -> Option<&mut DataOptions> {
        match self {
            Invocation::Run { opts, .. } => Some(&mut opts.data),
            Invocation::Exercise { data, .. } => Some(data),
            Invocation::Report { opts, .. } => Some(&mut opts.data),
            Invocation::Merge { .. }
            | Invocation::Check(_)
            | Invocation::Completions(_)
            | Invocation::Kinds => None,
        }
    }
}

/// The whole command: the tools from `Tool` and one subcommand per
/// exercise, in the registry's order, before them.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for (i, spec) in EXERCISES.iter().enumerate() {
        cmd = cmd.subcommand(exercise_command(spec).display_order(i + 1));
    }
    cmd = cmd.mut_subcommand("report", defaults_in_help);
    cmd.mut_subcommand("run", |mut run| {
        // The configuration's flags first, then the others in their order.
        let others: Vec<clap::Id> = run.get_arguments().map(|a| a.get_id().clone()).collect();
        for (k, id) in others.into_iter().enumerate() {
            run = run.mut_arg(id, |a| a.display_order(RUN_FLAGS.len() + k));
        }
        let book = TrainConfig::default();
        let flags = RUN_FLAGS.iter().enumerate().map(|(i, f)| {
            let arg = clap::Arg::new(f.long)
                .long(f.long)
                .value_name(f.long.to_uppercase().replace('-', "_"))
                .display_order(i)
                .help(format!(
                    "{} [default: {}, from experiments/defaults.toml]",
                    f.help,
                    (f.show)(&book)
                ));
            match f.setter {
                FlagSetter::Reg(_) => arg.value_parser(parse_reg),
                FlagSetter::Number(range, _) => {
                    arg.allow_hyphen_values(true).value_parser(match range {
                        NumberRange::Probability => parse_prob,
                        NumberRange::Positive => parse_positive,
                        NumberRange::NonNegative => parse_nonnegative,
                    })
                }
                FlagSetter::Count(_) => arg
                    .allow_negative_numbers(true)
                    .value_parser(clap::value_parser!(u32).range(1..)),
                FlagSetter::Backward(_) => arg.value_parser(
                    <clap::builder::PossibleValuesParser as clap::builder::TypedValueParser>::map(
                        clap::builder::PossibleValuesParser::new(
                            config::Backward::ALL.map(config::Backward::name),
                        ),
                        |s| s.parse::<config::Backward>().expect("a listed value"),
                    ),
                ),
            }
        });
        run.args(flags)
    })
}

/// Parses the process's arguments; exits with status 2 and clap's message on
/// invalid flags.
pub fn parse() -> ArgMatches {
    command().get_matches()
}

/// Turns parsed flags into an [`Invocation`], reading settings files.
pub fn invocation(matches: &ArgMatches) -> Result<Invocation> {
    let (name, sub) = matches.subcommand().expect("a subcommand is required");
    if let Some(spec) = crate::experiments::registry::find(name) {
        return exercise_invocation(spec, sub);
    }
    let cli = Cli::from_arg_matches(matches).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(match cli.tool {
        Tool::Run(a) => Invocation::Run {
            compute: a.compute.request(None),
            opts: run_options(a, sub)?,
        },
        Tool::Report(a) => Invocation::Report {
            compute: a.compute.request(Some(&a.jobs)),
            opts: ReportOptions {
                quick: a.quick,
                out: a.out,
                force: a.force,
                data: a.compute.data_source(),
                train_subset: a.compute.train_subset,
                test_subset: a.compute.test_subset,
                validation: a.validation,
            },
        },
        Tool::Completions(a) => Invocation::Completions(a.shell),
        Tool::Kinds => Invocation::Kinds,
        Tool::Merge(a) => Invocation::Merge {
            out: a.out,
            folders: a.folders,
        },
        Tool::Check(a) => Invocation::Check(CheckOptions {
            baseline: a.baseline,
            current: a.current,
            tolerance: crate::check::Tolerance {
                k: a.k,
                acc_floor: a.acc_floor,
                loss_floor: a.loss_floor,
            },
            final_epoch: a.final_epoch,
            improvements_fail: a.improvements_fail,
            json: a.json,
        }),
    })
}

/// The configuration of `drop-exp run`: the defaults, then `--config`, then
/// each `--set`, then the flags of [`RUN_FLAGS`] (read from `m`).
fn run_options(a: RunArgs, m: &ArgMatches) -> Result<RunOptions> {
    let mut table = config::defaults_table();
    table.retain(|k, _| TrainConfig::is_field(k));
    let mut layers = Vec::new();
    if let Some(path) = &a.config {
        layers.push(Layer::file(path)?);
    }
    layers.extend(a.set.into_iter().map(|t| Layer::new("--set", t)));
    let keys: Vec<String> = table.keys().cloned().collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut cfg: TrainConfig =
        crate::layers::resolve(table, layers, &TrainConfig::is_field, &keys, |t| {
            Ok(t.try_into()?)
        })?;
    for f in RUN_FLAGS {
        match f.setter {
            FlagSetter::Reg(set) => m.get_one::<RegKind>(f.long).map(|&k| set(&mut cfg, k)),
            FlagSetter::Number(_, set) => m.get_one::<f64>(f.long).map(|&v| set(&mut cfg, v)),
            FlagSetter::Count(set) => m.get_one::<u32>(f.long).map(|&n| set(&mut cfg, n as usize)),
            FlagSetter::Backward(set) => m
                .get_one::<config::Backward>(f.long)
                .map(|&b| set(&mut cfg, b)),
        };
    }
    cfg.validate()?;
    Ok(RunOptions {
        config: cfg,
        seed: a.seed,
        out: a.out,
        data: DataOptions {
            train_subset: a.compute.train_subset.map(|n| n as usize),
            test_subset: a.compute.test_subset.map(|n| n as usize),
            ..a.compute.data_source()
        },
    })
}

#[cfg(test)]
mod tests;
