//! `cargo run --release -p kiln-bench -- mlp`: training throughput of kiln's trainer against a
//! plain hand-written Burn loop (same model, optimiser, batch size, in-memory data and
//! per-epoch validation pass; no burn-train), measured in the same process, alternating, several
//! runs each. One JSON line per model and backend: median samples/s of each, and the median of
//! the paired ratios kiln/plain (with their range).

mod plain;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use kiln::backend::Backend;
use kiln::datasets::{Data, MnistSplit, Targets, mnist, split};
use kiln::prelude::*;
use kiln::train::Verbosity;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde_json::json;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Bench {
    /// MLP 784-128-64-10 on MNIST-shaped data, batch 64, Adam.
    Mlp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Side {
    Kiln,
    Plain,
}

#[derive(Debug, Parser)]
struct Args {
    /// What to benchmark.
    #[arg(value_enum, default_value = "mlp")]
    bench: Bench,
    /// Backends to measure [default: every one compiled in].
    #[arg(long, value_delimiter = ',')]
    backend: Vec<String>,
    /// Timed runs of each loop; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Epochs per run.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Run only one side (for profiling one loop at a time with perf); prints no JSON.
    #[arg(long)]
    only: Option<Side>,
    /// Training samples (taken from MNIST when fetched, else random MNIST-shaped data).
    #[arg(long, default_value_t = 60_000)]
    samples: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// MNIST's first `n` training images when fetched, else `n` random images of its shape.
fn mnist_shaped(n: usize) -> (Data, &'static str) {
    if let Ok(data) = mnist(None, MnistSplit::Train) {
        let n = n.min(data.len());
        return (data.subset(&(0..n).collect::<Vec<_>>()), "mnist");
    }
    let mut rng = StdRng::seed_from_u64(0);
    let x = (0..n * 784).map(|_| rng.random::<f32>()).collect();
    let labels = (0..n).map(|_| rng.random_range(0..10)).collect();
    let names = (0..10).map(|d| d.to_string()).collect();
    let data =
        Data::new(x, vec![1, 28, 28], Targets::Classes { labels, names }).expect("consistent");
    (data, "random")
}

fn main() -> Result<()> {
    let args = Args::parse();
    let backends: Vec<Backend> = if args.backend.is_empty() {
        Backend::compiled()
    } else {
        args.backend
            .iter()
            .map(|b| b.parse())
            .collect::<Result<_, _>>()?
    };
    let Bench::Mlp = args.bench;
    let (data, source) = mnist_shaped(args.samples);
    let parts = split(&data, 0.2, 0)?;
    let (train, valid) = (Arc::new(parts.first), Arc::new(parts.second));
    for backend in backends {
        let device = backend.device()?;
        let config = TrainerConfig {
            epochs: args.epochs,
            batch_size: 64,
            lr: 1e-3,
            verbosity: Verbosity::Quiet,
            ..TrainerConfig::new(Task::Classification)
        };
        let model = || {
            device.seed(1);
            MlpConfig::new(784, vec![128, 64], 10).init(&device)
        };
        let samples = (train.len() * args.epochs) as f64;
        let (mut kiln_runs, mut plain_runs) = (Vec::new(), Vec::new());
        // One untimed run of each first, to warm caches and allocators.
        if let Some(side) = args.only {
            for _ in 0..args.runs {
                match side {
                    Side::Kiln => {
                        Trainer::new(config.clone(), device.clone())?.fit_with_validation(
                            model(),
                            train.clone(),
                            valid.clone(),
                        )?;
                    }
                    Side::Plain => {
                        plain::train(model(), &train, &valid, &config, &device);
                    }
                }
            }
            continue;
        }
        for run in 0..=args.runs {
            let start = Instant::now();
            Trainer::new(config.clone(), device.clone())?.fit_with_validation(
                model(),
                train.clone(),
                valid.clone(),
            )?;
            let kiln = samples / start.elapsed().as_secs_f64();
            let start = Instant::now();
            plain::train(model(), &train, &valid, &config, &device);
            let plain = samples / start.elapsed().as_secs_f64();
            if run > 0 {
                kiln_runs.push(kiln);
                plain_runs.push(plain);
            }
        }
        // Each kiln run is paired with the plain run right after it: the median of the paired
        // ratios cancels drift in the machine's speed between runs.
        let ratios: Vec<f64> = kiln_runs
            .iter()
            .zip(&plain_runs)
            .map(|(k, p)| k / p)
            .collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
        let (kiln, plain, ratio) = (median(kiln_runs), median(plain_runs), median(ratios));
        println!(
            "{}",
            json!({
                "model": "mlp",
                "backend": backend.name(),
                "data": source,
                "batch_size": 64,
                "runs": args.runs,
                "kiln_samples_per_sec": kiln.round(),
                "plain_samples_per_sec": plain.round(),
                "ratio": (ratio * 1000.0).round() / 1000.0,
                "ratio_min": (lo * 1000.0).round() / 1000.0,
                "ratio_max": (hi * 1000.0).round() / 1000.0,
            })
        );
    }
    Ok(())
}
