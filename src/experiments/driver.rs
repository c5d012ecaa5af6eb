//! Running an experiment end to end: the sweep with its cache, then the
//! outputs (`runs.csv`, `summary.csv`, `comparisons.csv`, the verdict and
//! plots), and `merge` for the folders of a sharded sweep.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::seed_plan::{seed_plan, want_row};
use super::{registry, Common, Confirmation, Experiment, Finished};
use crate::analysis::{self, Group, Metric, SummaryRow};
use crate::contrast::{self, Contrast, ContrastRow};
use crate::data::{self, DataIdentity, DataOptions};
use crate::device::Compute;
use crate::output::{write_csv, write_json};
use crate::record::{ConfigKey, RunSpec, StoredRun, FRESH_SEED_BASE};
use crate::sweep::{self, Shard, SweepOptions};

/// What a finished sweep answers, for `drop-exp report`.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The answer in a sentence (the first line of the verdict).
    pub answer: String,
    /// The table of its primary contrasts (markdown).
    pub primary: String,
    /// Its primary contrasts, for a correction across exercises.
    pub primaries: Vec<ContrastRow>,
    /// Of its runs, those that finished before the primary contrasts were
    /// declared, and all of them.
    pub before_declaration: (usize, usize),
    /// Runs and run-epochs the answer rests on.
    pub runs: usize,
    pub run_epochs: usize,
    /// The epochs' wall seconds as each run recorded them, summed.
    pub run_seconds: f64,
}

/// Where a sweep writes and which part of it this process runs.
#[derive(Debug, Clone, Default)]
pub struct SweepPlan {
    /// Output folder (default: `results/<experiment>`).
    pub out: Option<PathBuf>,
    pub shard: Option<Shard>,
    /// Redo runs already stored.
    pub force: bool,
}

/// The resolved sweep, written before any run starts.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SweepRecord {
    pub(super) experiment: String,
    pub(super) common: Common,
    pub(super) settings: serde_json::Value,
    pub(super) runs: Vec<RunSpec>,
    pub(super) data: DataIdentity,
    pub(super) drop_exp_version: String,
    pub(super) git_commit: String,
    pub(super) device: String,
    pub(super) threads_per_job: usize,
    pub(super) jobs: usize,
    /// The most runs of one seed trained together as one stack (see [`crate::train`]).
    #[serde(default = "one")]
    pub(super) batch_runs: usize,
    #[serde(default)]
    pub(super) shard: Option<String>,
}

fn one() -> usize {
    1
}

/// Runs an experiment end to end: sweep, then outputs. `data` gives where
/// the data is; the subsets come from the experiment's settings. With
/// `plan_seeds`, once the first seeds are stored the configurations of the
/// primary contrasts still undecided get the seeds their 80% power plan
/// asks for (at most `max_seeds`), once; an experiment that confirms a
/// choice on fresh seeds trains those last. Returns the answer in a
/// sentence once every run is there (not for a shard's part).
pub fn run(
    exp: &dyn Experiment,
    plan: &SweepPlan,
    compute: &Compute,
    data: &DataOptions,
) -> Result<Option<Answered>> {
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
    let data = data::DataSource::new(&data_opts, &compute.dev)?;
    let digest = data.identity.digest();
    let mut specs = exp.specs();
    let mut failures = sweep_round(exp, &specs, &specs, plan, compute, &data, &out)?;
    let whole = plan.shard.is_none() && failures.is_empty();
    // A later round: `more` joins the sweep and is trained.
    let round = |specs: &mut Vec<RunSpec>, more: Vec<RunSpec>| -> Result<Vec<sweep::Failure>> {
        if more.is_empty() {
            return Ok(Vec::new());
        }
        specs.extend(more.iter().cloned());
        sweep_round(exp, specs, &more, plan, compute, &data, &out)
    };
    if whole && common.plan_seeds {
        let planned = planned_specs(exp, &specs, &out, &digest)?;
        failures.extend(round(&mut specs, planned)?);
    }
    if whole && failures.is_empty() {
        let confirm = confirmation_specs(exp, &specs, &out, &digest)?;
        failures.extend(round(&mut specs, confirm)?);
        if common.plan_seeds && failures.is_empty() {
            let planned = planned_fresh_specs(exp, &specs, &out, &digest)?;
            failures.extend(round(&mut specs, planned)?);
        }
    }
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

/// Records `specs` in `sweep.json` and trains those of `train` not stored
/// yet (or all of them with `--force`); returns the runs that failed.
fn sweep_round(
    exp: &dyn Experiment,
    specs: &[RunSpec],
    train: &[RunSpec],
    plan: &SweepPlan,
    compute: &Compute,
    data: &data::DataSource,
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

/// The seed plan, made once from the first `seeds` seeds: for each primary
/// contrast still undecided, not a rate and with no failed run, the seeds
/// that give it 80% power at its smallest effect of interest (at most
/// `max_seeds`), for its own configurations only. It reads the first seeds'
/// spread and verdicts, never those of planned seeds, so it is the same plan
/// whenever it is made.
fn planned_specs(
    exp: &dyn Experiment,
    first: &[RunSpec],
    out: &Path,
    digest: &str,
) -> Result<Vec<RunSpec>> {
    let c = exp.common();
    let max = c.max_seeds.unwrap_or(c.seeds);
    let stored = sweep::collect(first, out, digest)?;
    if max <= c.seeds || !stored.iter().all(Option::is_some) {
        return Ok(Vec::new());
    }
    let runs: Vec<&StoredRun> = stored.iter().flatten().collect();
    let (_, _, rows) = analyse(exp, &runs, &[])?;
    let want = seed_plan(&rows, max);
    for row in rows.iter().filter(|r| want_row(r)) {
        eprintln!(
            "{}: primary contrast `{}` is undecided with {} seeds; plan: {} seeds (80% power at its smallest effect of interest{})",
            exp.spec().name,
            row.id,
            row.n,
            row.planned_seeds().map_or(max, |n| (n as u32).min(max)),
            match row.planned_seeds() {
                Some(p) if p as u32 <= max => String::new(),
                _ => format!(", capped by max_seeds = {max}"),
            }
        );
    }
    let configs = super::distinct(exp.configs());
    Ok(plan_specs(&want, &configs, ConfigKey::sweep, c.seeds, 0))
}

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
    Ok(confirmation_of(exp, &runs, out)?
        .map(|conf| fresh_specs(exp.common(), &conf))
        .unwrap_or_default())
}

/// The confirmation an experiment chooses from `runs` (those of the main
/// sweep, seeds below [`FRESH_SEED_BASE`], are read; others are ignored).
fn confirmation_of(
    exp: &dyn Experiment,
    runs: &[&StoredRun],
    out: &Path,
) -> Result<Option<Confirmation>> {
    let main: Vec<&StoredRun> = runs
        .iter()
        .copied()
        .filter(|r| r.spec.seed < FRESH_SEED_BASE)
        .collect();
    let (groups, summary, contrasts) = analyse(exp, &main, &[])?;
    let finished = Finished {
        out,
        groups,
        summary,
        contrasts,
        common: exp.common(),
        declared: exp.declared(),
    };
    Ok(exp.confirm(&finished))
}

/// Runs for a seed plan `want` ((configuration key, seeds wanted)): for
/// each of `configs` the plan names (its key made by `key`), the seeds
/// from the sweep's first `from` up to the plan's, offset by `base`.
fn plan_specs(
    want: &[(ConfigKey, u32)],
    configs: &[(String, crate::config::TrainConfig)],
    key: fn(crate::config::TrainConfig) -> ConfigKey,
    from: u32,
    base: u64,
) -> Vec<RunSpec> {
    let mut specs = Vec::new();
    for (label, config) in configs {
        let Some(&(_, n)) = want.iter().find(|(k, _)| *k == key(config.clone())) else {
            continue;
        };
        for i in from as u64..n as u64 {
            specs.push(RunSpec {
                label: label.clone(),
                config: config.clone(),
                seed: base + i,
            });
        }
    }
    specs
}

/// A confirmation's seed plan, made once as the main sweep's is: when the
/// confirmation did not fix its seeds in advance, its first fresh seeds are
/// the pilot, and each of its primary contrasts still undecided gets the
/// fresh seeds its 80% power plan asks for (at most `max_seeds`), for its
/// own configurations. Empty until the confirmation's pilot is stored.
fn planned_fresh_specs(
    exp: &dyn Experiment,
    specs: &[RunSpec],
    out: &Path,
    digest: &str,
) -> Result<Vec<RunSpec>> {
    let c = exp.common();
    let max = c.max_seeds.unwrap_or(c.seeds);
    let stored = sweep::collect(specs, out, digest)?;
    if max <= c.seeds || !stored.iter().all(Option::is_some) {
        return Ok(Vec::new());
    }
    let runs: Vec<&StoredRun> = stored.iter().flatten().collect();
    let Some(conf) = confirmation_of(exp, &runs, out)?.filter(|conf| conf.seeds.is_none()) else {
        return Ok(Vec::new());
    };
    let (_, _, rows) = analyse(exp, &runs, &conf.contrasts)?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| conf.contrasts.iter().any(|k| k.id == r.id))
        .collect();
    let want = seed_plan(&rows, max);
    for row in rows.iter().filter(|r| want_row(r)) {
        eprintln!(
            "{}: primary contrast `{}` of the confirmation is undecided with {} fresh seeds; plan: {} (80% power at its smallest effect of interest, at most max_seeds = {max})",
            exp.spec().name,
            row.id,
            row.n,
            row.planned_seeds().map_or(max, |n| (n as u32).min(max)),
        );
    }
    Ok(plan_specs(
        &want,
        &conf.configs,
        ConfigKey::confirmation,
        c.seeds,
        FRESH_SEED_BASE,
    ))
}

/// The confirmation's configurations on fresh seeds: as many as it fixed
/// in advance, or as the sweep's first seeds.
fn fresh_specs(common: &Common, conf: &Confirmation) -> Vec<RunSpec> {
    let mut out = Vec::new();
    for i in 0..conf.seeds.unwrap_or(common.seeds as usize) as u64 {
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

/// Groups, summary rows and answered contrasts of `runs`: the exercise's
/// primary contrasts with `confirming` (a confirmation's, which join them),
/// then its exploratory pairs on the peak and end-of-training metrics (those
/// a primary contrast already answers left out).
fn analyse<'a>(
    exp: &dyn Experiment,
    runs: &[&'a StoredRun],
    confirming: &[Contrast],
) -> Result<(Vec<Group<'a>>, Vec<SummaryRow>, Vec<ContrastRow>)> {
    let end_k = exp.common().end_k();
    let groups = analysis::groups(runs, end_k);
    let summary: Vec<SummaryRow> = groups.iter().map(analysis::summary).collect();
    let mut contrasts = exp.contrasts();
    contrasts.extend(confirming.iter().cloned());
    // Whether `among` already holds the same comparison.
    let given = |c: &Contrast, among: &[Contrast]| {
        among
            .iter()
            .any(|p| p.measure == c.measure && p.terms == c.terms)
    };
    let mut exploratory: Vec<Contrast> = Vec::new();
    // A pair of one configuration with itself (two labels of one
    // configuration), or one already given, adds nothing.
    for (a, b) in exp.pairs().into_iter().filter(|(a, b)| a != b) {
        let find = |k: &ConfigKey| groups.iter().find(|g| g.is(k));
        let (Some(a), Some(b)) = (find(&a), find(&b)) else {
            continue;
        };
        for m in Metric::EXPLORATORY {
            let c = Contrast::exploratory(b, a, m);
            if !given(&c, &contrasts) && !given(&c, &exploratory) {
                exploratory.push(c);
            }
        }
    }
    contrasts.extend(exploratory);
    let probe = |run: &StoredRun, p: &contrast::ProbeMeasure| exp.probe_value(run, p);
    let common = exp.common();
    let ctx = contrast::Context {
        end_k,
        pilot_seeds: common.seeds as usize,
        max_seeds: common
            .plan_seeds
            .then(|| common.max_seeds.unwrap_or(common.seeds) as usize),
        probe: &probe,
    };
    let rows = contrast::evaluate(&contrasts, &groups, &ctx)
        .with_context(|| format!("exercise `{}`", exp.spec().name))?;
    Ok((groups, summary, rows))
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
pub(super) fn write_outputs(
    exp: &dyn Experiment,
    specs: &[RunSpec],
    out: &Path,
    digest: &str,
    finish: bool,
) -> Result<Option<Answered>> {
    let stored = sweep::collect(specs, out, digest)?;
    let complete = stored.iter().all(Option::is_some);
    let runs: Vec<&StoredRun> = stored.iter().flatten().collect();
    write_csv(&out.join("runs.csv"), &analysis::run_rows(&runs))?;
    let groups = analysis::groups(&runs, exp.common().end_k());
    let summary: Vec<SummaryRow> = groups.iter().map(analysis::summary).collect();
    write_csv(&out.join("summary.csv"), &summary)?;
    if !(complete && finish) {
        return Ok(None);
    }
    let confirm = confirmation_of(exp, &runs, out)?;
    let confirming = match &confirm {
        Some(conf) => {
            let want = fresh_specs(exp.common(), conf);
            if !want.iter().all(|w| specs.contains(w)) {
                // The confirmation has not been trained (a merged sweep): the
                // next invocation on this folder trains it.
                return Ok(None);
            }
            conf.contrasts.clone()
        }
        None => Vec::new(),
    };
    let (groups, summary, contrasts) = analyse(exp, &runs, &confirming)?;
    write_csv(&out.join("comparisons.csv"), &contrasts)?;
    let finished = Finished {
        out,
        groups,
        summary,
        contrasts,
        common: exp.common(),
        declared: exp.declared(),
    };
    let answer = exp.conclude(&finished)?;
    Ok(Some(Answered {
        answer,
        primary: contrast::primary_table(&finished.primary()),
        primaries: finished.primary().into_iter().cloned().collect(),
        before_declaration: super::markdown::runs_before_declaration(&finished),
        runs: runs.len(),
        run_epochs: runs.iter().map(|r| r.rows.len()).sum(),
        run_seconds: runs.iter().flat_map(|r| &r.rows).map(|e| e.seconds).sum(),
    }))
}
