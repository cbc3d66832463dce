//! Epoch loss and accuracy as burn-train metrics that read the device once every
//! [`READ_EVERY`] batches instead of after every batch.
//!
//! burn-train's `LossMetric` and `AccuracyMetric` run a few tensor operations and read a scalar
//! back after every batch, on its event thread. On a two-core CPU that thread competes with the
//! training step's matrix products: profiled, it cost kiln's MLP about 5% of its throughput
//! against a hand-written loop. These metrics keep each batch's tensors (already computed by the
//! step: no new work) and reduce them in one pass when [`READ_EVERY`] batches have gathered or
//! the epoch ends. Epoch values are the same: the mean loss weighted by batch size, and the
//! percentage of samples whose highest score is their class (burn-train's units, so that its
//! early stopping and kiln's history read them alike).

use std::sync::Arc;

use burn::tensor::{Int, Tensor, TensorReadError};
use burn::train::metric::{
    Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry,
    SerializedEntry,
};

/// Batches gathered between two reads: enough to make reads rare, few enough that the progress
/// bar still moves.
pub const READ_EVERY: usize = 64;

/// One batch's mean loss, `[1]`, and its size.
pub struct BatchLoss {
    pub loss: Tensor<1>,
    pub batch_size: usize,
}

/// One batch's class scores `[batch, classes]` and true classes `[batch]`.
pub struct BatchHits {
    pub scores: Tensor<2>,
    pub targets: Tensor<1, Int>,
}

/// A running sum over an epoch, and what the progress display last showed.
#[derive(Clone, Default)]
struct Running {
    sum: f64,
    count: usize,
    /// The last value read, shown until the next read.
    shown: Option<NumericEntry>,
}

impl Running {
    fn add(&mut self, sum: f64, count: usize) {
        self.sum += sum;
        self.count += count;
        self.shown = Some(NumericEntry::Aggregated {
            aggregated_value: sum / count.max(1) as f64,
            count,
        });
    }

    fn mean(&self) -> f64 {
        self.sum / self.count.max(1) as f64
    }

    fn entry(&self, name: &str, precision: usize) -> SerializedEntry {
        SerializedEntry::new(
            format!("{name} {:.precision$}", self.mean()),
            NumericEntry::Final(self.mean()).serialize(),
        )
    }
}

/// The epoch's mean training or validation loss.
#[derive(Clone)]
pub struct EpochLoss {
    name: MetricName,
    pending: Vec<(Tensor<1>, usize)>,
    running: Running,
}

impl EpochLoss {
    /// Named "Loss", like burn-train's `LossMetric`.
    pub fn new() -> Self {
        Self {
            name: Arc::new("Loss".to_string()),
            pending: Vec::new(),
            running: Running::default(),
        }
    }

    fn read(&mut self) -> Result<(), TensorReadError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (losses, sizes): (Vec<_>, Vec<_>) = self.pending.drain(..).unzip();
        let values = Tensor::cat(losses, 0).try_into_data()?;
        let sum = values
            .iter::<f64>()
            .zip(&sizes)
            .map(|(v, n)| v * *n as f64)
            .sum();
        self.running.add(sum, sizes.iter().sum());
        Ok(())
    }
}

impl Default for EpochLoss {
    fn default() -> Self {
        Self::new()
    }
}

impl Metric for EpochLoss {
    type Input = BatchLoss;

    fn update(
        &mut self,
        item: &BatchLoss,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.pending.push((item.loss.clone(), item.batch_size));
        if self.pending.len() >= READ_EVERY {
            self.read()?;
        }
        Ok(self.running.entry(&self.name, 4))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        self.read()?;
        Ok(self.running.entry(&self.name, 4))
    }

    fn clear(&mut self) {
        self.pending.clear();
        self.running = Running::default();
    }

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: None,
            higher_is_better: false,
        }
        .into()
    }
}

impl Numeric for EpochLoss {
    fn value(&self) -> Option<NumericEntry> {
        self.running.shown.clone()
    }

    fn running_value(&self) -> Option<NumericEntry> {
        (self.running.count > 0).then(|| NumericEntry::Value(self.running.mean()))
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Final(self.running.mean())
    }
}

/// The epoch's accuracy, in percent of samples.
#[derive(Clone)]
pub struct EpochAccuracy {
    name: MetricName,
    pending: Vec<(Tensor<2>, Tensor<1, Int>)>,
    running: Running,
}

impl EpochAccuracy {
    /// Named "Accuracy", like burn-train's `AccuracyMetric`.
    pub fn new() -> Self {
        Self {
            name: Arc::new("Accuracy".to_string()),
            pending: Vec::new(),
            running: Running::default(),
        }
    }

    fn read(&mut self) -> Result<(), TensorReadError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (scores, targets): (Vec<_>, Vec<_>) = self.pending.drain(..).unzip();
        let targets = Tensor::cat(targets, 0);
        let count = targets.dims()[0];
        let hits = Tensor::cat(scores, 0)
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(targets)
            .int()
            .sum()
            .try_into_scalar::<i64>()?;
        self.running.add(100.0 * hits as f64, count);
        Ok(())
    }
}

impl Default for EpochAccuracy {
    fn default() -> Self {
        Self::new()
    }
}

impl Metric for EpochAccuracy {
    type Input = BatchHits;

    fn update(
        &mut self,
        item: &BatchHits,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.pending
            .push((item.scores.clone(), item.targets.clone()));
        if self.pending.len() >= READ_EVERY {
            self.read()?;
        }
        Ok(self.running.entry(&self.name, 2))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        self.read()?;
        Ok(self.running.entry(&self.name, 2))
    }

    fn clear(&mut self) {
        self.pending.clear();
        self.running = Running::default();
    }

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: Some("%".to_string()),
            higher_is_better: true,
        }
        .into()
    }
}

impl Numeric for EpochAccuracy {
    fn value(&self) -> Option<NumericEntry> {
        self.running.shown.clone()
    }

    fn running_value(&self) -> Option<NumericEntry> {
        (self.running.count > 0).then(|| NumericEntry::Value(self.running.mean()))
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Final(self.running.mean())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn metadata() -> MetricMetadata {
        MetricMetadata {
            progress: burn::data::dataloader::Progress {
                items_processed: 1,
                items_total: 1,
                unit: None,
            },
            iteration: Some(1),
            lr: None,
        }
    }

    #[test]
    fn the_epoch_loss_is_the_mean_weighted_by_batch_size_across_reads() {
        let device = Device::flex();
        let mut metric = EpochLoss::new();
        // READ_EVERY + 1 batches: one read on the way, one at the end; the last batch is small.
        let mut expected = (0.0, 0);
        for i in 0..=READ_EVERY {
            let (loss, n) = (i as f32 * 0.5, if i == READ_EVERY { 3 } else { 8 });
            expected = (expected.0 + loss as f64 * n as f64, expected.1 + n);
            let item = BatchLoss {
                loss: Tensor::from_floats([loss], &device),
                batch_size: n,
            };
            metric.update(&item, &metadata()).unwrap();
        }
        assert!(metric.value().is_some(), "a read happened on the way");
        metric.compute().unwrap();
        let NumericEntry::Final(mean) = metric.final_value() else {
            panic!("final")
        };
        assert!((mean - expected.0 / expected.1 as f64).abs() < 1e-9);
        metric.clear();
        assert!(metric.running_value().is_none());
    }

    #[test]
    fn the_epoch_accuracy_counts_samples_whose_top_score_is_their_class() {
        let device = Device::flex();
        let mut metric = EpochAccuracy::new();
        let batches = [
            ([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], [0, 1, 1]), // 2 of 3
            ([[0.1, 0.9], [0.3, 0.7], [0.5, 0.6]], [0, 0, 0]), // 0 of 3
        ];
        for (scores, targets) in batches {
            let item = BatchHits {
                scores: Tensor::from_floats(scores, &device),
                targets: Tensor::from_ints(targets, &device),
            };
            metric.update(&item, &metadata()).unwrap();
        }
        assert!(
            metric.value().is_none(),
            "nothing read before the epoch ends"
        );
        metric.compute().unwrap();
        let NumericEntry::Final(acc) = metric.final_value() else {
            panic!("final")
        };
        assert!((acc - 100.0 * 2.0 / 6.0).abs() < 1e-9);
    }
}
