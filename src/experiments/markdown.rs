//! Markdown for verdicts: the summary table, the note on seeds and data,
//! and the verdict file with its notes on diverged and collapsed runs.

use anyhow::Result;

use super::{Common, Finished};
use crate::analysis::SummaryRow;
use crate::output::write_atomic;

/// Writes a verdict file, with a note on every configuration that diverged
/// for some seeds: how often, and what its numbers rest on instead.
pub fn write_verdict(r: &Finished, text: &str) -> Result<()> {
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

/// The seeds note for verdicts.
pub fn seeds_note(c: &Common) -> String {
    format!(
        "{} seeds, {} epochs, lr {}, batch {}{}",
        c.seeds,
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
