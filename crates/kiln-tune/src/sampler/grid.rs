//! Grid search: every combination, in a seeded random order.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::TuneError;
use crate::space::{Distribution, ParamValue, Params, SearchSpace};

/// The largest grid a study walks (its order is shuffled in memory).
const MAX_POINTS: u64 = 1_000_000;

/// The values of one hyperparameter on the grid.
fn axis(d: &Distribution, points: usize) -> Vec<ParamValue> {
    let spread = |low: f64, high: f64, log: bool| -> Vec<f64> {
        if points == 1 || low == high {
            return vec![if log {
                (low * high).sqrt()
            } else {
                (low + high) / 2.0
            }];
        }
        (0..points)
            .map(|i| {
                let t = i as f64 / (points - 1) as f64;
                if log {
                    (low.ln() + t * (high.ln() - low.ln())).exp()
                } else {
                    low + t * (high - low)
                }
            })
            .collect()
    };
    match d {
        Distribution::Float { low, high, log } => spread(*low, *high, *log)
            .into_iter()
            .map(ParamValue::Float)
            .collect(),
        Distribution::Int { low, high, log } => {
            if ((high - low) as u64) < points as u64 {
                return (*low..=*high).map(ParamValue::Int).collect();
            }
            let mut values: Vec<i64> = spread(*low as f64, *high as f64, *log)
                .into_iter()
                .map(|v| v.round() as i64)
                .collect();
            values.dedup();
            values.into_iter().map(ParamValue::Int).collect()
        }
        Distribution::Choice { choices } => {
            choices.iter().cloned().map(ParamValue::Choice).collect()
        }
    }
}

/// The number of grid points, or an error for a grid too large to walk.
pub(super) fn size(space: &SearchSpace, points: usize) -> Result<u64, TuneError> {
    space.params.iter().try_fold(1u64, |n, (name, d)| {
        n.checked_mul(axis(d, points).len() as u64)
            .filter(|&n| n <= MAX_POINTS)
            .ok_or_else(|| TuneError::Space {
                param: name.clone(),
                reason: format!("the grid has more than {MAX_POINTS} points: use another sampler"),
            })
    })
}

/// Grid point `number` of the seeded order; `None` past the last.
pub(super) fn sample(space: &SearchSpace, points: usize, number: u64, seed: u64) -> Option<Params> {
    let total = size(space, points).ok()?;
    if number >= total {
        return None;
    }
    let mut order: Vec<u64> = (0..total).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut index = order[number as usize];
    let mut params = Params::new();
    for (name, d) in &space.params {
        let values = axis(d, points);
        let n = values.len() as u64;
        params.insert(name.clone(), values[(index % n) as usize].clone());
        index /= n;
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_grid_visits_every_combination_once_then_ends() {
        let space = SearchSpace::new()
            .log_float("lr", 1e-3, 1e-1)
            .choice("opt", &["adam", "sgd"]);
        assert_eq!(size(&space, 3).unwrap(), 6);
        let seen: BTreeSet<String> = (0..6)
            .map(|n| format!("{:?}", sample(&space, 3, n, 7).unwrap()))
            .collect();
        assert_eq!(seen.len(), 6);
        assert!(sample(&space, 3, 6, 7).is_none());
        let lrs: BTreeSet<String> = (0..6)
            .map(|n| sample(&space, 3, n, 7).unwrap()["lr"].to_string())
            .collect();
        // Log-spaced: 1e-3, 1e-2, 1e-1.
        let expected: BTreeSet<String> = [1e-3f64, 1e-2, 1e-1]
            .iter()
            .map(|&v| {
                let got = lrs
                    .iter()
                    .find(|l| (l.parse::<f64>().unwrap() / v - 1.0).abs() < 1e-9);
                got.cloned().unwrap_or_default()
            })
            .collect();
        assert_eq!(expected, lrs);
    }

    #[test]
    fn narrow_whole_number_ranges_give_every_value() {
        let d = Distribution::Int {
            low: 1,
            high: 3,
            log: false,
        };
        assert_eq!(axis(&d, 5).len(), 3);
        let wide = Distribution::Int {
            low: 16,
            high: 256,
            log: true,
        };
        let values: Vec<i64> = axis(&wide, 5)
            .iter()
            .map(|v| v.as_f64().unwrap() as i64)
            .collect();
        assert_eq!(values, vec![16, 32, 64, 128, 256]);
    }
}
