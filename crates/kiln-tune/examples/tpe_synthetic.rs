//! kiln's TPE on deterministic functions (no training, so no training noise unless `NOISE` adds
//! some): the best of `TRIALS` (default 30) trials over seeds 1..N, with kiln's defaults
//! (`TpeConfig::default()`) and with Optuna's (`TpeConfig::optuna()`), one line per function.
//! Optuna itself runs the same functions in `crates/kiln-bench/scripts/tpe-synthetic.py N`.
//!
//!     cargo run --release -p kiln-tune --example tpe_synthetic -- 500 [FUNCTION...]
//!
//! Functions: `digits` (shaped like the digits study: rate best at 1e-2, two layers, dropout
//! 0.4, batch 16), `series` (shaped like the births series: the best rate moves with the batch
//! and the width), `hartmann6` and `branin` (the standard test functions, minimum 0 here).
//!
//! `NOISE=S` adds Gaussian noise of standard deviation `S` to every value a trial reports (drawn
//! from the study's seed and the trial's number, so the same for both configurations): a
//! training run's luck, which the study's best then includes as a real study's does.
use kiln_tune::{SearchSpace, TpeConfig, Trial, Tuner};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A test function: its space and its value.
struct Function {
    name: &'static str,
    space: fn() -> SearchSpace,
    value: fn(&Trial) -> f64,
}

const FUNCTIONS: [Function; 4] = [
    Function {
        name: "digits",
        space: || {
            SearchSpace::new()
                .log_float("lr", 1e-4, 3e-1)
                .choice("hidden", &["16", "64", "128,64"])
                .float("dropout", 0.0, 0.5)
                .choice("batch-size", &["16", "32", "64"])
        },
        value: |t| {
            let hidden = match t.choice("hidden").as_str() {
                "16" => 0.6,
                "64" => 0.3,
                _ => 0.0,
            };
            let batch = match t.choice("batch-size").as_str() {
                "16" => 0.0,
                "32" => 0.05,
                _ => 0.1,
            };
            (t.float("lr").log10() + 2.0).powi(2)
                + hidden
                + 2.0 * (t.float("dropout") - 0.4).powi(2)
                + batch
        },
    },
    Function {
        name: "series",
        space: || {
            SearchSpace::new()
                .log_float("lr", 1e-4, 3e-1)
                .choice("hidden", &["8", "16", "32", "64"])
                .int("layers", 1, 2)
                .choice("batch-size", &["16", "32", "64"])
        },
        value: |t| {
            let hidden: f64 = t.choice("hidden").parse().expect("a width");
            let batch: f64 = t.choice("batch-size").parse().expect("a batch size");
            let best_lr = -2.5 + 0.5 * (batch / 16.0).log2() - 0.1 * (hidden / 8.0).log2();
            (t.float("lr").log10() - best_lr).powi(2)
                + 0.05 * (hidden / 32.0).log2().powi(2)
                + 0.1 * (t.int("layers") - 1) as f64
        },
    },
    Function {
        name: "hartmann6",
        space: || {
            (0..6).fold(SearchSpace::new(), |s, i| {
                s.float(&format!("x{i}"), 0.0, 1.0)
            })
        },
        value: |t| {
            const A: [[f64; 6]; 4] = [
                [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
                [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
                [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
                [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
            ];
            const P: [[f64; 6]; 4] = [
                [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
                [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
                [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
                [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
            ];
            const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
            let x: Vec<f64> = (0..6).map(|i| t.float(&format!("x{i}"))).collect();
            let sum: f64 = (0..4)
                .map(|i| {
                    let d: f64 = (0..6).map(|j| A[i][j] * (x[j] - P[i][j]).powi(2)).sum();
                    ALPHA[i] * (-d).exp()
                })
                .sum();
            3.32237 - sum
        },
    },
    Function {
        name: "branin",
        space: || {
            SearchSpace::new()
                .float("x", -5.0, 10.0)
                .float("y", 0.0, 15.0)
        },
        value: |t| {
            let (x, y) = (t.float("x"), t.float("y"));
            let pi = std::f64::consts::PI;
            (y - 5.1 / (4.0 * pi * pi) * x * x + 5.0 / pi * x - 6.0).powi(2)
                + 10.0 * (1.0 - 1.0 / (8.0 * pi)) * x.cos()
                + 10.0
                - 0.397887
        },
    },
];

/// A standard normal draw for trial `number` of study `seed` (Box-Muller).
fn normal(seed: u64, number: u64) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(number));
    let (u, v): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The best value of each seed's study, each trial's value with noise of deviation `noise`.
fn bests(f: &Function, config: &TpeConfig, seeds: u64, trials: u64, noise: f64) -> Vec<f64> {
    (1..=seeds)
        .map(|seed| {
            let study = Tuner::new((f.space)(), "loss")
                .sampler(kiln_tune::Sampler::Tpe(config.clone()))
                .seed(seed)
                .trials(trials)
                .optimize(|t| Ok::<f64, String>((f.value)(t) + noise * normal(seed, t.number())))
                .expect("an in-memory study");
            study
                .best()
                .and_then(|t| t.value)
                .expect("a complete trial")
        })
        .collect()
}

fn median_and_mean(values: &[f64]) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    let n = sorted.len();
    (0.5 * (sorted[(n - 1) / 2] + sorted[n / 2]), mean)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seeds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(100);
    let trials: u64 = std::env::var("TRIALS").map_or(30, |s| s.parse().expect("TRIALS: a number"));
    let noise: f64 = std::env::var("NOISE").map_or(0.0, |s| s.parse().expect("NOISE: a number"));
    let wanted: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    for f in FUNCTIONS
        .iter()
        .filter(|f| wanted.is_empty() || wanted.contains(&f.name))
    {
        let kiln = bests(f, &TpeConfig::default(), seeds, trials, noise);
        let optuna = bests(f, &TpeConfig::optuna(), seeds, trials, noise);
        let ((km, ka), (om, oa)) = (median_and_mean(&kiln), median_and_mean(&optuna));
        // How often a study with kiln's defaults beats one with Optuna's (all pairs of seeds).
        let wins = kiln
            .iter()
            .map(|k| optuna.iter().filter(|o| k < o).count())
            .sum::<usize>() as f64
            / (kiln.len() * optuna.len()) as f64;
        println!(
            "{{\"function\": \"{}\", \"trials\": {trials}, \"noise\": {noise}, \"seeds\": {seeds}, \"kiln_median\": {km:.4}, \"kiln_mean\": {ka:.4}, \"optuna_settings_median\": {om:.4}, \"optuna_settings_mean\": {oa:.4}, \"p_kiln_better\": {wins:.3}}}",
            f.name
        );
    }
}
