//! The datasets the CLI knows by name, and how each is split and scaled.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use kiln::datasets::{
    self, ChannelNormalizer, CsvOptions, Data, MnistSplit, Standardizer, synthetic,
};
use kiln::train::Task;
use serde::{Deserialize, Serialize};

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
}

const NAMES: &str = "digits, iris, mnist, sequential-mnist, fashion-mnist, cifar10, xor, spirals, moons, \
                     house-prices, csv:PATH, digits-csv:PATH";

impl FromStr for DatasetSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
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
            other => match (
                other.strip_prefix("csv:"),
                other.strip_prefix("digits-csv:"),
            ) {
                (Some(path), _) if !path.is_empty() => DatasetSpec::Csv(path.into()),
                (_, Some(path)) if !path.is_empty() => DatasetSpec::DigitsCsv(path.into()),
                _ => return Err(format!("unknown dataset `{other}` (valid: {NAMES})")),
            },
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
        }
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
}

/// How features were scaled, fitted on the training split only; saved as `scaler.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scaler {
    /// Tables: per-feature standardisation.
    Standardizer(Standardizer),
    /// Images with `--normalize`: per-channel normalisation.
    Channels(ChannelNormalizer),
}

impl Scaler {
    pub fn transform(&self, data: &mut Data) -> Result<()> {
        match self {
            Scaler::Standardizer(s) => s.transform(data)?,
            Scaler::Channels(c) => c.transform(data)?,
        }
        Ok(())
    }
}

/// A dataset ready for training: the training part, the test part the trainer never sees, and
/// the scaler fitted on the training part (tables always; images already in [0, 1] only with
/// `--normalize`).
pub struct Prepared {
    pub train: Data,
    pub test: Data,
    pub task: Task,
    pub scaler: Option<Scaler>,
}

impl DataConfig {
    /// The short name used in run directories.
    pub fn short_name(&self) -> String {
        match &self.dataset {
            DatasetSpec::Csv(p) | DatasetSpec::DigitsCsv(p) => p
                .file_stem()
                .map_or("csv".into(), |s| s.to_string_lossy().into_owned()),
            other => other.to_string(),
        }
    }

    /// Whether the samples are images (`[channels, height, width]`).
    pub fn is_images(&self) -> bool {
        matches!(
            self.dataset,
            DatasetSpec::Mnist
                | DatasetSpec::FashionMnist
                | DatasetSpec::Cifar10
                | DatasetSpec::DigitsCsv(_)
        )
    }

    /// Loads, splits and scales the data. `task` overrides the task the targets suggest (CSV
    /// only; the other datasets have one task).
    pub fn prepare(&self, task: Option<Task>) -> Result<Prepared> {
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
            other => {
                let all = match other {
                    DatasetSpec::Digits => datasets::digits(),
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
                    | DatasetSpec::Cifar10 => {
                        unreachable!("official splits are handled above")
                    }
                };
                let parts = datasets::split(&all, self.test_split, self.seed)
                    .context("splitting off the test set")?;
                (parts.first, parts.second)
            }
        };
        let data_task = if train.is_classification() {
            Task::Classification
        } else {
            Task::Regression
        };
        if let Some(task) = task
            && task != data_task
        {
            bail!(
                "--task {task} does not fit {}: its targets are for {data_task}",
                self.dataset
            );
        }
        let sequences = self.dataset == DatasetSpec::SequentialMnist;
        let scaler = match (self.is_images() || sequences, self.normalize && !sequences) {
            (false, _) => Some(Scaler::Standardizer(Standardizer::fit(&train))),
            (true, true) => Some(Scaler::Channels(ChannelNormalizer::fit(&train)?)),
            (true, false) => None,
        };
        let (mut train, mut test) = (train, test);
        if let Some(scaler) = &scaler {
            scaler.transform(&mut train)?;
            scaler.transform(&mut test)?;
        }
        Ok(Prepared {
            train,
            test,
            task: data_task,
            scaler,
        })
    }
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
        ] {
            assert_eq!(name.parse::<DatasetSpec>().unwrap().to_string(), name);
        }
        let e = "cifar".parse::<DatasetSpec>().unwrap_err();
        assert!(e.contains("valid: digits, iris, mnist"), "{e}");
    }

    #[test]
    fn digits_are_split_and_standardised_on_the_training_part() {
        let config = DataConfig {
            dataset: DatasetSpec::Digits,
            target: None,
            test_split: 0.2,
            seed: 1,
            normalize: false,
        };
        let p = config.prepare(None).unwrap();
        assert_eq!(p.train.len() + p.test.len(), 1797);
        assert_eq!(p.task, Task::Classification);
        let mean0: f32 = (0..p.train.len())
            .map(|i| p.train.sample(i)[20])
            .sum::<f32>()
            / p.train.len() as f32;
        assert!(mean0.abs() < 1e-4);
        assert!(config.prepare(Some(Task::Regression)).is_err());
    }
}
