//! `drop-exp check` on CSV files: exit 0 when nothing regressed, 1 on a
//! regression (naming the configuration), 2 on unusable input.

use std::path::{Path, PathBuf};

use predicates::str::contains;
use tempfile::TempDir;

use crate::util::bin;

const BASELINE: &str = "results/baseline/summary.csv";

fn check(base: &Path, cur: &Path) -> assert_cmd::assert::Assert {
    bin()
        .args(["check", "--baseline"])
        .arg(base)
        .arg("--current")
        .arg(cur)
        .assert()
}

/// The committed baseline with one column of one configuration changed.
fn planted(dir: &Path, label: &str, column: &str, delta: f64) -> PathBuf {
    let mut rdr = csv::Reader::from_path(BASELINE).unwrap();
    let headers = rdr.headers().unwrap().clone();
    let c = headers.iter().position(|h| h == column).unwrap();
    let mut w = csv::Writer::from_path(dir.join("planted.csv")).unwrap();
    w.write_record(&headers).unwrap();
    for r in rdr.records() {
        let r = r.unwrap();
        let row: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if i == c && &r[0] == label {
                    (v.parse::<f64>().unwrap() + delta).to_string()
                } else {
                    v.to_string()
                }
            })
            .collect();
        w.write_record(&row).unwrap();
    }
    w.flush().unwrap();
    dir.join("planted.csv")
}

#[test]
fn identical_csvs_pass() {
    check(Path::new(BASELINE), Path::new(BASELINE))
        .success()
        .stdout(contains("PASS"))
        .stdout(contains("0 regressed"));
    let runs = Path::new("results/baseline/runs.csv");
    check(runs, runs).success().stdout(contains("PASS"));
    // A runs.csv and the summary.csv made from it agree too.
    check(Path::new(BASELINE), runs).success();
}

#[test]
fn planted_two_point_regression_fails_naming_the_configuration() {
    let tmp = TempDir::new().unwrap();
    let bad = planted(tmp.path(), "p=(0.2,0.5)", "last3_mean", -0.02);
    check(Path::new(BASELINE), &bad)
        .code(1)
        .stdout(contains("p=(0.2,0.5)"))
        .stdout(contains("REGRESSED"))
        .stdout(contains("FAIL"));
    // The other configuration is not blamed.
    let out = check(Path::new(BASELINE), &bad).get_output().stdout.clone();
    let text = String::from_utf8(out).unwrap();
    for line in text.lines().filter(|l| l.contains("REGRESSED")) {
        assert!(line.starts_with("p=(0.2,0.5)"), "{line}");
    }
}

#[test]
fn improvements_fail_only_when_asked() {
    let tmp = TempDir::new().unwrap();
    let better = planted(tmp.path(), "p=(0,0)", "last3_mean", 0.04);
    check(Path::new(BASELINE), &better)
        .success()
        .stdout(contains("IMPROVED"));
    bin()
        .args([
            "check",
            "--improvements-fail",
            "--baseline",
            BASELINE,
            "--current",
        ])
        .arg(&better)
        .assert()
        .code(1);
}

#[test]
fn train_loss_regression_fails() {
    let tmp = TempDir::new().unwrap();
    let bad = planted(tmp.path(), "p=(0.2,0.5)", "train_loss_mean", 0.2);
    check(Path::new(BASELINE), &bad)
        .code(1)
        .stdout(contains("train_loss"));
}

#[test]
fn json_output() {
    let tmp = TempDir::new().unwrap();
    let json = tmp.path().join("c.json");
    bin()
        .args([
            "check",
            "--final-epoch",
            "--baseline",
            BASELINE,
            "--current",
            BASELINE,
            "--json",
        ])
        .arg(&json)
        .assert()
        .success();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["failed"], false);
    assert_eq!(
        v["lines"].as_array().unwrap().len(),
        2 * 3,
        "2 configurations x 3 quantities"
    );
}

#[test]
fn unusable_inputs_exit_2_naming_the_problem() {
    let tmp = TempDir::new().unwrap();
    let p = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let base = Path::new(BASELINE);
    check(base, &tmp.path().join("missing.csv"))
        .code(2)
        .stderr(contains("missing.csv"));
    let no_cols = p("nocols.csv", "a,b\n1,2\n");
    check(base, &no_cols)
        .code(2)
        .stderr(contains("neither a summary.csv"));
    let no_label = p("nolabel.csv", "x,n,last3_mean\n1,3,0.5\n");
    check(base, &no_label)
        .code(2)
        .stderr(contains("configuration columns"));
    let header = std::fs::read_to_string(BASELINE)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    // One row, for a configuration the baseline does not have, whatever
    // columns the summary has.
    let row: Vec<&str> = header
        .split(',')
        .map(|col| match col {
            "label" => "\"p=(0.9,0.9)\"",
            c if c.ends_with(".kind") => "dropout",
            c if c.ends_with(".p") => "0.9",
            "batch_size" => "256",
            "epochs" | "n" => "3",
            "n_diverged" | "n_collapsed" => "0",
            _ => "0.5",
        })
        .collect();
    let other = p("other.csv", &format!("{header}\n{}\n", row.join(",")));
    check(base, &other)
        .code(2)
        .stderr(contains("no configuration in common"));
    let nan = planted(tmp.path(), "p=(0,0)", "last3_mean", f64::NAN);
    check(base, &nan).code(2).stderr(contains("not a number"));
    // A configuration present on one side only is named.
    let text = std::fs::read_to_string(BASELINE).unwrap();
    let one = p(
        "one.csv",
        &text.lines().take(2).collect::<Vec<_>>().join("\n"),
    );
    check(base, &one)
        .code(2)
        .stderr(contains("only in the baseline"))
        .stderr(contains("p=(0,0)"));
    let garbage = planted(tmp.path(), "p=(0,0)", "n", 0.0);
    let text = std::fs::read_to_string(&garbage)
        .unwrap()
        .replace(",3,0,", ",three,0,");
    let garbage = p("garbage.csv", &text);
    check(base, &garbage)
        .code(2)
        .stderr(contains("not a number"));
}
