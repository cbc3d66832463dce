//! The datasets the CLI knows by name, and how each is split and scaled.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use kiln::datasets::{
    self, ChannelNormalizer, CsvOptions, Data, DataError, ImageOptions, LabelSubset, MnistSplit,
    SeriesScaler, Standardizer, TargetScaler, TextEncoder, TextSet, Tokenizer, WindowConfig,
    Windows, synthetic,
};
use kiln::train::Task;
use serde::{Deserialize, Serialize};

/// Builds a dataset spec from the path after its prefix.
type MakeSpec = fn(PathBuf) -> DatasetSpec;

/// A dataset named on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DatasetSpec {
    Digits,
    Iris,
    Mnist,
    /// MNIST with each image as 28 steps of 28 features (its rows).
    SequentialMnist,
    FashionMnist,
    Cifar10,
    Xor,
    Spirals,
    Moons,
    HousePrices,
    Csv(PathBuf),
    /// Kaggle's digit-recognizer `train.csv`.
    DigitsCsv(PathBuf),
    /// SpamAssassin emails, ham or spam.
    Spam,
    /// Labelled texts from a CSV file (`--text-column`, `--target`).
    TextCsv(PathBuf),
    /// The airline passengers series, forecast from windows.
    Airline,
    /// A series from a CSV column (`--column`).
    SeriesCsv(PathBuf),
    /// A folder of images, one sub-folder per class, read from disk as batches need them.
    Images(PathBuf),
    /// A CSV of `path,label` rows naming image files, read as `Images`.
    ImageCsv(PathBuf),
}

const NAMES: &str = "digits, iris, mnist, sequential-mnist, fashion-mnist, cifar10, xor, spirals, moons, \
                     house-prices, spam, airline, csv:PATH, digits-csv:PATH, text-csv:PATH, series-csv:PATH, \
                     images:DIR, image-csv:PATH";

impl FromStr for DatasetSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Names in any case, as the other value flags (`--optimizer SGD`); paths as given.
        Ok(match s.to_ascii_lowercase().as_str() {
            "digits" => DatasetSpec::Digits,
            "iris" => DatasetSpec::Iris,
            "mnist" => DatasetSpec::Mnist,
            "sequential-mnist" => DatasetSpec::SequentialMnist,
            "fashion-mnist" => DatasetSpec::FashionMnist,
            "cifar10" => DatasetSpec::Cifar10,
            "xor" => DatasetSpec::Xor,
            "spirals" => DatasetSpec::Spirals,
            "moons" => DatasetSpec::Moons,
            "house-prices" => DatasetSpec::HousePrices,
            "spam" => DatasetSpec::Spam,
            "airline" => DatasetSpec::Airline,
            _ => {
                let other = s;
                let with_path: [(&str, MakeSpec); 6] = [
                    ("csv:", DatasetSpec::Csv),
                    ("digits-csv:", DatasetSpec::DigitsCsv),
                    ("text-csv:", DatasetSpec::TextCsv),
                    ("series-csv:", DatasetSpec::SeriesCsv),
                    ("images:", DatasetSpec::Images),
                    ("image-csv:", DatasetSpec::ImageCsv),
                ];
                with_path
                    .into_iter()
                    .find_map(|(prefix, make)| {
                        let head = other.get(..prefix.len())?;
                        let path = &other[prefix.len()..];
                        (head.eq_ignore_ascii_case(prefix) && !path.is_empty())
                            .then(|| make(path.into()))
                    })
                    .ok_or_else(|| format!("unknown dataset `{other}` (valid: {NAMES})"))?
            }
        })
    }
}

impl TryFrom<String> for DatasetSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DatasetSpec> for String {
    fn from(d: DatasetSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetSpec::Digits => f.write_str("digits"),
            DatasetSpec::Iris => f.write_str("iris"),
            DatasetSpec::Mnist => f.write_str("mnist"),
            DatasetSpec::SequentialMnist => f.write_str("sequential-mnist"),
            DatasetSpec::FashionMnist => f.write_str("fashion-mnist"),
            DatasetSpec::Cifar10 => f.write_str("cifar10"),
            DatasetSpec::DigitsCsv(p) => write!(f, "digits-csv:{}", p.display()),
            DatasetSpec::Xor => f.write_str("xor"),
            DatasetSpec::Spirals => f.write_str("spirals"),
            DatasetSpec::Moons => f.write_str("moons"),
            DatasetSpec::HousePrices => f.write_str("house-prices"),
            DatasetSpec::Csv(p) => write!(f, "csv:{}", p.display()),
            DatasetSpec::Spam => f.write_str("spam"),
            DatasetSpec::TextCsv(p) => write!(f, "text-csv:{}", p.display()),
            DatasetSpec::Airline => f.write_str("airline"),
            DatasetSpec::SeriesCsv(p) => write!(f, "series-csv:{}", p.display()),
            DatasetSpec::Images(p) => write!(f, "images:{}", p.display()),
            DatasetSpec::ImageCsv(p) => write!(f, "image-csv:{}", p.display()),
        }
    }
}

/// A [`LabelSubset`] error in the command line's words.
fn as_flag(error: DataError) -> anyhow::Error {
    match error {
        DataError::Subset { field, reason } => {
            let flag = match field {
                "classes" => "--classes",
                "per_class" => "--train-per-class",
                _ => "--train-samples",
            };
            anyhow::anyhow!("{flag}: {reason}")
        }
        other => other.into(),
    }
}

/// How to read the data: what `config.json` keeps so that `kiln eval` rebuilds the same split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    pub dataset: DatasetSpec,
    /// CSV target column.
    pub target: Option<String>,
    /// Fraction of the data held out as the test set (datasets without an official one).
    pub test_split: f64,
    pub seed: u64,
    /// Per-channel normalisation of images.
    #[serde(default)]
    pub normalize: bool,
    /// Text and series options.
    #[serde(default)]
    pub sequence: SequenceOptions,
    /// Standardise regression targets (tables) on the training part, and map predictions back.
    /// Off in the configs of runs made before kiln did it, so that they evaluate as trained.
    #[serde(default)]
    pub scale_targets: bool,
    /// Fewer labels: the classes kept and the labelled training samples kept.
    #[serde(default)]
    pub labels: LabelSubset,
    /// Image files: the size they are resized to and the channels they are converted to.
    #[serde(default)]
    pub images: ImageSettings,
    /// Texts for masked-language pre-training (`kiln pretrain`): labels unused, split at
    /// random, a `<mask>` token in the vocabulary.
    #[serde(default)]
    pub pretrain: bool,
}

/// How image files become samples (`--image-size`, `--channels`); the defaults keep each as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSettings {
    /// `[height, width]` every image is resized to.
    pub size: Option<[usize; 2]>,
    /// 1 (grey) or 3 (RGB).
    pub channels: Option<usize>,
    /// Bytes of decoded images kept in memory (`--image-cache`).
    #[serde(default)]
    pub cache: Option<u64>,
}

impl ImageSettings {
    fn options(&self) -> ImageOptions {
        ImageOptions {
            size: self.size,
            channels: self.channels,
            cache_bytes: self.cache.map(|b| b as usize),
        }
    }
}

/// How texts become token ids and series become windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceOptions {
    /// Tokens per text (default 200) or steps per series window (default 12).
    pub seq_len: Option<usize>,
    /// Text column of a `text-csv:` file.
    pub text_column: Option<String>,
    pub tokenizer: Tokenizer,
    /// Largest vocabulary, PAD and UNK included.
    pub vocab_size: usize,
    /// Fewest occurrences for a token to get an id.
    pub min_freq: usize,
    /// A pre-trained run whose vocabulary (and tokeniser) the texts are encoded with, as a
    /// model fine-tuned from it needs: set when `--init-from` is a run on texts.
    #[serde(default)]
    pub vocabulary_from: Option<PathBuf>,
    /// Value column of a `series-csv:` file.
    pub column: Option<String>,
    /// Steps forecast per window.
    pub horizon: usize,
    /// Season length of the seasonal naive baseline (detected when not given).
    pub season: Option<usize>,
}

impl Default for SequenceOptions {
    fn default() -> Self {
        Self {
            seq_len: None,
            text_column: None,
            tokenizer: Tokenizer::Word,
            vocab_size: 20_000,
            min_freq: 2,
            vocabulary_from: None,
            column: None,
            horizon: 1,
            season: None,
        }
    }
}

/// How features were scaled, fitted on the training split only; saved as `scaler.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scaler {
    /// Tables: per-feature standardisation.
    Standardizer(Standardizer),
    /// Images with `--normalize`: per-channel normalisation.
    Channels(ChannelNormalizer),
    /// Texts: the tokeniser and the vocabulary fitted on the training texts.
    Text(TextEncoder),
    /// Series: logs, differences from each window's last value, and their scale.
    Series(SeriesScaler),
}

impl Scaler {
    /// Scales feature rows; texts and series are encoded from their raw form instead.
    pub fn transform(&self, data: &mut Data) -> Result<()> {
        match self {
            Scaler::Standardizer(s) => s.transform(data)?,
            Scaler::Channels(c) => c.transform(data)?,
            Scaler::Text(_) | Scaler::Series(_) => {
                bail!("texts and series are encoded from raw text or values, not from features")
            }
        }
        Ok(())
    }
}

/// The names a run's data has, saved as `columns.json`: `kiln predict` reads a file's columns
/// by name and writes its predictions under the target's name and the class names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Columns {
    /// The feature columns, in the model's order; `None` where samples are not named columns
    /// (images, texts, series, the digits' pixels).
    pub features: Option<Vec<String>>,
    /// The target column (classification) or one name per output (regression).
    pub targets: Vec<String>,
    /// The class names, in the model's output order (classification).
    pub classes: Vec<String>,
}

/// A dataset ready for training: the training part, the validation part, the test part the
/// trainer never sees, and the scaler (standardiser, channel normaliser, vocabulary, series
/// scale) fitted on the training part alone (tables always; images already in [0, 1] only with
/// `--normalize`), so that validation scores are as honest as test scores.
pub struct Prepared {
    pub train: Data,
    /// Held out of the training data for validation: a seeded stratified split, or for series
    /// the windows after the training ones in time.
    pub valid: Data,
    pub test: Data,
    pub task: Task,
    pub scaler: Option<Scaler>,
    /// Regression tables: the targets' standardisation (saved as `target_scaler.json`); the
    /// model learns the scaled targets, and its outputs are mapped back for metrics and
    /// predictions.
    pub targets: Option<TargetScaler>,
    /// Its column names.
    pub columns: Columns,
    /// For series: the windows, to turn test outputs into forecasts and compare baselines.
    pub forecast: Option<Windows>,
}

impl DataConfig {
    /// Whether the dataset comes with its own test set (MNIST, Fashion-MNIST, CIFAR-10), so
    /// that the seed and `test_split` do not choose it.
    pub fn official_test(&self) -> bool {
        matches!(
            self.dataset,
            DatasetSpec::Mnist
                | DatasetSpec::SequentialMnist
                | DatasetSpec::FashionMnist
                | DatasetSpec::Cifar10
        )
    }

    /// The short name used in run directories.
    pub fn short_name(&self) -> String {
        match &self.dataset {
            DatasetSpec::Csv(p)
            | DatasetSpec::DigitsCsv(p)
            | DatasetSpec::TextCsv(p)
            | DatasetSpec::SeriesCsv(p)
            | DatasetSpec::ImageCsv(p) => p
                .file_stem()
                .map_or("csv".into(), |s| s.to_string_lossy().into_owned()),
            DatasetSpec::Images(dir) => dir
                .file_name()
                .map_or("images".into(), |s| s.to_string_lossy().into_owned()),
            other => other.to_string(),
        }
    }

    /// Whether the samples are image files of the user's (`images:DIR`, `image-csv:PATH`).
    pub fn is_image_files(&self) -> bool {
        matches!(
            self.dataset,
            DatasetSpec::Images(_) | DatasetSpec::ImageCsv(_)
        )
    }

    /// Whether the samples are images (`[channels, height, width]`).
    pub fn is_images(&self) -> bool {
        matches!(
            self.dataset,
            DatasetSpec::Mnist
                | DatasetSpec::FashionMnist
                | DatasetSpec::Cifar10
                | DatasetSpec::DigitsCsv(_)
                | DatasetSpec::Images(_)
                | DatasetSpec::ImageCsv(_)
        )
    }

    /// Loads, splits (test, then `validation_split` of the rest for validation) and scales the
    /// data. `task` overrides the task the targets suggest (CSV only; the other datasets have
    /// one task).
    pub fn prepare(&self, task: Option<Task>, validation_split: f64) -> Result<Prepared> {
        self.labels.check().map_err(as_flag)?;
        let prepared = self.prepare_any(task, validation_split)?;
        if let Some(task) = task
            && task != prepared.task
        {
            bail!(
                "--task {task} does not fit {}: its targets are for {}",
                self.dataset,
                prepared.task
            );
        }
        Ok(prepared)
    }

    fn prepare_any(&self, task: Option<Task>, validation_split: f64) -> Result<Prepared> {
        match &self.dataset {
            DatasetSpec::Spam | DatasetSpec::TextCsv(_) => {
                return self.prepare_text(validation_split);
            }
            DatasetSpec::Airline | DatasetSpec::SeriesCsv(_) => {
                if !self.labels.keeps_all() {
                    bail!(
                        "--classes, --train-per-class and --train-samples cut labelled samples; \
                         a series is cut by time (--test-split, --validation-split)"
                    );
                }
                return self.prepare_series(validation_split);
            }
            _ => {}
        }
        let official = |train: Data, test: Data| (train, test);
        let (train, test) = match &self.dataset {
            DatasetSpec::Mnist => official(
                datasets::mnist(None, MnistSplit::Train)?,
                datasets::mnist(None, MnistSplit::Test)?,
            ),
            DatasetSpec::SequentialMnist => {
                let rows = |mut d: Data| {
                    d.sample_shape = vec![28, 28];
                    d
                };
                official(
                    rows(datasets::mnist(None, MnistSplit::Train)?),
                    rows(datasets::mnist(None, MnistSplit::Test)?),
                )
            }
            DatasetSpec::FashionMnist => official(
                datasets::fashion_mnist(None, MnistSplit::Train)?,
                datasets::fashion_mnist(None, MnistSplit::Test)?,
            ),
            DatasetSpec::Cifar10 => official(
                datasets::cifar10(None, true)?,
                datasets::cifar10(None, false)?,
            ),
            DatasetSpec::Images(_) | DatasetSpec::ImageCsv(_) => {
                let set = match &self.dataset {
                    DatasetSpec::Images(dir) => {
                        datasets::image_folder(dir, &self.images.options())?
                    }
                    DatasetSpec::ImageCsv(path) => {
                        datasets::image_list(path, &self.images.options())?
                    }
                    _ => unreachable!("matched above"),
                };
                match set.skipped.as_slice() {
                    [] => {}
                    [one] => eprintln!(
                        "kiln: skipped 1 file that is not an image by its name ({})",
                        one.display()
                    ),
                    [first, ..] => eprintln!(
                        "kiln: skipped {} files that are not images by their names ({}, ...)",
                        set.skipped.len(),
                        first.display()
                    ),
                }
                let parts = datasets::split(&set.data, self.test_split, self.seed)
                    .context("--test-split: splitting off the test set")?;
                // Read only after training: a corrupt file must not end a finished run.
                parts.second.check_readable()?;
                (parts.first, parts.second)
            }
            other => {
                let all = match other {
                    DatasetSpec::Digits => {
                        // 1x8x8 images of the raw intensities (0-16), standardised below as
                        // any table: `kiln predict` reads the same 64 values.
                        let d = datasets::digits();
                        Data::new(d.x, vec![1, 8, 8], d.y)?
                    }
                    DatasetSpec::Iris => datasets::iris(),
                    DatasetSpec::Xor => synthetic::xor(1000, 0.1, self.seed),
                    DatasetSpec::Spirals => synthetic::spirals(1000, 0.02, self.seed),
                    DatasetSpec::Moons => synthetic::moons(1000, 0.1, self.seed),
                    DatasetSpec::HousePrices => synthetic::house_prices(1000, self.seed),
                    DatasetSpec::DigitsCsv(path) => datasets::digit_recognizer_train(path)?,
                    DatasetSpec::Csv(path) => {
                        let Some(target) = &self.target else {
                            bail!("--dataset csv:{} needs --target COLUMN", path.display());
                        };
                        let options = CsvOptions {
                            target: target.clone(),
                            classification: task.map(|t| t == Task::Classification),
                        };
                        datasets::load_csv(path, &options)?
                    }
                    DatasetSpec::Mnist
                    | DatasetSpec::SequentialMnist
                    | DatasetSpec::FashionMnist
                    | DatasetSpec::Cifar10
                    | DatasetSpec::Spam
                    | DatasetSpec::TextCsv(_)
                    | DatasetSpec::Airline
                    | DatasetSpec::SeriesCsv(_)
                    | DatasetSpec::Images(_)
                    | DatasetSpec::ImageCsv(_) => {
                        unreachable!("handled above")
                    }
                };
                let parts = datasets::split(&all, self.test_split, self.seed)
                    .context("--test-split: splitting off the test set")?;
                (parts.first, parts.second)
            }
        };
        let labels = &self.labels;
        let (train, test) = (
            labels.keep_classes(&train).map_err(as_flag)?,
            labels.keep_classes(&test).map_err(as_flag)?,
        );
        let parts = datasets::split(&train, validation_split, self.seed)
            .context("--validation-split: splitting off the validation set")?;
        let valid = parts.second;
        let train = labels
            .cut_training(&parts.first, self.seed)
            .map_err(as_flag)?;
        let data_task = if train.is_classification() {
            Task::Classification
        } else {
            Task::Regression
        };
        let sequences = self.dataset == DatasetSpec::SequentialMnist;
        let scaler = match (self.is_images() || sequences, self.normalize && !sequences) {
            (false, _) => Some(Scaler::Standardizer(Standardizer::fit(&train))),
            (true, true) => Some(Scaler::Channels(ChannelNormalizer::fit(&train)?)),
            (true, false) => None,
        };
        let targets = if self.scale_targets {
            TargetScaler::fit(&train)
        } else {
            None
        };
        let columns = self.columns(&train)?;
        let (mut train, mut valid, mut test) = (train, valid, test);
        for part in [&mut train, &mut valid, &mut test] {
            if let Some(scaler) = &scaler {
                scaler.transform(part)?;
            }
            if let Some(targets) = &targets {
                targets.transform(part)?;
            }
        }
        Ok(Prepared {
            train,
            valid,
            test,
            task: data_task,
            scaler,
            targets,
            columns,
            forecast: None,
        })
    }

    /// The names of the columns of `train`'s data.
    fn columns(&self, train: &Data) -> Result<Columns> {
        let features = match &self.dataset {
            DatasetSpec::Csv(path) => {
                let target = self.target.as_deref().unwrap_or_default();
                let header = datasets::csv_header(path)?;
                Some(header.into_iter().filter(|c| c != target).collect())
            }
            DatasetSpec::Iris => Some(
                ["sepal_length", "sepal_width", "petal_length", "petal_width"]
                    .map(String::from)
                    .to_vec(),
            ),
            DatasetSpec::HousePrices => Some(["area", "location"].map(String::from).to_vec()),
            DatasetSpec::Xor | DatasetSpec::Spirals | DatasetSpec::Moons => {
                Some(["x1", "x2"].map(String::from).to_vec())
            }
            _ => None,
        };
        let (targets, classes) = match &train.y {
            datasets::Targets::Classes { names, .. } => {
                let target = match &self.dataset {
                    DatasetSpec::Iris => "species",
                    DatasetSpec::Digits
                    | DatasetSpec::Mnist
                    | DatasetSpec::SequentialMnist
                    | DatasetSpec::DigitsCsv(_) => "digit",
                    _ => self.target.as_deref().unwrap_or("class"),
                };
                (vec![target.to_string()], names.clone())
            }
            datasets::Targets::Values { names, .. } => (names.clone(), Vec::new()),
            datasets::Targets::Unlabelled { .. } => (Vec::new(), Vec::new()),
        };
        Ok(Columns {
            features,
            targets,
            classes,
        })
    }

    /// Texts: seeded stratified splits, then a vocabulary fitted on the training texts (or a
    /// pre-trained run's, [`SequenceOptions::vocabulary_from`]). For pre-training, the texts
    /// alone, split at random, the vocabulary ending in `<mask>`.
    fn prepare_text(&self, validation_split: f64) -> Result<Prepared> {
        let options = &self.sequence;
        let set = match &self.dataset {
            DatasetSpec::Spam => datasets::spam(None)?,
            DatasetSpec::TextCsv(path) if self.pretrain => {
                let Some(column) = &options.text_column else {
                    bail!(
                        "--dataset text-csv:{} needs --text-column COLUMN",
                        path.display()
                    );
                };
                let texts = datasets::load_texts_csv(path, column)?;
                TextSet {
                    labels: vec![0; texts.len()],
                    texts,
                    classes: Vec::new(),
                }
            }
            DatasetSpec::TextCsv(path) => {
                let (Some(column), Some(target)) = (&options.text_column, &self.target) else {
                    bail!(
                        "--dataset text-csv:{} needs --text-column COLUMN and --target COLUMN",
                        path.display()
                    );
                };
                datasets::load_text_csv(path, column, target)?
            }
            other => unreachable!("{other} is not text"),
        };
        let set = match self.pretrain {
            // One class: the splits are at random, the labels never read.
            true => TextSet {
                labels: vec![0; set.len()],
                classes: vec!["text".into()],
                texts: set.texts,
            },
            false => self.labels.keep_text_classes(&set).map_err(as_flag)?,
        };
        let (train, test) = set
            .split(self.test_split, self.seed)
            .context("--test-split: splitting off the test set")?;
        let (train, valid) = train
            .split(validation_split, self.seed)
            .context("--validation-split: splitting off the validation set")?;
        let encoder = match &options.vocabulary_from {
            Some(run) => pretrained_vocabulary(run, options)?,
            None if self.pretrain => TextEncoder::fit(
                &train.texts,
                options.tokenizer,
                options.seq_len.unwrap_or(200),
                options.min_freq,
                options.vocab_size.saturating_sub(1),
            )
            .with_mask_token(),
            None => {
                let train = self.labels.cut_texts(&train, self.seed).map_err(as_flag)?;
                TextEncoder::fit(
                    &train.texts,
                    options.tokenizer,
                    options.seq_len.unwrap_or(200),
                    options.min_freq,
                    options.vocab_size,
                )
            }
        };
        if self.pretrain {
            let train = encoder.encode_texts(&train.texts);
            return Ok(Prepared {
                columns: self.columns(&train)?,
                train,
                valid: encoder.encode_texts(&valid.texts),
                test: encoder.encode_texts(&test.texts),
                task: Task::Classification,
                scaler: Some(Scaler::Text(encoder)),
                targets: None,
                forecast: None,
            });
        }
        let train = self.labels.cut_texts(&train, self.seed).map_err(as_flag)?;
        let train = encoder.encode_set(&train);
        Ok(Prepared {
            columns: self.columns(&train)?,
            train,
            valid: encoder.encode_set(&valid),
            test: encoder.encode_set(&test),
            task: Task::Classification,
            scaler: Some(Scaler::Text(encoder)),
            targets: None,
            forecast: None,
        })
    }

    /// Series: windows split by time; the last `test_split` of the steps are forecast in test,
    /// the last `validation_split` of those before them in validation.
    fn prepare_series(&self, validation_split: f64) -> Result<Prepared> {
        let options = &self.sequence;
        let series = match &self.dataset {
            DatasetSpec::Airline => datasets::airline(),
            DatasetSpec::SeriesCsv(path) => {
                let Some(column) = &options.column else {
                    bail!(
                        "--dataset series-csv:{} needs --column COLUMN",
                        path.display()
                    );
                };
                datasets::load_series_csv(path, column)?
            }
            other => unreachable!("{other} is not a series"),
        };
        let windows = Windows::new(
            &series,
            &WindowConfig {
                input_len: options.seq_len.unwrap_or(12),
                horizon: options.horizon,
                test_fraction: self.test_split,
                validation_fraction: validation_split,
                season: options.season,
            },
        )?;
        Ok(Prepared {
            train: windows.train.clone(),
            valid: windows.valid.clone(),
            test: windows.test.clone(),
            task: Task::Regression,
            scaler: Some(Scaler::Series(windows.scaler.clone())),
            targets: None,
            columns: self.columns(&windows.train)?,
            forecast: Some(windows),
        })
    }
}

/// The vocabulary and tokeniser of the run in `dir` (its `scaler.json`), with `--seq-len` when
/// given: a model fine-tuned from a pre-trained one reads its token ids.
fn pretrained_vocabulary(dir: &Path, options: &SequenceOptions) -> Result<TextEncoder> {
    let path = dir.join("scaler.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the vocabulary of the pre-trained run: {}",
            path.display()
        )
    })?;
    let Ok(Scaler::Text(encoder)) = serde_json::from_str::<Scaler>(&text) else {
        bail!(
            "{}: not a run on texts, so it has no vocabulary to read these texts with",
            dir.display()
        );
    };
    Ok(TextEncoder::new(
        encoder.tokenizer,
        options.seq_len.unwrap_or(encoder.seq_len),
        encoder.vocabulary,
    ))
}

/// `dir` when it is a run on texts (its `scaler.json` a vocabulary): the run a model fine-tuned
/// with `--init-from dir` takes its vocabulary from.
pub fn text_run(dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(dir.join("scaler.json")).ok()?;
    matches!(serde_json::from_str(&text), Ok(Scaler::Text(_)))
        .then(|| std::fs::canonicalize(dir).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for name in [
            "digits",
            "iris",
            "mnist",
            "sequential-mnist",
            "fashion-mnist",
            "cifar10",
            "digits-csv:train.csv",
            "xor",
            "spirals",
            "moons",
            "house-prices",
            "csv:a/b.csv",
            "spam",
            "airline",
            "text-csv:t.csv",
            "series-csv:s.csv",
        ] {
            assert_eq!(name.parse::<DatasetSpec>().unwrap().to_string(), name);
        }
        let e = "cifar".parse::<DatasetSpec>().unwrap_err();
        assert!(e.contains("valid: digits, iris, mnist"), "{e}");
    }

    /// Mean and (population) variance of some values.
    fn moments(values: impl Iterator<Item = f32>) -> (f64, f64) {
        let v: Vec<f64> = values.map(f64::from).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        (mean, var)
    }

    #[test]
    fn digits_are_split_and_standardised_on_the_training_part() {
        let config = DataConfig {
            dataset: DatasetSpec::Digits,
            target: None,
            test_split: 0.2,
            seed: 1,
            normalize: false,
            sequence: SequenceOptions::default(),
            scale_targets: true,
            labels: LabelSubset::default(),
            images: ImageSettings::default(),
            pretrain: false,
        };
        let p = config.prepare(None, 0.25).unwrap();
        assert_eq!(
            (p.train.len(), p.valid.len(), p.test.len()),
            (1078, 360, 359)
        );
        assert_eq!(p.task, Task::Classification);
        // The standardiser's statistics are the training part's alone: there, each feature has
        // mean 0 and variance 1; validation and test were scaled with the same statistics.
        let feature_20 = |d: &Data| moments((0..d.len()).map(|i| d.sample(i)[20]));
        let (mean, var) = feature_20(&p.train);
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
            "{mean} {var}"
        );
        let (mean, var) = feature_20(&p.valid);
        assert!(
            mean.abs() > 1e-3 && (var - 1.0).abs() > 1e-3,
            "{mean} {var}"
        );
        assert!(config.prepare(Some(Task::Regression), 0.25).is_err());
    }

    /// The vocabulary is fitted on the training texts alone: a word seen only in validation or
    /// test texts is UNK there.
    #[test]
    fn the_vocabulary_sees_only_the_training_texts() {
        let path = std::env::temp_dir().join(format!("kiln-vocab-{}.csv", std::process::id()));
        // Text i: a word all texts share, then a word of its own, twice (min_freq 2).
        let rows: String = (0..100)
            .map(|i| format!("common own{i} own{i},{}\n", ["a", "b"][i % 2]))
            .collect();
        std::fs::write(&path, format!("text,label\n{rows}")).unwrap();
        let config = DataConfig {
            dataset: DatasetSpec::TextCsv(path.clone()),
            target: Some("label".into()),
            test_split: 0.2,
            seed: 1,
            normalize: false,
            sequence: SequenceOptions {
                text_column: Some("text".into()),
                seq_len: Some(3),
                ..SequenceOptions::default()
            },
            scale_targets: true,
            labels: LabelSubset::default(),
            images: ImageSettings::default(),
            pretrain: false,
        };
        let p = config.prepare(None, 0.25).unwrap();
        std::fs::remove_file(path).unwrap();
        assert_eq!((p.train.len(), p.valid.len(), p.test.len()), (60, 20, 20));
        const UNK: f32 = 1.0;
        let own_word = |d: &Data| (0..d.len()).map(|i| d.sample(i)[1]).collect::<Vec<_>>();
        assert!(own_word(&p.train).iter().all(|&id| id > UNK));
        assert!(own_word(&p.valid).iter().all(|&id| id == UNK));
        assert!(own_word(&p.test).iter().all(|&id| id == UNK));
    }

    /// `--normalize`'s channel statistics are the training part's alone: there the pixels have
    /// mean 0 and variance 1, in the validation part they do not.
    #[test]
    fn image_normalisation_sees_only_the_training_images() {
        let path = std::env::temp_dir().join(format!("kiln-norm-{}.csv", std::process::id()));
        let header: Vec<String> = (0..784).map(|i| format!("pixel{i}")).collect();
        let mut text = format!("label,{}\n", header.join(","));
        for i in 0..100usize {
            // Brighter images for later rows: each split's mean differs.
            let pixels: Vec<String> = (0..784).map(|p| ((i * 2 + p) % 256).to_string()).collect();
            text.push_str(&format!("{},{}\n", i % 10, pixels.join(",")));
        }
        std::fs::write(&path, text).unwrap();
        let config = DataConfig {
            dataset: DatasetSpec::DigitsCsv(path.clone()),
            target: None,
            test_split: 0.2,
            seed: 1,
            normalize: true,
            sequence: SequenceOptions::default(),
            scale_targets: true,
            labels: LabelSubset::default(),
            images: ImageSettings::default(),
            pretrain: false,
        };
        let p = config.prepare(None, 0.25).unwrap();
        std::fs::remove_file(path).unwrap();
        assert!(matches!(p.scaler, Some(Scaler::Channels(_))));
        let (mean, var) = moments(p.train.x.iter().copied());
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "{mean} {var}"
        );
        let (mean, var) = moments(p.valid.x.iter().copied());
        assert!(
            mean.abs() > 1e-3 || (var - 1.0).abs() > 1e-3,
            "{mean} {var}"
        );
    }
}
