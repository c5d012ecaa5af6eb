use std::process::ExitCode;

use drop_exp::cli::{self, Invocation};
use drop_exp::device::Compute;
use drop_exp::experiments::driver;

fn run(inv: Invocation) -> anyhow::Result<()> {
    match inv {
        Invocation::Run { opts, compute } => {
            let compute = Compute::single(compute)?;
            compute.apply_process_wide();
            drop_exp::run::cmd_run(&opts, &compute)
        }
        Invocation::Exercise {
            exp,
            plan,
            compute,
            data,
        } => {
            let compute = Compute::sweep(compute)?;
            compute.apply_process_wide();
            driver::run(exp.as_ref(), &plan, &compute, &data).map(|_| ())
        }
        Invocation::Report { opts, compute } => {
            let compute = Compute::sweep(compute)?;
            compute.apply_process_wide();
            drop_exp::report::cmd_report(&opts, &compute)
        }
        Invocation::Merge { out, folders } => drop_exp::experiments::merge::merge(&out, &folders),
        Invocation::Completions(shell) => {
            let mut cmd = cli::command();
            clap_complete::generate(shell, &mut cmd, "drop-exp", &mut std::io::stdout());
            Ok(())
        }
        Invocation::Kinds => {
            print!("{}", drop_exp::regularizers::kinds_table());
            Ok(())
        }
        Invocation::Check(_) => unreachable!("handled in main"),
    }
}

fn main() -> ExitCode {
    let matches = cli::parse();
    let mut inv = match cli::invocation(&matches) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // The environment is read here only, and passed down.
    if let Some(data) = inv.data_mut() {
        *data = std::mem::take(data).with_env(
            std::env::var_os("DROP_EXP_DATA"),
            std::env::var_os("DROP_EXP_NO_DOWNLOAD").is_some(),
        );
    }
    if let Invocation::Check(opts) = &inv {
        // 0: nothing regressed, 1: regression, 2: unusable input.
        return match drop_exp::check::cmd_check(opts) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("Error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    match run(inv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
