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
