//! Masked-language pre-training from the library (`TrainerConfig::masked_lm`) on real mail
//! (SpamAssassin, `datasets/fetch.sh spam`), and the classifier that starts from it.

use std::collections::HashMap;

use burn::module::Module;
use burn::tensor::Device;
use kiln_datasets::{Data, TextEncoder, Tokenizer, spam};
use kiln_train::{
    MaskedLm, Task, Trainer, TrainerConfig, Verbosity, evaluate_masked, init_from, make_batch,
};
use kiln_transformer::{MaskedTokens, SequenceClassifierConfig};

fn config() -> SequenceClassifierConfig {
    SequenceClassifierConfig::new(32, 2)
        .with_n_heads(2)
        .with_d_ff(64)
        .with_n_blocks(1)
        .with_dropout(0.0)
        .with_max_len(64)
}

/// The texts of 2,000 messages (training) and 400 others (held out), as ids of a vocabulary
/// fitted on the training texts, `<mask>` its last id.
fn texts() -> (Data, Data, TextEncoder) {
    let set = spam(None).expect("SpamAssassin: run datasets/fetch.sh spam");
    let encoder =
        TextEncoder::fit(&set.texts[..2000], Tokenizer::Word, 64, 3, 3000).with_mask_token();
    let train = encoder.encode_texts(&set.texts[..2000]);
    let held_out = encoder.encode_texts(&set.texts[2000..2400]);
    (train, held_out, encoder)
}

/// The share of the held-out hidden tokens that the most frequent token of the training texts
/// is: what a model that learnt only token frequencies scores.
fn frequency_baseline(train: &Data, held_out: &Data, masking: MaskedLm) -> f64 {
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for &id in train.x.iter().filter(|&&id| id >= 2.0) {
        *counts.entry(id as i64).or_default() += 1;
    }
    let top = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(id, _)| *id)
        .unwrap();
    let (_, targets) = masking.apply(&held_out.x, 64, 1);
    targets.iter().filter(|&&t| t == top).count() as f64 / targets.len() as f64
}

#[test]
fn pre_training_predicts_hidden_words_and_a_classifier_starts_from_its_encoder() {
    let (train, held_out, encoder) = texts();
    let device = Device::flex();
    device.seed(1);
    let masking = MaskedLm {
        seed: 1,
        ..MaskedLm::new(encoder.mask_id().unwrap(), encoder.vocab_size())
    };
    let model = config().init_masked_lm(encoder.vocab_size(), &device);
    let untrained = evaluate_masked(&model, &held_out, masking, 64, &device);
    let trainer_config = TrainerConfig {
        epochs: 4,
        lr: 0.003,
        batch_size: 32,
        validation_split: 0.1,
        verbosity: Verbosity::Quiet,
        masked_lm: Some(masking),
        ..TrainerConfig::new(Task::Classification)
    };
    let fit = Trainer::new(trainer_config, device.clone())
        .unwrap()
        .fit(model, &train)
        .unwrap();
    let trained = evaluate_masked(&fit.model, &held_out, masking, 64, &device);
    let baseline = frequency_baseline(&train, &held_out, masking);
    eprintln!("untrained {untrained:?}\ntrained {trained:?}\nmost frequent word {baseline:.3}");
    // A model of the vocabulary's ~3,000 ids starts near ln(3000) = 8.0 and chance accuracy;
    // trained, it must beat the most frequent word by a wide margin.
    assert!(untrained.loss > 7.0, "{untrained:?}");
    assert!(
        trained.accuracy.unwrap() > 1.5 * baseline,
        "masked-token accuracy {:?} against the most frequent word's {baseline}",
        trained.accuracy
    );
    assert!(trained.loss < untrained.loss - 2.0, "{trained:?}");
    let losses: Vec<f64> = fit.history.epochs.iter().map(|e| e.val_loss).collect();
    assert!(losses.windows(2).all(|w| w[1] < w[0]), "{losses:?}");

    // The classifier of the same configuration takes everything but its head.
    let dir = std::env::temp_dir().join(format!("kiln-pretrain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    fit.model.clone().save_file(dir.join("model.bpk")).unwrap();
    let classifier = config().init_tokens(encoder.vocab_size(), &device);
    let (classifier, report) = init_from(classifier, &dir, &[]).unwrap();
    assert_eq!(report.new, ["head.bias", "head.weight"]);
    assert!(
        report.skipped.iter().all(|p| p.starts_with("mlm_head")),
        "{report:?}"
    );
    assert!(
        report
            .loaded
            .contains(&"input.embedding.weight".to_string())
    );
    // Its encoder is the pre-trained one: the same vectors at every position.
    let ids = make_batch::<MaskedTokens>(&held_out, &[0, 1], &device)
        .inputs
        .ids;
    let ours = classifier.encode(ids.clone()).0;
    let theirs = fit.model.encode(ids).0;
    assert_eq!(ours.dims(), [2, 64, 32]);
    ours.into_data()
        .assert_approx_eq::<f32>(&theirs.into_data(), Default::default());
    std::fs::remove_dir_all(&dir).ok();
}
