//! Data-parallel training on two and four devices against one device with the same global
//! batch. A test binary of its own, its tests taking turns: the CPU backend's random generator is
//! shared by every thread of the process.

mod common;

use burn::tensor::Device;
use common::digits_split;
use kiln_datasets::Data;
use kiln_fnn::{Mlp, MlpConfig};
use kiln_train::{FitResult, Task, Trainer, TrainerConfig, Verbosity, predict};

/// The CPU backend's generator is the process's: the tests that seed it and draw from it take
/// turns.
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Trains the same freshly initialised MLP (no dropout) on `devices` copies of the flex device.
fn fit_on(devices: usize, train: &Data) -> FitResult<Mlp> {
    fit_with(devices, train, TrainerConfig::new(Task::Classification))
}

/// [`fit_on`] with `config`'s other settings.
fn fit_with(devices: usize, train: &Data, config: TrainerConfig) -> FitResult<Mlp> {
    let device = Device::flex();
    device.seed(3);
    let model = MlpConfig::new(64, vec![32], 10).init(&device);
    let config = TrainerConfig {
        epochs: 6,
        batch_size: 32,
        devices: vec![device.clone(); devices],
        verbosity: Verbosity::Quiet,
        ..config
    };
    Trainer::new(config, device)
        .unwrap()
        .fit(model, train)
        .unwrap()
}

/// The largest difference between two models' logits on `test`.
fn largest_logit_difference(a: &Mlp, b: &Mlp, test: &Data) -> f32 {
    let (a, b) = (logits(a, test), logits(b, test));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn logits(model: &Mlp, test: &Data) -> Vec<f32> {
    predict(model, test, 256, &Device::flex()).concat()
}

#[test]
fn two_and_four_devices_train_as_one_device_with_the_same_global_batch() {
    let _draws = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let (train, test) = digits_split();
    let one = fit_on(1, &train);
    for n in [2, 4] {
        let many = fit_on(n, &train);
        let first = &many.history.epochs[0];
        let last = many.history.epochs.last().unwrap();
        assert!(
            last.train_loss < first.train_loss / 2.0,
            "the loss falls: {:?}",
            many.history
        );
        assert!(last.val_accuracy.unwrap() > 0.9, "{:?}", many.history);

        // Each step sees the same 32 samples on one device as on n (32 / n each; the epoch's
        // last, partial step of 30 in the same chunks: 15 + 15, or 8 + 8 + 8 + 6) and sums the
        // same gradients: the runs differ only in how float32 sums are grouped, about 1e-7
        // relative per step. Measured after 6 epochs (216 steps): losses within 3e-8, logits
        // within 1e-6. The bounds leave 10-100x room for another CPU's rounding, while a wrong
        // split fails them: weighting the last step's two unequal parts equally instead of by
        // their sizes moved the logits by 1e-2, and slicing the epoch as burn-train's
        // `split_dataloader` does (the remainder to the last device: 289 samples, a 37th step
        // of one sample) moved the first epoch's loss by 2e-5.
        for (a, b) in one.history.epochs.iter().zip(&many.history.epochs) {
            assert!(
                (a.train_loss - b.train_loss).abs() < 1e-6,
                "{n}: {a:?}\n{b:?}"
            );
            assert!((a.val_loss - b.val_loss).abs() < 1e-6, "{n}: {a:?}\n{b:?}");
        }
        let worst = largest_logit_difference(&one.model, &many.model, &test);
        eprintln!("largest logit difference, 1 vs {n} devices: {worst:e}");
        assert!(worst < 1e-4, "{n} devices: logits differ by up to {worst}");
    }
}

#[test]
fn a_frozen_layer_unfreezes_on_two_devices_as_on_one() {
    let _draws = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let (train, test) = digits_split();
    // Frozen for epochs 1-3, then trained at a tenth of the rate: the learner is rebuilt at
    // epoch 4 from epoch 3's checkpoint, on two devices as on one.
    let config = || TrainerConfig {
        freeze: vec!["hidden".into()],
        unfreeze_at: Some(kiln_train::Unfreeze {
            epoch: 4,
            lr_ratio: 0.1,
        }),
        ..TrainerConfig::new(Task::Classification)
    };
    let (one, two) = (fit_with(1, &train, config()), fit_with(2, &train, config()));
    let frozen = fit_with(
        1,
        &train,
        TrainerConfig {
            unfreeze_at: None,
            ..config()
        },
    );
    let worst = largest_logit_difference(&one.model, &two.model, &test);
    let moved = largest_logit_difference(&one.model, &frozen.model, &test);
    eprintln!("1 vs 2 devices: {worst:e}; unfrozen vs frozen throughout: {moved:e}");
    assert!(worst < 1e-4, "logits differ by up to {worst}");
    assert!(moved > 1e-2, "the layer trained after unfreezing: {moved}");
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
