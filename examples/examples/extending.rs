//! Extending kiln without touching it: a metric of your own beside one of burn-train's, a
//! callback at the end of every epoch, and a transform of your own in the augmentation. A
//! small CNN on the embedded 8x8 digits.
//!
//! `cargo run --release -p kiln-examples --example extending`

use std::ops::ControlFlow;

use kiln::burn::tensor::TensorReadError;
use kiln::burn::tensor::activation::softmax;
use kiln::burn::train::metric::TopKAccuracyMetric;
use kiln::cnn::{CnnConfig, ConvBlockConfig, Padding, Pool};
use kiln::datasets::{digit_images, split};
use kiln::prelude::*;
use kiln::train::rand::RngExt;
use kiln::train::rand::rngs::StdRng;
use kiln::train::{Augmentation, BatchHits, BatchSum, EpochMetric, History};

/// How sure the model is: the mean of each sample's highest class probability. kiln's
/// [`EpochMetric`] does a metric's bookkeeping; a [`BatchSum`] says what to keep of each batch
/// (tensors, not yet read: the step is not held up) and how kept batches add up, read 64
/// batches at a time. Its input is one of those kiln's training step provides ([`BatchHits`]:
/// class scores and targets).
struct Confidence;

impl BatchSum for Confidence {
    type Input = BatchHits;
    /// Each sample's highest probability.
    type Kept = Tensor<1>;
    const NAME: &'static str = "confidence";
    const PRECISION: usize = 3;
    const UNIT: Option<&'static str> = None;
    const HIGHER_IS_BETTER: bool = true;

    fn keep(hits: &BatchHits) -> Tensor<1> {
        softmax(hits.scores.clone(), 1).max_dim(1).squeeze_dim(1)
    }

    fn sum(kept: Vec<Tensor<1>>) -> Result<(f64, usize), TensorReadError> {
        let all = Tensor::cat(kept, 0);
        let count = all.dims()[0];
        Ok((all.sum().try_into_scalar::<f32>()? as f64, count))
    }
}

/// Salt noise: one random pixel of each image set to the image's brightest value. Every
/// random draw comes from `rng`, which kiln seeds per batch, so runs stay reproducible.
fn salt(image: &mut [f32], [_, h, w]: [usize; 3], rng: &mut StdRng) {
    let max = image.iter().copied().fold(f32::MIN, f32::max);
    image[rng.random_range(0..h * w)] = max;
}

fn main() -> anyhow::Result<()> {
    let (backend, device) = device(None)?;
    let parts = split(&digit_images(), 0.2, 0)?;

    device.seed(42);
    let model = CnnConfig::new(
        1,
        [8, 8],
        vec![
            ConvBlockConfig::new([1, 16])
                .with_padding(Padding::Same)
                .with_pool(Some(Pool::Max)),
        ],
        vec![64],
        10,
    )
    .init(&device);
    let config = TrainerConfig {
        epochs: 40,
        lr: 3e-3,
        augmentation: Some(Augmentation::new(42).crop(1).with("salt", salt)),
        ..TrainerConfig::new(Task::Classification)
    };
    // Stop as soon as the validation accuracy reaches 97% (Keras's `stop_training`).
    let target = |history: &History| {
        let last = history.epochs.last().expect("the epoch that just ended");
        match last.val_accuracy {
            Some(accuracy) if accuracy >= 0.97 => {
                println!("epoch {}: val_accuracy {accuracy:.4}, stopping", last.epoch);
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        }
    };
    let fit = Trainer::new(config, device.clone())?
        .with_metric(EpochMetric::<Confidence>::new())
        .with_metric(TopKAccuracyMetric::new(2))
        .with_callback(target)
        .fit(model, &parts.first)?;

    let last = fit.history.epochs.last().expect("at least one epoch");
    println!(
        "{}",
        fit.history.to_csv().lines().next().unwrap_or_default()
    );
    println!(
        "backend {backend}: {} epochs; validation confidence {:.3}; test accuracy {:.4}",
        fit.epochs_run,
        last.metrics["val_confidence"],
        evaluate(
            &fit.model,
            &parts.second,
            Task::Classification,
            256,
            &device
        )
        .accuracy
        .unwrap_or_default()
    );
    Ok(())
}
