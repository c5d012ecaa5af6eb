//! Parsing and validation of the command line.

use super::*;

#[test]
fn cli_is_well_formed() {
    command().debug_assert();
}

fn parse(args: &[&str]) -> Result<ArgMatches, clap::Error> {
    command().try_get_matches_from(std::iter::once("drop-exp").chain(args.iter().copied()))
}

fn run_config(args: &[&str]) -> TrainConfig {
    let m = parse(args).unwrap();
    match invocation(&m).unwrap() {
        Invocation::Run { opts, .. } => opts.config,
        _ => panic!("not a run"),
    }
}

#[test]
fn rejects_invalid_values_naming_the_flag() {
    for (args, flag) in [
        (vec!["run", "--p1", "1.5"], "--p1"),
        (vec!["run", "--p2", "NaN"], "--p2"),
        (vec!["run", "--p1=-0.1"], "--p1"),
        // A leading minus is a value, rejected by range, not a flag.
        (vec!["run", "--p2", "-0.1"], "--p2"),
        (vec!["run", "--lr", "0"], "--lr"),
        (vec!["run", "--lr=-1"], "--lr"),
        (vec!["run", "--lr", "-1"], "--lr"),
        (vec!["run", "--batch-size", "0"], "--batch-size"),
        (vec!["run", "--epochs", "0"], "--epochs"),
        (vec!["run", "--epochs", "-3"], "--epochs"),
        (vec!["run", "--train-subset", "60001"], "--train-subset"),
        (vec!["run", "--test-subset", "10001"], "--test-subset"),
        (vec!["run", "--weight-decay=-1"], "--weight-decay"),
        (vec!["run", "--weight-decay", "-1e-4"], "--weight-decay"),
        (vec!["run", "--reg", "magic"], "--reg"),
        (vec!["run", "--set", "lr"], "--set"),
        (vec!["swap-rates", "--grid", "0,1.5"], "--grid"),
        (vec!["swap-rates", "--grid", "-0.2,0.5"], "--grid"),
        (vec!["swap-rates", "--seeds", "0"], "--seeds"),
        (vec!["longer", "--shard", "3/2"], "--shard"),
        (vec!["longer", "--jobs", "0"], "--jobs"),
        (vec!["compare-wd", "--weight-decays=-1"], "--weight-decays"),
        (
            vec!["compare-wd", "--weight-decays", "-1"],
            "--weight-decays",
        ),
        (
            vec!["compare-wd", "--weight-decays", "-1e-4,0"],
            "--weight-decays",
        ),
    ] {
        let err = parse(&args).unwrap_err().to_string();
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
    }
}

#[test]
fn run_flags_override_the_defaults_file() {
    assert_eq!(run_config(&["run"]), TrainConfig::default());
    let c = run_config(&["run", "--p1", "1", "--p2", "0", "--train-subset", "60000"]);
    assert_eq!(
        c.layers,
        [RegKind::Dropout.with(1.0), RegKind::Dropout.with(0.0)]
    );
    let c = run_config(&[
        "run",
        "--set",
        "layers = [{ kind = \"gaussian-add\", p = 0.3 }, { kind = \"dropout\", p = 0.5 }]",
        "--reg",
        "dropconnect",
        "--lr",
        "0.1",
    ]);
    assert_eq!(
        c.layers,
        [
            RegKind::Dropconnect.with(0.3),
            RegKind::Dropconnect.with(0.5)
        ]
    );
    assert_eq!(c.lr, 0.1);
    // Every flag of the table sets its key.
    let c = run_config(&[
        "run",
        "--reg",
        "gaussian-add",
        "--p1",
        "0.3",
        "--p2",
        "0.1",
        "--epochs",
        "2",
        "--lr",
        "0.2",
        "--batch-size",
        "64",
        "--weight-decay",
        "0.001",
        "--backward",
        "autograd",
    ]);
    let want = TrainConfig {
        layers: [
            RegKind::GaussianAdd.with(0.3),
            RegKind::GaussianAdd.with(0.1),
        ],
        weight_decay: 0.001,
        lr: 0.2,
        batch_size: 64,
        epochs: 2,
        backward: crate::config::Backward::Autograd,
    };
    assert_eq!(c, want);
}

/// Exercises 1-7 in order, then `report`, then the tools.
#[test]
fn help_lists_the_exercises_in_order() {
    let help = command().render_help().to_string();
    let pos = |name: &str| {
        help.find(&format!("\n  {name} "))
            .unwrap_or_else(|| panic!("{name} not in help:\n{help}"))
    };
    let order: Vec<usize> = EXERCISES
        .iter()
        .map(|s| s.name)
        .chain(["report", "run", "merge", "check"])
        .map(pos)
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{help}");
}

#[test]
fn help_shows_defaults_from_the_defaults_file() {
    let mut cmd = command();
    let help = cmd
        .find_subcommand_mut("run")
        .unwrap()
        .render_help()
        .to_string();
    // One line per flag of the table, each with the defaults file's value.
    let book = TrainConfig::default();
    for f in crate::cli::flags::RUN_FLAGS {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("--{} ", f.long)))
            .unwrap_or_else(|| panic!("--{} not in help:\n{help}", f.long));
        let default = format!(
            "[default: {}, from experiments/defaults.toml]",
            (f.show)(&book)
        );
        assert!(line.contains(&default), "{line}");
    }
    assert!(
        help.contains("--lr <LR>") && help.contains("[default: 0.5, from"),
        "{help}"
    );
}

/// The help's defaults are read from experiments/defaults.toml, not
/// restated: every exercise's and report's --seeds, --margin and
/// --validation show the file's values.
#[test]
fn help_defaults_follow_the_defaults_file() {
    let table = crate::config::defaults_table();
    let mut cmd = super::command();
    let names: Vec<String> = crate::experiments::EXERCISES
        .iter()
        .map(|s| s.name.to_string())
        .chain(["report".to_string()])
        .collect();
    for name in names {
        let sub = cmd.find_subcommand_mut(&name).unwrap();
        for key in ["seeds", "margin", "validation"] {
            let Some(arg) = sub.get_arguments().find(|a| a.get_id() == key) else {
                continue;
            };
            let help = arg.get_help().unwrap().to_string();
            let want = format!("[default: {}, from experiments/defaults.toml]", table[key]);
            assert!(help.ends_with(&want), "{name} --{key}: {help}");
        }
    }
}

/// Every shared flag that names a settings key reaches the settings: each
/// given here with a value other than its default, then read back from the
/// resolved exercise.
#[test]
fn shared_flags_reach_the_settings() {
    let m = parse(&[
        "swap-rates",
        "--seeds",
        "3",
        "--epochs",
        "2",
        "--lr",
        "0.1",
        "--batch-size",
        "64",
        "--backward",
        "hand",
        "--margin",
        "0.7",
        "--validation",
        "200",
        "--end-epochs",
        "1",
        "--plan-seeds",
        "--max-seeds",
        "4",
        "--train-subset",
        "500",
        "--test-subset",
        "100",
    ])
    .unwrap();
    let Invocation::Exercise { exp, .. } = invocation(&m).unwrap() else {
        panic!("not an exercise");
    };
    let c = exp.common();
    assert_eq!(
        (c.seeds, c.margin, c.validation, c.plan_seeds, c.max_seeds),
        (3, 0.7, 200, true, Some(4))
    );
    assert_eq!(
        (c.train_subset, c.test_subset, c.end_k()),
        (Some(500), Some(100), 1)
    );
    assert_eq!((c.base.epochs, c.base.lr, c.base.batch_size), (2, 0.1, 64));
    assert_eq!(c.base.backward, crate::config::Backward::Hand);
}
