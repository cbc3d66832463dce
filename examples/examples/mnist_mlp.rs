//! MNIST with the classic 784-128-64-10 MLP: ReLU, dropout 0.2, Adam, 20% validation split,
//! early stopping. Needs the data: `datasets/fetch.sh mnist`.
//!
//! `cargo run --release -p kiln-examples --example mnist_mlp`

use kiln::datasets::{MnistSplit, mnist};
use kiln::prelude::*;

fn main() -> anyhow::Result<()> {
    let (backend, device) = device(None)?;
    let train = mnist(None, MnistSplit::Train)?;
    let test = mnist(None, MnistSplit::Test)?;

    device.seed(42);
    let model = MlpConfig::new(784, vec![128, 64], 10)
        .with_dropout(0.2)
        .init(&device);
    let config = TrainerConfig {
        epochs: 10,
        batch_size: 32,
        validation_split: 0.2,
        early_stopping: Some(EarlyStopping {
            patience: 3,
            ..Default::default()
        }),
        ..TrainerConfig::new(Task::Classification)
    };
    let fit = Trainer::new(config, device.clone())?.fit(model, &train)?;
    let m = evaluate(&fit.model, &test, Task::Classification, 256, &device);
    println!(
        "backend {backend}: best epoch {} of {}, {:.0} samples/s; test accuracy {:.4}",
        fit.best_epoch,
        fit.epochs_run,
        fit.samples_per_sec,
        m.accuracy.unwrap_or_default()
    );
    Ok(())
}
