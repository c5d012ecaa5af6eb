//! `drop-exp report`: runs every exercise and gathers the answers in one
//! `REPORT.md`, readable on a code-hosting site. Each exercise runs through
//! its own subcommand's code with its defaults (or the quick preset), so
//! finished runs of earlier commands are reused.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{Cli, DeviceKind, ReportArgs};
use crate::experiments;
use crate::output::{now_rfc3339, write_atomic};

/// One exercise of the book's section, in our words.
struct Exercise {
    number: u8,
    command: &'static str,
    title: &'static str,
    question: &'static str,
    /// Extra flags of the full run.
    full: &'static [&'static str],
    /// Flags of the quick preset.
    quick: &'static [&'static str],
}

const QUICK: &[&str] = &[
    "--seeds",
    "2",
    "--epochs",
    "4",
    "--train-subset",
    "20000",
    "--test-subset",
    "5000",
];

const EXERCISES: &[Exercise] = &[
    Exercise {
        number: 1,
        command: "swap-rates",
        title: "Swapping the dropout rates of the two layers",
        question: "The book drops 20% of the first hidden layer's outputs and 50% of the second's. What changes when the two rates are swapped, or set to other values? Is the difference real or within seed noise?",
        full: &[],
        quick: QUICK,
    },
    Exercise {
        number: 2,
        command: "longer",
        title: "Training longer, with and without dropout",
        question: "Over many more epochs than the book's ten, how do the networks with and without dropout compare, and does the gap between training and test accuracy grow without dropout?",
        full: &[],
        quick: &["--seeds", "2", "--epochs", "10", "--train-subset", "20000", "--test-subset", "5000"],
    },
    Exercise {
        number: 3,
        command: "variance",
        title: "The variance of the hidden activations",
        question: "How does the variance of each hidden layer's activations evolve over training, with and without dropout, and how much does dropout itself spread them?",
        full: &["--plot"],
        quick: &["--plot", "--seeds", "2", "--epochs", "4", "--train-subset", "20000", "--test-subset", "5000"],
    },
    Exercise {
        number: 4,
        command: "test-time",
        title: "Why dropout is off at test time",
        question: "What happens if dropout stays on when the model is evaluated: how much does one noisy pass cost, and does averaging many noisy passes (MC dropout) match the deterministic network, at what price?",
        full: &[],
        quick: QUICK,
    },
    Exercise {
        number: 5,
        command: "compare-wd",
        title: "Dropout and weight decay",
        question: "Which helps this model more, dropout or weight decay, and when both are used, do their gains add up?",
        // Regularisation matters more the longer a model trains.
        full: &["--epochs", "50"],
        quick: &["--seeds", "2", "--epochs", "4", "--train-subset", "20000", "--test-subset", "5000", "--weight-decays", "0,1e-4,1e-3"],
    },
    Exercise {
        number: 6,
        command: "dropconnect",
        title: "Dropping individual weights (DropConnect)",
        question: "What if individual weights are dropped instead of whole unit outputs? At equal rates, is it better or worse than dropout?",
        full: &[],
        quick: QUICK,
    },
    Exercise {
        number: 7,
        command: "noise",
        title: "Other kinds of noise",
        question: "Can another way of injecting noise into the hidden layers beat the book's Bernoulli dropout?",
        full: &[],
        quick: QUICK,
    },
];

pub fn cmd_report(args: &ReportArgs) -> Result<()> {
    let base = args.out.clone().unwrap_or_else(|| {
        if args.quick {
            PathBuf::from("results/quick")
        } else {
            PathBuf::from("results")
        }
    });
    let mut sections = Vec::new();
    for ex in EXERCISES {
        let out = base.join(ex.command);
        let mut argv: Vec<String> = vec![
            "drop-exp".into(),
            ex.command.into(),
            "--out".into(),
            out.display().to_string(),
        ];
        argv.extend(preset_flags(
            if args.quick { ex.quick } else { ex.full },
            args,
        ));
        argv.extend(compute_flags(args));
        eprintln!(
            "== exercise {}: drop-exp {}",
            ex.number,
            argv[1..].join(" ")
        );
        let cli = Cli::try_parse_from(&argv).context("building the exercise's command line")?;
        let (exp, sweep) = experiments::from_command(&cli.command)?;
        experiments::run(exp.as_ref(), sweep)
            .with_context(|| format!("exercise {} ({})", ex.number, ex.command))?;
        let shown: Vec<String> = std::iter::once(ex.command.to_string())
            .chain(argv[4..].iter().cloned())
            .collect();
        sections.push(section(ex, &base, &out, &shown)?);
    }
    let (version, commit) = crate::provenance();
    let mut text = format!(
        "# Dropout, measured: answers to the exercises of D2L section 4.6\n\n{}Generated by `drop-exp report{}` (drop-exp {version}{}) on {}. Every number below comes from the runs in the folders next to this file; each exercise's folder also holds `runs.csv`, `summary.csv`, `comparisons.csv` and its plots. Accuracies are test-set accuracies of the book's MLP on Fashion-MNIST; the headline metric is the mean of each run's last 3 epochs, compared between configurations with paired t-tests over seeds (runs of one seed share initial weights and batch order).\n\n",
        if args.quick {
            "> **Quick preset**: 2 seeds, 4 epochs (10 for exercise 2), 20000 training and 5000 test images. These numbers are a smoke test of the pipeline, not answers; run `drop-exp report` for those.\n\n"
        } else {
            ""
        },
        if args.quick { " --quick" } else { "" },
        if commit.is_empty() { String::new() } else { format!(", commit {commit}") },
        now_rfc3339()
    );
    text += "Contents:\n\n";
    for ex in EXERCISES {
        text += &format!(
            "{}. [{}](#exercise-{}-{})\n",
            ex.number,
            ex.title,
            ex.number,
            slug(ex.title)
        );
    }
    text += "\n";
    for s in sections {
        text += &s;
    }
    let path = base.join("REPORT.md");
    write_atomic(&path, text.as_bytes())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn slug(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
        .collect::<String>()
        .replace(' ', "-")
}

/// The preset's flags, less the subsets the user set explicitly.
fn preset_flags(preset: &[&str], args: &ReportArgs) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < preset.len() {
        let user_has = match preset[i] {
            "--train-subset" => args.compute.train_subset.is_some(),
            "--test-subset" => args.compute.test_subset.is_some(),
            _ => false,
        };
        let takes_value =
            preset[i].starts_with("--") && preset.get(i + 1).is_some_and(|v| !v.starts_with("--"));
        let n = if takes_value { 2 } else { 1 };
        if !user_has {
            out.extend(preset[i..i + n].iter().map(|s| s.to_string()));
        }
        i += n;
    }
    out
}

fn compute_flags(args: &ReportArgs) -> Vec<String> {
    let c = &args.compute;
    let mut v = Vec::new();
    if c.device == DeviceKind::Cuda {
        v.extend(["--device".into(), "cuda".into()]);
    }
    if let Some(t) = c.threads {
        v.extend(["--threads".into(), t.to_string()]);
    }
    if let Some(d) = &c.data_dir {
        v.extend(["--data-dir".into(), d.display().to_string()]);
    }
    if let Some(n) = c.train_subset {
        v.extend(["--train-subset".into(), n.to_string()]);
    }
    if let Some(n) = c.test_subset {
        v.extend(["--test-subset".into(), n.to_string()]);
    }
    if c.synthetic {
        v.push("--synthetic".into());
    }
    if let Some(j) = args.jobs {
        v.extend(["--jobs".into(), j.to_string()]);
    }
    if args.force {
        v.push("--force".into());
    }
    v
}

/// One exercise's section: question, command, verdict, plots.
fn section(ex: &Exercise, base: &Path, out: &Path, argv: &[String]) -> Result<String> {
    let verdict = std::fs::read_to_string(out.join("verdict.md"))
        .with_context(|| format!("reading {}", out.join("verdict.md").display()))?;
    // Drop the verdict's own title; demote nothing else.
    let body: String = verdict
        .lines()
        .skip_while(|l| l.starts_with("# ") || l.is_empty())
        .map(|l| {
            if l.starts_with("## ") {
                format!("#{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let rel = out.strip_prefix(base).unwrap_or(out);
    let mut pngs: Vec<String> = std::fs::read_dir(out)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png") && !n.starts_with('.'))
        .collect();
    pngs.sort();
    let mut s = format!(
        "## Exercise {}: {}\n\n**Question.** {}\n\n**Command.** `drop-exp {}` (outputs in [`{}/`]({}/))\n\n{}\n\n",
        ex.number,
        ex.title,
        ex.question,
        argv.join(" "),
        rel.display(),
        rel.display(),
        body.trim_end()
    );
    for p in pngs {
        s += &format!("![{} {p}]({}/{p})\n\n", ex.command, rel.display());
    }
    Ok(s)
}
