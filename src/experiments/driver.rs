//! Running an experiment end to end: the sweep with its cache, then the
//! outputs (`runs.csv`, `summary.csv`, `comparisons.csv`, the verdict and
//! plots), and `merge` for the folders of a sharded sweep.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{registry, Common, Confirmation, Experiment, Finished};
use crate::analysis::{self, Group, Metric, SummaryRow};
use crate::data::{self, DataIdentity, DataOptions};
use crate::device::Compute;
use crate::output::{write_csv, write_json};
use crate::sweep::{self, RunSpec, Shard, StoredRun, SweepOptions};
use crate::verdict::{self, Comparison, Precision};

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
    /// The most runs of one seed trained together (see [`crate::cohort`]).
    #[serde(default = "one")]
    pub batch_runs: usize,
    #[serde(default)]
    pub shard: Option<String>,
}

fn one() -> usize {
    1
}

/// Runs an experiment end to end: sweep, then outputs. `data` gives where
/// the data is; the subsets come from the experiment's settings. With
/// `target_ci`, seeds are added in rounds (each resuming from the stored
/// runs) until every primary comparison is that precise or `max_seeds` is
/// reached; an experiment that confirms a choice on fresh seeds trains
/// those last. Returns the answer in a sentence once every run is there
/// (not for a shard's part).
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
        validation: common.validation as usize,
        ..data.clone()
    };
    let data = data::load(&data_opts, &compute.dev)?;
    let digest = data.identity.digest();
    let mut rounds: Vec<Box<dyn Experiment>> = Vec::new();
    let mut failures = Vec::new();
    // What earlier rounds of this invocation ran: a later round trains only
    // its new runs (so `--force` redoes each run once, not once per round).
    let mut done: Vec<RunSpec> = Vec::new();
    loop {
        let cur = rounds.last().map_or(exp, |b| b.as_ref());
        let specs = cur.specs();
        let new: Vec<RunSpec> = specs
            .iter()
            .filter(|s| !done.contains(s))
            .cloned()
            .collect();
        failures.extend(sweep_round(cur, &specs, &new, plan, compute, &data, &out)?);
        done = specs;
        if plan.shard.is_some() || !failures.is_empty() {
            break;
        }
        match next_round(cur, &out, &digest)? {
            Some(seeds) => rounds.push(with_seeds(cur, seeds)?),
            None => break,
        }
    }
    let cur = rounds.last().map_or(exp, |b| b.as_ref());
    let mut specs = cur.specs();
    if plan.shard.is_none() && failures.is_empty() {
        let confirm = confirmation_specs(cur, &specs, &out, &digest)?;
        if !confirm.is_empty() {
            specs.extend(confirm.iter().cloned());
            failures.extend(sweep_round(
                cur, &specs, &confirm, plan, compute, &data, &out,
            )?);
        }
    }
    let answer = write_outputs(cur, &specs, &out, &digest, true)?;
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

/// Records `specs` in `sweep.json` and trains those of `train` not stored
/// yet (or all of them with `--force`); returns the runs that failed.
fn sweep_round(
    exp: &dyn Experiment,
    specs: &[RunSpec],
    train: &[RunSpec],
    plan: &SweepPlan,
    compute: &Compute,
    data: &data::Dataset,
    out: &Path,
) -> Result<Vec<sweep::Failure>> {
    let name = exp.spec().name;
    for s in specs {
        s.config
            .validate()
            .with_context(|| format!("configuration {}", s.label))?;
    }
    let (version, commit) = crate::provenance();
    let record = SweepRecord {
        experiment: name.into(),
        common: exp.common().clone(),
        settings: exp.settings(),
        runs: specs.to_vec(),
        data: data.identity.clone(),
        drop_exp_version: version.into(),
        git_commit: commit.into(),
        device: compute.describe().into(),
        threads_per_job: compute.threads_per_run,
        jobs: compute.jobs,
        batch_runs: compute.batch_runs,
        shard: plan.shard.map(|s| format!("{}/{}", s.index, s.count)),
    };
    write_json(&out.join("sweep.json"), &record)?;
    let opts = SweepOptions {
        out: out.to_path_buf(),
        jobs: compute.jobs,
        threads: compute.threads_per_run,
        shard: plan.shard,
        force: plan.force,
        device: record.device.clone(),
        adopt_from: if exp.adopts_plain_runs() {
            sibling_folders(name, out)
        } else {
            Vec::new()
        },
        batch_runs: compute.batch_runs,
    };
    let digest = data.identity.digest();
    let refresh = || -> Result<()> { write_outputs(exp, specs, out, &digest, false).map(|_| ()) };
    let outcome = sweep::execute(train, data, &opts, exp.worker(), &refresh)?;
    eprintln!(
        "{name}: trained {} run(s); {} were stored already (by an earlier or a concurrent invocation)",
        outcome.trained, outcome.reused
    );
    Ok(outcome.failures)
}

/// The output folders of the other exercises beside `out`
/// (`<out>/../<other exercise>`), for adopting their identical runs.
fn sibling_folders(name: &str, out: &Path) -> Vec<PathBuf> {
    let Some(parent) = out.parent() else {
        return Vec::new();
    };
    registry::EXERCISES
        .iter()
        .filter(|s| s.name != name)
        .map(|s| parent.join(s.name))
        .filter(|d| d.is_dir())
        .collect()
}

/// The experiment with `seeds` seeds instead of its own.
fn with_seeds(exp: &dyn Experiment, seeds: u32) -> Result<Box<dyn Experiment>> {
    let common = Common {
        seeds,
        ..exp.common().clone()
    };
    let settings = match toml::Value::try_from(exp.settings()) {
        Ok(toml::Value::Table(t)) => t,
        _ => bail!("the settings of `{}` are not a table", exp.spec().name),
    };
    (exp.spec().build)(common, settings)
}

/// With `target_ci`: the seeds of the next round, or `None` when every
/// primary comparison's 95% CI is within +/- target (or `max_seeds` is
/// reached). It looks at precision only, never at significance.
fn next_round(exp: &dyn Experiment, out: &Path, digest: &str) -> Result<Option<u32>> {
    let c = exp.common();
    let Some(target) = c.target_ci else {
        return Ok(None);
    };
    let max = c.max_seeds.unwrap_or(c.seeds);
    let specs = exp.specs();
    let stored = sweep::collect(&specs, out, digest)?;
    if !stored.iter().all(Option::is_some) {
        return Ok(None);
    }
    let runs: Vec<&StoredRun> = stored.iter().flatten().collect();
    let (_, _, comparisons) = analyse(&runs, &exp.pairs(), exp.common().margin / 100.0);
    let precision = Precision::of(&comparisons, target / 100.0);
    let name = exp.spec().name;
    let widest = precision.widest_text();
    if precision.widest <= target / 100.0 {
        eprintln!(
            "{name}: with {} seeds every primary 95% CI is within ±{:.2} points (target ±{target}); done",
            c.seeds,
            100.0 * precision.widest
        );
        return Ok(None);
    }
    if c.seeds >= max {
        eprintln!(
            "{name}: {widest} with {} seeds, short of the target ±{target}; stopping at max_seeds = {max}",
            c.seeds
        );
        return Ok(None);
    }
    let next = (precision.seeds_needed as u32).clamp(c.seeds + 1, max);
    eprintln!(
        "{name}: {widest} with {} seeds (target ±{target}); next round: {next} seeds",
        c.seeds
    );
    Ok(Some(next))
}

/// First seed of a confirmation on fresh seeds: far from the seeds 0.. of
/// the sweep it confirms.
pub const FRESH_SEED_BASE: u64 = 1000;

/// The runs of an experiment's confirmation on fresh seeds (empty if it has
/// none, or the main sweep is not complete).
fn confirmation_specs(
    exp: &dyn Experiment,
    main: &[RunSpec],
    out: &Path,
    digest: &str,
) -> Result<Vec<RunSpec>> {
    let stored = sweep::collect(main, out, digest)?;
    if !stored.iter().all(Option::is_some) {
        return Ok(Vec::new());
    }
    let runs: Vec<&StoredRun> = stored.iter().flatten().collect();
    let margin = exp.common().margin / 100.0;
    let (groups, summary, comparisons) = analyse(&runs, &exp.pairs(), margin);
    let finished = Finished {
        out,
        groups,
        summary,
        comparisons,
        common: exp.common(),
    };
    let Some(conf) = exp.confirm(&finished) else {
        return Ok(Vec::new());
    };
    Ok(fresh_specs(exp.common(), &conf))
}

/// The confirmation's configurations on fresh seeds, as many as the sweep's.
fn fresh_specs(common: &Common, conf: &Confirmation) -> Vec<RunSpec> {
    let mut out = Vec::new();
    for i in 0..common.seeds as u64 {
        for (label, config) in &conf.configs {
            out.push(RunSpec {
                label: label.clone(),
                config: config.clone(),
                seed: FRESH_SEED_BASE + i,
            });
        }
    }
    out
}

/// Groups, summary rows and decided comparisons of `runs` over `pairs`.
fn analyse<'a>(
    runs: &[&'a StoredRun],
    pairs: &[(String, String)],
    margin: f64,
) -> (Vec<Group<'a>>, Vec<SummaryRow>, Vec<Comparison>) {
    let groups = analysis::groups(runs);
    let summary: Vec<SummaryRow> = groups.iter().map(analysis::summary).collect();
    let comparisons = compare_pairs(&groups, pairs, margin);
    (groups, summary, comparisons)
}

/// Every metric of each pair (a, b) present in `groups`, decided as one
/// family per metric.
fn compare_pairs(groups: &[Group], pairs: &[(String, String)], margin: f64) -> Vec<Comparison> {
    let mut comparisons = Vec::new();
    for (a, b) in pairs {
        let (ga, gb) = (
            groups.iter().find(|g| &g.label == a),
            groups.iter().find(|g| &g.label == b),
        );
        if let (Some(ga), Some(gb)) = (ga, gb) {
            for m in Metric::ALL {
                comparisons.push(verdict::compare(ga, gb, m));
            }
        }
    }
    verdict::decide(&mut comparisons, margin);
    comparisons
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
/// `specs` may hold a confirmation's runs on fresh seeds after the main
/// sweep's; their comparisons are a family of their own.
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
    let margin = exp.common().margin / 100.0;
    let main: Vec<&StoredRun> = runs
        .iter()
        .copied()
        .filter(|r| r.spec.seed < FRESH_SEED_BASE)
        .collect();
    let (main_groups, main_summary, mut comparisons) = analyse(&main, &exp.pairs(), margin);
    let main_finished = Finished {
        out,
        groups: main_groups,
        summary: main_summary,
        comparisons: comparisons.clone(),
        common: exp.common(),
    };
    let confirm = exp.confirm(&main_finished);
    if let Some(conf) = &confirm {
        let want = fresh_specs(exp.common(), conf);
        if !want.iter().all(|w| specs.contains(w)) {
            // The confirmation has not been trained (a merged sweep): the
            // next invocation on this folder trains it.
            return Ok(None);
        }
        comparisons.extend(compare_pairs(&groups, &conf.pairs, margin));
    }
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
