//! `cargo run --release -p kiln-bench -- mlp|cnn|lstm|transformer`: training throughput of kiln's trainer
//! against a plain hand-written Burn loop (same model, optimiser, batch size, in-memory data and
//! per-epoch validation pass; no burn-train), in the same process, alternating, several runs
//! each. One JSON line per model and backend: median samples/s of each, and the median of the
//! paired ratios kiln/plain (with their range). `cnn` also measures kiln with augmentation
//! (`flip,crop=2,rotate=10`) against kiln without.
//!
//! `--only kiln` times kiln's trainer alone (after a warm-up on 8 batches) and prints its
//! training throughput, validation excluded, for side-by-side runs against PyTorch
//! (`scripts/against-pytorch.sh`). `tta-mlp` and `tta-cnn` train on real MNIST until the test
//! accuracy reaches PyTorch's targets and print the training seconds it took. Every line
//! carries the model's FLOP per training sample (forward and backward, counted from the layer
//! shapes), the achieved GFLOP/s and the machine's fp32 peak.

mod flops;

mod plain;

/// The allocator of kiln's binaries (see kiln-cli), for the same figures as `kiln train`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use kiln::backend::Backend;
use kiln::datasets::{Data, MnistSplit, Targets, mnist, split};
use kiln::prelude::*;
use kiln::train::{Augmentation, Verbosity};
use kiln::transformer::{Pooling as TransformerPooling, Positions};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bench {
    /// MLP 784-128-64-10 on MNIST-shaped data, batch 64, Adam.
    Mlp,
    /// The `mnist` CNN preset on MNIST-shaped data, batch 64, Adam.
    Cnn,
    /// LSTM(28 -> 128) over the 28 rows of MNIST-shaped images, last step -> 10 classes, batch
    /// 64, Adam.
    Lstm,
    /// Token ids (vocabulary 20,000, length 200) -> embedding 32 + learned positions -> one
    /// encoder block (2 heads, d_ff 32, dropout 0.1) -> mean pooling -> 2 classes, batch 64,
    /// Adam: the shapes of `../shared/peers/torch_reference.py transformer`.
    Transformer,
    /// kiln's `Lstm` layer against burn-nn's (input 28, hidden 128, sequence 28, batch 64),
    /// forward and backward.
    LstmLayer,
    /// The MLP (dropout 0.2) on real MNIST until 97.5% test accuracy: training seconds.
    TtaMlp,
    /// The `mnist` CNN preset on real MNIST until 99.0% test accuracy: training seconds.
    TtaCnn,
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
    /// Timed runs of each loop.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Epochs per run.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Samples, 80% for training and 20% for validation [default: 60000 for mlp, 10000 for
    /// cnn and lstm, 5000 for transformer] (images from MNIST when fetched, else random
    /// MNIST-shaped data; random token ids for transformer).
    #[arg(long)]
    samples: Option<usize>,
    /// Run only one side: `kiln` prints kiln's training throughput (validation excluded) after
    /// a warm-up on 8 batches; `plain` prints nothing (for profiling one loop with perf).
    #[arg(long)]
    only: Option<Side>,
    /// Most epochs for `tta-mlp` and `tta-cnn`.
    #[arg(long, default_value_t = 12)]
    max_epochs: usize,
    /// kiln's per-layer gradient measurements (`TrainerConfig::diagnostics`), on as in every
    /// run, or off: `scripts/before-after.sh` with two wrappers measures their cost.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    diagnostics: String,
    /// Tokens per sequence, for `transformer` (`torch_reference.py transformer --seq-len`).
    #[arg(long, default_value_t = 200)]
    seq_len: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// The fused kernels' products: f32 or bf16 (`TrainerConfig::precision`; the plain loop
    /// runs the same fused layers in it too).
    #[arg(long, default_value = "f32")]
    precision: Precision,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
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

/// `n` sequences of `len` random token ids (never the padding id 0) with random binary labels.
fn random_tokens(n: usize, len: usize) -> (Data, &'static str) {
    let mut rng = StdRng::seed_from_u64(0);
    let x = (0..n * len)
        .map(|_| rng.random_range(1..20_000) as f32)
        .collect();
    let labels = (0..n).map(|_| rng.random_range(0..2)).collect();
    let names = vec!["0".into(), "1".into()];
    let data = Data::new(x, vec![len], Targets::Classes { labels, names }).expect("consistent");
    (data, "random")
}

/// Paired throughput of two ways of training: `a` then `b`, `runs` times after one untimed
/// warm-up pair. Returns (median a, median b, median of a/b, min a/b, max a/b).
fn paired(
    runs: usize,
    samples: f64,
    mut a: impl FnMut() -> Result<()>,
    mut b: impl FnMut() -> Result<()>,
) -> Result<[f64; 5]> {
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for run in 0..=runs {
        let start = Instant::now();
        a()?;
        let sa = samples / start.elapsed().as_secs_f64();
        let start = Instant::now();
        b()?;
        let sb = samples / start.elapsed().as_secs_f64();
        if run > 0 {
            ra.push(sa);
            rb.push(sb);
        }
    }
    // Each `a` run is paired with the `b` run right after it: the median of the paired ratios
    // cancels drift in the machine's speed between runs.
    let ratios: Vec<f64> = ra.iter().zip(&rb).map(|(x, y)| x / y).collect();
    let lo = ratios.iter().copied().fold(f64::MAX, f64::min);
    let hi = ratios.iter().copied().fold(f64::MIN, f64::max);
    Ok([median(ra), median(rb), median(ratios), lo, hi])
}

fn measure<M: Model>(
    args: &Args,
    name: &str,
    (data, source): (Data, &str),
    flop_per_sample: f64,
    model: impl Fn(&Device) -> M,
) -> Result<()> {
    let backends: Vec<Backend> = if args.backend.is_empty() {
        Backend::compiled()
    } else {
        args.backend
            .iter()
            .map(|b| b.parse())
            .collect::<Result<_, _>>()?
    };
    let parts = split(&data, 0.2, 0)?;
    let (train, valid) = (Arc::new(parts.first), Arc::new(parts.second));
    let samples = (train.len() * args.epochs) as f64;
    for backend in backends {
        let device = backend.device()?;
        let config = TrainerConfig {
            epochs: args.epochs,
            batch_size: args.batch_size,
            lr: 1e-3,
            verbosity: Verbosity::Quiet,
            diagnostics: args.diagnostics == "on",
            precision: args.precision,
            ..TrainerConfig::new(Task::Classification)
        };
        let fresh = || {
            device.seed(1);
            model(&device)
        };
        let kiln_fit = |config: &TrainerConfig| -> Result<()> {
            Trainer::new(config.clone(), device.clone())?.fit_with_validation(
                fresh(),
                train.clone(),
                valid.clone(),
            )?;
            Ok(())
        };
        let plain_fit = || -> Result<()> {
            plain::train(fresh(), &train, &valid, &config, &device);
            Ok(())
        };
        if args.only == Some(Side::Plain) {
            for _ in 0..args.runs {
                plain_fit()?;
            }
            continue;
        }
        if args.only == Some(Side::Kiln) {
            // Warm up as PyTorch's reference script does: one pass over 8 batches.
            let warm = train.subset(&(0..train.len().min(8 * 64)).collect::<Vec<_>>());
            Trainer::new(config.clone(), device.clone())?.fit_with_validation(
                fresh(),
                warm,
                valid.clone(),
            )?;
            let mut rates = Vec::new();
            for _ in 0..args.runs {
                let fit = Trainer::new(config.clone(), device.clone())?.fit_with_validation(
                    fresh(),
                    train.clone(),
                    valid.clone(),
                )?;
                let seconds: f64 = fit
                    .history
                    .epochs
                    .iter()
                    .map(|e| e.train_seconds.unwrap_or(e.seconds))
                    .sum();
                rates.push(samples / seconds);
            }
            let rate = median(rates.clone());
            println!(
                "{}",
                json!({
                    "framework": "kiln",
                    "precision": args.precision.name(),
                    "precision_unit": args.precision.unit(),
                    "model": name,
                    "backend": backend.name(),
                    "data": source,
                    "train_samples": train.len(),
                    "batch_size": args.batch_size,
                    "runs": rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
                    "samples_per_sec": rate.round(),
                    "flop_per_sample": flop_per_sample,
                    "gflops": round3(rate * flop_per_sample / 1e9),
                    "peak_gflops": round3(flops::peak_gflops()),
                })
            );
            continue;
        }
        let [kiln, plain, ratio, lo, hi] =
            paired(args.runs, samples, || kiln_fit(&config), plain_fit)?;
        let mut line = json!({
            "model": name,
            "backend": backend.name(),
            "data": source,
            "train_samples": train.len(),
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "runs": args.runs,
            "kiln_samples_per_sec": kiln.round(),
            "plain_samples_per_sec": plain.round(),
            "ratio": round3(ratio),
            "ratio_min": round3(lo),
            "ratio_max": round3(hi),
            "flop_per_sample": flop_per_sample,
            "kiln_gflops": round3(kiln * flop_per_sample / 1e9),
            "peak_gflops": round3(flops::peak_gflops()),
        });
        if args.bench == Bench::Cnn {
            let augmented = TrainerConfig {
                augmentation: Some(Augmentation::parse("flip,crop=2,rotate=10", 1).expect("valid")),
                ..config.clone()
            };
            let [with, without, aug_ratio, _, _] = paired(
                args.runs,
                samples,
                || kiln_fit(&augmented),
                || kiln_fit(&config),
            )?;
            let obj = line.as_object_mut().expect("object");
            obj.insert("augment".into(), Value::from("flip,crop=2,rotate=10"));
            obj.insert("augmented_samples_per_sec".into(), json!(with.round()));
            obj.insert("unaugmented_samples_per_sec".into(), json!(without.round()));
            obj.insert("augment_ratio".into(), json!(round3(aug_ratio)));
        }
        println!("{line}");
    }
    Ok(())
}

/// Forward and backward of one LSTM layer, kiln's against burn-nn's, same input.
fn lstm_layer(args: &Args) -> Result<()> {
    use kiln::burn::nn::LstmConfig as BurnLstmConfig;
    use kiln::burn::tensor::Distribution;
    use kiln::lstm::LstmConfig;

    let (batch, seq, d_input, d_hidden, steps) = (64, 28, 28, 128, 20);
    let backends: Vec<Backend> = if args.backend.is_empty() {
        vec![Backend::compiled()[0]]
    } else {
        args.backend
            .iter()
            .map(|b| b.parse())
            .collect::<Result<_, _>>()?
    };
    for backend in backends {
        let device = backend.device()?.autodiff();
        device.seed(1);
        let kiln_lstm = LstmConfig::new(d_input, d_hidden).init(&device);
        let burn_lstm = BurnLstmConfig::new(d_input, d_hidden, true).init(&device);
        let x = Tensor::<3>::random([batch, seq, d_input], Distribution::Default, &device);
        let samples = (batch * steps) as f64;
        let kiln_run = || -> Result<()> {
            for _ in 0..steps {
                let (out, _) = kiln_lstm.forward(x.clone(), None);
                let _grads = out.narrow(1, seq - 1, 1).sum().backward();
            }
            Ok(())
        };
        let burn_run = || -> Result<()> {
            for _ in 0..steps {
                let (out, _) = burn_lstm.forward(x.clone(), None);
                let _grads = out.narrow(1, seq - 1, 1).sum().backward();
            }
            Ok(())
        };
        if let Some(side) = args.only {
            for _ in 0..args.runs {
                match side {
                    Side::Kiln => kiln_run()?,
                    Side::Plain => burn_run()?,
                }
            }
            continue;
        }
        let [kiln, burn, ratio, lo, hi] = paired(args.runs, samples, kiln_run, burn_run)?;
        println!(
            "{}",
            json!({
                "model": "lstm-layer",
                "backend": backend.name(),
                "shape": {"batch": batch, "seq": seq, "d_input": d_input, "d_hidden": d_hidden},
                "runs": args.runs,
                "kiln_samples_per_sec": kiln.round(),
                "burn_nn_samples_per_sec": burn.round(),
                "ratio": round3(ratio),
                "ratio_min": round3(lo),
                "ratio_max": round3(hi),
            })
        );
    }
    Ok(())
}

/// PyTorch's reference MLP: 784-128-64-10, ReLU, dropout 0.2.
fn mlp(device: &Device) -> Mlp {
    MlpConfig::new(784, vec![128, 64], 10)
        .with_dropout(0.2)
        .init(device)
}

/// PyTorch's reference CNN: the `mnist` preset.
fn cnn(device: &Device) -> Cnn {
    CnnConfig::preset(Preset::Mnist, 10).init(device)
}

/// Trains on real MNIST's training images, validating on its test images after every epoch,
/// until the test accuracy reaches `target` (PyTorch's recipe in
/// `../shared/peers/torch_mnist_time_to_accuracy.py`: Adam 1e-3, batch 64, shuffled). Prints a
/// line per epoch with the training seconds so far (validation excluded), then a summary.
fn time_to_accuracy<M: Model>(
    args: &Args,
    name: &str,
    target: f64,
    model: impl Fn(&Device) -> M,
) -> Result<()> {
    use kiln::train::History;
    use std::ops::ControlFlow;

    let train = mnist(None, MnistSplit::Train)?;
    let test = mnist(None, MnistSplit::Test)?;
    let backend: Backend = match args.backend.first() {
        Some(name) => name.parse()?,
        None => Backend::compiled()[0],
    };
    let device = backend.device()?;
    device.seed(0);
    let config = TrainerConfig {
        epochs: args.max_epochs,
        batch_size: 64,
        lr: 1e-3,
        verbosity: Verbosity::Quiet,
        precision: args.precision,
        ..TrainerConfig::new(Task::Classification)
    };
    let reached = move |history: &History| match history.epochs.last() {
        Some(epoch) if epoch.val_accuracy >= Some(target) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    };
    let fit = Trainer::new(config, device.clone())?
        .with_callback(reached)
        .fit_with_validation(model(&device), train, test)?;
    let mut trained = 0.0;
    for epoch in &fit.history.epochs {
        trained += epoch.train_seconds.unwrap_or(epoch.seconds);
        println!(
            "{}",
            json!({
                "framework": "kiln",
                "model": name,
                "epoch": epoch.epoch,
                "train_seconds": (trained * 10.0_f64).round() / 10.0,
                "test_accuracy": epoch.val_accuracy.map(|a| (a * 1e4).round() / 1e4),
            })
        );
    }
    let last = fit.history.epochs.last().and_then(|e| e.val_accuracy);
    println!(
        "{}",
        json!({
            "framework": "kiln",
            "model": name,
            "backend": backend.name(),
            "target": target,
            "reached": last >= Some(target),
            "epochs": fit.history.epochs.len(),
            "train_seconds": (trained * 10.0_f64).round() / 10.0,
        })
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    // For the loops outside kiln's trainer (the plain loop, the LSTM layer), which set none.
    kiln::common::set_precision(args.precision);
    let samples = |default| args.samples.unwrap_or(default);
    match args.bench {
        Bench::LstmLayer => lstm_layer(&args),
        Bench::TtaMlp => time_to_accuracy(&args, "mlp", 0.975, mlp),
        Bench::TtaCnn => time_to_accuracy(&args, "cnn", 0.99, cnn),
        Bench::Mlp => measure(&args, "mlp", mnist_shaped(samples(60_000)), flops::MLP, mlp),
        Bench::Cnn => measure(&args, "cnn", mnist_shaped(samples(10_000)), flops::CNN, cnn),
        Bench::Lstm => {
            let (mut data, source) = mnist_shaped(samples(10_000));
            data.sample_shape = vec![28, 28];
            measure(&args, "lstm", (data, source), flops::LSTM, |d| {
                SequenceModelConfig::new(28, 128, 10).init(d)
            })
        }
        Bench::Transformer => measure(
            &args,
            "transformer",
            random_tokens(samples(5_000), args.seq_len),
            // Counted at 200 tokens; scaled linearly (the attention's share grows faster).
            flops::TRANSFORMER * args.seq_len as f64 / 200.0,
            |d| {
                SequenceClassifierConfig::new(32, 2)
                    .with_n_heads(2)
                    .with_d_ff(32)
                    .with_n_blocks(1)
                    .with_max_len(args.seq_len)
                    .with_positions(Positions::Learned)
                    .with_pooling(TransformerPooling::Mean)
                    .init_tokens(20_000, d)
            },
        ),
    }
}
