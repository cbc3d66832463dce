//! Data-parallel training on two devices (burn-train's multi-device strategy) against one
//! device with the same global batch. A test binary of its own: the CPU backend's random
//! generator is shared by every thread of the process.

mod common;

use burn::tensor::Device;
use common::digits_split;
use kiln_datasets::Data;
use kiln_fnn::{Mlp, MlpConfig};
use kiln_train::{FitResult, Task, Trainer, TrainerConfig, Verbosity, predict};

/// Trains the same freshly initialised MLP (no dropout) on `devices` copies of the flex device.
fn fit_on(devices: usize, train: &Data) -> FitResult<Mlp> {
    let device = Device::flex();
    device.seed(3);
    let model = MlpConfig::new(64, vec![32], 10).init(&device);
    let config = TrainerConfig {
        epochs: 6,
        batch_size: 32,
        devices: vec![device.clone(); devices],
        verbosity: Verbosity::Quiet,
        ..TrainerConfig::new(Task::Classification)
    };
    Trainer::new(config, device)
        .unwrap()
        .fit(model, train)
        .unwrap()
}

fn logits(model: &Mlp, test: &Data) -> Vec<f32> {
    predict(model, test, 256, &Device::flex()).concat()
}

#[test]
fn two_devices_train_as_one_device_with_the_same_global_batch() {
    let (train, test) = digits_split();
    let one = fit_on(1, &train);
    let two = fit_on(2, &train);

    let first = &two.history.epochs[0];
    let last = two.history.epochs.last().unwrap();
    assert!(
        last.train_loss < first.train_loss / 2.0,
        "the loss falls: {:?}",
        two.history
    );
    assert!(last.val_accuracy.unwrap() > 0.9, "{:?}", two.history);

    // Each step sees the same 32 samples on one device as on two (16 each; the epoch's last,
    // partial step in parts as the devices' slices allow) and averages the same gradients: the runs differ only in how
    // float32 sums are grouped (two half-batch means halved and added, against one mean),
    // about 1e-7 relative per step. Measured after 6 epochs (216 steps): losses within 3e-8,
    // logits within 1e-6. The bounds leave 10-100x room for another CPU's rounding, while a
    // wrong split fails them: weighting the last step's two unequal parts equally instead of
    // by their sizes moved the logits by 1e-2.
    for (a, b) in one.history.epochs.iter().zip(&two.history.epochs) {
        assert!((a.train_loss - b.train_loss).abs() < 1e-6, "{a:?}\n{b:?}");
        assert!((a.val_loss - b.val_loss).abs() < 1e-6, "{a:?}\n{b:?}");
    }
    let (a, b) = (logits(&one.model, &test), logits(&two.model, &test));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    eprintln!("largest logit difference, 1 vs 2 devices: {worst:e}");
    assert!(worst < 1e-4, "logits differ by up to {worst}");
}

#[test]
fn a_global_batch_that_does_not_split_evenly_is_refused_up_front() {
    let config = TrainerConfig {
        batch_size: 32,
        devices: vec![Device::flex(); 3],
        ..TrainerConfig::new(Task::Classification)
    };
    let error = Trainer::new(config, Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("32 is the global batch"), "{error}");
    assert!(error.contains("3 devices"), "{error}");
}
