//! Spam or ham: a 2-block Transformer encoder (d_model 64) over the first 256 word tokens of
//! each SpamAssassin email, read through a [CLS] token. Needs the data: `datasets/fetch.sh spam`.
//! The same model as `kiln train --model transformer --dataset spam --seq-len 256 --pooling cls
//! --dropout 0.3 --batch-size 16 --validation-split 0.1 --epochs 8 --patience 2`.
//!
//! `cargo run --release -p kiln-examples --example spam_transformer`

use kiln::datasets::{TextEncoder, Tokenizer, spam};
use kiln::prelude::*;
use kiln::transformer::Pooling;

fn main() -> anyhow::Result<()> {
    let (backend, device) = device(None)?;
    let (train, test) = spam(None)?.split(0.2, 42)?;
    // The vocabulary is fitted on the training emails only.
    let encoder = TextEncoder::fit(&train.texts, Tokenizer::Word, 256, 2, 20_000);
    let (train, test) = (encoder.encode_set(&train), encoder.encode_set(&test));

    device.seed(42);
    let model = SequenceClassifierConfig::new(64, 2)
        .with_n_blocks(2)
        .with_dropout(0.3)
        .with_max_len(256)
        .with_pooling(Pooling::Cls)
        .init_tokens(encoder.vocab_size(), &device);
    let config = TrainerConfig {
        epochs: 8,
        batch_size: 16,
        // A tenth of the training emails decides early stopping; the rest train.
        validation_split: 0.1,
        early_stopping: Some(EarlyStopping {
            patience: 2,
            ..Default::default()
        }),
        ..TrainerConfig::new(Task::Classification)
    };
    let fit = Trainer::new(config, device.clone())?.fit(model, &train)?;
    let m = evaluate(&fit.model, &test, Task::Classification, 256, &device);
    let report = m.classes.as_ref().expect("classification");
    println!(
        "backend {backend}: best epoch {} of {}; test accuracy {:.4}, spam F1 {:.4}",
        fit.best_epoch,
        fit.epochs_run,
        m.accuracy.unwrap_or_default(),
        report.f1[1]
    );
    Ok(())
}
