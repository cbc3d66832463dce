use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use serde::{Deserialize, Serialize};

use crate::{Monitor, TrainError};

/// How the learning rate changes from epoch to epoch. `epoch` counts from 0, and the rate
/// holds for every step of that epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum LrSchedule {
    /// `lr`.
    Constant,
    /// `lr * gamma^floor(epoch / step_size)`.
    Step {
        /// Epochs between two reductions.
        step_size: usize,
        /// Multiplier of the rate at each reduction.
        gamma: f64,
    },
    /// `lr * gamma^epoch`.
    Exponential {
        /// Multiplier of the rate at each epoch.
        gamma: f64,
    },
    /// `min_lr + (lr - min_lr) * (1 + cos(pi * epoch / epochs)) / 2`, over the run's epochs.
    Cosine {
        /// The rate at the end of the run.
        min_lr: f64,
    },
    /// `lr / (1 + decay * epoch)`: inverse-time decay.
    InverseTime {
        /// How fast the rate falls.
        decay: f64,
    },
    /// Keras's `ReduceLROnPlateau`: the rate is multiplied by `factor` once the monitored
    /// validation metric (early stopping's `monitor`, else `val_loss`) has not improved by more
    /// than `min_delta` for `patience` epochs, never below `min_lr`; after a reduction,
    /// `cooldown` epochs pass before epochs without improvement are counted again.
    Plateau {
        /// Multiplier of the rate at each reduction (Keras's default: 0.1).
        factor: f64,
        /// Epochs without improvement before a reduction (Keras's default: 10).
        patience: usize,
        /// The lowest rate (Keras's default: 0).
        min_lr: f64,
        /// Smallest change that counts as an improvement (Keras's default: 1e-4).
        min_delta: f64,
        /// Epochs after a reduction before waiting starts again (Keras's default: 0).
        cooldown: usize,
    },
}

impl LrSchedule {
    /// The schedule names the CLI accepts, with their defaults.
    pub const NAMES: [&'static str; 6] = [
        "constant",
        "step",
        "exponential",
        "cosine",
        "inverse-time",
        "plateau",
    ];

    /// The learning rate of `epoch` (from 0) for a base rate `lr` and a run of `epochs`.
    /// A plateau schedule depends on the validation metrics, not on the epoch: this is its
    /// starting rate, `lr`.
    pub fn lr_at(&self, lr: f64, epoch: usize, epochs: usize) -> f64 {
        let e = epoch as f64;
        match *self {
            LrSchedule::Constant => lr,
            LrSchedule::Step { step_size, gamma } => lr * gamma.powi((epoch / step_size) as i32),
            LrSchedule::Exponential { gamma } => lr * gamma.powf(e),
            LrSchedule::Cosine { min_lr } => {
                let t = e / epochs.max(1) as f64;
                min_lr + (lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
            }
            LrSchedule::InverseTime { decay } => lr / (1.0 + decay * e),
            LrSchedule::Plateau { .. } => lr,
        }
    }

    /// Checks the schedule's parameters.
    pub fn check(&self, lr: f64) -> Result<(), TrainError> {
        let bad = |reason: String| Err(TrainError::option("lr_schedule", reason));
        match *self {
            LrSchedule::Step { step_size: 0, .. } => bad("step_size must be at least 1".into()),
            LrSchedule::Step { gamma, .. } | LrSchedule::Exponential { gamma }
                if !(gamma > 0.0 && gamma <= 1.0) =>
            {
                bad(format!("gamma must lie in (0, 1], got {gamma}"))
            }
            LrSchedule::Cosine { min_lr } if !(0.0..=lr).contains(&min_lr) => {
                bad(format!("min_lr must lie in [0, lr={lr}], got {min_lr}"))
            }
            LrSchedule::InverseTime { decay } if decay.is_nan() || decay < 0.0 => {
                bad(format!("decay must be >= 0, got {decay}"))
            }
            LrSchedule::Plateau { factor, .. } if !(factor > 0.0 && factor < 1.0) => {
                bad(format!("plateau factor must lie in (0, 1), got {factor}"))
            }
            LrSchedule::Plateau { patience: 0, .. } => {
                bad("plateau patience must be at least 1".into())
            }
            LrSchedule::Plateau {
                min_lr, min_delta, ..
            } if !(min_lr >= 0.0
                && min_lr.is_finite()
                && min_delta >= 0.0
                && min_delta.is_finite()) =>
            {
                bad(format!(
                    "plateau min_lr and min_delta must be >= 0, got {min_lr} and {min_delta}"
                ))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LrSchedule::Constant => write!(f, "constant"),
            LrSchedule::Step { step_size, gamma } => write!(f, "step:{step_size}:{gamma}"),
            LrSchedule::Exponential { gamma } => write!(f, "exponential:{gamma}"),
            LrSchedule::Cosine { min_lr } => write!(f, "cosine:{min_lr}"),
            LrSchedule::InverseTime { decay } => write!(f, "inverse-time:{decay}"),
            LrSchedule::Plateau {
                factor,
                patience,
                min_lr,
                min_delta,
                cooldown,
            } => write!(
                f,
                "plateau:{factor}:{patience}:{min_lr}:{min_delta}:{cooldown}"
            ),
        }
    }
}

impl FromStr for LrSchedule {
    type Err = String;

    /// `constant`, `step[:STEP_SIZE[:GAMMA]]` (default 10, 0.1), `exponential[:GAMMA]` (0.95),
    /// `cosine[:MIN_LR]` (0), `inverse-time[:DECAY]` (0.01),
    /// `plateau[:FACTOR[:PATIENCE[:MIN_LR[:MIN_DELTA[:COOLDOWN]]]]]` (0.1, 10, 0, 1e-4, 0:
    /// Keras's defaults).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        let num = |i: usize, default: f64| -> Result<f64, String> {
            args.get(i).map_or(Ok(default), |a| {
                a.parse()
                    .map_err(|_| format!("`{a}` in lr schedule `{s}` is not a number"))
            })
        };
        Ok(match name {
            "constant" => LrSchedule::Constant,
            "step" => LrSchedule::Step {
                step_size: num(0, 10.0)? as usize,
                gamma: num(1, 0.1)?,
            },
            "exponential" => LrSchedule::Exponential {
                gamma: num(0, 0.95)?,
            },
            "cosine" => LrSchedule::Cosine {
                min_lr: num(0, 0.0)?,
            },
            "inverse-time" => LrSchedule::InverseTime {
                decay: num(0, 0.01)?,
            },
            "plateau" => LrSchedule::Plateau {
                factor: num(0, 0.1)?,
                patience: num(1, 10.0)? as usize,
                min_lr: num(2, 0.0)?,
                min_delta: num(3, 1e-4)?,
                cooldown: num(4, 0.0)? as usize,
            },
            other => {
                return Err(format!(
                    "unknown lr schedule `{other}` (valid: {})",
                    LrSchedule::NAMES.join(", ")
                ));
            }
        })
    }
}

/// Burn's [`LrScheduler`] for an [`LrSchedule`]: burn-train asks for a rate before every
/// optimiser step, and this answers with the rate of the epoch that step belongs to (for a
/// plateau schedule, the rate the epoch-end hook last set).
#[derive(Debug, Clone)]
pub(crate) struct EpochLrScheduler {
    pub schedule: LrSchedule,
    pub lr: f64,
    pub epochs: usize,
    pub steps_per_epoch: usize,
    /// Steps taken: a resumed run starts at its completed epochs' steps.
    pub step: usize,
    pub plateau_lr: SharedLr,
}

impl LrScheduler for EpochLrScheduler {
    fn step(&mut self) -> f64 {
        let epoch = self.step / self.steps_per_epoch.max(1);
        self.step += 1;
        match self.schedule {
            LrSchedule::Plateau { .. } => self.plateau_lr.get(),
            schedule => schedule.lr_at(self.lr, epoch, self.epochs),
        }
    }

    /// The rate is a function of the step count, which a resumed run sets from its completed
    /// epochs, and of the plateau state, which kiln's own checkpoint state keeps: there is no
    /// state worth recording here.
    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new()
    }

    fn load_record(&mut self, _record: LrSchedulerRecord) {}
}

/// The learning rate in force, shared by the scheduler (which hands it to the optimiser) and
/// the plateau rule (which lowers it).
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedLr(Arc<AtomicU64>);

impl SharedLr {
    pub fn new(lr: f64) -> Self {
        Self(Arc::new(AtomicU64::new(lr.to_bits())))
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    pub fn set(&self, lr: f64) {
        self.0.store(lr.to_bits(), Ordering::Relaxed)
    }
}

/// Keras's `ReduceLROnPlateau` bookkeeping: the best monitored value, epochs waited, the
/// cooldown left and the rate in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plateau {
    /// The learning rate in force.
    pub lr: f64,
    /// The best monitored value so far.
    pub best: Option<f64>,
    /// Epochs since it last improved.
    pub wait: usize,
    /// Epochs of cooldown left after the last reduction.
    pub cooldown_left: usize,
}

impl Plateau {
    /// The state at the start of a run whose rate is `lr`.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            best: None,
            wait: 0,
            cooldown_left: 0,
        }
    }

    /// Keras's `on_epoch_end`: the rate for the next epoch after an epoch whose monitored
    /// value was `current`. `schedule` must be [`LrSchedule::Plateau`].
    pub fn observe(&mut self, schedule: &LrSchedule, monitor: Monitor, current: f64) -> f64 {
        let LrSchedule::Plateau {
            factor,
            patience,
            min_lr,
            min_delta,
            cooldown,
        } = *schedule
        else {
            return self.lr;
        };
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            self.wait = 0;
        }
        let improved = match self.best {
            None => true,
            Some(best) if monitor.higher_is_better() => current > best + min_delta,
            Some(best) => current < best - min_delta,
        };
        if improved {
            self.best = Some(current);
            self.wait = 0;
        } else if self.cooldown_left == 0 {
            self.wait += 1;
            if self.wait >= patience && self.lr > min_lr {
                self.lr = (self.lr * factor).max(min_lr);
                self.cooldown_left = cooldown;
                self.wait = 0;
            }
        }
        self.lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plateau(patience: usize, cooldown: usize, min_lr: f64) -> LrSchedule {
        LrSchedule::Plateau {
            factor: 0.5,
            patience,
            min_lr,
            min_delta: 1e-4,
            cooldown,
        }
    }

    /// The rates of the epochs after each value, as Keras's callback sets them.
    fn rates(schedule: LrSchedule, values: &[f64]) -> Vec<f64> {
        let mut p = Plateau::new(1.0);
        values
            .iter()
            .map(|&v| p.observe(&schedule, Monitor::ValLoss, v))
            .collect()
    }

    #[test]
    fn the_rate_drops_exactly_after_patience_epochs_without_improvement() {
        // Improves for 2 epochs, then flat: epochs 3, 4, 5 do not improve; patience 3 drops
        // the rate after epoch 5, and again 3 epochs later.
        let got = rates(
            plateau(3, 0, 0.0),
            &[1.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9],
        );
        assert_eq!(got, [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]);
    }

    #[test]
    fn improvements_smaller_than_min_delta_do_not_count() {
        // 0.99995 is within min_delta (1e-4) of 1.0.
        let got = rates(plateau(1, 0, 0.0), &[1.0, 0.99995, 0.5]);
        assert_eq!(got, [1.0, 0.5, 0.5]);
    }

    #[test]
    fn the_rate_never_goes_below_min_lr() {
        let got = rates(plateau(1, 0, 0.3), &[1.0; 6]);
        assert_eq!(got, [1.0, 0.5, 0.3, 0.3, 0.3, 0.3]);
    }

    #[test]
    fn cooldown_holds_the_rate_before_counting_again() {
        // Patience 1, cooldown 2: drop after epoch 2. Epoch 3 is in cooldown (counter 2 -> 1)
        // and waits for nothing; epoch 4 counts the cooldown down to 0 first, so it waits and
        // drops again, as Keras's callback does.
        let got = rates(plateau(1, 2, 0.0), &[1.0; 6]);
        assert_eq!(got, [1.0, 0.5, 0.5, 0.25, 0.25, 0.125]);
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn values_match_their_formulas() {
        let lr = 0.1;
        for e in 0..30 {
            let ef = e as f64;
            assert!(close(LrSchedule::Constant.lr_at(lr, e, 30), 0.1));
            let step = LrSchedule::Step {
                step_size: 10,
                gamma: 0.5,
            };
            assert!(close(
                step.lr_at(lr, e, 30),
                0.1 * 0.5f64.powi((e / 10) as i32)
            ));
            let exp = LrSchedule::Exponential { gamma: 0.9 };
            assert!(close(exp.lr_at(lr, e, 30), 0.1 * 0.9f64.powf(ef)));
            let inv = LrSchedule::InverseTime { decay: 0.5 };
            assert!(close(inv.lr_at(lr, e, 30), 0.1 / (1.0 + 0.5 * ef)));
        }
        let cos = LrSchedule::Cosine { min_lr: 0.01 };
        assert!(close(cos.lr_at(0.1, 0, 10), 0.1));
        assert!(close(cos.lr_at(0.1, 5, 10), 0.055));
        assert!(close(cos.lr_at(0.1, 10, 10), 0.01));
        // Hand-computed: 0.1 / (1 + 0.01 * 4) = 0.0961538...
        assert!(
            (LrSchedule::InverseTime { decay: 0.01 }.lr_at(0.1, 4, 10) - 0.096_153_846).abs()
                < 1e-9
        );
    }

    #[test]
    fn the_scheduler_holds_each_epochs_rate_for_all_its_steps() {
        let mut s = EpochLrScheduler {
            schedule: LrSchedule::Step {
                step_size: 1,
                gamma: 0.5,
            },
            lr: 1.0,
            epochs: 3,
            steps_per_epoch: 2,
            step: 0,
            plateau_lr: SharedLr::new(1.0),
        };
        let rates: Vec<f64> = (0..6).map(|_| s.step()).collect();
        assert_eq!(rates, [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]);
    }

    #[test]
    fn parsing_takes_defaults_and_rejects_unknown_names() {
        assert_eq!(
            "step".parse(),
            Ok(LrSchedule::Step {
                step_size: 10,
                gamma: 0.1
            })
        );
        assert_eq!(
            "inverse-time:0.5".parse(),
            Ok(LrSchedule::InverseTime { decay: 0.5 })
        );
        let e = "warmup".parse::<LrSchedule>().unwrap_err();
        assert!(
            e.contains("constant, step, exponential, cosine, inverse-time, plateau"),
            "{e}"
        );
        assert_eq!(
            "plateau:0.5:3".parse(),
            Ok(LrSchedule::Plateau {
                factor: 0.5,
                patience: 3,
                min_lr: 0.0,
                min_delta: 1e-4,
                cooldown: 0
            })
        );
        for s in [
            "plateau".parse().unwrap(),
            LrSchedule::Cosine { min_lr: 0.001 },
            LrSchedule::Exponential { gamma: 0.9 },
        ] {
            assert_eq!(s.to_string().parse(), Ok(s));
        }
    }
}
