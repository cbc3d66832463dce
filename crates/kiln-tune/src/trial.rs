//! A trial as the study's storage keeps it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::space::Params;

/// Where a trial is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    /// Training now (or its worker died: see [`crate::Study::ask`]'s reclaiming).
    Running,
    /// Trained to its end (or its early stopping).
    Complete,
    /// Stopped by the pruner.
    Pruned,
    /// Its training failed (a diverged loss, a bad combination of flags).
    Failed,
}

impl TrialState {
    /// The state's name in tune.csv and the database.
    pub fn name(self) -> &'static str {
        match self {
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Pruned => "pruned",
            TrialState::Failed => "failed",
        }
    }
}

impl fmt::Display for TrialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TrialState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "running" => Ok(TrialState::Running),
            "complete" => Ok(TrialState::Complete),
            "pruned" => Ok(TrialState::Pruned),
            "failed" => Ok(TrialState::Failed),
            other => Err(format!("unknown trial state `{other}`")),
        }
    }
}

/// Whether the objective is better low (a loss) or high (an accuracy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Lower is better (a loss).
    Minimize,
    /// Higher is better (an accuracy).
    Maximize,
}

impl Direction {
    /// The direction a metric of this name is better in: losses and errors low, the rest high.
    pub fn for_metric(name: &str) -> Self {
        let low = ["loss", "error", "mae", "mse", "rmse", "perplexity"];
        if low.iter().any(|w| name.contains(w)) {
            Direction::Minimize
        } else {
            Direction::Maximize
        }
    }

    /// Whether `a` is better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Minimize => a < b,
            Direction::Maximize => a > b,
        }
    }

    /// `value` as a cost: itself when minimising, negated when maximising.
    pub fn cost(self, value: f64) -> f64 {
        match self {
            Direction::Minimize => value,
            Direction::Maximize => -value,
        }
    }

    /// The best of `values` (`None` when there are none).
    pub fn best(self, values: impl IntoIterator<Item = f64>) -> Option<f64> {
        values
            .into_iter()
            .filter(|v| !v.is_nan())
            .fold(None, |best, v| match best {
                Some(b) if !self.better(v, b) => Some(b),
                _ => Some(v),
            })
    }
}

/// One trial: its number in the study, its values, and what it reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// The database's key of the trial.
    pub id: i64,
    /// Its number in the study, from 0, in the order trials were asked for.
    pub number: u64,
    /// Where it is.
    pub state: TrialState,
    /// Its hyperparameters' values.
    pub params: Params,
    /// The objective: the best value it reported (complete and pruned trials).
    pub value: Option<f64>,
    /// The value reported after each epoch, `(epoch, value)`, epochs from 1, in order.
    pub intermediate: Vec<(u32, f64)>,
    /// Who is running it: `host:pid`.
    pub owner: String,
    /// When its owner last said it is alive (seconds since the Unix epoch).
    pub heartbeat: f64,
    /// Why it failed.
    pub message: Option<String>,
}

impl TrialRecord {
    /// Epochs it ran: the last epoch it reported.
    pub fn epochs(&self) -> u32 {
        self.intermediate.last().map_or(0, |(e, _)| *e)
    }

    /// Its value at `epoch`, if it reported one.
    pub fn value_at(&self, epoch: u32) -> Option<f64> {
        self.intermediate
            .iter()
            .find(|(e, _)| *e == epoch)
            .map(|(_, v)| *v)
    }

    /// Its best value over the epochs up to `epoch`.
    pub fn best_until(&self, epoch: u32, direction: Direction) -> Option<f64> {
        direction.best(
            self.intermediate
                .iter()
                .filter(|(e, _)| *e <= epoch)
                .map(|(_, v)| *v),
        )
    }

    /// Whether it is finished (complete, pruned or failed).
    pub fn finished(&self) -> bool {
        self.state != TrialState::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_follow_the_metric_names() {
        assert_eq!(Direction::for_metric("val_loss"), Direction::Minimize);
        assert_eq!(Direction::for_metric("val_rmse"), Direction::Minimize);
        assert_eq!(Direction::for_metric("val_accuracy"), Direction::Maximize);
        assert_eq!(
            Direction::Maximize.best([0.5, 0.9, f64::NAN, 0.7]),
            Some(0.9)
        );
        assert_eq!(Direction::Minimize.best([0.5, 0.9, 0.2]), Some(0.2));
        assert_eq!(Direction::Minimize.best([]), None);
    }
}
