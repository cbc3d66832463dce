//! The SpamAssassin corpus as fetched by `datasets/fetch.sh spam` (the README's test command
//! fetches it first).

use kiln_datasets::{TextEncoder, Tokenizer, spam};

#[test]
fn the_corpus_has_every_email_with_its_label() {
    let set = spam(None).expect("run `datasets/fetch.sh spam` first");
    assert_eq!(set.len(), 2500 + 1400 + 250 + 500 + 1396);
    assert_eq!(set.classes, ["ham", "spam"]);
    assert_eq!(set.labels.iter().filter(|&&l| l == 1).count(), 500 + 1396);
    let (train, test) = set.split(0.2, 42).unwrap();
    assert_eq!(train.len() + test.len(), set.len());
    // Headers other than the subject are gone; the texts are not empty.
    for t in &set.texts {
        assert!(
            !t.starts_with("Return-Path:") && !t.starts_with("Received:"),
            "{}",
            &t[..80.min(t.len())]
        );
    }
    let encoder = TextEncoder::fit(&train.texts, Tokenizer::Word, 200, 2, 20_000);
    let data = encoder.encode_set(&test);
    assert_eq!(data.sample_shape, [200]);
    assert_eq!(data.len(), test.len());
    assert!(encoder.vocab_size() > 10_000, "{}", encoder.vocab_size());
}
