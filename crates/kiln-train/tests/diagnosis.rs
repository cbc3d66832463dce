//! The trainer's own diagnosis, from the library: real data, every `fit`.

mod common;

use burn::tensor::Device;
use kiln_cnn::{CnnConfig, Preset};
use kiln_datasets::{Data, digits, split};
use kiln_fnn::MlpConfig;
use kiln_train::{FindingKind, Task, Trainer, TrainerConfig, Verbosity};

fn config() -> TrainerConfig {
    TrainerConfig {
        epochs: 4,
        batch_size: 64,
        verbosity: Verbosity::Quiet,
        ..TrainerConfig::new(Task::Classification)
    }
}

/// The digits' raw intensities (0-16, a pixel's mean up to about 12) are unscaled inputs; the
/// same digits standardised are not, and that run has no finding at all.
#[test]
fn raw_digits_are_unscaled_inputs_and_standardised_ones_are_healthy() {
    let device = Device::flex();
    let raw = split(&digits(), 0.2, 0).unwrap().first;
    device.seed(3);
    let fit = Trainer::new(config(), device.clone())
        .unwrap()
        .fit(MlpConfig::new(64, vec![32], 10).init(&device), &raw)
        .unwrap();
    let kinds: Vec<(FindingKind, usize)> = fit
        .diagnosis
        .findings
        .iter()
        .map(|f| (f.kind, f.epoch))
        .collect();
    assert!(
        kinds.contains(&(FindingKind::UnscaledInputs, 1)),
        "{:?}",
        fit.diagnosis
    );
    assert!(fit.diagnosis.findings[0].value > 10.0);
    // One measured step in 16 over 18 steps an epoch, every epoch, every tensor.
    assert_eq!(fit.gradients.len(), 4);
    assert_eq!(fit.gradients[0].params.len(), 4);

    let (train, _) = common::digits_split();
    device.seed(3);
    let fit = Trainer::new(config(), device.clone())
        .unwrap()
        .fit(MlpConfig::new(64, vec![32], 10).init(&device), &train)
        .unwrap();
    assert_eq!(fit.diagnosis.findings, [], "{:?}", fit.diagnosis);
    // Diagnostics off: no measurement, and the history's rules still run.
    let off = TrainerConfig {
        diagnostics: false,
        ..config()
    };
    let fit = Trainer::new(off, device.clone())
        .unwrap()
        .fit(MlpConfig::new(64, vec![32], 10).init(&device), &raw)
        .unwrap();
    assert!(fit.gradients.is_empty());
    assert!(
        fit.diagnosis
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::UnscaledInputs)
    );
}

/// The fault suite's unscaled inputs (the command line standardises every table, so they are
/// made here, as a library user makes them): the raw digits for the MLP and, as 1x8x8 images,
/// the CNN, on two seeds, found at epoch 1 (the rule reads the data, before any step).
#[test]
fn unscaled_inputs_are_found_for_the_mlp_and_the_cnn_on_two_seeds() {
    let device = Device::flex();
    let raw = split(&digits(), 0.2, 0).unwrap().first;
    let images = Data::new(raw.x.clone(), vec![1, 8, 8], raw.y.clone()).unwrap();
    for seed in [1, 2] {
        let config = TrainerConfig { seed, ..config() };
        device.seed(seed);
        let mlp = Trainer::new(config.clone(), device.clone())
            .unwrap()
            .fit(MlpConfig::new(64, vec![32], 10).init(&device), &raw)
            .unwrap();
        let cnn = Trainer::new(config, device.clone())
            .unwrap()
            .fit(CnnConfig::preset(Preset::Digits, 10).init(&device), &images)
            .unwrap();
        for (family, fit) in [("MLP", &mlp.diagnosis), ("CNN", &cnn.diagnosis)] {
            let unscaled = fit
                .findings
                .iter()
                .find(|f| f.kind == FindingKind::UnscaledInputs);
            assert_eq!(
                unscaled.map(|f| f.epoch),
                Some(1),
                "{family}, seed {seed}: {fit:?}"
            );
        }
    }
}
