use std::process::ExitCode;

use clap::Parser;
use drop_exp::cli::{Cli, Command};
use drop_exp::experiments;

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Run(args) => drop_exp::run::cmd_run(args),
        Command::Merge(a) => experiments::merge(&a.out, &a.folders),
        Command::Report(a) => drop_exp::report::cmd_report(a),
        Command::Check(_) => unreachable!("handled in main"),
        other => {
            let (exp, sweep) = experiments::from_command(other)?;
            experiments::run(exp.as_ref(), sweep)
        }
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
