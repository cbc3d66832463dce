//! The model and trainer a run is made of, from the flags, as `config.json` keeps them.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use kiln::Device;
use kiln::cnn::{CnnConfig, Preset};
use kiln::datasets::LabelSubset;
use kiln::fnn::{MlpConfig, PerceptronConfig};
use kiln::lstm::{Cell, Pooling, SequenceModelConfig};
use kiln::train::{
    Augmentation, EarlyStopping, GradientClip, LoraConfig, OptimizerConfig, Task, TrainerConfig,
    Verbosity,
};
use kiln::transformer::{
    Features, MaskedLanguageModel, Positions, SequenceClassifier, SequenceClassifierConfig, Tokens,
};
use serde::{Deserialize, Serialize};

use crate::args::{ModelKind, TrainArgs};
use crate::dataset::{
    DataConfig, DatasetSpec, ImageSettings, Prepared, Scaler, SequenceOptions, text_run,
};

/// The model's architecture, as `config.json` keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSpec {
    Mlp(MlpConfig),
    Cnn(CnnConfig),
    Sequence(SequenceModelConfig),
    Transformer(TransformerSpec),
    Perceptron(PerceptronConfig),
}

/// A Transformer and what it reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransformerSpec {
    pub config: SequenceClassifierConfig,
    pub input: TransformerInput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransformerInput {
    /// Token ids from a vocabulary of this size.
    Tokens { vocab_size: usize },
    /// Real-valued steps of this many features.
    Features { d_input: usize },
    /// Token ids, some hidden, predicted (masked-language pre-training, `kiln pretrain`).
    MaskedTokens { vocab_size: usize },
}

impl TransformerSpec {
    pub(super) fn tokens(&self, device: &Device) -> SequenceClassifier<Tokens> {
        match self.input {
            TransformerInput::Tokens { vocab_size } => self.config.init_tokens(vocab_size, device),
            _ => unreachable!("checked by the caller"),
        }
    }

    pub(super) fn masked_lm(&self, device: &Device) -> MaskedLanguageModel {
        match self.input {
            TransformerInput::MaskedTokens { vocab_size } => {
                self.config.init_masked_lm(vocab_size, device)
            }
            _ => unreachable!("checked by the caller"),
        }
    }

    pub(super) fn features(&self, device: &Device) -> SequenceClassifier<Features> {
        match self.input {
            TransformerInput::Features { d_input } => self.config.init_features(d_input, device),
            _ => unreachable!("checked by the caller"),
        }
    }
}

/// Everything needed to rerun or re-evaluate a run: `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub kiln_version: String,
    pub model: ModelSpec,
    pub data: DataConfig,
    pub trainer: TrainerConfig,
    /// Keep the best epoch's weights in `best.bpk`.
    #[serde(default)]
    pub save_best: bool,
    /// The weights the run started from (`--init-from`), and the module paths not loaded.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    #[serde(default)]
    pub init_skip: Vec<String>,
    /// The run a student is distilled from (`kiln distill --teacher`); the temperature and
    /// weight are the trainer's `distillation`.
    #[serde(default)]
    pub teacher: Option<PathBuf>,
}

/// Where the data comes from and how it is prepared, from the flags.
pub(super) fn data_config(args: &TrainArgs) -> DataConfig {
    DataConfig {
        dataset: args.dataset.clone(),
        target: args.target.clone(),
        test_split: args.test_split,
        seed: args.seed,
        normalize: args.normalize,
        sequence: SequenceOptions {
            seq_len: args.seq_len,
            text_column: args.text_column.clone(),
            tokenizer: args.tokenizer,
            vocab_size: args.vocab_size,
            min_freq: args.min_freq,
            column: args.column.clone(),
            horizon: args.horizon,
            season: args.season,
            // Fine-tuning a model pre-trained on texts reads its token ids.
            vocabulary_from: args
                .init_from
                .as_deref()
                .filter(|_| data_is_text(&args.dataset))
                .and_then(text_run),
        },
        scale_targets: true,
        labels: LabelSubset {
            classes: args.classes.clone(),
            per_class: args.train_per_class,
            samples: args.train_samples,
        },
        images: ImageSettings {
            size: args.image_size,
            channels: args.channels,
            cache: args.image_cache,
        },
        pretrain: args.pretraining,
    }
}

/// Whether `dataset` is texts (token ids).
fn data_is_text(dataset: &DatasetSpec) -> bool {
    matches!(dataset, DatasetSpec::Spam | DatasetSpec::TextCsv(_))
}

pub(super) fn trainer_config(args: &TrainArgs, task: Task) -> TrainerConfig {
    TrainerConfig {
        task,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr.unwrap_or(TrainerConfig::DEFAULT_LR),
        optimizer: OptimizerConfig {
            kind: args.optimizer,
            momentum: args.momentum,
            nesterov: args.nesterov,
            weight_decay: args.weight_decay,
            clip: args
                .clip_value
                .map(GradientClip::Value)
                .or(args.clip_norm.map(GradientClip::Norm)),
        },
        lr_schedule: args.lr_schedule,
        augmentation: args.augment.clone().map(|a| Augmentation {
            seed: args.seed,
            ..a
        }),
        validation_split: args.validation_split,
        early_stopping: (args.patience > 0).then_some(EarlyStopping {
            monitor: args.monitor,
            min_delta: args.min_delta,
            patience: args.patience,
            restore_best_weights: args.restore_best,
        }),
        seed: args.seed,
        devices: Vec::new(),
        verbosity: if args.quiet {
            Verbosity::Quiet
        } else {
            Verbosity::auto()
        },
        diagnostics: args.diagnostics,
        freeze: args.freeze.clone(),
        lora: args.lora.clone().map(|lora| LoraConfig {
            full: args.init_skip.clone(),
            ..lora
        }),
        // `kiln distill` sets it.
        distillation: None,
        unfreeze_at: args.unfreeze_at,
        // `kiln pretrain` sets it, with the vocabulary's mask id.
        masked_lm: None,
        precision: args.precision,
    }
}

pub(super) fn model_spec(args: &TrainArgs, data: &Prepared) -> Result<ModelSpec> {
    let d_input = data.train.sample_len();
    let d_output = data.train.y.width();
    Ok(match args.model {
        ModelKind::Mlp => {
            let config = MlpConfig::new(d_input, args.hidden.clone(), d_output)
                .with_activation(args.activation)
                .with_dropout(args.dropout)
                .with_batch_norm(args.batch_norm);
            config.check()?;
            ModelSpec::Mlp(config)
        }
        ModelKind::Cnn => {
            let shape = &data.train.sample_shape;
            let [channels, height, width] = shape[..] else {
                bail!(
                    "the CNN classifies images; {} has samples of shape {shape:?} (the presets \
                     take 1x8x8 digits, 1x28x28 mnist or 3x32x32 cifar images; a folder of \
                     images of any size: --dataset images:DIR)",
                    args.dataset
                );
            };
            // Images of another shape than a preset's (a folder of photos): the blocks of the
            // preset for their channels, read with global average pooling.
            let fitted = Preset::for_images(shape);
            let preset = args.preset.or(fitted).unwrap_or(match channels {
                1 => Preset::Mnist,
                _ => Preset::Cifar,
            });
            let mut config = CnnConfig::preset(preset, d_output);
            let preset_shape = [
                config.in_channels,
                config.image_size[0],
                config.image_size[1],
            ];
            if args.global_pool || (args.preset.is_none() && fitted.is_none()) {
                config.in_channels = channels;
                config.blocks[0].channels[0] = channels;
                config.image_size = [height, width];
                config.global_pool = true;
            }
            // The preset's layers, with the hidden-layer flags given on the command line
            // applied to them: every block and the head.
            let given = |flag: &str| args.given.iter().any(|g| g == flag);
            if given("activation") {
                config.activation = args.activation;
                for block in &mut config.blocks {
                    block.activation = args.activation;
                }
            }
            if given("batch_norm") {
                for block in &mut config.blocks {
                    block.batch_norm = true;
                }
            }
            if given("dropout") {
                config.dropout = args.dropout;
            }
            if given("hidden") {
                config.head = args.hidden.clone();
            }
            let expected = [
                config.in_channels,
                config.image_size[0],
                config.image_size[1],
            ];
            if data.task != Task::Classification || shape != &expected {
                bail!(
                    "the {preset} preset classifies {}x{}x{} images; {} has samples of shape {:?} \
                     ({}){}",
                    preset_shape[0],
                    preset_shape[1],
                    preset_shape[2],
                    args.dataset,
                    shape,
                    data.task,
                    match fitted {
                        Some(p) => format!("; its images take --preset {p}"),
                        None => "; --global-pool reads images of any size".into(),
                    }
                );
            }
            config.check().with_context(|| {
                format!("the {preset} preset's blocks on {height}x{width} images")
            })?;
            ModelSpec::Cnn(config)
        }
        ModelKind::Lstm | ModelKind::Gru => {
            let [_, d_input] = data.train.sample_shape[..] else {
                bail!(
                    "a sequence model reads samples of shape [steps, features]; {} has {:?} \
                     (try --dataset sequential-mnist)",
                    args.dataset,
                    data.train.sample_shape
                );
            };
            let d_hidden = args.hidden.first().copied().unwrap_or(128);
            let cell = if args.model == ModelKind::Lstm {
                Cell::Lstm
            } else {
                Cell::Gru
            };
            let pooling = match args.pooling.as_deref() {
                None | Some("last") => Pooling::Last,
                Some("mean") => Pooling::Mean,
                Some(other) => bail!(
                    "--pooling {other} is for the transformer; lstm and gru pool by last or mean"
                ),
            };
            let config = SequenceModelConfig::new(d_input, d_hidden, d_output)
                .with_cell(cell)
                .with_layers(args.layers)
                .with_bidirectional(args.bidirectional)
                .with_dropout(if args.layers > 1 { args.dropout } else { 0.0 })
                .with_pooling(pooling);
            config.check()?;
            ModelSpec::Sequence(config)
        }
        ModelKind::Transformer => {
            let pooling = match args.pooling.as_deref() {
                None | Some("mean") => kiln::transformer::Pooling::Mean,
                Some("cls") => kiln::transformer::Pooling::Cls,
                Some(other) => bail!(
                    "--pooling {other} is for lstm and gru; the transformer pools by mean or cls"
                ),
            };
            let (input, seq_len) = match (&data.scaler, &data.train.sample_shape[..]) {
                (Some(Scaler::Text(encoder)), _) if args.pretraining => (
                    TransformerInput::MaskedTokens {
                        vocab_size: encoder.vocab_size(),
                    },
                    encoder.seq_len,
                ),
                (Some(Scaler::Text(encoder)), _) => (
                    TransformerInput::Tokens {
                        vocab_size: encoder.vocab_size(),
                    },
                    encoder.seq_len,
                ),
                (_, &[steps, d_input]) => (TransformerInput::Features { d_input }, steps),
                (_, shape) => bail!(
                    "the transformer reads texts (spam, text-csv:) or samples of shape [steps, \
                     features] (sequential-mnist, airline); {} has {shape:?}",
                    args.dataset
                ),
            };
            // The masked-language model's outputs are the vocabulary's tokens.
            let d_output = match input {
                TransformerInput::MaskedTokens { vocab_size } => vocab_size,
                _ => d_output,
            };
            let config = SequenceClassifierConfig::new(args.d_model, d_output)
                .with_n_heads(args.heads)
                .with_d_ff(args.d_ff)
                .with_n_blocks(args.layers)
                .with_dropout(args.dropout)
                .with_activation(args.activation)
                .with_max_len(seq_len)
                .with_positions(if args.positions == "learned" {
                    Positions::Learned
                } else {
                    Positions::Sinusoidal
                })
                .with_pooling(pooling);
            config.check()?;
            ModelSpec::Transformer(TransformerSpec { config, input })
        }
        ModelKind::Perceptron => {
            if data.task != Task::Classification || d_output != 2 {
                bail!(
                    "the perceptron separates two classes; {} has {} {}",
                    args.dataset,
                    d_output,
                    if data.task == Task::Classification {
                        "classes"
                    } else {
                        "regression targets"
                    }
                );
            }
            ModelSpec::Perceptron(
                PerceptronConfig::new(d_input).with_learning_rate(args.lr.unwrap_or(1.0)),
            )
        }
    })
}

pub(super) fn model_name(model: &ModelSpec) -> String {
    match model {
        ModelSpec::Mlp(c) => format!(
            "MLP {}",
            std::iter::once(c.d_input)
                .chain(c.hidden.iter().copied())
                .chain([c.d_output])
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("-")
        ),
        ModelSpec::Cnn(c) => format!(
            "CNN ({} conv blocks, {}x{}x{} images, {} classes)",
            c.blocks.len(),
            c.in_channels,
            c.image_size[0],
            c.image_size[1],
            c.d_output
        ),
        ModelSpec::Sequence(c) => format!(
            "{:?} {}x{}{} ({} features per step, {} outputs)",
            c.cell,
            c.layers,
            c.d_hidden,
            if c.bidirectional {
                " bidirectional"
            } else {
                ""
            },
            c.d_input,
            c.d_output
        ),
        ModelSpec::Transformer(t) => format!(
            "Transformer encoder {}x{} ({} heads, d_ff {}, {})",
            t.config.n_blocks,
            t.config.d_model,
            t.config.n_heads,
            t.config.d_ff,
            match t.input {
                TransformerInput::Tokens { vocab_size } => format!("vocabulary {vocab_size}"),
                TransformerInput::Features { d_input } => format!("{d_input} features per step"),
                TransformerInput::MaskedTokens { vocab_size } => {
                    format!("masked-language model, vocabulary {vocab_size}")
                }
            }
        ),
        ModelSpec::Perceptron(c) => format!("perceptron ({} inputs)", c.d_input),
    }
}
