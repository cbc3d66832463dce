//! `kiln train --precision bf16`: the fused layers' products in bfloat16 on real data (the
//! digits), against the same run in float32; recorded in metrics.json and config.json; resumed
//! exactly; a GRU, whose products are Burn's, in bf16 on sequential MNIST; refused where
//! nothing would run in bf16. Needs `datasets/fetch.sh mnist` (the README's test command runs
//! it).

mod common;

use std::path::Path;

use common::{assert_same_run, assert_trained_alike, kiln, kiln_raw, metrics, resume, scratch};

fn train(out: &Path, precision: &str, epochs: &str, extra: &[&str]) {
    let mut args = vec![
        "train",
        "--quiet",
        "--dataset",
        "digits",
        "--hidden",
        "128,64",
        "--epochs",
        epochs,
        "--patience",
        "0",
        "--precision",
        precision,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    kiln(&args);
}

#[test]
fn bf16_trains_the_digits_as_f32_does_and_resumes_exactly() {
    let dir = scratch("precision");
    let (f32_run, bf16_run) = (dir.join("f32"), dir.join("bf16"));
    train(&f32_run, "f32", "12", &[]);
    train(&bf16_run, "bf16", "12", &[]);
    let (a, b) = (metrics(&f32_run), metrics(&bf16_run));
    assert_eq!(a["precision"], "f32");
    assert_eq!(b["precision"], "bf16");
    assert!(
        b["precision_unit"].as_str().unwrap().starts_with("bf16"),
        "{b}"
    );
    let config = std::fs::read_to_string(bf16_run.join("config.json")).unwrap();
    assert!(config.contains("\"precision\": \"bf16\""), "{config}");

    assert_trained_alike(&f32_run, &bf16_run, 0.93);

    // 5 epochs, resumed to 12: the 12-epoch bf16 run, byte for byte (config.json carries the
    // precision into the resumed run).
    let resumed = dir.join("resumed");
    train(&resumed, "bf16", "5", &[]);
    resume(&resumed, "12");
    assert_same_run(&resumed, &bf16_run);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A GRU's products are Burn's (no fused kernel): under bf16 they take rounded operands
/// (`kiln_common::autocast`), and the GRU trains on sequential MNIST as in f32.
#[test]
fn a_gru_trains_in_bf16_as_in_f32() {
    let dir = scratch("precision-gru");
    let run = |precision: &str| {
        let out = dir.join(precision);
        kiln(&[
            "train",
            "--quiet",
            "--model",
            "gru",
            "--dataset",
            "sequential-mnist",
            "--train-samples",
            "6000",
            "--hidden",
            "64",
            "--epochs",
            "2",
            "--precision",
            precision,
            "--out",
            out.to_str().unwrap(),
        ]);
        out
    };
    let (f32_run, bf16_run) = (run("f32"), run("bf16"));
    assert_eq!(metrics(&bf16_run)["precision"], "bf16");
    assert_trained_alike(&f32_run, &bf16_run, 0.7);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn precisions_that_would_not_run_are_refused_by_name() {
    let dir = scratch("precision-errors");
    let out = dir.join("run");
    let out = out.to_str().unwrap();
    for (args, want) in [
        (
            vec!["--precision", "f8"],
            "unknown precision `f8` (expected f32, bf16 or f16)",
        ),
        (
            vec!["--precision", "f16"],
            "f16 is for the GPU backends (wgpu: `--device wgpu`), and",
        ),
        (
            vec![
                "--model",
                "perceptron",
                "--dataset",
                "xor",
                "--precision",
                "bf16",
            ],
            "the perceptron rule has no matrix products: drop --precision",
        ),
    ] {
        let mut all = vec!["train", "--quiet", "--epochs", "1", "--out", out];
        all.extend(args.iter());
        let o = kiln_raw(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
        assert!(!dir.join("run").join("model.bpk").exists());
    }
    std::fs::remove_dir_all(dir).unwrap();
}
