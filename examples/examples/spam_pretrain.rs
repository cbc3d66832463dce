//! BERT's paradigm from the library: a transformer encoder pre-trained as a masked-language
//! model on SpamAssassin's texts (labels unused), then a spam filter fine-tuned from it with
//! only 200 labelled messages, against the same model from scratch on the 200. Needs the data:
//! `datasets/fetch.sh spam`. The CLI's `kiln pretrain` and `kiln train --init-from` do the same
//! (`crates/kiln-bench/scripts/pretrain.sh`).
//!
//! `cargo run --release -p kiln-examples --example spam_pretrain`

use std::path::Path;

use kiln::datasets::{LabelSubset, TextEncoder, Tokenizer, spam};
use kiln::prelude::*;
use kiln::train::{MaskedLm, evaluate_masked, init_from};

const PRETRAIN_EPOCHS: usize = 8;

fn encoder_config(d_output: usize) -> SequenceClassifierConfig {
    SequenceClassifierConfig::new(64, d_output)
        .with_n_blocks(2)
        .with_max_len(128)
}

fn main() -> anyhow::Result<()> {
    let (backend, device) = device(None)?;
    let messages = spam(None)?;
    let (train, test) = messages.split(0.2, 1)?;
    // The texts of every message but the test ones, labels unused; <mask> is the last id.
    let vocabulary =
        TextEncoder::fit(&train.texts, Tokenizer::Word, 128, 2, 7_999).with_mask_token();
    let texts = vocabulary.encode_texts(&train.texts);
    let masking = MaskedLm::new(
        vocabulary.mask_id().expect("added"),
        vocabulary.vocab_size(),
    );
    device.seed(1);
    let model =
        encoder_config(vocabulary.vocab_size()).init_masked_lm(vocabulary.vocab_size(), &device);
    let pretraining = TrainerConfig {
        epochs: PRETRAIN_EPOCHS,
        lr: 0.003,
        lr_schedule: LrSchedule::Cosine { min_lr: 0.0 },
        validation_split: 0.05,
        masked_lm: Some(masking),
        ..TrainerConfig::new(Task::Classification)
    };
    let pretrained = Trainer::new(pretraining, device.clone())?
        .fit(model, &texts)?
        .model;
    let held_out = vocabulary.encode_texts(&test.texts);
    let words = evaluate_masked(&pretrained, &held_out, masking, 256, &device);
    println!(
        "backend {backend}: pre-trained {PRETRAIN_EPOCHS} epochs; hidden words of the test texts: accuracy {:.4}",
        words.accuracy.unwrap_or_default()
    );
    let saved = std::env::temp_dir().join("kiln-spam-pretrained.bpk");
    pretrained.save_file(&saved)?;

    // 200 labelled messages; validation is split off first, as the CLI does.
    let (train, test) = (vocabulary.encode_set(&train), vocabulary.encode_set(&test));
    let parts = kiln::datasets::split(&train, 0.2, 1)?;
    let few = LabelSubset {
        samples: Some(200),
        ..Default::default()
    }
    .cut_training(&parts.first, 1)?;
    let fine_tuning = TrainerConfig {
        epochs: 20,
        batch_size: 16,
        ..TrainerConfig::new(Task::Classification)
    };
    for (name, start) in [
        ("fine-tuned", Some(saved.as_path())),
        ("from scratch", None::<&Path>),
    ] {
        device.seed(1);
        let mut model = encoder_config(2).init_tokens(vocabulary.vocab_size(), &device);
        if let Some(path) = start {
            model = init_from(model, path, &[])?.0;
        }
        let fit = Trainer::new(fine_tuning.clone(), device.clone())?.fit_with_validation(
            model,
            few.clone(),
            parts.second.clone(),
        )?;
        let m = evaluate(&fit.model, &test, Task::Classification, 256, &device);
        println!(
            "{name}: test accuracy {:.4}",
            m.accuracy.unwrap_or_default()
        );
    }
    std::fs::remove_file(&saved).ok();
    Ok(())
}
