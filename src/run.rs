//! `drop-exp run`: one training run, written as `metrics.csv` and `run.json`.

use std::path::Path;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::cli::RunArgs;
use crate::data::{self, DataIdentity};
use crate::model::Mlp;
use crate::output::{now_rfc3339, write_csv, write_json};
use crate::train::{self, EpochRow, TrainConfig, TrainHook};

/// The provenance and outcome written to `run.json`.
#[derive(Debug, Serialize)]
pub struct RunRecord<'a> {
    pub drop_exp_version: &'static str,
    pub git_commit: &'static str,
    pub config: &'a TrainConfig,
    pub seed: u64,
    pub device: &'static str,
    pub threads: usize,
    pub data: &'a DataIdentity,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub seconds: Option<f64>,
    pub diverged: Option<bool>,
    pub final_epoch: Option<&'a EpochRow>,
}

/// A per-epoch progress bar on stderr; invisible when stderr is not a terminal.
pub struct EpochBar(pub ProgressBar);

impl EpochBar {
    pub fn new(epochs: usize, prefix: String) -> Self {
        let bar = ProgressBar::new(epochs as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] epoch {pos}/{len} {msg} ({elapsed}, eta {eta})",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        bar.set_prefix(prefix);
        Self(bar)
    }
}

impl TrainHook for EpochBar {
    fn after_step(&mut self, _step: usize, _epoch: usize, _model: &Mlp) -> Result<()> {
        self.0.tick();
        Ok(())
    }
    fn after_epoch(&mut self, row: &EpochRow) {
        self.0.set_message(format!(
            "loss {:.3} test acc {:.3}",
            row.train_loss, row.test_acc
        ));
        self.0.inc(1);
    }
}

pub fn cmd_run(args: &RunArgs) -> Result<()> {
    let dev = crate::device::setup(&args.compute)?;
    let cfg = args.hyper.config();
    cfg.validate()?;
    let data = data::load(&args.compute.data_options(), &dev)?;
    let out: &Path = &args.out;
    let (version, commit) = crate::provenance();
    let mut record = RunRecord {
        drop_exp_version: version,
        git_commit: commit,
        config: &cfg,
        seed: args.seed,
        device: crate::device::describe(&dev),
        threads: crate::device::threads(),
        data: &data.identity,
        started_at: now_rfc3339(),
        finished_at: None,
        seconds: None,
        diverged: None,
        final_epoch: None,
    };
    // The resolved configuration goes next to the outputs before training.
    write_json(&out.join("run.json"), &record)?;
    let t0 = std::time::Instant::now();
    let mut bar = EpochBar::new(cfg.epochs, format!("seed {}", args.seed));
    let outcome = train::train(&cfg, args.seed, &data, &mut bar)?;
    bar.0.finish_and_clear();
    write_csv(&out.join("metrics.csv"), &outcome.rows)?;
    let last = outcome.rows.last();
    record.finished_at = Some(now_rfc3339());
    record.seconds = Some(t0.elapsed().as_secs_f64());
    record.diverged = Some(outcome.diverged);
    record.final_epoch = last;
    write_json(&out.join("run.json"), &record)?;
    let last = last.expect("at least one epoch");
    if outcome.diverged {
        bail!(
            "training diverged at epoch {} (loss {}); metrics so far are in {}. Try a smaller --lr \
             (now {}) or more dropout",
            last.epoch,
            last.train_loss,
            out.join("metrics.csv").display(),
            cfg.lr
        );
    }
    let median = median(outcome.rows.iter().map(|r| r.train_seconds).collect());
    eprintln!(
        "{} epochs: train loss {:.4}, train acc {:.4}, test acc {:.4}; median {:.2} s per training epoch; wrote {}",
        last.epoch,
        last.train_loss,
        last.train_acc,
        last.test_acc,
        median,
        out.display()
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
