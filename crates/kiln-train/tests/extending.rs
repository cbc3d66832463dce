//! What users plug into the trainer without touching kiln: a metric of their own, a callback
//! at the end of every epoch, and a transform of their own in the augmentation.

mod common;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use burn::tensor::{Device, Int, Tensor, TensorReadError};
use burn::train::metric::{Metric, TopKAccuracyMetric};
use common::digits_split;
use kiln_datasets::Data;
use kiln_fnn::{Mlp, MlpConfig};
use kiln_train::{
    Augmentation, BatchHits, BatchSum, EpochMetric, History, Task, TrainError, Trainer,
    TrainerConfig, Verbosity,
};
use rand::RngExt;
use rand::rngs::StdRng;

fn mlp() -> Mlp {
    let device = Device::flex();
    device.seed(5);
    MlpConfig::new(64, vec![32], 10).init(&device)
}

fn trainer(epochs: usize) -> Trainer {
    let config = TrainerConfig {
        epochs,
        verbosity: Verbosity::Quiet,
        ..TrainerConfig::new(Task::Classification)
    };
    Trainer::new(config, Device::flex()).unwrap()
}

/// A metric of one's own: the mean class index of the batches' true classes, which the data
/// alone determines.
struct MeanClass;

impl BatchSum for MeanClass {
    type Input = BatchHits;
    type Kept = Tensor<1, Int>;
    const NAME: &'static str = "mean_class";
    const PRECISION: usize = 3;
    const UNIT: Option<&'static str> = None;
    const HIGHER_IS_BETTER: bool = true;

    fn keep(hits: &BatchHits) -> Tensor<1, Int> {
        hits.targets.clone()
    }

    fn sum(kept: Vec<Tensor<1, Int>>) -> Result<(f64, usize), TensorReadError> {
        let all = Tensor::cat(kept, 0);
        let count = all.dims()[0];
        Ok((all.sum().try_into_scalar::<i64>()? as f64, count))
    }
}

fn mean_label(data: &Data) -> f64 {
    let labels = data.y.labels().unwrap();
    labels.iter().sum::<usize>() as f64 / labels.len() as f64
}

#[test]
fn a_users_metric_and_burns_own_are_recorded_for_both_splits() {
    let (train, valid) = digits_split();
    let fit = trainer(3)
        .with_metric(EpochMetric::<MeanClass>::new())
        .with_metric(TopKAccuracyMetric::new(2))
        .fit_with_validation(mlp(), train.clone(), valid.clone())
        .unwrap();
    let top2 = TopKAccuracyMetric::new(2).name().to_string();
    for epoch in &fit.history.epochs {
        let m = &epoch.metrics;
        // Every training sample once per epoch, every validation sample once.
        assert!((m["mean_class"] - mean_label(&train)).abs() < 1e-6, "{m:?}");
        assert!(
            (m["val_mean_class"] - mean_label(&valid)).abs() < 1e-6,
            "{m:?}"
        );
        // burn-train's top-2 accuracy (in percent) is at least the top-1 accuracy.
        let val_top2 = m[&format!("val_{top2}")] / 100.0;
        assert!(val_top2 >= epoch.val_accuracy.unwrap() - 1e-9, "{m:?}");
        assert!(val_top2 <= 1.0, "{m:?}");
    }
    let csv = fit.history.to_csv();
    let header = csv.lines().next().unwrap();
    assert!(header.starts_with(History::CSV_HEADER), "{header}");
    for column in [
        "mean_class",
        "val_mean_class",
        &top2,
        &format!("val_{top2}"),
    ] {
        assert!(
            header.split(',').any(|c| c == column),
            "{column} in {header}"
        );
    }
    assert_eq!(History::from_csv(&csv).unwrap().epochs[2].metrics.len(), 4);
}

#[test]
fn a_callback_sees_every_epoch_and_can_stop_the_run() {
    let (train, _) = digits_split();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let fit = trainer(10)
        .with_callback(move |history: &History| {
            let last = history.epochs.last().unwrap();
            log.lock().unwrap().push((last.epoch, history.epochs.len()));
            if last.epoch == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .fit(mlp(), &train)
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [(1, 1), (2, 2), (3, 3)]);
    assert_eq!(fit.epochs_run, 3);
    assert!(fit.stopped_early);

    let error = trainer(5)
        .with_callback(|_: &History| -> ControlFlow<()> { panic!("boom") })
        .fit(mlp(), &train)
        .unwrap_err();
    assert!(matches!(error, TrainError::Component(_)), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("callback 1 panicked after epoch 1: boom"),
        "{text}"
    );
}

#[test]
fn a_users_transform_runs_on_every_training_image_and_no_other() {
    let (train, valid) = digits_split();
    let images = |d: Data| Data::new(d.x, vec![1, 8, 8], d.y).unwrap();
    let (train, valid) = (images(train), images(valid));
    // One initialisation for both runs: other tests draw from the same device generator.
    let model = mlp();
    let run = || {
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        // Salt noise: a random pixel of each image set to the image's maximum.
        let salt = move |image: &mut [f32], [_, h, w]: [usize; 3], rng: &mut StdRng| {
            counter.fetch_add(1, Ordering::Relaxed);
            let max = image.iter().copied().fold(f32::MIN, f32::max);
            image[rng.random_range(0..h * w)] = max;
        };
        let config = TrainerConfig {
            epochs: 2,
            augmentation: Some(Augmentation::new(9).flip().with("salt", salt)),
            verbosity: Verbosity::Quiet,
            ..TrainerConfig::new(Task::Classification)
        };
        let fit = Trainer::new(config, Device::flex())
            .unwrap()
            .fit_with_validation(model.clone(), train.clone(), valid.clone())
            .unwrap();
        (count.load(Ordering::Relaxed), fit.history)
    };
    let (count, history) = run();
    assert_eq!(count, 2 * train.len(), "each training image once per epoch");
    let (_, again) = run();
    let losses = |h: &History| h.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>();
    assert_eq!(
        losses(&history),
        losses(&again),
        "the transform's draws are seeded"
    );
}
