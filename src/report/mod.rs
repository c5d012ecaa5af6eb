//! `drop-exp report`: runs every exercise and gathers the answers in one
//! `REPORT.md`, readable on a code-hosting site. Each exercise runs through
//! the same code as its own subcommand, with its defaults plus the spec's
//! report (or quick) preset, so finished runs of earlier commands are reused.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::contrast::{self, ContrastRow};
use crate::data::DataOptions;
use crate::device::Compute;
use crate::experiments::driver::{self, Answered, SweepPlan};
use crate::experiments::settings::{self, Layer};
use crate::experiments::{ExerciseSpec, Experiment, Secondary, EXERCISES};
use crate::output::{now_rfc3339, write_atomic};

mod method;

use method::Method;

/// What `drop-exp report` was asked for.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// The quick preset of each exercise (subsets, few epochs and seeds).
    pub quick: bool,
    /// Folder for the experiments' outputs and REPORT.md [default: results, or results/quick].
    pub out: Option<PathBuf>,
    /// Redo runs already stored.
    pub force: bool,
    /// Where the data is.
    pub data: DataOptions,
    /// Subsets that override every preset.
    pub train_subset: Option<u32>,
    pub test_subset: Option<u32>,
    /// A validation split that overrides every preset.
    pub validation: Option<u32>,
}

pub fn cmd_report(opts: &ReportOptions, compute: &Compute) -> Result<()> {
    let base = opts.out.clone().unwrap_or_else(|| {
        if opts.quick {
            PathBuf::from("results/quick")
        } else {
            PathBuf::from("results")
        }
    });
    let mut sections = Vec::new();
    let mut answers = Vec::new();
    let mut methods = Vec::new();
    let mut rows: Vec<(&str, ContrastRow)> = Vec::new();
    let mut history_rows: Vec<HistoryRow> = Vec::new();
    for spec in EXERCISES {
        let out = base.join(spec.name);
        let (preset_name, preset) = if opts.quick {
            ("its quick preset", spec.quick)
        } else {
            ("its report preset", spec.report)
        };
        let user = opts.overrides();
        let shown = command_line(spec.name, preset, &user);
        let layers = vec![
            Layer::text(format!("`{}` {preset_name}", spec.name), preset),
            Layer::new("the command-line flags", user.clone()),
        ];
        let (exp, answered, minutes) = sweep(spec, &shown, layers, &out, opts, compute)?;
        methods.push(Method::of(exp.as_ref()));
        let mut text = section(spec, &base, &out, &shown, &answered, minutes)?;
        let mut answer = answered.answer.clone();
        rows.extend(answered.primaries.iter().map(|r| (spec.name, r.clone())));
        history_rows.push((
            format!("Exercise {}", spec.number),
            &spec.declared,
            answered.before_declaration,
        ));
        if let Some(second) = &spec.secondary {
            let out = base.join(second.folder);
            let file = format!("experiments/{}.toml", second.folder);
            // Its file alone, as its own command reads it; the quick preset
            // on top takes one look (no planned seeds).
            let mut quick: toml::Table =
                toml::from_str(spec.quick).expect("a preset is valid TOML");
            if let Some(seeds) = quick.get("seeds").cloned() {
                quick.insert("max_seeds".into(), seeds);
            }
            let mut layers = vec![Layer::text(file.clone(), second.settings)];
            let mut flags = toml::Table::new();
            if opts.quick {
                layers.push(Layer::new(
                    format!("`{}` {preset_name}", spec.name),
                    quick.clone(),
                ));
                flags = quick;
            }
            crate::layers::overlay(&mut flags, user.clone());
            layers.push(Layer::new("the command-line flags", user));
            let shown = format!(
                "{} --config {file} --out {}",
                command_line(spec.name, &toml::to_string(&flags)?, &toml::Table::new()),
                out.display()
            );
            let (_, second_answered, minutes) = sweep(spec, &shown, layers, &out, opts, compute)?;
            text += &secondary(second, &base, &out, &shown, &second_answered, minutes)?;
            rows.extend(
                second_answered
                    .primaries
                    .iter()
                    .map(|r| (second.folder, r.clone())),
            );
            history_rows.push((
                format!("Exercise {}, secondary (`{}`)", spec.number, second.folder),
                &second.declared,
                second_answered.before_declaration,
            ));
            answer += &format!(
                " Secondary (`{}`): {}",
                second.folder, second_answered.answer
            );
        }
        sections.push(text);
        answers.push((*spec, answer));
    }
    let mut text = header(opts, &answers, &methods, &rows, &history_rows);
    for s in sections {
        text += &s;
    }
    text += &limitations(&methods);
    let path = base.join("REPORT.md");
    write_atomic(&path, text.as_bytes())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

impl ReportOptions {
    /// The subsets and split that override every preset, as settings.
    fn overrides(&self) -> toml::Table {
        let mut user = toml::Table::new();
        for (key, value) in [
            ("train_subset", self.train_subset),
            ("test_subset", self.test_subset),
            ("validation", self.validation),
        ] {
            if let Some(n) = value {
                user.insert(key.into(), toml::Value::Integer(n.into()));
            }
        }
        user
    }
}

/// One sweep of the report, through the same code as its subcommand: the
/// experiment, its answer and the wall minutes it took here.
fn sweep(
    spec: &ExerciseSpec,
    shown: &str,
    layers: Vec<Layer>,
    out: &Path,
    opts: &ReportOptions,
    compute: &Compute,
) -> Result<(Box<dyn Experiment>, Answered, f64)> {
    eprintln!("== exercise {}: {shown}", spec.number);
    let t0 = std::time::Instant::now();
    let exp = settings::resolve(spec, layers)?;
    let plan = SweepPlan {
        out: Some(out.to_path_buf()),
        shard: None,
        force: opts.force,
    };
    let answered = driver::run(exp.as_ref(), &plan, compute, &opts.data)
        .with_context(|| format!("exercise {} (`{shown}`)", spec.number))?
        .context("the sweep did not complete")?;
    let minutes = t0.elapsed().as_secs_f64() / 60.0;
    eprintln!(
        "== exercise {} done in {minutes:.1} min (wall)",
        spec.number
    );
    Ok((exp, answered, minutes))
}

/// How every answer is argued, stated once.
const METHODS: &str = "## Methods

Each exercise declares its questions as *primary contrasts* (History below says when): a difference or linear contrast of configurations, its metric, its sidedness and its smallest effect of interest ({MARGIN} points of accuracy unless its row says otherwise). A contrast is computed per seed (runs of one seed share initial weights and batch order) and t-tested; rates of blow-ups are compared with Fisher's exact test and Newcombe's interval. Holm's correction runs over an exercise's primary contrasts only (below: what one correction over the report would change). Intervals are not adjusted for multiplicity, verdicts are: an interval excluding 0 can stand beside an undecided verdict. A decided difference says whether it exceeds the smallest effect of interest: by less (its estimate inside it), by more (its whole interval beyond it), or neither. A two-sided contrast is **higher** or **lower** when its Holm-adjusted p is below 0.05, else **equivalent** when two one-sided tests put it within ± its smallest effect of interest (Holm-adjusted likewise), else **undecided**; a one-sided contrast is **higher**, or **short of the effect of interest**, or undecided. Everything else is exploratory: estimate and interval, no verdict. Every interval is a 95% interval over seeds: it covers their spread, not the test set's own sampling error (about ±{ERROR} points at 85% accuracy on {TEST} images); none is given from fewer than 3 runs. A run that diverges or collapses is counted, never dropped from a metric defined for it. An undecided contrast's seeds are planned once, from the first {PILOT} seeds' spread, for 80% power at Bonferroni's level; the verdict stands on what the plan gives.

";

/// When each exercise's questions were declared, and which runs came before.
fn history(rows: &[HistoryRow]) -> String {
    let (before, total) = rows
        .iter()
        .fold((0, 0), |(b, t), (_, _, (rb, rt))| (b + rb, t + rt));
    let each: Vec<String> = rows
        .iter()
        .map(|(who, d, (b, t))| {
            let pre = match d.before {
                "" => "",
                _ => " What came before: its `verdict.md`.",
            };
            format!(
                "- {who}: declared in {} ({}); {b} of its {t} runs finished before.{pre}\n",
                d.commit, d.at
            )
        })
        .collect();
    format!(
        "### History\n\nEach exercise's primary contrasts were declared in a commit; \
         a run that finished before the declaration was trained while its questions \
         were still being chosen. Over the report, {before} of the {total} runs analysed finished \
         before their exercise's declaration.\n\n{}\nA question chosen after seeing its runs is \
         weaker evidence than its p-value says.\n\n",
        each.concat()
    )
}

/// A sweep's name (its exercise, or its exercise's secondary), its
/// declaration, and (runs before it, runs).
type HistoryRow = (
    String,
    &'static crate::experiments::Declaration,
    (usize, usize),
);

/// What one Holm correction over every primary contrast of the report
/// would change.
fn across_exercises(rows: &[(&str, ContrastRow)]) -> String {
    let refs: Vec<(&str, &ContrastRow)> = rows.iter().map(|(e, r)| (*e, r)).collect();
    let (decided, lost) = contrast::holm_across(&refs);
    let change = match lost.len() {
        0 => "none would change".to_string(),
        n => format!(
            "{n} of them would be undecided: {}",
            lost.iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "### Across exercises\n\nWith one Holm correction over all {} primary contrasts of the \
         report instead of one per exercise, of the {decided} decided verdicts {change}. Read a \
         verdict as a claim of its exercise's family of questions.\n\n",
        rows.len()
    )
}

/// `text` with the method's numbers in place of `{ERROR}` (the test
/// set's sampling error), `{TEST}` (its images), `{PILOT}` (the first
/// seeds) and `{MARGIN}` (the default smallest effect of interest).
fn fill(text: &str, methods: &[Method]) -> String {
    let (error, test) = method::test_sampling_error(methods);
    text.replace("{ERROR}", &format!("{error:.1}"))
        .replace("{TEST}", &method::thousands(test))
        .replace("{PILOT}", &method::pilot_seeds(methods))
        .replace("{MARGIN}", &method::margins(methods))
}

fn limitations(methods: &[Method]) -> String {
    fill(LIMITATIONS, methods)
}

const LIMITATIONS: &str = "## Limitations

- The 10-epoch runs (exercises 1, 3, 4, 6, 7) are still improving at epoch 10: their answers hold for the book's budget, not for convergence.
- Exact per-example DropConnect (exercise 6) takes about 20 times dropout's time per epoch here, so its sweep is trained in parts.
- Exercise 2 reaches overfitting on 5,000 training images, not the full set: at a stable rate the full set does not overfit within 50 epochs.
- One architecture, one data set, plain SGD without momentum or learning-rate schedule; the learning rates where training is stable are this model's.
- The {PILOT}-seed pilot decides which contrasts get more seeds: one interim look, so a type I error of up to about 8% at a nominal 5%.

";

/// The report's title, what it rests on, the answers, the settings and the
/// methods.
fn header(
    opts: &ReportOptions,
    answers: &[(&ExerciseSpec, String)],
    methods: &[Method],
    answers_rows: &[(&str, ContrastRow)],
    history_rows: &[HistoryRow],
) -> String {
    let (version, commit) = crate::provenance();
    let mut text = format!(
        "# Dropout, measured: answers to the exercises of D2L section 4.6\n\n{}Generated by `drop-exp report{}` (drop-exp {version}{}) on {}, from the runs in the folders next to this file.\n\n",
        if opts.quick {
            method::quick_banner(methods)
        } else {
            String::new()
        },
        if opts.quick { " --quick" } else { "" },
        if commit.is_empty() { String::new() } else { format!(", commit {commit}") },
        now_rfc3339(),
    );
    text += "## Answers\n\n";
    for (spec, answer) in answers {
        text += &format!(
            "{}. [{}](#{}): {}\n",
            spec.number,
            spec.title,
            slug(&spec.heading()),
            answer
        );
    }
    text += "\n";
    text += &method::settings_table(methods);
    text += &fill(METHODS, methods);
    text += &across_exercises(answers_rows);
    text += &history(history_rows);
    text
}

/// The subcommand that reproduces one exercise of the report, as shown in
/// REPORT.md: its preset and the user's overrides, written as flags.
fn command_line(name: &str, preset: &str, user: &toml::Table) -> String {
    let mut table: toml::Table = toml::from_str(preset).expect("a preset is valid TOML");
    crate::layers::overlay(&mut table, user.clone());
    let mut words = vec![name.to_string()];
    for (k, v) in table {
        let flag = format!("--{}", k.replace('_', "-"));
        match v {
            toml::Value::Boolean(true) => words.push(flag),
            toml::Value::Array(xs) => {
                let items: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
                words.push(format!("{flag} {}", items.join(",")));
            }
            other => words.push(format!("{flag} {other}")),
        }
    }
    words.join(" ")
}

fn slug(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
        .collect::<String>()
        .replace(' ', "-")
}

/// One exercise's section: the question, its primary contrasts, at most
/// three figures, the answer, and where the details are.
fn section(
    ex: &ExerciseSpec,
    base: &Path,
    out: &Path,
    shown: &str,
    answered: &Answered,
    minutes: f64,
) -> Result<String> {
    let mut s = format!(
        "## {}\n\n**Question.** {}\n\n{}\n",
        ex.heading(),
        ex.question,
        answered.primary
    );
    s += &figure_links(ex.name, ex.figures, base, out)?;
    s += &details(base, out, shown, answered, minutes);
    Ok(s)
}

/// Where a sweep's details are, what it rests on and how long it took.
fn details(base: &Path, out: &Path, shown: &str, answered: &Answered, minutes: f64) -> String {
    let rel = out.strip_prefix(base).unwrap_or(out);
    format!(
        "Details (exploratory rows, every configuration, stability): [`{}/verdict.md`]({}/verdict.md). {} runs, {} run-epochs, {:.0} minutes of training as recorded; `drop-exp {shown}` took {minutes:.1} min here, reusing stored runs.\n\n",
        rel.display(),
        rel.display(),
        answered.runs,
        answered.run_epochs,
        answered.run_seconds / 60.0,
    )
}

/// The figures of a sweep that REPORT.md shows, each with its SVG.
fn figure_links(name: &str, figures: &[&str], base: &Path, out: &Path) -> Result<String> {
    let rel = out.strip_prefix(base).unwrap_or(out);
    let mut s = String::new();
    for fig in figures.iter().take(3) {
        let svg = fig.replace(".png", ".svg");
        if !out.join(fig).is_file() {
            anyhow::bail!(
                "{name} lists {fig} among its report figures, but {} has none",
                out.display()
            );
        }
        s += &format!(
            "![{name} {fig}]({}/{fig}) ([SVG]({}/{svg}))\n\n",
            rel.display(),
            rel.display()
        );
    }
    Ok(s)
}

/// An exercise's secondary sweep, inside its section: its question, its
/// primary contrasts (their own Holm family) and its figures; its answer
/// joins the exercise's.
fn secondary(
    second: &Secondary,
    base: &Path,
    out: &Path,
    shown: &str,
    answered: &Answered,
    minutes: f64,
) -> Result<String> {
    let mut s = format!("### Secondary: {}\n\n{}\n", second.title, answered.primary);
    s += &figure_links(second.folder, second.figures, base, out)?;
    s += &details(base, out, shown, answered, minutes);
    Ok(s)
}
