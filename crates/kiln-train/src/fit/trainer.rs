use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::data::dataloader::DataLoaderBuilder;
use burn::lr_scheduler::LrSchedulerRecord;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::OptimizerRecord;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use burn::train::logger::MetricLogger;
use burn::train::metric::{Adaptor, Metric, Numeric};
use burn::train::{Interrupter, Learner, SupervisedTraining, TrainingStrategy};
use kiln_common::{FlushDenormals, Model, Precision, PrecisionScope};
use kiln_datasets::{Data, Targets, split};
use serde::{Deserialize, Serialize};

use crate::data::batch::{DataBatcher, ValidIndices};
use crate::data::masking::MaskedLm;
use crate::epoch_end::callback::Callback;
use crate::epoch_end::checkpoint::{
    CheckpointDir, EveryEpoch, Loaded, ModelPart, PARTS, Staged, Staging,
};
use crate::epoch_end::hook::{EpochEnd, EpochOrder, RunState, SeededIds};
use crate::epoch_end::schedule::EpochLrScheduler;
use crate::epoch_end::schedule::{Plateau, SharedLr};
use crate::fit::failures::{Failure, Failures, GuardedLogger};
use crate::fit::loss_scale::LossScaler;
use crate::fit::nan_guard::TerminateOnNan;
use crate::fit::prefetch::Prefetch;
use crate::fit::progress::ProgressRenderer;
use crate::fit::ranks::{Collective, OneProcess, Ranks};
use crate::fit::replicas::Replicas;
use crate::fit::steps::PerStep;
use crate::fit::steps::StepOutput;
use crate::fit::strategy::GroupedSingleDevice;
use crate::metrics::{EpochAccuracy, EpochLoss};
use crate::records::history::HistoryLogger;
use crate::transfer::distill::{Distillation, Teacher, TeacherOutputs};
use crate::transfer::lora::{LoraConfig, merge_lora};
use crate::transfer::unfreeze::{Scaled, Unfreeze};
use crate::user_metric::UserMetric;
use crate::{
    Augmentation, DataProfile, Diagnoser, Diagnosis, EarlyStopping, EpochGradients, GradientProbe,
    History, LrSchedule, Monitor, OptimizerConfig, Supervised, Task, TensorBoardWriter, TrainError,
    Verbosity, diagnose,
};

/// Everything a training run needs besides the model and the data; saved as `config.json`.
///
/// # Example
///
/// Keras's `model.fit(x, y, epochs=5, batch_size=32, validation_split=0.2)` on the embedded
/// digits:
///
/// ```
/// use burn::tensor::Device;
/// use kiln_datasets::{Standardizer, digits, split};
/// use kiln_fnn::MlpConfig;
/// use kiln_train::{Task, Trainer, TrainerConfig, Verbosity, evaluate};
///
/// let parts = split(&digits(), 0.2, 0)?;
/// let (mut train, mut test) = (parts.first, parts.second);
/// let scaler = Standardizer::fit(&train);
/// scaler.transform(&mut train)?;
/// scaler.transform(&mut test)?;
///
/// let device = Device::flex();
/// let model = MlpConfig::new(64, vec![64], 10).init(&device);
/// let config = TrainerConfig {
///     epochs: 5,
///     batch_size: 32,
///     validation_split: 0.2,
///     verbosity: Verbosity::Quiet,
///     ..TrainerConfig::new(Task::Classification)
/// };
/// let fit = Trainer::new(config, device.clone())?.fit(model, &train)?;
/// assert_eq!(fit.history.epochs.len(), 5);
/// let metrics = evaluate(&fit.model, &test, Task::Classification, 256, &device);
/// assert!(metrics.accuracy.unwrap() > 0.9);
/// # Ok::<(), kiln_train::TrainError>(())
/// ```
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
    /// on the loader thread that builds every batch ahead of the training step (one thread, in
    /// the epoch's order, so that runs stay reproducible). Default: none.
    #[serde(default)]
    pub augmentation: Option<Augmentation>,
    /// Seed of the split, the shuffling, the initialisation and dropout. Default: 42.
    pub seed: u64,
    /// Devices to train on data-parallel: each step gives every device its chunk of the
    /// global batch (`batch_size / devices.len()` samples; the epoch's last, partial batch
    /// chunked the same way), the same model on each, each on a thread of its own, and sums
    /// their gradients (each part's loss scaled by its share of the batch) on the first, which
    /// also validates and holds the optimiser. The first must be the device given to [`Trainer::new`];
    /// `batch_size` must split evenly. Empty or one device: that device alone. Default: empty.
    ///
    /// A step over several devices equals a one-device step over the same global batch up to
    /// floating-point rounding (the gradient sums are grouped differently), except for
    /// batch normalisation (statistics per device's part of the batch) and dropout (on a CPU
    /// backend the devices' workers draw from one generator in the order they reach it).
    #[serde(skip)]
    pub devices: Vec<Device>,
    /// What to print while training. Default: a bar on a terminal, lines otherwise.
    #[serde(skip, default = "Verbosity::auto")]
    pub verbosity: Verbosity,
    /// Measure gradients, weights and updates per parameter tensor on one training step in
    /// [`GradientProbe::EVERY`](crate::GradientProbe::EVERY), for the diagnosis of vanishing
    /// and exploding gradients and dead units ([`FitResult::gradients`]). The findings that
    /// read the history alone are made either way. Default: on.
    #[serde(default = "on")]
    pub diagnostics: bool,
    /// Module paths whose parameters do not train (Keras's `trainable = False`), such as
    /// `blocks` or `hidden.0`: no gradient, no optimiser state, their batch norms and dropouts
    /// in inference mode ([`freeze`](crate::freeze)). Default: none.
    #[serde(default)]
    pub freeze: Vec<String>,
    /// Low-rank adapters on the model's weight matrices, everything else frozen but
    /// [`LoraConfig::full`]; the fitted model comes back with them merged. Default: none.
    #[serde(default)]
    pub lora: Option<LoraConfig>,
    /// Learn from a teacher's softened outputs beside the labels (classification only), the
    /// teacher given to [`Trainer::with_teacher`]. Default: none.
    #[serde(default)]
    pub distillation: Option<Distillation>,
    /// The epoch from which the parts in `freeze` train after all, at a fraction of the rate
    /// (Lightning's `BackboneFinetuning`; see [`Unfreeze`]). Not under MPI. Default: none.
    #[serde(default)]
    pub unfreeze_at: Option<Unfreeze>,
    /// Pre-train on unlabelled token data (BERT's masked-language objective): every training
    /// and validation batch is masked as [`MaskedLm`] says, and the model (such as
    /// `kiln_transformer::MaskedLanguageModel`) predicts the hidden tokens; loss and accuracy
    /// are over those. The data's samples are texts of token ids, their labels (if any)
    /// unused. Default: none.
    #[serde(default)]
    pub masked_lm: Option<MaskedLm>,
    /// The number format of the models' matrix products, forward and backward.
    /// [`Precision::Bf16`], on a CPU backend: kiln's fused kernels (dense, convolution, LSTM,
    /// attention) round their operands to bfloat16 and sum in float32, on AMX tiles where the
    /// CPU has them (PyTorch's `autocast("cpu", dtype=torch.bfloat16)`, Keras's
    /// `mixed_bfloat16`), and so do the products kiln's layers ask of Burn (a GRU's, an LSTM's
    /// given sequence lengths: [`kiln_common::autocast`]); a user's layer that calls Burn's
    /// `Linear` directly stays float32. [`Precision::F16`], on a GPU backend whose adapter
    /// has float16 shaders: the layers' products take float16 operands and give float32
    /// results ([`kiln_common::autocast`]), and the loss is scaled dynamically ([`LossScaler`]: each
    /// epoch's record keeps `loss_scale` and `skipped_steps`; Keras's `mixed_float16`,
    /// PyTorch's `autocast("cuda")` with a `GradScaler`). Weights, optimiser state, biases,
    /// activations, losses, softmax and normalisation stay float32. Set process-wide for the
    /// run and restored after (see [`kiln_common::precision`](mod@kiln_common::precision)); a
    /// device that cannot compute the precision is refused, and a run in which no product ran
    /// in it (a model whose layers are all Burn's own) fails rather than claim it. Default:
    /// [`Precision::F32`].
    #[serde(default)]
    pub precision: Precision,
}

fn on() -> bool {
    true
}

impl TrainerConfig {
    /// The learning rate a run takes when given none: 0.001 (Adam's usual rate, Keras's).
    pub const DEFAULT_LR: f64 = 1e-3;

    /// Errs when training `model` would not fit in this machine's memory: its parameters,
    /// their gradients and the optimiser's state, counted from the parameters' shapes before
    /// any is allocated ([`crate::check_memory`]).
    pub fn check_memory<M: Model>(&self, model: &M) -> Result<(), TrainError> {
        let n = burn::module::Module::num_params(model);
        crate::check_memory(
            n,
            crate::training_bytes(n, &self.optimizer),
            "training needs",
            None,
        )
    }

    /// The defaults above, for `task`.
    pub fn new(task: Task) -> Self {
        Self {
            task,
            epochs: 20,
            batch_size: 32,
            lr: Self::DEFAULT_LR,
            optimizer: OptimizerConfig::default(),
            lr_schedule: LrSchedule::Constant,
            validation_split: 0.2,
            early_stopping: None,
            augmentation: None,
            seed: 42,
            devices: Vec::new(),
            verbosity: Verbosity::auto(),
            diagnostics: true,
            freeze: Vec::new(),
            lora: None,
            distillation: None,
            unfreeze_at: None,
            masked_lm: None,
            precision: Precision::F32,
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
        if self.devices.len() > 1 {
            Replicas::new(self.devices.clone(), self.batch_size)?;
        }
        if let Some(lora) = &self.lora {
            lora.check()?;
        }
        if let Some(unfreeze) = &self.unfreeze_at {
            unfreeze.check(&self.freeze)?;
            if self.lora.is_some() {
                return Err(TrainError::option(
                    "unfreeze_at",
                    "LoRA trains adapters on a frozen model: there is nothing to unfreeze",
                ));
            }
        }
        if let Some(distillation) = &self.distillation {
            distillation.check()?;
            if self.task != Task::Classification {
                return Err(TrainError::option(
                    "distillation",
                    "learns from a teacher's class probabilities: it needs a classification task",
                ));
            }
        }
        if let Some(masking) = &self.masked_lm {
            masking.check()?;
            if self.task != Task::Classification {
                return Err(TrainError::option(
                    "masked_lm",
                    "predicts tokens, classes of the vocabulary: it needs a classification task",
                ));
            }
            if self.distillation.is_some() || self.augmentation.is_some() {
                return Err(TrainError::option(
                    "masked_lm",
                    "pre-trains on text alone: no teacher, no image augmentation",
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
    /// restores them, else the last epoch's; with [`TrainerConfig::lora`], the adapters merged.
    pub model: M,
    /// Metrics of every epoch run.
    pub history: History,
    /// The epoch (from 1) with the best monitored value (`val_loss` without early stopping).
    pub best_epoch: usize,
    /// Epochs trained (fewer than `epochs` after early stopping).
    pub epochs_run: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Wall time of training, validation included.
    pub train_seconds: f64,
    /// Training samples processed per second of `train_seconds`.
    pub samples_per_sec: f64,
    /// What the run's history and gradients say is wrong ([`crate::diagnose`]).
    pub diagnosis: Diagnosis,
    /// The gradient, weight and update statistics of every epoch trained by this `fit` (none
    /// with [`TrainerConfig::diagnostics`] off).
    pub gradients: Vec<EpochGradients>,
}

/// Samples per teacher forward pass when its logits are tabled before training.
const TEACHER_BATCH: usize = 256;

/// kiln's trainer: Keras's `fit` on top of burn-train.
pub struct Trainer {
    config: TrainerConfig,
    device: Device,
    checkpoints: Option<CheckpointDir>,
    save_best: Option<PathBuf>,
    /// Where to write TensorBoard event files, if anywhere.
    tensorboard: Option<PathBuf>,
    resume: bool,
    /// With `resume`: train on past an early stop (Keras's `fit` called again).
    train_on: bool,
    /// Users' metric loggers, handed to burn-train by the next `fit`.
    loggers: Mutex<Vec<(String, Box<dyn MetricLogger>)>>,
    /// Users' metrics, computed by the next `fit`.
    metrics: Mutex<Vec<UserMetric>>,
    /// Users' callbacks, run by the next `fit`.
    callbacks: Mutex<Vec<Box<dyn Callback>>>,
    /// The model a student is distilled from ([`TrainerConfig::distillation`]).
    teacher: Option<Teacher>,
    /// The job this process is a rank of, for data-parallel training over processes.
    ranks: Option<Arc<dyn Collective>>,
}

impl Trainer {
    /// A trainer running on `device` (plain; the trainer adds autodiff for training steps).
    pub fn new(config: TrainerConfig, device: Device) -> Result<Self, TrainError> {
        config.check()?;
        for device in std::iter::once(&device).chain(&config.devices) {
            check_precision(config.precision, device)?;
        }
        if config.devices.first().is_some_and(|first| *first != device) {
            return Err(TrainError::option(
                "devices",
                format!(
                    "the first device ({:?}) must be the trainer's own ({device:?})",
                    config.devices[0]
                ),
            ));
        }
        Ok(Self {
            config,
            device,
            checkpoints: None,
            save_best: None,
            tensorboard: None,
            resume: false,
            train_on: false,
            loggers: Mutex::default(),
            metrics: Mutex::default(),
            callbacks: Mutex::default(),
            teacher: None,
            ranks: None,
        })
    }

    /// The trainer's configuration.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// Trains as one rank of a job of several processes (`mpirun -np N`; see
    /// `kiln_train::mpi::MpiWorld`, cargo feature `mpi`): every rank must build the same model
    /// from the same seed and call `fit` with the same data and configuration; each reads its
    /// part of every global batch of `batch_size` (which must split evenly over the ranks, or
    /// over every rank's [`TrainerConfig::devices`] when each rank has several: each device of
    /// each rank a part), the ranks sum their gradients each step and take the same optimiser
    /// step, and every rank's history is the whole job's. Validation runs whole on every rank. Give checkpoints
    /// to rank 0 alone (or to each rank a directory of its own). A job of one rank trains as
    /// without it.
    pub fn with_ranks(mut self, ranks: Arc<dyn Collective>) -> Self {
        self.ranks = Some(ranks);
        self
    }

    /// Distils the fitted model from `teacher`, a trained classifier of the same data (any
    /// model family: a CNN teaching an MLP), with [`TrainerConfig::distillation`]'s temperature
    /// and weight (Keras's `Distiller`). The teacher runs in inference mode on this trainer's
    /// device, on each training batch's inputs as the student sees them; validation and
    /// evaluation are on the labels alone.
    pub fn with_teacher<T: Model>(mut self, teacher: T) -> Self {
        self.teacher = Some(Teacher::new(teacher, &self.device));
        self
    }

    /// Writes a checkpoint into `dir` at the end of every epoch (see [`CheckpointDir`]): the
    /// weights, the optimiser's state, the history and everything else needed to resume.
    pub fn with_checkpoints(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoints = Some(CheckpointDir::new(dir));
        self
    }

    /// Keeps the best epoch's weights at `path` (Keras's `ModelCheckpoint(save_best_only)`),
    /// rewritten whenever an epoch improves on the best: early stopping's monitor, else the
    /// validation loss.
    pub fn with_save_best(mut self, path: impl Into<PathBuf>) -> Self {
        self.save_best = Some(path.into());
        self
    }

    /// Writes TensorBoard event files into `dir` (a new file per `fit`): every epoch's losses,
    /// accuracies, learning rate and users' metrics, and with [`TrainerConfig::diagnostics`]
    /// each parameter tensor's gradient norm and update ratio, and histograms of its weights
    /// (at the epoch's end) and gradients. `tensorboard --logdir DIR` shows them.
    pub fn with_tensorboard(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tensorboard = Some(dir.into());
        self
    }

    /// Adds a burn-train metric logger (for an experiment tracker, say) to the next `fit`: it
    /// gets the metric values of every epoch, and during an epoch one update per group of
    /// steps (steps reach burn-train's event thread together, at most 32 steps or 50 ms apart;
    /// metrics themselves see every step). A logger that panics ends the run with an error
    /// naming it.
    pub fn with_metric_logger(self, name: &str, logger: impl MetricLogger + 'static) -> Self {
        self.loggers
            .lock()
            .expect("loggers lock")
            .push((name.to_string(), Box::new(logger)));
        self
    }

    /// Computes `metric` on the training and validation batches of the next `fit`, beside the
    /// loss and accuracy; its epoch values go into the history (`NAME` and `val_NAME`, in
    /// [`EpochRecord::metrics`](crate::EpochRecord::metrics) and `history.csv`) and the progress
    /// display. Any burn-train numeric metric whose input the training step adapts to (see
    /// [`StepOutput`](crate::StepOutput)) fits: burn-train's `TopKAccuracyMetric`,
    /// `PrecisionMetric`, `RecallMetric`, `FBetaScoreMetric`, kiln's [`EpochMetric`] over a
    /// [`BatchSum`] of your own, or your own `Metric` on [`BatchHits`] or
    /// [`BatchLoss`].
    ///
    /// [`EpochMetric`]: crate::EpochMetric
    /// [`BatchSum`]: crate::BatchSum
    /// [`BatchHits`]: crate::BatchHits
    /// [`BatchLoss`]: crate::BatchLoss
    pub fn with_metric<Me>(self, metric: Me) -> Self
    where
        Me: Metric + Numeric + 'static,
        StepOutput: Adaptor<Me::Input>,
    {
        self.metrics
            .lock()
            .expect("metrics lock")
            .push(UserMetric::new(metric));
        self
    }

    /// Runs `callback` at the end of every epoch of the next `fit`, with the history so far
    /// (Keras's `Callback.on_epoch_end`); see [`Callback`].
    pub fn with_callback(self, callback: impl Callback + 'static) -> Self {
        self.callbacks
            .lock()
            .expect("callbacks lock")
            .push(Box::new(callback));
        self
    }

    /// Continues from the latest checkpoint in the checkpoint directory instead of starting
    /// afresh: with the same configuration and data, the run ends exactly as an uninterrupted
    /// one would (same history, same weights).
    pub fn resuming(mut self) -> Self {
        self.resume = true;
        self
    }

    /// Resumes (as [`resuming`](Self::resuming)) a run that early stopping had ended, and
    /// trains it on to `epochs`, as calling Keras's `fit` again does: the run goes on from its
    /// last checkpoint, early stopping keeps the best value seen and starts its patience afresh.
    /// (Plain `resuming` of such a run trains nothing: the run it continues had ended.)
    pub fn resuming_past_early_stop(mut self) -> Self {
        self.resume = true;
        self.train_on = true;
        self
    }

    /// Trains `model` on `data`, holding out `validation_split` of it for validation: a seeded
    /// random split, stratified for classification. Fit scalers on what trains, not on `data`
    /// (else validation scores are optimistic): split first with
    /// [`split`](kiln_datasets::split) and call [`fit_with_validation`](Self::fit_with_validation).
    /// Windows of one series overlap, so a random split makes validation nearly in-sample: give
    /// them to `fit_with_validation` with [`Windows::valid`](kiln_datasets::Windows::valid),
    /// which lies after the training windows in time.
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
        config.check_memory(&model)?;
        self.check_fit(&model, &train)?;
        self.check_fit(&model, &valid)?;
        self.check_teacher(&train)?;
        if config.augmentation.is_some() && train.sample_shape.len() != 3 {
            return Err(TrainError::option(
                "augmentation",
                format!(
                    "needs image samples [channels, height, width], got {:?}",
                    train.sample_shape
                ),
            ));
        }
        // Adapters before the checkpoint: a resumed run's record holds their factors.
        let model = match &config.lora {
            Some(lora) => lora.apply(model)?,
            None => model,
        };
        let fingerprint = self.fingerprint(&train, &valid);
        let staging = Arc::new(Staging::default());
        let (mut model, resumed) = self.load_checkpoint(model, fingerprint, &staging)?;
        let done = resumed.as_ref().map_or(0, |l| l.state.epoch);
        if resumed.is_none() {
            model = model.map(&mut SeededIds {
                seed: config.seed,
                next: 0,
            });
        }
        // A run resumed at or past the unfreezing epoch has nothing frozen any more.
        let unfrozen = config.unfreeze_at.is_some_and(|u| done + 1 >= u.epoch);
        let model = match unfrozen {
            true => model,
            false => crate::freeze(model, &config.freeze)?,
        };

        let train_device = self.device.clone().autodiff();
        let replicas = Replicas::new(
            match config.devices.len() {
                0 => vec![self.device.clone()],
                _ => config.devices.clone(),
            },
            config.batch_size,
        )?;
        // Several devices, or the ranks of a job, train in kiln's loop as replicas of one
        // global batch.
        let ranks = match &self.ranks {
            Some(comm) if comm.size() > 1 => {
                if config.unfreeze_at.is_some() {
                    return Err(TrainError::option(
                        "unfreeze_at",
                        "rebuilds the learner mid-run, which the ranks of a job do not do together",
                    ));
                }
                Some(comm.clone())
            }
            _ => (replicas.count() > 1).then(|| Arc::new(OneProcess) as Arc<dyn Collective>),
        }
        .map(|comm| Ranks::new(comm, replicas.devices.clone(), config.batch_size))
        .transpose()?;
        // The ranks of a job are laid out as devices are: each takes its chunk of every batch.
        let layout = ranks.as_ref().map_or(&replicas, |r| &r.replicas);
        let order = EpochOrder::new(train.len(), config.seed).with_replicas(layout.clone());
        // Made first, so that the loaders report to it too (an image file that cannot be read).
        let interrupter = Interrupter::new();
        let failures = Failures::new(interrupter.clone());
        let mut batcher =
            DataBatcher::<M::Input>::new(train.clone()).with_failures(failures.clone());
        if let Some(shares) = order.shares() {
            batcher = batcher.with_shares(shares);
        }
        if let Some(augmentation) = &config.augmentation {
            batcher = batcher.with_augmentation(augmentation.clone());
        }
        if let Some(masking) = config.masked_lm {
            batcher = batcher.with_masking(masking);
        }
        if let Some(teacher) = &self.teacher {
            // Inputs that never change get the teacher's logits once, not once per epoch.
            batcher = batcher.with_teacher(match config.augmentation {
                Some(_) => TeacherOutputs::Live(teacher.clone()),
                None => TeacherOutputs::table(teacher, &train, TEACHER_BATCH)?,
            });
        }
        // Batches (and their augmentation) are built on a loader thread, ahead of the step.
        let builder = DataLoaderBuilder::new(batcher)
            .batch_size(layout.device_batch)
            .set_device(train_device.clone());
        let loader_train = Prefetch::new(match &ranks {
            Some(r) => builder.build(r.slice(order.clone())),
            None => builder.build(order.clone()),
        });
        let valid_started = Arc::new(Mutex::new(None));
        let loader_valid = Prefetch::new(
            DataLoaderBuilder::new({
                let batcher =
                    DataBatcher::<M::Input>::new(valid.clone()).with_failures(failures.clone());
                match config.masked_lm {
                    Some(masking) => batcher.with_masking(masking),
                    None => batcher,
                }
            })
            .batch_size(config.batch_size)
            .set_device(self.device.clone())
            .build(ValidIndices {
                len: valid.len(),
                started: valid_started.clone(),
            }),
        );

        let steps_per_epoch = layout.steps_per_epoch(train.len());
        let plateau = matches!(config.lr_schedule, LrSchedule::Plateau { .. }).then(|| {
            resumed
                .as_ref()
                .and_then(|l| l.state.plateau.clone())
                .unwrap_or_else(|| Plateau::new(config.lr))
        });
        let shared_lr = SharedLr::new(plateau.as_ref().map_or(config.lr, |p| p.lr));
        let scheduler = EpochLrScheduler {
            schedule: config.lr_schedule,
            lr: config.lr,
            epochs: config.epochs,
            steps_per_epoch,
            step: done * steps_per_epoch,
            plateau_lr: shared_lr.clone(),
        };
        let probe = config.diagnostics.then(|| {
            let probe = GradientProbe::new(GradientProbe::EVERY, self.tensorboard.is_some());
            Arc::new(probe.with_units(&train))
        });
        let tensorboard = self
            .tensorboard
            .as_deref()
            .map(TensorBoardWriter::create)
            .transpose()?;
        // f16's loss scale, from where a resumed run's checkpoint left it.
        let loss_scale = (config.precision == Precision::F16).then(|| {
            let state = resumed.as_ref().and_then(|l| l.state.loss_scale);
            Arc::new(LossScaler::new(state.unwrap_or_default()))
        });
        let supervised = Supervised {
            model: model.train(),
            task: config.task,
            probe: probe.clone(),
            distillation: config.distillation,
            loss_scale: loss_scale.clone(),
        };
        let profile = DataProfile::for_model::<M>(&train);
        let diagnoser = Diagnoser::new(Some(profile), config.verbosity).with_probe(probe);
        let gradients = diagnoser.gradients();
        // The frozen parts' rate, for when they train: one schedule, scaled.
        let rates = |scheduler: EpochLrScheduler| -> Result<ModuleLrScheduler, TrainError> {
            let mut rates = ModuleLrScheduler::new(scheduler.clone());
            if let Some(unfreeze) = config.unfreeze_at {
                let learner_paths: Vec<String> =
                    config.freeze.iter().map(|p| format!("model.{p}")).collect();
                rates = rates.with_group(
                    crate::transfer::init::param_group(&learner_paths)?,
                    Scaled {
                        inner: scheduler,
                        ratio: unfreeze.lr_ratio,
                    },
                );
            }
            Ok(rates)
        };
        let mut strategy = GroupedSingleDevice::new(train_device.clone());
        if let Some(unfreeze) = config.unfreeze_at.filter(|_| !unfrozen) {
            let group = crate::transfer::init::param_group(&config.freeze)?;
            let optimizer = config.optimizer.clone();
            let scheduler = EpochLrScheduler {
                step: (unfreeze.epoch - 1) * steps_per_epoch,
                ..scheduler.clone()
            };
            let rates = rates(scheduler)?;
            strategy = strategy.unfreezing_at(
                unfreeze.epoch,
                Box::new(move |supervised: Supervised<M>| {
                    let supervised = Supervised {
                        model: supervised.model.unfreeze_group(group.clone()),
                        ..supervised
                    };
                    Learner::new(supervised, optimizer.build(), rates.clone())
                }),
            );
        }
        if let Some(ranks) = ranks {
            strategy = strategy.with_ranks(ranks, steps_per_epoch, train.len());
        }
        if let Some(scaler) = &loss_scale {
            strategy = strategy.with_loss_scale(scaler.clone());
        }
        let learner = Learner::new(supervised, config.optimizer.build(), rates(scheduler)?);

        let scratch = std::env::temp_dir().join(format!("kiln-train-{}", std::process::id()));
        let mut training = SupervisedTraining::new(&scratch, loader_train, loader_valid)
            .with_interrupter(interrupter)
            .with_application_logger(None)
            .with_metric_logger(HistoryLogger::default())
            .metric_train_numeric(PerStep(EpochLoss::new()))
            .metric_valid_numeric(PerStep(EpochLoss::new()))
            .num_epochs(config.epochs)
            .with_training_strategy(TrainingStrategy::Custom(Arc::new(strategy)));
        training = training.renderer(Box::new(ProgressRenderer::new(
            config.verbosity,
            failures.clone(),
        )));
        for (name, logger) in self.loggers.lock().expect("loggers lock").drain(..) {
            training = training.with_metric_logger(GuardedLogger {
                name,
                inner: logger,
                failures: failures.clone(),
            });
        }
        let guard = TerminateOnNan::new(order.epoch.clone(), training.interrupter());
        let non_finite = guard.found.clone();
        training = training.metric_train(PerStep(guard));
        if config.task == Task::Classification {
            training = training
                .metric_train_numeric(PerStep(EpochAccuracy::new()))
                .metric_valid_numeric(PerStep(EpochAccuracy::new()));
        }
        let mut metric_names = Vec::new();
        for metric in self.metrics.lock().expect("metrics lock").drain(..) {
            metric_names.push(metric.name());
            training = training
                .metric_train_numeric(PerStep(metric.clone()))
                .metric_valid_numeric(PerStep(metric));
        }
        let part = |part| Staged {
            part,
            staging: staging.clone(),
        };
        let model_part = ModelPart {
            staging: staging.clone(),
            template: Mutex::new(learner.model()),
        };
        training = training
            .with_custom_checkpointers(model_part, part(PARTS[1]), part(PARTS[2]))
            .with_checkpointing_strategy(EveryEpoch);

        let best_rule = config.early_stopping.clone().unwrap_or(EarlyStopping {
            monitor: Monitor::ValLoss,
            min_delta: 0.0,
            patience: usize::MAX,
            restore_best_weights: false,
        });
        let mut state = RunState {
            rebuild_at: config.unfreeze_at.filter(|_| !unfrozen).map(|u| u.epoch),
            schedule: config.lr_schedule,
            base_lr: config.lr,
            epochs: config.epochs,
            early_stopping: config.early_stopping.clone(),
            best_rule,
            tracker: Default::default(),
            plateau,
            loss_scale,
            lr: shared_lr,
            history: History::default(),
            best: None,
            staging,
            checkpoints: self.checkpoints.clone(),
            save_best: self.save_best.clone(),
            order,
            devices: replicas
                .devices
                .iter()
                .flat_map(|d| [d.clone(), d.clone().autodiff()])
                .collect(),
            seed: config.seed,
            fingerprint,
            clock: Instant::now(),
            valid_started,
            stopped: false,
            metric_names,
            diagnoser,
            tensorboard,
            callbacks: std::mem::take(&mut *self.callbacks.lock().expect("callbacks lock")),
            error: None,
        };
        if let Some(loaded) = resumed {
            state.history = loaded.state.history;
            state.tracker = loaded.state.early_stopping;
            state.stopped = loaded.state.stopped;
            if state.stopped && self.train_on {
                state.stopped = false;
                state.tracker.wait = 0;
                state.tracker.stopped_at = None;
            }
            state.best = loaded
                .best
                .map(|r| r.into_bytes())
                .transpose()
                .map_err(|e| {
                    TrainError::Training(format!("reading the checkpoint's best weights: {e}"))
                })?;
            training = training.checkpoint(done);
            if state.stopped {
                // Early stopping had ended the run: nothing is left to train.
                training = training.num_epochs(done);
            }
        }
        state.start_epoch(done + 1);
        let state = Arc::new(Mutex::new(state));
        training = training.early_stopping(EpochEnd {
            state: state.clone(),
        });

        let start = Instant::now();
        let products = kiln_common::precision::low_precision_products();
        let result = {
            let _precision = PrecisionScope::new(config.precision);
            // Subnormal values (Adam's decaying moments) cost a microcode assist per operation:
            // flushed to zero while training (kiln_common::denormals says why).
            let _denormals = FlushDenormals::new();
            training.launch(learner)
        };
        let train_seconds = start.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&scratch);
        let mut state = Arc::try_unwrap(state)
            .map_err(|_| TrainError::Training("the epoch-end hook outlived the run".into()))?
            .into_inner()
            .expect("run state lock");
        if let Some(found) = *non_finite.lock().expect("guard lock") {
            let lr = state.lr_of(found.epoch);
            let gradients = state.diagnoser.gradients_so_far(found.epoch);
            let diagnosis = crate::diagnosis::diagnose::diagnose_non_finite(
                &state.history,
                Some(&profile),
                &gradients,
                found.epoch,
                found.loss,
                lr,
            );
            return Err(TrainError::NonFiniteLoss {
                epoch: found.epoch,
                batch: found.batch,
                loss: found.loss,
                lr,
                history: state.history,
                diagnosis: Box::new(diagnosis),
                gradients,
            });
        }
        if let Some(error) = state.error.take() {
            return Err(error);
        }
        match failures.first() {
            Some(Failure::OutputClosed) => {
                return Err(TrainError::OutputClosed {
                    history: state.history,
                });
            }
            Some(Failure::Component(what)) => return Err(TrainError::Component(what)),
            None => {}
        }
        if let Some(error) = result.error {
            return Err(TrainError::Training(error.to_string()));
        }
        if config.precision != Precision::F32
            && state.history.epochs.len() > done
            && kiln_common::precision::low_precision_products() == products
        {
            return Err(TrainError::option(
                "precision",
                format!(
                    "{} was asked, but no product of this model ran in it (its layers are all \
                     Burn's own, such as a GRU's): the run was f32; train it in f32",
                    config.precision
                ),
            ));
        }
        let mut trained = result.model;

        let history = state.history.clone();
        let epochs_run = history.epochs.len();
        let tracker = &state.tracker;
        let stopped_early = tracker.stopped_at.is_some_and(|e| e < config.epochs);
        let best_epoch = tracker.best.map_or(epochs_run, |(epoch, _)| epoch);
        let restored = config
            .early_stopping
            .as_ref()
            .is_some_and(|r| r.restore_best_weights)
            && best_epoch != epochs_run;
        if restored && let Some(record) = state.best_record()? {
            trained.model = trained.model.try_load_record(record).map_err(|e| {
                TrainError::Training(format!("restoring the weights of epoch {best_epoch}: {e}"))
            })?;
        }
        let trained_now = epochs_run - done.min(epochs_run);
        let gradients = std::mem::take(&mut *gradients.lock().expect("gradients lock"));
        let mut diagnosis = diagnose(&history, Some(&profile), &gradients);
        if restored {
            diagnosis = diagnosis.kept_epoch(best_epoch);
        }
        Ok(FitResult {
            diagnosis,
            gradients,
            model: match config.lora {
                Some(_) => merge_lora(trained.model.valid()),
                None => trained.model.valid(),
            },
            best_epoch,
            epochs_run,
            stopped_early,
            train_seconds,
            samples_per_sec: (train.len() * trained_now) as f64 / train_seconds.max(1e-9),
            history,
        })
    }

    /// With [`resuming`](Self::resuming), reads the latest checkpoint, loads its weights into
    /// `model` and stages its records for burn-train's resume. burn-train loads records with
    /// calls that panic on a mismatch: they are checked here first, so that a foreign checkpoint
    /// is an error naming its file.
    fn load_checkpoint<M: Model>(
        &self,
        model: M,
        fingerprint: u32,
        staging: &Staging,
    ) -> Result<(M, Option<Loaded>), TrainError> {
        if let Some(dir) = &self.checkpoints {
            dir.remove_stale();
        }
        let dir = match (&self.checkpoints, self.resume) {
            (_, false) => return Ok((model, None)),
            (Some(dir), true) => dir,
            (None, true) => {
                return Err(TrainError::option(
                    "resume",
                    "needs a checkpoint directory (Trainer::with_checkpoints)",
                ));
            }
        };
        let loaded = dir.load(fingerprint)?;
        let record = ModuleRecord::from_bytes(loaded.parts[0].clone())
            .map_err(|e| dir.record_error("model.bpk", e.to_string()))?;
        let model = model
            .try_load_record(record)
            .map_err(|e| dir.record_error("model.bpk", format!("does not fit the model: {e}")))?;
        OptimizerRecord::from_bytes(loaded.parts[1].clone())
            .map_err(|e| dir.record_error("optim.bpk", e.to_string()))?;
        LrSchedulerRecord::from_bytes(loaded.parts[2].clone())
            .map_err(|e| dir.record_error("scheduler.bpk", e.to_string()))?;
        staging.set_restore(loaded.parts.clone());
        Ok((model, Some(loaded)))
    }

    /// A checksum of what shapes the training: the options (but `epochs`, which a resumed run
    /// may raise) and the data's sizes.
    fn fingerprint(&self, train: &Data, valid: &Data) -> u32 {
        let options = TrainerConfig {
            epochs: 0,
            ..self.config.clone()
        };
        let text = format!(
            "{}|{}|{}|{:?}",
            serde_json::to_string(&options).expect("config serialises"),
            train.len(),
            valid.len(),
            train.sample_shape
        );
        crc32fast::hash(text.as_bytes())
    }

    /// A teacher comes with [`TrainerConfig::distillation`], and outputs one logit per class
    /// of `train` (or one binary logit for two).
    fn check_teacher(&self, train: &Data) -> Result<(), TrainError> {
        let teacher = match (&self.teacher, &self.config.distillation) {
            (None, None) => return Ok(()),
            (Some(teacher), Some(_)) => teacher,
            (None, Some(_)) => {
                return Err(TrainError::option(
                    "distillation",
                    "needs a teacher: give one to Trainer::with_teacher",
                ));
            }
            (Some(_), None) => {
                return Err(TrainError::option(
                    "distillation",
                    "a teacher was given but no distillation settings (temperature, alpha)",
                ));
            }
        };
        let classes = match &train.y {
            Targets::Classes { names, .. } => names.len(),
            _ => unreachable!("check() and check_fit() ask for classes"),
        };
        let sample = train.subset(&[0]).in_memory()?;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            teacher
                .logits(sample.x.clone(), 1, &sample.sample_shape, &self.device)
                .dims()[1]
        }));
        let got = outcome.map_err(|_| {
            TrainError::option(
                "distillation",
                format!(
                    "the teacher cannot read these samples of shape {:?}",
                    train.sample_shape
                ),
            )
        })?;
        if got != classes && !(classes == 2 && got == 1) {
            return Err(TrainError::option(
                "distillation",
                format!("the teacher has {got} outputs for {classes} classes"),
            ));
        }
        Ok(())
    }

    /// Checks that the data suits the task and the model, by running the model on one sample,
    /// so that a mismatch is a clear error rather than a panic deep inside a training step.
    fn check_fit<M: Model>(&self, model: &M, data: &Data) -> Result<(), TrainError> {
        let task = self.config.task;
        let (expected, what) = match (&data.y, task, &self.config.masked_lm) {
            (_, _, Some(masking)) => (masking.vocab_size, "tokens of the vocabulary"),
            (Targets::Classes { names, .. }, Task::Classification, None) => {
                (names.len(), "classes")
            }
            (Targets::Values { names, .. }, Task::Regression, None) => {
                (names.len(), "target columns")
            }
            (Targets::Classes { .. }, Task::Regression, None) => {
                return Err(TrainError::TaskMismatch {
                    task: "regression",
                    targets: "classes",
                });
            }
            (Targets::Unlabelled { .. }, task, None) => {
                return Err(TrainError::TaskMismatch {
                    task: task.name(),
                    targets: "missing (unlabelled data)",
                });
            }
            (Targets::Values { .. }, Task::Classification, None) => {
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
        let sample = data.subset(&[0]).in_memory()?;
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
}

/// Refuses a precision that `device` cannot compute: bf16 is kiln's fused CPU kernels', f16 a
/// GPU's with float16 shaders.
fn check_precision(precision: Precision, device: &Device) -> Result<(), TrainError> {
    let on_host = kiln_common::kernel::on_host(device);
    let why = match precision {
        Precision::Bf16 if !on_host => format!(
            "bf16 runs in kiln's fused CPU kernels, and {device:?} is not a CPU backend's \
             device: train it in f16 (float16, for GPUs) or f32"
        ),
        Precision::F16 if on_host => format!(
            "f16 is for the GPU backends (wgpu: `--device wgpu`), and {device:?} is a CPU \
             backend's device: train it in bf16 (bfloat16, kiln's fused CPU kernels) or f32"
        ),
        Precision::F16 if !device.supports_dtype(burn::tensor::DType::F16) => format!(
            "{device:?} cannot compute in float16 (its adapter has no f16 shaders): train it \
             in f32"
        ),
        _ => return Ok(()),
    };
    Err(TrainError::option("precision", why))
}
