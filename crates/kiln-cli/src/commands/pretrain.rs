//! `kiln pretrain`: a transformer encoder pre-trained on texts without labels (BERT's
//! masked-language model), for `kiln train --init-from RUN` to fine-tune.

use anyhow::{Result, bail};
use kiln::train::MaskedLm;

use crate::args::{ModelKind, PretrainArgs};
use crate::dataset::{DatasetSpec, Scaler};

use super::train::{as_flag, new_config, train_new};

/// `kiln train` flags that are about labels, which pre-training never reads.
const LABEL_FLAGS: [&str; 6] = [
    "target",
    "task",
    "classes",
    "train_per_class",
    "train_samples",
    "augment",
];

pub fn pretrain(args: &PretrainArgs) -> Result<()> {
    // Joined first, so that every message of a rank of an MPI job says which it is.
    super::job::Job::current()?;
    let mut train = args.train.clone();
    if train.resume.is_some() {
        bail!("a pre-training run resumes as any run does: kiln train --resume DIR");
    }
    if train.config.is_some() || train.auto_fix {
        bail!("kiln pretrain takes kiln train's flags, not --config or --auto-fix");
    }
    if train.model != ModelKind::Transformer {
        bail!(
            "--model {}: kiln pretrain pre-trains the transformer's encoder (--model transformer)",
            super::train::model_word(train.model)
        );
    }
    if !matches!(train.dataset, DatasetSpec::Spam | DatasetSpec::TextCsv(_)) {
        bail!(
            "--dataset {}: kiln pretrain reads texts (spam, or text-csv:PATH --text-column C)",
            train.dataset
        );
    }
    let labels: Vec<String> = train
        .given
        .iter()
        .filter(|flag| LABEL_FLAGS.contains(&flag.as_str()))
        .map(|flag| format!("--{}", flag.replace('_', "-")))
        .collect();
    if !labels.is_empty() {
        bail!(
            "pre-training reads the texts alone, no labels: drop {}",
            labels.join(", ")
        );
    }
    train.pretraining = true;
    let (mut config, prepared) = new_config(&train)?;
    let Some(Scaler::Text(encoder)) = &prepared.scaler else {
        unreachable!("texts are encoded with a vocabulary")
    };
    config.trainer.masked_lm = Some(MaskedLm {
        rate: args.mask_rate,
        mask_id: encoder
            .mask_id()
            .expect("a pre-training vocabulary has <mask>"),
        vocab_size: encoder.vocab_size(),
        seed: train.seed,
    });
    config.trainer.check().map_err(as_flag)?;
    train_new(&train, &config, &prepared)
}
