//! `drop-exp merge`: the runs of `--shard` folders gathered into one, and
//! the outputs a single-machine sweep would write, from the sweep record.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::driver::{write_outputs, SweepRecord};
use super::{registry, Experiment};
use crate::output::write_json;
use crate::sweep;

/// Rebuilds an experiment from its `sweep.json` (for `merge`).
fn restore(record: &SweepRecord) -> Result<Box<dyn Experiment>> {
    let spec = registry::find(&record.experiment).with_context(|| {
        format!(
            "unknown experiment `{}` in sweep.json; was it written by another version of drop-exp?",
            record.experiment
        )
    })?;
    let settings = match toml::Value::try_from(&record.settings) {
        Ok(toml::Value::Table(t)) => t,
        _ => bail!("sweep.json: the experiment's settings are not a table"),
    };
    (spec.build)(record.common.clone(), settings).context("sweep.json: invalid settings")
}

/// `drop-exp merge`: combines shard folders into `dest` and writes the
/// outputs a single-machine sweep would.
pub fn merge(dest: &Path, sources: &[PathBuf]) -> Result<()> {
    let read = |dir: &Path| -> Result<SweepRecord> {
        let path = dir.join("sweep.json");
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "{} not found; give the output folders of `--shard` runs",
                path.display()
            )
        })?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid sweep record", path.display()))
    };
    let first = read(&sources[0])?;
    for src in &sources[1..] {
        let other = read(src)?;
        if other.experiment != first.experiment
            || other.runs != first.runs
            || other.data.digest() != first.data.digest()
        {
            bail!(
                "{} belongs to a different sweep than {} (experiment, runs or data differ); merge only shards of one command",
                src.display(),
                sources[0].display()
            );
        }
    }
    let copied = sweep::merge_runs(dest, sources)?;
    let exp = restore(&first)?;
    let record = SweepRecord {
        shard: None,
        ..first
    };
    write_json(&dest.join("sweep.json"), &record)?;
    let digest = record.data.digest();
    let complete = write_outputs(exp.as_ref(), &record.runs, dest, &digest, true)?.is_some();
    if !complete {
        let have = sweep::collect(&record.runs, dest, &digest)?
            .iter()
            .filter(|r| r.is_some())
            .count();
        if have == record.runs.len() {
            bail!(
                "merged {copied} runs into {}: the sweep is complete, but `{}` confirms its choice on fresh seeds, which no shard trained; run `drop-exp {} --out {}` with the shards' settings to train the confirmation and write the outputs",
                dest.display(),
                record.experiment,
                record.experiment,
                dest.display()
            );
        }
        bail!(
            "merged {copied} runs into {}, but only {have} of the sweep's {} runs are there; run the missing shards and merge again",
            dest.display(),
            record.runs.len()
        );
    }
    eprintln!(
        "merged {} folders ({copied} runs copied) into {}",
        sources.len(),
        dest.display()
    );
    Ok(())
}
