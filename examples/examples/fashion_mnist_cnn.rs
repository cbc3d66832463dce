//! Fashion-MNIST with a CNN and data augmentation (random flips and crops of the training
//! images only). Needs `datasets/fetch.sh fashion-mnist`.
//!
//! `cargo run --release -p kiln-examples --example fashion_mnist_cnn [EPOCHS]`

use kiln::datasets::{MnistSplit, fashion_mnist};
use kiln::prelude::*;
use kiln::train::Augmentation;

fn main() -> anyhow::Result<()> {
    let epochs = std::env::args().nth(1).map_or(Ok(15), |e| e.parse())?;
    let (backend, device) = device(None)?;
    let train = fashion_mnist(None, MnistSplit::Train)?;
    let test = fashion_mnist(None, MnistSplit::Test)?;

    device.seed(42);
    let mut cnn = CnnConfig::preset(Preset::Mnist, 10);
    cnn.dropout = 0.3;
    let model = cnn.init(&device);
    let config = TrainerConfig {
        epochs,
        batch_size: 64,
        validation_split: 0.1,
        augmentation: Some(Augmentation::new(42).flip().crop(2)),
        early_stopping: Some(EarlyStopping {
            patience: 4,
            ..Default::default()
        }),
        ..TrainerConfig::new(Task::Classification)
    };
    let fit = Trainer::new(config, device.clone())?.fit(model, &train)?;
    let m = evaluate(&fit.model, &test, Task::Classification, 256, &device);
    println!(
        "backend {backend}: {} epochs (best {}), test accuracy {:.4}",
        fit.epochs_run,
        fit.best_epoch,
        m.accuracy.unwrap_or_default()
    );
    if let Some(report) = m.classes {
        print!("{report}");
    }
    Ok(())
}
