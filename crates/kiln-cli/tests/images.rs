//! The `kiln` binary on real image data: the CNN on MNIST, Fashion-MNIST with augmentation,
//! and Kaggle's digit-recognizer format in and out. Needs `datasets/fetch.sh mnist
//! fashion-mnist` (the README's test command runs it).

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use common::{kiln, metrics, scratch};
use kiln::datasets::{MnistSplit, mnist};

#[test]
fn a_cnn_learns_real_mnist() {
    let out = scratch("cnn");
    kiln(&[
        "train",
        "--quiet",
        "--model",
        "cnn",
        "--preset",
        "mnist",
        "--dataset",
        "mnist",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let m = metrics(&out);
    assert!(m["test_accuracy"].as_f64().unwrap() >= 0.97, "{m}");
    let per_class = m["per_class"].as_array().unwrap();
    assert_eq!(per_class.len(), 10);
    assert!(m["macro_f1"].as_f64().unwrap() >= 0.97);
    let confusion = m["confusion_matrix"].as_array().unwrap();
    let total: u64 = confusion
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 10_000, "every test image is counted once");
}

#[test]
fn fashion_mnist_trains_with_augmentation_reproducibly() {
    let run = |name: &str| {
        let out = scratch(name);
        kiln(&[
            "train",
            "--quiet",
            "--dataset",
            "fashion-mnist",
            "--hidden",
            "256",
            "--epochs",
            "2",
            "--augment",
            "flip",
            "--out",
            out.to_str().unwrap(),
        ]);
        out
    };
    let (a, b) = (run("fashion-a"), run("fashion-b"));
    let m = metrics(&a);
    assert!(m["test_accuracy"].as_f64().unwrap() >= 0.82, "{m}");
    let config = std::fs::read_to_string(a.join("config.json")).unwrap();
    assert!(config.contains("\"flip\""), "{config}");
    // The same seed gives the same history, augmentation included (seconds aside).
    let history = |dir: &PathBuf| {
        std::fs::read_to_string(dir.join("history.csv"))
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(history(&a), history(&b));
}

#[test]
fn kaggle_digit_recognizer_in_and_submission_out() {
    let dir = scratch("kaggle");
    let train = mnist(None, MnistSplit::Train).expect("MNIST is fetched");
    let test = mnist(None, MnistSplit::Test).unwrap();
    let pixel = |v: f32| (v * 255.0).round() as u8;
    let header: Vec<String> = (0..784).map(|i| format!("pixel{i}")).collect();
    let mut train_csv = format!("label,{}\n", header.join(","));
    for i in 0..4000 {
        let row: Vec<String> = train
            .sample(i)
            .iter()
            .map(|&v| pixel(v).to_string())
            .collect();
        writeln!(
            train_csv,
            "{},{}",
            train.y.labels().unwrap()[i],
            row.join(",")
        )
        .unwrap();
    }
    let mut test_csv = format!("{}\n", header.join(","));
    for i in 0..200 {
        let row: Vec<String> = test
            .sample(i)
            .iter()
            .map(|&v| pixel(v).to_string())
            .collect();
        writeln!(test_csv, "{}", row.join(",")).unwrap();
    }
    std::fs::write(dir.join("train.csv"), train_csv).unwrap();
    std::fs::write(dir.join("test.csv"), test_csv).unwrap();

    let run = dir.join("run");
    let dataset = format!("digits-csv:{}", dir.join("train.csv").display());
    kiln(&[
        "train",
        "--quiet",
        "--model",
        "cnn",
        "--dataset",
        &dataset,
        "--epochs",
        "3",
        "--out",
        run.to_str().unwrap(),
    ]);
    let submission = dir.join("submission.csv");
    kiln(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        "--input",
        dir.join("test.csv").to_str().unwrap(),
        "--output",
        submission.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&submission).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("ImageId,Label"));
    let predicted: Vec<(usize, usize)> = lines
        .map(|l| {
            let (id, label) = l.split_once(',').unwrap();
            (id.parse().unwrap(), label.parse().unwrap())
        })
        .collect();
    assert_eq!(predicted.len(), 200);
    assert_eq!(predicted[0].0, 1, "ImageId counts from 1");
    let correct = predicted
        .iter()
        .filter(|(id, label)| test.y.labels().unwrap()[id - 1] == *label)
        .count();
    assert!(correct >= 180, "{correct}/200 correct");
}

#[test]
fn cifar10_trains_through_the_same_path_on_files_in_its_binary_format() {
    // No registry ships CIFAR-10: write a small one in its exact format (label byte, then the
    // red, green and blue 32x32 planes) where the loader looks, `$KILN_DATA/cifar10`.
    let data = scratch("cifar-data");
    let dir = data.join("cifar10");
    std::fs::create_dir_all(&dir).unwrap();
    let record = |i: usize| {
        let label = (i % 10) as u8;
        let mut r = vec![label];
        // Each class gets its own mean colour, so a CNN can tell them apart.
        for plane in 0..3 {
            r.extend((0..1024).map(|p| ((label as usize * 25 + plane * 40 + p % 7) % 256) as u8));
        }
        r
    };
    for (name, n) in [
        ("data_batch_1.bin", 100),
        ("data_batch_2.bin", 100),
        ("data_batch_3.bin", 100),
        ("data_batch_4.bin", 100),
        ("data_batch_5.bin", 100),
        ("test_batch.bin", 100),
    ] {
        let bytes: Vec<u8> = (0..n).flat_map(record).collect();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let out = scratch("cifar-run");
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "train",
            "--quiet",
            "--model",
            "cnn",
            "--preset",
            "cifar",
            "--dataset",
            "cifar10",
            "--epochs",
            "6",
            "--normalize",
            "--augment",
            "flip",
            "--out",
            out.to_str().unwrap(),
        ])
        .env("KILN_DATA", &data)
        .env_remove("BURN_DEVICE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = metrics(&out);
    assert_eq!(m["per_class"][0]["class"], "airplane");
    assert!(m["test_accuracy"].as_f64().unwrap() >= 0.9, "{m}");
    assert!(
        out.join("scaler.json").is_file(),
        "per-channel normalisation is saved"
    );
}
