//! The trainer over long runs, as a library: non-finite losses, failing loggers, checkpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, NumericEntry};
use kiln_common::Model;
use kiln_datasets::{Standardizer, digits, split};
use kiln_fnn::{Mlp, MlpConfig};
use kiln_train::{CheckpointDir, Task, TrainError, Trainer, TrainerConfig, Verbosity};

/// An MLP whose output turns to NaN from its `from`-th training call on: a run that diverges
/// at a known point.
#[derive(Module, Debug)]
struct Diverging {
    mlp: Mlp,
    #[module(skip)]
    calls: Arc<AtomicUsize>,
    #[module(skip)]
    from: usize,
}

impl Model for Diverging {
    type Input = Tensor<2>;

    fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let out = self.mlp.forward(input);
        if out.device().is_autodiff() && self.calls.fetch_add(1, Ordering::Relaxed) + 1 >= self.from
        {
            out.mul_scalar(f32::NAN)
        } else {
            out
        }
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn digits_train() -> kiln_datasets::Data {
    let mut train = split(&digits(), 0.2, 0).unwrap().first;
    let scaler = Standardizer::fit(&train);
    scaler.transform(&mut train).unwrap();
    train
}

fn config(epochs: usize) -> TrainerConfig {
    TrainerConfig {
        epochs,
        batch_size: 64,
        verbosity: Verbosity::Quiet,
        ..TrainerConfig::new(Task::Classification)
    }
}

#[test]
fn a_nan_stops_the_run_naming_epoch_and_batch_and_keeps_the_last_good_epoch() {
    let train = digits_train();
    let device = Device::flex();
    // 1,437 samples, 80% for training, batches of 64: 18 steps an epoch. NaN from the 5th
    // step of epoch 3 on.
    let steps = (train.len() * 4 / 5).div_ceil(64);
    let model = Diverging {
        mlp: MlpConfig::new(64, vec![32], 10).init(&device),
        calls: Arc::default(),
        from: 2 * steps + 5,
    };
    let dir = scratch("nan");
    let err = Trainer::new(config(10), device)
        .unwrap()
        .with_checkpoints(&dir)
        .fit(model, &train)
        .unwrap_err();
    let TrainError::NonFiniteLoss {
        epoch,
        batch,
        loss,
        history,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!((*epoch, *batch), (3, 5), "{err}");
    assert!(loss.is_nan());
    assert_eq!(history.epochs.len(), 2);
    assert!(history.epochs.iter().all(|r| r.train_loss.is_finite()));
    assert_eq!(CheckpointDir::new(&dir).latest().unwrap(), Some(2));
    assert!(err.to_string().contains("lower --lr"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A metric logger that panics once it has seen `after` updates.
struct Failing {
    seen: usize,
    after: usize,
}

impl MetricLogger for Failing {
    fn log(&mut self, _update: MetricsUpdate, _epoch: usize, _split: &Split) {
        self.seen += 1;
        if self.seen > self.after {
            panic!("the tracking server went away");
        }
    }
    fn read_numeric(&mut self, _: &str, _: usize, _: &Split) -> Result<Vec<NumericEntry>, String> {
        Ok(Vec::new())
    }
    fn log_metric_definition(&mut self, _definition: MetricDefinition) {}
    fn log_epoch_summary(&mut self, _summary: EpochSummary) {}
}

#[test]
fn a_logger_failing_mid_run_is_an_error_not_a_hang() {
    let train = digits_train();
    let device = Device::flex();
    let model = MlpConfig::new(64, vec![32], 10).init(&device);
    let start = Instant::now();
    let err = Trainer::new(config(50), device)
        .unwrap()
        .with_metric_logger("tracker", Failing { seen: 0, after: 30 })
        .fit(model, &train)
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(30));
    let text = err.to_string();
    assert!(
        text.contains("metric logger `tracker`") && text.contains("went away"),
        "{text}"
    );
}

#[test]
fn resuming_without_a_checkpoint_is_a_clear_error() {
    let train = digits_train();
    let device = Device::flex();
    let model = MlpConfig::new(64, vec![32], 10).init(&device);
    let dir = scratch("empty");
    let err = Trainer::new(config(2), device)
        .unwrap()
        .with_checkpoints(&dir)
        .resuming()
        .fit(model, &train)
        .unwrap_err();
    assert!(
        err.to_string().contains("no checkpoint to resume from"),
        "{err}"
    );
}
