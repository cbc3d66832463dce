//! Seeded synthetic datasets: the classic toy problems of the perceptron and MLP chapters.
//! The same seed always gives the same data.

use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::{Data, Targets};

fn classes(x: Vec<f32>, d: usize, labels: Vec<usize>, names: &[&str]) -> Data {
    let names = names.iter().map(|s| s.to_string()).collect();
    Data::new(x, vec![d], Targets::Classes { labels, names }).expect("consistent synthetic data")
}

/// A standard normal sample (Box-Muller).
fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// XOR: `n` points near the four corners of the unit square (gaussian noise of standard
/// deviation `noise`), labelled 1 where exactly one coordinate is 1. Not linearly separable.
pub fn xor(n: usize, noise: f32, seed: u64) -> Data {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut x, mut y) = (Vec::with_capacity(2 * n), Vec::with_capacity(n));
    for i in 0..n {
        let (a, b) = ((i % 4) / 2, i % 2);
        x.push(a as f32 + noise * normal(&mut rng));
        x.push(b as f32 + noise * normal(&mut rng));
        y.push(a ^ b);
    }
    classes(x, 2, y, &["0", "1"])
}

/// Two interleaved spirals of `n / 2` points each, turning `turns` times.
pub fn spirals(n: usize, noise: f32, seed: u64) -> Data {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut x, mut y) = (Vec::with_capacity(2 * n), Vec::with_capacity(n));
    let per_class = n / 2;
    for class in 0..2 {
        for i in 0..per_class {
            let t = i as f32 / per_class as f32;
            let r = 0.1 + 0.9 * t;
            let angle = 3.0 * std::f32::consts::PI * t + class as f32 * std::f32::consts::PI;
            x.push(r * angle.cos() + noise * normal(&mut rng));
            x.push(r * angle.sin() + noise * normal(&mut rng));
            y.push(class);
        }
    }
    classes(x, 2, y, &["0", "1"])
}

/// Two interleaving half circles (scikit-learn's `make_moons`).
pub fn moons(n: usize, noise: f32, seed: u64) -> Data {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut x, mut y) = (Vec::with_capacity(2 * n), Vec::with_capacity(n));
    let per_class = n / 2;
    for class in 0..2 {
        for i in 0..per_class {
            let t = std::f32::consts::PI * i as f32 / (per_class.max(2) - 1) as f32;
            let (px, py) = match class {
                0 => (t.cos(), t.sin()),
                _ => (1.0 - t.cos(), 0.5 - t.sin()),
            };
            x.push(px + noise * normal(&mut rng));
            x.push(py + noise * normal(&mut rng));
            y.push(class);
        }
    }
    classes(x, 2, y, &["0", "1"])
}

/// House prices: area uniform in 0-100, location score uniform in 1-10, and
/// `price = 1.2 * area + 5 * location + 20 + N(0, 5)`.
pub fn house_prices(n: usize, seed: u64) -> Data {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut x, mut y) = (Vec::with_capacity(2 * n), Vec::with_capacity(n));
    for _ in 0..n {
        let area: f32 = rng.random_range(0.0..100.0);
        let location: f32 = rng.random_range(1.0..10.0);
        x.push(area);
        x.push(location);
        y.push(1.2 * area + 5.0 * location + 20.0 + 5.0 * normal(&mut rng));
    }
    let y = Targets::Values {
        values: y,
        names: vec!["price".into()],
    };
    Data::new(x, vec![2], y).expect("consistent synthetic data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data() {
        assert_eq!(spirals(100, 0.05, 1), spirals(100, 0.05, 1));
        assert_ne!(moons(100, 0.1, 1), moons(100, 0.1, 2));
    }

    #[test]
    fn xor_labels_follow_the_corners() {
        let d = xor(8, 0.0, 0);
        assert_eq!(
            d.x,
            vec![
                0., 0., 0., 1., 1., 0., 1., 1., 0., 0., 0., 1., 1., 0., 1., 1.
            ]
        );
        assert_eq!(d.y.labels().unwrap(), &[0, 1, 1, 0, 0, 1, 1, 0]);
    }

    #[test]
    fn house_prices_follow_the_formula_within_noise() {
        let d = house_prices(2000, 3);
        let Targets::Values { values, .. } = &d.y else {
            panic!("regression")
        };
        let residuals: Vec<f32> = (0..d.len())
            .map(|i| values[i] - (1.2 * d.sample(i)[0] + 5.0 * d.sample(i)[1] + 20.0))
            .collect();
        let mean = residuals.iter().sum::<f32>() / residuals.len() as f32;
        let std = (residuals.iter().map(|r| (r - mean).powi(2)).sum::<f32>()
            / residuals.len() as f32)
            .sqrt();
        assert!(mean.abs() < 0.5, "mean residual {mean}");
        assert!((std - 5.0).abs() < 0.4, "residual std {std}");
        assert!(d.x.iter().step_by(2).all(|&a| (0.0..100.0).contains(&a)));
    }
}
