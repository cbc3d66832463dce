//! Forecasting the airline passengers series one month ahead with an LSTM: windows of 12 months,
//! the last 20% of the months as the test period, the 20% before them for validation (windows
//! after the training ones in time: a random split of overlapping windows would be nearly
//! in-sample), and the naive baselines beside the model. The data is embedded.
//!
//! `cargo run --release -p kiln-examples --example airline_forecast_lstm`

use kiln::datasets::{WindowConfig, Windows, airline};
use kiln::prelude::*;
use kiln::train::predict;

fn main() -> anyhow::Result<()> {
    let (backend, device) = device(None)?;
    let windows = Windows::new(&airline(), &WindowConfig::default())?;

    device.seed(42);
    let model = SequenceModelConfig::new(1, 32, 1).init(&device);
    let config = TrainerConfig {
        epochs: 200,
        batch_size: 16,
        lr: 0.005,
        early_stopping: Some(EarlyStopping {
            patience: 20,
            ..Default::default()
        }),
        ..TrainerConfig::new(Task::Regression)
    };
    let fit = Trainer::new(config, device.clone())?.fit_with_validation(
        model,
        windows.train.clone(),
        windows.valid.clone(),
    )?;
    let outputs = predict(&fit.model, &windows.test, 64, &device);
    let report = windows.report(&outputs);
    println!(
        "backend {backend}: best epoch {} of {}",
        fit.best_epoch, fit.epochs_run
    );
    println!("test RMSE (passengers, thousands):");
    println!("  LSTM            {:.2}", report.model.rmse);
    println!("  naive last      {:.2}", report.naive_last.rmse);
    if let Some(seasonal) = report.naive_seasonal {
        println!("  naive seasonal  {:.2}", seasonal.rmse);
    }
    Ok(())
}
