//! kiln's shared trainer.
//!
//! One [`Trainer`] fits every kiln model: it builds on burn-train's `SupervisedTraining` and
//! `Learner` and adds what Keras users expect and burn-train lacks: Keras-style
//! [`EarlyStopping`] (with `min_delta` and `restore_best_weights`), epoch-based LR schedules
//! (including inverse-time decay), validation splits, a [`History`], a progress display, and
//! run records (`config.json`, `history.csv`, `metrics.json`, weights).

#![warn(missing_docs)]

// The folders follow the trainer's structure: `fit` is the training loop and what runs inside it
// (burn-train's learner, kiln's strategy and steps, the devices' shares, the progress display);
// `data` builds the batches; `epoch_end` is what happens after each epoch (history, early
// stopping, schedules, callbacks, checkpoints); `records` are the run's files and pictures;
// `diagnosis` reads a run for what went wrong; `transfer` starts a model from trained weights.
mod data;
mod diagnosis;
mod epoch_end;
mod error;
mod evaluate;
mod fit;
mod lr_find;
mod memory;
mod metrics;
mod optimizer;
mod records;
mod transfer;
mod user_metric;

pub use data::augment::{
    Augmentation, CustomTransforms, ImageTransform, Transform, flip_horizontal,
};
pub use data::batch::{Batch, BatchInput, BatchTargets, DataBatcher, make_batch};
pub use data::masking::MaskedLm;
pub use diagnosis::diagnose::{
    DataProfile, Diagnoser, Diagnosis, EpochGradients, Finding, FindingKind, GRADIENTS_CSV_HEADER,
    diagnose, gradients_from_csv, gradients_to_csv,
};
pub use diagnosis::gradients::{
    GradientProbe, Histogram, PROBE_SAMPLES, ParamHistograms, ParamStats, SATURATED_OBSERVATIONS,
    SATURATION_SLOPE, UnitStats,
};
pub use diagnosis::repair::{Attempt, Knobs, MAX_REPAIRS, Repair, auto_fix, next_repair};
pub use epoch_end::callback::{Callback, CsvLogger};
pub use epoch_end::checkpoint::CheckpointDir;
pub use epoch_end::early_stopping::{EarlyStopping, Monitor};
pub use epoch_end::schedule::{LrSchedule, Plateau};
pub use error::TrainError;
pub use evaluate::{Metrics, evaluate, evaluate_masked, predict};
pub use fit::loss_scale::{LossScale, LossScaler};
pub use fit::model::{Model, Supervised, Task};
#[cfg(feature = "mpi")]
pub use fit::mpi::MpiWorld;
pub use fit::progress::Verbosity;
pub use fit::ranks::Collective;
pub use fit::steps::{StepOutput, StepOutputs};
pub use fit::trainer::{FitResult, Trainer, TrainerConfig};
pub use kiln_common::Precision;
pub use lr_find::{LrFindResult, LrFinder};
pub use memory::{
    available_memory, check_memory, checkpoint_bytes, human_bytes, optimizer_slots, training_bytes,
    weight_bytes,
};
pub use metrics::{
    BatchHits, BatchLoss, BatchSum, EpochAccuracy, EpochLoss, EpochMetric, HitSum, LossSum,
};
pub use optimizer::{GradientClip, OptimizerConfig, OptimizerKind};
/// The random-number crate of [`ImageTransform`]'s generator, re-exported so that a transform of
/// your own uses the same version (`use kiln_train::rand::RngExt;`).
pub use rand;
pub use records::files::write_atomic;
pub use records::history::{EpochRecord, History};
pub use records::plot::{
    PlotCurve, PlotRun, plot_confusion, plot_curve, plot_gradients, plot_histories,
};
pub use records::report::ClassReport;
pub use records::run::RunDir;
pub use records::study_plot::{ParamPanel, StudyPlot, TrialCurve, plot_study};
pub use records::tensorboard::{TensorBoardWriter, masked_crc32c, read_records};
pub use records::weights::{export_safetensors, import_safetensors};
pub use transfer::distill::Distillation;
pub use transfer::init::{InitReport, freeze, init_from, param_paths};
pub use transfer::lora::{LoraConfig, merge_lora};
pub use transfer::unfreeze::Unfreeze;
