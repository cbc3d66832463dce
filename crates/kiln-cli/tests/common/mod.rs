//! Helpers shared by the end-to-end tests of the `kiln` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `kiln ARGS` (BURN_DEVICE unset) and returns its output, whatever its status.
pub fn kiln_raw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("BURN_DEVICE")
        .output()
        .expect("the kiln binary runs")
}

/// Runs `kiln ARGS` and asserts that it succeeds.
pub fn kiln(args: &[&str]) -> Output {
    let o = kiln_raw(args);
    assert!(
        o.status.success(),
        "kiln {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `kiln train --quiet --resume DIR --epochs EPOCHS`, asserting that it succeeds.
pub fn resume(dir: &Path, epochs: &str) -> Output {
    kiln(&[
        "train",
        "--quiet",
        "--resume",
        dir.to_str().unwrap(),
        "--epochs",
        epochs,
    ])
}

/// An empty scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A run directory's metrics.json.
pub fn metrics(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
}

/// The value printed as `KEY: VALUE` on a run's standard output.
pub fn stdout_value(o: &Output, key: &str) -> f64 {
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .parse()
        .unwrap()
}

/// A run directory's diagnosis.json.
pub fn diagnosis(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("diagnosis.json")).unwrap()).unwrap()
}

/// A diagnosis's findings as (kind, epoch), in order.
pub fn kinds(d: &serde_json::Value) -> Vec<(String, u64)> {
    d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["epoch"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// history.csv without its `seconds` column.
pub fn history_without_seconds(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("history.csv"))
        .unwrap()
        .lines()
        .map(|l| {
            // `seconds` is the seventh column; users' metrics (and f16's loss scale) follow it.
            let mut cells: Vec<&str> = l.split(',').collect();
            cells.remove(6);
            cells.join(",") + "\n"
        })
        .collect()
}

/// Asserts that the run in `resumed` ended as the one in `whole`: the same history (but the
/// seconds) and the same weights, byte for byte.
pub fn assert_same_run(resumed: &Path, whole: &Path) {
    assert_eq!(
        history_without_seconds(resumed),
        history_without_seconds(whole)
    );
    assert_eq!(
        std::fs::read(resumed.join("model.bpk")).unwrap(),
        std::fs::read(whole.join("model.bpk")).unwrap()
    );
}

/// Each epoch's training loss in a run's history.csv.
pub fn losses(dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(dir.join("history.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect()
}

/// Asserts that the run in `low` (a lower precision) trained as the same run in f32, `full`,
/// did: its test accuracy above `min_accuracy` and within 2 points of f32's (360 test digits:
/// 7 digits), every epoch's training loss within 5%, and not all of them equal (the products
/// did run in the lower precision).
pub fn assert_trained_alike(full: &Path, low: &Path, min_accuracy: f64) {
    let accuracy = |dir: &Path| metrics(dir)["test_accuracy"].as_f64().unwrap();
    let (acc_a, acc_b) = (accuracy(full), accuracy(low));
    eprintln!(
        "test accuracy: f32 {acc_a}, {} {acc_b}",
        metrics(low)["precision"]
    );
    assert!(
        acc_b > min_accuracy && (acc_a - acc_b).abs() <= 0.02,
        "{acc_a} vs {acc_b}"
    );
    let (la, lb) = (losses(full), losses(low));
    assert!(la.iter().zip(&lb).any(|(x, y)| x != y), "ran as f32");
    let gap = la
        .iter()
        .zip(&lb)
        .map(|(x, y)| (x - y).abs() / x)
        .fold(0.0, f64::max);
    assert!(gap < 0.05, "losses apart by {gap} relative");
}
