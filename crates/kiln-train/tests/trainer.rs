//! The trainer end to end on real (embedded) and synthetic data, on the flex backend.

mod common;

use burn::tensor::Device;
use common::digits_split;
use kiln_datasets::{Standardizer, split, synthetic};
use kiln_fnn::{Mlp, MlpConfig};
use kiln_train::{
    EarlyStopping, LrSchedule, Monitor, OptimizerConfig, OptimizerKind, Task, TrainError, Trainer,
    TrainerConfig, Verbosity, evaluate,
};

fn device() -> Device {
    Device::flex()
}

fn config(task: Task, epochs: usize) -> TrainerConfig {
    TrainerConfig {
        epochs,
        verbosity: Verbosity::Quiet,
        ..TrainerConfig::new(task)
    }
}

fn mlp(hidden: Vec<usize>, d_output: usize, d_input: usize) -> Mlp {
    let device = device();
    device.seed(7);
    MlpConfig::new(d_input, hidden, d_output).init(&device)
}

#[test]
fn an_mlp_learns_the_digits() {
    let (train, test) = digits_split();
    let trainer = Trainer::new(config(Task::Classification, 15), device()).unwrap();
    let fit = trainer.fit(mlp(vec![64], 10, 64), &train).unwrap();
    assert_eq!(fit.epochs_run, 15);
    assert_eq!(fit.history.epochs.len(), 15);
    let first = &fit.history.epochs[0];
    let last = &fit.history.epochs[14];
    assert!(
        last.train_loss < first.train_loss / 2.0,
        "{:?}",
        fit.history
    );
    let metrics = evaluate(&fit.model, &test, Task::Classification, 64, &device());
    assert!(metrics.accuracy.unwrap() >= 0.95, "{metrics:?}");
    // Each epoch's training time is timed apart from its validation: more than nothing, less
    // than the whole epoch.
    for epoch in &fit.history.epochs {
        let train_seconds = epoch.train_seconds.expect("timed");
        assert!(
            train_seconds > 0.0 && train_seconds < epoch.seconds,
            "{epoch:?}"
        );
    }
}

/// A NaN feature in one training sample: the first batch holding it has a NaN loss and the run
/// stops there (Keras's TerminateOnNaN). The fused dense kernel's ReLU used to map the NaN to
/// 0, so the run trained on, its first layer's weights NaN, with a finite loss.
#[test]
fn a_nan_feature_stops_the_run_at_its_batch() {
    let (mut train, _) = digits_split();
    train
        .x
        .chunks_mut(64)
        .for_each(|sample| sample[30] = f32::NAN);
    let trainer = Trainer::new(config(Task::Classification, 3), device()).unwrap();
    match trainer.fit(mlp(vec![64], 10, 64), &train) {
        Err(TrainError::NonFiniteLoss { epoch, batch, .. }) => assert_eq!((epoch, batch), (1, 1)),
        Err(e) => panic!("{e}"),
        Ok(fit) => panic!("trained on NaN features: {:?}", fit.history),
    }
}

#[test]
fn early_stopping_fires_after_exactly_patience_epochs_on_a_plateau() {
    // A learning rate this small leaves the validation loss flat: epoch 1 sets the best and no
    // later epoch beats it by min_delta.
    let (train, _) = digits_split();
    let mut cfg = config(Task::Classification, 30);
    cfg.lr = 1e-12;
    cfg.early_stopping = Some(EarlyStopping {
        monitor: Monitor::ValLoss,
        min_delta: 1e-4,
        patience: 3,
        restore_best_weights: false,
    });
    let fit = Trainer::new(cfg, device())
        .unwrap()
        .fit(mlp(vec![16], 10, 64), &train)
        .unwrap();
    assert!(fit.stopped_early);
    assert_eq!(fit.epochs_run, 4, "1 best epoch + 3 without improvement");
    assert_eq!(fit.best_epoch, 1);
}

#[test]
fn restore_best_weights_returns_the_best_epochs_model() {
    // A wide net on 200 samples overfits: the validation loss falls, then rises.
    let (train, _) = digits_split();
    let small = train.subset(&(0..200).collect::<Vec<_>>());
    let valid = train.subset(&(200..456).collect::<Vec<_>>());
    let mut cfg = config(Task::Classification, 60);
    cfg.lr = 0.01;
    cfg.batch_size = 64;
    cfg.early_stopping = Some(EarlyStopping {
        monitor: Monitor::ValLoss,
        min_delta: 0.0,
        patience: 3,
        restore_best_weights: true,
    });
    let fit = Trainer::new(cfg, device())
        .unwrap()
        .fit_with_validation(mlp(vec![256], 10, 64), small, valid.clone())
        .unwrap();
    assert!(fit.stopped_early, "{:?}", fit.history);
    assert_eq!(fit.best_epoch, fit.epochs_run - 3);
    let best = fit
        .history
        .epochs
        .iter()
        .map(|r| r.val_loss)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(fit.history.epochs[fit.best_epoch - 1].val_loss, best);
    // 256 validation samples in batches of 64: the per-batch mean equals the per-sample mean.
    let restored = evaluate(&fit.model, &valid, Task::Classification, 64, &device());
    assert!(
        (restored.loss - best).abs() < 1e-4,
        "restored {} vs best {best}",
        restored.loss
    );
    let last = fit.history.epochs.last().unwrap().val_loss;
    assert!(
        last > best + 1e-4,
        "the last epoch must differ for this test to mean anything"
    );
}

fn weight_norm(m: &Mlp) -> f32 {
    let sq = |t: burn::tensor::Tensor<2>| (t.clone() * t).sum().into_scalar::<f32>();
    m.hidden
        .iter()
        .map(|b| sq(b.linear.weight.val()))
        .sum::<f32>()
        + sq(m.output.weight.val())
}

#[test]
fn weight_decay_shrinks_the_weights() {
    let (train, _) = digits_split();
    let run = |decay: f64| {
        let mut cfg = config(Task::Classification, 5);
        cfg.optimizer = OptimizerConfig {
            kind: OptimizerKind::Sgd,
            momentum: 0.9,
            weight_decay: decay,
            ..OptimizerConfig::default()
        };
        cfg.lr = 0.01;
        let fit = Trainer::new(cfg, device())
            .unwrap()
            .fit(mlp(vec![64], 10, 64), &train)
            .unwrap();
        weight_norm(&fit.model)
    };
    let (plain, decayed) = (run(0.0), run(0.05));
    assert!(
        decayed < 0.8 * plain,
        "with decay {decayed}, without {plain}"
    );
}

#[test]
fn house_prices_regression_with_inverse_time_decay() {
    let data = synthetic::house_prices(1000, 1);
    let parts = split(&data, 0.2, 1).unwrap();
    let (mut train, mut test) = (parts.first, parts.second);
    let scaler = Standardizer::fit(&train);
    scaler.transform(&mut train).unwrap();
    scaler.transform(&mut test).unwrap();
    let mut cfg = config(Task::Regression, 60);
    cfg.lr = 0.05;
    cfg.lr_schedule = LrSchedule::InverseTime { decay: 0.05 };
    let fit = Trainer::new(cfg, device())
        .unwrap()
        .fit(mlp(vec![32], 1, 2), &train)
        .unwrap();
    assert!((fit.history.epochs[10].lr - 0.05 / 1.5).abs() < 1e-12);
    let m = evaluate(&fit.model, &test, Task::Regression, 64, &device());
    assert!(m.r2.unwrap() >= 0.95, "{m:?}");
    assert!(m.mae.unwrap() < 6.0, "{m:?}");
}

#[test]
fn mismatched_model_and_data_are_clear_errors() {
    let (train, _) = digits_split();
    let trainer = Trainer::new(config(Task::Classification, 1), device()).unwrap();
    let e = trainer.fit(mlp(vec![], 3, 64), &train).unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::OutputWidth {
                expected: 10,
                got: 3,
                ..
            }
        ),
        "{e}"
    );
    let e = Trainer::new(config(Task::Regression, 1), device())
        .unwrap()
        .fit(mlp(vec![], 10, 64), &train)
        .unwrap_err();
    assert!(matches!(e, TrainError::TaskMismatch { .. }), "{e}");
    let mut bad = config(Task::Classification, 1);
    bad.validation_split = 1.5;
    assert!(matches!(
        Trainer::new(bad, device()),
        Err(TrainError::InvalidOption {
            option: "validation_split",
            ..
        })
    ));
}
