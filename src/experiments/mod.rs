//! The exercises, one file each, on one sweep engine.
//!
//! An experiment turns its settings into a list of runs (configurations x
//! seeds) and, once they are finished, into a verdict and plots. Everything
//! else is shared here: settings from `experiments/<name>.toml` (built in,
//! overridable with `--config` and flags), the sweep with its cache, jobs and
//! shards, and the common outputs (`runs.csv`, `summary.csv`,
//! `comparisons.csv`).

pub mod compare_wd;
pub mod dropconnect;
pub mod longer;
pub mod noise;
pub mod swap_rates;
pub mod test_time;
pub mod variance;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::analysis::{self, Comparison, Group, Metric, SummaryRow};
use crate::cli::{Command, SweepArgs};
use crate::data::{self, DataIdentity, TEST_SIZE, TRAIN_SIZE};
use crate::output::{write_atomic, write_csv, write_json};
use crate::sweep::{self, RunSpec, StoredRun, SweepOptions, Worker};
use crate::train::TrainConfig;

/// Settings every experiment has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Common {
    /// Seeds 0..seeds-1.
    pub seeds: u32,
    pub epochs: u32,
    pub lr: f64,
    pub batch_size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_subset: Option<u32>,
}

const COMMON_KEYS: [&str; 6] = [
    "seeds",
    "epochs",
    "lr",
    "batch_size",
    "train_subset",
    "test_subset",
];

impl Common {
    /// The book's configuration with these settings.
    pub fn base_config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs as usize,
            lr: self.lr,
            batch_size: self.batch_size as usize,
            ..TrainConfig::default()
        }
    }

    pub fn seeds(&self) -> impl Iterator<Item = u64> {
        0..self.seeds as u64
    }

    fn validate(&self, source: &str) -> Result<()> {
        let bad = |key: &str, why: &str| -> Result<()> { bail!("{source}: `{key}` {why}") };
        if self.seeds == 0 {
            bad("seeds", "must be at least 1")?;
        }
        if self.epochs == 0 {
            bad("epochs", "must be at least 1")?;
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bad("lr", "must be a finite number greater than 0")?;
        }
        if self.batch_size == 0 {
            bad("batch_size", "must be at least 1")?;
        }
        if self
            .train_subset
            .is_some_and(|n| n == 0 || n as usize > TRAIN_SIZE)
        {
            bad("train_subset", "must be between 1 and 60000")?;
        }
        if self
            .test_subset
            .is_some_and(|n| n == 0 || n as usize > TEST_SIZE)
        {
            bad("test_subset", "must be between 1 and 10000")?;
        }
        Ok(())
    }
}

/// Checks an experiment's own settings; the error names the bad value.
pub trait CheckSettings {
    fn check(&self) -> std::result::Result<(), String>;
}

/// Checks that every value is a probability.
pub fn check_probs(
    key: &str,
    vals: impl IntoIterator<Item = f64>,
) -> std::result::Result<(), String> {
    for v in vals {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!(
                "`{key}` holds {v}, outside [0, 1]; rates are drop probabilities"
            ));
        }
    }
    Ok(())
}

/// Parses an experiment's settings: the built-in defaults, overlaid key by
/// key with the user's `--config` file if any. Unknown keys are rejected,
/// naming the file.
pub fn load_settings<T: DeserializeOwned + CheckSettings>(
    name: &str,
    builtin: &str,
    user: Option<&Path>,
) -> Result<(Common, T)> {
    let builtin_name = format!("experiments/{name}.toml (built in)");
    let mut table: toml::Table =
        toml::from_str(builtin).with_context(|| format!("parsing {builtin_name}"))?;
    let mut source = builtin_name;
    if let Some(path) = user {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --config {}", path.display()))?;
        let over: toml::Table = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        for (k, v) in over {
            if !table.contains_key(&k) && !COMMON_KEYS.contains(&k.as_str()) {
                let mut known: Vec<&str> = table.keys().map(String::as_str).collect();
                known.extend(COMMON_KEYS.iter().filter(|c| !table.contains_key(**c)));
                bail!(
                    "{}: unknown key `{k}` for `{name}`; known keys: {}",
                    path.display(),
                    known.join(", ")
                );
            }
            table.insert(k, v);
        }
        source = path.display().to_string();
    }
    let mut common_t = toml::Table::new();
    for k in COMMON_KEYS {
        if let Some(v) = table.remove(k) {
            common_t.insert(k.to_string(), v);
        }
    }
    let common: Common = common_t
        .try_into()
        .with_context(|| format!("{source}: invalid common settings"))?;
    let own: T = table
        .try_into()
        .with_context(|| format!("{source}: invalid settings for `{name}`"))?;
    common.validate(&source)?;
    own.check().map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    Ok((common, own))
}

/// Applies the common command-line flags over the file settings.
pub fn apply_flags(common: &mut Common, args: &SweepArgs) -> Result<()> {
    if let Some(v) = args.seeds {
        common.seeds = v;
    }
    if let Some(v) = args.epochs {
        common.epochs = v;
    }
    if let Some(v) = args.lr {
        common.lr = v;
    }
    if let Some(v) = args.batch_size {
        common.batch_size = v;
    }
    if let Some(v) = args.compute.train_subset {
        common.train_subset = Some(v);
    }
    if let Some(v) = args.compute.test_subset {
        common.test_subset = Some(v);
    }
    common.validate("settings after flags")
}

/// What an experiment's report receives: the finished runs, grouped.
pub struct Report<'a> {
    pub out: &'a Path,
    pub groups: Vec<Group<'a>>,
    pub summary: Vec<SummaryRow>,
    pub comparisons: Vec<Comparison>,
    pub common: &'a Common,
}

impl Report<'_> {
    pub fn group(&self, label: &str) -> &Group<'_> {
        self.groups
            .iter()
            .find(|g| g.label == label)
            .unwrap_or_else(|| panic!("no configuration labelled {label}"))
    }
    pub fn comparison(&self, a: &str, b: &str, metric: Metric) -> Option<&Comparison> {
        self.comparisons
            .iter()
            .find(|c| c.a == a && c.b == b && c.metric == metric)
    }
}

/// One exercise.
/// The three accessors every experiment writes the same way (its name, its
/// `common` field and its `settings` field as JSON), for its `impl Experiment`.
macro_rules! experiment_accessors {
    ($name:literal) => {
        fn name(&self) -> &'static str {
            $name
        }
        fn common(&self) -> &crate::experiments::Common {
            &self.common
        }
        fn settings(&self) -> serde_json::Value {
            serde_json::to_value(&self.settings).expect("settings serialise to JSON")
        }
    };
}
pub(crate) use experiment_accessors;

pub trait Experiment: Sync {
    /// Subcommand and output folder name.
    fn name(&self) -> &'static str;
    /// The settings shared by all experiments.
    fn common(&self) -> &Common;
    /// Its own resolved settings, as recorded in `sweep.json`.
    fn settings(&self) -> serde_json::Value;
    /// Labelled configurations, in display order.
    fn configs(&self) -> Vec<(String, TrainConfig)>;
    /// The pairs (a, b) to compare, b - a.
    fn pairs(&self) -> Vec<(String, String)>;
    /// Writes the verdict and plots.
    fn report(&self, r: &Report) -> Result<()>;
    /// What each run executes (plain training unless overridden).
    fn worker(&self) -> &Worker<'_> {
        &sweep::train_worker
    }

    /// Configurations x seeds.
    fn specs(&self) -> Vec<RunSpec> {
        let configs = self.configs();
        let mut out = Vec::new();
        for seed in self.common().seeds() {
            for (label, config) in &configs {
                out.push(RunSpec {
                    label: label.clone(),
                    config: config.clone(),
                    seed,
                });
            }
        }
        out
    }
}

/// Rebuilds an experiment from its `sweep.json` (for `merge`).
pub fn restore(
    name: &str,
    common: Common,
    settings: serde_json::Value,
) -> Result<Box<dyn Experiment>> {
    let v = settings;
    let e: Box<dyn Experiment> = match name {
        "swap-rates" => Box::new(swap_rates::SwapRates::new(
            common,
            serde_json::from_value(v)?,
        )),
        "longer" => Box::new(longer::Longer::new(common, serde_json::from_value(v)?)),
        "compare-wd" => Box::new(compare_wd::CompareWd::new(
            common,
            serde_json::from_value(v)?,
        )),
        "variance" => Box::new(variance::Variance::new(
            common,
            serde_json::from_value(v)?,
            true,
        )),
        "test-time" => Box::new(test_time::TestTime::new(common, serde_json::from_value(v)?)),
        "dropconnect" => Box::new(dropconnect::DropConnectExp::new(
            common,
            serde_json::from_value(v)?,
        )),
        "noise" => Box::new(noise::Noise::new(common, serde_json::from_value(v)?)),
        other => bail!("unknown experiment `{other}` in sweep.json"),
    };
    Ok(e)
}

/// Settings from the built-in TOML, `--config` and the common flags.
fn settings<T: DeserializeOwned + CheckSettings>(
    name: &str,
    defaults: &str,
    s: &SweepArgs,
) -> Result<(Common, T)> {
    let (mut common, own) = load_settings::<T>(name, defaults, s.config.as_deref())?;
    apply_flags(&mut common, s)?;
    Ok((common, own))
}

/// The experiment a subcommand names, with its sweep flags.
pub fn from_command(cmd: &Command) -> Result<(Box<dyn Experiment>, &SweepArgs)> {
    Ok(match cmd {
        Command::SwapRates(a) => {
            let (c, mut s) =
                settings::<swap_rates::Settings>("swap-rates", swap_rates::DEFAULTS, &a.sweep)?;
            if let Some(g) = &a.grid {
                s.grid = Some(g.clone());
            }
            (Box::new(swap_rates::SwapRates::new(c, s)), &a.sweep)
        }
        Command::Longer(a) => {
            let (c, s) = settings("longer", longer::DEFAULTS, &a.sweep)?;
            (Box::new(longer::Longer::new(c, s)), &a.sweep)
        }
        Command::CompareWd(a) => {
            let (c, mut s) =
                settings::<compare_wd::Settings>("compare-wd", compare_wd::DEFAULTS, &a.sweep)?;
            if let Some(w) = &a.weight_decays {
                s.weight_decays = w.clone();
            }
            (Box::new(compare_wd::CompareWd::new(c, s)), &a.sweep)
        }
        Command::Variance(a) => {
            let (c, s) = settings("variance", variance::DEFAULTS, &a.sweep)?;
            (Box::new(variance::Variance::new(c, s, a.plot)), &a.sweep)
        }
        Command::TestTime(a) => {
            let (c, s) = settings("test-time", test_time::DEFAULTS, &a.sweep)?;
            (Box::new(test_time::TestTime::new(c, s)), &a.sweep)
        }
        Command::Dropconnect(a) => {
            let (c, s) = settings("dropconnect", dropconnect::DEFAULTS, &a.sweep)?;
            (Box::new(dropconnect::DropConnectExp::new(c, s)), &a.sweep)
        }
        Command::Noise(a) => {
            let (c, s) = settings("noise", noise::DEFAULTS, &a.sweep)?;
            (Box::new(noise::Noise::new(c, s)), &a.sweep)
        }
        _ => bail!("not an experiment command"),
    })
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

/// Runs an experiment end to end: sweep, then outputs.
pub fn run(exp: &dyn Experiment, args: &SweepArgs) -> Result<()> {
    let common = exp.common();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(exp.name()));
    let dev = crate::device::setup_jobs(&args.compute, args.jobs.map(usize::from))?;
    let jobs = crate::device::jobs();
    let mut data_opts = args.compute.data_options();
    data_opts.train_subset = common.train_subset.map(|n| n as usize);
    data_opts.test_subset = common.test_subset.map(|n| n as usize);
    let data = data::load(&data_opts, &dev)?;
    let specs = exp.specs();
    for s in &specs {
        s.config
            .validate()
            .with_context(|| format!("configuration {}", s.label))?;
    }
    let (version, commit) = crate::provenance();
    let record = SweepRecord {
        experiment: exp.name().into(),
        common: common.clone(),
        settings: exp.settings(),
        runs: specs.clone(),
        data: data.identity.clone(),
        drop_exp_version: version.into(),
        git_commit: commit.into(),
        device: crate::device::describe(&dev).into(),
        threads_per_job: crate::device::threads(),
        jobs,
        shard: args.shard.map(|s| format!("{}/{}", s.index, s.count)),
    };
    write_json(&out.join("sweep.json"), &record)?;
    let opts = SweepOptions {
        out: out.clone(),
        jobs,
        shard: args.shard,
        force: args.force,
        device: record.device.clone(),
    };
    let digest = data.identity.digest();
    let refresh = || -> Result<()> { write_outputs(exp, &specs, &out, &digest, false).map(|_| ()) };
    let failures = sweep::execute(&specs, &data, &opts, exp.worker(), &refresh)?;
    let complete = write_outputs(exp, &specs, &out, &digest, true)?;
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|f| format!("  {} seed {}: {}", f.spec.label, f.spec.seed, f.error))
            .collect();
        bail!(
            "{} of {} runs failed (the others are kept in {}; rerun the same command to retry the failed ones):\n{}",
            failures.len(),
            specs.len(),
            out.display(),
            list.join("\n")
        );
    }
    if complete {
        eprintln!("{}: wrote {}", exp.name(), out.display());
        if let Ok(v) = std::fs::read_to_string(out.join("verdict.md")) {
            eprintln!("\n{v}");
        }
    } else if let Some(s) = args.shard {
        eprintln!(
            "{}: shard {}/{} done in {}; combine the shard folders with `drop-exp merge --out DIR FOLDER...`",
            exp.name(),
            s.index,
            s.count,
            out.display()
        );
    }
    Ok(())
}

/// Writes `runs.csv` and `summary.csv` from the runs finished so far, and,
/// when every run is there and `finish` is set, the comparisons, verdict and
/// plots. Returns whether the sweep is complete.
pub fn write_outputs(
    exp: &dyn Experiment,
    specs: &[RunSpec],
    out: &Path,
    digest: &str,
    finish: bool,
) -> Result<bool> {
    let stored = sweep::collect(specs, out, digest)?;
    let complete = stored.iter().all(Option::is_some);
    let runs: Vec<&StoredRun> = stored.iter().flatten().collect();
    write_csv(&out.join("runs.csv"), &analysis::run_rows(&runs))?;
    let groups = analysis::groups(&runs);
    let summary: Vec<SummaryRow> = groups.iter().map(analysis::summary).collect();
    write_csv(&out.join("summary.csv"), &summary)?;
    if !(complete && finish) {
        return Ok(complete);
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
    write_csv(&out.join("comparisons.csv"), &comparisons)?;
    let report = Report {
        out,
        groups,
        summary,
        comparisons,
        common: exp.common(),
    };
    exp.report(&report)?;
    Ok(true)
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
    let exp = restore(
        &first.experiment,
        first.common.clone(),
        first.settings.clone(),
    )?;
    let record = SweepRecord {
        shard: None,
        ..first
    };
    write_json(&dest.join("sweep.json"), &record)?;
    let complete = write_outputs(
        exp.as_ref(),
        &record.runs,
        dest,
        &record.data.digest(),
        true,
    )?;
    if !complete {
        let have = sweep::collect(&record.runs, dest, &record.data.digest())?
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

/// Writes a verdict file, with a note on every configuration that diverged
/// for some seeds: how often, and what its numbers rest on instead.
pub fn write_verdict(r: &Report, text: &str) -> Result<()> {
    let mut text = text.to_string();
    let diverged: Vec<String> = r
        .summary
        .iter()
        .filter(|s| s.n_diverged > 0)
        .map(|s| {
            format!(
                "- {} diverged (non-finite loss) in {} of {} seeds; its means use the {} seed(s) that finished, and its paired comparisons the seeds where both configurations finished.",
                s.config.label,
                s.n_diverged,
                s.n + s.n_diverged,
                s.n
            )
        })
        .collect();
    if !diverged.is_empty() {
        text += &format!("\n**Diverged runs.**\n\n{}\n", diverged.join("\n"));
    }
    let collapsed: Vec<String> = r
        .summary
        .iter()
        .filter(|s| s.n_collapsed > 0)
        .map(|s| {
            format!(
                "- {}: {} of its {} finished run(s) ended at chance level (final test accuracy at most {:.0}%, the loss stuck near ln 10 after a blow-up). They are kept in its means, which is why its interval is wide.",
                s.config.label,
                s.n_collapsed,
                s.n,
                100.0 * crate::analysis::COLLAPSED_ACC
            )
        })
        .collect();
    if !collapsed.is_empty() {
        text += &format!("\n**Collapsed runs.**\n\n{}\n", collapsed.join("\n"));
    }
    write_atomic(&r.out.join("verdict.md"), text.as_bytes())
}

/// Label of a (p1, p2) dropout pair.
pub fn rates_label(p1: f64, p2: f64) -> String {
    format!("p=({p1},{p2})")
}

/// The book's configuration at each dropout pair, labelled by its rates.
pub fn rate_configs(common: &Common, rates: &[[f64; 2]]) -> Vec<(String, TrainConfig)> {
    let base = common.base_config();
    rates
        .iter()
        .map(|&[p1, p2]| {
            (
                rates_label(p1, p2),
                TrainConfig {
                    p1,
                    p2,
                    ..base.clone()
                },
            )
        })
        .collect()
}

/// The first configuration against each of the others.
pub fn first_vs_rest(configs: &[(String, TrainConfig)]) -> Vec<(String, String)> {
    configs
        .iter()
        .skip(1)
        .map(|(l, _)| (configs[0].0.clone(), l.clone()))
        .collect()
}

/// The headline accuracy of each configuration with its 95% CI, as bars.
pub fn headline_bars(r: &Report) -> Vec<(String, f64, f64, f64)> {
    r.summary
        .iter()
        .map(|s| {
            (
                s.config.label.clone(),
                s.last3_mean,
                s.last3_ci_low,
                s.last3_ci_high,
            )
        })
        .collect()
}

/// A line over categories (x = 0, 1, ...) of the headline accuracy of the
/// configurations labelled `labels`, with 95% CI bars.
pub fn headline_line(r: &Report, name: String, labels: &[String]) -> crate::output::plot::Series {
    crate::output::plot::Series {
        name,
        points: labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let s = r
                    .summary
                    .iter()
                    .find(|s| s.config.label == *l)
                    .expect("a swept configuration");
                (i as f64, s.last3_mean, s.last3_ci_low, s.last3_ci_high)
            })
            .collect(),
        spread: crate::output::plot::Spread::Bars,
        dashed: false,
    }
}

/// One series per configuration: `f` per epoch, mean over seeds with its 95% band.
pub fn epoch_series(
    r: &Report,
    f: fn(&crate::train::EpochRow) -> f64,
) -> Vec<crate::output::plot::Series> {
    r.groups
        .iter()
        .map(|g| {
            crate::output::plot::Series::band(
                g.label.clone(),
                g.curve(f)
                    .into_iter()
                    .map(|(e, est)| (e as f64, est.mean, est.ci_low, est.ci_high))
                    .collect(),
            )
        })
        .collect()
}

/// A markdown table of the summary rows (headline metric first).
pub fn summary_table(rows: &[SummaryRow]) -> String {
    let mut s = String::from(
        "| configuration | n | diverged | test acc, last 3 epochs (95% CI) | final epoch | best epoch | train loss | gap (train - test) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {:.2}% ({:.2} to {:.2}) | {:.2}% ± {:.2} | {:.2}% ± {:.2} | {:.4} | {:+.2} |\n",
            r.config.label,
            r.n,
            r.n_diverged,
            100.0 * r.last3_mean,
            100.0 * r.last3_ci_low,
            100.0 * r.last3_ci_high,
            100.0 * r.final_mean,
            100.0 * r.final_sd,
            100.0 * r.best_mean,
            100.0 * r.best_sd,
            r.train_loss_mean,
            100.0 * r.gap_mean
        );
    }
    s
}

/// The curves plot (test accuracy per epoch, mean with 95% band) of groups.
pub fn accuracy_curves(r: &Report, path: &Path, title: &str) -> Result<()> {
    use crate::output::plot::{panels, Panel};
    let series = |f| epoch_series(r, f);
    let test = Panel {
        title: "test accuracy (eval mode)".into(),
        x_label: "epoch".into(),
        y_label: "accuracy".into(),
        series: series(|e| e.test_acc),
        clip: Some((0.0, 1.0)),
        ..Default::default()
    };
    let train = Panel {
        title: "train loss (training mode)".into(),
        x_label: "epoch".into(),
        y_label: "cross-entropy".into(),
        series: series(|e| e.train_loss),
        log_y: true,
        clip: Some((1e-3, f64::INFINITY)),
        ..Default::default()
    };
    panels(path, title, &[test, train], 2)
}

/// The seeds note for verdicts.
pub fn seeds_note(c: &Common) -> String {
    format!(
        "{} seeds, {} epochs, lr {}, batch {}{}",
        c.seeds,
        c.epochs,
        c.lr,
        c.batch_size,
        match (c.train_subset, c.test_subset) {
            (None, None) => String::new(),
            (a, b) => format!(
                ", on a subset ({} train / {} test examples)",
                a.map_or("all".into(), |n| n.to_string()),
                b.map_or("all".into(), |n| n.to_string())
            ),
        }
    )
}
