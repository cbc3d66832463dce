//! Unfreezing a frozen backbone part-way through a run, at a lower rate (Lightning's
//! `BackboneFinetuning`; Keras's "unfreeze the base model and train on at a low rate").
//!
//! The parts in [`TrainerConfig::freeze`](crate::TrainerConfig::freeze) train from the start
//! of epoch [`Unfreeze::epoch`] on, with the learning rate times [`Unfreeze::lr_ratio`]; the
//! rest keeps the rate and schedule it had. Their optimiser state starts at that epoch, as if
//! the run had been resumed there with nothing frozen: the learner is rebuilt from the last
//! epoch's checkpoint with those parts trainable, which is also exactly what a run resumed from
//! a later checkpoint does.

use burn::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// When the frozen parts start training, and at what fraction of the learning rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Unfreeze {
    /// The first epoch (from 1) in which the frozen parts train; at least 2. One past the run's
    /// last epoch never comes, unless the run is resumed with more epochs.
    pub epoch: usize,
    /// Their learning rate is the run's (as its schedule sets it) times this. Default: 0.1
    /// (Lightning's `backbone_initial_ratio_lr`).
    pub lr_ratio: f64,
}

impl Unfreeze {
    /// The default rate ratio, 0.1.
    pub const DEFAULT_LR_RATIO: f64 = 0.1;

    /// From epoch `epoch` on, at a tenth of the rate.
    pub fn at(epoch: usize) -> Self {
        Self {
            epoch,
            lr_ratio: Self::DEFAULT_LR_RATIO,
        }
    }

    /// Checks the settings against the run's frozen parts, once, up front.
    pub fn check(&self, frozen: &[String]) -> Result<(), TrainError> {
        if frozen.is_empty() {
            return Err(TrainError::option(
                "unfreeze_at",
                "unfreezes what `freeze` froze: name the parts to freeze",
            ));
        }
        if self.epoch < 2 {
            return Err(TrainError::option(
                "unfreeze_at",
                format!(
                    "the epoch must be at least 2 (epoch 1 would train nothing frozen), got {}",
                    self.epoch
                ),
            ));
        }
        if !(self.lr_ratio.is_finite() && self.lr_ratio > 0.0) {
            return Err(TrainError::option(
                "unfreeze_at",
                format!("the rate ratio must be positive, got {}", self.lr_ratio),
            ));
        }
        Ok(())
    }
}

/// A schedule's rates times a constant: the unfrozen parts' rate.
#[derive(Debug, Clone)]
pub(crate) struct Scaled<S> {
    pub inner: S,
    pub ratio: f64,
}

impl<S: LrScheduler + Clone + 'static> LrScheduler for Scaled<S> {
    fn step(&mut self) -> f64 {
        self.inner.step() * self.ratio
    }

    fn to_record(&self) -> LrSchedulerRecord {
        self.inner.to_record()
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        self.inner.load_record(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_against_the_run() {
        let frozen = ["blocks".to_string()];
        assert!(Unfreeze::at(3).check(&frozen).is_ok());
        let err = |u: Unfreeze, frozen: &[String]| u.check(frozen).unwrap_err().to_string();
        assert!(err(Unfreeze::at(3), &[]).contains("name the parts to freeze"));
        assert!(err(Unfreeze::at(1), &frozen).contains("at least 2"));
        let zero = Unfreeze {
            epoch: 3,
            lr_ratio: 0.0,
        };
        assert!(err(zero, &frozen).contains("positive"));
    }

    #[derive(Clone)]
    struct Halving(f64);

    impl LrScheduler for Halving {
        fn step(&mut self) -> f64 {
            self.0 /= 2.0;
            self.0
        }
        fn to_record(&self) -> LrSchedulerRecord {
            LrSchedulerRecord::new()
        }
        fn load_record(&mut self, _: LrSchedulerRecord) {}
    }

    #[test]
    fn a_scaled_schedule_follows_its_inner_one() {
        let mut scaled = Scaled {
            inner: Halving(1.0),
            ratio: 0.1,
        };
        let rates: Vec<f64> = (0..3).map(|_| scaled.step()).collect();
        assert_eq!(rates, [0.05, 0.025, 0.0125]);
    }
}
