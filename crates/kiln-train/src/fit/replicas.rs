//! Data-parallel training on several devices (and over the ranks of an MPI job), arranged so
//! that adding devices does not change what is trained.
//!
//! Each device (replica) reads a contiguous slice of the epoch's order, one batch per step,
//! and the replicas' gradients are summed on the first device (see
//! [`crate::fit::ranks`]). kiln makes that step equal to a single-device step over the same
//! global batch:
//! - [`replica_layout`] lays each epoch's order out so that step `k` hands device `d` the `d`-th
//!   chunk of the single-device run's batch `k`, the last, partial one included ([`Replicas::slices`]
//!   are sized for that, so an epoch has as many steps as on one device);
//! - each device's batch carries its share of the step's samples ([`StepShares`]), by which
//!   its loss is scaled, so that the summed gradients are the mean over the step's samples, as
//!   on one device (also in the last, partial step of an epoch, whose parts may differ in size).

use std::sync::RwLock;

use burn::tensor::Device;

use crate::TrainError;

/// The devices a run trains on and the batch each of them gets.
#[derive(Debug, Clone)]
pub(crate) struct Replicas {
    pub devices: Vec<Device>,
    /// Samples per device per step: the global batch divided by the device count.
    pub device_batch: usize,
}

impl Replicas {
    /// `devices` share the global `batch_size`; an uneven split is an error.
    pub fn new(devices: Vec<Device>, batch_size: usize) -> Result<Self, TrainError> {
        let n = devices.len().max(1);
        if !batch_size.is_multiple_of(n) {
            return Err(TrainError::option(
                "batch_size",
                format!(
                    "{batch_size} is the global batch and must split evenly over the {n} devices"
                ),
            ));
        }
        Ok(Self {
            devices,
            device_batch: batch_size / n,
        })
    }

    pub fn count(&self) -> usize {
        self.devices.len()
    }

    /// Each device's slice of a `len`-sample epoch, contiguous: a chunk of `device_batch`
    /// samples per full global batch, and its chunk of the last, partial one (the first
    /// devices' full, the rest what is left, some none).
    pub fn slices(&self, len: usize) -> Vec<(usize, usize)> {
        let (n, b) = (self.count(), self.device_batch);
        let full = len / (b * n);
        let tail = len - full * b * n;
        let mut start = 0;
        (0..n)
            .map(|d| {
                let end = start + full * b + tail.saturating_sub(d * b).min(b);
                let slice = (start, end);
                start = end;
                slice
            })
            .collect()
    }

    /// Optimiser steps in a `len`-sample epoch: the most batches any device gets.
    pub fn steps_per_epoch(&self, len: usize) -> usize {
        self.slices(len)
            .iter()
            .map(|(start, end)| (end - start).div_ceil(self.device_batch))
            .max()
            .unwrap_or(0)
    }
}

/// Each device batch's share of its step: `len / global batch`, but for the samples of the
/// epoch's last, partial step, whose parts count by `len / that step's size`.
#[derive(Debug)]
pub(crate) struct StepShares {
    global: usize,
    /// Whether each sample is in this epoch's last partial step, and that step's size.
    tail: RwLock<(Vec<bool>, usize)>,
}

impl StepShares {
    pub fn new(len: usize, global: usize) -> Self {
        Self {
            global,
            tail: RwLock::new((vec![false; len], 0)),
        }
    }

    /// Marks `order`'s last partial global batch (the epoch's order before its layout).
    pub fn start_epoch(&self, order: &[usize]) {
        let mut tail = self.tail.write().expect("shares lock");
        tail.0.fill(false);
        let partial = &order[order.len() / self.global * self.global..];
        for &i in partial {
            tail.0[i] = true;
        }
        tail.1 = partial.len();
    }

    /// The share of the batch of the samples at `indices`.
    pub fn share(&self, indices: &[usize]) -> f32 {
        let tail = self.tail.read().expect("shares lock");
        let step = match indices.first() {
            Some(&i) if tail.0.get(i).copied().unwrap_or(false) => tail.1,
            _ => self.global,
        };
        indices.len() as f32 / step as f32
    }
}

/// Rearranges `order` (the single-device order of one epoch) so that the devices' contiguous
/// slices, read `device_batch` at a time, give device `d` at step `k` the `d`-th chunk of the
/// single-device batch `k` (of `device_batch * devices` samples). The last, partial global
/// batch is shared out in the order the slices' lengths allow.
pub(crate) fn replica_layout(order: &[usize], replicas: &Replicas) -> Vec<usize> {
    let n = replicas.count();
    let b = replicas.device_batch;
    if n <= 1 {
        return order.to_vec();
    }
    let global = b * n;
    let full_steps = order.len() / global;
    let mut laid = Vec::with_capacity(order.len());
    let mut rest = order[full_steps * global..].iter();
    for (d, (start, end)) in replicas.slices(order.len()).into_iter().enumerate() {
        for k in 0..full_steps {
            let chunk = k * global + d * b;
            laid.extend_from_slice(&order[chunk..chunk + b]);
        }
        laid.extend(rest.by_ref().take(end - start - full_steps * b));
    }
    laid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(n: usize, batch: usize) -> Replicas {
        Replicas::new(vec![Device::flex(); n], batch).unwrap()
    }

    /// The batches each device reads from its slice of `laid`, step by step.
    fn device_batches(laid: &[usize], r: &Replicas) -> Vec<Vec<Vec<usize>>> {
        r.slices(laid.len())
            .into_iter()
            .map(|(s, e)| {
                laid[s..e]
                    .chunks(r.device_batch)
                    .map(<[_]>::to_vec)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_step_is_the_single_device_batch_split_over_the_devices() {
        for (len, n, batch) in [
            (40, 2, 8),
            (45, 2, 8),
            (100, 4, 8),
            (7, 2, 2),
            (64, 2, 64),
            (1150, 4, 32),
        ] {
            let r = replicas(n, batch);
            let order: Vec<usize> = (0..len).map(|i| (i * 7919) % len).collect();
            let laid = replica_layout(&order, &r);
            let mut sorted = laid.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..len).collect::<Vec<_>>(), "a permutation");
            let per_device = device_batches(&laid, &r);
            // The last, partial step too.
            for (k, single) in order.chunks(batch).enumerate() {
                let joined: Vec<usize> = per_device
                    .iter()
                    .filter_map(|d| d.get(k))
                    .flatten()
                    .copied()
                    .collect();
                assert_eq!(joined, single, "len {len}, {n} devices, step {k}");
            }
            assert_eq!(r.steps_per_epoch(len), len.div_ceil(batch));
        }
    }

    #[test]
    fn the_shares_of_every_step_sum_to_one() {
        for (len, n, batch) in [
            (40, 2, 8),
            (45, 2, 8),
            (101, 4, 8),
            (7, 2, 2),
            (1150, 4, 32),
        ] {
            let r = replicas(n, batch);
            let order: Vec<usize> = (0..len).rev().collect();
            let shares = StepShares::new(len, batch);
            shares.start_epoch(&order);
            let laid = replica_layout(&order, &r);
            let per_device = device_batches(&laid, &r);
            for k in 0..r.steps_per_epoch(len) {
                let total: f32 = per_device
                    .iter()
                    .filter_map(|d| d.get(k))
                    .map(|b| shares.share(b))
                    .sum();
                assert!((total - 1.0).abs() < 1e-6, "len {len}, step {k}: {total}");
            }
        }
    }

    #[test]
    fn steps_count_the_longest_slice_and_uneven_batches_are_refused() {
        assert_eq!(replicas(2, 8).steps_per_epoch(40), 5);
        assert_eq!(replicas(2, 8).steps_per_epoch(45), 6); // slices 24 and 21, 4 per batch
        // 1,150 digits over 4 devices of 8: 35 full steps and one of 30 (8, 8, 8, 6), not a
        // 37th step for a last slice of 289.
        assert_eq!(replicas(4, 32).slices(1150)[3], (1150 - 286, 1150));
        assert_eq!(replicas(4, 32).steps_per_epoch(1150), 36);
        // A tail smaller than the devices' chunks leaves the last devices without one.
        assert_eq!(
            replicas(4, 32).slices(64 + 10),
            vec![(0, 24), (24, 42), (42, 58), (58, 74)]
        );
        assert_eq!(replicas(1, 8).steps_per_epoch(45), 6);
        let e = Replicas::new(vec![Device::flex(); 3], 32).unwrap_err();
        assert!(
            e.to_string().contains("split evenly over the 3 devices"),
            "{e}"
        );
    }
}
