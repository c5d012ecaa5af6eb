//! Exercise 5's answer in words: the tuned weight decays, the primary
//! contrasts on fresh seeds, whether the interaction's margin is finer than
//! the effects it qualifies, and the book's rate's blow-ups.

use super::CompareWd;
use crate::experiments::markdown::short;
use crate::experiments::Finished;
use crate::output::plot;

impl CompareWd {
    pub(super) fn answer(&self, r: &Finished) -> String {
        let lr = self.stable_lr();
        let book = self.settings.lrs[0];
        let k = r.end_k();
        let grid = self.decays_text();
        let (Some(w_off), Some(w_on)) = (self.tuned(r, false, lr), self.tuned(r, true, lr)) else {
            return format!("Without a validation split no weight decay is chosen (the test set never chooses), so the accuracy questions are not asked; {}", self.blowup_sentence(r));
        };
        let sci = plot::scientific;
        let mut s = format!(
            "Weight decay tuned on validation over {grid} (mean validation accuracy of the last {k} epochs): wd={} without dropout and wd={} with it at lr {lr}. Retrained on fresh seeds, at lr {lr}, on the mean test accuracy of the last {k} epochs: weight decay alone minus neither {}; both together minus neither {}; dropout minus weight decay {}; interaction (do the gains add up?) {}. {}",
            sci(w_off),
            sci(w_on),
            short(r.contrast("wd")),
            short(r.contrast("both")),
            short(r.contrast("dropout_vs_wd")),
            short(r.contrast("interaction")),
            self.resolution(r),
        );
        if let Some(c) = r.contrast("wd_with_dropout_book") {
            s += &format!(
                " At the book's lr {book}, adding weight decay (wd={}, tuned) to dropout, on the same metric: {}.",
                self.tuned(r, true, book).map_or("?".into(), sci),
                short(Some(c))
            );
        }
        s += " ";
        s += &self.blowup_sentence(r);
        s
    }

    /// Whether the interaction's margin is finer than the main effects it
    /// qualifies (dropout and weight decay alone, on the fresh seeds).
    fn resolution(&self, r: &Finished) -> String {
        let (Some(i), Some(d), Some(w)) = (
            r.contrast("interaction"),
            r.contrast("dropout"),
            r.contrast("wd"),
        ) else {
            return String::new();
        };
        let margin = i.sesoi.unwrap_or(f64::NAN);
        let pts = |x: f64| format!("{:+.2}", 100.0 * x);
        let small: Vec<String> = [("dropout", d), ("weight decay", w)]
            .iter()
            .filter(|(_, c)| c.estimate.is_nan() || c.estimate.abs() <= margin)
            .map(|(n, c)| format!("{n}'s ({} points)", pts(c.estimate)))
            .collect();
        if small.is_empty() {
            format!(
                "The interaction's margin, ±{:.2} points, is smaller than both main effects (dropout alone {} points, weight decay alone {} points, exploratory estimates on the same seeds).",
                100.0 * margin,
                pts(d.estimate),
                pts(w.estimate)
            )
        } else {
            format!(
                "The interaction's margin, ±{:.2} points, is not smaller than {} main effect: whether the gains add up cannot be told more finely.",
                100.0 * margin,
                small.join(" and ")
            )
        }
    }

    /// The book's rate: how often training blew up.
    fn blowup_sentence(&self, r: &Finished) -> String {
        let book = self.settings.lrs[0];
        let Some(c) = r.contrast("wd_blowups") else {
            return String::new();
        };
        let spiked = |d: bool| {
            let gs: Vec<_> = r
                .groups
                .iter()
                .filter(|g| !g.is_confirmation() && g.config().lr == book)
                .filter(|g| g.config().layers.iter().any(|l| l.p() > 0.0) == d)
                .collect();
            (
                gs.iter().map(|g| g.spiked()).sum::<usize>(),
                gs.iter().map(|g| g.runs.len()).sum::<usize>(),
            )
        };
        let ((k0, n0), (k1, n1)) = (spiked(false), spiked(true));
        format!(
            "At lr {book}, {k0} of {n0} runs without dropout blew up (a loss spike, divergence or collapse) and {k1} of {n1} with it; the share without dropout, weight decay minus none: {}; with weight decay on, dropout minus none: {}.",
            short(Some(c)),
            short(r.contrast("dropout_blowups_with_wd"))
        )
    }
}
