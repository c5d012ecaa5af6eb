//! Markdown for verdicts: the summary table, the note on seeds and data,
//! and the verdict file with its notes on diverged and collapsed runs.

use anyhow::Result;

use super::{Common, Finished};
use crate::analysis::{SummaryRow, COLLAPSED_ACC};
use crate::contrast::{self, ContrastRow};
use crate::output::write_atomic;

/// Writes a verdict file: the exercise's heading, the answer, its primary
/// contrasts (the table that decides), the exercise's own text, how stable
/// the runs were, and what every interval covers.
pub fn write_verdict(r: &Finished, answer: String, text: &str) -> Result<String> {
    // The exercise's own heading, then the answer, then the rest.
    let (head, rest) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut text = format!(
        "{head}\n\n**Answer.** {answer}\n\n{}{rest}",
        primary_section(r)
    );
    text += &exploratory_section(r);
    text += &stability(r);
    text += "\n**Intervals and tests.** Each 95% interval covers the spread between seeds (the test set's own sampling error, about ±0.7 points at 85% accuracy on 10000 images, comes on top); none is given from fewer than 3 runs. Primary contrasts are tested per seed (paired) or, for rates of blow-ups, with Fisher's exact test; their p-values are Holm-adjusted over this exercise's primary contrasts only; equivalence is two one-sided tests within ± the smallest effect of interest. Exploratory rows have no verdict. A seed plan (80% power at the smallest effect of interest, Bonferroni's level) is a plan for a new experiment, not a licence to add seeds until a verdict appears.\n";
    write_atomic(&r.out.join("verdict.md"), text.as_bytes())?;
    Ok(answer)
}

/// The table of primary contrasts, under its heading.
fn primary_section(r: &Finished) -> String {
    let primary = r.primary();
    if primary.is_empty() {
        return String::new();
    }
    let (before, total) = runs_before_declaration(r);
    let d = r.declared;
    let runs = match before {
        0 => format!("all {total} runs analysed here finished after that"),
        b if b == total => format!(
            "all {total} runs analysed here finished before that, while the questions were being \
             chosen: the verdicts rest on runs their questions were chosen after"
        ),
        b => format!(
            "{b} of the {total} runs analysed here finished before that, while the questions \
             were being chosen, the rest (seed plans, confirmations) after"
        ),
    };
    let before = match d.before {
        "" => String::new(),
        text => format!(" {text}"),
    };
    format!(
        "## Primary contrasts\n\nDeclared in commit {} ({}); {runs}.{before} Holm-adjusted over \
         these {} contrasts.\n\n{}\n",
        d.commit,
        d.at,
        primary.len(),
        contrast::primary_table(&primary)
    )
}

/// Of the runs analysed, how many finished before the primary contrasts
/// were declared, and how many there are.
pub fn runs_before_declaration(r: &Finished) -> (usize, usize) {
    let runs = r.groups.iter().flat_map(|g| g.runs.iter());
    let before = runs
        .clone()
        .filter(|run| run.finished_at.as_str() < r.declared.at)
        .count();
    (before, runs.count())
}

/// The exploratory contrasts: estimates and intervals, no verdicts.
fn exploratory_section(r: &Finished) -> String {
    let rows = r.exploratory();
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "\n## Exploratory comparisons\n\nEstimates and 95% intervals only, not tested: no verdict is drawn from them.\n\n{}",
        contrast::exploratory_list(&rows)
    )
}

/// A primary contrast in a few words: "+0.41 points (95% CI -0.10 to
/// +0.92): **undecided (plan: 14 seeds for 80% power)**", or that it is
/// missing.
pub fn short(c: Option<&ContrastRow>) -> String {
    match c {
        Some(c) if c.verdict.is_some() => format!(
            "{}: **{}**",
            contrast::estimate_text(c),
            contrast::verdict_text(c)
        ),
        Some(c) => contrast::estimate_text(c),
        None => "not measured in this sweep".into(),
    }
}

/// The section on diverged and collapsed runs ("" when there were none).
fn stability(r: &Finished) -> String {
    if r.groups.iter().all(|g| g.failed() == 0) {
        return String::new();
    }
    let mut s = format!(
        "\n## Stability\n\nA run **diverged** when its loss stopped being a finite number; it **collapsed** when it finished at chance level (final test accuracy at most {:.0}%, its loss stuck near ln 10 after a blow-up). Both are outcomes, not noise: they are counted here; the peak metric keeps a run that blew up after its selected epoch, the end-of-training metric keeps a collapsed run (at its low accuracy), and a diverged run has no end-of-training value.\n\n| configuration | runs | diverged | collapsed | failed (95% CI) |\n|---|---|---|---|---|\n",
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
    s
}

/// `f(x)`, or a dash where there is no value.
fn num(x: f64, f: impl Fn(f64) -> String) -> String {
    if x.is_finite() {
        f(x)
    } else {
        "—".into()
    }
}

/// A markdown table of the summary rows (the peak metric first).
pub fn summary_table(rows: &[SummaryRow]) -> String {
    let k = rows.first().map_or(0, |r| r.end_epochs);
    let mut s = format!(
        "| configuration | runs | failed | test accuracy at the validation-selected epoch (95% CI) | selected epoch | mean test accuracy of the last {k} epochs (95% CI) | train loss | gap (train − test, eval mode) |\n|---|---|---|---|---|---|---|---|\n",
    );
    let ci = |n: usize, lo: f64, hi: f64| {
        if lo.is_nan() {
            format!("n = {n}, too few for an interval")
        } else {
            format!("{:.2} to {:.2}", 100.0 * lo, 100.0 * hi)
        }
    };
    let pct = |x: f64| {
        if x.is_nan() {
            "—".to_string()
        } else {
            format!("{:.2}%", 100.0 * x)
        }
    };
    for r in rows {
        let failed = r.n_diverged + r.n_collapsed;
        s += &format!(
            "| {} | {} | {} | {} ({}) | {} | {} ({}) | {} | {} |\n",
            r.config.label,
            r.n + failed,
            failed,
            pct(r.selected_mean),
            ci(r.n_selected, r.selected_ci_low, r.selected_ci_high),
            num(r.selected_epoch_mean, |x| format!("{x:.1}")),
            pct(r.end_mean),
            ci(r.n_end, r.end_ci_low, r.end_ci_high),
            num(r.train_loss_mean, |x| format!("{x:.4}")),
            num(r.gap_mean, |x| format!("{:+.2}", 100.0 * x))
        );
    }
    s += "\n(runs: all runs; failed: diverged or collapsed. The peak metric is over the runs with a selected epoch, the end-of-training one over those that trained every epoch; train loss and gap (evaluation-mode accuracy on a fixed subset of 5000 training images minus test accuracy, at the selected epoch) over the runs that neither diverged nor collapsed.)\n";
    s
}

/// The seeds note for verdicts: seeds (and how they were planned), epochs,
/// lr, batch, data and the metrics.
pub fn seeds_note(c: &Common) -> String {
    let seeds = match (c.plan_seeds, c.max_seeds) {
        (true, Some(max)) if max > c.seeds => format!(
            "{} seeds, and for the configurations of primary contrasts undecided after them, the seeds planned for 80% power (at most {max})",
            c.seeds
        ),
        _ => format!("{} seeds", c.seeds),
    };
    let peak = if c.validation > 0 {
        format!(
            "peak metric: test accuracy at each run's epoch of best validation accuracy ({} training images held out)",
            c.validation
        )
    } else {
        "peak metric: test accuracy at the final epoch (no validation split, so no epoch is selected)".to_string()
    };
    format!(
        "{seeds}, {} epochs, lr {}, batch {}{}; {peak}; end-of-training metric: mean test accuracy of the last {} epochs",
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
        },
        c.end_k()
    )
}
