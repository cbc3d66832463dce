//! How a study chooses the next trial's values: at random, from a grid, or by TPE.

mod grid;
mod parzen;
mod random;
mod tpe;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::TuneError;
use crate::space::{Params, SearchSpace};
use crate::trial::{Direction, TrialRecord};

pub use tpe::TpeConfig;

/// The sampler of a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Sampler {
    /// Each value drawn independently, uniform (in the logarithm for log ranges).
    Random,
    /// Every combination of the values, in a seeded random order: choices as given, whole
    /// numbers all (or `points` spread over a wide range), real ranges `points` evenly spread
    /// (in the logarithm for log ranges). The study ends when the grid is used up.
    Grid {
        /// Values of each real range (and of a wide whole-number range). Default 5.
        points: usize,
    },
    /// The tree-structured Parzen estimator (Bergstra et al. 2011) as Optuna 5's default,
    /// multivariate: after `startup_trials` random ones, each trial is drawn where good trials
    /// were dense and bad ones sparse.
    Tpe(TpeConfig),
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::Tpe(TpeConfig::default())
    }
}

impl Sampler {
    /// The sampler named on the command line: `random`, `grid`, `tpe`.
    pub fn named(name: &str) -> Result<Self, TuneError> {
        match name {
            "random" => Ok(Sampler::Random),
            "grid" => Ok(Sampler::Grid { points: 5 }),
            "tpe" => Ok(Sampler::default()),
            other => Err(TuneError::InvalidOption {
                option: "sampler",
                reason: format!("unknown sampler `{other}` (random, grid, tpe)"),
            }),
        }
    }

    /// Its name: `random`, `grid` or `tpe`.
    pub fn name(&self) -> &'static str {
        match self {
            Sampler::Random => "random",
            Sampler::Grid { .. } => "grid",
            Sampler::Tpe(_) => "tpe",
        }
    }

    /// Checks its options against `space`.
    pub fn check(&self, space: &SearchSpace) -> Result<(), TuneError> {
        match self {
            Sampler::Random => Ok(()),
            Sampler::Grid { points } => {
                if *points == 0 {
                    return Err(TuneError::InvalidOption {
                        option: "grid_points",
                        reason: "must be at least 1".into(),
                    });
                }
                grid::size(space, *points).map(|_| ())
            }
            Sampler::Tpe(config) => config.check(),
        }
    }

    /// The values of trial `number`, given the study's trials so far; `None` when the sampler
    /// has nothing left (a used-up grid). The same seed, number and trials give the same values.
    pub fn sample(
        &self,
        space: &SearchSpace,
        trials: &[TrialRecord],
        number: u64,
        seed: u64,
        direction: Direction,
    ) -> Option<Params> {
        let mut rng = trial_rng(seed, number);
        match self {
            Sampler::Random => Some(random::sample(space, &mut rng)),
            Sampler::Grid { points } => grid::sample(space, *points, number, seed),
            Sampler::Tpe(config) => Some(tpe::sample(config, space, trials, direction, &mut rng)),
        }
    }
}

/// The random numbers of trial `number` of a study seeded `seed`.
fn trial_rng(seed: u64, number: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ (number + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}
