//! Transfer learning from the command line, on the embedded digits: a network trained on 0-4
//! starts the one for 5-9 (`--init-from`, `--init-skip`), its hidden layer frozen
//! (`--freeze`), trained on 20 labelled images per class (`--classes`, `--train-per-class`).

mod common;

use std::path::{Path, PathBuf};

use common::{assert_same_run, history_without_seconds, kiln, kiln_raw, metrics, resume, scratch};

/// An MLP (64-32-5) trained on the digits 0-4, in `dir/base`.
fn train_base(dir: &Path) -> PathBuf {
    let base = dir.join("base");
    kiln(&[
        "train",
        "--quiet",
        "--dataset",
        "digits",
        "--hidden",
        "32",
        "--classes",
        "0-4",
        "--epochs",
        "30",
        "--out",
        base.to_str().unwrap(),
    ]);
    base
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `kiln train` on the digits 5-9, 20 labelled per class, from the run in `base`.
fn fine_tune(base: &Path, out: &Path, epochs: &str, extra: &[&str]) {
    let mut args = vec![
        "train",
        "--quiet",
        "--dataset",
        "digits",
        "--hidden",
        "32",
        "--classes",
        "5-9",
        "--train-per-class",
        "20",
        "--patience",
        "0",
        "--epochs",
        epochs,
        "--lr",
        "0.01",
        "--init-from",
        base.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    kiln(&args);
}

#[test]
fn a_frozen_pretrained_layer_carries_digits_0_to_4_over_to_5_to_9() {
    let dir = scratch("transfer");
    let base = train_base(&dir);
    assert_eq!(
        json(&base.join("columns.json"))["classes"],
        serde_json::json!(["0", "1", "2", "3", "4"])
    );

    let tuned = dir.join("tuned");
    fine_tune(
        &base,
        &tuned,
        "30",
        &["--freeze", "hidden", "--init-skip", "output"],
    );
    let init = json(&tuned.join("init.json"));
    assert_eq!(
        init["loaded"],
        serde_json::json!(["hidden.0.linear.bias", "hidden.0.linear.weight"])
    );
    assert_eq!(
        init["skipped"],
        serde_json::json!(["output.bias", "output.weight"])
    );
    let summary = std::fs::read_to_string(tuned.join("summary.txt")).unwrap();
    assert!(
        summary.contains("Non-trainable params: 2,080"),
        "64 x 32 + 32 frozen: {summary}"
    );
    let o = kiln(&[
        "summary",
        "--dataset",
        "digits",
        "--hidden",
        "32",
        "--freeze",
        "hidden",
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Non-trainable params: 2,080"));
    assert_eq!(
        json(&tuned.join("columns.json"))["classes"],
        serde_json::json!(["5", "6", "7", "8", "9"])
    );
    let first = history_without_seconds(&tuned);
    assert_eq!(first.lines().count(), 31);
    let accuracy = metrics(&tuned)["test_accuracy"].as_f64().unwrap();
    assert!(
        accuracy > 0.7,
        "100 labelled images on frozen 0-4 features: {accuracy}"
    );

    // The frozen layer is the pre-trained one, bit for bit.
    let base_weights = tensors(&base.join("model.bpk"));
    let tuned_weights = tensors(&tuned.join("model.bpk"));
    assert_eq!(
        tuned_weights["hidden.0.linear.weight"],
        base_weights["hidden.0.linear.weight"]
    );
    assert_ne!(
        tuned_weights["output.weight"],
        base_weights["output.weight"]
    );

    // Checkpointed and resumed like any run: 10 epochs, then on to 30, equals 30 at once.
    assert_resumes_to(
        &base,
        &tuned,
        &dir,
        &["--freeze", "hidden", "--init-skip", "output"],
    );

    // Unfrozen from epoch 15 at a tenth of the rate (Lightning's BackboneFinetuning): the
    // pre-trained layer moves then, and a run resumed across that epoch ends the same.
    let unfrozen = dir.join("unfrozen");
    let thaw = [
        "--freeze",
        "hidden",
        "--init-skip",
        "output",
        "--unfreeze-at",
        "15",
    ];
    std::fs::remove_dir_all(dir.join("resumed")).unwrap();
    fine_tune(&base, &unfrozen, "30", &thaw);
    let unfrozen_weights = tensors(&unfrozen.join("model.bpk"));
    assert_ne!(
        unfrozen_weights["hidden.0.linear.weight"],
        base_weights["hidden.0.linear.weight"]
    );
    let config = json(&unfrozen.join("config.json"));
    assert_eq!(
        config["trainer"]["unfreeze_at"],
        serde_json::json!({"epoch": 15, "lr_ratio": 0.1})
    );
    assert_eq!(
        history_without_seconds(&unfrozen)
            .lines()
            .take(15)
            .collect::<Vec<_>>(),
        first.lines().take(15).collect::<Vec<_>>(),
        "the same run as the frozen one until epoch 15"
    );
    assert_resumes_to(&base, &unfrozen, &dir, &thaw);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Fine-tunes 10 epochs into `dir/resumed` and resumes it to 30: the same history and weights
/// as the 30-epoch run in `whole`.
fn assert_resumes_to(base: &Path, whole: &Path, dir: &Path, extra: &[&str]) {
    let resumed = dir.join("resumed");
    fine_tune(base, &resumed, "10", extra);
    resume(&resumed, "30");
    assert_same_run(&resumed, whole);
}

/// Each tensor of a burnpack file, by name, as its raw bytes.
fn tensors(path: &Path) -> std::collections::HashMap<String, Vec<u8>> {
    use kiln::burn::store::{BurnpackStore, ModuleStore};
    let mut store = BurnpackStore::from_file(path);
    store
        .get_all_tensors()
        .unwrap()
        .iter()
        .map(|(name, tensor)| (name.clone(), tensor.to_bytes().unwrap().to_vec()))
        .collect()
}

#[test]
fn bad_transfer_flags_are_named() {
    let dir = scratch("transfer-errors");
    let out = dir.join("run");
    let out = out.to_str().unwrap();
    for (args, want) in [
        (
            vec!["--freeze", "hiden"],
            "--freeze: `hiden` names no parameter of the model (its parts: hidden, output)",
        ),
        (
            vec!["--train-per-class", "500"],
            "--train-per-class: class `0` has",
        ),
        (
            vec!["--classes", "12"],
            "--classes: `12` is neither a class name nor a range",
        ),
        (vec!["--init-from", "/nonexistent/run"], "/nonexistent/run"),
        (
            vec!["--unfreeze-at", "1"],
            "--unfreeze-at: unfreezes what `freeze` froze",
        ),
        (
            vec!["--freeze", "hidden", "--unfreeze-at", "1"],
            "--unfreeze-at: the epoch must be at least 2",
        ),
        (
            vec!["--freeze", "hidden", "--unfreeze-at", "1:x"],
            "invalid value '1:x' for '--unfreeze-at",
        ),
    ] {
        let mut all = vec![
            "train",
            "--quiet",
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--out",
            out,
        ];
        all.extend_from_slice(&args);
        let o = kiln_raw(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
        assert!(
            !Path::new(out).exists(),
            "{args:?}: no run directory is left behind"
        );
    }
    let o = kiln_raw(&[
        "train",
        "--dataset",
        "airline",
        "--model",
        "lstm",
        "--classes",
        "0-1",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("a series is cut by time"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn lora_trains_adapters_alone_and_saves_them_merged() {
    let dir = scratch("lora");
    let base = train_base(&dir);
    // Rank 4 on both layers: (64 + 32) x 4 + (32 + 5) x 4 factors train, nothing else.
    let adapted = dir.join("adapted");
    fine_tune(&base, &adapted, "30", &["--lora", "4"]);
    let summary = std::fs::read_to_string(adapted.join("summary.txt")).unwrap();
    assert!(summary.contains("Trainable params: 532"), "{summary}");
    let accuracy = metrics(&adapted)["test_accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.6, "{accuracy}");
    // model.bpk is the plain MLP: no factor in it, `kiln eval` reads it as any run.
    let weights = tensors(&adapted.join("model.bpk"));
    assert!(
        weights.keys().all(|k| !k.contains("lora")),
        "{:?}",
        weights.keys()
    );
    let o = kiln(&["eval", "--run", adapted.to_str().unwrap()]);
    let evaluated = common::stdout_value(&o, "test_accuracy");
    assert!(
        (evaluated - accuracy).abs() < 5e-5,
        "{evaluated} vs {accuracy} (printed to 4 places)"
    );

    // A head left new by --init-skip trains in full beside the adapters, and the run resumes
    // exactly (the recorded config rebuilds the same adapters).
    let whole = dir.join("whole");
    fine_tune(
        &base,
        &whole,
        "30",
        &["--lora", "4:8", "--init-skip", "output"],
    );
    let summary = std::fs::read_to_string(whole.join("summary.txt")).unwrap();
    assert!(
        summary.contains("Trainable params: 549"),
        "384 + 32 x 5 + 5: {summary}"
    );
    assert_resumes_to(
        &base,
        &whole,
        &dir,
        &["--lora", "4:8", "--init-skip", "output"],
    );

    let o = kiln_raw(&["train", "--dataset", "digits", "--lora", "4"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--lora adapts a trained model: give it with --init-from"),
        "{err}"
    );
    let o = kiln(&[
        "summary",
        "--dataset",
        "digits",
        "--hidden",
        "32",
        "--classes",
        "0-4",
        "--lora",
        "4",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Trainable params: 532"), "{text}");
    let o = kiln_raw(&["summary", "--dataset", "digits", "--lora", "0"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the rank must be at least 1"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
