//! When to stop a trial early: the median rule, or successive halving (ASHA).

use serde::{Deserialize, Serialize};

use crate::TuneError;
use crate::trial::{Direction, TrialRecord, TrialState};

/// A study's pruner: asked after every epoch a trial reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Pruner {
    /// Every trial runs to its end.
    #[default]
    None,
    /// Optuna's `MedianPruner`: after `warmup_epochs`, a trial stops when its best value so far
    /// is worse than the median of the complete trials' values at the same epoch; nothing is
    /// pruned before `startup_trials` trials are complete.
    Median {
        /// Complete trials before pruning starts. Default 5.
        startup_trials: usize,
        /// Epochs every trial runs before it may be pruned. Default 0.
        warmup_epochs: u32,
    },
    /// Asynchronous successive halving (Li et al. 2020, "A System for Massively Parallel
    /// Hyperparameter Tuning"; Optuna's `SuccessiveHalvingPruner`): rungs at epochs
    /// `min_epochs * reduction_factor^k`. A trial reaching a rung goes on only if its best
    /// value so far is in the best `1 / reduction_factor` of the values every trial had at
    /// that rung (while fewer than `reduction_factor` trials have reached it: only if it is
    /// the best of them).
    Asha {
        /// The first rung's epoch. Default 1.
        min_epochs: u32,
        /// How much each rung thins the trials out. Default 3.
        reduction_factor: u32,
    },
}

impl Pruner {
    /// The pruner named on the command line: `none`, `median`, `asha`; its options default.
    pub fn named(name: &str) -> Result<Self, TuneError> {
        match name {
            "none" => Ok(Pruner::None),
            "median" => Ok(Pruner::Median {
                startup_trials: 5,
                warmup_epochs: 0,
            }),
            "asha" => Ok(Pruner::Asha {
                min_epochs: 1,
                reduction_factor: 3,
            }),
            other => Err(TuneError::InvalidOption {
                option: "pruner",
                reason: format!("unknown pruner `{other}` (none, median, asha)"),
            }),
        }
    }

    /// Its name: `none`, `median` or `asha`.
    pub fn name(&self) -> &'static str {
        match self {
            Pruner::None => "none",
            Pruner::Median { .. } => "median",
            Pruner::Asha { .. } => "asha",
        }
    }

    /// Checks its options.
    pub fn check(&self) -> Result<(), TuneError> {
        match self {
            Pruner::Asha {
                min_epochs,
                reduction_factor,
            } => {
                if *min_epochs == 0 {
                    return Err(TuneError::InvalidOption {
                        option: "min_epochs",
                        reason: "must be at least 1".into(),
                    });
                }
                if *reduction_factor < 2 {
                    return Err(TuneError::InvalidOption {
                        option: "reduction_factor",
                        reason: format!("must be at least 2, got {reduction_factor}"),
                    });
                }
                Ok(())
            }
            Pruner::None | Pruner::Median { .. } => Ok(()),
        }
    }

    /// Whether `trial`, having just reported `epoch`, should stop; `trials` are the study's
    /// trials (it among them or not).
    pub fn should_prune(
        &self,
        trial: &TrialRecord,
        epoch: u32,
        trials: &[TrialRecord],
        direction: Direction,
    ) -> bool {
        let Some(best) = trial.best_until(epoch, direction) else {
            return false;
        };
        let others = || trials.iter().filter(move |t| t.number != trial.number);
        match *self {
            Pruner::None => false,
            Pruner::Median {
                startup_trials,
                warmup_epochs,
            } => {
                if epoch <= warmup_epochs {
                    return false;
                }
                let complete: Vec<&TrialRecord> = others()
                    .filter(|t| t.state == TrialState::Complete)
                    .collect();
                if complete.len() < startup_trials.max(1) {
                    return false;
                }
                let mut at_epoch: Vec<f64> = complete
                    .iter()
                    .filter_map(|t| t.value_at(epoch))
                    .filter(|v| !v.is_nan())
                    .collect();
                if at_epoch.is_empty() {
                    return false;
                }
                at_epoch.sort_by(f64::total_cmp);
                let n = at_epoch.len();
                let median = if n % 2 == 1 {
                    at_epoch[n / 2]
                } else {
                    (at_epoch[n / 2 - 1] + at_epoch[n / 2]) / 2.0
                };
                direction.better(median, best)
            }
            Pruner::Asha {
                min_epochs,
                reduction_factor,
            } => {
                if rung_index(epoch, min_epochs, reduction_factor).is_none() {
                    return false;
                }
                // Every trial's best value up to this rung, this one's included.
                let mut competing: Vec<f64> = others()
                    .filter(|t| t.epochs() >= epoch)
                    .filter_map(|t| t.best_until(epoch, direction))
                    .map(|v| direction.cost(v))
                    .collect();
                competing.push(direction.cost(best));
                competing.sort_by(f64::total_cmp);
                let promotable = (competing.len() / reduction_factor as usize).max(1) - 1;
                direction.cost(best) > competing[promotable]
            }
        }
    }
}

/// The rung `epoch` is, if it is one: `min_epochs * factor^k` is rung `k`.
fn rung_index(epoch: u32, min_epochs: u32, factor: u32) -> Option<u32> {
    let mut at = u64::from(min_epochs);
    for k in 0..32 {
        match at.cmp(&u64::from(epoch)) {
            std::cmp::Ordering::Equal => return Some(k),
            std::cmp::Ordering::Greater => return None,
            std::cmp::Ordering::Less => at *= u64::from(factor),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::Params;

    fn trial(number: u64, state: TrialState, values: &[f64]) -> TrialRecord {
        TrialRecord {
            id: number as i64,
            number,
            state,
            params: Params::new(),
            value: None,
            intermediate: values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u32 + 1, *v))
                .collect(),
            owner: String::new(),
            heartbeat: 0.0,
            message: None,
        }
    }

    #[test]
    fn rungs_are_powers_of_the_factor() {
        let rungs: Vec<u32> = (1..=30)
            .filter(|&e| rung_index(e, 1, 3).is_some())
            .collect();
        assert_eq!(rungs, vec![1, 3, 9, 27]);
        let rungs: Vec<u32> = (1..=30)
            .filter(|&e| rung_index(e, 2, 2).is_some())
            .collect();
        assert_eq!(rungs, vec![2, 4, 8, 16]);
    }

    /// Four trials at rung 1 (epoch 1) with losses 0.1, 0.2, 0.3, 0.4 and factor 2: the best
    /// half (0.1, 0.2) goes on, a newcomer at 0.25 is cut, one at 0.15 goes on.
    #[test]
    fn asha_keeps_the_best_fraction_of_each_rung() {
        let asha = Pruner::Asha {
            min_epochs: 1,
            reduction_factor: 2,
        };
        let done: Vec<TrialRecord> = [0.1, 0.2, 0.3, 0.4]
            .iter()
            .enumerate()
            .map(|(i, &v)| trial(i as u64, TrialState::Complete, &[v, v]))
            .collect();
        let d = Direction::Minimize;
        let cut = trial(9, TrialState::Running, &[0.25]);
        assert!(asha.should_prune(&cut, 1, &done, d));
        let kept = trial(9, TrialState::Running, &[0.15]);
        assert!(!asha.should_prune(&kept, 1, &done, d));
        // Epoch 3 is no rung (rungs 1, 2, 4): never pruned there.
        let off_rung = trial(9, TrialState::Running, &[0.15, 0.9, 0.9]);
        assert!(!asha.should_prune(&off_rung, 3, &done, d));
        // The first trial at a rung is the best of one: it goes on; the second must beat it.
        assert!(!asha.should_prune(&cut, 1, &[], d));
        let first = [trial(0, TrialState::Complete, &[0.2])];
        assert!(asha.should_prune(&cut, 1, &first, d));
        // Maximising: accuracies.
        let acc: Vec<TrialRecord> = [0.9, 0.8, 0.7, 0.6]
            .iter()
            .enumerate()
            .map(|(i, &v)| trial(i as u64, TrialState::Complete, &[v]))
            .collect();
        let low = trial(9, TrialState::Running, &[0.75]);
        assert!(asha.should_prune(&low, 1, &acc, Direction::Maximize));
        let high = trial(9, TrialState::Running, &[0.85]);
        assert!(!asha.should_prune(&high, 1, &acc, Direction::Maximize));
    }

    #[test]
    fn the_median_rule_waits_for_its_startup_trials_then_cuts_the_worse_half() {
        let median = Pruner::Median {
            startup_trials: 3,
            warmup_epochs: 1,
        };
        let d = Direction::Minimize;
        let done: Vec<TrialRecord> = [[0.5, 0.3], [0.6, 0.4], [0.7, 0.5]]
            .iter()
            .enumerate()
            .map(|(i, v)| trial(i as u64, TrialState::Complete, v))
            .collect();
        let worse = trial(9, TrialState::Running, &[0.9, 0.45]);
        // Epoch 1 is warm-up; at epoch 2 the median is 0.4.
        assert!(!median.should_prune(&worse, 1, &done, d));
        assert!(median.should_prune(&worse, 2, &done, d));
        let better = trial(9, TrialState::Running, &[0.9, 0.35]);
        assert!(!median.should_prune(&better, 2, &done, d));
        // Two complete trials are fewer than the three it waits for.
        assert!(!median.should_prune(&worse, 2, &done[..2], d));
        // Pruned trials do not count towards the median.
        let mut pruned = done.clone();
        pruned[0].state = TrialState::Pruned;
        assert!(!median.should_prune(&worse, 2, &pruned, d));
    }
}
