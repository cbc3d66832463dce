//! What kiln does at the end of every epoch, on the training thread, once burn-train has
//! validated the epoch and handed over its checkpoint records: the history row, Keras's
//! `EarlyStopping` and `ReduceLROnPlateau`, the best weights, the checkpoint on disk, and the
//! random streams of the next epoch.
//!
//! It is burn-train's early-stopping hook ([`EarlyStoppingStrategy`]): the one extension point
//! burn-train calls synchronously after each epoch, with the epoch's metrics in its store.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use burn::data::dataset::{Dataset, DatasetError};
use burn::module::{ModuleMapper, Param, ParamId};
use burn::store::ModuleRecord;
use burn::tensor::{Bool, Bytes, Device, Int, Tensor};
use burn::train::EarlyStoppingStrategy;
use burn::train::metric::store::{Aggregate, EventStoreClient, Split};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::data::batch::IndexOutOfRange;
use crate::epoch_end::callback::Callback;
use crate::epoch_end::checkpoint::{CheckpointDir, ResumeState, Staging};
use crate::epoch_end::early_stopping::Tracker;
use crate::epoch_end::schedule::{Plateau, SharedLr};
use crate::fit::failures::panic_text;
use crate::fit::loss_scale::LossScaler;
use crate::fit::replicas::{Replicas, StepShares, replica_layout};
use crate::records::history::in_kiln_units;
use crate::{EarlyStopping, EpochRecord, History, LrSchedule, Monitor, TrainError, write_atomic};

/// The seed of epoch `epoch`'s random streams (shuffling, dropout), from the run's seed:
/// splitmix64 of both, so that neighbouring epochs get unrelated streams.
pub(crate) fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    let mut z = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Gives a model's parameters ids drawn from the run's seed, in the module's visiting order.
///
/// Burn draws each parameter's id from the operating system's random source; the ids are saved
/// with the weights and key the optimiser's state. Seeded ids make two runs with the same seed
/// write the same bytes, and a resumed run (whose ids come back from its checkpoint) the same
/// bytes as an uninterrupted one.
pub(crate) struct SeededIds {
    pub seed: u64,
    pub next: usize,
}

impl SeededIds {
    fn id(&mut self) -> ParamId {
        self.next += 1;
        ParamId::from(epoch_seed(self.seed ^ 0x05EE_D1D5, self.next))
    }
}

impl ModuleMapper for SeededIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.id(), value, mapper)
    }

    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.id(), value, mapper)
    }

    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<D, Bool>>,
    ) -> Param<Tensor<D, Bool>> {
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(self.id(), value, mapper)
    }
}

/// The training samples' order: a permutation drawn afresh for each epoch from
/// `(seed, epoch)`, so that a resumed run sees the same order an uninterrupted one did.
/// Burn's own shuffling advances one generator epoch after epoch, a state it cannot save.
#[derive(Clone)]
pub(crate) struct EpochOrder {
    seed: u64,
    order: Arc<RwLock<Vec<usize>>>,
    /// With several devices, each epoch's order is laid out for them ([`replica_layout`]) and
    /// its last partial step marked ([`StepShares`]).
    replicas: Option<(Replicas, Arc<StepShares>)>,
    /// The epoch being trained (from 1).
    pub epoch: Arc<AtomicUsize>,
}

impl EpochOrder {
    pub fn new(len: usize, seed: u64) -> Self {
        Self {
            seed,
            order: Arc::new(RwLock::new((0..len).collect())),
            replicas: None,
            epoch: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Lays every epoch's order out for data-parallel training on `replicas`.
    pub fn with_replicas(mut self, replicas: Replicas) -> Self {
        if replicas.count() > 1 {
            let len = self.order.read().expect("order lock").len();
            let global = replicas.device_batch * replicas.count();
            self.replicas = Some((replicas, Arc::new(StepShares::new(len, global))));
        }
        self
    }

    /// The batches' shares of their steps, with several devices.
    pub fn shares(&self) -> Option<Arc<StepShares>> {
        self.replicas.as_ref().map(|(_, shares)| shares.clone())
    }

    /// Draws `epoch`'s order.
    pub fn start(&self, epoch: usize) {
        let mut order = self.order.write().expect("order lock");
        order.sort_unstable();
        let mut rng = rand::rngs::StdRng::seed_from_u64(epoch_seed(self.seed, epoch));
        order.shuffle(&mut rng);
        if let Some((replicas, shares)) = &self.replicas {
            shares.start_epoch(&order);
            *order = replica_layout(&order, replicas);
        }
        self.epoch.store(epoch, Ordering::Relaxed);
    }
}

impl Dataset<usize> for EpochOrder {
    fn get(&self, index: usize) -> Result<usize, DatasetError> {
        let order = self.order.read().expect("order lock");
        order.get(index).copied().ok_or_else(|| {
            DatasetError::new(IndexOutOfRange {
                index,
                len: order.len(),
            })
        })
    }

    fn len(&self) -> usize {
        self.order.read().expect("order lock").len()
    }
}

/// What the epoch-end hook knows and keeps about the run.
/// The names under which an f16 run's epoch records keep the loss scale at the epoch's end and
/// the optimiser steps it skipped during the epoch (see [`LossScaler`]).
pub(crate) const LOSS_SCALE: &str = "loss_scale";
pub(crate) const SKIPPED_STEPS: &str = "skipped_steps";

pub(crate) struct RunState {
    /// The epoch at whose start the learner is rebuilt from the previous epoch's checkpoint
    /// (frozen parts unfrozen): that checkpoint's records are handed back for it.
    pub rebuild_at: Option<usize>,
    pub schedule: LrSchedule,
    pub base_lr: f64,
    pub epochs: usize,
    /// Early stopping, if the run has it.
    pub early_stopping: Option<EarlyStopping>,
    /// What "best" means: early stopping's rule, else the lowest validation loss.
    pub best_rule: EarlyStopping,
    pub tracker: Tracker,
    pub plateau: Option<Plateau>,
    /// f16's loss scale, whose state each checkpoint keeps and each epoch's record shows.
    pub loss_scale: Option<Arc<LossScaler>>,
    pub lr: SharedLr,
    pub history: History,
    /// The best epoch's weights (burnpack bytes).
    pub best: Option<Bytes>,
    pub staging: Arc<Staging>,
    pub checkpoints: Option<CheckpointDir>,
    /// Where to keep the best epoch's weights (Keras's `ModelCheckpoint(save_best_only)`).
    pub save_best: Option<PathBuf>,
    pub order: EpochOrder,
    pub devices: Vec<Device>,
    pub seed: u64,
    pub fingerprint: u32,
    pub clock: Instant,
    /// When the epoch's validation began (set by the validation loader's first index).
    pub valid_started: Arc<Mutex<Option<Instant>>>,
    pub stopped: bool,
    /// Names of the users' metrics, recorded in each epoch's history row.
    pub metric_names: Vec<String>,
    /// The run's diagnosis, after each epoch's bookkeeping.
    pub diagnoser: crate::Diagnoser,
    /// The TensorBoard event file, written after the diagnosis.
    pub tensorboard: Option<crate::TensorBoardWriter>,
    /// The users' callbacks, run after the diagnosis.
    pub callbacks: Vec<Box<dyn Callback>>,
    /// A failure of the hook: it stops the run, and the trainer returns it.
    pub error: Option<TrainError>,
}

impl RunState {
    /// The rate the optimiser uses during `epoch` (from 1).
    pub fn lr_of(&self, epoch: usize) -> f64 {
        match self.plateau {
            Some(_) => self.lr.get(),
            None => self.schedule.lr_at(self.base_lr, epoch - 1, self.epochs),
        }
    }

    /// Restarts every random stream for `epoch` (from 1) from `(seed, epoch)`.
    pub fn start_epoch(&mut self, epoch: usize) {
        self.order.start(epoch);
        for device in &self.devices {
            device.seed(epoch_seed(self.seed, epoch));
        }
        self.clock = Instant::now();
    }

    /// The resume state after the last completed epoch.
    pub fn resume_state(&self) -> ResumeState {
        ResumeState {
            format: "kiln-checkpoint".into(),
            version: 1,
            epoch: self.history.epochs.last().map_or(0, |r| r.epoch),
            stopped: self.stopped,
            fingerprint: self.fingerprint,
            history: self.history.clone(),
            early_stopping: self.tracker.clone(),
            plateau: self.plateau.clone(),
            loss_scale: self.loss_scale.as_ref().map(|s| s.state()),
            seed: self.seed,
            files: Default::default(),
        }
    }

    fn end_epoch(&mut self, epoch: usize, store: &EventStoreClient) -> Result<bool, TrainError> {
        let value = |metric: &str, split: Split| {
            store
                .find_metric(metric, epoch, Aggregate::Mean, &split)
                .map(|v| in_kiln_units(metric, v))
        };
        let val_loss = value("Loss", Split::Valid).ok_or_else(|| {
            TrainError::Training(format!("no validation loss was recorded for epoch {epoch}"))
        })?;
        let mut record = EpochRecord {
            epoch,
            train_loss: value("Loss", Split::Train).unwrap_or(f64::NAN),
            train_accuracy: value("Accuracy", Split::Train),
            val_loss,
            val_accuracy: value("Accuracy", Split::Valid),
            lr: self.lr_of(epoch),
            seconds: self.clock.elapsed().as_secs_f64(),
            train_seconds: self
                .valid_started
                .lock()
                .expect("validation clock lock")
                .take()
                .map(|at| at.saturating_duration_since(self.clock).as_secs_f64()),
            metrics: self
                .metric_names
                .iter()
                .flat_map(|name| {
                    [
                        (name.clone(), value(name, Split::Train)),
                        (format!("val_{name}"), value(name, Split::Valid)),
                    ]
                })
                .filter_map(|(key, value)| Some((key, value?)))
                .collect(),
        };
        if let Some(scaler) = &self.loss_scale {
            // The scale at the epoch's end and the steps it skipped (see `LossScaler`).
            let state = scaler.state();
            let before: f64 = self
                .history
                .epochs
                .iter()
                .filter_map(|r| r.metrics.get(SKIPPED_STEPS))
                .sum();
            let metrics = &mut record.metrics;
            metrics.insert(LOSS_SCALE.into(), f64::from(state.scale));
            metrics.insert(SKIPPED_STEPS.into(), state.skipped_steps as f64 - before);
        }
        let monitored = |m: Monitor| match m {
            Monitor::ValLoss => Some(record.val_loss),
            Monitor::ValAccuracy => record.val_accuracy,
        };
        let best_value = monitored(self.best_rule.monitor).ok_or_else(|| {
            TrainError::Training(format!(
                "no {} was recorded for epoch {epoch}",
                self.best_rule.monitor
            ))
        })?;
        let improved = self.tracker.observe(&self.best_rule, epoch, best_value);
        let mut stop = self
            .early_stopping
            .as_ref()
            .is_some_and(|rule| self.tracker.wait >= rule.patience);
        if let Some(plateau) = &mut self.plateau {
            let monitor = self.best_rule.monitor;
            let next = plateau.observe(&self.schedule, monitor, best_value);
            self.lr.set(next);
        }
        self.history.epochs.push(record);
        // The diagnosis first: it reads the epoch's gradient measurements before a user's
        // callback can stop the run. It never stops one.
        let _ = self.diagnoser.on_epoch_end(&self.history);
        if let Some(writer) = &mut self.tensorboard {
            let record = self.history.epochs.last().expect("pushed above");
            let gradients = self.diagnoser.last_gradients();
            let histograms = self.diagnoser.take_histograms();
            writer.write_epoch(record, gradients.as_ref(), &histograms)?;
        }
        for (i, callback) in self.callbacks.iter_mut().enumerate() {
            let history = &self.history;
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                callback.on_epoch_end(history)
            }))
            .map_err(|panic| {
                TrainError::Component(format!(
                    "callback {} panicked after epoch {epoch}: {}",
                    i + 1,
                    panic_text(panic.as_ref())
                ))
            })?;
            stop |= outcome.is_break();
        }
        if stop {
            self.tracker.stopped_at = Some(epoch);
        }
        self.stopped = stop;

        let parts = self.staging.take(epoch)?;
        if self.rebuild_at == Some(epoch + 1) {
            self.staging.set_restore(parts.clone());
        }
        if improved {
            self.best = Some(parts[0].clone());
            if let Some(path) = &self.save_best {
                write_atomic(path, &parts[0])?;
            }
        }
        if let Some(dir) = &self.checkpoints {
            dir.write(self.resume_state(), &parts, self.best.as_deref())?;
        }
        if !stop && epoch < self.epochs {
            self.start_epoch(epoch + 1);
        }
        Ok(stop)
    }

    /// The best epoch's weights, when they are kept.
    pub fn best_record(&self) -> Result<Option<ModuleRecord>, TrainError> {
        self.best
            .clone()
            .map(ModuleRecord::from_bytes)
            .transpose()
            .map_err(|e| TrainError::Training(format!("reading the best weights back: {e}")))
    }
}

/// burn-train's early-stopping hook running [`RunState`]'s epoch end; clones share the state.
#[derive(Clone)]
pub(crate) struct EpochEnd {
    pub state: Arc<Mutex<RunState>>,
}

impl EarlyStoppingStrategy for EpochEnd {
    fn should_stop(&mut self, epoch: usize, store: &EventStoreClient) -> bool {
        let mut state = self.state.lock().expect("run state lock");
        match state.end_epoch(epoch, store) {
            Ok(stop) => stop,
            Err(error) => {
                state.error = Some(error);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_orders_are_permutations_that_depend_on_seed_and_epoch_only() {
        let order = EpochOrder::new(100, 7);
        let take = |o: &EpochOrder| (0..o.len()).map(|i| o.get(i).unwrap()).collect::<Vec<_>>();
        order.start(1);
        let first = take(&order);
        order.start(2);
        let second = take(&order);
        assert_ne!(first, second);
        let mut sorted = second.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        // A fresh order started at epoch 2 (a resumed run) draws the same permutation.
        let resumed = EpochOrder::new(100, 7);
        resumed.start(2);
        assert_eq!(take(&resumed), second);
        assert_ne!(epoch_seed(7, 1), epoch_seed(8, 1));
    }
}
