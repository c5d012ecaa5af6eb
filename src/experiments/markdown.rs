//! Markdown for verdicts: the summary table, the note on seeds and data,
//! and the verdict file with its notes on diverged and collapsed runs.

use anyhow::Result;

use super::{Common, Finished};
use crate::analysis::{Metric, SummaryRow, COLLAPSED_ACC};
use crate::output::write_atomic;
use crate::stats;
use crate::verdict::{describe, p_text, Comparison, Verdict, ALPHA};

/// Writes a verdict file: the exercise's text, then how stable the runs
/// were (diverged and collapsed runs, counted with an interval, and tested
/// between compared configurations), then a note on what every interval
/// covers.
pub fn write_verdict(r: &Finished, answer: String, text: &str) -> Result<String> {
    // The exercise's own heading, then the answer, then the rest.
    let (head, rest) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut text = format!("{head}\n\n**Answer.** {answer}\n\n{rest}");
    text += &precision(r);
    text += &stability(r);
    text += "\n**Intervals and tests.** Each 95% interval covers the spread between seeds (the test set's own sampling error, about ±0.7 points at 85% accuracy on 10000 images, comes on top); none is given from fewer than 3 runs. Comparisons are paired by seed; their p-values are Holm-adjusted over the exercise's comparisons of one metric; equivalence is two one-sided tests at the stated margin. ";
    text += "Verdicts: **better**/**worse** (different after correction), **equivalent** (within the margin), **undecided** (neither, with the seeds that would decide it).\n";
    write_atomic(&r.out.join("verdict.md"), text.as_bytes())?;
    Ok(answer)
}

/// With a precision target (`target_ci`): whether the primary comparisons
/// reached it.
fn precision(r: &Finished) -> String {
    let Some(target) = r.common.target_ci else {
        return String::new();
    };
    let p = crate::verdict::Precision::of(&r.comparisons, target / 100.0);
    let widest = p.widest_text();
    let reached = if p.widest <= target / 100.0 {
        "the target is reached".to_string()
    } else if !p.widest.is_finite() {
        "short of the target (where a configuration's runs diverge or collapse, more seeds add few finished runs)".to_string()
    } else {
        format!(
            "short of the target; about {} seeds would reach it at the measured spread",
            p.seeds_needed
        )
    };
    format!(
        "\n**Precision.** Target: every primary 95% CI within ±{target} points. With {} seeds {widest}: {reached}.\n",
        r.common.seeds
    )
}

/// A comparison in a few words: "+0.55 points (95% CI -0.54 to +1.65):
/// undecided, ~14 seeds would decide".
pub fn short(c: &Comparison) -> String {
    if c.test.n == 0 {
        return "no run finished on one side: nothing to compare".into();
    }
    if c.test.n < stats::MIN_RUNS_FOR_INTERVAL {
        return format!(
            "{} points from {} runs: too few to decide",
            crate::verdict::pts(c.test.diff),
            c.test.n
        );
    }
    let verdict = match (c.verdict, c.seeds_to_decide) {
        (Verdict::Undecided, Some(n)) => format!("undecided, ~{n} seeds would decide"),
        (Verdict::Equivalent, _) => format!("equivalent within ±{:.2}", 100.0 * c.margin),
        (v, _) => v.to_string(),
    };
    format!(
        "{} points (95% CI {} to {}): **{verdict}**",
        crate::verdict::pts(c.test.diff),
        crate::verdict::pts(c.test.ci_low),
        crate::verdict::pts(c.test.ci_high)
    )
}

/// "2 better, 1 worse, 3 equivalent, 4 undecided" of `comps`.
pub fn tally(comps: &[&Comparison]) -> String {
    let count = |v: Verdict| comps.iter().filter(|c| c.verdict == v).count();
    format!(
        "{} better, {} worse, {} equivalent, {} undecided",
        count(Verdict::Better),
        count(Verdict::Worse),
        count(Verdict::Equivalent),
        count(Verdict::Undecided)
    )
}

/// The section on diverged and collapsed runs ("" when there were none).
fn stability(r: &Finished) -> String {
    if r.groups.iter().all(|g| g.failed() == 0) {
        return String::new();
    }
    let mut s = format!(
        "\n## Stability\n\nA run **diverged** when its loss stopped being a finite number; it **collapsed** when it finished at chance level (final test accuracy at most {:.0}%, its loss stuck near ln 10 after a blow-up). Both are outcomes, not noise: they are counted here and left out of the accuracy statistics above, which use the runs that finished without either.\n\n| configuration | runs | diverged | collapsed | failed (95% CI) |\n|---|---|---|---|---|\n",
        100.0 * COLLAPSED_ACC
    );
    for row in &r.summary {
        let runs = row.n + row.n_diverged + row.n_collapsed;
        let ci = if row.failed_ci_low.is_nan() {
            "too few runs for an interval".to_string()
        } else {
            format!(
                "{:.0} to {:.0}",
                100.0 * row.failed_ci_low,
                100.0 * row.failed_ci_high
            )
        };
        s += &format!(
            "| {} | {runs} | {} | {} | {:.0}% ({ci}) |\n",
            row.config.label,
            row.n_diverged,
            row.n_collapsed,
            100.0 * row.failed_rate,
        );
    }
    let mut tested = Vec::new();
    for c in r
        .comparisons
        .iter()
        .filter(|c| c.metric == Metric::HEADLINE)
    {
        let (ga, gb) = (r.group(&c.a), r.group(&c.b));
        let (fa, fb) = (ga.failed() as u64, gb.failed() as u64);
        if fa == fb {
            continue;
        }
        let (na, nb) = (ga.runs.len() as u64, gb.runs.len() as u64);
        let p = stats::fisher_exact(fa, na - fa, fb, nb - fb);
        tested.push(format!(
            "- {} ({fa} of {na} failed) vs {} ({fb} of {nb}): Fisher's exact test p = {}{}.",
            c.a,
            c.b,
            p_text(p),
            if p < ALPHA {
                ": the failure rates differ"
            } else {
                ": no difference shown with this many runs"
            }
        ));
    }
    if !tested.is_empty() {
        s += &format!(
            "\nWhere compared configurations fail at different rates:\n\n{}\n",
            tested.join("\n")
        );
    }
    s
}

/// A markdown table of the summary rows (headline metric first).
pub fn summary_table(rows: &[SummaryRow]) -> String {
    let mut s = String::from(
        "| configuration | n | failed | test acc at the epoch selected on validation (95% CI) | epoch | last 3 epochs (± sd) | final epoch (± sd) | train loss | gap (train - test, eval mode) |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let ci = if r.selected_ci_low.is_nan() {
            "too few runs for an interval".to_string()
        } else {
            format!(
                "{:.2} to {:.2}",
                100.0 * r.selected_ci_low,
                100.0 * r.selected_ci_high
            )
        };
        let sd = |x: f64| {
            if x.is_nan() {
                String::new()
            } else {
                format!(" ± {:.2}", 100.0 * x)
            }
        };
        if r.n == 0 {
            s += &format!(
                "| {} | 0 | {} | no run finished | | | | | |\n",
                r.config.label,
                r.n_diverged + r.n_collapsed
            );
            continue;
        }
        s += &format!(
            "| {} | {} | {} | {:.2}% ({ci}) | {:.1} | {:.2}%{} | {:.2}%{} | {:.4} | {:+.2} |\n",
            r.config.label,
            r.n,
            r.n_diverged + r.n_collapsed,
            100.0 * r.selected_mean,
            r.selected_epoch_mean,
            100.0 * r.last3_mean,
            sd(r.last3_sd),
            100.0 * r.final_mean,
            sd(r.final_sd),
            r.train_loss_mean,
            100.0 * r.gap_mean
        );
    }
    s += "\n(n: runs that finished without diverging or collapsing, which the accuracies use; epoch: mean selected epoch; ± is one sd over seeds; gap: evaluation-mode accuracy on a fixed subset of 5000 training images minus test accuracy, at the selected epoch.)\n";
    s
}

/// The seeds note for verdicts: seeds (and how they were chosen), epochs,
/// lr, batch, data and the headline metric.
pub fn seeds_note(c: &Common) -> String {
    let seeds = match (c.target_ci, c.max_seeds) {
        (Some(h), Some(max)) => format!(
            "{} seeds (added in rounds until every primary 95% CI was within ±{h} points, at most {max})",
            c.seeds
        ),
        (Some(h), None) => format!("{} seeds (target ±{h} points)", c.seeds),
        _ => format!("{} seeds", c.seeds),
    };
    let headline = if c.validation > 0 {
        format!(
            "headline metric: test accuracy at each run's epoch of best validation accuracy ({} training images held out for validation)",
            c.validation
        )
    } else {
        "headline metric: test accuracy at the final epoch (no validation split, so no epoch is selected)".to_string()
    };
    format!(
        "{seeds}, {} epochs, lr {}, batch {}{}; {headline}",
        c.base.epochs,
        c.base.lr,
        c.base.batch_size,
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

/// The comparisons of one metric grouped by verdict, as a list: how many of
/// each, then each one described. `name` names b in each line.
pub fn verdict_list(comps: &[&Comparison], name: impl Fn(&Comparison) -> String) -> String {
    let count = |v: Verdict| comps.iter().filter(|c| c.verdict == v).count();
    let mut s = format!(
        "Of {} comparisons: {} better, {} worse, {} equivalent, {} undecided.\n\n",
        comps.len(),
        count(Verdict::Better),
        count(Verdict::Worse),
        count(Verdict::Equivalent),
        count(Verdict::Undecided)
    );
    for v in [
        Verdict::Better,
        Verdict::Worse,
        Verdict::Equivalent,
        Verdict::Undecided,
    ] {
        for c in comps.iter().filter(|c| c.verdict == v) {
            s += &format!("- {}: {}.\n", name(c), describe(c));
        }
    }
    s
}
