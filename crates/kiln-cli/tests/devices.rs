//! `kiln train --devices`: data-parallel training on two CPU devices gives the run one device
//! gives with the same global batch.

mod common;

use std::path::Path;

use common::{kiln, kiln_raw, metrics, scratch};

/// history.csv's numbers by epoch, without the `seconds` column.
fn history(dir: &Path) -> Vec<Vec<f64>> {
    std::fs::read_to_string(dir.join("history.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            cells[..cells.len() - 1]
                .iter()
                .map(|c| c.parse().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn two_flex_devices_reproduce_the_one_device_run() {
    let dir = scratch("devices");
    let run = |name: &str, extra: &[&str]| {
        let out = dir.join(name);
        let mut args = vec!["train", "--quiet", "--dropout", "0", "--epochs", "4"];
        args.extend_from_slice(&["--out", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        kiln(&args);
        out
    };
    let one = run("one", &[]);
    let two = run("two", &["--devices", "flex:0,flex:1"]);
    assert_eq!(metrics(&two)["devices"], 2);
    assert_eq!(metrics(&one)["devices"], 1);
    // Same samples per step, same averaged gradients; only float32 rounding differs (see
    // kiln-train's tests/devices.rs for the bound).
    let (a, b) = (history(&one), history(&two));
    assert_eq!(a.len(), 4);
    for (x, y) in a.iter().zip(&b) {
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() < 1e-5, "{x:?}\n{y:?}");
        }
    }
    assert!(b[3][1] < b[0][1], "the training loss falls: {b:?}");
    assert_eq!(
        metrics(&one)["test_accuracy"],
        metrics(&two)["test_accuracy"]
    );
}

#[test]
fn bad_device_lists_are_named() {
    for (extra, expected) in [
        (
            vec!["--devices", "flex:0,flex:1", "--batch-size", "33"],
            "33 is the global batch and must split evenly over the 2 devices",
        ),
        (
            vec!["--devices", "flex:0,flex:0"],
            "`flex:0` is listed twice",
        ),
        (
            vec!["--devices", "flex:0,flex:1", "--device", "flex"],
            "cannot be used with",
        ),
    ] {
        let mut args = vec![
            "train",
            "--quiet",
            "--epochs",
            "1",
            "--out",
            "/nonexistent/x",
        ];
        args.extend_from_slice(&extra);
        let o = kiln_raw(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(expected),
            "{extra:?}: {err}"
        );
    }
}
