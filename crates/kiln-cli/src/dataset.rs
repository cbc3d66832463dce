//! The datasets the CLI knows by name, and how each is split and scaled.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use kiln::datasets::{self, CsvOptions, Data, MnistSplit, Standardizer, synthetic};
use kiln::train::Task;
use serde::{Deserialize, Serialize};

/// A dataset named on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DatasetSpec {
    Digits,
    Iris,
    Mnist,
    Xor,
    Spirals,
    Moons,
    HousePrices,
    Csv(PathBuf),
}

const NAMES: &str = "digits, iris, mnist, xor, spirals, moons, house-prices, csv:PATH";

impl FromStr for DatasetSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "digits" => DatasetSpec::Digits,
            "iris" => DatasetSpec::Iris,
            "mnist" => DatasetSpec::Mnist,
            "xor" => DatasetSpec::Xor,
            "spirals" => DatasetSpec::Spirals,
            "moons" => DatasetSpec::Moons,
            "house-prices" => DatasetSpec::HousePrices,
            other => match other.strip_prefix("csv:") {
                Some(path) if !path.is_empty() => DatasetSpec::Csv(path.into()),
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
}

/// A dataset ready for training: the training part, the test part the trainer never sees, and
/// the standardiser fitted on the training part (tables only; images are already in [0, 1]).
pub struct Prepared {
    pub train: Data,
    pub test: Data,
    pub task: Task,
    pub scaler: Option<Standardizer>,
}

impl DataConfig {
    /// The short name used in run directories.
    pub fn short_name(&self) -> String {
        match &self.dataset {
            DatasetSpec::Csv(p) => p
                .file_stem()
                .map_or("csv".into(), |s| s.to_string_lossy().into_owned()),
            other => other.to_string(),
        }
    }

    /// Loads, splits and (for tables) standardises the data. `task` overrides the task the
    /// targets suggest (CSV only; the other datasets have one task).
    pub fn prepare(&self, task: Option<Task>) -> Result<Prepared> {
        let (train, test) = match &self.dataset {
            DatasetSpec::Mnist => (
                datasets::mnist(None, MnistSplit::Train)?,
                datasets::mnist(None, MnistSplit::Test)?,
            ),
            other => {
                let all = match other {
                    DatasetSpec::Digits => datasets::digits(),
                    DatasetSpec::Iris => datasets::iris(),
                    DatasetSpec::Xor => synthetic::xor(1000, 0.1, self.seed),
                    DatasetSpec::Spirals => synthetic::spirals(1000, 0.02, self.seed),
                    DatasetSpec::Moons => synthetic::moons(1000, 0.1, self.seed),
                    DatasetSpec::HousePrices => synthetic::house_prices(1000, self.seed),
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
                    DatasetSpec::Mnist => unreachable!("handled above"),
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
        let (mut train, mut test) = (train, test);
        let scaler = match self.dataset {
            DatasetSpec::Mnist => None,
            _ => {
                let scaler = Standardizer::fit(&train);
                scaler.transform(&mut train)?;
                scaler.transform(&mut test)?;
                Some(scaler)
            }
        };
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
