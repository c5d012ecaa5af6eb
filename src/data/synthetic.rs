//! The synthetic stand-in for Fashion-MNIST that tests and smoke runs
//! train on (`--synthetic`), apart from the loading of the real files.

use anyhow::Result;
use candle_core::Device;

use super::{DataOptions, Dataset, RawData, CLASSES, IMAGE_PIXELS, IMAGE_SIDE};

/// A tiny deterministic stand-in for Fashion-MNIST (1200 train, 300 test
/// 28x28 images): each class lights a different horizontal band, plus noise.
/// It exists so that tests and smoke runs take seconds; results on it mean
/// nothing about Fashion-MNIST.
pub(super) fn synthetic(opts: &DataOptions, dev: &Device) -> Result<Dataset> {
    let mut rng = crate::rng::Rng::new(0xda7a, crate::rng::Stream::Init);
    let mut make = |n: usize| {
        let mut images = vec![0u8; n * IMAGE_PIXELS];
        let mut labels = vec![0u8; n];
        for i in 0..n {
            let class = (rng.next_u64() % CLASSES as u64) as usize;
            labels[i] = class as u8;
            for (j, px) in images[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
                .iter_mut()
                .enumerate()
            {
                let row = j / IMAGE_SIDE;
                let signal = if row / 3 == class { 220.0 } else { 0.0 };
                let noise = rng.uniform() * 100.0;
                *px = (signal + noise).min(255.0) as u8;
            }
        }
        (images, labels)
    };
    let (train_images, train_labels) = make(1200);
    let (test_images, test_labels) = make(300);
    RawData {
        train_images,
        train_labels,
        test_images,
        test_labels,
    }
    .to_dataset(
        "synthetic".into(),
        vec![("synthetic-v1".into(), "0".into())],
        // Not Fashion-MNIST, and recorded as such.
        &DataOptions {
            unpinned: true,
            ..opts.clone()
        },
        dev,
    )
}
