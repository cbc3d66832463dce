//! CIFAR-10 with the batch-normalised `cifar-bn` preset, per-channel normalisation and
//! augmentation. CIFAR-10 is in no package registry: when its files are missing this prints
//! where to get them.
//!
//! `cargo run --release -p kiln-examples --example cifar10_cnn [EPOCHS]`

use kiln::datasets::{ChannelNormalizer, DataError, cifar10};
use kiln::prelude::*;
use kiln::train::Augmentation;

fn main() -> anyhow::Result<()> {
    let epochs = std::env::args().nth(1).map_or(Ok(30), |e| e.parse())?;
    let (mut train, mut test) = match (cifar10(None, true), cifar10(None, false)) {
        (Ok(train), Ok(test)) => (train, test),
        (Err(e @ DataError::MissingFile { .. }), _)
        | (_, Err(e @ DataError::MissingFile { .. })) => {
            println!("{e}");
            return Ok(());
        }
        (Err(e), _) | (_, Err(e)) => return Err(e.into()),
    };
    let normalizer = ChannelNormalizer::fit(&train)?;
    normalizer.transform(&mut train)?;
    normalizer.transform(&mut test)?;

    let (backend, device) = device(None)?;
    device.seed(42);
    let model = CnnConfig::preset(Preset::CifarBn, 10).init(&device);
    let config = TrainerConfig {
        epochs,
        batch_size: 64,
        validation_split: 0.1,
        augmentation: Some(Augmentation::new(42).flip().crop(4)),
        early_stopping: Some(EarlyStopping {
            patience: 5,
            ..Default::default()
        }),
        ..TrainerConfig::new(Task::Classification)
    };
    let fit = Trainer::new(config, device.clone())?.fit(model, &train)?;
    let m = evaluate(&fit.model, &test, Task::Classification, 256, &device);
    println!(
        "backend {backend}: test accuracy {:.4}",
        m.accuracy.unwrap_or_default()
    );
    Ok(())
}
