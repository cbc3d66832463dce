//! Kaggle's Digit Recognizer end to end: `train.csv` in, a CNN trained, `submission.csv` out.
//!
//! `cargo run --release -p kiln-examples --example digit_recognizer -- train.csv test.csv [submission.csv]`

use std::path::PathBuf;

use kiln::datasets::{digit_recognizer_test, digit_recognizer_train, write_submission};
use kiln::prelude::*;

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let [train_csv, test_csv, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: digit_recognizer TRAIN_CSV TEST_CSV [SUBMISSION_CSV]");
    };
    let output = rest
        .first()
        .cloned()
        .unwrap_or_else(|| "submission.csv".into());

    let train = digit_recognizer_train(train_csv)?;
    let test = digit_recognizer_test(test_csv)?;
    let (_, device) = device(None)?;
    device.seed(42);
    let model = CnnConfig::preset(Preset::Mnist, 10).init(&device);
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
    let labels: Vec<usize> = predict(&fit.model, &test, 256, &device)
        .iter()
        .map(|row| {
            (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0)
        })
        .collect();
    write_submission(&output, &labels)?;
    println!(
        "validation accuracy {:.4}; {} predictions written to {}",
        fit.history.epochs[fit.best_epoch - 1]
            .val_accuracy
            .unwrap_or_default(),
        labels.len(),
        output.display()
    );
    Ok(())
}
