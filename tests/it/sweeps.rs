//! The sweep commands, end to end on the hidden `--synthetic`
//! dataset: outputs, resume after kill -9, shards + merge, jobs, config
//! validation, divergence.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use predicates::str::contains;
use tempfile::TempDir;

use crate::util::{bin, png_size, read, without_timing};

/// A small swap-rates sweep: 3 configurations x 2 seeds x 3 epochs.
const SMALL: &[&str] = &[
    "--synthetic",
    "--validation",
    "200",
    // All 1,000 of the rest: `longer` trains on a subset of its own.
    "--train-subset",
    "1000",
    "--seeds",
    "2",
    "--epochs",
    "3",
    "--batch-size",
    "64",
];

fn swap(out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    bin()
        .arg("swap-rates")
        .args(SMALL)
        .args(["--grid", "0,0.5", "--out"])
        .arg(out)
        .args(extra)
        .assert()
}

fn assert_outputs(dir: &Path, pngs: &[&str]) {
    for f in [
        "runs.csv",
        "summary.csv",
        "comparisons.csv",
        "verdict.md",
        "sweep.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    for p in pngs {
        // A figure of many rows grows taller; none is smaller.
        let (w, h) = png_size(&dir.join(p));
        assert!(w == 1200 && h >= 800, "{p}: {w}x{h}");
        let svg = dir.join(p).with_extension("svg");
        assert!(read(&svg).starts_with("<svg"), "{}", svg.display());
    }
    let verdict = read(&dir.join("verdict.md"));
    assert!(!verdict.contains("NaN"), "a verdict shows NaN:\n{verdict}");
}

fn same_outputs(a: &Path, b: &Path) {
    for f in ["runs.csv", "summary.csv", "comparisons.csv"] {
        assert_eq!(
            without_timing(&a.join(f)),
            without_timing(&b.join(f)),
            "{f} differs"
        );
    }
    assert_eq!(read(&a.join("verdict.md")), read(&b.join("verdict.md")));
}

#[test]
fn swap_rates_end_to_end_with_grid() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("s");
    swap(&out, &[]).success();
    assert_outputs(
        &out,
        &["accuracy.png", "curves.png", "heatmap.png", "effects.png"],
    );
    // 4 configurations (2x2 grid) x 2 seeds x 3 epochs, plus the header.
    assert_eq!(read(&out.join("runs.csv")).lines().count(), 1 + 4 * 2 * 3);
    assert_eq!(read(&out.join("summary.csv")).lines().count(), 1 + 4);
    let verdict = read(&out.join("verdict.md"));
    // The swap and both main effects are the primary contrasts; the other
    // configurations against the reference are exploratory.
    assert!(verdict.contains("## Primary contrasts"), "{verdict}");
    assert!(verdict.contains("p=(0.5,0) − p=(0,0.5)"), "{verdict}");
    let comparisons = read(&out.join("comparisons.csv"));
    for id in ["swap", "p1_main", "p2_main"] {
        assert!(
            comparisons.contains(&format!("primary,{id},")),
            "{id}: {comparisons}"
        );
    }
    assert!(comparisons.contains("exploratory,"), "{comparisons}");
    assert!(comparisons.starts_with("role,id,question,contrast,metric,"));
}

#[test]
fn longer_end_to_end() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("l");
    bin()
        .arg("longer")
        .args(SMALL)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    assert_outputs(&out, &["curves.png", "loss.png", "gap.png", "effects.png"]);
    let verdict = read(&out.join("verdict.md"));
    assert!(verdict.contains("## Stability"), "{verdict}");
    assert!(
        verdict.contains("gap (evaluation-mode train minus test accuracy"),
        "{verdict}"
    );
    // Both pairs at each of the default learning rates 0.5 and 0.05.
    let summary = read(&out.join("summary.csv"));
    assert_eq!(summary.lines().count(), 1 + 2 * 2);
    for lr in ["lr=0.5", "lr=0.05"] {
        assert!(summary.contains(&format!("p=(0,0) {lr}")), "{summary}");
    }
    // The declared questions, and whether the runs reached the regime
    // they are about.
    let comparisons = read(&out.join("comparisons.csv"));
    for id in ["peak", "end", "gap_growth", "blowups"] {
        assert!(
            comparisons.contains(&format!("primary,{id},")),
            "{id}: {comparisons}"
        );
    }
    assert!(
        verdict.contains("the network without dropout does not reach the overfitting regime"),
        "3 epochs cannot overfit: {verdict}"
    );
    assert!(verdict.contains("Declared in commit e944935"), "{verdict}");
}

#[test]
fn compare_wd_end_to_end() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("w");
    bin()
        .arg("compare-wd")
        .args(SMALL)
        .args(["--weight-decays", "1e-3", "--out"])
        .arg(&out)
        .assert()
        .success();
    assert_outputs(&out, &["wd.png", "curves.png", "effects.png"]);
    // The questions, declared: on fresh seeds at the tuned weight decay,
    // at the smallest rate, weight decay, both, dropout against weight
    // decay and the interaction, and at the book's, adding weight decay to
    // dropout; on the main sweep, the blow-up rates.
    let comparisons = read(&out.join("comparisons.csv"));
    for id in [
        "wd",
        "both",
        "dropout_vs_wd",
        "interaction",
        "wd_with_dropout_book",
        "wd_blowups",
        "dropout_blowups_with_wd",
    ] {
        assert!(
            comparisons.contains(&format!("primary,{id},")),
            "{id}: {comparisons}"
        );
    }
    // Each value of the grid, exploratory.
    assert!(
        comparisons.contains("exploratory,interaction wd=1e-3 lr=0.1,"),
        "{comparisons}"
    );
    // The interaction's margin is half the others'.
    let verdict = read(&out.join("verdict.md"));
    assert!(
        verdict.contains("equivalent within ±0.25") || verdict.contains("±0.25 points"),
        "{verdict}"
    );
    assert!(
        verdict.contains("tuned on validation over wd ∈ {1e-3}"),
        "{verdict}"
    );
    // 0 is added as the baseline: 2 dropout settings x 2 weight decays x
    // the 2 learning rates of compare-wd.toml; then the confirmation, on
    // fresh seeds: 4 configurations at lr 0.1 (one weight decay tuned for
    // both settings) and 2 at lr 0.5.
    let summary = read(&out.join("summary.csv"));
    assert_eq!(summary.lines().count(), 1 + 8 + 6, "{summary}");
    assert_eq!(summary.matches("[fresh seeds]").count(), 6, "{summary}");
}

#[test]
fn rerun_reuses_finished_runs_and_force_redoes_them() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("s");
    swap(&out, &[]).success();
    let before = read(&out.join("runs.csv"));
    // A rerun trains nothing: the timing columns are unchanged too.
    swap(&out, &[]).success();
    assert_eq!(before, read(&out.join("runs.csv")));
    swap(&out, &["--force"]).success();
    assert_eq!(without_timing(&out.join("runs.csv")), {
        let p = tmp.path().join("before.csv");
        std::fs::write(&p, &before).unwrap();
        without_timing(&p)
    });
}

/// A sweep killed with SIGKILL part way loses at most the runs in progress;
/// the rerun completes it, with the outputs of an uninterrupted sweep. Runs
/// trained one by one, and in stacks of two.
#[test]
fn resume_after_kill_9() {
    kill_9_and_resume(&[]);
    kill_9_and_resume(&["--batch-runs", "2", "--jobs", "1"]);
}

fn kill_9_and_resume(stacking: &[&str]) {
    let tmp = TempDir::new().unwrap();
    let (full, killed) = (tmp.path().join("full"), tmp.path().join("killed"));
    let args = [
        "--synthetic",
        "--validation",
        "200",
        "--seeds",
        "2",
        "--epochs",
        "6",
        "--batch-size",
        "32",
        "--grid",
        "0,0.5",
    ];
    bin()
        .arg("swap-rates")
        .args(args)
        .arg("--out")
        .arg(&full)
        .assert()
        .success();

    let exe = assert_cmd::cargo::cargo_bin("drop-exp");
    let mut child = std::process::Command::new(exe)
        .arg("swap-rates")
        .args(args)
        .args(stacking)
        .arg("--out")
        .arg(&killed)
        .env("DROP_EXP_NO_DOWNLOAD", "1")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runs = killed.join("runs");
    let t0 = Instant::now();
    // Stored runs only: a run in progress also has a `.<key>.lock` file.
    let count = || {
        std::fs::read_dir(&runs).map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
            .count()
        })
    };
    while count() < 2 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let stored = count();
    assert!((2..8).contains(&stored), "killed after {stored} of 8 runs");
    assert!(
        !killed.join("verdict.md").exists(),
        "the sweep was not complete yet"
    );

    bin()
        .arg("swap-rates")
        .args(args)
        .args(stacking)
        .arg("--out")
        .arg(&killed)
        .assert()
        .success();
    same_outputs(&full, &killed);
}

/// Two invocations on one output folder at once: each run is trained by
/// exactly one of them, both finish, and the outputs equal a lone sweep's.
#[test]
fn concurrent_invocations_train_each_run_once() {
    let tmp = TempDir::new().unwrap();
    let (alone, shared) = (tmp.path().join("alone"), tmp.path().join("shared"));
    let args = [
        "--synthetic",
        "--validation",
        "200",
        "--seeds",
        "3",
        "--epochs",
        "6",
        "--batch-size",
        "64",
        "--grid",
        "0,0.5",
        "--jobs",
        "1",
    ];
    bin()
        .arg("swap-rates")
        .args(args)
        .arg("--out")
        .arg(&alone)
        .assert()
        .success();
    let exe = assert_cmd::cargo::cargo_bin("drop-exp");
    let spawn = || {
        std::process::Command::new(&exe)
            .arg("swap-rates")
            .args(args)
            .arg("--out")
            .arg(&shared)
            .env("DROP_EXP_NO_DOWNLOAD", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let mut trained = 0;
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        let n: usize = err
            .split("swap-rates: trained ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count of trained runs in:\n{err}"));
        trained += n;
    }
    assert_eq!(trained, 12, "4 configurations x 3 seeds, each trained once");
    same_outputs(&alone, &shared);
    let leftovers: Vec<_> = std::fs::read_dir(shared.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".lock"))
        .collect();
    assert!(leftovers.is_empty(), "lock files left: {leftovers:?}");
    // Two concurrent `--force` invocations redo each stored run once
    // between them, not once each.
    let force = |out: &Path| {
        std::process::Command::new(&exe)
            .arg("swap-rates")
            .args(args)
            .arg("--force")
            .arg("--out")
            .arg(out)
            .env("DROP_EXP_NO_DOWNLOAD", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (force(&shared), force(&shared));
    let mut redone = 0;
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        redone += err
            .split("swap-rates: trained ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no count of trained runs in:\n{err}"));
    }
    assert_eq!(redone, 12, "each run redone once under --force");
    same_outputs(&alone, &shared);
}

#[test]
fn shards_merged_equal_an_unsharded_sweep() {
    let tmp = TempDir::new().unwrap();
    let p = |n: &str| tmp.path().join(n);
    swap(&p("all"), &[]).success();
    swap(&p("a"), &["--shard", "1/3"])
        .success()
        .stderr(contains("shard 1/3"));
    swap(&p("b"), &["--shard", "2/3"]).success();
    // Merging an incomplete set is an error that says what is missing.
    bin()
        .args(["merge", "--out"])
        .arg(p("m"))
        .arg(p("a"))
        .arg(p("b"))
        .assert()
        .failure()
        .stderr(contains("run the missing shards"));
    swap(&p("c"), &["--shard", "3/3"]).success();
    bin()
        .args(["merge", "--out"])
        .arg(p("m"))
        .args([p("a"), p("b"), p("c")])
        .assert()
        .success();
    same_outputs(&p("all"), &p("m"));
    assert_outputs(
        &p("m"),
        &["accuracy.png", "curves.png", "heatmap.png", "effects.png"],
    );
    // Shards trained in stacks merge into the same outputs.
    let stacked = ["--batch-runs", "3", "--jobs", "1"];
    swap(&p("s1"), &[&["--shard", "1/2"][..], &stacked].concat()).success();
    swap(&p("s2"), &[&["--shard", "2/2"][..], &stacked].concat()).success();
    bin()
        .args(["merge", "--out"])
        .arg(p("sm"))
        .args([p("s1"), p("s2")])
        .assert()
        .success();
    same_outputs(&p("all"), &p("sm"));
}

#[test]
fn results_do_not_depend_on_jobs() {
    let tmp = TempDir::new().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    swap(&a, &["--jobs", "1"]).success();
    swap(&b, &["--jobs", "2"]).success();
    same_outputs(&a, &b);
}

/// Runs of one seed trained together as stacks (on one or two jobs) store
/// the same results as runs trained one by one.
#[test]
fn results_do_not_depend_on_batch_runs() {
    let tmp = TempDir::new().unwrap();
    let p = |n: &str| tmp.path().join(n);
    swap(&p("alone"), &["--batch-runs", "1"]).success();
    swap(&p("stacks"), &["--batch-runs", "4", "--jobs", "1"]).success();
    swap(&p("pairs"), &["--batch-runs", "2", "--jobs", "2"]).success();
    same_outputs(&p("alone"), &p("stacks"));
    same_outputs(&p("alone"), &p("pairs"));
    let sweep = read(&p("stacks").join("sweep.json"));
    assert!(sweep.contains("\"batch_runs\": 4"), "{sweep}");
}

#[test]
fn config_file_overrides_and_rejects_unknown_keys() {
    let tmp = TempDir::new().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "epochs = 2\nlearning_rate = 0.1\n").unwrap();
    bin()
        .args(["longer", "--synthetic", "--validation", "200"])
        .args(["--train-subset", "1000", "--config"])
        .arg(&bad)
        .assert()
        .failure()
        .stderr(contains("bad.toml"))
        .stderr(contains("unknown key `learning_rate`"));
    let invalid = tmp.path().join("invalid.toml");
    std::fs::write(&invalid, "rates = [[0.2, 1.5]]\n").unwrap();
    bin()
        .args(["longer", "--synthetic", "--validation", "200"])
        .args(["--train-subset", "1000", "--config"])
        .arg(&invalid)
        .assert()
        .failure()
        .stderr(contains("invalid.toml"))
        .stderr(contains("1.5"));
    let good = tmp.path().join("good.toml");
    std::fs::write(
        &good,
        "# two seeds\nseeds = 2\nepochs = 2\nrates = [[0.0, 0.0], [0.5, 0.5]]\n",
    )
    .unwrap();
    let out = tmp.path().join("o");
    bin()
        .args([
            "longer",
            "--synthetic",
            "--validation",
            "200",
            "--train-subset",
            "1000",
            "--batch-size",
            "64",
            "--config",
        ])
        .arg(&good)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let summary = read(&out.join("summary.csv"));
    assert!(
        summary.contains("\"p=(0,0) lr=0.5\"") && summary.contains("\"p=(0.5,0.5) lr=0.5\""),
        "{summary}"
    );
    let sweep: serde_json::Value = serde_json::from_str(&read(&out.join("sweep.json"))).unwrap();
    assert_eq!(sweep["common"]["seeds"], 2);
    assert_eq!(sweep["common"]["base"]["epochs"], 2);
}

/// Diverging runs are recorded as such and the sweep carries on.
#[test]
fn diverged_runs_are_counted_not_fatal() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("d");
    bin()
        .arg("longer")
        .args([
            "--synthetic",
            "--validation",
            "200",
            "--train-subset",
            "1000",
            "--seeds",
            "2",
            "--epochs",
            "3",
            "--lr",
            "1e30",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let mut rdr = csv::Reader::from_path(out.join("summary.csv")).unwrap();
    let idx = rdr
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "n_diverged")
        .unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert!(rows.iter().all(|r| &r[idx] == "2"), "{rows:?}");
    assert!(read(&out.join("runs.csv")).contains("true"));
    // `--lr` trains at that rate only (not at longer.toml's `lrs`), and the
    // stability table counts both runs of each configuration.
    assert_eq!(rows.len(), 2, "{rows:?}");
    let verdict = read(&out.join("verdict.md"));
    assert_eq!(verdict.matches(" 2 of 2 |").count(), 4, "{verdict}");
}

#[test]
fn variance_end_to_end() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("v");
    bin()
        .args(["variance", "--plot"])
        .args(SMALL)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    assert_outputs(&out, &["variance.png", "effects.png"]);
    let csv = read(&out.join("variance.csv"));
    assert!(
        csv.starts_with("step,epoch,model,layer,stage,mean,variance,unit_variance,seed"),
        "{csv}"
    );
    // 2 models x 2 seeds x 2 layers x 3 stages per probe.
    assert_eq!((csv.lines().count() - 1) % 24, 0);
    assert!(csv.contains("train_post") && csv.contains(",eval,"));
    let verdict = read(&out.join("verdict.md"));
    assert!(verdict.contains("predicted factor"));
    // Both modes, per layer and checkpoint.
    let comparisons = read(&out.join("comparisons.csv"));
    for mode in ["eval", "train"] {
        for layer in [1, 2] {
            assert!(
                comparisons.contains(&format!("primary,{mode}_layer{layer}_epoch3,")),
                "{mode} {layer}: {comparisons}"
            );
        }
    }
    assert!(
        verdict.contains("In training mode, after the dropout layer"),
        "{verdict}"
    );
    // Without --plot, no PNG.
    let out2 = tmp.path().join("v2");
    bin()
        .arg("variance")
        .args(SMALL)
        .arg("--out")
        .arg(&out2)
        .assert()
        .success();
    assert!(!out2.join("variance.png").exists());
}

#[test]
fn test_time_end_to_end() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("t");
    bin()
        .arg("test-time")
        .args(SMALL)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    assert_outputs(&out, &["mc.png", "effects.png"]);
    let mc = read(&out.join("mc.csv"));
    // 2 seeds x (deterministic + 7 values of K).
    assert_eq!(mc.lines().count(), 1 + 2 * 8, "{mc}");
    assert!(read(&out.join("verdict.md")).contains("Why dropout is off at test time"));
}

/// Runs `command` on the SMALL sweep with a `--config` file holding `toml`;
/// returns the output folder.
fn small_with_config(dir: &Path, command: &str, toml: &str) -> std::path::PathBuf {
    let (cfg, out) = (dir.join(format!("{command}.toml")), dir.join(command));
    std::fs::write(&cfg, toml).unwrap();
    bin()
        .arg(command)
        .args(SMALL)
        .arg("--config")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    out
}

#[test]
fn dropconnect_end_to_end() {
    let tmp = TempDir::new().unwrap();
    let out = small_with_config(tmp.path(), "dropconnect", "rates = [0.2, 0.5]\n");
    assert_outputs(&out, &["rates.png", "curves.png", "effects.png"]);
    let summary = read(&out.join("summary.csv"));
    for label in [
        "DropConnect, mask per example p=0.5",
        "DropConnect, mask per example p=0.2",
        "DropConnect, Gaussian per example p=0.2",
        "DropConnect, mask per batch p=0.5",
        "dropout, mask per batch p=0.2",
        "dropout p=0.2",
    ] {
        assert!(summary.contains(label), "{label} missing: {summary}");
    }
    let verdict = read(&out.join("verdict.md"));
    for part in [
        // The two primaries, over the pooled rate only (0.5 is unpooled by
        // experiments/dropconnect.toml).
        "| weights or units? | DropConnect, mask per example − dropout, mean over p ∈ {0.2} |",
        "| does sharing the mask matter? | DropConnect, mask per example − DropConnect, mask per batch, mean over p ∈ {0.2} |",
        "minus DropConnect with one mask per batch",
        // Each method's cost, and the regime the answer comes from.
        "| DropConnect, mask per example | `dropconnect-example` | autograd |",
        "| dropout, mask per batch | `dropout-shared` | hand-written |",
        " Regime: ",
    ] {
        assert!(verdict.contains(part), "{part} missing:\n{verdict}");
    }
}

#[test]
fn noise_end_to_end() {
    let tmp = TempDir::new().unwrap();
    // Two strengths per family, variational-dropout's its own (its rate
    // stays below 0.5).
    let out = small_with_config(
        tmp.path(),
        "noise",
        "strengths = [[0.1, 0.3], [0.2, 0.5]]\n[strengths_for]\nvariational-dropout = [[0.1, 0.3], [0.2, 0.4]]\n",
    );
    assert_outputs(&out, &["accuracy.png", "curves.png", "effects.png"]);
    let summary = read(&out.join("summary.csv"));
    let challengers = [
        "gaussian-mult",
        "lognormal-mult",
        "gaussian-add",
        "annealed-dropout",
        "curriculum-dropout",
        "early-dropout",
        "multisample-dropout",
        "concrete-dropout",
        "variational-dropout",
        "r-drop",
    ];
    for kind in challengers {
        assert!(
            summary.contains(&format!("{kind} (0.1,0.3)")),
            "{kind} missing: {summary}"
        );
    }
    assert!(
        summary.contains("variational-dropout (0.2,0.4)"),
        "{summary}"
    );
    // Each family's validation winner against tuned dropout, on fresh
    // seeds (2^32 and up), one-sided: one primary contrast per family.
    let comparisons = read(&out.join("comparisons.csv"));
    for kind in challengers {
        let row = comparisons
            .lines()
            .find(|l| l.starts_with(&format!("primary,beats_{kind},")))
            .unwrap_or_else(|| panic!("{kind}'s contrast: {comparisons}"));
        assert!(row.contains(",greater,"), "{row}");
        assert!(row.contains("− tuned dropout ("), "{row}");
    }
    assert_eq!(comparisons.matches("\nprimary,").count(), challengers.len());
    let runs = read(&out.join("runs.csv"));
    assert!(runs.contains(",4294967297,"), "fresh seeds trained");
    let verdict = read(&out.join("verdict.md"));
    assert!(
        verdict.contains("Every family tuned on validation over 2 strengths"),
        "{verdict}"
    );
    assert!(verdict.contains("| family | winner |"), "{verdict}");
}

#[test]
fn report_quick_on_synthetic_data() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("r");
    bin()
        .args([
            "report",
            "--quick",
            "--synthetic",
            "--validation",
            "200",
            "--train-subset",
            "1000",
            "--test-subset",
            "300",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let report = read(&out.join("REPORT.md"));
    assert!(report.contains("Quick preset"));
    for n in 1..=7 {
        assert!(
            report.contains(&format!("## Exercise {n}:")),
            "exercise {n} missing"
        );
    }
    // It opens with the answers, one line per exercise.
    let answers = report
        .split("## Answers")
        .nth(1)
        .expect("the answers")
        .split("\n## ")
        .next()
        .unwrap();
    let lines: Vec<&str> = answers.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 7, "{answers}");
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("{}. ", i + 1)), "{l}");
    }
    for section in [
        "## Settings against the book's",
        "## Methods",
        "## Limitations",
    ] {
        assert!(report.contains(section), "{section} missing");
    }
    // Read in five minutes: at most 2,500 words outside tables.
    let words: usize = report
        .lines()
        .filter(|l| !l.starts_with('|'))
        .map(|l| l.split_whitespace().count())
        .sum();
    assert!(words <= 2500, "{words} words outside tables");
    // Every image and file the report links exists; every figure has its SVG.
    for link in report.split("](").skip(1) {
        let target = &link[..link.find(')').unwrap()];
        if target.starts_with('#') {
            continue;
        }
        assert!(out.join(target).exists(), "{target} missing");
        if target.ends_with(".png") {
            let svg = out.join(target).with_extension("svg");
            assert!(svg.is_file(), "{} missing", svg.display());
            assert!(report.contains(&format!("{}.svg)", target.trim_end_matches(".png"))));
        }
    }
    // At most three figures per exercise.
    for part in report.split("\n## Exercise ").skip(1) {
        assert!(part.matches("![").count() <= 3, "{part}");
    }
    assert!(!report.contains("NaN"), "{report}");
}

/// `--plan-seeds` trains, once, the seeds planned for the configurations
/// of primary contrasts undecided after the first seeds (at most
/// `--max-seeds`): configurations of decided contrasts get none, and
/// `--force` redoes each run once.
#[test]
fn plan_seeds_adds_runs_only_where_undecided() {
    let tmp = TempDir::new().unwrap();
    let sweep = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        // Two epochs: the synthetic task is not yet learned, so accuracies
        // differ between seeds (at three they are all 100%).
        let run = bin()
            .args([
                "swap-rates",
                "--synthetic",
                "--validation",
                "200",
                "--seeds",
                "3",
            ])
            .args(["--epochs", "2", "--batch-size", "64", "--grid", "0,0.5"])
            .arg("--plan-seeds")
            .args(extra)
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        let stderr = String::from_utf8(run.get_output().stderr.clone()).unwrap();
        (stderr, out)
    };
    let (stderr, out) = sweep("plan", &["--max-seeds", "5"]);
    // The configurations each undecided contrast reads, from its plan line.
    let planned: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("is undecided with 3 seeds; plan:"))
        .collect();
    let runs = read(&out.join("runs.csv"));
    let mut table = csv::Reader::from_reader(runs.as_bytes());
    let seed_col = table
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "seed")
        .unwrap();
    let rows: Vec<csv::StringRecord> = table.records().map(Result::unwrap).collect();
    let seeds_of = |label: &str| -> std::collections::BTreeSet<String> {
        rows.iter()
            .filter(|r| &r[0] == label)
            .map(|r| r[seed_col].to_string())
            .collect()
    };
    let corners = ["p=(0,0)", "p=(0,0.5)", "p=(0.5,0)", "p=(0.5,0.5)"];
    if planned.is_empty() {
        // Every primary contrast was decided: nothing added.
        for c in corners {
            assert_eq!(seeds_of(c).len(), 3, "{c}: {runs}");
        }
    } else {
        // The swap reads only its two configurations; the main effects all
        // four. Either way, no configuration has more than max_seeds.
        for c in corners {
            assert!((3..=5).contains(&seeds_of(c).len()), "{c}");
        }
        let only_swap = planned.iter().all(|l| l.contains("`swap`"));
        if only_swap {
            assert_eq!(seeds_of("p=(0,0)").len(), 3, "{stderr}");
            assert_eq!(seeds_of("p=(0.5,0.5)").len(), 3, "{stderr}");
        }
    }
    let sweep_json: serde_json::Value =
        serde_json::from_str(&read(&out.join("sweep.json"))).unwrap();
    let recorded = sweep_json["runs"].as_array().unwrap().len();
    assert_eq!(
        runs.lines().count(),
        1 + recorded * 2,
        "every recorded run trained"
    );
    // Without room for more seeds, none are planned.
    let (stderr, out) = sweep("capped", &["--max-seeds", "3"]);
    assert!(!stderr.contains("plan:"), "{stderr}");
    assert_eq!(read(&out.join("runs.csv")).lines().count(), 1 + 4 * 3 * 2);
    // With --force each run is redone once.
    let (stderr, _) = sweep("plan", &["--max-seeds", "5", "--force"]);
    assert!(stderr.contains("trained 12 run(s)"), "{stderr}");
    assert!(
        stderr.matches("swap-rates: trained ").count() <= 2,
        "one round of planned seeds at most: {stderr}"
    );
}

/// A run stored by another experiment of the same results folder, with
/// the same configuration, seed and data, is adopted, not retrained: the
/// outputs are those of training it here.
#[test]
fn identical_runs_are_adopted_from_sibling_experiments() {
    let tmp = TempDir::new().unwrap();
    let lrs = tmp.path().join("lrs.toml");
    std::fs::write(&lrs, "lrs = [0.5]\n").unwrap();
    let exercise = |name: &str, root: &Path, extra: &[&str]| {
        bin()
            .arg(name)
            .args(SMALL)
            .args(extra)
            .arg("--config")
            .arg(&lrs)
            .arg("--out")
            .arg(root.join(name))
            .assert()
            .success()
    };
    let (shared, alone) = (tmp.path().join("shared"), tmp.path().join("alone"));
    exercise("longer", &shared, &[]);
    exercise("compare-wd", &shared, &["--weight-decays", "0"])
        .stderr(contains("reused 4 identical run(s)"))
        .stderr(contains("trained 0 run(s)"));
    exercise("compare-wd", &alone, &["--weight-decays", "0"]).stderr(contains("trained 4 run(s)"));
    same_outputs(&shared.join("compare-wd"), &alone.join("compare-wd"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Merges compare stored runs bit for bit, a diverged run's NaN losses
/// included: a sharded sweep with diverging runs merges twice into the same
/// folder, and two copies of one folder merge into one.
#[test]
fn merges_are_exact_with_diverged_runs() {
    let tmp = TempDir::new().unwrap();
    let shard = |k: usize| {
        let out = tmp.path().join(format!("part{k}"));
        bin()
            .arg("longer")
            .args(["--synthetic", "--validation", "200", "--seeds", "2"])
            .args([
                "--train-subset",
                "1000",
                "--epochs",
                "3",
                "--lr",
                "1e30",
                "--shard",
            ])
            .arg(format!("{k}/2"))
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        out
    };
    let (a, b) = (shard(1), shard(2));
    let merged = tmp.path().join("merged");
    for _ in 0..2 {
        bin()
            .args(["merge", "--out"])
            .arg(&merged)
            .arg(&a)
            .arg(&b)
            .assert()
            .success();
    }
    assert!(
        read(&merged.join("runs.csv")).contains("true"),
        "a diverged run"
    );
    let copy = tmp.path().join("copy");
    copy_dir(&merged, &copy);
    bin()
        .args(["merge", "--out"])
        .arg(tmp.path().join("again"))
        .arg(&merged)
        .arg(&copy)
        .assert()
        .success()
        .stderr(contains("merged 2 folders"));
    same_outputs(&merged, &tmp.path().join("again"));
}
