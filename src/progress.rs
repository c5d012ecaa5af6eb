//! Progress bars on stderr, for `drop-exp run` and for sweeps. They draw
//! nothing when stderr is not a terminal.

use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::model::Mlp;
use crate::record::EpochRow;
use crate::train::TrainHook;

/// A per-epoch bar for one run.
pub struct EpochBar(ProgressBar);

impl EpochBar {
    pub fn new(epochs: usize, prefix: String) -> Self {
        let bar = ProgressBar::new(epochs as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] epoch {pos}/{len} {msg} ({elapsed}, eta {eta})",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(prefix);
        Self(bar)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl TrainHook for EpochBar {
    fn after_step(&mut self, _step: usize, _epoch: usize, _model: Option<&Mlp>) -> Result<()> {
        self.0.tick();
        Ok(())
    }
    fn after_epoch(&mut self, rows: &[EpochRow]) -> Result<()> {
        if let Some(row) = rows.last() {
            self.0.set_message(format!(
                "loss {:.3} test acc {:.3}",
                row.train_loss, row.test_acc
            ));
        }
        self.0.inc(1);
        Ok(())
    }
}

/// A sweep's bars: one over all runs, and one [`EpochBar`] per run in progress.
pub struct SweepBars {
    multi: MultiProgress,
    overall: ProgressBar,
}

impl SweepBars {
    /// `done` of `total` runs are finished already.
    pub fn new(total: usize, done: usize) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template(
                "runs [{bar:30}] {pos}/{len} ({elapsed}, eta {eta}) {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        overall.set_position(done as u64);
        overall.reset_eta();
        Self { multi, overall }
    }

    /// A bar for one run, shown under the overall one.
    pub fn run_bar(&self, epochs: usize, prefix: String) -> EpochBar {
        let bar = EpochBar::new(epochs, prefix);
        EpochBar(self.multi.add(bar.0))
    }

    /// Removes a run's bar and counts the run as done.
    pub fn run_done(&self, bar: EpochBar) {
        bar.finish();
        self.multi.remove(&bar.0);
        self.overall.inc(1);
    }

    /// Prints a line above the bars.
    pub fn println(&self, line: String) {
        self.overall.println(line);
    }

    pub fn finish(&self) {
        self.overall.finish_and_clear();
    }
}
