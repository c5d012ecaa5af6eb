use std::process::ExitCode;

use clap::Parser;
use drop_exp::cli::{Cli, Command};
use drop_exp::experiments::{self, compare_wd, longer, swap_rates};

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Run(args) => drop_exp::run::cmd_run(args),
        Command::SwapRates(a) => {
            let s = &a.sweep;
            let (mut common, mut settings) = experiments::load_settings::<swap_rates::Settings>(
                "swap-rates",
                swap_rates::DEFAULTS,
                s.config.as_deref(),
            )?;
            experiments::apply_flags(&mut common, s)?;
            if let Some(g) = &a.grid {
                settings.grid = Some(g.clone());
            }
            experiments::run(&swap_rates::SwapRates::new(common, settings), s)
        }
        Command::Longer(a) => {
            let s = &a.sweep;
            let (mut common, settings) = experiments::load_settings::<longer::Settings>(
                "longer",
                longer::DEFAULTS,
                s.config.as_deref(),
            )?;
            experiments::apply_flags(&mut common, s)?;
            experiments::run(&longer::Longer::new(common, settings), s)
        }
        Command::CompareWd(a) => {
            let s = &a.sweep;
            let (mut common, mut settings) = experiments::load_settings::<compare_wd::Settings>(
                "compare-wd",
                compare_wd::DEFAULTS,
                s.config.as_deref(),
            )?;
            experiments::apply_flags(&mut common, s)?;
            if let Some(w) = &a.weight_decays {
                settings.weight_decays = w.clone();
            }
            experiments::run(&compare_wd::CompareWd::new(common, settings), s)
        }
        Command::Merge(a) => experiments::merge(&a.out, &a.folders),
        Command::Check(_) => unreachable!("handled in main"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Check(args) = &cli.command {
        // 0: nothing regressed, 1: regression, 2: unusable input.
        return match drop_exp::check::cmd_check(args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("Error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
