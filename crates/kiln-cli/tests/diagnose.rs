//! Every run is diagnosed: a broken one says what went wrong and the flag to try, a healthy
//! one says so in one line, and `kiln diagnose` reads any run again.

mod common;

use common::{diagnosis, kiln, kiln_raw, kinds, metrics, scratch};

#[test]
fn a_finite_but_exploded_loss_is_named_with_its_fix() {
    let dir = scratch("diagnose-diverged");
    let run = dir.join("run");
    // The house prices at --lr 1e6 with Adam: a finite loss of about 1e25 every epoch, so
    // TerminateOnNaN never fires; this used to end with exit 0 and not a word.
    let o = kiln(&[
        "train",
        "--dataset",
        "house-prices",
        "--hidden",
        "32",
        "--dropout",
        "0",
        "--lr",
        "1e6",
        "--epochs",
        "6",
        "--patience",
        "0",
        "--out",
        run.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("kiln: diverged (epoch 1)") && err.contains("--lr 1e4"),
        "{err}"
    );
    // The gradient measurements see it too: one step moved the first layer's weights by a
    // million times their norm.
    let d = diagnosis(&run);
    assert_eq!(
        kinds(&d),
        [
            ("exploding_gradients".to_string(), 1),
            ("diverged".to_string(), 1)
        ],
        "{d}"
    );
    let f = &d["findings"][1];
    for key in [
        "layer",
        "statistic",
        "value",
        "threshold",
        "message",
        "advice",
    ] {
        assert!(f.get(key).is_some(), "{key} in {f}");
    }
    assert!(
        f["value"].as_f64().unwrap() > 1e10 && f["threshold"] == 10.0,
        "{f}"
    );
    // The baseline is the scaled targets' variance, about 1.
    let baseline = metrics(&run)["baseline_loss"].as_f64().unwrap();
    assert!((0.9..1.1).contains(&baseline), "{baseline}");
    let o = kiln(&["diagnose", "--run", run.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(report.contains("diagnosis: diverged (epoch 1)"), "{report}");
}

#[test]
fn a_learning_rate_too_low_is_found_early_and_a_healthy_run_says_so() {
    let dir = scratch("diagnose-lr");
    let slow = dir.join("slow");
    kiln(&[
        "train",
        "--quiet",
        "--lr",
        "1e-7",
        "--epochs",
        "20",
        "--patience",
        "0",
        "--out",
        slow.to_str().unwrap(),
    ]);
    let d = diagnosis(&slow);
    let found = kinds(&d);
    assert_eq!(found[0].0, "lr_too_low", "{d}");
    assert!(found[0].1 <= 6, "within the first 30% of 20 epochs: {d}");
    assert!(
        d["findings"][0]["advice"]
            .as_str()
            .unwrap()
            .contains("--lr 1e-6"),
        "{d}"
    );

    // A run made before kiln recorded the baseline is diagnosed from its history alone.
    let mut m = metrics(&slow);
    m.as_object_mut().unwrap().remove("baseline_loss");
    std::fs::write(slow.join("metrics.json"), m.to_string()).unwrap();
    let o = kiln(&["diagnose", "--run", slow.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("lr_too_low"));

    let healthy = dir.join("healthy");
    let o = kiln(&["train", "--quiet", "--out", healthy.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("diagnosis: no problem found"));
    assert_eq!(kinds(&diagnosis(&healthy)), []);
}

/// Broken runs on real data, each found with its kind and layer within the first 30% of its
/// epochs: a ten-layer sigmoid MLP (vanishing gradients), dying ReLUs in an MLP and a CNN at
/// Adam's --lr 0.05 and 0.02 (dead units, read on the probe batch); `--diagnostics off`
/// measures nothing.
#[test]
fn gradient_problems_are_found_in_their_layer() {
    let dir = scratch("diagnose-gradients");
    let run = |name: &str, args: &[&str]| {
        let out = dir.join(name);
        let mut all = vec![
            "train",
            "--quiet",
            "--epochs",
            "10",
            "--patience",
            "0",
            "--out",
        ];
        all.push(out.to_str().unwrap());
        all.extend_from_slice(args);
        kiln(&all);
        out
    };
    let deep = run(
        "deep",
        &[
            "--hidden",
            "64,64,64,64,64,64,64,64,64,64",
            "--activation",
            "sigmoid",
            "--dropout",
            "0",
        ],
    );
    let d = diagnosis(&deep);
    assert_eq!(kinds(&d), [("vanishing_gradients".to_string(), 1)], "{d}");
    assert_eq!(d["findings"][0]["layer"], "hidden.0.linear");
    assert!(deep.join("diagnostics.png").exists());
    let csv = std::fs::read_to_string(deep.join("diagnostics.csv")).unwrap();
    assert!(
        csv.starts_with("epoch,parameter,statistic,value\n"),
        "{csv}"
    );
    assert!(
        csv.contains("\n10,hidden.9.linear.weight,grad_norm,"),
        "every epoch, every layer"
    );
    for (name, model, lr, layer) in [
        ("dead-mlp", "mlp", "0.05", "hidden.1"),
        ("dead-cnn", "cnn", "0.02", "blocks.1"),
    ] {
        let out = run(name, &["--model", model, "--lr", lr]);
        let d = diagnosis(&out);
        let found = kinds(&d);
        assert_eq!(found.len(), 1, "{d}");
        assert_eq!(found[0].0, "dead_units", "{d}");
        assert!(found[0].1 <= 3, "{d}");
        assert_eq!(d["findings"][0]["layer"], layer, "{d}");
        let csv = std::fs::read_to_string(out.join("diagnostics.csv")).unwrap();
        assert!(csv.contains(&format!(",{layer},dead_share,")), "{csv}");
    }
    let off = run("off", &["--diagnostics", "off"]);
    assert!(!off.join("diagnostics.csv").exists());
    assert_eq!(kinds(&diagnosis(&off)), []);
}

#[test]
fn diagnose_names_what_is_missing_or_damaged() {
    let dir = scratch("diagnose-bad");
    let o = kiln_raw(&["diagnose", "--run", dir.join("nothing").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such run directory"));
    let run = dir.join("run");
    kiln(&[
        "train",
        "--quiet",
        "--epochs",
        "2",
        "--out",
        run.to_str().unwrap(),
    ]);
    std::fs::write(
        run.join("history.csv"),
        "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds\n1,0.5,,oops,,0.1,1\n",
    )
    .unwrap();
    let o = kiln_raw(&["diagnose", "--run", run.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("history.csv") && err.contains("row 2, column val_loss"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    std::fs::remove_file(run.join("history.csv")).unwrap();
    let o = kiln_raw(&["diagnose", "--run", run.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("history.csv"));
}
