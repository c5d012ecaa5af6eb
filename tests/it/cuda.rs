//! CUDA against CPU: one tiny training run on each, same seed, losses close.
//! Compiled only with `--features cuda`; needs a GPU to run.

use candle_core::Device;
use drop_exp::config::TrainConfig;
use drop_exp::data::{self, DataOptions};
use drop_exp::train::train;

#[test]
fn one_small_training_run_matches_cpu() {
    let opts = DataOptions {
        synthetic: true,
        ..Default::default()
    };
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 64,
        ..TrainConfig::default()
    };
    let cpu = train(
        &cfg,
        0,
        &data::load(&opts, &Device::Cpu).unwrap(),
        1,
        &mut (),
    )
    .unwrap();
    let gpu_dev = Device::new_cuda(0).expect("a CUDA GPU");
    let gpu = train(&cfg, 0, &data::load(&opts, &gpu_dev).unwrap(), 1, &mut ()).unwrap();
    // Same init, batches and masks (host-generated); only the float
    // arithmetic differs, so one epoch agrees closely.
    let (a, b) = (cpu.rows[0].train_loss, gpu.rows[0].train_loss);
    assert!(
        (a - b).abs() < 1e-3 * a.abs().max(1.0),
        "cpu {a} vs cuda {b}"
    );
    let (a, b) = (cpu.rows[0].test_loss, gpu.rows[0].test_loss);
    assert!(
        (a - b).abs() < 1e-2 * a.abs().max(1.0),
        "cpu {a} vs cuda {b}"
    );
}

/// A stack of runs on the GPU against the same runs trained alone on the
/// GPU: same seed streams and batches, batched products instead of single
/// ones, so the rows agree within float tolerance (cuBLAS may pick other
/// kernels for batched shapes).
#[test]
fn a_stack_matches_its_runs_trained_alone_on_the_gpu() {
    use drop_exp::regularizers::Reg;
    use drop_exp::train::{train_stack, Member};
    let gpu_dev = Device::new_cuda(0).expect("a CUDA GPU");
    let data = data::load(
        &DataOptions {
            synthetic: true,
            validation: 200,
            ..Default::default()
        },
        &gpu_dev,
    )
    .unwrap();
    let base = TrainConfig {
        epochs: 2,
        batch_size: 64,
        ..TrainConfig::default()
    };
    let configs = vec![
        base.clone(),
        base.with_layers([RegKind::Dropconnect.with(0.3); 2]),
        TrainConfig {
            lr: 0.1,
            weight_decay: 1e-3,
            ..base.with_layers([RegKind::GaussianAdd.with(0.2); 2])
        },
        TrainConfig {
            lr: 1e30,
            ..base.with_layers([RegKind::Dropout.with(0.0); 2])
        },
    ];
    let mut hooks = vec![(); configs.len()];
    let mut members: Vec<Member> = configs
        .iter()
        .zip(hooks.iter_mut())
        .map(|(cfg, hook)| Member { cfg, hook })
        .collect();
    let stacked = train_stack(&mut members, 3, &data, 1).unwrap();
    for (cfg, got) in configs.iter().zip(&stacked) {
        let alone = train(cfg, 3, &data, 1, &mut ()).unwrap();
        assert_eq!(got.diverged, alone.diverged, "{cfg:?}");
        assert_eq!(got.rows.len(), alone.rows.len(), "{cfg:?}");
        if alone.diverged {
            continue;
        }
        for (a, b) in got.rows.iter().zip(&alone.rows) {
            for (x, y) in [(a.train_loss, b.train_loss), (a.test_loss, b.test_loss)] {
                assert!(
                    (x - y).abs() < 1e-3 * y.abs().max(1.0),
                    "{cfg:?}: {x} vs {y}"
                );
            }
        }
    }
    assert!(stacked[3].diverged, "lr 1e30 should diverge");
}
