//! Random search: each value drawn independently.

use rand::{Rng, RngExt};

use crate::space::{Distribution, ParamValue, Params, SearchSpace};

/// Draws every hyperparameter of `space` independently.
pub(super) fn sample(space: &SearchSpace, rng: &mut impl Rng) -> Params {
    space
        .params
        .iter()
        .map(|(name, d)| (name.clone(), draw(d, rng)))
        .collect()
}

/// One value of `d`: uniform, or uniform in the logarithm.
pub(super) fn draw(d: &Distribution, rng: &mut impl Rng) -> ParamValue {
    match d {
        Distribution::Float { low, high, log } => {
            let u: f64 = rng.random();
            ParamValue::Float(if *log {
                (low.ln() + u * (high.ln() - low.ln()))
                    .exp()
                    .clamp(*low, *high)
            } else {
                low + u * (high - low)
            })
        }
        Distribution::Int { low, high, log } => {
            if *log {
                // Uniform in the logarithm over [low - 0.5, high + 0.5), rounded.
                let (a, b) = ((*low as f64 - 0.5).ln(), (*high as f64 + 0.5).ln());
                let u: f64 = rng.random();
                let v = (a + u * (b - a)).exp().round() as i64;
                ParamValue::Int(v.clamp(*low, *high))
            } else {
                ParamValue::Int(rng.random_range(*low..=*high))
            }
        }
        Distribution::Choice { choices } => {
            ParamValue::Choice(choices[rng.random_range(0..choices.len())].clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn draws_stay_in_range_and_log_ranges_spread_over_decades() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let lr = Distribution::Float {
            low: 1e-5,
            high: 1e-1,
            log: true,
        };
        let values: Vec<f64> = (0..4000)
            .map(|_| draw(&lr, &mut rng).as_f64().unwrap())
            .collect();
        assert!(values.iter().all(|v| (1e-5..=1e-1).contains(v)));
        // Uniform in the logarithm: a quarter in each decade.
        for decade in 0..4 {
            let (a, b) = (1e-5 * 10f64.powi(decade), 1e-5 * 10f64.powi(decade + 1));
            let share = values.iter().filter(|v| (a..b).contains(*v)).count() as f64 / 4000.0;
            assert!((share - 0.25).abs() < 0.03, "decade {decade}: {share}");
        }
        let n = Distribution::Int {
            low: 1,
            high: 3,
            log: false,
        };
        let mut seen = [0; 3];
        for _ in 0..300 {
            match draw(&n, &mut rng) {
                ParamValue::Int(v) => seen[v as usize - 1] += 1,
                other => panic!("{other:?}"),
            }
        }
        assert!(seen.iter().all(|&c| c > 70), "{seen:?}");
    }
}
