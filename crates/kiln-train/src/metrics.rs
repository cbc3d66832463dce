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
    /// The batch's mean loss.
    pub loss: Tensor<1>,
    /// Samples in the batch.
    pub batch_size: usize,
}

/// One batch's class scores `[batch, classes]` and true classes `[batch]`.
pub struct BatchHits {
    /// Class scores, `[batch, classes]`.
    pub scores: Tensor<2>,
    /// True classes, `[batch]`.
    pub targets: Tensor<1, Int>,
}

/// What an epoch metric keeps of each batch, and how a group of kept batches sums up.
pub trait BatchSum: Send + Sync + 'static {
    /// What the training step hands the metric.
    type Input;
    /// What is kept of each batch until the next read: tensors, not yet read.
    type Kept: Clone + Send + Sync;
    /// Name shown in the progress display and history.
    const NAME: &'static str;
    /// Decimals shown.
    const PRECISION: usize;
    /// Unit shown after the value (`%`), if any.
    const UNIT: Option<&'static str>;
    /// Whether a larger value is better.
    const HIGHER_IS_BETTER: bool;

    /// What to keep of a batch's item (cheap: tensors are read at the epoch's end).
    fn keep(item: &Self::Input) -> Self::Kept;
    /// The sum of the batches' values (the epoch value is sum / count) and their sample count.
    fn sum(kept: Vec<Self::Kept>) -> Result<(f64, usize), TensorReadError>;
}

/// Sums a batch's mean loss weighted by its size: the epoch's mean loss per sample.
pub struct LossSum;

impl BatchSum for LossSum {
    type Input = BatchLoss;
    type Kept = (Tensor<1>, usize);
    const NAME: &'static str = "Loss";
    const PRECISION: usize = 4;
    const UNIT: Option<&'static str> = None;
    const HIGHER_IS_BETTER: bool = false;

    fn keep(item: &BatchLoss) -> Self::Kept {
        (item.loss.clone(), item.batch_size)
    }

    fn sum(kept: Vec<Self::Kept>) -> Result<(f64, usize), TensorReadError> {
        let (losses, sizes): (Vec<_>, Vec<_>) = kept.into_iter().unzip();
        let values = Tensor::cat(losses, 0).try_into_data()?;
        let sum = values
            .iter::<f64>()
            .zip(&sizes)
            .map(|(v, n)| v * *n as f64)
            .sum();
        Ok((sum, sizes.iter().sum()))
    }
}

/// Counts the samples whose highest score is their class, in percent.
pub struct HitSum;

impl BatchSum for HitSum {
    type Input = BatchHits;
    type Kept = (Tensor<2>, Tensor<1, Int>);
    const NAME: &'static str = "Accuracy";
    const PRECISION: usize = 2;
    const UNIT: Option<&'static str> = Some("%");
    const HIGHER_IS_BETTER: bool = true;

    fn keep(item: &BatchHits) -> Self::Kept {
        (item.scores.clone(), item.targets.clone())
    }

    fn sum(kept: Vec<Self::Kept>) -> Result<(f64, usize), TensorReadError> {
        let (scores, targets): (Vec<_>, Vec<_>) = kept.into_iter().unzip();
        let targets = Tensor::cat(targets, 0);
        let count = targets.dims()[0];
        let hits = Tensor::cat(scores, 0)
            .argmax(1)
            .squeeze_dim::<1>(1)
            .equal(targets)
            .int()
            .sum()
            .try_into_scalar::<i64>()?;
        Ok((100.0 * hits as f64, count))
    }
}

/// The epoch's mean training or validation loss; named "Loss", like burn-train's `LossMetric`.
pub type EpochLoss = EpochMetric<LossSum>;
/// The epoch's accuracy, in percent of samples; named "Accuracy", like burn-train's
/// `AccuracyMetric`.
pub type EpochAccuracy = EpochMetric<HitSum>;

/// A burn-train numeric metric over an epoch that keeps each batch's tensors and reads them
/// `READ_EVERY` (64) batches at a time.
pub struct EpochMetric<S: BatchSum> {
    name: MetricName,
    pending: Vec<S::Kept>,
    sum: f64,
    count: usize,
    /// The last group's value, shown until the next read.
    shown: Option<NumericEntry>,
}

impl<S: BatchSum> EpochMetric<S> {
    /// A metric with nothing counted yet.
    pub fn new() -> Self {
        Self {
            name: Arc::new(S::NAME.to_string()),
            pending: Vec::new(),
            sum: 0.0,
            count: 0,
            shown: None,
        }
    }

    fn read(&mut self) -> Result<(), TensorReadError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (sum, count) = S::sum(std::mem::take(&mut self.pending))?;
        self.sum += sum;
        self.count += count;
        self.shown = Some(NumericEntry::Aggregated {
            aggregated_value: sum / count.max(1) as f64,
            count,
        });
        Ok(())
    }

    fn mean(&self) -> f64 {
        self.sum / self.count.max(1) as f64
    }

    fn entry(&self) -> SerializedEntry {
        SerializedEntry::new(
            format!("{} {:.*}", self.name, S::PRECISION, self.mean()),
            NumericEntry::Final(self.mean()).serialize(),
        )
    }
}

impl<S: BatchSum> Default for EpochMetric<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: BatchSum> Clone for EpochMetric<S> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            pending: self.pending.clone(),
            sum: self.sum,
            count: self.count,
            shown: self.shown.clone(),
        }
    }
}

impl<S: BatchSum> Metric for EpochMetric<S> {
    type Input = S::Input;

    fn update(
        &mut self,
        item: &S::Input,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.pending.push(S::keep(item));
        if self.pending.len() >= READ_EVERY {
            self.read()?;
        }
        Ok(self.entry())
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        self.read()?;
        Ok(self.entry())
    }

    fn clear(&mut self) {
        *self = Self::new();
    }

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: S::UNIT.map(str::to_string),
            higher_is_better: S::HIGHER_IS_BETTER,
        }
        .into()
    }
}

impl<S: BatchSum> Numeric for EpochMetric<S> {
    fn value(&self) -> Option<NumericEntry> {
        self.shown.clone()
    }

    fn running_value(&self) -> Option<NumericEntry> {
        (self.count > 0).then(|| NumericEntry::Value(self.mean()))
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Final(self.mean())
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
