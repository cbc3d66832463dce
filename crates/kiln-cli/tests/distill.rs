//! `kiln distill` on the embedded digits: a CNN teaches a small MLP; the run is recorded,
//! resumed and refused like any other.

mod common;

use std::path::Path;

use common::{assert_same_run, kiln, kiln_raw, metrics, resume, scratch};

/// The digits CNN, trained in `dir/teacher`.
fn teacher(dir: &Path) -> String {
    let out = dir.join("teacher");
    kiln(&[
        "train",
        "--quiet",
        "--model",
        "cnn",
        "--dataset",
        "digits",
        "--epochs",
        "15",
        "--out",
        out.to_str().unwrap(),
    ]);
    out.to_str().unwrap().to_string()
}

/// The student's flags: a 64-32-10 MLP for `epochs` epochs into `out`.
fn student<'a>(epochs: &'a str, out: &'a Path) -> Vec<&'a str> {
    vec![
        "--quiet",
        "--dataset",
        "digits",
        "--hidden",
        "32",
        "--dropout",
        "0",
        "--patience",
        "0",
        "--epochs",
        epochs,
        "--out",
        out.to_str().unwrap(),
    ]
}

#[test]
fn a_cnn_teaches_an_mlp_and_the_run_resumes_exactly() {
    let dir = scratch("distill");
    let teacher = teacher(&dir);
    let taught = dir.join("taught");
    let mut args = vec!["distill", "--teacher", &teacher, "--temperature", "4"];
    args.extend(student("20", &taught));
    kiln(&args);
    let accuracy = metrics(&taught)["test_accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.92, "distilled student: {accuracy}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(taught.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["trainer"]["distillation"]["temperature"], 4.0);
    assert_eq!(config["trainer"]["distillation"]["alpha"], 0.1);
    let recorded = Path::new(config["teacher"].as_str().unwrap());
    assert_eq!(recorded, std::fs::canonicalize(&teacher).unwrap());

    // The same student alone trains to other weights.
    let alone = dir.join("alone");
    let mut args = vec!["train"];
    args.extend(student("20", &alone));
    kiln(&args);
    assert_ne!(
        std::fs::read(alone.join("model.bpk")).unwrap(),
        std::fs::read(taught.join("model.bpk")).unwrap()
    );

    // 8 epochs, then resumed to 20: the same history and weights as 20 at once.
    let resumed = dir.join("resumed");
    let mut args = vec!["distill", "--teacher", &teacher, "--temperature", "4"];
    args.extend(student("8", &resumed));
    kiln(&args);
    resume(&resumed, "20");
    assert_same_run(&resumed, &taught);

    // A teacher of other data, or no run at all, is named.
    let out = dir.join("refused");
    for (extra, want) in [
        (
            vec!["--teacher", teacher.as_str(), "--seed", "7"],
            "trained on other data than the student's (seed: teacher 42, student 7)",
        ),
        (
            vec!["--teacher", teacher.as_str(), "--alpha", "2"],
            "--alpha: must lie in [0, 1], got 2",
        ),
        (vec!["--teacher", "no-such-run"], "--teacher no-such-run"),
    ] {
        let mut args = vec!["distill"];
        args.extend(extra);
        args.extend(student("1", &out));
        let o = kiln_raw(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && stderr.contains(want), "{stderr}");
        assert!(!out.exists(), "a refused run leaves no directory");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
