//! Sequential MNIST: each image read row by row, 28 steps of 28 pixels, by an LSTM(128) whose
//! last step feeds the classifier. Needs the data: `datasets/fetch.sh mnist`.
//!
//! `cargo run --release -p kiln-examples --example sequential_mnist_lstm`

use kiln::datasets::{MnistSplit, mnist};
use kiln::prelude::*;

fn main() -> anyhow::Result<()> {
    let (backend, device) = device(None)?;
    let as_rows = |mut data: Data| {
        data.sample_shape = vec![28, 28];
        data
    };
    let train = as_rows(mnist(None, MnistSplit::Train)?);
    let test = as_rows(mnist(None, MnistSplit::Test)?);

    device.seed(42);
    let model = SequenceModelConfig::new(28, 128, 10).init(&device);
    let config = TrainerConfig {
        epochs: 10,
        batch_size: 64,
        validation_split: 0.1,
        early_stopping: Some(EarlyStopping {
            patience: 2,
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
