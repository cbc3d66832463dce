//! kiln's training loop on one device: burn-train's `SingleDeviceTrainingStrategy`, with the
//! steps' outputs sent to burn-train's event thread in groups.
//!
//! burn-train hands each event to its event thread through a one-slot channel, waking that
//! thread once per step. Profiled on a 2-core machine, the wake-ups were ~3% of kiln's MLP
//! training thread, and a hand-written Burn loop given one such send per step ran ~4% slower
//! (~27 µs per send against ~0.7 ms per step). This loop gathers consecutive steps' outputs into
//! one [`StepOutputs`] and sends it when [`GROUP_INTERVAL`] has passed since the last send,
//! [`GROUP_STEPS`] steps have gathered, the split ends or training is being stopped. Training
//! itself is burn-train's: the same steps, learning-rate steps, optimiser steps, validation,
//! checkpoints, early stopping and events, in the same order; metrics see every step (see
//! [`PerStep`](crate::fit::steps::PerStep)). Loggers and the progress display get one update per group.
//!
//! The same loop trains data-parallel, on several devices of one process and over the ranks
//! of an MPI job ([`crate::fit::ranks`]), in place of burn-train's multi-device strategy, whose
//! `split_dataloader` could give the last device one batch more than the others (an epoch of
//! one more step than on one device) and which sums the devices' gradients in the order they
//! finish.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::data::dataloader::{DataLoaderIterator, Progress};
use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Device;
use burn::train::{
    EventProcessorTraining, InferenceStep, Interrupter, Learner, LearnerEvent,
    SupervisedLearningStrategy, SupervisedTrainingEventProcessor, TrainLoader, TrainOutput,
    TrainStep, TrainingComponents, TrainingItem, ValidLoader,
};
use kiln_common::Model;

use crate::Supervised;
use crate::fit::loss_scale::LossScaler;
use crate::fit::ranks::{Ranks, gather_outputs, sum_gradients};
use crate::fit::steps::{StepOutput, StepOutputs};

/// The longest a step's output waits before it is sent: short enough for a progress display
/// that moves smoothly.
pub(crate) const GROUP_INTERVAL: Duration = Duration::from_millis(50);
/// The most steps sent together.
pub(crate) const GROUP_STEPS: usize = 32;

/// A new learner, for the model given, whose optimiser and schedule a checkpoint then loads.
pub(crate) type Rebuild<M> = Box<dyn Fn(Supervised<M>) -> Learner<Supervised<M>> + Send + Sync>;

/// Trains on one device (the autodiff device given), sending steps' outputs in groups.
pub(crate) struct GroupedSingleDevice<M: Model> {
    device: Device,
    /// At the start of this epoch, the learner is rebuilt (frozen parts made trainable) and
    /// loaded from the previous epoch's checkpoint.
    unfreeze: Option<(usize, Rebuild<M>)>,
    /// Data-parallel over processes: the job's ranks, the optimiser steps of an epoch and the
    /// training set's length.
    ranks: Option<(Ranks, usize, usize)>,
    /// f16's loss scaler, which skips the optimiser steps whose gradients overflowed.
    loss_scale: Option<Arc<LossScaler>>,
}

impl<M: Model> GroupedSingleDevice<M> {
    pub fn new(device: Device) -> Self {
        Self {
            device,
            unfreeze: None,
            ranks: None,
            loss_scale: None,
        }
    }

    /// Skips the optimiser steps whose gradients `scaler` finds not finite (f16 training).
    pub fn with_loss_scale(mut self, scaler: Arc<LossScaler>) -> Self {
        self.loss_scale = Some(scaler);
        self
    }

    /// Trains as one rank of a job: `steps` optimiser steps an epoch of `len` samples, each
    /// over every rank's part of the global batch (see [`crate::fit::ranks`]).
    pub fn with_ranks(mut self, ranks: Ranks, steps: usize, len: usize) -> Self {
        self.ranks = Some((ranks, steps, len));
        self
    }

    /// Whether any rank (this one included) is stopping: every rank then stops, at the same
    /// point of the loop, so that none waits alone in a collective.
    fn agree_to_stop(&self, stopping: bool, interrupter: &Interrupter) -> bool {
        let Some((ranks, ..)) = &self.ranks else {
            return stopping;
        };
        let mut flag = [f32::from(u8::from(stopping))];
        ranks.comm.sum(&mut flag);
        if flag[0] > 0.0 && !interrupter.should_stop() {
            crate::fit::ranks::another_rank_stopped(interrupter);
        }
        flag[0] > 0.0
    }

    /// Rebuilds the learner with `rebuild` at the start of `epoch` (see
    /// [`Unfreeze`](crate::Unfreeze)).
    pub fn unfreezing_at(mut self, epoch: usize, rebuild: Rebuild<M>) -> Self {
        self.unfreeze = Some((epoch, rebuild));
        self
    }
}

/// Outputs gathered since the last send, with the progress, iteration and learning rate of the
/// newest.
struct Group {
    outputs: StepOutputs,
    last: Option<(Progress, usize)>,
    sent: Instant,
}

impl Group {
    fn new() -> Self {
        Self {
            outputs: StepOutputs::default(),
            last: None,
            sent: Instant::now(),
        }
    }

    fn push(&mut self, outputs: StepOutputs, progress: Progress, iteration: usize) {
        self.outputs.append(outputs);
        self.last = Some((progress, iteration));
    }

    fn due(&self) -> bool {
        self.outputs.len() >= GROUP_STEPS || self.sent.elapsed() >= GROUP_INTERVAL
    }

    /// The gathered outputs as one item, if any gathered; the group starts again.
    fn take(&mut self, lr: Option<ModuleLearningRate>) -> Option<TrainingItem<StepOutputs>> {
        let (progress, iteration) = self.last.take()?;
        self.sent = Instant::now();
        Some(TrainingItem::new(
            std::mem::take(&mut self.outputs),
            progress,
            Some(iteration),
            lr,
        ))
    }
}

impl<M: Model> SupervisedLearningStrategy<Supervised<M>> for GroupedSingleDevice<M> {
    fn fit(
        &self,
        components: TrainingComponents<Supervised<M>>,
        mut learner: Learner<Supervised<M>>,
        dataloader_train: TrainLoader<Supervised<M>>,
        dataloader_valid: ValidLoader<Supervised<M>>,
        starting_epoch: usize,
    ) -> (
        Supervised<M>,
        SupervisedTrainingEventProcessor<Supervised<M>>,
    ) {
        let dataloader_train = dataloader_train.to_device(&self.device);
        let dataloader_valid = dataloader_valid.to_device(&self.device.clone().inner());
        learner.fork(&self.device);
        let TrainingComponents {
            num_epochs,
            mut checkpointer,
            grad_accumulation,
            interrupter,
            mut early_stopping,
            event_processor: mut processor,
            event_store,
            ..
        } = components;

        for epoch in starting_epoch..=num_epochs {
            if let Some((_, rebuild)) = self.unfreeze.as_ref().filter(|(at, _)| *at == epoch) {
                let checkpointer = checkpointer
                    .as_ref()
                    .expect("the trainer checkpoints every epoch");
                learner = checkpointer.load_checkpoint(rebuild(learner.model()), epoch - 1);
                learner.fork(&self.device);
            }
            interrupter.fail_on_error(processor.process_train(LearnerEvent::StartSplit {
                epoch_number: epoch,
                total_items: dataloader_train.num_items(),
            }));
            match &self.ranks {
                Some((ranks, steps, len)) => train_epoch_ranks(
                    &mut learner,
                    &dataloader_train,
                    (ranks, *steps, *len),
                    self.loss_scale.as_deref(),
                    &mut processor,
                    &interrupter,
                ),
                None => train_epoch(
                    &mut learner,
                    &dataloader_train,
                    grad_accumulation,
                    self.loss_scale.as_deref(),
                    &mut processor,
                    &interrupter,
                ),
            }
            interrupter.fail_on_error(processor.process_train(LearnerEvent::EndSplit(epoch)));
            if self.agree_to_stop(interrupter.should_stop(), &interrupter) {
                break;
            }

            interrupter.fail_on_error(processor.process_valid(LearnerEvent::StartSplit {
                epoch_number: epoch,
                total_items: dataloader_valid.num_items(),
            }));
            valid_epoch(&learner, &dataloader_valid, &mut processor, &interrupter);
            interrupter.fail_on_error(processor.process_valid(LearnerEvent::EndSplit(epoch)));
            interrupter.fail_on_error(processor.process_train(LearnerEvent::EndEpoch(epoch)));
            if checkpointer.is_some() || early_stopping.is_some() {
                interrupter.fail_on_error(processor.flush());
            }
            if self.agree_to_stop(interrupter.should_stop(), &interrupter) {
                break;
            }
            if let Some(checkpointer) = &mut checkpointer {
                checkpointer.checkpoint(&learner, epoch, &event_store);
            }
            let stop = early_stopping
                .as_mut()
                .is_some_and(|rule| rule.should_stop(epoch, &event_store));
            if self.agree_to_stop(stop, &interrupter) {
                break;
            }
        }
        (learner.model(), processor)
    }
}

/// One pass over the training data: step, learning-rate step, optimiser step (every
/// `grad_accumulation` steps when given), outputs sent in groups.
fn train_epoch<M: Model>(
    learner: &mut Learner<Supervised<M>>,
    dataloader: &TrainLoader<Supervised<M>>,
    grad_accumulation: Option<usize>,
    scaler: Option<&LossScaler>,
    processor: &mut SupervisedTrainingEventProcessor<Supervised<M>>,
    interrupter: &Interrupter,
) {
    let mut iterator = dataloader.iter();
    let mut group = Group::new();
    let mut accumulator = GradientsAccumulator::new();
    let mut accumulated = 0;
    let mut iteration = 0;
    while let Some(item) = next_item(&mut *iterator, interrupter) {
        iteration += 1;
        let progress = iterator.progress();
        let output = learner.train_step(item);
        let last = progress.is_completed();
        match grad_accumulation {
            Some(every) => {
                accumulator.accumulate(&learner.model(), output.grads);
                accumulated += 1;
                if accumulated >= every || last {
                    learner.lr_step();
                    optimizer_step(learner, accumulator.grads(), scaler);
                    accumulated = 0;
                }
            }
            None => {
                learner.lr_step();
                optimizer_step(learner, output.grads, scaler);
            }
        }
        group.push(output.item, progress, iteration);
        if last || group.due() || interrupter.should_stop() {
            send_train(&mut group, learner, processor, interrupter);
        }
        if interrupter.should_stop() {
            break;
        }
    }
    send_train(&mut group, learner, processor, interrupter);
}

/// The optimiser step on `grads`, unless `scaler` (f16 training) finds one of them not finite:
/// the step is then skipped, as PyTorch's `GradScaler` skips it. The ranks of a job and the
/// devices of a rank decide alike, on the same summed gradients.
fn optimizer_step<M: Model>(
    learner: &mut Learner<Supervised<M>>,
    grads: GradientsParams,
    scaler: Option<&LossScaler>,
) {
    let grads = match scaler {
        Some(scaler) => match scaler.check(&learner.model(), grads) {
            Some(grads) => grads,
            None => return,
        },
        None => grads,
    };
    learner.optimizer_step(grads);
}

/// One pass over this rank's part of the training data: `steps` optimiser steps, each
/// summing every rank's gradients (zeros from a rank whose part of the epoch is used up) and
/// handing the metrics every rank's outputs; a rank stopping (an error, a non-finite loss)
/// stops every rank after the same step. With several devices a rank, each device trains on
/// its part of the rank's slice (the first on this thread, the others on [`DeviceWorkers`]),
/// and their gradients are summed on the first device before the ranks'.
fn train_epoch_ranks<M: Model>(
    learner: &mut Learner<Supervised<M>>,
    dataloader: &TrainLoader<Supervised<M>>,
    (ranks, steps, len): (&Ranks, usize, usize),
    scaler: Option<&LossScaler>,
    processor: &mut SupervisedTrainingEventProcessor<Supervised<M>>,
    interrupter: &Interrupter,
) {
    let comm = ranks.comm.as_ref();
    let main = ranks.devices[0].clone();
    let devices: Vec<Device> = ranks.devices.iter().map(|d| d.clone().autodiff()).collect();
    let loaders: Vec<_> = match ranks.devices.len() {
        1 => vec![dataloader.clone()],
        _ => ranks
            .device_bounds(len)
            .into_iter()
            .zip(&devices)
            .map(|((start, end), device)| dataloader.slice(start, end).to_device(device))
            .collect(),
    };
    let mut iterators: Vec<_> = loaders.iter().map(|l| l.iter()).collect();
    let workers = DeviceWorkers::<M>::start(&devices[1..]);
    let mut group = Group::new();
    let (started, mut exchanging) = (Instant::now(), Duration::ZERO);
    for step in 1..=steps {
        let items: Vec<_> = iterators
            .iter_mut()
            .map(|iterator| next_item(&mut **iterator, interrupter))
            .collect();
        let progress = Progress {
            items_processed: step,
            items_total: steps,
            unit: Some("steps".into()),
        };
        let (grads, local) = workers.step(learner, items, &devices, interrupter);
        let mut stop = [f32::from(u8::from(interrupter.should_stop()))];
        let exchange = Instant::now();
        let grads = sum_gradients(&learner.model(), grads, &mut stop, comm, &main);
        let global = gather_outputs(&local, comm, &main);
        exchanging += exchange.elapsed();
        learner.lr_step();
        optimizer_step(learner, grads, scaler);
        if let Some(global) = global {
            group.push(global.into(), progress, step);
        }
        let stop = stop[0] > 0.0;
        if stop && !interrupter.should_stop() {
            crate::fit::ranks::another_rank_stopped(interrupter);
        }
        if step == steps || group.due() || stop {
            send_train(&mut group, learner, processor, interrupter);
        }
        if stop {
            break;
        }
    }
    send_train(&mut group, learner, processor, interrupter);
    // `RUST_LOG=kiln_train=info` shows where a rank's epoch went.
    tracing::info!(
        rank = comm.rank(),
        "training pass {:.2} s, of which exchanging gradients and outputs with the other ranks {:.2} s ({:.0}%)",
        started.elapsed().as_secs_f64(),
        exchanging.as_secs_f64(),
        100.0 * exchanging.as_secs_f64() / started.elapsed().as_secs_f64().max(1e-9)
    );
}

/// The training steps of a rank's devices after the first, each on a thread of its own for
/// the epoch (burn-train's multi-device workers' way: no thread started per step).
struct DeviceWorkers<M: Model> {
    workers: Vec<Worker<M>>,
}

type TrainInput<M> = <Supervised<M> as TrainStep>::Input;
type TrainResult<M> = std::thread::Result<TrainOutput<<Supervised<M> as TrainStep>::Output>>;

struct Worker<M: Model> {
    send: std::sync::mpsc::Sender<(Supervised<M>, TrainInput<M>)>,
    receive: std::sync::mpsc::Receiver<TrainResult<M>>,
}

impl<M: Model> DeviceWorkers<M> {
    /// Workers for `devices` (autodiff devices); none for one device.
    fn start(devices: &[Device]) -> Self {
        let workers = devices
            .iter()
            .map(|device| {
                let (send, inputs) = std::sync::mpsc::channel::<(Supervised<M>, TrainInput<M>)>();
                let (results, receive) = std::sync::mpsc::channel();
                let device = device.clone();
                std::thread::Builder::new()
                    .name("kiln-device".into())
                    .spawn(move || {
                        // As the thread that started the run (see `FlushDenormals`).
                        kiln_common::flush_denormals_on_this_thread();
                        for (model, item) in inputs {
                            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                TrainStep::step(&model.fork(&device), item)
                            }));
                            if results.send(result).is_err() {
                                break;
                            }
                        }
                    })
                    .expect("a thread for a device");
                Worker { send, receive }
            })
            .collect();
        Self { workers }
    }

    /// One step of every device, each on the batch it got (`None`: its part of the epoch is
    /// used up; the first device's on this thread): the gradients summed on the first device
    /// (`None` when no device had a batch) and each device's outputs, in device order. A
    /// device whose step panics fails the run.
    fn step(
        &self,
        learner: &Learner<Supervised<M>>,
        items: Vec<Option<TrainInput<M>>>,
        devices: &[Device],
        interrupter: &Interrupter,
    ) -> (Option<GradientsParams>, Vec<StepOutput>) {
        let model = learner.model();
        let mut items = items.into_iter();
        let first = items.next().flatten();
        let sent: Vec<bool> = items
            .zip(&self.workers)
            .map(|(item, worker)| match item {
                Some(item) => worker.send.send((model.clone(), item)).is_ok(),
                None => false,
            })
            .collect();
        let mut results = vec![first.map(|item| Ok(learner.train_step(item)))];
        results.extend(sent.iter().zip(&self.workers).map(|(&sent, worker)| {
            sent.then(|| worker.receive.recv().unwrap_or_else(|e| Err(Box::new(e))))
        }));
        let mut accumulator = GradientsAccumulator::new();
        let (mut any, mut local) = (false, Vec::new());
        for (d, result) in results.into_iter().enumerate() {
            match result {
                Some(Ok(output)) => {
                    let grads = match d {
                        0 => output.grads,
                        _ => output.grads.to_device(&devices[0], &model),
                    };
                    accumulator.accumulate(&model, grads);
                    any = true;
                    local.extend(output.item.steps().first().cloned());
                }
                Some(Err(_)) => {
                    interrupter.fail(burn::data::dataset::DatasetError::new(DeviceFailed(d)))
                }
                None => {}
            }
        }
        (any.then(|| accumulator.grads()), local)
    }
}

/// A device's training step panicked (its message is on standard error).
#[derive(Debug, thiserror::Error)]
#[error("the training step on device {0} of this rank failed (its message is above)")]
struct DeviceFailed(usize);

/// The loader's next batch; a batch that could not be built fails the run and ends the pass.
fn next_item<O>(iterator: &mut dyn DataLoaderIterator<O>, interrupter: &Interrupter) -> Option<O> {
    match iterator.next()? {
        Ok(item) => Some(item),
        Err(err) => {
            interrupter.fail(err);
            None
        }
    }
}

fn send_train<M: Model>(
    group: &mut Group,
    learner: &Learner<Supervised<M>>,
    processor: &mut SupervisedTrainingEventProcessor<Supervised<M>>,
    interrupter: &Interrupter,
) {
    if let Some(item) = group.take(Some(learner.lr_current())) {
        interrupter.fail_on_error(processor.process_train(LearnerEvent::ProcessedItem(item)));
    }
}

/// One pass over the validation data, outputs sent in groups.
fn valid_epoch<M: Model>(
    learner: &Learner<Supervised<M>>,
    dataloader: &ValidLoader<Supervised<M>>,
    processor: &mut SupervisedTrainingEventProcessor<Supervised<M>>,
    interrupter: &Interrupter,
) {
    let model = learner.model().valid();
    let mut iterator = dataloader.iter();
    let mut group = Group::new();
    let mut iteration = 0;
    let mut send = |group: &mut Group| {
        if let Some(item) = group.take(None) {
            interrupter.fail_on_error(processor.process_valid(LearnerEvent::ProcessedItem(item)));
        }
    };
    while let Some(item) = next_item(&mut *iterator, interrupter) {
        iteration += 1;
        let progress = iterator.progress();
        let last = progress.is_completed();
        group.push(InferenceStep::step(&model, item), progress, iteration);
        if last || group.due() || interrupter.should_stop() {
            send(&mut group);
        }
        if interrupter.should_stop() {
            break;
        }
    }
    send(&mut group);
}
