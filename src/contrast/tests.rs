use super::*;
use crate::analysis::groups;
use crate::config::TrainConfig;
use crate::record::EpochRow;
use crate::record::{RunSpec, StoredRun};

/// A run of `epochs` epochs whose test (and validation) accuracy is `acc`
/// at every epoch, its loss falling; `diverged` cuts it after epoch 2.
fn run(label: &str, seed: u64, acc: f64, epochs: usize, diverged: bool) -> StoredRun {
    let n = if diverged { 2 } else { epochs };
    let rows = (1..=n)
        .map(|epoch| EpochRow {
            epoch,
            train_loss: if diverged && epoch == n {
                f64::NAN
            } else {
                1.0 / epoch as f64
            },
            train_acc: acc,
            test_loss: 0.5,
            test_acc: acc,
            val_loss: Some(0.5),
            val_acc: Some(if diverged && epoch == n {
                f64::NAN
            } else {
                acc
            }),
            train_eval_acc: acc + 0.01 * epoch as f64,
            train_seconds: 0.0,
            seconds: 0.0,
        })
        .collect();
    StoredRun {
        spec: RunSpec {
            label: label.into(),
            config: TrainConfig {
                epochs,
                ..key(label).config
            },
            seed,
        },
        data_digest: String::new(),
        diverged,
        rows,
        extra: serde_json::Value::Null,
        drop_exp_version: String::new(),
        device: String::new(),
        threads: 1,
        finished_at: String::new(),
    }
}

/// A distinct configuration per name (its batch size), of 4 epochs.
fn key(name: &str) -> ConfigKey {
    let batch_size = name.bytes().fold(1, |h, b| h * 131 + b as usize) % 100_000;
    ConfigKey::sweep(TrainConfig {
        batch_size,
        epochs: 4,
        ..TrainConfig::default()
    })
}

fn no_probe(_: &StoredRun, _: &ProbeMeasure) -> Option<f64> {
    None
}

fn ctx() -> Context<'static> {
    Context {
        end_k: 2,
        pilot_seeds: 5,
        max_seeds: Some(20),
        probe: &no_probe,
    }
}

/// Runs of configuration `label`: one per seed, `acc(seed)`.
fn runs(label: &str, seeds: u64, acc: impl Fn(u64) -> f64) -> Vec<StoredRun> {
    (0..seeds)
        .map(|s| run(label, s, acc(s), 4, false))
        .collect()
}

fn peak() -> Measure {
    Measure::Accuracy(Metric::Selected)
}

/// A 2x2 main effect is the mean of the two differences, per seed: with
/// A's effect +2 points and B's 0, the estimate is +2 (exact, every seed),
/// decided "higher"; the other factor's is 0 within a tiny spread,
/// "equivalent".
#[test]
fn a_main_effect_is_a_per_seed_linear_contrast() {
    let jitter = |s: u64| 0.0001 * ((s * 7) % 5) as f64;
    let mut all = Vec::new();
    all.extend(runs("a0b0", 6, |s| 0.80 + jitter(s)));
    all.extend(runs("a0b1", 6, |s| {
        0.80 + jitter(s) + 0.0002 * (s % 2) as f64
    }));
    all.extend(runs("a1b0", 6, |s| 0.82 + jitter(s)));
    all.extend(runs("a1b1", 6, |s| {
        0.82 + jitter(s) + 0.0002 * (s % 2) as f64
    }));
    let refs: Vec<&StoredRun> = all.iter().collect();
    let gs = groups(&refs, 2);
    let main = |id: &str, terms: [(&str, f64); 4]| Contrast {
        id: id.into(),
        question: String::new(),
        estimand: None,
        terms: terms.iter().map(|(l, w)| (key(l), *w)).collect(),
        measure: peak(),
        sides: Sides::Two,
        sesoi: 0.005,
        role: Role::Primary,
    };
    let contrasts = [
        main(
            "a",
            [("a1b0", 0.5), ("a1b1", 0.5), ("a0b0", -0.5), ("a0b1", -0.5)],
        ),
        main(
            "b",
            [("a0b1", 0.5), ("a1b1", 0.5), ("a0b0", -0.5), ("a1b0", -0.5)],
        ),
    ];
    let rows = evaluate(&contrasts, &gs, &ctx()).unwrap();
    assert!((rows[0].estimate - 0.02).abs() < 1e-12);
    assert_eq!(rows[0].verdict, Some(Verdict::Higher));
    assert!((rows[1].estimate - 0.0001).abs() < 1e-12);
    assert_eq!(rows[1].verdict, Some(Verdict::Equivalent));
    assert_eq!(rows[0].n, 6);
    assert_eq!(
        rows[0].contrast,
        "0.5·a1b0 + 0.5·a1b1 − 0.5·a0b0 − 0.5·a0b1"
    );
}

/// Holm runs over the primary contrasts only: an exploratory row gets an
/// estimate and an interval, never a p-value or a verdict, and adding
/// exploratory rows does not change the primary ones' adjusted p.
#[test]
fn exploratory_rows_are_not_tested_and_do_not_dilute() {
    let mut all = Vec::new();
    let noisy = |s: u64| 0.003 * ((s * 5) % 3) as f64;
    all.extend(runs("a", 5, |s| 0.80 + noisy(s)));
    all.extend(runs("b", 5, |s| 0.806 + noisy((s + 1) % 5)));
    all.extend(runs("c", 5, |s| 0.81 + noisy((s + 2) % 5)));
    let refs: Vec<&StoredRun> = all.iter().collect();
    let gs = groups(&refs, 2);
    let primary = Contrast::difference("b_a", "", key("b"), key("a"), peak(), 0.005);
    let alone = evaluate(std::slice::from_ref(&primary), &gs, &ctx()).unwrap();
    let mut with = vec![primary];
    with.push(Contrast::exploratory(&gs[2], &gs[0], Metric::Selected));
    with.push(Contrast::exploratory(&gs[2], &gs[1], Metric::End));
    let rows = evaluate(&with, &gs, &ctx()).unwrap();
    assert_eq!(rows[0].p_holm, alone[0].p_holm);
    assert_eq!(rows[0].p_holm, rows[0].p);
    for r in &rows[1..] {
        assert_eq!(r.role, Role::Exploratory);
        assert!(r.p.is_none() && r.p_holm.is_none() && r.verdict.is_none());
        assert!(r.ci_low.is_some());
        assert!(r.seeds_80_detect.is_none());
    }
}

/// One-sided: no difference, measured tightly, is shown to fall short of
/// the effect of interest; a large one is "higher"; the p-value is
/// one-sided.
#[test]
fn one_sided_contrasts() {
    let mut all = Vec::new();
    let wobble = |s: u64| 0.0005 * ((s * 3) % 4) as f64;
    all.extend(runs("base", 8, |s| 0.80 + wobble(s)));
    all.extend(runs("small", 8, |s| {
        0.80 + wobble(s) + 0.001 * (s % 2) as f64 - 0.0005
    }));
    all.extend(runs("large", 8, |s| 0.83 + wobble((s + 1) % 8)));
    let refs: Vec<&StoredRun> = all.iter().collect();
    let gs = groups(&refs, 2);
    let contrasts = [
        Contrast::difference("small", "", key("small"), key("base"), peak(), 0.005).greater(),
        Contrast::difference("large", "", key("large"), key("base"), peak(), 0.005).greater(),
    ];
    let rows = evaluate(&contrasts, &gs, &ctx()).unwrap();
    assert_eq!(rows[0].verdict, Some(Verdict::ShortOfInterest));
    assert_eq!(rows[1].verdict, Some(Verdict::Higher));
    assert!(rows[1].p.unwrap() < 0.001);
    assert_eq!(rows[0].sides, Sides::Greater);
}

/// An undecided contrast gets a seed plan (more seeds than it has); a
/// decided one none; fewer than 3 seeds decide nothing.
#[test]
fn undecided_contrasts_get_a_plan() {
    let mut all = Vec::new();
    let spread = |s: u64| 0.01 * ((s * 7) % 5) as f64 - 0.02;
    all.extend(runs("a", 4, |_| 0.80));
    all.extend(runs("b", 4, |s| 0.80 + spread(s)));
    all.extend(runs("c", 4, |s| 0.85 + 0.0001 * s as f64));
    all.extend(runs("d", 2, |_| 0.9));
    let refs: Vec<&StoredRun> = all.iter().collect();
    let gs = groups(&refs, 2);
    let contrasts = [
        Contrast::difference("noisy", "", key("b"), key("a"), peak(), 0.005),
        Contrast::difference("clear", "", key("c"), key("a"), peak(), 0.005),
        Contrast::difference("two", "", key("d"), key("a"), peak(), 0.005),
    ];
    let rows = evaluate(&contrasts, &gs, &ctx()).unwrap();
    assert_eq!(rows[0].verdict, Some(Verdict::Undecided));
    let plan = rows[0].planned_seeds().unwrap();
    assert!(plan > 4, "{plan}");
    assert_eq!(rows[1].verdict, Some(Verdict::Higher));
    assert_eq!(rows[1].planned_seeds(), None);
    assert_eq!(rows[2].n, 2);
    assert_eq!(rows[2].verdict, Some(Verdict::Undecided));
    assert!(rows[2].ci_low.is_none() && rows[2].p.is_none());
    assert!(verdict_text(&rows[2]).contains("fewer than 3"));
    // The plan in words: still to carry out (4 seeds of a pilot of 5 here),
    // carried out, or stopped at the cap.
    assert!(verdict_text(&rows[0]).contains(&format!("(plan: {plan} seeds")));
    let mut after = rows[0].clone();
    after.pilot_seeds = 3;
    after.max_seeds = Some(30);
    assert!(verdict_text(&after).contains(&format!(
        "after its seed plan was carried out (4 seeds; at this spread 80% power needs {plan} seeds"
    )));
    after.max_seeds = Some(4);
    assert!(verdict_text(&after).contains("at the seed cap of 4: underpowered"));
    after.seeds_80_detect = Some(3);
    after.seeds_80_equiv = Some(4);
    assert!(verdict_text(&after).contains("4 seeds, which give 80% power"));
}

/// A run that diverged keeps its selected epoch (before the blow-up) in the
/// peak metric, has no end-of-training value, and counts as failed.
#[test]
fn a_diverged_run_keeps_its_selected_epoch() {
    let mut all = runs("a", 4, |_| 0.80);
    all.extend(runs("b", 3, |_| 0.81));
    all.push(run("b", 3, 0.79, 4, true));
    let refs: Vec<&StoredRun> = all.iter().collect();
    let gs = groups(&refs, 2);
    let contrasts = [
        Contrast::difference("peak", "", key("b"), key("a"), peak(), 0.005),
        Contrast::difference(
            "end",
            "",
            key("b"),
            key("a"),
            Measure::Accuracy(Metric::End),
            0.005,
        ),
    ];
    let rows = evaluate(&contrasts, &gs, &ctx()).unwrap();
    assert_eq!((rows[0].n, rows[0].missing, rows[0].failed), (4, 0, 1));
    assert_eq!((rows[1].n, rows[1].missing, rows[1].failed), (3, 1, 1));
}

/// Blow-up rates: counted over runs, Fisher's exact test, Newcombe's
/// interval; no seed plan.
#[test]
fn blow_up_rates_use_fisher() {
    let mut all = runs("stable", 5, |_| 0.8);
    all.extend((0..5).map(|s| run("wild", s, 0.8, 4, true)));
    let refs: Vec<&StoredRun> = all.iter().collect();
    let gs = groups(&refs, 2);
    let c = Contrast::difference("b", "", key("wild"), key("stable"), Measure::BlowUp, 0.0);
    let rows = evaluate(&[c], &gs, &ctx()).unwrap();
    let r = &rows[0];
    assert_eq!(r.estimate, 1.0);
    assert!((r.p.unwrap() - crate::stats::fisher_exact(5, 0, 0, 5)).abs() < 1e-12);
    assert!((r.ci_low.unwrap() - 0.3855490).abs() < 1e-6);
    assert_eq!(r.verdict, Some(Verdict::Higher));
    assert_eq!(r.planned_seeds(), None);
}

/// A contrast naming a configuration with no runs is an error naming it.
#[test]
fn a_missing_configuration_is_an_error() {
    let all = runs("a", 3, |_| 0.8);
    let refs: Vec<&StoredRun> = all.iter().collect();
    let gs = groups(&refs, 2);
    let c = Contrast::difference("x", "", key("nowhere"), key("a"), peak(), 0.005);
    let err = evaluate(&[c], &gs, &ctx()).unwrap_err().to_string();
    assert!(
        err.contains(&format!("`{}`", key("nowhere"))) && err.contains("configurations: a"),
        "{err}"
    );
}

/// A configuration is its key, not its label: runs of one configuration
/// stored under two labels form one group (written as the first), runs of
/// another configuration under the same label a group of their own, and a
/// confirmation's runs of a configuration (fresh seeds) a third. Contrasts
/// read groups by key and write them by label.
#[test]
fn configurations_are_found_by_key_and_written_by_label() {
    let relabel = |mut r: StoredRun, label: &str, seed: u64| {
        r.spec.label = label.into();
        r.spec.seed = seed;
        r
    };
    let mut all = runs("a", 3, |s| 0.80 + 0.001 * s as f64);
    all.extend((3..6).map(|s| {
        relabel(
            run("a", 0, 0.80 + 0.001 * s as f64, 4, false),
            "old name",
            s,
        )
    }));
    all.extend(
        runs("b", 6, |s| 0.81 + 0.001 * s as f64)
            .into_iter()
            .map(|r| {
                let seed = r.spec.seed;
                relabel(r, "a", seed)
            }),
    );
    let fresh = crate::record::FRESH_SEED_BASE;
    all.extend((0..3).map(|i| relabel(run("a", 0, 0.7, 4, false), "a [fresh]", fresh + i)));
    let refs: Vec<&StoredRun> = all.iter().collect();
    let gs = groups(&refs, 2);
    assert_eq!(gs.len(), 3);
    assert!(gs[0].is(&key("a")) && gs[0].label == "a" && gs[0].runs.len() == 6);
    assert!(gs[1].is(&key("b")) && gs[1].label == "a" && gs[1].runs.len() == 6);
    let confirming = ConfigKey::confirmation(key("a").config);
    assert!(gs[2].is(&confirming) && gs[2].is_confirmation() && !gs[2].is(&key("a")));
    let c = Contrast::difference("b_a", "", key("b"), key("a"), peak(), 0.005);
    let rows = evaluate(&[c], &gs, &ctx()).unwrap();
    assert_eq!((rows[0].n, rows[0].contrast.as_str()), (6, "a − a"));
    assert!((rows[0].estimate - 0.01).abs() < 1e-12);
    let c = Contrast::difference("fresh", "", confirming, key("a"), peak(), 0.005);
    let rows = evaluate(&[c], &gs, &ctx()).unwrap();
    assert_eq!(rows[0].contrast, "a [fresh] − a");
}

/// A primary row decided lower: `b` 2 points below `a` over 6 seeds.
fn clearly_lower() -> ContrastRow {
    let mut all = Vec::new();
    all.extend(runs("a", 6, |_| 0.80));
    all.extend(runs("b", 6, |s| 0.80 - 0.02 - 0.0001 * s as f64));
    let refs: Vec<&StoredRun> = all.iter().collect();
    let gs = groups(&refs, 2);
    let c = [Contrast::difference(
        "d",
        "",
        key("b"),
        key("a"),
        peak(),
        0.005,
    )];
    evaluate(&c, &gs, &ctx()).unwrap().remove(0)
}

/// A decided difference says how it compares with the smallest effect of
/// interest, read on its estimate and the end of its interval nearest 0.
#[test]
fn decided_verdicts_say_how_they_compare_with_the_effect_of_interest() {
    let row = clearly_lower();
    assert_eq!(row.verdict, Some(Verdict::Lower));
    let text = |lo: f64, hi: f64, est: f64| {
        let mut r = row.clone();
        (r.ci_low, r.ci_high, r.estimate) = (Some(lo), Some(hi), est);
        verdict_text(&r)
    };
    assert!(text(-0.03, -0.01, -0.02)
        .contains("lower (worse), by more than the smallest effect of interest (0.50 points)"));
    assert!(text(-0.006, -0.001, -0.004).contains("by less than the smallest effect of interest"));
    assert!(text(-0.012, -0.002, -0.007)
        .contains("its estimate exceeds the smallest effect of interest"));
    assert!(text(0.006, 0.03, 0.02).contains("by more than"));
}

/// One Holm correction over several exercises' primary contrasts: a
/// verdict decided within its exercise can become undecided.
#[test]
fn holm_across_exercises_counts_what_would_change() {
    let row = clearly_lower();
    let mut weak = row.clone();
    weak.p = Some(0.04);
    weak.p_equiv_raw = Some(0.5);
    // Alone, p = 0.04 decides; two of them and a third, clear contrast in
    // one family: Holm's steps give 0.04 x 2 for both.
    let (decided, lost) = holm_across(&[("one", &row), ("two", &weak), ("three", &weak)]);
    assert_eq!(decided, 3);
    assert_eq!(lost, vec!["two/d".to_string(), "three/d".to_string()]);
    assert_eq!(holm_across(&[("one", &row)]), (1, vec![]));
}

/// A run that diverged in its first epoch has no selected epoch, even
/// where its NaN weights scored a finite validation accuracy (chance); a
/// seed that one configuration never trained is not missing; a blow-up
/// that recovered is counted beside the failed runs.
#[test]
fn failures_are_counted_where_they_happened() {
    let mut all = runs("a", 6, |_| 0.80);
    all.extend(runs("b", 3, |_| 0.81));
    let mut first = run("b", 3, 0.10, 4, false);
    first.diverged = true;
    first.rows.truncate(1);
    first.rows[0].train_loss = f64::NAN;
    first.rows[0].val_acc = Some(0.10);
    all.push(first);
    let mut wild = run("b", 4, 0.81, 4, false);
    wild.rows[2].train_loss = 5.0;
    all.push(wild);
    let refs: Vec<&StoredRun> = all.iter().collect();
    let gs = groups(&refs, 2);
    let c = [Contrast::difference(
        "peak",
        "",
        key("b"),
        key("a"),
        peak(),
        0.005,
    )];
    let row = evaluate(&c, &gs, &ctx()).unwrap().remove(0);
    // Seeds 0-2 and 4 pair; seed 3 has no selected epoch (missing); seed 5
    // of `a` has no `b` run at all (not missing).
    assert_eq!((row.n, row.missing), (4, 1));
    assert_eq!(
        (row.failed, row.diverged, row.collapsed, row.recovered),
        (1, 1, 0, 1)
    );
    assert_eq!(
        crate::contrast::text::failed_text(&row),
        "1 (1 diverged); 1 blew up and recovered"
    );
    let s = crate::analysis::summary(gs.iter().find(|g| g.is(&key("b"))).unwrap());
    assert_eq!(s.n_selected, 4);
    assert!(
        (s.selected_mean - 0.81).abs() < 1e-12,
        "{}",
        s.selected_mean
    );
    assert!((s.val_acc_mean - 0.81).abs() < 1e-12);
}
