//! Reproducibility, in a test binary of its own: the device's random generator is shared by
//! the threads of one process, so this must not run beside other training tests (and its runs
//! go one after another, in one test).

use burn::tensor::Device;
use kiln_datasets::{Data, Standardizer, digits, split};
use kiln_fnn::MlpConfig;
use kiln_train::{Augmentation, Task, Trainer, TrainerConfig, Verbosity};

type Row = (f64, Option<f64>, f64, Option<f64>, f64);

fn history(train: &Data, seed: u64, augmentation: Option<Augmentation>) -> Vec<Row> {
    let device = Device::flex();
    device.seed(seed);
    let model = MlpConfig::new(64, vec![32], 10)
        .with_dropout(0.2)
        .init(&device);
    let config = TrainerConfig {
        epochs: 3,
        seed,
        augmentation,
        verbosity: Verbosity::Quiet,
        ..TrainerConfig::new(Task::Classification)
    };
    let fit = Trainer::new(config, device)
        .unwrap()
        .fit(model, train)
        .unwrap();
    fit.history
        .epochs
        .iter()
        .map(|r| {
            (
                r.train_loss,
                r.train_accuracy,
                r.val_loss,
                r.val_accuracy,
                r.lr,
            )
        })
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_history() {
    let parts = split(&digits(), 0.2, 0).unwrap();
    let mut train = parts.first;
    Standardizer::fit(&train).transform(&mut train).unwrap();
    let first = history(&train, 11, None);
    assert_eq!(first, history(&train, 11, None));
    assert_ne!(
        first,
        history(&train, 12, None),
        "another seed gives another run"
    );

    // Augmented batches are built on the loader thread, ahead of the step: still the same run
    // for the same seed, and not the unaugmented one.
    let d = digits();
    let images = Data::new(d.x.iter().map(|v| v / 16.0).collect(), vec![1, 8, 8], d.y).unwrap();
    let train = split(&images, 0.2, 0).unwrap().first;
    let augmentation = || Some(Augmentation::new(3).flip().crop(1).rotate(10.0).noise(0.05));
    let augmented = history(&train, 11, augmentation());
    assert_eq!(augmented, history(&train, 11, augmentation()));
    assert_ne!(augmented, history(&train, 11, None));
}
