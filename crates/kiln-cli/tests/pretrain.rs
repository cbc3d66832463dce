//! `kiln pretrain` on SpamAssassin's texts (`datasets/fetch.sh spam`): a masked-language
//! model is recorded, resumed exactly, evaluated, refused where it cannot go, and fine-tuned
//! with `kiln train --init-from` on its vocabulary.

mod common;

use std::path::Path;

use common::{assert_same_run, kiln, kiln_raw, metrics, resume, scratch};

/// The encoder pre-trained and fine-tuned: small, on the messages.
const ENCODER: [&str; 12] = [
    "--model",
    "transformer",
    "--dataset",
    "spam",
    "--d-model",
    "32",
    "--heads",
    "2",
    "--d-ff",
    "64",
    "--layers",
    "1",
];

/// A small encoder on 30% of the messages' texts (the rest is the test part): 32 tokens each.
fn pretrain_args<'a>(epochs: &'a str, out: &'a Path) -> Vec<&'a str> {
    let mut args = vec!["pretrain", "--quiet"];
    args.extend(ENCODER);
    args.extend([
        "--seq-len",
        "32",
        "--vocab-size",
        "2000",
        "--test-split",
        "0.7",
        "--validation-split",
        "0.1",
        "--lr",
        "0.003",
        "--epochs",
        epochs,
        "--out",
        out.to_str().unwrap(),
    ]);
    args
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_pretrained_encoder_predicts_hidden_words_resumes_exactly_and_fine_tunes() {
    let dir = scratch("pretrain");
    let whole = dir.join("whole");
    kiln(&pretrain_args("3", &whole));

    // The vocabulary ends in <mask>; the trainer masks with its id.
    let vocabulary = json(&whole.join("scaler.json"))["text"]["vocabulary"].clone();
    let vocabulary = vocabulary.as_array().unwrap();
    assert_eq!(vocabulary.len(), 2000);
    assert_eq!(vocabulary.last().unwrap(), "<mask>");
    let masking = json(&whole.join("config.json"))["trainer"]["masked_lm"].clone();
    assert_eq!(masking["mask_id"], 1999);
    assert_eq!(masking["rate"], 0.15);
    // Chance over 2,000 tokens is a loss of 7.6 and accuracy 0.0005; the most frequent
    // token of these messages is about 7% of the hidden ones.
    let m = metrics(&whole);
    let (loss, accuracy) = (
        m["test_loss"].as_f64().unwrap(),
        m["test_accuracy"].as_f64().unwrap(),
    );
    assert!(loss < 5.5 && accuracy > 0.12, "{m}");

    // Stopped after 1 epoch, resumed to 3: the same run.
    let resumed = dir.join("resumed");
    kiln(&pretrain_args("1", &resumed));
    resume(&resumed, "3");
    assert_same_run(&resumed, &whole);

    // `kiln summary --config` shows the run's model, as its summary.txt does.
    let config = whole.join("config.json");
    let summary = kiln(&["summary", "--config", config.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&summary.stdout).to_string();
    assert!(table.contains("mlm_head (Masked-token head)"), "{table}");
    assert_eq!(
        table,
        std::fs::read_to_string(whole.join("summary.txt")).unwrap()
    );

    // `kiln eval` scores the test texts' hidden tokens as training did.
    let eval = kiln(&["eval", "--run", whole.to_str().unwrap()]);
    let printed = String::from_utf8_lossy(&eval.stdout).to_string();
    assert!(
        printed.contains(&format!("test_accuracy: {accuracy:.4}")),
        "{printed}"
    );

    // A classifier of the same encoder starts from it, reading its vocabulary.
    let tuned = dir.join("tuned");
    let mut args = vec!["train"];
    args.extend(ENCODER);
    args.extend([
        "--train-samples",
        "200",
        "--epochs",
        "10",
        "--lr",
        "0.003",
        "--init-from",
        whole.to_str().unwrap(),
        "--out",
        tuned.to_str().unwrap(),
    ]);
    let out = kiln(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("new     2 tensors: head.bias, head.weight"),
        "{err}"
    );
    let init = json(&tuned.join("init.json"));
    let loaded: Vec<&str> = init["loaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(loaded.contains(&"input.embedding.weight"), "{loaded:?}");
    assert!(
        loaded
            .iter()
            .filter(|p| p.starts_with("encoder.blocks.0"))
            .count()
            >= 10
    );
    assert_eq!(
        json(&tuned.join("scaler.json"))["text"]["vocabulary"],
        json(&whole.join("scaler.json"))["text"]["vocabulary"]
    );
    let tuned_accuracy = metrics(&tuned)["test_accuracy"].as_f64().unwrap();
    // Above the majority class's 0.69.
    assert!(tuned_accuracy > 0.75, "{tuned_accuracy}");
}

#[test]
fn pretraining_names_what_it_cannot_do() {
    let dir = scratch("pretrain-refused");
    let out = dir.join("run");
    let refused = |args: &[&str], expected: &str| {
        let o = kiln_raw(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(expected),
            "{args:?}: {err}"
        );
    };
    let o = out.to_str().unwrap();
    refused(
        &[
            "pretrain",
            "--model",
            "mlp",
            "--dataset",
            "spam",
            "--out",
            o,
        ],
        "pre-trains the transformer's encoder",
    );
    refused(
        &[
            "pretrain",
            "--model",
            "transformer",
            "--dataset",
            "digits",
            "--out",
            o,
        ],
        "kiln pretrain reads texts",
    );
    refused(
        &[
            "pretrain",
            "--model",
            "transformer",
            "--dataset",
            "spam",
            "--target",
            "label",
            "--train-samples",
            "9",
            "--out",
            o,
        ],
        "no labels: drop --target, --train-samples",
    );
    refused(
        &[
            "pretrain",
            "--model",
            "transformer",
            "--dataset",
            "spam",
            "--mask-rate",
            "1.5",
            "--out",
            o,
        ],
        "--mask-rate: must lie strictly between 0 and 1",
    );
    assert!(!out.exists(), "nothing is left of a refused run");
    // A finished pre-training run does not classify.
    kiln(&pretrain_args("1", &out));
    let input = dir.join("texts.csv");
    std::fs::write(&input, "text\nfree money now\n").unwrap();
    refused(
        &["predict", "--run", o, "--input", input.to_str().unwrap()],
        "fine-tune it first (kiln train --init-from",
    );
}
