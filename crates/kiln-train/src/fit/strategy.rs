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

use std::time::{Duration, Instant};

use burn::data::dataloader::{DataLoaderIterator, Progress};
use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::Module;
use burn::optim::GradientsAccumulator;
use burn::tensor::Device;
use burn::train::{
    EventProcessorTraining, InferenceStep, Interrupter, Learner, LearnerEvent,
    SupervisedLearningStrategy, SupervisedTrainingEventProcessor, TrainLoader, TrainingComponents,
    TrainingItem, ValidLoader,
};
use kiln_common::Model;

use crate::Supervised;
use crate::fit::steps::StepOutputs;

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
}

impl<M: Model> GroupedSingleDevice<M> {
    pub fn new(device: Device) -> Self {
        Self {
            device,
            unfreeze: None,
        }
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
            train_epoch(
                &mut learner,
                &dataloader_train,
                grad_accumulation,
                &mut processor,
                &interrupter,
            );
            interrupter.fail_on_error(processor.process_train(LearnerEvent::EndSplit(epoch)));
            if interrupter.should_stop() {
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
            if interrupter.should_stop() {
                break;
            }
            if let Some(checkpointer) = &mut checkpointer {
                checkpointer.checkpoint(&learner, epoch, &event_store);
            }
            if let Some(early_stopping) = &mut early_stopping
                && early_stopping.should_stop(epoch, &event_store)
            {
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
                    learner.optimizer_step(accumulator.grads());
                    accumulated = 0;
                }
            }
            None => {
                learner.lr_step();
                learner.optimizer_step(output.grads);
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
