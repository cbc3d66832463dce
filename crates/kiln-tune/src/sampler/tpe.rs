//! The tree-structured Parzen estimator (Bergstra, Bardenet, Bengio and Kégl, "Algorithms for
//! Hyper-Parameter Optimization", 2011), univariate, as Optuna's `TPESampler` is by default.
//!
//! The trials so far are split into the best tenth (at most 25), `l`, and the rest, `g`. Each
//! hyperparameter gets two densities: a Gaussian kernel on each value of `l` (and of `g`) plus a
//! wide prior kernel, each kernel as wide as the gap to its neighbours, truncated to the range.
//! Candidates are drawn from `l`'s density; the one where `l(x) / g(x)` is largest is the next
//! value (the expected improvement is monotone in that ratio).

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use super::random;
use crate::TuneError;
use crate::space::{Distribution, ParamValue, Params, SearchSpace};
use crate::trial::{Direction, TrialRecord, TrialState};

/// TPE's options (Optuna's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TpeConfig {
    /// Random trials before the densities take over. Default 10.
    pub startup_trials: usize,
    /// Candidates drawn from the good trials' density for each value. Default 24.
    pub candidates: usize,
}

impl Default for TpeConfig {
    fn default() -> Self {
        Self {
            startup_trials: 10,
            candidates: 24,
        }
    }
}

impl TpeConfig {
    /// Checks that there is at least one candidate.
    pub fn check(&self) -> Result<(), TuneError> {
        if self.candidates == 0 {
            return Err(TuneError::InvalidOption {
                option: "candidates",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// The next trial's values.
pub(super) fn sample(
    config: &TpeConfig,
    space: &SearchSpace,
    trials: &[TrialRecord],
    direction: Direction,
    rng: &mut impl Rng,
) -> Params {
    let ranked = rank(trials, direction);
    if ranked.len() < config.startup_trials.max(1) {
        return random::sample(space, rng);
    }
    // Optuna's default gamma: the best 10%, at most 25.
    let n_good = ranked.len().div_ceil(10).clamp(1, 25);
    let (good, bad) = ranked.split_at(n_good);
    space
        .params
        .iter()
        .map(|(name, d)| {
            let values = |set: &[&TrialRecord]| -> Vec<ParamValue> {
                set.iter()
                    .filter_map(|t| t.params.get(name).cloned())
                    .collect()
            };
            let value = draw(d, &values(good), &values(bad), config.candidates, rng);
            (name.clone(), value)
        })
        .collect()
}

/// Finished trials best first: complete ones by value, then pruned ones, those that went
/// further first (Optuna's order), each by its last value.
fn rank(trials: &[TrialRecord], direction: Direction) -> Vec<&TrialRecord> {
    let key = |t: &TrialRecord| -> Option<(u8, i64, f64)> {
        match t.state {
            TrialState::Complete => Some((0, 0, direction.cost(t.value?))),
            TrialState::Pruned => {
                let (epoch, value) = *t.intermediate.last()?;
                Some((1, -i64::from(epoch), direction.cost(value)))
            }
            _ => None,
        }
    };
    let mut keyed: Vec<((u8, i64, f64), &TrialRecord)> = trials
        .iter()
        .filter_map(|t| key(t).filter(|k| !k.2.is_nan()).map(|k| (k, t)))
        .collect();
    keyed.sort_by(|(a, ta), (b, tb)| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then(a.2.total_cmp(&b.2))
            .then(ta.number.cmp(&tb.number))
    });
    keyed.into_iter().map(|(_, t)| t).collect()
}

/// One hyperparameter's value: the candidate from `good`'s density with the best ratio.
fn draw(
    d: &Distribution,
    good: &[ParamValue],
    bad: &[ParamValue],
    candidates: usize,
    rng: &mut impl Rng,
) -> ParamValue {
    match d {
        Distribution::Choice { choices } => {
            let weights = |set: &[ParamValue]| -> Vec<f64> {
                choices
                    .iter()
                    .map(|c| {
                        1.0 + set
                            .iter()
                            .filter(|v| matches!(v, ParamValue::Choice(x) if x == c))
                            .count() as f64
                    })
                    .collect()
            };
            let (l, g) = (weights(good), weights(bad));
            let (l_sum, g_sum): (f64, f64) = (l.iter().sum(), g.iter().sum());
            let score = |i: usize| (l[i] / l_sum).ln() - (g[i] / g_sum).ln();
            let best = (0..candidates)
                .map(|_| pick(&l, rng))
                .max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a)))
                .unwrap_or(0);
            ParamValue::Choice(choices[best].clone())
        }
        Distribution::Float { low, high, log } => {
            let to = |v: f64| if *log { v.ln() } else { v };
            let (a, b) = (to(*low), to(*high));
            if a == b {
                return ParamValue::Float(*low);
            }
            let xs = |set: &[ParamValue]| -> Vec<f64> {
                set.iter().filter_map(ParamValue::as_f64).map(to).collect()
            };
            let x = best_candidate(&xs(good), &xs(bad), a, b, candidates, rng);
            let v = if *log { x.exp() } else { x };
            ParamValue::Float(v.clamp(*low, *high))
        }
        Distribution::Int { low, high, log } => {
            // Whole numbers as the real interval around them, rounded back.
            let to = |v: f64| if *log { v.ln() } else { v };
            let (a, b) = (to(*low as f64 - 0.5), to(*high as f64 + 0.5));
            let xs = |set: &[ParamValue]| -> Vec<f64> {
                set.iter().filter_map(ParamValue::as_f64).map(to).collect()
            };
            let x = best_candidate(&xs(good), &xs(bad), a, b, candidates, rng);
            let v = if *log { x.exp() } else { x };
            ParamValue::Int((v.round() as i64).clamp(*low, *high))
        }
    }
}

/// The candidate drawn from `good`'s density with the largest `log l(x) - log g(x)`.
fn best_candidate(
    good: &[f64],
    bad: &[f64],
    low: f64,
    high: f64,
    candidates: usize,
    rng: &mut impl Rng,
) -> f64 {
    let (l, g) = (Parzen::new(good, low, high), Parzen::new(bad, low, high));
    (0..candidates)
        .map(|_| l.sample(rng))
        .map(|x| (l.log_pdf(x) - g.log_pdf(x), x))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or((low + high) / 2.0, |(_, x)| x)
}

/// A mixture of Gaussians truncated to `[low, high]`: one on each observation and a wide one
/// in the middle (the prior), weighted alike.
#[derive(Debug)]
struct Parzen {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    low: f64,
    high: f64,
}

impl Parzen {
    fn new(xs: &[f64], low: f64, high: f64) -> Self {
        let mut mus: Vec<f64> = xs.iter().map(|x| x.clamp(low, high)).collect();
        mus.sort_by(f64::total_cmp);
        let n = mus.len();
        let with_ends: Vec<f64> = std::iter::once(low)
            .chain(mus.iter().copied())
            .chain(std::iter::once(high))
            .collect();
        let mut sigmas: Vec<f64> = (0..n)
            .map(|i| {
                let left = with_ends[i + 1] - with_ends[i];
                let right = with_ends[i + 2] - with_ends[i + 1];
                match (i, n) {
                    // The outermost kernels look inward only (Optuna: consider_endpoints=False).
                    (0, n) if n >= 2 => right,
                    (i, n) if n >= 2 && i == n - 1 => left,
                    _ => left.max(right),
                }
            })
            .collect();
        let (max_sigma, min_sigma) = (high - low, (high - low) / (1.0 + n as f64).min(100.0));
        for s in &mut sigmas {
            *s = s.clamp(min_sigma, max_sigma);
        }
        mus.push((low + high) / 2.0);
        sigmas.push(high - low);
        Self {
            mus,
            sigmas,
            low,
            high,
        }
    }

    fn sample(&self, rng: &mut impl Rng) -> f64 {
        let k = rng.random_range(0..self.mus.len());
        let (mu, sigma) = (self.mus[k], self.sigmas[k]);
        for _ in 0..100 {
            let x = mu + sigma * standard_normal(rng);
            if (self.low..=self.high).contains(&x) {
                return x;
            }
        }
        rng.random_range(self.low..=self.high)
    }

    fn log_pdf(&self, x: f64) -> f64 {
        let n = self.mus.len() as f64;
        let density: f64 = self
            .mus
            .iter()
            .zip(&self.sigmas)
            .map(|(&mu, &sigma)| {
                let z = (x - mu) / sigma;
                let mass =
                    normal_cdf((self.high - mu) / sigma) - normal_cdf((self.low - mu) / sigma);
                (-0.5 * z * z).exp()
                    / (sigma * (2.0 * std::f64::consts::PI).sqrt())
                    / mass.max(1e-12)
            })
            .sum::<f64>()
            / n;
        density.max(1e-300).ln()
    }
}

/// A draw of N(0, 1) (Box-Muller).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Φ(z), through erf (Abramowitz and Stegun 7.1.26, within 1.5e-7).
fn normal_cdf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    0.5 * (1.0 + if x >= 0.0 { erf } else { -erf })
}

/// Index drawn with probability proportional to `weights`.
fn pick(weights: &[f64], rng: &mut impl Rng) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn complete(number: u64, params: Params, value: f64) -> TrialRecord {
        TrialRecord {
            id: number as i64,
            number,
            state: TrialState::Complete,
            params,
            value: Some(value),
            intermediate: vec![(1, value)],
            owner: String::new(),
            heartbeat: 0.0,
            message: None,
        }
    }

    #[test]
    fn the_normal_cdf_matches_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975_002_1).abs() < 1e-6);
        assert!((normal_cdf(-1.0) - 0.158_655_25).abs() < 1e-6);
    }

    #[test]
    fn a_truncated_mixture_integrates_to_one() {
        let p = Parzen::new(&[0.1, 0.15, 0.8], 0.0, 1.0);
        let n = 20_000;
        let integral: f64 = (0..n)
            .map(|i| p.log_pdf((i as f64 + 0.5) / n as f64).exp() / n as f64)
            .sum();
        assert!((integral - 1.0).abs() < 1e-3, "{integral}");
    }

    /// On `(log10(lr) + 2)^2 + [opt != b]`, TPE's later trials land nearer the optimum than
    /// random search's, over several seeds.
    #[test]
    fn tpe_closes_in_on_the_optimum_faster_than_random_search() {
        let space = SearchSpace::new()
            .log_float("lr", 1e-5, 1.0)
            .choice("opt", &["a", "b", "c"]);
        let objective = |p: &Params| {
            let lr = p["lr"].as_f64().unwrap();
            let opt = if p["opt"] == ParamValue::Choice("b".into()) {
                0.0
            } else {
                1.0
            };
            (lr.log10() + 2.0).powi(2) + opt
        };
        let study = |tpe: bool, seed: u64| -> f64 {
            let mut trials: Vec<TrialRecord> = Vec::new();
            for number in 0..40 {
                let mut rng = StdRng::seed_from_u64(seed * 1000 + number);
                let params = if tpe {
                    sample(
                        &TpeConfig::default(),
                        &space,
                        &trials,
                        Direction::Minimize,
                        &mut rng,
                    )
                } else {
                    random::sample(&space, &mut rng)
                };
                let value = objective(&params);
                trials.push(complete(number, params, value));
            }
            // The mean cost of the last 20 trials: where the sampler spends its budget.
            trials[20..].iter().map(|t| t.value.unwrap()).sum::<f64>() / 20.0
        };
        let (mut tpe_wins, mut total_tpe, mut total_random) = (0, 0.0, 0.0);
        for seed in 0..5 {
            let (t, r) = (study(true, seed), study(false, seed));
            total_tpe += t;
            total_random += r;
            tpe_wins += usize::from(t < r);
        }
        assert!(tpe_wins >= 4, "TPE better on {tpe_wins} of 5 seeds");
        assert!(
            total_tpe < 0.5 * total_random,
            "{total_tpe} vs {total_random}"
        );
    }

    #[test]
    fn pruned_trials_rank_after_complete_ones_deepest_first() {
        let mut a = complete(0, Params::new(), 0.9);
        let mut b = complete(1, Params::new(), 0.1);
        b.state = TrialState::Pruned;
        b.intermediate = vec![(1, 0.3), (2, 0.1)];
        let mut c = complete(2, Params::new(), 0.05);
        c.state = TrialState::Pruned;
        c.intermediate = vec![(1, 0.05)];
        a.intermediate = vec![(3, 0.9)];
        let trials = [c, b, a];
        let order: Vec<u64> = rank(&trials, Direction::Minimize)
            .iter()
            .map(|t| t.number)
            .collect();
        assert_eq!(order, vec![0, 1, 2]);
    }
}
