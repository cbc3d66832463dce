//! The `kiln` binary on sequences and text: a recurrent model on sequential MNIST, forecasts of
//! the airline series against the naive baselines, and a Transformer on SpamAssassin emails
//! with its tokeniser saved for `eval` and `predict`. Needs `datasets/fetch.sh mnist spam` (the
//! README's test command runs it).

mod common;

use common::{kiln, kiln_raw, metrics, scratch, stdout_value};

#[test]
fn a_recurrent_model_reads_mnist_images_row_by_row() {
    let out = scratch("seq");
    kiln(&[
        "train",
        "--quiet",
        "--model",
        "gru",
        "--dataset",
        "sequential-mnist",
        "--hidden",
        "32",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let m = metrics(&out);
    assert!(m["test_accuracy"].as_f64().unwrap() >= 0.85, "{m}");
    assert!(m["model"].as_str().unwrap().starts_with("Gru 1x32"), "{m}");
    let e = kiln_raw(&["train", "--quiet", "--model", "lstm", "--dataset", "digits"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("[steps, features]"));
}

#[test]
fn an_lstm_forecasts_the_airline_series_better_than_the_naive_baselines() {
    let out = scratch("airline");
    kiln(&[
        "train",
        "--quiet",
        "--model",
        "lstm",
        "--dataset",
        "airline",
        "--hidden",
        "32",
        "--epochs",
        "200",
        "--patience",
        "20",
        "--batch-size",
        "16",
        "--lr",
        "0.005",
        "--dropout",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let m = metrics(&out);
    let rmse = m["test_rmse"].as_f64().unwrap();
    assert!(rmse < m["naive_last_rmse"].as_f64().unwrap(), "{m}");
    assert!(rmse < m["naive_seasonal_rmse"].as_f64().unwrap(), "{m}");
    assert_eq!(m["season_length"].as_f64(), Some(12.0), "{m}");
    // eval rebuilds the same windows and scaling, and reports the same forecasts.
    let o = kiln(&["eval", "--run", out.to_str().unwrap()]);
    assert!((stdout_value(&o, "forecast test_rmse") - rmse).abs() < 1e-3);
    let e = kiln_raw(&[
        "predict",
        "--run",
        out.to_str().unwrap(),
        "--input",
        "x.csv",
    ]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("kiln eval --run"));
}

#[test]
fn a_transformer_reads_real_valued_steps() {
    let out = scratch("airline-transformer");
    kiln(&[
        "train",
        "--quiet",
        "--model",
        "transformer",
        "--dataset",
        "airline",
        "--d-model",
        "16",
        "--heads",
        "2",
        "--d-ff",
        "32",
        "--epochs",
        "100",
        "--patience",
        "10",
        "--dropout",
        "0",
        "--batch-size",
        "16",
        "--out",
        out.to_str().unwrap(),
    ]);
    let m = metrics(&out);
    assert!(
        m["model"].as_str().unwrap().contains("1 features per step"),
        "{m}"
    );
    assert!(
        m["test_rmse"].as_f64().unwrap() < m["naive_last_rmse"].as_f64().unwrap(),
        "{m}"
    );
}

#[test]
fn a_transformer_learns_spam_and_tokenises_the_same_way_in_predict() {
    let out = scratch("spam");
    kiln(&[
        "train",
        "--quiet",
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
        "--seq-len",
        "64",
        "--vocab-size",
        "5000",
        "--epochs",
        "4",
        "--patience",
        "0",
        "--batch-size",
        "32",
        "--out",
        out.to_str().unwrap(),
    ]);
    let m = metrics(&out);
    // Two thirds of the emails are ham: 0.69 is the majority-class baseline.
    let accuracy = m["test_accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.9, "{m}");
    let scaler: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scaler.json")).unwrap()).unwrap();
    assert_eq!(scaler["text"]["tokenizer"], "word", "{scaler}");
    assert_eq!(scaler["text"]["vocabulary"][1], "<unk>", "{scaler}");
    let o = kiln(&["eval", "--run", out.to_str().unwrap()]);
    assert!((stdout_value(&o, "test_accuracy") - accuracy).abs() < 1e-4);

    let input = out.join("emails.csv");
    std::fs::write(
        &input,
        "text\n\"Hi Bob, the meeting notes from Tuesday are attached. Thanks\"\n\
         \"<html><body>CLICK HERE to claim your FREE prize!!! Limited offer $$$</body></html>\"\n",
    )
    .unwrap();
    let predictions = out.join("predictions.csv");
    kiln(&[
        "predict",
        "--run",
        out.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        predictions.to_str().unwrap(),
    ]);
    let lines: Vec<String> = std::fs::read_to_string(&predictions)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], "row,class,probability");
    for line in &lines[1..] {
        let cells: Vec<&str> = line.split(',').collect();
        assert!(["ham", "spam"].contains(&cells[1]), "{lines:?}");
        assert!(
            (0.5..=1.0).contains(&cells[2].parse::<f64>().unwrap()),
            "{lines:?}"
        );
    }
    let e = kiln_raw(&[
        "train",
        "--quiet",
        "--model",
        "lstm",
        "--dataset",
        "airline",
        "--pooling",
        "cls",
    ]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("--pooling cls is for the transformer"));
}
