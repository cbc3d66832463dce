//! The Parzen estimator of TPE, as Optuna 5's `_ParzenEstimator`: a weighted mixture of
//! product kernels, one kernel per observed trial (its values of every hyperparameter) plus a
//! wide prior kernel. Multivariate: a candidate is drawn from one kernel in all its
//! hyperparameters at once, and its density is the mixture of the kernels' products, so values
//! that were good together are proposed together.

use rand::{Rng, RngExt};

use crate::space::{Distribution, ParamValue, SearchSpace};

/// A point of the search space as the estimator sees it: each hyperparameter a number (a
/// choice by its index), in the space's order.
pub(super) type Point = Vec<f64>;

/// The mixture: `weights[k]` and, per hyperparameter, kernel `k`'s distribution.
#[derive(Debug)]
pub(super) struct Parzen {
    weights: Vec<f64>,
    kernels: Vec<Kernels>,
}

/// One hyperparameter's kernels, the prior's last.
#[derive(Debug)]
enum Kernels {
    /// Numbers (real or whole).
    Numeric(Numeric),
    /// Each kernel's probabilities of the choices.
    Choice { probs: Vec<Vec<f64>> },
}

/// Gaussians truncated to `[low, high]` (in the logarithm for log ranges); whole numbers take
/// the mass of `[k - 1/2, k + 1/2]`.
#[derive(Debug)]
struct Numeric {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    low: f64,
    high: f64,
    log: bool,
    whole: bool,
    /// Each kernel's log mass inside `[low, high]`, its truncation's normaliser.
    log_inside: Vec<f64>,
}

impl Parzen {
    /// The estimator of `points` (oldest first), weighted as Optuna's `default_weights`
    /// ([`observation_weights`]), the prior weighted 1.
    pub(super) fn new(space: &SearchSpace, points: &[Point]) -> Self {
        let mut weights = observation_weights(points.len());
        weights.push(1.0);
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        let kernels = space
            .params
            .iter()
            .enumerate()
            .map(|(i, (_, d))| {
                let xs: Vec<f64> = points.iter().map(|p| p[i]).collect();
                Kernels::new(d, &xs)
            })
            .collect();
        Self { weights, kernels }
    }

    /// A draw from the mixture: one kernel, then each hyperparameter from it.
    pub(super) fn sample(&self, rng: &mut impl Rng) -> Point {
        let k = pick(&self.weights, rng);
        self.kernels.iter().map(|d| d.sample(k, rng)).collect()
    }

    /// The log density (or probability, for whole numbers and choices) of `x`.
    pub(super) fn log_pdf(&self, x: &[f64]) -> f64 {
        let terms: Vec<f64> = self
            .weights
            .iter()
            .enumerate()
            .map(|(k, w)| {
                w.ln()
                    + self
                        .kernels
                        .iter()
                        .zip(x)
                        .map(|(d, &xi)| d.log_pdf(k, xi))
                        .sum::<f64>()
            })
            .collect();
        log_sum_exp(&terms)
    }
}

impl Kernels {
    fn new(d: &Distribution, xs: &[f64]) -> Self {
        match d {
            Distribution::Choice { choices } => {
                let n = choices.len();
                // Optuna: each kernel puts 1 on its observed choice plus the prior's weight
                // (1) spread over every kernel and choice; the prior kernel is uniform.
                let kernels = xs.len() + 1;
                let spread = 1.0 / kernels as f64;
                let mut probs: Vec<Vec<f64>> = xs
                    .iter()
                    .map(|&x| {
                        let mut row = vec![spread; n];
                        row[(x as usize).min(n - 1)] += 1.0;
                        let sum: f64 = row.iter().sum();
                        row.iter().map(|p| p / sum).collect()
                    })
                    .collect();
                probs.push(vec![1.0 / n as f64; n]);
                Kernels::Choice { probs }
            }
            Distribution::Float { low, high, log } => numeric(xs, *low, *high, *log, false),
            Distribution::Int { low, high, log } => {
                numeric(xs, *low as f64 - 0.5, *high as f64 + 0.5, *log, true)
            }
        }
    }

    fn sample(&self, k: usize, rng: &mut impl Rng) -> f64 {
        match self {
            Kernels::Choice { probs } => pick(&probs[k], rng) as f64,
            Kernels::Numeric(n) => n.sample(k, rng),
        }
    }

    fn log_pdf(&self, k: usize, x: f64) -> f64 {
        match self {
            Kernels::Choice { probs } => probs[k][x as usize].max(1e-300).ln(),
            Kernels::Numeric(n) => n.log_pdf(k, x),
        }
    }
}

impl Numeric {
    /// A draw from kernel `k`, as the hyperparameter's value (whole numbers rounded).
    fn sample(&self, k: usize, rng: &mut impl Rng) -> f64 {
        let (mu, sigma) = (self.mus[k], self.sigmas[k]);
        let inside = |y: &f64| (self.low..=self.high).contains(y);
        let x = (0..100)
            .map(|_| mu + sigma * standard_normal(rng))
            .find(inside)
            .unwrap_or_else(|| rng.random_range(self.low..=self.high));
        let v = untransform(x, self.log);
        if self.whole {
            let lo = untransform(self.low, self.log) + 0.5;
            let hi = untransform(self.high, self.log) - 0.5;
            v.round().clamp(lo.round(), hi.round())
        } else {
            v
        }
    }

    /// Kernel `k`'s log density at the value `x` (its log probability, for whole numbers).
    fn log_pdf(&self, k: usize, x: f64) -> f64 {
        let (mu, sigma) = (self.mus[k], self.sigmas[k]);
        let z = |v: f64| (transform(v, self.log) - mu) / sigma;
        let inside = self.log_inside[k];
        if self.whole {
            log_gauss_mass(z(x - 0.5), z(x + 0.5)) - inside
        } else {
            let zx = z(x);
            -0.5 * zx * zx - (sigma * (2.0 * std::f64::consts::PI).sqrt()).ln() - inside
        }
    }
}

/// The numeric kernels of observations `xs` on `[low, high]` (whole numbers' ends already
/// widened by a half), in the logarithm when `log`: each as wide as the larger gap to its
/// neighbours (the outermost ones looking inward only: Optuna's `consider_endpoints=False`),
/// clipped to `[range / min(100, n + 2), range]`; the prior in the middle, as wide as the range.
fn numeric(xs: &[f64], low: f64, high: f64, log: bool, whole: bool) -> Kernels {
    let (low, high) = (transform(low, log), transform(high, log));
    let mut mus: Vec<f64> = xs
        .iter()
        .map(|&x| transform(x, log).clamp(low, high))
        .collect();
    let n = mus.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]));
    let ends: Vec<f64> = std::iter::once(low)
        .chain(order.iter().map(|&i| mus[i]))
        .chain(std::iter::once(high))
        .collect();
    let range = high - low;
    let (min_sigma, max_sigma) = (range / (n as f64 + 2.0).min(100.0), range);
    let mut sigmas = vec![0.0; n];
    for (rank, &i) in order.iter().enumerate() {
        let (left, right) = (ends[rank + 1] - ends[rank], ends[rank + 2] - ends[rank + 1]);
        let s = match rank {
            0 if n >= 2 => right,
            r if n >= 2 && r == n - 1 => left,
            _ => left.max(right),
        };
        sigmas[i] = s.clamp(min_sigma, max_sigma);
    }
    mus.push((low + high) / 2.0);
    sigmas.push(range);
    let log_inside = mus
        .iter()
        .zip(&sigmas)
        .map(|(mu, sigma)| log_gauss_mass((low - mu) / sigma, (high - mu) / sigma))
        .collect();
    Kernels::Numeric(Numeric {
        mus,
        sigmas,
        low,
        high,
        log,
        whole,
        log_inside,
    })
}

/// A value as the kernels see it: its logarithm for a log range.
fn transform(v: f64, log: bool) -> f64 {
    if log { v.ln() } else { v }
}

/// [`transform`] undone.
fn untransform(v: f64, log: bool) -> f64 {
    if log { v.exp() } else { v }
}

/// Optuna's `default_weights`: the newest 25 observations weigh 1, older ones less, linearly
/// down to `1 / n` for the oldest.
fn observation_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let first = 1.0 / n as f64;
    (0..ramp)
        .map(|i| {
            if ramp == 1 {
                first
            } else {
                first + (1.0 - first) * i as f64 / (ramp - 1) as f64
            }
        })
        .chain(std::iter::repeat_n(1.0, 25))
        .collect()
}

/// A hyperparameter's value as a number of a [`Point`].
pub(super) fn to_point(d: &Distribution, v: &ParamValue) -> Option<f64> {
    match (d, v) {
        (Distribution::Choice { choices }, ParamValue::Choice(c)) => {
            choices.iter().position(|x| x == c).map(|i| i as f64)
        }
        (Distribution::Choice { .. }, _) => None,
        (Distribution::Float { low, high, .. }, v) => {
            v.as_f64().filter(|x| (*low..=*high).contains(x))
        }
        (Distribution::Int { low, high, .. }, v) => v
            .as_f64()
            .filter(|x| (*low as f64..=*high as f64).contains(x)),
    }
}

/// A number of a [`Point`] as the hyperparameter's value.
pub(super) fn from_point(d: &Distribution, x: f64) -> ParamValue {
    match d {
        Distribution::Choice { choices } => {
            ParamValue::Choice(choices[(x as usize).min(choices.len() - 1)].clone())
        }
        Distribution::Float { low, high, .. } => ParamValue::Float(x.clamp(*low, *high)),
        Distribution::Int { low, high, .. } => {
            ParamValue::Int((x.round() as i64).clamp(*low, *high))
        }
    }
}

/// `log(Φ(b) - Φ(a))` for `a <= b`, taken from the tail that keeps it accurate.
fn log_gauss_mass(a: f64, b: f64) -> f64 {
    let mass = if a >= 0.0 {
        upper_tail(a) - upper_tail(b)
    } else if b <= 0.0 {
        upper_tail(-b) - upper_tail(-a)
    } else {
        1.0 - upper_tail(-a) - upper_tail(b)
    };
    mass.max(1e-300).ln()
}

/// `1 - Φ(z)`, through erfc with a relative error under 1.2e-7 everywhere (Numerical Recipes'
/// `erfcc`), so that far tails keep their digits.
fn upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let erfc = t
        * (-x * x - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    0.5 * if x >= 0.0 { erfc } else { 2.0 - erfc }
}

fn log_sum_exp(xs: &[f64]) -> f64 {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + xs.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
}

/// A draw of N(0, 1) (Box-Muller).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
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

    #[test]
    fn the_upper_tail_matches_known_values() {
        assert!((upper_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((upper_tail(1.96) - 0.024_997_9).abs() < 1e-7);
        assert!((upper_tail(-1.0) - 0.841_344_75).abs() < 1e-7);
        // Far in the tail the digits stay: Q(8) = 6.22096e-16.
        assert!((upper_tail(8.0) / 6.220_960_574_271_78e-16 - 1.0).abs() < 1e-6);
    }

    #[test]
    fn the_weights_ramp_up_to_the_newest_25_as_optunas() {
        assert_eq!(observation_weights(3), vec![1.0; 3]);
        let w = observation_weights(30);
        assert_eq!(w.len(), 30);
        assert!((w[0] - 1.0 / 30.0).abs() < 1e-12);
        assert!((w[4] - 1.0).abs() < 1e-12);
        assert!(w[..5].windows(2).all(|p| p[0] < p[1]));
        assert_eq!(&w[5..], &[1.0; 25]);
    }

    /// A real and a log-range whole number: the mixture's density integrates (sums) to one.
    #[test]
    fn the_mixture_is_a_density() {
        let space = SearchSpace::new()
            .float("x", 0.0, 1.0)
            .with(
                "n",
                Distribution::Int {
                    low: 1,
                    high: 64,
                    log: true,
                },
            )
            .choice("c", &["a", "b", "c"]);
        let points = vec![
            vec![0.1, 8.0, 0.0],
            vec![0.15, 9.0, 2.0],
            vec![0.8, 60.0, 0.0],
        ];
        let p = Parzen::new(&space, &points);
        let steps = 2000;
        let mut total = 0.0;
        for i in 0..steps {
            let x = (i as f64 + 0.5) / steps as f64;
            for n in 1..=64 {
                for c in 0..3 {
                    total += p.log_pdf(&[x, n as f64, c as f64]).exp() / steps as f64;
                }
            }
        }
        assert!((total - 1.0).abs() < 1e-3, "{total}");
    }

    /// The log density of Optuna 5's `_ParzenEstimator` on the same observations, at the same
    /// points (`tests/fixtures/make_parzen.py`): 0, 1, 2, 5 and 30 observations (the last with
    /// the weights' ramp), every kind of range; the joint density and each marginal.
    #[test]
    fn the_density_is_optunas() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/parzen.json")).unwrap();
        let log_int = Distribution::Int {
            low: 8,
            high: 256,
            log: true,
        };
        let space = SearchSpace::new()
            .log_float("lr", 1e-4, 3e-1)
            .float("dropout", 0.0, 0.5)
            .int("layers", 1, 4)
            .with("width", log_int)
            .choice("opt", &["adam", "sgd", "rmsprop"]);
        let rows = |v: &serde_json::Value| -> Vec<Point> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    p.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect()
                })
                .collect()
        };
        for case in fixture["cases"].as_array().unwrap() {
            let (observations, points) = (rows(&case["observations"]), rows(&case["points"]));
            let agree = |got: f64, want: &serde_json::Value, what: &str| {
                let want = want.as_f64().unwrap();
                assert!(
                    (got - want).abs() < 1e-5,
                    "{what}: {got} vs Optuna's {want}"
                );
            };
            // The joint density: for up to 16 observations, where numpy sorts ties stably;
            // beyond, which of two equal observations gets the wider kernel is numpy's
            // unstable sort's choice, and only the marginals are comparable.
            if observations.len() <= 16 {
                let p = Parzen::new(&space, &observations);
                for (x, want) in points.iter().zip(case["log_pdf"].as_array().unwrap()) {
                    agree(p.log_pdf(x), want, &format!("{x:?}"));
                }
            }
            for (i, (name, d)) in space.params.iter().enumerate() {
                let one = SearchSpace::new().with(name, d.clone());
                let column: Vec<Point> = observations.iter().map(|o| vec![o[i]]).collect();
                let p = Parzen::new(&one, &column);
                for (x, want) in points
                    .iter()
                    .zip(case["marginals"][name].as_array().unwrap())
                {
                    agree(p.log_pdf(&[x[i]]), want, &format!("{name} {}", x[i]));
                }
            }
        }
    }

    /// Draws come from one kernel in every hyperparameter: near the first point, values of
    /// `x` near 0.1 come with `c = a`, near 0.9 with `c = b`.
    #[test]
    fn draws_keep_the_values_of_one_trial_together() {
        let space = SearchSpace::new()
            .float("x", 0.0, 1.0)
            .choice("c", &["a", "b"]);
        let points: Vec<Point> = (0..20)
            .map(|i| {
                if i % 2 == 0 {
                    vec![0.1, 0.0]
                } else {
                    vec![0.9, 1.0]
                }
            })
            .collect();
        let p = Parzen::new(&space, &points);
        let mut rng = StdRng::seed_from_u64(7);
        let (mut together, mut draws) = (0, 0);
        for _ in 0..2000 {
            let x = p.sample(&mut rng);
            if x[0] < 0.3 || x[0] > 0.7 {
                draws += 1;
                together += usize::from((x[0] < 0.3) == (x[1] == 0.0));
            }
        }
        assert!(
            together as f64 > 0.85 * draws as f64,
            "{together} of {draws}"
        );
        // Whole numbers drawn stay whole and in range; values map back to the space.
        assert_eq!(
            from_point(&space.params[1].1, 1.0),
            ParamValue::Choice("b".into())
        );
    }
}
