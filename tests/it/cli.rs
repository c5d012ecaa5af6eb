//! `drop-exp run` and the command line as a whole.

use std::path::{Path, PathBuf};

use predicates::str::contains;
use tempfile::TempDir;

use crate::util::{bin, fashion_mnist};

/// `run` on the synthetic data into `out`, with extra flags.
fn run_synthetic(out: &Path, extra: &[&str]) {
    bin()
        .args([
            "run",
            "--synthetic",
            "--epochs",
            "3",
            "--batch-size",
            "64",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .assert()
        .success();
}

/// metrics.csv without its timing columns (the last two).
fn metrics_without_timing(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    text.lines()
        .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn run_writes_metrics_and_run_json() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("r");
    run_synthetic(&out, &[]);
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "epoch,train_loss,train_acc,test_loss,test_acc,val_loss,val_acc,train_eval_acc,train_seconds,seconds"
    );
    assert_eq!(lines.count(), 3);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(json["config"]["layers"][0]["p"], 0.2);
    assert_eq!(json["seed"], 0);
    assert_eq!(json["status"], "finished");
    assert_eq!(json["epochs_done"], 3);
    assert_eq!(json["data"]["source"], "synthetic");
    assert!(json["finished_at"].is_string());
    // No temporary files left behind.
    let names: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn same_seed_is_byte_identical_across_thread_counts() {
    let tmp = TempDir::new().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run_synthetic(&a, &["--seed", "5", "--threads", "1"]);
    run_synthetic(&b, &["--seed", "5", "--threads", "2"]);
    assert_eq!(metrics_without_timing(&a), metrics_without_timing(&b));
}

#[test]
fn different_seeds_differ() {
    let tmp = TempDir::new().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run_synthetic(&a, &["--seed", "1"]);
    run_synthetic(&b, &["--seed", "2"]);
    assert_ne!(metrics_without_timing(&a), metrics_without_timing(&b));
}

#[test]
fn synthetic_task_is_learned() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("r");
    run_synthetic(&out, &[]);
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let last = csv.lines().last().unwrap();
    let acc: f64 = last.split(',').nth(4).unwrap().parse().unwrap();
    assert!(acc > 0.9, "test acc {acc} on the synthetic task");
}

#[test]
fn invalid_flags_fail_at_parse_time() {
    for (flag, value) in [
        ("--p1", "1.2"),
        ("--lr", "0"),
        ("--batch-size", "0"),
        ("--epochs", "0"),
    ] {
        bin()
            .args(["run", "--synthetic", flag, value])
            .assert()
            .code(2)
            .stderr(contains(flag));
    }
}

#[test]
fn missing_data_lists_places_and_fixes() {
    let tmp = TempDir::new().unwrap();
    bin()
        .args(["run", "--data-dir"])
        .arg(tmp.path())
        .assert()
        .failure()
        .stderr(contains("lacks"))
        .stderr(contains("train-images-idx3-ubyte"));
}

/// A copy of Fashion-MNIST with one label changed (structure intact) is
/// rejected before training, naming the file and both digests; the hidden
/// opt-out accepts it and records that it did. Skipped when Fashion-MNIST
/// is not installed.
#[test]
fn altered_data_is_rejected_by_its_digest() {
    let Some(dir) = fashion_mnist() else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    for name in [
        "train-images-idx3-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        let gz = format!("{name}.gz");
        std::fs::copy(dir.join(&gz), tmp.path().join(&gz)).unwrap();
    }
    let gz = std::fs::read(dir.join("train-labels-idx1-ubyte.gz")).unwrap();
    let mut labels = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut labels).unwrap();
    labels[100] = (labels[100] + 1) % 10; // still a valid label
    std::fs::write(tmp.path().join("train-labels-idx1-ubyte"), &labels).unwrap();
    let quick = [
        "--epochs",
        "1",
        "--train-subset",
        "500",
        "--test-subset",
        "200",
    ];
    bin()
        .arg("run")
        .args(quick)
        .arg("--data-dir")
        .arg(tmp.path())
        .arg("--out")
        .arg(tmp.path().join("r"))
        .assert()
        .failure()
        .stderr(contains("train-labels-idx1-ubyte"))
        .stderr(contains(
            "expected bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ))
        .stderr(contains("--reinstall"));
    assert!(!tmp.path().join("r").join("metrics.csv").exists());
    let out = tmp.path().join("accepted");
    bin()
        .arg("run")
        .args(quick)
        .arg("--unpinned-data")
        .arg("--data-dir")
        .arg(tmp.path())
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(json["data"]["unpinned"], true, "{json}");
}

#[test]
fn corrupt_data_names_the_file() {
    let tmp = TempDir::new().unwrap();
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::write(tmp.path().join(name), b"\0\0\x08\x03garbage-garbage").unwrap();
    }
    bin()
        .args(["run", "--data-dir"])
        .arg(tmp.path())
        .assert()
        .failure()
        .stderr(contains("train-images-idx3-ubyte"))
        .stderr(contains("expected 28x28"));
}

#[test]
fn diverging_run_exits_non_zero_and_keeps_metrics() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("r");
    bin()
        .args([
            "run",
            "--synthetic",
            "--epochs",
            "5",
            "--lr",
            "1e30",
            "--out",
        ])
        .arg(&out)
        .assert()
        .failure()
        .stderr(contains("diverged"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(json["status"], "diverged");
    assert!(out.join("metrics.csv").is_file());
}

/// Ctrl-C part way: the finished epochs are in metrics.csv (rewritten after
/// each epoch) and run.json says the run was interrupted.
#[test]
fn interrupted_run_keeps_its_epochs() {
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("r");
    let exe = assert_cmd::cargo::cargo_bin("drop-exp");
    let child = std::process::Command::new(exe)
        .args([
            "run",
            "--synthetic",
            "--epochs",
            "100000",
            "--batch-size",
            "64",
            "--out",
        ])
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = out.join("metrics.csv");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count()) < 3 {
        assert!(t0.elapsed().as_secs() < 60, "no epochs written");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let result = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert!(err.contains("interrupted after epoch"), "{err}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(json["status"], "interrupted");
    let rows = std::fs::read_to_string(&metrics).unwrap().lines().count() - 1;
    assert!(rows >= 2);
    assert_eq!(json["epochs_done"], rows);
    assert_eq!(json["final_epoch"]["epoch"], rows);
}

#[test]
fn every_command_has_an_example_in_help() {
    for cmd in drop_exp::cli::command().get_subcommands() {
        bin()
            .args([cmd.get_name(), "--help"])
            .assert()
            .success()
            .stdout(contains("Example"));
    }
    bin()
        .arg("--help")
        .assert()
        .success()
        .stdout(contains("Example"));
}

/// `--help` lists each exercise with its question, as the registry gives
/// it, and each exercise's own `--help` opens with that line and states the
/// question in full; no exercise shows the shared flags' description instead.
#[test]
fn help_shows_each_exercise_question_from_the_registry() {
    let help = |args: &[&str]| {
        let out = bin().args(args).assert().success();
        String::from_utf8(out.get_output().stdout.clone()).unwrap()
    };
    let top = help(&["--help"]);
    for spec in drop_exp::experiments::EXERCISES {
        let line = top
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", spec.name)))
            .unwrap_or_else(|| panic!("{} missing from --help:\n{top}", spec.name));
        assert!(line.contains(spec.about), "{line}");
        let own = help(&[spec.name, "--help"]);
        assert!(own.starts_with(spec.about), "{}: {own}", spec.name);
        let question: String = spec
            .question
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let flat: String = own.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(&question), "{}: {own}", spec.name);
        assert!(!own.contains("Flags every exercise"), "{own}");
    }
}

/// `completions SHELL` prints a script that knows the subcommands.
#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef drop-exp"),
        ("fish", "complete -c drop-exp"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        bin()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(contains(marker))
            .stdout(contains("swap-rates"));
    }
    bin()
        .args(["completions", "tcsh"])
        .assert()
        .failure()
        .stderr(contains("invalid value 'tcsh'"));
}

/// One epoch on the real data reaches the floor the book's own `train_ch3`
/// asserts (test accuracy > 0.7). At the book's lr 0.5 and batch 256 the first
/// epoch sits on the plateau that the tiny N(0, 0.01) init causes (0.69 on the
/// full set for seed 0), so this uses lr 0.1 and batch 32 on half the set:
/// 0.775 for seed 0 here. Skipped when Fashion-MNIST is not installed.
#[test]
fn real_data_one_epoch_beats_book_floor() {
    let Some(dir) = fashion_mnist() else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let out = tmp.path().join("r");
    bin()
        .args([
            "run",
            "--epochs",
            "1",
            "--train-subset",
            "30000",
            "--lr",
            "0.1",
        ])
        .args(["--batch-size", "32", "--seed", "0", "--data-dir"])
        .arg(dir)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let acc: f64 = csv
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .nth(4)
        .unwrap()
        .parse()
        .unwrap();
    assert!(acc > 0.7, "test accuracy {acc} after one epoch");
}

/// The identity a sweep keys its runs by, read from the files' bytes
/// alone, is the one loading them gives, with and without a validation
/// split and subsets; the images are read only when asked for. Skipped
/// when Fashion-MNIST is not installed.
#[test]
fn a_data_source_knows_its_identity_before_loading() {
    use drop_exp::data::{self, DataOptions, DataSource};
    let Some(dir) = fashion_mnist() else {
        return;
    };
    let dev = candle_core::Device::Cpu;
    for (validation, train_subset, test_subset) in
        [(0, None, None), (10_000, Some(20_000), Some(5_000))]
    {
        let opts = DataOptions {
            data_dir: Some(dir.to_path_buf()),
            validation,
            train_subset,
            test_subset,
            ..Default::default()
        };
        let source = DataSource::new(&opts, &dev).unwrap();
        let loaded = data::load(&opts, &dev).unwrap();
        assert_eq!(source.identity, loaded.identity);
        assert_eq!(source.identity.digest(), loaded.identity.digest());
        assert_eq!(source.get().unwrap().train_len(), loaded.train_len());
    }
}
