//! The cohort trainer against the step-by-step trainer.

use super::*;
use crate::data::{self, DataOptions};
use crate::model::Mlp;
use crate::regularizers::Reg;
use crate::train::EpochRow;

/// Every number of a row but the timings, as bits (NaN included).
fn bits(rows: &[EpochRow]) -> Vec<Vec<u64>> {
    rows.iter()
        .map(|r| {
            let opt = |v: Option<f64>| v.map_or(u64::MAX, f64::to_bits);
            vec![
                r.epoch as u64,
                r.train_loss.to_bits(),
                r.train_acc.to_bits(),
                r.test_loss.to_bits(),
                r.test_acc.to_bits(),
                opt(r.val_loss),
                opt(r.val_acc),
                r.train_eval_acc.to_bits(),
            ]
        })
        .collect()
}

fn weights(m: &Mlp) -> Vec<Vec<u32>> {
    m.vars()
        .map(|v| {
            let x: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            x.into_iter().map(f32::to_bits).collect()
        })
        .collect()
}

/// A cohort of every regulariser kind, with weight decay, other
/// learning rates, fewer epochs and a run that diverges, on two threads,
/// gives each run exactly the rows and final weights of that run
/// trained alone, step by step with candle, on one thread. The batch
/// (95) makes unequal halves and a short last batch.
#[test]
fn cohort_equals_runs_trained_alone() {
    let data = data::load(
        &DataOptions {
            synthetic: true,
            validation: 200,
            ..Default::default()
        },
        &Device::Cpu,
    )
    .unwrap();
    let base = TrainConfig {
        epochs: 3,
        batch_size: 95,
        ..TrainConfig::default()
    };
    let with = |l: [Reg; 2]| base.with_layers(l);
    let configs = vec![
        base.clone(),
        TrainConfig {
            epochs: 2,
            ..with([Reg::Dropout { p: 0.0 }; 2])
        },
        TrainConfig {
            weight_decay: 1e-3,
            ..with([Reg::Dropconnect { p: 0.3 }; 2])
        },
        TrainConfig {
            lr: 0.1,
            ..with([Reg::DropconnectOut { p: 0.3 }; 2])
        },
        with([Reg::GaussianMult { p: 0.3 }; 2]),
        with([Reg::GaussianAdd { p: 0.2 }; 2]),
        with([Reg::LognormalMult { p: 0.4 }; 2]),
        with([Reg::UniformMult { p: 0.2 }; 2]),
        with([Reg::AnnealedDropout { p: 0.5 }; 2]),
        TrainConfig {
            lr: 1e30,
            ..with([Reg::Dropout { p: 0.0 }; 2])
        },
    ];
    let seed = 7;
    let mut hooks: Vec<()> = vec![(); configs.len()];
    let mut members: Vec<Member> = configs
        .iter()
        .zip(hooks.iter_mut())
        .map(|(cfg, hook)| Member { cfg, hook })
        .collect();
    let together = train_cohort(&mut members, seed, &data, 2).unwrap();
    for (cfg, got) in configs.iter().zip(&together) {
        let alone = crate::train::train(cfg, seed, &data, 1, &mut ()).unwrap();
        assert_eq!(bits(&got.rows), bits(&alone.rows), "{cfg:?}");
        assert_eq!(got.diverged, alone.diverged, "{cfg:?}");
        assert_eq!(weights(&got.model), weights(&alone.model), "{cfg:?}");
    }
    assert!(together.last().unwrap().diverged, "lr 1e30 should diverge");
    assert_eq!(together[1].rows.len(), 2);
    assert_eq!(together[0].rows.len(), 3);
}
