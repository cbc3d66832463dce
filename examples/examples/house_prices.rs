//! Regression: price = 1.2 * area + 5 * location + 20 + noise, learned by an MLP whose learning
//! rate decays as lr / (1 + decay * epoch).
//!
//! `cargo run --release -p kiln-examples --example house_prices`

use kiln::datasets::{Standardizer, split, synthetic};
use kiln::prelude::*;

fn main() -> anyhow::Result<()> {
    let (backend, device) = device(None)?;
    let data = synthetic::house_prices(1000, 7);
    let parts = split(&data, 0.2, 7)?;
    let (mut train, mut test) = (parts.first, parts.second);
    let scaler = Standardizer::fit(&train);
    scaler.transform(&mut train)?;
    scaler.transform(&mut test)?;

    device.seed(7);
    let model = MlpConfig::new(2, vec![32], 1).init(&device);
    let config = TrainerConfig {
        epochs: 100,
        lr: 0.05,
        lr_schedule: LrSchedule::InverseTime { decay: 0.05 },
        early_stopping: Some(EarlyStopping {
            patience: 10,
            ..Default::default()
        }),
        ..TrainerConfig::new(Task::Regression)
    };
    let fit = Trainer::new(config, device.clone())?.fit(model, &train)?;
    let m = evaluate(&fit.model, &test, Task::Regression, 128, &device);
    println!(
        "backend {backend}: {} epochs, final lr {:.5}; test R² {:.4}, MAE {:.2}, RMSE {:.2} (noise std 5)",
        fit.epochs_run,
        fit.history.epochs.last().map_or(0.0, |r| r.lr),
        m.r2.unwrap_or_default(),
        m.mae.unwrap_or_default(),
        m.mse.unwrap_or_default().sqrt()
    );
    Ok(())
}
