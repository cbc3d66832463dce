//! `kiln train --auto-fix` on real data: six kinds of broken run, each repaired by the flag its
//! finding names, and the run kept beats the broken one on the test set.

mod common;

use common::{kiln, kiln_raw, metrics, scratch};

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The test score of an attempt in `repairs.json`: accuracy, or R² for regression.
fn score(attempt: &serde_json::Value) -> f64 {
    let test = &attempt["test"];
    test["test_accuracy"]
        .as_f64()
        .or(test["test_r2"].as_f64())
        .unwrap_or(f64::NEG_INFINITY)
}

#[test]
fn six_kinds_of_broken_run_are_repaired_by_the_flag_their_finding_names() {
    let dir = scratch("auto-fix");
    let deep = "64,64,64,64,64,64,64,64,64,64";
    // (broken run, the finding repaired first, the flag that repairs it)
    let cases: [(&str, &[&str], &str, &str); 6] = [
        ("diverged", &["--lr", "0.5"], "diverged", "--lr 0.005"),
        ("slow", &["--lr", "1e-5"], "lr_too_low", "--lr 1e-4"),
        (
            "dead",
            &["--lr", "0.05", "--patience", "0"],
            "dead_units",
            "--activation leaky-relu",
        ),
        (
            "vanishing",
            &[
                "--hidden",
                deep,
                "--activation",
                "sigmoid",
                "--dropout",
                "0",
                "--patience",
                "0",
            ],
            "vanishing_gradients",
            "--activation relu",
        ),
        (
            "saturated",
            &["--activation", "sigmoid", "--lr", "0.05", "--patience", "0"],
            "saturated_units",
            "--batch-norm",
        ),
        (
            "exploding",
            &[
                "--dataset",
                "house-prices",
                "--optimizer",
                "sgd",
                "--lr",
                "0.5",
                "--patience",
                "0",
            ],
            "exploding_gradients",
            "--clip-norm 1",
        ),
    ];
    for (name, args, kind, flag) in cases {
        let run = dir.join(name);
        let mut all = vec!["train", "--auto-fix", "--out", run.to_str().unwrap()];
        all.extend_from_slice(args);
        let o = kiln(&all);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            stdout.contains(&format!("found; trying {flag}")),
            "{name}: {stdout}"
        );
        let repairs = json(&run.join("repairs.json"));
        let attempts = repairs["attempts"].as_array().unwrap();
        assert!((2..=4).contains(&attempts.len()), "{name}: {repairs}");
        assert_eq!(attempts[0]["changes"], serde_json::json!([]));
        assert_eq!(attempts[1]["because"]["kind"], kind, "{name}: {repairs}");
        assert_eq!(attempts[1]["changes"][0], flag, "{name}: {repairs}");
        assert!(
            attempts[0]["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f.as_str().unwrap().starts_with(kind)),
            "{name}: {repairs}"
        );
        let kept = repairs["kept"].as_u64().unwrap() as usize;
        assert!(kept >= 2, "{name}: a repaired attempt is kept: {repairs}");
        let (broken, repaired) = (score(&attempts[0]), score(&attempts[kept - 1]));
        assert!(
            repaired > broken + 0.01,
            "{name}: the repaired run beats the broken one: {broken} -> {repaired}"
        );
        // The run directory is the kept attempt, whole; the others are beside it.
        assert_eq!(attempts[kept - 1]["dir"], ".");
        let m = metrics(&run);
        let test = m["test_accuracy"]
            .as_f64()
            .or(m["test_r2"].as_f64())
            .unwrap();
        assert_eq!(test, repaired, "{name}");
        assert!(run.join("repairs.png").exists() && run.join("model.bpk").exists());
        assert!(run.join("attempts/1/diagnosis.json").exists(), "{name}");
        assert!(!run.join(format!("attempts/{kept}")).exists(), "{name}");
    }

    // The repaired run's configuration is the repaired one, and it goes on like any run.
    let run = dir.join("diverged");
    let config = json(&run.join("config.json"));
    assert_eq!(config["trainer"]["lr"], 0.005, "{config}");
    let epochs = metrics(&run)["epochs_run"].as_u64().unwrap();
    let more = (epochs + 2).to_string();
    kiln(&[
        "train",
        "--resume",
        run.to_str().unwrap(),
        "--epochs",
        &more,
        "--quiet",
    ]);
    assert_eq!(metrics(&run)["epochs_run"].as_u64(), Some(epochs + 2));

    // A healthy run is one attempt, kept as it is.
    let healthy = dir.join("healthy");
    kiln(&[
        "train",
        "--auto-fix",
        "--quiet",
        "--out",
        healthy.to_str().unwrap(),
    ]);
    let repairs = json(&healthy.join("repairs.json"));
    assert_eq!(
        repairs["attempts"].as_array().unwrap().len(),
        1,
        "{repairs}"
    );
    assert!(!healthy.join("attempts").exists());

    // Not with --resume: each attempt is a run of its own.
    let o = kiln_raw(&["train", "--auto-fix", "--resume", run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--auto-fix starts new runs"));
}
