//! Automatic repair of a broken run, as AUTOTRAINER (ICSE 2021) does it: when the diagnosis
//! names a problem with a known fix, train again with that one change, at most
//! [`MAX_REPAIRS`] times, so that the user sees each fix as the flag that makes it. Each
//! attempt starts again from the seed's initial weights, so that attempts compare like for
//! like and a repair that changes the model (an activation, batch norm) needs no surgery.
//!
//! The repairs, one per finding kind (a divergence first, then the first finding that has
//! one):
//!
//! | finding | repair |
//! |---|---|
//! | `diverged` | the learning rate divided by 100 |
//! | `exploding_gradients` | clipping the gradient norm at 1 (already clipped: the learning rate divided by 10) |
//! | `lr_too_high` | the learning rate divided by 10 |
//! | `lr_too_low` | the learning rate multiplied by 10 |
//! | `dead_units` | leaky ReLU instead of ReLU |
//! | `vanishing_gradients` | ReLU instead of sigmoid or tanh (already ReLU: batch norm) |
//! | `saturated_units` | batch norm before each activation (already on: ReLU) |
//! | `overfitting` | dropout 0.3 (already that high: weight decay 1e-4) |
//!
//! Underfitting and unscaled inputs have none that is safe to apply blindly: more capacity
//! or the data's scaling are the user's call.

use kiln_common::Activation;
use serde::{Deserialize, Serialize};

use crate::{Diagnosis, Finding, FindingKind};

/// At most this many repairs: four runs in all.
pub const MAX_REPAIRS: usize = 3;

/// The settings of a run that repairs change, in kiln's flags' terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knobs {
    /// The learning rate (`--lr`).
    pub lr: f64,
    /// The gradient-norm clip (`--clip-norm`), if any.
    pub clip_norm: Option<f32>,
    /// The hidden layers' activation (`--activation`).
    pub activation: Activation,
    /// Batch normalisation in the hidden layers (`--batch-norm`).
    pub batch_norm: bool,
    /// Dropout after the hidden layers (`--dropout`).
    pub dropout: f64,
    /// Decoupled weight decay (`--weight-decay`).
    pub weight_decay: f64,
}

/// One change to a run's [`Knobs`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Repair {
    /// A new learning rate.
    LearningRate {
        /// The rate before.
        from: f64,
        /// The rate after.
        to: f64,
    },
    /// Clipping the gradient norm.
    ClipNorm {
        /// The largest norm a step's gradient keeps.
        to: f32,
    },
    /// Another activation.
    Activation {
        /// The activation before.
        from: Activation,
        /// The activation after.
        to: Activation,
    },
    /// Batch normalisation turned on.
    BatchNorm,
    /// More dropout.
    Dropout {
        /// The probability before.
        from: f64,
        /// The probability after.
        to: f64,
    },
    /// Weight decay.
    WeightDecay {
        /// The decay before.
        from: f64,
        /// The decay after.
        to: f64,
    },
}

impl Repair {
    /// The repair for `finding` given the run's `knobs` (see the module's table); `None`
    /// where kiln knows no safe one.
    pub fn for_finding(finding: &Finding, knobs: &Knobs) -> Option<Repair> {
        let lr = |factor: f64| Repair::LearningRate {
            from: knobs.lr,
            to: knobs.lr * factor,
        };
        let activation = |to: Activation| Repair::Activation {
            from: knobs.activation,
            to,
        };
        Some(match finding.kind {
            FindingKind::Diverged => lr(0.01),
            FindingKind::ExplodingGradients if knobs.clip_norm.is_none() => {
                Repair::ClipNorm { to: 1.0 }
            }
            FindingKind::ExplodingGradients | FindingKind::LrTooHigh => lr(0.1),
            FindingKind::LrTooLow => lr(10.0),
            FindingKind::DeadUnits if knobs.activation == Activation::Relu => {
                activation(Activation::LeakyRelu)
            }
            FindingKind::VanishingGradients
                if matches!(knobs.activation, Activation::Sigmoid | Activation::Tanh) =>
            {
                activation(Activation::Relu)
            }
            FindingKind::VanishingGradients | FindingKind::SaturatedUnits if !knobs.batch_norm => {
                Repair::BatchNorm
            }
            FindingKind::SaturatedUnits
                if matches!(knobs.activation, Activation::Sigmoid | Activation::Tanh) =>
            {
                activation(Activation::Relu)
            }
            FindingKind::Overfitting if knobs.dropout < 0.3 => Repair::Dropout {
                from: knobs.dropout,
                to: 0.3,
            },
            FindingKind::Overfitting if knobs.weight_decay < 1e-4 => Repair::WeightDecay {
                from: knobs.weight_decay,
                to: 1e-4,
            },
            _ => return None,
        })
    }

    /// Applies the change.
    pub fn apply(&self, knobs: &mut Knobs) {
        match *self {
            Repair::LearningRate { to, .. } => knobs.lr = to,
            Repair::ClipNorm { to } => knobs.clip_norm = Some(to),
            Repair::Activation { to, .. } => knobs.activation = to,
            Repair::BatchNorm => knobs.batch_norm = true,
            Repair::Dropout { to, .. } => knobs.dropout = to,
            Repair::WeightDecay { to, .. } => knobs.weight_decay = to,
        }
    }

    /// The change as the kiln flag that makes it (`--lr 5e-3`).
    pub fn flag(&self) -> String {
        match self {
            Repair::LearningRate { to, .. } => format!("--lr {}", short(*to)),
            Repair::ClipNorm { to } => format!("--clip-norm {to}"),
            Repair::Activation { to, .. } => format!("--activation {}", to.name()),
            Repair::BatchNorm => "--batch-norm".into(),
            Repair::Dropout { to, .. } => format!("--dropout {to}"),
            Repair::WeightDecay { to, .. } => format!("--weight-decay {}", short(*to)),
        }
    }
}

/// A rate as a learner writes it: `0.005`, `1e-7`.
fn short(v: f64) -> String {
    if (1e-3..1e5).contains(&v) {
        format!("{}", v as f32)
    } else {
        format!("{:e}", v as f32)
    }
}

/// The first of the findings that has a repair, with it; a divergence comes first (clipping
/// does not tame Adam's steps, whose size is the learning rate's).
pub fn next_repair(diagnosis: &Diagnosis, knobs: &Knobs) -> Option<(Finding, Repair)> {
    let diverged = diagnosis
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Diverged);
    diverged
        .chain(&diagnosis.findings)
        .find_map(|f| Repair::for_finding(f, knobs).map(|r| (f.clone(), r)))
}

/// One run of [`auto_fix`].
#[derive(Debug, Clone)]
pub struct Attempt<T> {
    /// The run's settings.
    pub knobs: Knobs,
    /// The finding and the repair that made this run (none for the first).
    pub repaired: Option<(Finding, Repair)>,
    /// What the run's diagnosis found.
    pub diagnosis: Diagnosis,
    /// What the training closure returned for it.
    pub outcome: T,
}

/// Trains with `knobs`, then, while the diagnosis names a problem with a repair and fewer than
/// [`MAX_REPAIRS`] were made, trains again with the repair applied (each repair on top of the
/// earlier ones). `train(attempt, knobs)` runs attempt `attempt` (from 1) and returns its
/// outcome and diagnosis; its error ends the loop.
pub fn auto_fix<T, E>(
    knobs: Knobs,
    mut train: impl FnMut(usize, &Knobs, Option<&(Finding, Repair)>) -> Result<(T, Diagnosis), E>,
) -> Result<Vec<Attempt<T>>, E> {
    let mut attempts: Vec<Attempt<T>> = Vec::new();
    let mut next = Some((knobs, None));
    while let Some((knobs, repaired)) = next.take() {
        let (outcome, diagnosis) = train(attempts.len() + 1, &knobs, repaired.as_ref())?;
        if attempts.len() < MAX_REPAIRS
            && let Some((finding, repair)) = next_repair(&diagnosis, &knobs)
        {
            let mut changed = knobs.clone();
            repair.apply(&mut changed);
            next = Some((changed, Some((finding, repair))));
        }
        attempts.push(Attempt {
            knobs,
            repaired,
            diagnosis,
            outcome,
        });
    }
    Ok(attempts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knobs() -> Knobs {
        Knobs {
            lr: 0.5,
            clip_norm: None,
            activation: Activation::Relu,
            batch_norm: false,
            dropout: 0.0,
            weight_decay: 0.0,
        }
    }

    fn finding(kind: FindingKind) -> Finding {
        Finding {
            kind,
            epoch: 1,
            layer: None,
            statistic: String::new(),
            value: 0.0,
            threshold: 0.0,
            message: String::new(),
            advice: String::new(),
        }
    }

    #[test]
    fn each_kind_gets_its_repair_and_a_second_one_when_the_first_is_in_place() {
        let k = knobs();
        let flag =
            |kind, knobs: &Knobs| Repair::for_finding(&finding(kind), knobs).map(|r| r.flag());
        assert_eq!(
            flag(FindingKind::Diverged, &k).as_deref(),
            Some("--lr 0.005")
        );
        assert_eq!(
            flag(FindingKind::ExplodingGradients, &k).as_deref(),
            Some("--clip-norm 1")
        );
        let clipped = Knobs {
            clip_norm: Some(1.0),
            ..k.clone()
        };
        assert_eq!(
            flag(FindingKind::ExplodingGradients, &clipped).as_deref(),
            Some("--lr 0.05")
        );
        let slow = Knobs {
            lr: 1e-7,
            ..k.clone()
        };
        assert_eq!(
            flag(FindingKind::LrTooLow, &slow).as_deref(),
            Some("--lr 1e-6")
        );
        assert_eq!(
            flag(FindingKind::DeadUnits, &k).as_deref(),
            Some("--activation leaky-relu")
        );
        let sigmoid = Knobs {
            activation: Activation::Sigmoid,
            ..k.clone()
        };
        assert_eq!(
            flag(FindingKind::VanishingGradients, &sigmoid).as_deref(),
            Some("--activation relu")
        );
        assert_eq!(
            flag(FindingKind::VanishingGradients, &k).as_deref(),
            Some("--batch-norm")
        );
        assert_eq!(
            flag(FindingKind::SaturatedUnits, &sigmoid).as_deref(),
            Some("--batch-norm")
        );
        assert_eq!(
            flag(FindingKind::Overfitting, &k).as_deref(),
            Some("--dropout 0.3")
        );
        let dropped = Knobs {
            dropout: 0.5,
            ..k.clone()
        };
        assert_eq!(
            flag(FindingKind::Overfitting, &dropped).as_deref(),
            Some("--weight-decay 1e-4")
        );
        assert_eq!(flag(FindingKind::Underfitting, &k), None);
        assert_eq!(flag(FindingKind::UnscaledInputs, &k), None);
        let leaky = Knobs {
            activation: Activation::LeakyRelu,
            ..k
        };
        assert_eq!(flag(FindingKind::DeadUnits, &leaky), None);
    }

    /// A run that stays broken is repaired three times, each repair on top of the last; one
    /// that heals stops the loop.
    #[test]
    fn the_loop_stops_when_healed_or_after_three_repairs() {
        let broken = Diagnosis {
            findings: vec![finding(FindingKind::LrTooLow)],
            notes: Vec::new(),
        };
        let attempts = auto_fix(knobs(), |_, _, _| Ok::<_, ()>(((), broken.clone()))).unwrap();
        let rates: Vec<f64> = attempts.iter().map(|a| a.knobs.lr).collect();
        assert_eq!(rates.len(), 1 + MAX_REPAIRS);
        assert!((rates[3] - 500.0).abs() < 1e-9, "{rates:?}");
        assert!(attempts[0].repaired.is_none());
        assert_eq!(attempts[1].repaired.as_ref().unwrap().1.flag(), "--lr 5");

        let attempts = auto_fix(knobs(), |i, _, _| {
            Ok::<_, ()>((
                i,
                if i == 1 {
                    broken.clone()
                } else {
                    Diagnosis::default()
                },
            ))
        })
        .unwrap();
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[1].outcome, 2);

        // Exploding and diverged at Adam's --lr 0.5: the rate is the repair, not clipping.
        let blown = Diagnosis {
            findings: vec![
                finding(FindingKind::ExplodingGradients),
                finding(FindingKind::Diverged),
            ],
            notes: Vec::new(),
        };
        let (found, repair) = next_repair(&blown, &knobs()).unwrap();
        assert_eq!(
            (found.kind, repair.flag()),
            (FindingKind::Diverged, "--lr 0.005".into())
        );
    }
}
