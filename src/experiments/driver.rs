//! Running an experiment end to end: the sweep with its cache, then the
//! outputs (`runs.csv`, `summary.csv`, `comparisons.csv`, the verdict and
//! plots), and `merge` for the folders of a sharded sweep.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{registry, Common, Experiment, Finished};
use crate::analysis::{self, Metric, SummaryRow};
use crate::data::{self, DataIdentity, DataOptions};
use crate::device::Compute;
use crate::output::{write_csv, write_json};
use crate::sweep::{self, RunSpec, Shard, StoredRun, SweepOptions};

/// Where a sweep writes and which part of it this process runs.
#[derive(Debug, Clone, Default)]
pub struct SweepPlan {
    /// Output folder [default: results/<experiment>].
    pub out: Option<PathBuf>,
    pub shard: Option<Shard>,
    /// Redo runs already stored.
    pub force: bool,
}

/// The resolved sweep, written before any run starts.
#[derive(Debug, Serialize, Deserialize)]
pub struct SweepRecord {
    pub experiment: String,
    pub common: Common,
    pub settings: serde_json::Value,
    pub runs: Vec<RunSpec>,
    pub data: DataIdentity,
    pub drop_exp_version: String,
    pub git_commit: String,
    pub device: String,
    pub threads_per_job: usize,
    pub jobs: usize,
    #[serde(default)]
    pub shard: Option<String>,
}

/// Runs an experiment end to end: sweep, then outputs. `data` gives where
/// the data is; the subsets come from the experiment's settings. Returns the
/// answer in a sentence once every run is there (not for a shard's part).
pub fn run(
    exp: &dyn Experiment,
    plan: &SweepPlan,
    compute: &Compute,
    data: &DataOptions,
) -> Result<Option<String>> {
    let common = exp.common();
    let name = exp.spec().name;
    let out = plan
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(name));
    let data_opts = DataOptions {
        train_subset: common.train_subset.map(|n| n as usize),
        test_subset: common.test_subset.map(|n| n as usize),
        ..data.clone()
    };
    let data = data::load(&data_opts, &compute.dev)?;
    let specs = exp.specs();
    for s in &specs {
        s.config
            .validate()
            .with_context(|| format!("configuration {}", s.label))?;
    }
    let (version, commit) = crate::provenance();
    let record = SweepRecord {
        experiment: name.into(),
        common: common.clone(),
        settings: exp.settings(),
        runs: specs.clone(),
        data: data.identity.clone(),
        drop_exp_version: version.into(),
        git_commit: commit.into(),
        device: compute.describe().into(),
        threads_per_job: compute.threads_per_run,
        jobs: compute.jobs,
        shard: plan.shard.map(|s| format!("{}/{}", s.index, s.count)),
    };
    write_json(&out.join("sweep.json"), &record)?;
    let opts = SweepOptions {
        out: out.clone(),
        jobs: compute.jobs,
        threads: compute.threads_per_run,
        shard: plan.shard,
        force: plan.force,
        device: record.device.clone(),
    };
    let digest = data.identity.digest();
    let refresh = || -> Result<()> { write_outputs(exp, &specs, &out, &digest, false).map(|_| ()) };
    let outcome = sweep::execute(&specs, &data, &opts, exp.worker(), &refresh)?;
    let failures = outcome.failures;
    eprintln!(
        "{name}: trained {} run(s); {} were stored already (by an earlier or a concurrent invocation)",
        outcome.trained, outcome.reused
    );
    let answer = write_outputs(exp, &specs, &out, &digest, true)?;
    report_end(
        name,
        &out,
        specs.len(),
        &failures,
        answer.is_some(),
        plan.shard,
    )?;
    Ok(answer)
}

/// The end of a sweep: an error listing the failed runs, or what was written.
fn report_end(
    name: &str,
    out: &Path,
    total: usize,
    failures: &[sweep::Failure],
    complete: bool,
    shard: Option<Shard>,
) -> Result<()> {
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|f| format!("  {} seed {}: {}", f.spec.label, f.spec.seed, f.error))
            .collect();
        bail!(
            "{} of {} runs failed (the others are kept in {}; rerun the same command to retry the failed ones):\n{}",
            failures.len(),
            total,
            out.display(),
            list.join("\n")
        );
    }
    if complete {
        eprintln!("{name}: wrote {}", out.display());
        if let Ok(v) = std::fs::read_to_string(out.join("verdict.md")) {
            eprintln!("\n{v}");
        }
    } else if let Some(s) = shard {
        eprintln!(
            "{name}: shard {}/{} done in {}; combine the shard folders with `drop-exp merge --out DIR FOLDER...`",
            s.index,
            s.count,
            out.display()
        );
    }
    Ok(())
}

/// Writes `runs.csv` and `summary.csv` from the runs finished so far, and,
/// when every run is there and `finish` is set, the comparisons, verdict and
/// plots. Returns the answer when the sweep is complete and finished.
pub fn write_outputs(
    exp: &dyn Experiment,
    specs: &[RunSpec],
    out: &Path,
    digest: &str,
    finish: bool,
) -> Result<Option<String>> {
    let stored = sweep::collect(specs, out, digest)?;
    let complete = stored.iter().all(Option::is_some);
    let runs: Vec<&StoredRun> = stored.iter().flatten().collect();
    write_csv(&out.join("runs.csv"), &analysis::run_rows(&runs))?;
    let groups = analysis::groups(&runs);
    let summary: Vec<SummaryRow> = groups.iter().map(analysis::summary).collect();
    write_csv(&out.join("summary.csv"), &summary)?;
    if !(complete && finish) {
        return Ok(None);
    }
    let mut comparisons = Vec::new();
    for (a, b) in exp.pairs() {
        let (ga, gb) = (
            groups.iter().find(|g| g.label == a),
            groups.iter().find(|g| g.label == b),
        );
        if let (Some(ga), Some(gb)) = (ga, gb) {
            for m in Metric::ALL {
                comparisons.push(analysis::compare(ga, gb, m));
            }
        }
    }
    analysis::decide(&mut comparisons, exp.common().margin / 100.0);
    write_csv(&out.join("comparisons.csv"), &comparisons)?;
    let finished = Finished {
        out,
        groups,
        summary,
        comparisons,
        common: exp.common(),
    };
    exp.conclude(&finished).map(Some)
}

/// Rebuilds an experiment from its `sweep.json` (for `merge`).
pub fn restore(record: &SweepRecord) -> Result<Box<dyn Experiment>> {
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
