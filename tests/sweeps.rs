//! End-to-end tests of the sweep commands on the hidden `--synthetic`
//! dataset: outputs, resume after kill -9, shards + merge, jobs, config
//! validation, divergence.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::str::contains;
use tempfile::TempDir;

fn bin() -> Command {
    let mut c = Command::cargo_bin("drop-exp").unwrap();
    c.env_remove("DROP_EXP_DATA")
        .env("DROP_EXP_NO_DOWNLOAD", "1");
    c
}

/// A small swap-rates sweep: 3 configurations x 2 seeds x 3 epochs.
const SMALL: &[&str] = &[
    "--synthetic",
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

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A CSV with its timing columns (`train_seconds`, `seconds`) removed.
fn without_timing(p: &Path) -> String {
    let text = read(p);
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| !header[i].ends_with("seconds"))
        .collect();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            keep.iter()
                .map(|&i| r[i].to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn png_size(p: &Path) -> (u32, u32) {
    let b = std::fs::read(p).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        p.display()
    );
    (
        u32::from_be_bytes(b[16..20].try_into().unwrap()),
        u32::from_be_bytes(b[20..24].try_into().unwrap()),
    )
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
        assert_eq!(png_size(&dir.join(p)), (1200, 800), "{p}");
    }
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
    assert_outputs(&out, &["bars.png", "curves.png", "heatmap.png"]);
    // 4 configurations (2x2 grid) x 2 seeds x 3 epochs, plus the header.
    assert_eq!(read(&out.join("runs.csv")).lines().count(), 1 + 4 * 2 * 3);
    assert_eq!(read(&out.join("summary.csv")).lines().count(), 1 + 4);
    let verdict = read(&out.join("verdict.md"));
    assert!(
        verdict.contains("Swapping p=(0,0.5) to p=(0.5,0)"),
        "{verdict}"
    );
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
    assert_outputs(&out, &["curves.png", "gap.png"]);
    let verdict = read(&out.join("verdict.md"));
    assert!(verdict.contains("Gap (train - test accuracy)"), "{verdict}");
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
    assert_outputs(&out, &["wd.png", "curves.png"]);
    let inter = read(&out.join("interaction.csv"));
    assert!(inter.starts_with("weight_decay,n,dropout_gain"), "{inter}");
    assert_eq!(
        inter.lines().count(),
        2,
        "0 is the baseline, 1e-3 the one interaction row"
    );
    // 0 is added as the baseline: 2 dropout settings x 2 weight decays.
    assert_eq!(read(&out.join("summary.csv")).lines().count(), 1 + 4);
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
/// the rerun completes it, with the outputs of an uninterrupted sweep.
#[test]
fn resume_after_kill_9() {
    let tmp = TempDir::new().unwrap();
    let (full, killed) = (tmp.path().join("full"), tmp.path().join("killed"));
    let args = [
        "--synthetic",
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
        .arg("--out")
        .arg(&killed)
        .env("DROP_EXP_NO_DOWNLOAD", "1")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runs = killed.join("runs");
    let t0 = Instant::now();
    let count = || std::fs::read_dir(&runs).map(|d| d.count()).unwrap_or(0);
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
        .arg("--out")
        .arg(&killed)
        .assert()
        .success();
    same_outputs(&full, &killed);
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
    assert_outputs(&p("m"), &["bars.png", "curves.png", "heatmap.png"]);
}

#[test]
fn results_do_not_depend_on_jobs() {
    let tmp = TempDir::new().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    swap(&a, &["--jobs", "1"]).success();
    swap(&b, &["--jobs", "2"]).success();
    same_outputs(&a, &b);
}

#[test]
fn config_file_overrides_and_rejects_unknown_keys() {
    let tmp = TempDir::new().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "epochs = 2\nlearning_rate = 0.1\n").unwrap();
    bin()
        .args(["longer", "--synthetic", "--config"])
        .arg(&bad)
        .assert()
        .failure()
        .stderr(contains("bad.toml"))
        .stderr(contains("unknown key `learning_rate`"));
    let invalid = tmp.path().join("invalid.toml");
    std::fs::write(&invalid, "rates = [[0.2, 1.5]]\n").unwrap();
    bin()
        .args(["longer", "--synthetic", "--config"])
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
        .args(["longer", "--synthetic", "--batch-size", "64", "--config"])
        .arg(&good)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let summary = read(&out.join("summary.csv"));
    assert!(
        summary.contains("\"p=(0,0)\"") && summary.contains("\"p=(0.5,0.5)\""),
        "{summary}"
    );
    let sweep: serde_json::Value = serde_json::from_str(&read(&out.join("sweep.json"))).unwrap();
    assert_eq!(sweep["common"]["seeds"], 2);
    assert_eq!(sweep["common"]["epochs"], 2);
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
    assert!(read(&out.join("verdict.md")).contains("diverged runs: 2"));
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
    assert_outputs(&out, &["variance.png"]);
    let csv = read(&out.join("variance.csv"));
    assert!(
        csv.starts_with("step,epoch,model,layer,stage,mean,variance,unit_variance,seed"),
        "{csv}"
    );
    // 2 models x 2 seeds x 2 layers x 3 stages per probe.
    assert_eq!((csv.lines().count() - 1) % 24, 0);
    assert!(csv.contains("train_post") && csv.contains(",eval,"));
    assert!(read(&out.join("verdict.md")).contains("predicted factor"));
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
    assert_outputs(&out, &["mc.png"]);
    let mc = read(&out.join("mc.csv"));
    // 2 seeds x (deterministic + 7 values of K).
    assert_eq!(mc.lines().count(), 1 + 2 * 8, "{mc}");
    assert!(read(&out.join("verdict.md")).contains("One noisy pass"));
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
    assert_outputs(&out, &["rates.png", "curves.png"]);
    let summary = read(&out.join("summary.csv"));
    assert!(summary.contains("dropconnect p=0.5") && summary.contains("dropout p=0.2"));
    assert!(read(&out.join("verdict.md")).contains("DropConnect minus dropout"));
}

#[test]
fn noise_end_to_end() {
    let tmp = TempDir::new().unwrap();
    let out = small_with_config(tmp.path(), "noise", "strengths = [[0.2, 0.5]]\n");
    assert_outputs(&out, &["bars.png", "curves.png"]);
    let summary = read(&out.join("summary.csv"));
    for kind in [
        "gaussian-mult",
        "gaussian-add",
        "uniform-mult",
        "annealed-dropout",
    ] {
        assert!(summary.contains(kind), "{kind} missing: {summary}");
    }
    let verdict = read(&out.join("verdict.md"));
    assert!(
        verdict.contains("beat") || verdict.contains("Beat"),
        "{verdict}"
    );
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
    // Every image the report links exists.
    for line in report.lines().filter(|l| l.starts_with("![")) {
        let target = line.rsplit_once("](").unwrap().1.trim_end_matches(')');
        assert!(out.join(target).is_file(), "{target} missing");
    }
}
