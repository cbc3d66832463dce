use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The validation quantity a callback watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Validation loss; lower is better.
    ValLoss,
    /// Validation accuracy; higher is better.
    ValAccuracy,
}

impl Monitor {
    /// Keras's name for it (`val_loss`, `val_accuracy`).
    pub fn name(&self) -> &'static str {
        match self {
            Monitor::ValLoss => "val_loss",
            Monitor::ValAccuracy => "val_accuracy",
        }
    }

    /// Whether larger values are better (accuracy) or smaller (loss).
    pub fn higher_is_better(&self) -> bool {
        matches!(self, Monitor::ValAccuracy)
    }
}

impl fmt::Display for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Monitor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "val_loss" => Ok(Monitor::ValLoss),
            "val_accuracy" => Ok(Monitor::ValAccuracy),
            other => Err(format!(
                "unknown monitor `{other}` (valid: val_loss, val_accuracy)"
            )),
        }
    }
}

/// Stop training when the monitored quantity has stopped improving, as Keras's `EarlyStopping`.
///
/// An epoch improves on the best so far when it beats it by more than `min_delta` (lower for
/// `val_loss`, higher for `val_accuracy`). Training stops once `patience` epochs in a row have
/// not improved. With `restore_best_weights`, the model returned is the one of the best epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// What to watch. Default: `val_loss`.
    pub monitor: Monitor,
    /// Smallest change that counts as an improvement. Default: 0.
    pub min_delta: f64,
    /// Epochs without improvement before stopping. Default: 5.
    pub patience: usize,
    /// Return the best epoch's weights rather than the last epoch's. Default: true.
    pub restore_best_weights: bool,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        Self {
            monitor: Monitor::ValLoss,
            min_delta: 0.0,
            patience: 5,
            restore_best_weights: true,
        }
    }
}

impl EarlyStopping {
    /// Checks the rule's values once, up front.
    pub fn check(&self) -> Result<(), TrainError> {
        if !(self.min_delta >= 0.0 && self.min_delta.is_finite()) {
            return Err(TrainError::option(
                "min_delta",
                format!("must be >= 0, got {}", self.min_delta),
            ));
        }
        if self.patience == 0 {
            return Err(TrainError::option("patience", "must be at least 1"));
        }
        Ok(())
    }

    /// Whether `current` improves on `best` by more than `min_delta`.
    pub fn improves(&self, current: f64, best: f64) -> bool {
        if self.monitor.higher_is_better() {
            current > best + self.min_delta
        } else {
            current < best - self.min_delta
        }
    }
}

/// Keras's bookkeeping for one run: the best value and its epoch, and epochs waited since.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tracker {
    pub best: Option<(usize, f64)>,
    pub wait: usize,
    pub stopped_at: Option<usize>,
}

impl Tracker {
    /// Records `value` for `epoch` and says whether it improved on the best.
    pub fn observe(&mut self, rule: &EarlyStopping, epoch: usize, value: f64) -> bool {
        let improved = match self.best {
            None => true,
            Some((_, best)) => rule.improves(value, best),
        };
        if improved {
            self.best = Some((epoch, value));
            self.wait = 0;
        } else {
            self.wait += 1;
        }
        improved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `values` (one per epoch) to a tracker, as the hook does; returns the epoch at
    /// which training stops, if it does.
    fn run(rule: &EarlyStopping, values: &[f64]) -> (Option<usize>, Tracker) {
        let mut t = Tracker::default();
        for (i, &v) in values.iter().enumerate() {
            t.observe(rule, i + 1, v);
            if t.wait >= rule.patience {
                return (Some(i + 1), t);
            }
        }
        (None, t)
    }

    #[test]
    fn stops_after_exactly_patience_epochs_without_improvement() {
        let rule = EarlyStopping {
            patience: 3,
            ..Default::default()
        };
        // Improves until epoch 3, then a plateau.
        let (stop, t) = run(&rule, &[1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7]);
        assert_eq!(stop, Some(6));
        assert_eq!(t.best, Some((3, 0.7)));
    }

    #[test]
    fn min_delta_ignores_tiny_improvements() {
        let rule = EarlyStopping {
            patience: 2,
            min_delta: 0.05,
            ..Default::default()
        };
        let (stop, t) = run(&rule, &[1.0, 0.97, 0.96, 0.5]);
        assert_eq!(stop, Some(3), "0.97 and 0.96 are within min_delta of 1.0");
        assert_eq!(t.best, Some((1, 1.0)));
    }

    #[test]
    fn accuracy_is_maximised() {
        let rule = EarlyStopping {
            monitor: Monitor::ValAccuracy,
            patience: 1,
            ..Default::default()
        };
        let (stop, t) = run(&rule, &[0.5, 0.7, 0.6]);
        assert_eq!(stop, Some(3));
        assert_eq!(t.best, Some((2, 0.7)));
    }
}
