//! Extending kiln without touching it: a metric of your own beside one of burn-train's, a
//! callback at the end of every epoch, and a transform of your own in the augmentation. A
//! small CNN on the embedded 8x8 digits.
//!
//! `cargo run --release -p kiln-examples --example extending`

use std::ops::ControlFlow;
use std::sync::Arc;

use kiln::burn::tensor::TensorReadError;
use kiln::burn::tensor::activation::softmax;
use kiln::burn::train::metric::state::{FormatOptions, NumericMetricState};
use kiln::burn::train::metric::{
    Metric, MetricMetadata, MetricName, Numeric, NumericEntry, SerializedEntry, TopKAccuracyMetric,
};
use kiln::cnn::{CnnConfig, ConvBlockConfig, Padding, Pool};
use kiln::datasets::{Data, digits, split};
use kiln::prelude::*;
use kiln::train::rand::RngExt;
use kiln::train::rand::rngs::StdRng;
use kiln::train::{Augmentation, BatchHits, History};

/// How sure the model is: the mean of each sample's highest class probability. A metric takes
/// one of the inputs kiln's training step provides ([`BatchHits`]: class scores and targets).
#[derive(Clone, Default)]
struct Confidence {
    state: NumericMetricState,
}

impl Metric for Confidence {
    type Input = BatchHits;

    fn name(&self) -> MetricName {
        Arc::new("confidence".to_string())
    }

    fn update(
        &mut self,
        hits: &BatchHits,
        _: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let batch = hits.targets.dims()[0];
        let top = softmax(hits.scores.clone(), 1).max_dim(1).mean();
        self.state
            .update(top.try_into_scalar::<f32>()? as f64, batch);
        Ok(self
            .state
            .compute_update(FormatOptions::new(self.name()).precision(3)))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Ok(self
            .state
            .compute_final(FormatOptions::new(self.name()).precision(3)))
    }

    fn clear(&mut self) {
        self.state.reset()
    }
}

impl Numeric for Confidence {
    fn value(&self) -> Option<NumericEntry> {
        Some(self.state.current_value())
    }
    fn running_value(&self) -> Option<NumericEntry> {
        Some(self.state.running_value())
    }
    fn final_value(&self) -> NumericEntry {
        self.state.final_value()
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
    let mut all = digits();
    all.x.iter_mut().for_each(|v| *v /= 16.0);
    let parts = split(&Data::new(all.x, vec![1, 8, 8], all.y)?, 0.2, 0)?;

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
        .with_metric(Confidence::default())
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
