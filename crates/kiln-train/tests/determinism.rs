//! Reproducibility, in a test binary of its own: the device's random generator is shared by
//! the threads of one process, so this must not run beside other training tests.

use burn::tensor::Device;
use kiln_datasets::{Standardizer, digits, split};
use kiln_fnn::MlpConfig;
use kiln_train::{Task, Trainer, TrainerConfig, Verbosity};

#[test]
fn the_same_seed_gives_the_same_history() {
    let parts = split(&digits(), 0.2, 0).unwrap();
    let mut train = parts.first;
    Standardizer::fit(&train).transform(&mut train).unwrap();
    let run = |seed: u64| {
        let device = Device::flex();
        device.seed(seed);
        let model = MlpConfig::new(64, vec![32], 10)
            .with_dropout(0.2)
            .init(&device);
        let config = TrainerConfig {
            epochs: 3,
            seed,
            verbosity: Verbosity::Quiet,
            ..TrainerConfig::new(Task::Classification)
        };
        let fit = Trainer::new(config, device)
            .unwrap()
            .fit(model, &train)
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
            .collect::<Vec<_>>()
    };
    let first = run(11);
    assert_eq!(first, run(11));
    assert_ne!(first, run(12), "another seed gives another run");
}
