//! What users plug into the trainer without touching kiln: a metric of their own, a callback
//! at the end of every epoch, and a transform of their own in the augmentation.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use burn::tensor::{Device, TensorReadError};
use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Metric, MetricMetadata, MetricName, Numeric, NumericEntry, SerializedEntry, TopKAccuracyMetric,
};
use kiln_datasets::{Data, Standardizer, digits, split};
use kiln_fnn::{Mlp, MlpConfig};
use kiln_train::{
    Augmentation, BatchHits, History, Task, TrainError, Trainer, TrainerConfig, Verbosity,
};
use rand::RngExt;
use rand::rngs::StdRng;

fn digits_split() -> (Data, Data) {
    let parts = split(&digits(), 0.2, 0).unwrap();
    let (mut train, mut test) = (parts.first, parts.second);
    let scaler = Standardizer::fit(&train);
    scaler.transform(&mut train).unwrap();
    scaler.transform(&mut test).unwrap();
    (train, test)
}

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
#[derive(Clone, Default)]
struct MeanClass {
    state: NumericMetricState,
}

impl Metric for MeanClass {
    type Input = BatchHits;

    fn name(&self) -> MetricName {
        Arc::new("mean_class".to_string())
    }

    fn update(
        &mut self,
        hits: &BatchHits,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let n = hits.targets.dims()[0];
        let mean = hits
            .targets
            .clone()
            .float()
            .mean()
            .try_into_scalar::<f32>()?;
        self.state.update(mean as f64, n);
        Ok(self.state.compute_update(FormatOptions::new(self.name())))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self.state.compute_final(FormatOptions::new(self.name())))
    }

    fn clear(&mut self) {
        self.state.reset()
    }
}

impl Numeric for MeanClass {
    fn value(&self) -> Option<NumericEntry> {
        Some(self.state.current_value())
    }
    fn running_value(&self) -> Option<NumericEntry> {
        Some(self.state.running_value())
    }
    fn final_value(&self) -> NumericEntry {
        self.state.final_value()
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
        .with_metric(MeanClass::default())
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
