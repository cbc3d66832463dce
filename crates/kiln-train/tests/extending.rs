//! What users plug into the trainer without touching kiln: a metric of their own, a callback
//! at the end of every epoch, and a transform of their own in the augmentation.

mod common;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use burn::tensor::{Device, Int, Tensor, TensorReadError};
use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{
    Metric, MetricDefinition, MetricMetadata, MetricName, Numeric, NumericEntry, SerializedEntry,
    TopKAccuracyMetric,
};
use common::digits_split;
use kiln_datasets::Data;
use kiln_fnn::{Mlp, MlpConfig};
use kiln_train::{
    Augmentation, BatchHits, BatchSum, EpochMetric, History, StepOutput, Task, TrainError, Trainer,
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

/// Each step's iteration and batch size, in the order a metric was given them.
type StepRecord = Arc<Mutex<Vec<(Option<usize>, usize)>>>;

/// A metric that records every step it is given.
#[derive(Clone)]
struct Steps(StepRecord);

impl Metric for Steps {
    type Input = StepOutput;

    fn name(&self) -> MetricName {
        Arc::new("steps".into())
    }
    fn update(
        &mut self,
        item: &StepOutput,
        metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let mut seen = self.0.lock().unwrap();
        seen.push((metadata.iteration, item.output.dims()[0]));
        Ok(SerializedEntry::new(String::new(), String::new()))
    }
    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(SerializedEntry::new(String::new(), String::new()))
    }
    fn clear(&mut self) {}
}

impl Numeric for Steps {
    fn value(&self) -> Option<NumericEntry> {
        None
    }
    fn running_value(&self) -> Option<NumericEntry> {
        None
    }
    fn final_value(&self) -> NumericEntry {
        NumericEntry::Value(self.0.lock().unwrap().len() as f64)
    }
}

/// Counts the metric updates logged for the training split.
struct TrainUpdates(Arc<AtomicUsize>);

impl MetricLogger for TrainUpdates {
    fn log(&mut self, _update: MetricsUpdate, _epoch: usize, split: &Split) {
        if *split == Split::Train {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn read_numeric(&mut self, _: &str, _: usize, _: &Split) -> Result<Vec<NumericEntry>, String> {
        Ok(Vec::new())
    }
    fn log_metric_definition(&mut self, _definition: MetricDefinition) {}
    fn log_epoch_summary(&mut self, _summary: EpochSummary) {}
}

#[test]
fn metrics_see_every_step_in_order_while_steps_reach_the_event_thread_in_groups() {
    let (train, valid) = digits_split();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let logged = Arc::new(AtomicUsize::new(0));
    trainer(1)
        .with_metric(Steps(seen.clone()))
        .with_metric_logger("counter", TrainUpdates(logged.clone()))
        .fit_with_validation(mlp(), train.clone(), valid.clone())
        .unwrap();
    let seen = seen.lock().unwrap();
    // The same metric object counts the training split, then the validation split (its own
    // clone, sharing the record): each split's steps once, numbered from 1, in order, every
    // sample once.
    let batch = TrainerConfig::new(Task::Classification).batch_size;
    let train_steps = train.len().div_ceil(batch);
    let valid_steps = valid.len().div_ceil(batch);
    assert_eq!(seen.len(), train_steps + valid_steps);
    let (train_seen, valid_seen) = seen.split_at(train_steps);
    for (part, samples) in [(train_seen, train.len()), (valid_seen, valid.len())] {
        let iterations: Vec<_> = part.iter().map(|(i, _)| i.unwrap()).collect();
        assert_eq!(iterations, (1..=part.len()).collect::<Vec<_>>());
        assert_eq!(part.iter().map(|(_, n)| n).sum::<usize>(), samples);
    }
    // A step of this MLP takes well under a millisecond: its outputs reach the logger in groups
    // (32 steps at most, 50 ms apart at most), not one update per step.
    let updates = logged.load(Ordering::Relaxed);
    assert!(
        updates >= 1 && updates * 4 <= train_steps,
        "{updates} updates for {train_steps} steps"
    );
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
