//! kiln's shared trainer.
//!
//! One [`Trainer`] fits every kiln model: it builds on burn-train's `SupervisedTraining` and
//! `Learner` and adds what Keras users expect and burn-train lacks: Keras-style
//! [`EarlyStopping`] (with `min_delta` and `restore_best_weights`), epoch-based LR schedules
//! (including inverse-time decay), validation splits, a [`History`], a progress display, and
//! run records (`config.json`, `history.csv`, `metrics.json`, weights).

#![warn(missing_docs)]

mod augment;
mod batch;
mod callback;
mod checkpoint;
mod diagnose;
mod early_stopping;
mod epoch_end;
mod error;
mod evaluate;
mod failures;
mod gradients;
mod history;
mod lora;
mod lr_find;
mod memory;
mod metrics;
mod model;
mod nan_guard;
mod optimizer;
mod plot;
mod prefetch;
mod progress;
mod repair;
mod replicas;
mod report;
mod run;
mod schedule;
mod steps;
mod strategy;
mod tensorboard;
mod trainer;
mod transfer;
mod user_metric;
mod weights;

pub use augment::{Augmentation, CustomTransforms, ImageTransform, Transform, flip_horizontal};
pub use batch::{Batch, BatchInput, BatchTargets, DataBatcher, make_batch};
pub use callback::{Callback, CsvLogger};
pub use checkpoint::CheckpointDir;
pub use diagnose::{
    DataProfile, Diagnoser, Diagnosis, EpochGradients, Finding, FindingKind, GRADIENTS_CSV_HEADER,
    diagnose, gradients_from_csv, gradients_to_csv,
};
pub use early_stopping::{EarlyStopping, Monitor};
pub use epoch_end::Plateau;
pub use error::TrainError;
pub use evaluate::{Metrics, evaluate, predict};
pub use gradients::{
    GradientProbe, Histogram, PROBE_SAMPLES, ParamHistograms, ParamStats, SATURATED_OBSERVATIONS,
    SATURATION_SLOPE, UnitStats,
};
pub use history::{EpochRecord, History};
pub use lora::{LoraConfig, merge_lora};
pub use lr_find::{LrFindResult, LrFinder};
pub use memory::{
    available_memory, check_memory, checkpoint_bytes, human_bytes, optimizer_slots, training_bytes,
    weight_bytes,
};
pub use metrics::{
    BatchHits, BatchLoss, BatchSum, EpochAccuracy, EpochLoss, EpochMetric, HitSum, LossSum,
};
pub use model::{Model, StepOutput, Supervised, Task};
pub use optimizer::{GradientClip, OptimizerConfig, OptimizerKind};
pub use plot::{PlotCurve, PlotRun, plot_confusion, plot_curve, plot_gradients, plot_histories};
pub use progress::Verbosity;
/// The random-number crate of [`ImageTransform`]'s generator, re-exported so that a transform of
/// your own uses the same version (`use kiln_train::rand::RngExt;`).
pub use rand;
pub use repair::{Attempt, Knobs, MAX_REPAIRS, Repair, auto_fix, next_repair};
pub use report::ClassReport;
pub use run::{RunDir, write_atomic};
pub use schedule::LrSchedule;
pub use steps::StepOutputs;
pub use tensorboard::{TensorBoardWriter, masked_crc32c, read_records};
pub use trainer::{FitResult, Trainer, TrainerConfig};
pub use transfer::{InitReport, freeze, init_from, param_paths};
pub use weights::{export_safetensors, import_safetensors};
