//! One subcommand per exercise: its clap command (its own flags, then the
//! shared ones, with the defaults' help read from experiments/defaults.toml)
//! and the settings layer its flags make.

use anyhow::Result;
use clap::{ArgAction, ArgMatches, Args, FromArgMatches};

use super::{parse_nonnegative, parse_prob, Invocation, SweepArgs};
use crate::config::{self, TrainConfig};
use crate::experiments::driver::SweepPlan;
use crate::experiments::settings::{self, Layer};
use crate::experiments::spec::{ExerciseSpec, FlagValue};

/// The help of the flags whose defaults `experiments/defaults.toml` sets,
/// ending with the value read from it (so the help follows the file).
pub(super) fn defaults_in_help(mut cmd: clap::Command) -> clap::Command {
    let table = config::defaults_table();
    for key in ["seeds", "margin", "validation"] {
        let Some(value) = table.get(key).cloned() else {
            continue;
        };
        if cmd.get_arguments().all(|a| a.get_id() != key) {
            continue;
        }
        cmd = cmd.mut_arg(key, |a| {
            let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            a.help(format!(
                "{help} [default: {value}, from experiments/defaults.toml]"
            ))
        });
    }
    cmd
}

pub(super) fn exercise_command(spec: &ExerciseSpec) -> clap::Command {
    let mut cmd = clap::Command::new(spec.name);
    for f in spec.flags {
        let arg = clap::Arg::new(f.long).long(f.long).help(f.help);
        let arg = match f.value {
            FlagValue::Switch => arg.action(ArgAction::SetTrue),
            FlagValue::Probabilities => arg
                .value_delimiter(',')
                .allow_hyphen_values(true)
                .value_name("P,P,...")
                .value_parser(parse_prob),
            FlagValue::NonNegatives => arg
                .value_delimiter(',')
                .allow_hyphen_values(true)
                .value_name("X,X,...")
                .value_parser(parse_nonnegative),
        };
        cmd = cmd.arg(arg);
    }
    // After the shared flags, so that their struct's doc never stands in
    // for the exercise's own text.
    defaults_in_help(SweepArgs::augment_args(cmd))
        .about(spec.about)
        .long_about(format!("{}\n\n{}", spec.about, spec.question))
        .after_help(format!("Examples:\n  {}", spec.examples))
}

/// The shared flags that name a settings key (`--end-epochs` sets
/// `end_epochs`), as given on the command line: one TOML layer, read off
/// the flags themselves, so no list of keys is kept here. Values were
/// checked by their parsers; each is written as TOML reads it (a number, a
/// switch's `true`), or as a string.
fn settings_flags(m: &ArgMatches, spec: &ExerciseSpec) -> toml::Table {
    let is_key = |id: &str| settings::Common::KEYS.contains(&id) || TrainConfig::is_field(id);
    let own: Vec<&str> = spec.flags.iter().map(|f| f.long).collect();
    let mut out = toml::Table::new();
    for id in m.ids().map(|i| i.as_str()) {
        let given = m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        if !given || !is_key(id) || own.contains(&id) {
            continue;
        }
        let Some(mut raw) = m.get_raw(id) else {
            continue;
        };
        let text = raw
            .next()
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        let value = toml::from_str::<toml::Table>(&format!("v = {text}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(text));
        out.insert(id.to_string(), value);
    }
    out
}

pub(super) fn exercise_invocation(spec: &ExerciseSpec, m: &ArgMatches) -> Result<Invocation> {
    let args = SweepArgs::from_arg_matches(m).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut layers = Vec::new();
    if let Some(path) = &args.config {
        layers.push(Layer::file(path)?);
    }
    let mut flags = settings_flags(m, spec);
    let mut set = |key: &str, v: Option<toml::Value>| {
        if let Some(v) = v {
            flags.insert(key.to_string(), v);
        }
    };
    for f in spec.flags {
        let value = match f.value {
            FlagValue::Switch => m.get_flag(f.long).then_some(toml::Value::Boolean(true)),
            FlagValue::Probabilities | FlagValue::NonNegatives => m
                .get_many::<f64>(f.long)
                .map(|vs| toml::Value::Array(vs.map(|&v| toml::Value::Float(v)).collect())),
        };
        set(f.key, value);
    }
    layers.push(Layer::new("the command-line flags", flags));
    Ok(Invocation::Exercise {
        exp: settings::resolve(spec, layers)?,
        plan: SweepPlan {
            out: args.out,
            shard: args.shard,
            force: args.force,
        },
        compute: args.compute.request(Some(&args.jobs)),
        data: args.compute.data_source(),
    })
}
