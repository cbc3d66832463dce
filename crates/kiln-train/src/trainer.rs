use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::DataLoaderBuilder;
use burn::module::Module;
use burn::tensor::Device;
use burn::train::metric::store::Split;
use burn::train::{Learner, SupervisedTraining};
use kiln_common::Model;
use kiln_datasets::{Data, Targets, split};
use serde::{Deserialize, Serialize};

use crate::batch::{DataBatcher, Indices};
use crate::early_stopping::{Discard, EarlyStoppingHook, KeepBest, MemoryCheckpointer, Tracker};
use crate::history::{EpochRecord, HistoryLogger};
use crate::metrics::{EpochAccuracy, EpochLoss};
use crate::progress::ProgressRenderer;
use crate::schedule::EpochLrScheduler;
use crate::{
    Augmentation, EarlyStopping, History, LrSchedule, OptimizerConfig, Supervised, Task,
    TrainError, Verbosity,
};

/// Everything a training run needs besides the model and the data; saved as `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerConfig {
    /// Classification or regression.
    pub task: Task,
    /// Maximum number of passes over the training data. Default: 20.
    pub epochs: usize,
    /// Samples per optimiser step. Default: 32.
    pub batch_size: usize,
    /// Base learning rate. Default: 0.001.
    pub lr: f64,
    /// Optimiser. Default: Adam, no momentum, no weight decay, no clipping.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule over epochs. Default: constant.
    pub lr_schedule: LrSchedule,
    /// Fraction of the training data held out for validation, stratified for classification
    /// (Keras's `validation_split`). Default: 0.2.
    pub validation_split: f64,
    /// Early stopping; `None` trains for all `epochs`. Default: none.
    pub early_stopping: Option<EarlyStopping>,
    /// Random transforms of the training images (never of validation or test data), applied
    /// in a data-loader worker thread, off the training thread (one, so that runs stay
    /// reproducible: several workers hand batches over in whichever order they finish). Default: none.
    #[serde(default)]
    pub augmentation: Option<Augmentation>,
    /// Seed of the split, the shuffling, the initialisation and dropout. Default: 42.
    pub seed: u64,
    /// What to print while training. Default: a bar on a terminal, lines otherwise.
    #[serde(skip, default = "Verbosity::auto")]
    pub verbosity: Verbosity,
}

impl TrainerConfig {
    /// The defaults above, for `task`.
    pub fn new(task: Task) -> Self {
        Self {
            task,
            epochs: 20,
            batch_size: 32,
            lr: 1e-3,
            optimizer: OptimizerConfig::default(),
            lr_schedule: LrSchedule::Constant,
            validation_split: 0.2,
            early_stopping: None,
            augmentation: None,
            seed: 42,
            verbosity: Verbosity::auto(),
        }
    }

    /// Checks every option once, up front.
    pub fn check(&self) -> Result<(), TrainError> {
        if self.epochs == 0 {
            return Err(TrainError::option("epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(TrainError::option("batch_size", "must be at least 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(TrainError::option(
                "lr",
                format!("must be > 0, got {}", self.lr),
            ));
        }
        if !(self.validation_split > 0.0 && self.validation_split < 1.0) {
            return Err(TrainError::option(
                "validation_split",
                format!(
                    "must lie strictly between 0 and 1, got {}",
                    self.validation_split
                ),
            ));
        }
        if let Some(es) = &self.early_stopping {
            es.check()?;
            if es.monitor == crate::Monitor::ValAccuracy && self.task == Task::Regression {
                return Err(TrainError::option(
                    "monitor",
                    "val_accuracy needs a classification task",
                ));
            }
        }
        self.optimizer.check()?;
        self.lr_schedule.check(self.lr)
    }
}

/// The outcome of [`Trainer::fit`].
#[derive(Debug)]
pub struct FitResult<M> {
    /// The trained model, in evaluation mode: the best epoch's weights when early stopping
    /// restores them, else the last epoch's.
    pub model: M,
    pub history: History,
    /// The epoch (from 1) with the best monitored value (`val_loss` without early stopping).
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub stopped_early: bool,
    /// Wall time of training, validation included.
    pub train_seconds: f64,
    /// Training samples processed per second of `train_seconds`.
    pub samples_per_sec: f64,
}

/// kiln's trainer: Keras's `fit` on top of burn-train.
pub struct Trainer {
    config: TrainerConfig,
    device: Device,
}

impl Trainer {
    /// A trainer running on `device` (plain; the trainer adds autodiff for training steps).
    pub fn new(config: TrainerConfig, device: Device) -> Result<Self, TrainError> {
        config.check()?;
        Ok(Self { config, device })
    }

    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// Trains `model` on `data`, holding out `validation_split` of it for validation.
    pub fn fit<M: Model>(&self, model: M, data: &Data) -> Result<FitResult<M>, TrainError> {
        let parts = split(data, self.config.validation_split, self.config.seed)?;
        self.fit_with_validation(model, parts.first, parts.second)
    }

    /// Trains `model` on `train`, validating on `valid` after every epoch.
    ///
    /// Takes the data by value or as an `Arc`: the data loaders share it without copying.
    pub fn fit_with_validation<M: Model>(
        &self,
        model: M,
        train: impl Into<Arc<Data>>,
        valid: impl Into<Arc<Data>>,
    ) -> Result<FitResult<M>, TrainError> {
        let (train, valid): (Arc<Data>, Arc<Data>) = (train.into(), valid.into());
        let config = &self.config;
        self.check_fit(&model, &train)?;
        self.check_fit(&model, &valid)?;

        self.device.seed(config.seed);
        let train_device = self.device.clone().autodiff();
        train_device.seed(config.seed);

        let mut batcher = DataBatcher::<M::Input>::new(train.clone());
        let mut workers = 0;
        if let Some(augmentation) = &config.augmentation {
            if train.sample_shape.len() != 3 {
                return Err(TrainError::option(
                    "augmentation",
                    format!(
                        "needs image samples [channels, height, width], got {:?}",
                        train.sample_shape
                    ),
                ));
            }
            batcher = batcher.with_augmentation(augmentation.clone());
            workers = 1;
        }
        let loader_train = DataLoaderBuilder::new(batcher)
            .batch_size(config.batch_size)
            .shuffle(config.seed)
            .num_workers(workers)
            .set_device(train_device.clone())
            .build(Indices(train.len()));
        let loader_valid = DataLoaderBuilder::new(DataBatcher::<M::Input>::new(valid.clone()))
            .batch_size(config.batch_size)
            .set_device(self.device.clone())
            .build(Indices(valid.len()));

        let steps_per_epoch = train.len().div_ceil(config.batch_size);
        let scheduler = EpochLrScheduler {
            schedule: config.lr_schedule,
            lr: config.lr,
            epochs: config.epochs,
            steps_per_epoch,
            step: 0,
        };
        let supervised = Supervised {
            model: model.train(),
            task: config.task,
        };
        let learner = Learner::new(supervised, config.optimizer.build(), scheduler);

        let history_logger = HistoryLogger::default();
        let recorded = history_logger.recorded.clone();
        let scratch = std::env::temp_dir().join(format!("kiln-train-{}", std::process::id()));
        let mut training = SupervisedTraining::new(&scratch, loader_train, loader_valid)
            .with_application_logger(None)
            .with_metric_logger(history_logger)
            .renderer(Box::new(ProgressRenderer::new(config.verbosity)))
            .metric_train_numeric(EpochLoss::new())
            .metric_valid_numeric(EpochLoss::new())
            .num_epochs(config.epochs);
        if config.task == Task::Classification {
            training = training
                .metric_train_numeric(EpochAccuracy::new())
                .metric_valid_numeric(EpochAccuracy::new());
        }

        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let checkpoints = MemoryCheckpointer::default();
        if let Some(rule) = &config.early_stopping {
            let hook = EarlyStoppingHook {
                rule: rule.clone(),
                tracker: tracker.clone(),
            };
            if rule.restore_best_weights {
                training = training
                    .with_custom_checkpointers(checkpoints.clone(), Discard, Discard)
                    .with_checkpointing_strategy(KeepBest { hook: hook.clone() });
            }
            training = training.early_stopping(hook);
        }

        let start = Instant::now();
        let result = training.launch(learner);
        let train_seconds = start.elapsed().as_secs_f64();
        if let Some(error) = result.error {
            return Err(TrainError::Training(error.to_string()));
        }
        let mut trained = result.model;

        let history = self.history(&recorded.lock().expect("history lock"), start);
        let epochs_run = history.epochs.len();
        let tracker = tracker.lock().expect("tracker lock").clone();
        let stopped_early = tracker.stopped_at.is_some_and(|e| e < config.epochs);
        let best_epoch = match (&config.early_stopping, tracker.best) {
            (Some(_), Some((epoch, _))) => epoch,
            _ => history
                .epochs
                .iter()
                .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
                .map_or(epochs_run, |r| r.epoch),
        };
        if config
            .early_stopping
            .as_ref()
            .is_some_and(|r| r.restore_best_weights)
            && best_epoch != epochs_run
            && let Some(record) = checkpoints
                .records
                .lock()
                .expect("records lock")
                .remove(&best_epoch)
        {
            trained = trained.try_load_record(record).map_err(|e| {
                TrainError::Training(format!("restoring the weights of epoch {best_epoch}: {e}"))
            })?;
        }
        let _ = std::fs::remove_dir_all(&scratch);

        Ok(FitResult {
            model: trained.model.valid(),
            best_epoch,
            epochs_run,
            stopped_early,
            train_seconds,
            samples_per_sec: (train.len() * epochs_run) as f64 / train_seconds.max(1e-9),
            history,
        })
    }

    /// Checks that the data suits the task and the model, by running the model on one sample,
    /// so that a mismatch is a clear error rather than a panic deep inside a training step.
    fn check_fit<M: Model>(&self, model: &M, data: &Data) -> Result<(), TrainError> {
        let task = self.config.task;
        let (expected, what) = match (&data.y, task) {
            (Targets::Classes { names, .. }, Task::Classification) => (names.len(), "classes"),
            (Targets::Values { names, .. }, Task::Regression) => (names.len(), "target columns"),
            (Targets::Classes { .. }, Task::Regression) => {
                return Err(TrainError::TaskMismatch {
                    task: "regression",
                    targets: "classes",
                });
            }
            (Targets::Unlabelled { .. }, task) => {
                return Err(TrainError::TaskMismatch {
                    task: task.name(),
                    targets: "missing (unlabelled data)",
                });
            }
            (Targets::Values { .. }, Task::Classification) => {
                return Err(TrainError::TaskMismatch {
                    task: "classification",
                    targets: "real values",
                });
            }
        };
        if data.is_empty() {
            return Err(kiln_datasets::DataError::Empty("training data".into()).into());
        }
        let probe = model.valid();
        let sample = data.subset(&[0]);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let input = <M::Input as kiln_common::BatchInput>::from_samples(
                sample.x.clone(),
                1,
                &sample.sample_shape,
                &self.device,
            );
            probe.forward(input).dims()[1]
        }));
        let got = outcome.map_err(|_| TrainError::InputShape {
            expected: vec![],
            got: data.sample_shape.clone(),
        })?;
        let binary_logit = what == "classes" && expected == 2 && got == 1;
        if got != expected && !binary_logit {
            return Err(TrainError::OutputWidth {
                expected,
                got,
                what,
            });
        }
        Ok(())
    }

    fn history(&self, recorded: &crate::history::Recorded, start: Instant) -> History {
        let mut epochs = Vec::new();
        let mut previous_end = start;
        for epoch in 1.. {
            let Some(val_loss) = recorded.value(Split::Valid, epoch, "Loss") else {
                break;
            };
            let end = recorded.ended(Split::Valid, epoch).unwrap_or(previous_end);
            epochs.push(EpochRecord {
                epoch,
                train_loss: recorded
                    .value(Split::Train, epoch, "Loss")
                    .unwrap_or(f64::NAN),
                train_accuracy: recorded.value(Split::Train, epoch, "Accuracy"),
                val_loss,
                val_accuracy: recorded.value(Split::Valid, epoch, "Accuracy"),
                lr: self
                    .config
                    .lr_schedule
                    .lr_at(self.config.lr, epoch - 1, self.config.epochs),
                seconds: end.saturating_duration_since(previous_end).as_secs_f64(),
            });
            previous_end = end;
        }
        History { epochs }
    }
}
