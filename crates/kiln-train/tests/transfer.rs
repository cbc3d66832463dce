//! Transfer learning from the library: a network trained on the digits 0-4 starts the one for
//! 5-9 (`init_from`), its hidden layer frozen (`TrainerConfig::freeze`).

mod common;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use kiln_common::summary;
use kiln_datasets::{Data, LabelSubset};
use kiln_fnn::{Mlp, MlpConfig};
use kiln_train::{
    Task, Trainer, TrainerConfig, Unfreeze, Verbosity, evaluate, export_safetensors, freeze,
    init_from,
};

fn classes(data: &Data, spec: &str) -> Data {
    LabelSubset {
        classes: Some(spec.into()),
        ..Default::default()
    }
    .keep_classes(data)
    .unwrap()
}

/// Few enough features that random ones sort the digits poorly.
const HIDDEN: usize = 8;

/// The tests draw from the device's one generator: one at a time, for the same draws.
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn mlp(seed: u64) -> Mlp {
    let device = Device::flex();
    device.seed(seed);
    MlpConfig::new(64, vec![HIDDEN], 5).init(&device)
}

fn trainer(epochs: usize, frozen: &[&str]) -> Trainer {
    let config = TrainerConfig {
        epochs,
        lr: 0.01,
        verbosity: Verbosity::Quiet,
        early_stopping: None,
        freeze: frozen.iter().map(|s| s.to_string()).collect(),
        ..TrainerConfig::new(Task::Classification)
    };
    Trainer::new(config, Device::flex()).unwrap()
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-transfer-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_frozen_pretrained_layer_keeps_its_weights_and_a_new_head_learns_on_it() {
    let _draws = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let (train, test) = common::digits_split();
    let dir = scratch("digits");
    let pretrained = trainer(20, &[])
        .fit(mlp(1), &classes(&train, "0-4"))
        .unwrap()
        .model;
    pretrained.clone().save_file(dir.join("model.bpk")).unwrap();

    // The head has the same shape, but a new task: skip it.
    let (model, report) = init_from(mlp(2), &dir, &["output".into()]).unwrap();
    assert_eq!(
        report.loaded,
        ["hidden.0.linear.bias", "hidden.0.linear.weight"]
    );
    assert!(report.new.is_empty(), "{report}");
    assert_eq!(report.skipped.len(), 2, "the old head: {report}");
    let hidden = |m: &Mlp| values(m.hidden[0].linear.weight.val());
    assert_eq!(hidden(&model), hidden(&pretrained));

    let frozen = freeze(model.clone(), &["hidden".into()]).unwrap();
    let table = summary(&frozen, &[64]);
    assert_eq!(table.trainable, HIDDEN * 5 + 5, "only the head trains");

    let few = LabelSubset {
        per_class: Some(20),
        ..Default::default()
    };
    let (train_b, test_b) = (classes(&train, "5-9"), classes(&test, "5-9"));
    let train_b = few.cut_training(&train_b, 3).unwrap();
    let tuned = trainer(40, &["hidden"]).fit(model, &train_b).unwrap().model;
    assert_eq!(
        hidden(&tuned),
        hidden(&pretrained),
        "the frozen layer did not move"
    );
    let head = |m: &Mlp| values(m.output.weight.val());
    assert_ne!(head(&tuned), head(&mlp(2)));
    let accuracy = |m: &Mlp| {
        evaluate(m, &test_b, Task::Classification, 64, &Device::flex())
            .accuracy
            .unwrap()
    };
    // The same head on a frozen layer of random features: what the pre-training is worth.
    let random = trainer(40, &["hidden"])
        .fit(mlp(2), &train_b)
        .unwrap()
        .model;
    let (transferred, random) = (accuracy(&tuned), accuracy(&random));
    eprintln!("frozen pre-trained features {transferred:.3}, frozen random ones {random:.3}");
    assert!(
        transferred > 0.6 && transferred > random + 0.08,
        "features learnt on 0-4 sort 5-9: {transferred} against random features' {random}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn another_shape_is_new_and_safetensors_load_the_same_way() {
    let _draws = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("shapes");
    let source = mlp(1);
    let file = dir.join("model.safetensors");
    export_safetensors(&source, &file).unwrap();
    let device = Device::flex();
    let target = MlpConfig::new(64, vec![HIDDEN], 3).init(&device);
    let (model, report) = init_from(target, &file, &[]).unwrap();
    assert_eq!(
        report.loaded,
        ["hidden.0.linear.bias", "hidden.0.linear.weight"]
    );
    assert_eq!(report.new, ["output.bias", "output.weight"], "{report}");
    assert_eq!(
        report.reshaped[1], "output.weight (the model's [8, 3], the file's [8, 5])",
        "{report}"
    );
    assert_eq!(
        values(model.hidden[0].linear.weight.val()),
        values(source.hidden[0].linear.weight.val())
    );

    let other = MlpConfig::new(10, vec![7], 3).init(&device);
    let err = init_from(other, &file, &[]).unwrap_err().to_string();
    assert!(err.contains("no tensor fits the model"), "{err}");
    let err = init_from(mlp(1), &dir.join("missing"), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");
    let err = freeze(mlp(1), &["hiden".into()]).unwrap_err().to_string();
    assert!(
        err.contains("`hiden` names no parameter of the model (its parts: hidden, output)"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_frozen_layer_trains_from_the_unfreezing_epoch_at_its_rate_and_resumes_exactly() {
    let _draws = DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let (train, _) = common::digits_split();
    let data = classes(&train, "0-4");
    let device = Device::flex();
    let initial = mlp(3).into_record();
    let fresh = || {
        MlpConfig::new(64, vec![HIDDEN], 5)
            .init(&device)
            .load_record(initial.clone())
    };
    let hidden = |m: &Mlp| values(m.hidden[0].linear.weight.val());
    let start = hidden(&fresh());
    let dir = scratch("unfreeze");
    // Unfrozen from epoch 4 of 6; `stop_after` ends the run early, and `resume` goes on from
    // its checkpoint.
    let fit = |ratio: f64, stop_after: Option<usize>, resume: bool| {
        let config = TrainerConfig {
            epochs: 6,
            lr: 0.01,
            verbosity: Verbosity::Quiet,
            freeze: vec!["hidden".into()],
            unfreeze_at: Some(Unfreeze {
                epoch: 4,
                lr_ratio: ratio,
            }),
            ..TrainerConfig::new(Task::Classification)
        };
        let mut trainer = Trainer::new(config, device.clone())
            .unwrap()
            .with_checkpoints(dir.join("checkpoint"));
        if let Some(last) = stop_after {
            trainer = trainer.with_callback(move |h: &kiln_train::History| {
                match h.epochs.len() >= last {
                    true => std::ops::ControlFlow::Break(()),
                    false => std::ops::ControlFlow::Continue(()),
                }
            });
        }
        if resume {
            // Past the callback's stop, as Keras's `fit` called again.
            trainer = trainer.resuming_past_early_stop();
        }
        trainer.fit(fresh(), &data).unwrap().model
    };
    let change = |m: &Mlp| {
        hidden(m)
            .iter()
            .zip(&start)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    };
    let _ = std::fs::remove_dir_all(dir.join("checkpoint"));
    let whole = fit(0.1, None, false);
    assert!(
        change(&whole) > 1e-3,
        "unfrozen at epoch 4, the layer trained"
    );

    // Stopped after epoch 3, the layer has not moved; resumed across the unfreezing epoch, or
    // after it, the run ends with the uninterrupted one's weights.
    for stop in [3, 5] {
        let _ = std::fs::remove_dir_all(dir.join("checkpoint"));
        let stopped = fit(0.1, Some(stop), false);
        if stop == 3 {
            assert_eq!(hidden(&stopped), start, "frozen until epoch 4");
        }
        let resumed = fit(0.1, None, true);
        assert_eq!(hidden(&resumed), hidden(&whole), "stopped after {stop}");
        assert_eq!(
            values(resumed.output.weight.val()),
            values(whole.output.weight.val())
        );
    }

    // The unfrozen layer's rate is the run's times the ratio: Adam's steps scale with it.
    let _ = std::fs::remove_dir_all(dir.join("checkpoint"));
    let slow = fit(1e-4, None, false);
    let _ = std::fs::remove_dir_all(dir.join("checkpoint"));
    let full = fit(1.0, None, false);
    let (slow, full) = (change(&slow), change(&full));
    assert!(
        slow < 1e-3 * full && slow > 0.0,
        "ratio 1e-4 moved {slow}, ratio 1 moved {full}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
