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
    /// Hyperparameter Tuning", Algorithm 2): rungs at epochs `min_epochs * reduction_factor^k`.
    /// A trial reaching a rung goes on only if its best value so far is in the best
    /// `1 / reduction_factor` of the values every trial had there (none of fewer than
    /// `reduction_factor` trials); otherwise it pauses there. Before a new trial starts, a
    /// paused one that has since come into its rung's best `1 / reduction_factor` (worse
    /// trials having joined the rung) is promoted: handed out again, to go on from where it
    /// paused (highest rung first). Unlike Optuna's `SuccessiveHalvingPruner`, which decides
    /// once as a trial arrives and lets the first arrivals through, no rung passes on more than
    /// its share.
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
                let members = rung_members(trials, Some(trial), epoch, direction);
                let promoted = members.len() / reduction_factor as usize;
                !members[..promoted].iter().any(|t| t.id == trial.id)
            }
        }
    }

    /// The paused trial to promote before a new one starts (ASHA only): from the highest rung
    /// down, the best trial paused at a rung (pruned there, never gone on) that is in the best
    /// `1 / reduction_factor` of its rung. When no new trial may start (`last`: the trials'
    /// budget is spent) and none is complete, the best trial paused at the highest rung goes on,
    /// so that a study ends with at least one trial trained to its end.
    pub fn promotion(
        &self,
        trials: &[TrialRecord],
        direction: Direction,
        last: bool,
    ) -> Option<i64> {
        let Pruner::Asha {
            min_epochs,
            reduction_factor,
        } = *self
        else {
            return None;
        };
        let deepest = trials.iter().map(TrialRecord::epochs).max()?;
        let paused_at =
            |rung: u32, t: &TrialRecord| t.state == TrialState::Pruned && t.epochs() == rung;
        let promoted = rungs_until(deepest, min_epochs, reduction_factor)
            .rev()
            .find_map(|rung| {
                let members = rung_members(trials, None, rung, direction);
                let share = members.len() / reduction_factor as usize;
                members[..share]
                    .iter()
                    .find(|t| paused_at(rung, t))
                    .map(|t| t.id)
            });
        if promoted.is_some() || !last || trials.iter().any(|t| t.state == TrialState::Complete) {
            return promoted;
        }
        let rung = rungs_until(deepest, min_epochs, reduction_factor)
            .rev()
            .find(|&r| trials.iter().any(|t| paused_at(r, t)))?;
        rung_members(trials, None, rung, direction)
            .into_iter()
            .find(|t| paused_at(rung, t))
            .map(|t| t.id)
    }
}

/// The trials that reached epoch `rung` (`also` among them, whatever it reported since), best
/// first by their best value up to it.
fn rung_members<'a>(
    trials: &'a [TrialRecord],
    also: Option<&'a TrialRecord>,
    rung: u32,
    direction: Direction,
) -> Vec<&'a TrialRecord> {
    let mut members: Vec<(f64, &TrialRecord)> = trials
        .iter()
        .filter(|t| t.epochs() >= rung && also.is_none_or(|a| a.id != t.id))
        .chain(also)
        .filter_map(|t| Some((direction.cost(t.best_until(rung, direction)?), t)))
        .filter(|(c, _)| !c.is_nan())
        .collect();
    members.sort_by(|(a, ta), (b, tb)| a.total_cmp(b).then(ta.number.cmp(&tb.number)));
    members.into_iter().map(|(_, t)| t).collect()
}

/// The rung `epoch` is, if it is one: `min_epochs * factor^k` is rung `k`.
fn rung_index(epoch: u32, min_epochs: u32, factor: u32) -> Option<u32> {
    let k = rungs_until(epoch, min_epochs, factor).position(|r| r == epoch)?;
    u32::try_from(k).ok()
}

/// The rungs' epochs up to `epoch`: `min_epochs * factor^k`, smallest first.
fn rungs_until(epoch: u32, min_epochs: u32, factor: u32) -> impl DoubleEndedIterator<Item = u32> {
    let mut rungs = Vec::new();
    let mut at = u64::from(min_epochs);
    while at <= u64::from(epoch) {
        rungs.push(at as u32);
        at *= u64::from(factor.max(2));
    }
    rungs.into_iter()
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
    /// half of five (0.1, 0.2) goes on, a newcomer at 0.25 pauses, one at 0.15 goes on.
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
        // Fewer trials at a rung than the factor: none goes on yet (a later one may promote
        // it); of two, the better one.
        assert!(asha.should_prune(&kept, 1, &[], d));
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

    /// Factor 3: three trials paused at epoch 1 promote their best; once it has gone on,
    /// none until three more have joined the rung, then the best of those not yet promoted.
    /// The highest rung first; other pruners promote nothing.
    #[test]
    fn asha_promotes_a_paused_trial_once_it_is_in_its_rungs_best_third() {
        let asha = Pruner::Asha {
            min_epochs: 1,
            reduction_factor: 3,
        };
        let d = Direction::Minimize;
        let mut trials: Vec<TrialRecord> = [0.3, 0.5, 0.4]
            .iter()
            .enumerate()
            .map(|(i, &v)| trial(i as u64, TrialState::Pruned, &[v]))
            .collect();
        assert_eq!(asha.promotion(&trials[..2], d, false), None);
        // Unless no trial may start any more: then the best of the highest rung goes on.
        assert_eq!(asha.promotion(&trials[..2], d, true), Some(0));
        assert_eq!(asha.promotion(&trials, d, false), Some(0));
        trials[0] = trial(0, TrialState::Running, &[0.3, 0.25]);
        assert_eq!(asha.promotion(&trials, d, false), None);
        for (i, v) in [(3, 0.45), (4, 0.35), (5, 0.6)] {
            trials.push(trial(i, TrialState::Pruned, &[v]));
        }
        assert_eq!(asha.promotion(&trials, d, false), Some(4));
        // Trial 0 paused at epoch 3 with two worse ones there: it goes before trial 4.
        trials[0] = trial(0, TrialState::Pruned, &[0.3, 0.25, 0.2]);
        trials.push(trial(6, TrialState::Pruned, &[0.5, 0.4, 0.3]));
        trials.push(trial(7, TrialState::Pruned, &[0.6, 0.5, 0.4]));
        assert_eq!(asha.promotion(&trials, d, false), Some(0));
        // With one complete (trials 0, 2 and 4 running), the end of a study promotes no more
        // than the rule does (9 at epoch 1: its best three).
        let mut ended = trials.clone();
        ended.push(trial(9, TrialState::Complete, &[0.9, 0.9, 0.9, 0.9]));
        ended[0].state = TrialState::Running;
        assert_eq!(asha.promotion(&ended, d, true), Some(4));
        ended[4].state = TrialState::Running;
        assert_eq!(asha.promotion(&ended, d, true), Some(2));
        ended[2].state = TrialState::Running;
        assert_eq!(asha.promotion(&ended, d, true), None);
        // A trial arriving at a rung goes on at once when it is in the best third there.
        let newcomer = trial(8, TrialState::Running, &[0.05]);
        assert!(!asha.should_prune(&newcomer, 1, &trials, d));
        let median = Pruner::named("median").unwrap();
        assert_eq!(median.promotion(&trials, d, true), None);
        assert_eq!(Pruner::None.promotion(&trials, d, true), None);
    }
}
