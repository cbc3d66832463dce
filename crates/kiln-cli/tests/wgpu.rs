//! `kiln train --device wgpu --precision f16` on real data (the digits): float16 products with
//! dynamic loss scaling against the same run in float32; recorded in metrics.json, config.json
//! and history.csv; resumed exactly. Built with the wgpu backend only (.ci/run's wgpu stage:
//! lavapipe without a GPU).

#![cfg(feature = "wgpu")]

mod common;

use std::path::Path;

use common::{assert_same_run, assert_trained_alike, kiln, metrics, scratch};

fn train(out: &Path, precision: &str, epochs: &str) {
    kiln(&[
        "train",
        "--quiet",
        "--device",
        "wgpu",
        "--dataset",
        "digits",
        "--hidden",
        "64",
        "--epochs",
        epochs,
        "--patience",
        "0",
        "--precision",
        precision,
        "--out",
        out.to_str().unwrap(),
    ]);
}

#[test]
fn f16_trains_the_digits_on_wgpu_as_f32_does_and_resumes_exactly() {
    let dir = scratch("wgpu-f16");
    let (f32_run, f16_run) = (dir.join("f32"), dir.join("f16"));
    train(&f32_run, "f32", "6");
    train(&f16_run, "f16", "6");
    let (a, b) = (metrics(&f32_run), metrics(&f16_run));
    assert_eq!(
        (&a["backend"], &b["backend"]),
        (&"wgpu".into(), &"wgpu".into())
    );
    assert_eq!(b["precision"], "f16");
    assert_eq!(b["precision_unit"], "f16 on the GPU, dynamic loss scaling");
    let config = std::fs::read_to_string(f16_run.join("config.json")).unwrap();
    assert!(config.contains("\"precision\": \"f16\""), "{config}");
    let history = std::fs::read_to_string(f16_run.join("history.csv")).unwrap();
    let header = history.lines().next().unwrap();
    assert!(header.ends_with("loss_scale,skipped_steps"), "{header}");

    assert_trained_alike(&f32_run, &f16_run, 0.9);

    // 2 epochs, resumed to 6 on the same device: the 6-epoch f16 run, byte for byte.
    let resumed = dir.join("resumed");
    train(&resumed, "f16", "2");
    let dir_arg = resumed.to_str().unwrap();
    kiln(&[
        "train", "--quiet", "--resume", dir_arg, "--epochs", "6", "--device", "wgpu",
    ]);
    assert_same_run(&resumed, &f16_run);
    std::fs::remove_dir_all(dir).unwrap();
}
