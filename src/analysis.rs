//! From stored runs to the rows of `runs.csv` and `summary.csv`: per-run
//! metrics, configurations grouped over seeds, stability counts. Pure
//! functions: runs in, rows out. [`crate::contrast`] compares the groups.
//!
//! Two accuracy metrics answer the questions. The *peak* metric is the test
//! accuracy at the epoch selected on validation accuracy (each run's own
//! best epoch on the held-out validation images; the test set never picks
//! anything); without a validation split it is the final epoch's. The
//! *end-of-training* metric is the mean test accuracy over the last K
//! epochs (K = `end_epochs`, by default a fifth of the epochs), for the
//! questions about where training ends up: single epochs at a constant
//! learning rate without momentum dip by points, the mean of K does not.
//! Each metric keeps every run for which it is defined: a run that blew up
//! later keeps its selected epoch, a run that collapsed its (low) end.

use serde::Serialize;

use crate::config::TrainConfig;
use crate::record::{ConfigKey, EpochRow, Round, StoredRun};
use crate::stats::{self, Estimate};

/// Epochs averaged by the `last3` metric (kept in `summary.csv` for the CI
/// regression check).
pub const LAST_K: usize = 3;

/// The default K of the end-of-training metric: a fifth of the epochs (10
/// of 50), at least 1.
pub fn default_end_epochs(epochs: usize) -> usize {
    (epochs / 5).max(1)
}

/// A finished run whose final test accuracy is at most this (chance is 0.1
/// for ten classes) has collapsed: typically a blow-up left its ReLUs dead
/// and its loss stuck at ln 10. Like diverged runs, collapsed runs are an
/// outcome of their own: counted and given a rate with an interval; a
/// metric defined for them (the selected epoch before the blow-up, the
/// end-of-training accuracy) keeps them.
pub const COLLAPSED_ACC: f64 = 0.15;

/// An epoch whose mean training loss is more than this factor above the
/// previous epoch's is a loss spike: the run blew up, whether or not it
/// recovered. A healthy run's epoch loss falls, or rises by a few percent.
const SPIKE_FACTOR: f64 = 1.5;

/// Per-run summary numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RunMetrics {
    /// Test accuracy at the epoch with the best validation accuracy (the
    /// final epoch without a validation split).
    selected: f64,
    selected_epoch: usize,
    /// Validation accuracy at that epoch (NaN without a split).
    val_acc: f64,
    /// Mean test accuracy of the last (up to) three epochs.
    last3: f64,
    /// Mean test accuracy of the last (up to) K epochs.
    end: f64,
    final_acc: f64,
    train_loss: f64,
    /// Evaluation-mode accuracy on the fixed training subset minus test
    /// accuracy, at the selected epoch: the generalisation gap.
    gap: f64,
    /// Epochs whose training loss jumped (see [`SPIKE_FACTOR`]).
    spikes: usize,
}

impl RunMetrics {
    /// The metrics of a run's epochs, K for the end-of-training mean (None
    /// without any epoch).
    fn of(rows: &[EpochRow], end_k: usize) -> Option<Self> {
        let last = rows.last()?;
        let mean_tail = |k: usize| {
            let tail = &rows[rows.len().saturating_sub(k.max(1))..];
            tail.iter().map(|r| r.test_acc).sum::<f64>() / tail.len() as f64
        };
        // The earliest epoch with the highest validation accuracy. An epoch
        // whose training loss was not finite (the run diverged in it) is no
        // candidate, whatever its weights scored: a run with no finite
        // epoch has no selected epoch.
        let validated = rows
            .iter()
            .filter(|r| r.train_loss.is_finite())
            .filter_map(|r| r.val_acc.filter(|v| v.is_finite()).map(|v| (v, r)));
        let chosen = validated.fold(None::<(f64, &EpochRow)>, |best, (v, r)| match best {
            Some((b, _)) if b >= v => best,
            _ => Some((v, r)),
        });
        let (val_acc, sel) = chosen.unwrap_or((f64::NAN, last));
        Some(Self {
            selected: sel.test_acc,
            selected_epoch: sel.epoch,
            val_acc,
            last3: mean_tail(LAST_K),
            end: mean_tail(end_k),
            final_acc: last.test_acc,
            train_loss: last.train_loss,
            gap: sel.train_eval_acc - sel.test_acc,
            spikes: spikes(rows),
        })
    }
}

/// Epochs of `rows` whose training loss exceeds the previous epoch's by
/// more than [`SPIKE_FACTOR`] (a non-finite loss counts as a spike).
fn spikes(rows: &[EpochRow]) -> usize {
    rows.windows(2)
        .filter(|w| {
            let (before, after) = (w[0].train_loss, w[1].train_loss);
            !after.is_finite() || after > SPIKE_FACTOR * before
        })
        .count()
}

/// The accuracy metrics configurations are compared on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Test accuracy at the epoch selected on validation: the peak metric.
    Selected,
    /// Mean test accuracy of the last K epochs: the end-of-training metric.
    End,
    Last3,
    Final,
}

impl Metric {
    /// The metrics exploratory comparisons are given on.
    pub const EXPLORATORY: [Metric; 2] = [Metric::Selected, Metric::End];
    fn of(self, m: &RunMetrics) -> f64 {
        match self {
            Metric::Selected => m.selected,
            Metric::End => m.end,
            Metric::Last3 => m.last3,
            Metric::Final => m.final_acc,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Metric::Selected => "selected",
            Metric::End => "end",
            Metric::Last3 => "last3",
            Metric::Final => "final",
        }
    }
    /// The metric in words, for tables and sentences.
    pub fn describe(self, end_k: usize) -> String {
        match self {
            Metric::Selected => "test accuracy at the validation-selected epoch".into(),
            Metric::End => format!("mean test accuracy of the last {end_k} epochs"),
            Metric::Last3 => "mean test accuracy of the last 3 epochs".into(),
            Metric::Final => "test accuracy at the final epoch".into(),
        }
    }
    /// The run's value, where it is defined: the selected epoch exists for
    /// any run with a validated epoch (one that blew up later included),
    /// the others for runs that trained every epoch (collapsed ones
    /// included, diverged ones not). Without a validation split the
    /// selected epoch is the final one.
    pub fn of_run(self, run: &StoredRun, end_k: usize) -> Option<f64> {
        let m = RunMetrics::of(&run.rows, end_k)?;
        let complete = !run.diverged && run.rows.len() >= run.spec.config.epochs;
        let defined = complete || (self == Metric::Selected && m.val_acc.is_finite());
        defined.then(|| self.of(&m))
    }
}

/// A run's validation accuracy at its selected epoch; None without a
/// validation split or a selected epoch.
pub fn selected_val_acc(run: &StoredRun, end_k: usize) -> Option<f64> {
    RunMetrics::of(&run.rows, end_k)
        .map(|m| m.val_acc)
        .filter(|v| v.is_finite())
}

/// The configuration columns that open every CSV row: the label, then the
/// configuration flattened by [`TrainConfig::columns`]. The first column
/// after them is `seed` in `runs.csv` and `n` in `summary.csv`, which is how
/// `drop-exp check` finds them.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigCols {
    pub label: String,
    #[serde(flatten)]
    columns: serde_json::Map<String, serde_json::Value>,
    /// The configuration's identity, for code that reads rows.
    #[serde(skip)]
    pub key: ConfigKey,
}

impl ConfigCols {
    fn new(label: &str, key: &ConfigKey) -> Self {
        Self {
            label: label.to_string(),
            columns: key.config.columns(),
            key: key.clone(),
        }
    }
    /// The configuration itself.
    pub fn train(&self) -> &TrainConfig {
        &self.key.config
    }
}

/// One row of `runs.csv`: one epoch of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    #[serde(flatten)]
    config: ConfigCols,
    seed: u64,
    diverged: bool,
    #[serde(flatten)]
    epoch: EpochRow,
}

pub fn run_rows(runs: &[&StoredRun]) -> Vec<RunRow> {
    runs.iter()
        .flat_map(|r| {
            r.rows.iter().map(|e| RunRow {
                config: ConfigCols::new(&r.spec.label, &r.spec.config_key()),
                seed: r.spec.seed,
                diverged: r.diverged,
                epoch: e.clone(),
            })
        })
        .collect()
}

/// The runs of one configuration (all seeds), in seed order.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    /// How the configuration is written (presentation only).
    pub label: String,
    key: ConfigKey,
    pub runs: Vec<&'a StoredRun>,
    /// K of the end-of-training metric.
    end_k: usize,
}

impl Group<'_> {
    /// (seed, metrics) of the runs that neither diverged nor collapsed:
    /// what the accuracy statistics use.
    fn finished(&self) -> Vec<(u64, RunMetrics)> {
        self.completed()
            .into_iter()
            .filter(|(_, m)| m.final_acc > COLLAPSED_ACC)
            .collect()
    }
    /// (seed, metrics) of the runs that did not diverge.
    fn completed(&self) -> Vec<(u64, RunMetrics)> {
        self.runs
            .iter()
            .filter(|r| !r.diverged)
            .filter_map(|r| Some((r.spec.seed, RunMetrics::of(&r.rows, self.end_k)?)))
            .collect()
    }
    pub fn diverged(&self) -> usize {
        self.runs.iter().filter(|r| r.diverged).count()
    }
    /// Runs that did not diverge but ended at chance level (see [`COLLAPSED_ACC`]).
    pub fn collapsed(&self) -> usize {
        self.completed()
            .iter()
            .filter(|(_, m)| m.final_acc <= COLLAPSED_ACC)
            .count()
    }
    /// Whether these are runs of a confirmation on fresh seeds (see
    /// [`crate::record::FRESH_SEED_BASE`]).
    pub fn is_confirmation(&self) -> bool {
        self.key.round == Round::Confirmation
    }
    /// Whether this is the configuration `key`.
    pub fn is(&self, key: &ConfigKey) -> bool {
        &self.key == key
    }
    /// The configuration's key.
    pub fn key(&self) -> &ConfigKey {
        &self.key
    }
    /// The configuration itself.
    pub fn config(&self) -> &TrainConfig {
        &self.key.config
    }
    /// Runs with at least one training-loss spike, diverged runs included.
    pub fn spiked(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| r.diverged || spikes(&r.rows) > 0)
            .count()
    }
    /// Runs that diverged or collapsed.
    pub fn failed(&self) -> usize {
        self.diverged() + self.collapsed()
    }
    /// Runs whose training loss blew up (see [`SPIKE_FACTOR`]) and that
    /// went on to finish every epoch: blow-ups that recovered (collapsed
    /// ones included).
    pub fn recovered(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| !r.diverged && spikes(&r.rows) > 0)
            .count()
    }
    /// `metric` of every run for which it is defined (see [`Metric::of_run`]).
    fn values(&self, metric: Metric) -> Vec<f64> {
        self.by_seed(metric).into_iter().map(|(_, v)| v).collect()
    }
    /// (seed, value) of every run for which `metric` is defined.
    fn by_seed(&self, metric: Metric) -> Vec<(u64, f64)> {
        self.runs
            .iter()
            .filter_map(|r| Some((r.spec.seed, metric.of_run(r, self.end_k)?)))
            .collect()
    }
    /// `f` per epoch, its mean over the runs that did not diverge
    /// (collapsed ones included: they trained every epoch), with its 95% CI.
    pub fn curve(&self, f: impl Fn(&EpochRow) -> f64) -> Vec<(usize, Estimate)> {
        let runs: Vec<_> = self.runs.iter().filter(|r| !r.diverged).collect();
        let epochs = runs.iter().map(|r| r.rows.len()).min().unwrap_or(0);
        (0..epochs)
            .map(|e| {
                let xs: Vec<f64> = runs.iter().map(|r| f(&r.rows[e])).collect();
                (e + 1, Estimate::of(&xs))
            })
            .collect()
    }
}

/// Groups runs by configuration key (configuration and round), keeping
/// first-appearance order; a group is labelled as its first run is. `end_k`
/// is K of the end-of-training metric.
pub fn groups<'a>(runs: &[&'a StoredRun], end_k: usize) -> Vec<Group<'a>> {
    let mut out: Vec<Group<'a>> = Vec::new();
    for r in runs {
        let key = r.spec.config_key();
        match out.iter_mut().find(|g| g.is(&key)) {
            Some(g) => g.runs.push(r),
            None => out.push(Group {
                label: r.spec.label.clone(),
                key,
                runs: vec![r],
                end_k,
            }),
        }
    }
    for g in &mut out {
        g.runs.sort_by_key(|r| r.spec.seed);
    }
    out
}

/// One row of `summary.csv`: one configuration over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryRow {
    #[serde(flatten)]
    pub config: ConfigCols,
    /// Runs that finished without diverging or collapsing: the accuracy
    /// statistics below are over these.
    pub n: usize,
    /// Runs whose loss became NaN or infinite.
    pub n_diverged: usize,
    /// Runs that ended at chance level (final test accuracy <= 0.15).
    pub n_collapsed: usize,
    /// Runs that diverged or collapsed, as a fraction of all runs, with its
    /// 95% Clopper-Pearson interval.
    pub failed_rate: f64,
    pub failed_ci_low: f64,
    pub failed_ci_high: f64,
    /// Runs with at least one training-loss spike (diverged runs included),
    /// with the same interval: how often the run blew up, recovered or not.
    pub n_spiked: usize,
    spiked_ci_low: f64,
    spiked_ci_high: f64,
    /// Runs with a selected epoch (those that blew up later included): the
    /// `selected_*` statistics are over these.
    pub n_selected: usize,
    /// Test accuracy at the epoch selected on validation (the peak metric).
    pub selected_mean: f64,
    selected_sd: f64,
    pub selected_ci_low: f64,
    pub selected_ci_high: f64,
    pub selected_epoch_mean: f64,
    pub val_acc_mean: f64,
    /// Runs that trained every epoch (collapsed ones included): the `end_*`,
    /// `last3_*` and `final_*` statistics are over these.
    pub n_end: usize,
    /// K of the end-of-training metric.
    pub end_epochs: usize,
    /// Mean test accuracy of the last K epochs (the end-of-training metric).
    pub end_mean: f64,
    end_sd: f64,
    pub end_ci_low: f64,
    pub end_ci_high: f64,
    last3_mean: f64,
    last3_sd: f64,
    last3_ci_low: f64,
    last3_ci_high: f64,
    final_mean: f64,
    final_sd: f64,
    final_ci_low: f64,
    final_ci_high: f64,
    pub train_loss_mean: f64,
    train_loss_sd: f64,
    /// Evaluation-mode accuracy on the fixed training subset minus test
    /// accuracy, at the selected epoch.
    pub gap_mean: f64,
    gap_sd: f64,
}

pub fn summary(g: &Group) -> SummaryRow {
    let f = g.finished();
    // No interval from fewer than 3 runs.
    let rate_ci = |k: usize| {
        if g.runs.len() < stats::MIN_RUNS_FOR_INTERVAL {
            (f64::NAN, f64::NAN)
        } else {
            stats::clopper_pearson(k, g.runs.len(), 0.95)
        }
    };
    let failed_ci = rate_ci(g.failed());
    let spiked = g.spiked();
    let spiked_ci = rate_ci(spiked);
    // Each column over the runs its metric is defined for, as the
    // contrasts read it: the selected epoch's values over the runs with a
    // selected epoch (later blow-ups included), the final train loss over
    // the runs that trained every epoch (collapsed ones included).
    let over = |metric: Metric, get: fn(&RunMetrics) -> f64| {
        let xs: Vec<f64> = g
            .runs
            .iter()
            .filter(|r| metric.of_run(r, g.end_k).is_some())
            .filter_map(|r| RunMetrics::of(&r.rows, g.end_k))
            .map(|m| get(&m))
            .collect();
        Estimate::of(&xs)
    };
    let of = |m: Metric| Estimate::of(&g.values(m));
    let (sel, end, l3, fin) = (
        of(Metric::Selected),
        of(Metric::End),
        of(Metric::Last3),
        of(Metric::Final),
    );
    let (tl, gap) = (
        over(Metric::End, |m| m.train_loss),
        over(Metric::Selected, |m| m.gap),
    );
    SummaryRow {
        config: ConfigCols::new(&g.label, g.key()),
        n: f.len(),
        n_diverged: g.diverged(),
        n_collapsed: g.collapsed(),
        failed_rate: g.failed() as f64 / g.runs.len().max(1) as f64,
        failed_ci_low: failed_ci.0,
        failed_ci_high: failed_ci.1,
        n_spiked: spiked,
        spiked_ci_low: spiked_ci.0,
        spiked_ci_high: spiked_ci.1,
        n_selected: sel.n,
        selected_mean: sel.mean,
        selected_sd: sel.sd,
        selected_ci_low: sel.ci_low,
        selected_ci_high: sel.ci_high,
        selected_epoch_mean: over(Metric::Selected, |m| m.selected_epoch as f64).mean,
        val_acc_mean: over(Metric::Selected, |m| m.val_acc).mean,
        n_end: end.n,
        end_epochs: g.end_k,
        end_mean: end.mean,
        end_sd: end.sd,
        end_ci_low: end.ci_low,
        end_ci_high: end.ci_high,
        last3_mean: l3.mean,
        last3_sd: l3.sd,
        last3_ci_low: l3.ci_low,
        last3_ci_high: l3.ci_high,
        final_mean: fin.mean,
        final_sd: fin.sd,
        final_ci_low: fin.ci_low,
        final_ci_high: fin.ci_high,
        train_loss_mean: tl.mean,
        train_loss_sd: tl.sd,
        gap_mean: gap.mean,
        gap_sd: gap.sd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize, loss: f64, test: f64, val: Option<f64>) -> EpochRow {
        EpochRow {
            epoch,
            train_loss: loss,
            train_acc: 0.0,
            test_loss: 0.0,
            test_acc: test,
            val_loss: val.map(|_| 0.0),
            val_acc: val,
            train_eval_acc: test + 0.05,
            train_seconds: 0.0,
            seconds: 0.0,
        }
    }

    /// The epoch is chosen on validation (the earliest of equal bests), and
    /// the peak metric is the test accuracy there, not the best test accuracy.
    #[test]
    fn epoch_is_selected_on_validation_not_test() {
        let rows = [
            row(1, 1.0, 0.70, Some(0.71)),
            row(2, 0.9, 0.90, Some(0.80)), // best test accuracy
            row(3, 0.8, 0.85, Some(0.85)), // best validation accuracy
            row(4, 0.7, 0.86, Some(0.85)), // a tie: the earlier one stays
        ];
        let m = RunMetrics::of(&rows, 2).unwrap();
        assert_eq!(m.selected_epoch, 3);
        assert_eq!(m.selected, 0.85);
        assert_eq!(m.val_acc, 0.85);
        assert!((m.gap - 0.05).abs() < 1e-12);
        assert!((m.last3 - (0.90 + 0.85 + 0.86) / 3.0).abs() < 1e-12);
        assert!((m.end - (0.85 + 0.86) / 2.0).abs() < 1e-12);
        assert_eq!(m.final_acc, 0.86);
    }

    /// Without a validation split nothing is selected: the final epoch.
    #[test]
    fn without_validation_the_final_epoch_is_the_peak() {
        let rows = [
            row(1, 1.0, 0.70, None),
            row(2, 0.9, 0.90, None),
            row(3, 0.8, 0.8, None),
        ];
        let m = RunMetrics::of(&rows, 2).unwrap();
        assert_eq!((m.selected_epoch, m.selected), (3, 0.8));
        assert!(m.val_acc.is_nan());
    }

    /// A jump of more than half counts as a spike, a NaN loss too; a small
    /// rise does not.
    #[test]
    fn loss_spikes_are_counted() {
        let losses = [1.0, 0.9, 0.95, 2.0, 0.5, f64::NAN];
        let rows: Vec<EpochRow> = losses
            .iter()
            .enumerate()
            .map(|(i, &l)| row(i + 1, l, 0.5, None))
            .collect();
        assert_eq!(spikes(&rows), 2);
        assert_eq!(spikes(&rows[..3]), 0);
    }
}
