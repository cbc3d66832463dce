//! Augmentation inside the trainer: training batches only, labels untouched.

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Tensor};
use kiln_datasets::{digit_images, digits, split};
use kiln_fnn::MlpConfig;
use kiln_train::{
    Augmentation, BatchTargets, DataBatcher, Task, TrainError, Trainer, TrainerConfig, Verbosity,
    evaluate,
};

fn augmentation() -> Augmentation {
    Augmentation::new(3).flip().crop(1).rotate(10.0).noise(0.05)
}

#[test]
fn augmented_batches_change_pixels_but_not_labels() {
    let data = Arc::new(digit_images());
    let device = Device::flex();
    let indices: Vec<usize> = (100..164).collect();
    let plain = DataBatcher::<Tensor<4>>::new(data.clone()).batch(indices.clone(), &device);
    let augmented = DataBatcher::<Tensor<4>>::new(data.clone())
        .with_augmentation(augmentation())
        .batch(indices.clone(), &device);
    let again = DataBatcher::<Tensor<4>>::new(data)
        .with_augmentation(augmentation())
        .batch(indices, &device);

    let pixels = |t: &Tensor<4>| t.to_data().iter::<f32>().collect::<Vec<_>>();
    assert_ne!(pixels(&plain.inputs), pixels(&augmented.inputs));
    assert_eq!(
        pixels(&augmented.inputs),
        pixels(&again.inputs),
        "same seed, same batch"
    );
    assert!(
        pixels(&augmented.inputs)
            .iter()
            .all(|v| (0.0..=1.0).contains(v))
    );
    let labels = |t: &BatchTargets| match t {
        BatchTargets::Classes(c) => c.to_data().iter::<i64>().collect::<Vec<_>>(),
        _ => panic!("classes"),
    };
    assert_eq!(labels(&plain.targets), labels(&augmented.targets));
}

#[test]
fn validation_and_test_data_are_never_augmented() {
    // With a learning rate this small the weights do not move, so the validation history and
    // the test metrics can only differ if augmentation reached the validation or test batches.
    let parts = split(&digit_images(), 0.2, 1).unwrap();
    let run = |aug: Option<Augmentation>| {
        let device = Device::flex();
        device.seed(5);
        let model = MlpConfig::new(64, vec![32], 10).init(&device);
        let config = TrainerConfig {
            epochs: 2,
            lr: 1e-30,
            augmentation: aug,
            verbosity: Verbosity::Quiet,
            ..TrainerConfig::new(Task::Classification)
        };
        let fit = Trainer::new(config, device.clone())
            .unwrap()
            .fit(model, &parts.first)
            .unwrap();
        let test = evaluate(&fit.model, &parts.second, Task::Classification, 64, &device);
        let history: Vec<(f64, Option<f64>)> = fit
            .history
            .epochs
            .iter()
            .map(|r| (r.val_loss, r.val_accuracy))
            .collect();
        (
            history,
            test.loss,
            test.accuracy,
            fit.history.epochs[0].train_loss,
        )
    };
    let (plain, augmented) = (run(None), run(Some(augmentation())));
    assert_eq!(plain.0, augmented.0, "validation batches are bit-identical");
    assert_eq!(
        (plain.1, plain.2),
        (augmented.1, augmented.2),
        "test batches too"
    );
    assert_ne!(
        plain.3, augmented.3,
        "while the training batches did change"
    );
}

#[test]
fn augmenting_samples_that_are_not_images_is_an_error() {
    let device = Device::flex();
    let config = TrainerConfig {
        augmentation: Some(augmentation()),
        verbosity: Verbosity::Quiet,
        ..TrainerConfig::new(Task::Classification)
    };
    let e = Trainer::new(config, device.clone())
        .unwrap()
        .fit(MlpConfig::new(64, vec![], 10).init(&device), &digits())
        .unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::InvalidOption {
                option: "augmentation",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("got [64]"), "{e}");
}
