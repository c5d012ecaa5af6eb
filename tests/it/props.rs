//! Bad input at scale: generated `check` CSVs and configuration files are
//! read or rejected with an error, never a panic (2,560 cases each; with
//! the IDX readers' two properties in src/data/idx.rs, 10,240 bad inputs).

use proptest::prelude::*;
use tempfile::TempDir;

const CASES: u32 = 2560;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(CASES)
}

/// A CSV assembled from header names `check` knows and does not know, and
/// cells that are numbers, text, empty or quoted.
fn csv_text() -> impl Strategy<Value = String> {
    let header = prop::sample::subsequence(
        vec![
            "label",
            "n",
            "seed",
            "epoch",
            "last3_mean",
            "last3_sd",
            "final_mean",
            "final_sd",
            "train_loss_mean",
            "train_loss_sd",
            "test_acc",
            "train_loss",
            "diverged",
            "x",
        ],
        0..10,
    );
    let cell = prop_oneof![
        any::<f64>().prop_map(|x| x.to_string()),
        "[a-z=(),.0-9-]{0,8}",
        Just(String::new()),
        Just("\"p=(0.2,0.5)\"".to_string()),
        Just("NaN".to_string()),
    ];
    (
        header,
        prop::collection::vec(prop::collection::vec(cell, 0..10), 0..6),
    )
        .prop_map(|(header, rows)| {
            let mut text = header.join(",");
            for r in rows {
                text.push('\n');
                text.push_str(&r.join(","));
            }
            text
        })
}

/// A TOML table of keys the settings know (and one they do not), with
/// values of every type.
fn toml_text() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "seeds",
        "epochs",
        "lr",
        "batch_size",
        "weight_decay",
        "margin",
        "validation",
        "end_epochs",
        "plan_seeds",
        "max_seeds",
        "train_subset",
        "test_subset",
        "rates",
        "grid",
        "lrs",
        "weight_decays",
        "layers",
        "dropout",
        "passes",
        "unknown_key",
    ]);
    let value = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        (-1e3f64..1e3).prop_map(|v| format!("{v:?}")),
        any::<bool>().prop_map(|v| v.to_string()),
        "\"[a-z]{0,6}\"",
        Just("[]".to_string()),
        Just("[0.2, 0.5]".to_string()),
        Just("[[0.2, 0.5], [1.5, -1]]".to_string()),
        Just("[{ kind = \"dropout\", p = 0.3 }, { kind = \"magic\", p = 2 }]".to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
    ];
    prop::collection::vec((key, value), 0..6).prop_map(|kv| {
        let mut seen = std::collections::BTreeMap::new();
        for (k, v) in kv {
            seen.insert(k, v);
        }
        seen.into_iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect()
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn check_reads_or_rejects_any_csv(text in csv_text()) {
        let tmp = TempDir::new().unwrap();
        let path = tmp.path().join("summary.csv");
        std::fs::write(&path, &text).unwrap();
        if let Err(e) = drop_exp::check::read_side(&path) {
            prop_assert!(e.to_string().contains("summary.csv"), "{e:#}");
        }
    }

    #[test]
    fn settings_accept_or_reject_any_config(text in toml_text(), which in 0usize..7) {
        use drop_exp::experiments::settings::{resolve, Layer};
        let tmp = TempDir::new().unwrap();
        let path = tmp.path().join("config.toml");
        std::fs::write(&path, &text).unwrap();
        let spec = drop_exp::experiments::EXERCISES[which];
        match Layer::file(&path) {
            Ok(layer) => {
                if let Err(e) = resolve(spec, vec![layer]) {
                    prop_assert!(format!("{e:#}").contains("config.toml"), "{e:#}");
                }
            }
            Err(e) => prop_assert!(format!("{e:#}").contains("config.toml"), "{e:#}"),
        }
    }
}
