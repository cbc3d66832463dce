//! Keras's `TerminateOnNaN`: a non-finite training loss stops the run.
//!
//! It is a burn-train metric on the training split, so that it sees every batch's loss without
//! a read on the training thread: like [`EpochLoss`](crate::EpochLoss) it keeps the losses and
//! reads them [`READ_EVERY`] batches at a time (and at the end of the epoch). The first
//! non-finite one stops training through burn-train's interrupter, before the epoch is
//! validated or checkpointed, and is reported with its epoch and batch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use burn::tensor::{Tensor, TensorReadError};
use burn::train::Interrupter;
use burn::train::metric::{Metric, MetricMetadata, MetricName, SerializedEntry};

use crate::BatchLoss;
use crate::metrics::READ_EVERY;

/// Where the loss first stopped being a finite number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NonFinite {
    /// From 1.
    pub epoch: usize,
    /// The batch within the epoch, from 1.
    pub batch: usize,
    pub loss: f64,
}

/// The guard, as a burn-train metric of the training split.
#[derive(Clone)]
pub(crate) struct TerminateOnNan {
    name: MetricName,
    /// Kept batch losses with their batch numbers.
    pending: Vec<(Tensor<1>, usize)>,
    /// The epoch being trained, kept by the epoch-end hook.
    epoch: Arc<AtomicUsize>,
    interrupter: Interrupter,
    pub found: Arc<Mutex<Option<NonFinite>>>,
}

impl TerminateOnNan {
    pub fn new(epoch: Arc<AtomicUsize>, interrupter: Interrupter) -> Self {
        Self {
            name: Arc::new("TerminateOnNaN".into()),
            pending: Vec::new(),
            epoch,
            interrupter,
            found: Arc::default(),
        }
    }

    fn read(&mut self) -> Result<(), TensorReadError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (losses, batches): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().unzip();
        let values = Tensor::cat(losses, 0).try_into_data()?;
        let first_bad = values
            .iter::<f64>()
            .zip(batches)
            .find(|(loss, _)| !loss.is_finite());
        if let Some((loss, batch)) = first_bad {
            let mut found = self.found.lock().expect("guard lock");
            if found.is_none() {
                *found = Some(NonFinite {
                    epoch: self.epoch.load(Ordering::Relaxed),
                    batch,
                    loss,
                });
                self.interrupter.stop(Some("non-finite loss"));
            }
        }
        Ok(())
    }
}

impl Metric for TerminateOnNan {
    type Input = BatchLoss;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn update(
        &mut self,
        item: &BatchLoss,
        metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let batch = metadata.iteration.unwrap_or(self.pending.len() + 1);
        self.pending.push((item.loss.clone(), batch));
        if self.pending.len() >= READ_EVERY {
            self.read()?;
        }
        Ok(SerializedEntry::new(String::new(), String::new()))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        self.read()?;
        Ok(SerializedEntry::new(String::new(), String::new()))
    }

    fn clear(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn metadata(iteration: usize) -> MetricMetadata {
        MetricMetadata {
            progress: burn::data::dataloader::Progress {
                items_processed: iteration,
                items_total: 100,
                unit: None,
            },
            iteration: Some(iteration),
            lr: None,
        }
    }

    #[test]
    fn the_first_non_finite_batch_is_named_and_the_run_interrupted() {
        let device = Device::flex();
        let epoch = Arc::new(AtomicUsize::new(3));
        let interrupter = Interrupter::new();
        let mut guard = TerminateOnNan::new(epoch, interrupter.clone());
        for i in 1..=10 {
            let loss = match i {
                7 => f32::INFINITY,
                8 => f32::NAN,
                _ => 0.5,
            };
            let item = BatchLoss {
                loss: Tensor::from_floats([loss], &device),
                batch_size: 4,
            };
            guard.update(&item, &metadata(i)).unwrap();
        }
        assert!(
            !interrupter.should_stop(),
            "read only every READ_EVERY batches"
        );
        guard.compute().unwrap();
        assert!(interrupter.should_stop());
        let found = guard.found.lock().unwrap().unwrap();
        assert_eq!((found.epoch, found.batch), (3, 7));
        assert!(found.loss.is_infinite());
    }

    #[test]
    fn finite_losses_never_stop_the_run() {
        let device = Device::flex();
        let interrupter = Interrupter::new();
        let mut guard = TerminateOnNan::new(Arc::default(), interrupter.clone());
        for i in 1..=(2 * READ_EVERY + 1) {
            let item = BatchLoss {
                loss: Tensor::from_floats([1e30], &device),
                batch_size: 1,
            };
            guard.update(&item, &metadata(i)).unwrap();
        }
        guard.compute().unwrap();
        assert!(!interrupter.should_stop());
        assert!(guard.found.lock().unwrap().is_none());
    }
}
