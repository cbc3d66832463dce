//! kiln: Keras-level productivity for deep learning in Rust, on Burn.
//!
//! - [`fnn`]: the perceptron and the multi-layer perceptron.
//! - [`cnn`]: convolutional blocks and small image classifiers.
//! - [`lstm`]: fast LSTM and GRU layers with PyTorch's parameter layout.
//! - [`transformer`]: Transformer encoder blocks (PyTorch's layout), positional encodings,
//!   sequence classifiers for tokens or real-valued steps.
//! - [`train`]: the shared trainer (`fit`, `evaluate`, `predict`, early stopping, schedules).
//! - [`tune`]: hyperparameter search (random, grid, TPE; median and ASHA pruning; studies in
//!   SQLite or PostgreSQL).
//! - [`datasets`]: embedded, fetched and synthetic data.
//! - [`backend`]: picks the compute backend at run time among those compiled in.
//!
//! Models are plain Burn modules with no backend parameter: the same model type runs on every
//! backend compiled in (`flex`, `ndarray`, `wgpu` cargo features); the [`Device`] chooses.

#![warn(missing_docs)]

pub mod backend;

pub use burn;
pub use burn::tensor::Device;
pub use kiln_cnn as cnn;
pub use kiln_common as common;
pub use kiln_datasets as datasets;
pub use kiln_fnn as fnn;
pub use kiln_lstm as lstm;
pub use kiln_train as train;
pub use kiln_transformer as transformer;
pub use kiln_tune as tune;

/// The names most programs need.
pub mod prelude {
    pub use crate::backend::{Backend, device};
    pub use burn::module::Module;
    pub use burn::tensor::{Device, Tensor};
    pub use kiln_cnn::{Cnn, CnnConfig, ConvBlockConfig, Padding, Pool, Preset};
    pub use kiln_common::{Activation, Model, Precision, summary};
    pub use kiln_datasets::{Data, Targets};
    pub use kiln_fnn::{Mlp, MlpConfig, Perceptron, PerceptronConfig};
    pub use kiln_lstm::{SequenceModel, SequenceModelConfig};
    pub use kiln_train::{
        EarlyStopping, LrFinder, LrSchedule, Monitor, OptimizerConfig, OptimizerKind, PlotRun,
        Task, Trainer, TrainerConfig, evaluate, export_safetensors, import_safetensors,
        plot_histories, predict,
    };
    pub use kiln_transformer::{EncoderBlockConfig, SequenceClassifier, SequenceClassifierConfig};
}
