//! The classic MNIST CNN (conv 32, pool, conv 64, pool, dense 128). Needs
//! `datasets/fetch.sh mnist`.
//!
//! `cargo run --release -p kiln-examples --example mnist_cnn [EPOCHS]`

use kiln::datasets::{MnistSplit, mnist};
use kiln::prelude::*;

fn main() -> anyhow::Result<()> {
    let epochs = std::env::args().nth(1).map_or(Ok(12), |e| e.parse())?;
    let (backend, device) = device(None)?;
    let train = mnist(None, MnistSplit::Train)?;
    let test = mnist(None, MnistSplit::Test)?;

    device.seed(42);
    let model = CnnConfig::preset(Preset::Mnist, 10).init(&device);
    let config = TrainerConfig {
        epochs,
        batch_size: 64,
        validation_split: 0.1,
        early_stopping: Some(EarlyStopping {
            patience: 3,
            ..Default::default()
        }),
        ..TrainerConfig::new(Task::Classification)
    };
    let fit = Trainer::new(config, device.clone())?.fit(model, &train)?;
    let m = evaluate(&fit.model, &test, Task::Classification, 256, &device);
    println!(
        "backend {backend}: {} epochs (best {}), test accuracy {:.4}, macro F1 {:.4}",
        fit.epochs_run,
        fit.best_epoch,
        m.accuracy.unwrap_or_default(),
        m.classes.as_ref().map_or(0.0, |c| c.macro_f1)
    );
    Ok(())
}
