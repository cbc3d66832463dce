//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kiln::cnn::Preset;
use kiln::common::Activation;
use kiln::datasets::Tokenizer;
use kiln::train::{Augmentation, LoraConfig, LrSchedule, Monitor, OptimizerKind, Task, Unfreeze};

use crate::dataset::DatasetSpec;

/// kiln: train a neural network on real data in one command.
///
/// With no subcommand, `kiln` runs `kiln train` with its defaults: an MLP on the embedded 8x8
/// handwritten digits, with early stopping, then its test accuracy.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model, then report its metrics on the held-out test set.
    Train(Box<TrainArgs>),
    /// Reload a run's model and report its test metrics again.
    Eval(EvalArgs),
    /// Predict with a run's model on new inputs and write a submission CSV.
    Predict(PredictArgs),
    /// Print the layers, output shapes and parameter counts of the model `kiln train` would
    /// build with the same flags, or that a run's config.json describes (--config FILE: also a
    /// pre-training, LoRA or frozen run) (Keras's `model.summary()`).
    Summary(Box<TrainArgs>),
    /// Draw the training curves of one or several runs side by side (PNG).
    Plot(PlotArgs),
    /// Diagnose a run: what went wrong (a diverged loss, a learning rate too high or too low,
    /// overfitting, underfitting), what it means and the flag to try.
    Diagnose(DiagnoseArgs),
    /// Find a learning rate: train on a few hundred batches while the rate grows
    /// exponentially, then plot the loss and suggest the rate where it falls fastest
    /// (Lightning's LR finder). Takes `kiln train`'s model and data flags.
    LrFind(Box<LrFindArgs>),
    /// Write a run's weights for other tools (safetensors, PyTorch's names and layouts).
    Export(ExportArgs),
    /// Load weights from a safetensors file (PyTorch's names and layouts) into a run's model.
    Import(ImportArgs),
    /// Distil a student from a trained teacher run (Hinton's knowledge distillation, Keras's
    /// Distiller): `kiln train`'s flags describe the student; each training step mixes the
    /// labels' cross-entropy with the teacher's temperature-softened probabilities.
    Distill(Box<DistillArgs>),
    /// Pre-train a transformer encoder on texts without labels (BERT's masked-language
    /// model): 15% of each text's tokens are hidden and predicted. `kiln train --init-from
    /// RUN` then fine-tunes it on labelled texts, with its vocabulary.
    Pretrain(Box<PretrainArgs>),
    /// Tune hyperparameters: `kiln train`'s flags, any of them a search range
    /// (`--lr 1e-4..1e-1:log`, `--dropout 0..0.5`, `--batch-size 16|32|64`,
    /// `--hidden 64|128,64`); each trial is a `kiln train` run of its own, the study kept in
    /// SQLite (DIR/study.db) or PostgreSQL, so that it resumes and more workers can join.
    Tune(Box<TuneArgs>),
}

/// `kiln tune`'s own flags; every other flag is `kiln train`'s, and goes to the trials.
#[derive(Debug, Clone, Args)]
pub struct TuneArgs {
    /// Trials in all (complete, pruned or failed).
    #[arg(long, value_name = "N")]
    pub trials: Option<u64>,
    /// Start no trial after this long (running ones finish): 90s, 30m, 2h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub time_budget: Option<std::time::Duration>,
    /// Start no trial once the trials have run this many epochs in all.
    #[arg(long, value_name = "EPOCHS")]
    pub epoch_budget: Option<u64>,
    /// The metric each trial reports after every epoch and the study optimises: val_loss,
    /// val_accuracy, train_loss; lower is better for losses, higher for accuracies. A trial's
    /// value is its best epoch's.
    #[arg(long, default_value = "val_loss")]
    pub objective: String,
    /// How values are chosen: tpe (the tree-structured Parzen estimator, after
    /// --startup-trials random ones), random, or grid (every combination, in a seeded order;
    /// real ranges at --grid-points values).
    #[arg(long, default_value = "tpe", value_parser = ["tpe", "random", "grid"])]
    pub sampler: String,
    /// TPE: random trials before its model takes over (Optuna: 10).
    #[arg(long, default_value_t = 5)]
    pub startup_trials: usize,
    /// TPE: the share of finished trials its model takes as the good ones, at most 25 trials
    /// (Optuna: 0.1).
    #[arg(long, default_value_t = 0.15)]
    pub gamma: f64,
    /// Grid: values of each real range (and of a wide whole-number range).
    #[arg(long, default_value_t = 5)]
    pub grid_points: usize,
    /// Stop bad trials early: asha (asynchronous successive halving: at epochs --min-epochs x
    /// --reduction-factor^k only the best 1/--reduction-factor go on, the others pause there
    /// and go on from their checkpoint if later trials make them part of it), median (a trial
    /// worse than the median of complete trials at the same epoch stops, after 5 complete),
    /// none.
    #[arg(long, default_value = "none", value_parser = ["none", "median", "asha"])]
    pub pruner: String,
    /// ASHA: the first rung's epoch.
    #[arg(long, default_value_t = 1)]
    pub min_epochs: u32,
    /// ASHA: each rung keeps 1 in this many.
    #[arg(long, default_value_t = 3)]
    pub reduction_factor: u32,
    /// Trials at a time on this machine, each a process with its share of the cores.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Where the study lives [default: DIR/study.db, SQLite]: an SQLite file or
    /// postgres://USER:PASSWORD@HOST/DATABASE, which workers on other machines can join with
    /// the same flags and --study.
    #[arg(long, value_name = "URL")]
    pub storage: Option<String>,
    /// The study's name in its storage [default: DIR's name].
    #[arg(long, value_name = "NAME")]
    pub study: Option<String>,
    /// The study directory: trials/N (each trial's run), tune.csv, tune.png, best/config.json
    /// [default: tunes/<model>-<dataset>-<time>/].
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub dir: Option<PathBuf>,
    /// Go on with the study in DIR (after a kill, or as one more worker beside others): no
    /// finished trial runs again, a trial whose worker died resumes from its checkpoint. Only
    /// the budgets, --workers and --quiet may come with it.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Seed of the sampler (each trial trains with kiln train's --seed, the same for all).
    #[arg(long, default_value_t = 0)]
    pub study_seed: u64,
    /// Print only the final table.
    #[arg(long)]
    pub quiet: bool,
    /// `kiln train`'s flags for every trial, values or ranges.
    #[arg(last = true, value_name = "TRAIN_FLAGS")]
    pub train: Vec<String>,
    /// The tune flags given on the command line (not defaults), filled in after parsing.
    #[arg(skip)]
    pub given: Vec<String>,
}

/// A duration: a number of seconds, or with s, m or h.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = match text
        .trim()
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphabetic())
    {
        Some((i, _)) => (&text[..i], &text[i..]),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}`: expected a duration such as 90s, 30m or 2h"))?;
    let scale = match unit.trim() {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("`{text}`: unknown unit `{other}` (s, m, h)")),
    };
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("`{text}`: must be positive"));
    }
    Ok(std::time::Duration::from_secs_f64(value * scale))
}

/// Weight file formats `kiln export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WeightFormat {
    /// safetensors, as PyTorch's `safetensors.torch.load_file` reads it.
    Safetensors,
}

#[derive(Debug, Clone, Args)]
pub struct LrFindArgs {
    #[command(flatten)]
    pub train: TrainArgs,
    /// The sweep's first rate.
    #[arg(long, default_value_t = 1e-7)]
    pub min_lr: f64,
    /// The sweep's last rate.
    #[arg(long, default_value_t = 1.0)]
    pub max_lr: f64,
    /// Batches in the sweep.
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
}

#[derive(Debug, Clone, Args)]
pub struct PretrainArgs {
    /// Fraction of each text's tokens the model predicts (at least one per text); of those
    /// 80% are replaced by <mask>, 10% by a random token, 10% kept (BERT's).
    #[arg(long, default_value_t = 0.15)]
    pub mask_rate: f64,
    /// The model and its training, as `kiln train` takes them (--model transformer, a text
    /// dataset; --text-column without --target for text-csv:).
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DistillArgs {
    /// The teacher: a finished `kiln train` run on the same data (dataset, classes, split
    /// seed, normalisation), of any model family.
    #[arg(long, value_name = "RUN_DIR")]
    pub teacher: PathBuf,
    /// Softens both models' probabilities, softmax(logits / T): higher shows more of how the
    /// teacher ranks the wrong classes.
    #[arg(long, default_value_t = 3.0)]
    pub temperature: f64,
    /// The labels' cross-entropy's weight; the teacher's term gets 1 - ALPHA (Keras's
    /// Distiller).
    #[arg(long, default_value_t = 0.1)]
    pub alpha: f64,
    /// The student, as `kiln train` takes it.
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The run directory that `kiln train` wrote.
    #[arg(long)]
    pub run: PathBuf,
    /// Format of the weights.
    #[arg(long, value_enum, default_value = "safetensors")]
    pub format: WeightFormat,
    /// Where to write them [default: RUN/model.safetensors].
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Backend [default: $BURN_DEVICE, else flex].
    #[arg(long)]
    pub device: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The run directory whose model (config.json) receives the weights; its model.bpk is
    /// replaced.
    #[arg(long)]
    pub run: PathBuf,
    /// The safetensors file.
    #[arg(long)]
    pub input: PathBuf,
    /// Backend [default: $BURN_DEVICE, else flex].
    #[arg(long)]
    pub device: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// A run directory that `kiln train` wrote; repeat for several runs.
    #[arg(long, required = true)]
    pub run: Vec<PathBuf>,
    /// Where to write the picture [default: RUN/history.png for one run, runs.png for several].
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// `kiln diagnose`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct DiagnoseArgs {
    /// The run directory that `kiln train` wrote.
    #[arg(long)]
    pub run: PathBuf,
}

/// Model families this command line trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Multi-layer perceptron trained by backpropagation.
    Mlp,
    /// Rosenblatt's perceptron, trained by the perceptron rule (binary datasets).
    Perceptron,
    /// Convolutional image classifier (`--preset`).
    Cnn,
    /// Stacked LSTM over sequences (`--hidden N --layers --bidirectional --pooling`).
    Lstm,
    /// Stacked GRU over sequences.
    Gru,
    /// Transformer encoder over token ids (text datasets) or real-valued steps
    /// (`--d-model --heads --d-ff --layers --pooling mean|cls`).
    Transformer,
}

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Model to train.
    #[arg(long, value_enum, default_value = "mlp")]
    pub model: ModelKind,
    /// Recurrent layers (lstm, gru) or encoder blocks (transformer).
    #[arg(long, default_value_t = 1)]
    pub layers: usize,
    /// Run recurrent layers in both directions.
    #[arg(long)]
    pub bidirectional: bool,
    /// What the head sees: the last step or the mean (lstm, gru; default last), the mean or a
    /// [CLS] token (transformer; default mean).
    #[arg(long, value_parser = ["last", "mean", "cls"])]
    pub pooling: Option<String>,
    /// Transformer width of every position.
    #[arg(long, default_value_t = 64)]
    pub d_model: usize,
    /// Transformer attention heads (must divide --d-model).
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Transformer feed-forward width.
    #[arg(long, default_value_t = 128)]
    pub d_ff: usize,
    /// Transformer positions: sinusoidal or learned.
    #[arg(long, default_value = "sinusoidal", value_parser = ["sinusoidal", "learned"])]
    pub positions: String,
    /// Tokens per text [default: 200] or input steps per series window [default: 12].
    #[arg(long, value_parser = at_least_one)]
    pub seq_len: Option<usize>,
    /// Tokeniser for text datasets: word or char.
    #[arg(long, default_value = "word")]
    pub tokenizer: Tokenizer,
    /// Largest vocabulary (PAD and UNK included).
    #[arg(long, default_value_t = 20_000)]
    pub vocab_size: usize,
    /// Fewest occurrences in the training texts for a token to enter the vocabulary.
    #[arg(long, default_value_t = 2)]
    pub min_freq: usize,
    /// Text column of a text-csv: dataset.
    #[arg(long)]
    pub text_column: Option<String>,
    /// Value column of a series-csv: dataset.
    #[arg(long)]
    pub column: Option<String>,
    /// Steps ahead a series model forecasts.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub horizon: usize,
    /// Season length for the seasonal naive baseline [default: known or detected].
    #[arg(long, value_parser = at_least_one)]
    pub season: Option<usize>,
    /// CNN architecture: digits (1x8x8), mnist (1x28x28), cifar or cifar-bn (3x32x32)
    /// [default: the one made for the dataset's images].
    #[arg(long)]
    pub preset: Option<Preset>,
    /// Dataset: digits, iris, mnist, sequential-mnist, fashion-mnist, cifar10, xor, spirals, moons,
    /// house-prices, spam, airline, csv:PATH, digits-csv:PATH (Kaggle digit-recognizer
    /// train.csv), text-csv:PATH (--text-column, --target) or series-csv:PATH (--column).
    #[arg(long, default_value = "digits")]
    pub dataset: DatasetSpec,
    /// Target column of a CSV dataset.
    #[arg(long)]
    pub target: Option<String>,
    /// Task; guessed from the targets when not given.
    #[arg(long)]
    pub task: Option<Task>,
    /// Maximum number of epochs.
    #[arg(long, default_value_t = 50)]
    pub epochs: usize,
    /// Samples per optimiser step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Optimiser: sgd, adam, adamw, rmsprop.
    #[arg(long, default_value = "adam")]
    pub optimizer: OptimizerKind,
    /// Learning rate [default: 0.001 for the MLP, 1.0 for the perceptron].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Momentum (sgd, rmsprop).
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f64,
    /// Nesterov momentum (sgd with --momentum).
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay (L2 penalty; decoupled for adamw).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clip each gradient component to [-V, V].
    #[arg(long, conflicts_with = "clip_norm")]
    pub clip_value: Option<f32>,
    /// Rescale gradients whose L2 norm exceeds V.
    #[arg(long)]
    pub clip_norm: Option<f32>,
    /// Dropout after each hidden layer (the CNN's dense head: its preset's, 0, unless given).
    #[arg(long, default_value_t = 0.2)]
    pub dropout: f64,
    /// Batch normalisation after each hidden layer (and each CNN block).
    #[arg(long)]
    pub batch_norm: bool,
    /// Hidden layer widths, comma-separated (the CNN's dense head: its preset's unless given).
    #[arg(long, value_delimiter = ',', default_value = "128,64")]
    pub hidden: Vec<usize>,
    /// Hidden activation: relu, leaky-relu, elu, gelu, sigmoid, tanh (also every CNN block's).
    #[arg(long, default_value = "relu")]
    pub activation: Activation,
    /// Early stopping: epochs without improvement before stopping; 0 turns it off.
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    /// Early stopping: smallest change that counts as an improvement.
    #[arg(long, default_value_t = 0.0)]
    pub min_delta: f64,
    /// Early stopping: val_loss or val_accuracy.
    #[arg(long, default_value = "val_loss")]
    pub monitor: Monitor,
    /// Early stopping: return the best epoch's weights.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub restore_best: bool,
    /// Fraction of the training data held out for validation.
    #[arg(long, default_value_t = 0.2)]
    pub validation_split: f64,
    /// Fraction of the data held out as the test set (datasets without an official one).
    #[arg(long, default_value_t = 0.2)]
    pub test_split: f64,
    /// Keep only these classes, renumbered from 0 in their order: class names or ranges of
    /// class indices, comma-separated (0-4, 5,7,9, ham,spam); in every split.
    #[arg(long, value_name = "LIST")]
    pub classes: Option<String>,
    /// Train on N labelled samples of each class (seeded; the validation part is split off
    /// first, at --validation-split of all the training data; the test set stays whole).
    #[arg(long, value_name = "N", conflicts_with = "train_samples")]
    pub train_per_class: Option<usize>,
    /// Train on N labelled samples in all, stratified by class (seeded, as --train-per-class).
    #[arg(long, value_name = "N")]
    pub train_samples: Option<usize>,
    /// Image files (--dataset images:DIR, image-csv:PATH): resize every image to HEIGHTxWIDTH
    /// (bilinear); without it, every image must have the first one's size.
    #[arg(long, value_name = "HxW", value_parser = parse_image_size)]
    pub image_size: Option<[usize; 2]>,
    /// Image files: convert every image to 1 (grey) or 3 (RGB) channels [default: 1 if every
    /// image is grey, else 3].
    #[arg(long, value_parser = parse_channels)]
    pub channels: Option<usize>,
    /// Image files: keep decoded images in memory, up to SIZE of them (512M, 2G; 4 bytes per
    /// pixel value), so that epochs after the first decode only what did not fit [default:
    /// none, every epoch decodes every file].
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub image_cache: Option<u64>,
    /// CNN: average each channel of the last convolution over the image before the dense head
    /// (Keras's GlobalAveragePooling2D), so that the preset's blocks read images of any size;
    /// on by itself for images no preset is made for.
    #[arg(long)]
    pub global_pool: bool,
    /// Start from trained weights: a run directory (its model.bpk), a .bpk file or a
    /// .safetensors file (PyTorch's names and layouts). Every tensor whose module path and
    /// shape match is loaded; the others start as initialised (see init.json in the run).
    #[arg(long, value_name = "RUN_DIR_OR_FILE")]
    pub init_from: Option<PathBuf>,
    /// With --init-from: module paths not loaded, such as a head to learn anew (head,
    /// output), comma-separated.
    #[arg(
        long,
        value_name = "PREFIXES",
        value_delimiter = ',',
        requires = "init_from"
    )]
    pub init_skip: Vec<String>,
    /// Module paths whose parameters do not train (Keras's trainable = False), such as blocks
    /// (a CNN's convolutions) or hidden.0, comma-separated: no gradient, no optimiser state,
    /// batch norm and dropout in inference mode. `kiln summary` counts them as non-trainable.
    #[arg(long, value_name = "PREFIXES", value_delimiter = ',')]
    pub freeze: Vec<String>,
    /// With --freeze: the parts it froze train from epoch EPOCH on (at least 2; one past
    /// --epochs comes only if the run is resumed with more), at the learning rate times RATIO
    /// [default RATIO: 0.1] (Lightning's BackboneFinetuning); the rest keeps its rate. One
    /// device only.
    #[arg(long, value_name = "EPOCH[:RATIO]", value_parser = parse_unfreeze)]
    pub unfreeze_at: Option<Unfreeze>,
    /// With --init-from: low-rank adapters (LoRA) of rank R on the weight matrices (dense
    /// layers, attention projections, recurrent weights; not embeddings), scaled by
    /// ALPHA / R [default ALPHA: R]; only they train, with the tensors --init-from left new
    /// (a head) trained in full. The saved model has them merged.
    #[arg(long, value_name = "R[:ALPHA]", value_parser = parse_lora)]
    pub lora: Option<LoraConfig>,
    /// LR schedule: constant, step[:SIZE[:GAMMA]], exponential[:GAMMA], cosine[:MIN_LR],
    /// inverse-time[:DECAY], plateau[:FACTOR[:PATIENCE[:MIN_LR[:MIN_DELTA[:COOLDOWN]]]]]
    /// (Keras's ReduceLROnPlateau on --monitor; defaults 0.1, 10, 0, 1e-4, 0).
    #[arg(long, default_value = "constant")]
    pub lr_schedule: LrSchedule,
    /// Augment training images: comma-separated flip, crop=PIXELS, rotate=DEGREES,
    /// translate=FRACTION, zoom=FRACTION, brightness=DELTA, contrast=FACTOR, noise=STD,
    /// cutout=PIXELS.
    #[arg(long, value_parser = parse_augmentation)]
    pub augment: Option<Augmentation>,
    /// Normalise each image channel with the training split's mean and std.
    #[arg(long)]
    pub normalize: bool,
    /// Seed of splits, initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number format of the layers' matrix products, forward and backward: f32; bf16 on the CPU
    /// backends (every product's operands rounded to bfloat16, sums and weights in f32; on AMX
    /// tiles where the CPU has them); or f16 on wgpu (float16 operands, f32 results and
    /// weights, dynamic loss scaling).
    #[arg(long, default_value = "f32")]
    pub precision: kiln::common::Precision,
    /// Backend: flex, ndarray or wgpu (among those compiled in) [default: $BURN_DEVICE, else flex].
    #[arg(long)]
    pub device: Option<String>,
    /// Train data-parallel on several devices of one backend, e.g. flex:0,flex:1 or
    /// wgpu:0,wgpu:1: each step splits --batch-size over them and averages their gradients.
    #[arg(long, value_name = "LIST", conflicts_with = "device")]
    pub devices: Option<String>,
    /// Run directory [default: runs/<model>-<dataset>-<time>/]; one that holds a run already is
    /// refused (see --overwrite).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the run in --out, if there is one (its weights, checkpoints and records are
    /// deleted).
    #[arg(long)]
    pub overwrite: bool,
    /// Print nothing while training.
    #[arg(long)]
    pub quiet: bool,
    /// Measure gradients, weights and updates per layer (one training step in 32) for the
    /// diagnosis of vanishing and exploding gradients and dead units: on or off.
    #[arg(long, default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    pub diagnostics: bool,
    /// Continue the run in DIR from its last checkpoint, with its saved configuration (only
    /// --epochs, --device, --devices and --quiet may come with it).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Keep the best epoch's weights in DIR/best.bpk (the monitored metric: --monitor).
    #[arg(long)]
    pub save_best: bool,
    /// When the diagnosis finds a problem with a known repair, train again with it, at most
    /// three times (a lower or higher --lr, --clip-norm 1, --activation leaky-relu or relu,
    /// --batch-norm, --dropout 0.3, --weight-decay 1e-4): the attempts go to DIR/attempts/N,
    /// the best becomes the run in DIR, with repairs.json and repairs.png.
    #[arg(long)]
    pub auto_fix: bool,
    /// Train what a config.json describes (a run's, or a study's best/config.json): its
    /// model, data and trainer settings, as a new run; only --out, --overwrite, --device,
    /// --devices and --quiet may come with it.
    #[arg(long, value_name = "CONFIG_JSON", conflicts_with = "resume")]
    pub config: Option<PathBuf>,
    /// A trial of a `kiln tune` study, STORAGE_URL#TRIAL_KEY: report the objective after every
    /// epoch and stop when the study's pruner says so (kiln tune sets it).
    #[arg(long, hide = true, value_name = "STORAGE#TRIAL")]
    pub tune_trial: Option<String>,
    /// Keep the run directory of a run that fails before its first checkpoint (auto-fix's
    /// attempts: a loss that became NaN is a diagnosis to act on).
    #[arg(skip)]
    pub keep_failed: bool,
    /// The flags given on the command line (not defaults), filled in after parsing.
    #[arg(skip)]
    pub given: Vec<String>,
    /// Set by `kiln pretrain`: the model predicts hidden tokens of unlabelled texts.
    #[arg(skip)]
    pub pretraining: bool,
}

impl TrainArgs {
    /// Records which of `matches`' arguments came from the command line.
    pub fn note_given(&mut self, matches: &clap::ArgMatches) {
        self.given = given::<Self>(matches);
    }
}

/// The arguments of `A` in `matches` that came from the command line (not defaults), by id.
pub fn given<A: Args>(matches: &clap::ArgMatches) -> Vec<String> {
    let group = A::group_id();
    matches
        .ids()
        .filter(|id| Some(*id) != group.as_ref())
        .filter(|id| {
            matches.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine)
        })
        .map(|id| id.as_str().to_string())
        .collect()
}

#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// The run directory that `kiln train` wrote.
    #[arg(long)]
    pub run: PathBuf,
    /// Inputs: a CSV with a header row naming the feature columns the run was trained on (in
    /// any order; its target and id columns may be there too; without a header, the columns
    /// in training order); for image runs a Kaggle digit-recognizer test.csv; for runs on image
    /// files (images:DIR) an image file or a folder of them (one row per image: path, class,
    /// probability); for text runs a CSV with the text column the run was trained on (or
    /// `text`).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the predictions: the input's id column (else `row`, from 1), then the
    /// predicted value of each target (regression) or the class and its probability; a
    /// digit-recognizer run writes Kaggle's `ImageId,Label`.
    #[arg(long, default_value = "predictions.csv")]
    pub output: PathBuf,
    /// Backend [default: $BURN_DEVICE, else flex].
    #[arg(long)]
    pub device: Option<String>,
}

/// `on` or `off`.
fn on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("`{other}`: expected on or off")),
    }
}

/// A count that must be at least 1 (`--seq-len 0` would give samples with no steps).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_channels(spec: &str) -> Result<usize, String> {
    match spec {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err(format!("expected 1 (grey) or 3 (RGB), got `{spec}`")),
    }
}

/// A size in bytes: a number with K, M or G (powers of 1024), or bytes alone.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, scale) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => match t[i..].to_ascii_uppercase().trim_end_matches(['B', 'I']) {
            "K" => (&t[..i], 1u64 << 10),
            "M" => (&t[..i], 1 << 20),
            "G" => (&t[..i], 1 << 30),
            other => return Err(format!("`{text}`: unknown unit `{other}` (K, M, G)")),
        },
        None => (t, 1),
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok((v * scale as f64) as u64),
        _ => Err(format!("`{text}`: expected a size such as 512M or 2G")),
    }
}

fn parse_image_size(spec: &str) -> Result<[usize; 2], String> {
    let parsed = spec
        .split_once(['x', 'X'])
        .and_then(|(h, w)| Some([h.trim().parse().ok()?, w.trim().parse().ok()?]));
    match parsed {
        Some([h, w]) if h > 0 && w > 0 => Ok([h, w]),
        _ => Err(format!(
            "expected HEIGHTxWIDTH in pixels, both at least 1, such as 64x64; got `{spec}`"
        )),
    }
}

fn parse_unfreeze(spec: &str) -> Result<Unfreeze, String> {
    let (epoch, ratio) = match spec.split_once(':') {
        Some((epoch, ratio)) => (epoch, Some(ratio)),
        None => (spec, None),
    };
    let epoch = epoch
        .parse()
        .map_err(|_| format!("expected EPOCH[:RATIO], the epoch a whole number, got `{spec}`"))?;
    let mut unfreeze = Unfreeze::at(epoch);
    if let Some(ratio) = ratio {
        unfreeze.lr_ratio = ratio
            .parse()
            .map_err(|_| format!("expected EPOCH[:RATIO], the ratio a number, got `{spec}`"))?;
    }
    Ok(unfreeze)
}

fn parse_lora(spec: &str) -> Result<LoraConfig, String> {
    let (rank, alpha) = spec
        .split_once(':')
        .map_or((spec, None), |(r, a)| (r, Some(a)));
    let rank: usize = rank
        .trim()
        .parse()
        .map_err(|_| format!("`{spec}`: the rank must be a whole number, as in 8 or 8:16"))?;
    let mut lora = LoraConfig::new(rank);
    if let Some(alpha) = alpha {
        lora.alpha = alpha
            .trim()
            .parse()
            .map_err(|_| format!("`{spec}`: ALPHA must be a number, as in 8:16"))?;
    }
    lora.check().map_err(|e| e.to_string())?;
    Ok(lora)
}

fn parse_augmentation(list: &str) -> Result<Augmentation, String> {
    Augmentation::parse(list, 0)
}

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// The run directory that `kiln train` wrote.
    #[arg(long)]
    pub run: PathBuf,
    /// Backend to evaluate on [default: $BURN_DEVICE, else flex].
    #[arg(long)]
    pub device: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_powers_of_1024_and_bad_ones_are_named() {
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("2gb"), Ok(2 << 30));
        assert_eq!(parse_bytes("64KiB"), Ok(64 << 10));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("3T").unwrap_err().contains("unknown unit `T`"));
        assert!(parse_bytes("-1M").unwrap_err().contains("expected a size"));
        assert!(parse_bytes("lots").unwrap_err().contains("lots"));
    }
}
