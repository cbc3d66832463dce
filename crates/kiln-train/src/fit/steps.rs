//! The outputs of consecutive steps, handed to burn-train's event thread together, and the
//! wrapper through which every metric still sees each step.
//!
//! burn-train processes events (metrics, loggers, the progress display) on a thread of its own,
//! reached through a one-slot channel: one thread wake-up per event. kiln's training loop
//! ([`GroupedSingleDevice`](crate::fit::strategy::GroupedSingleDevice)) sends one event per group of
//! steps instead of one per step, and kiln registers each metric wrapped in [`PerStep`], which
//! updates it once per step of the group, with that step's iteration: metric values, the
//! non-finite-loss guard's batch numbers and users' metrics are what they would be with one event
//! per step.

use burn::tensor::activation::softmax;
use burn::tensor::{ExecutionError, Int, Tensor, TensorReadError};
use burn::train::metric::{
    AccuracyInput, Adaptor, ConfusionStatsInput, ItemLazy, Metric, MetricAttributes,
    MetricMetadata, MetricName, Numeric, NumericEntry, SerializedEntry, TopKAccuracyInput,
};

use crate::data::batch::BatchTargets;
use crate::metrics::{BatchHits, BatchLoss};

/// Class scores with one column per class: a single binary logit `z` becomes `[0, z]`, whose
/// softmax is `[1 - sigmoid(z), sigmoid(z)]`.
pub(crate) fn class_scores(output: Tensor<2>) -> Tensor<2> {
    if output.dims()[1] == 1 {
        Tensor::cat(vec![output.zeros_like(), output], 1)
    } else {
        output
    }
}

/// What one step hands to burn-train's metrics (inside a [`StepOutputs`]): its own ([`BatchLoss`], [`BatchHits`]) and
/// burn-train's classification metrics (`AccuracyMetric`, `TopKAccuracyMetric`,
/// `PrecisionMetric`, `RecallMetric`, `FBetaScoreMetric`) adapt from it, so that any of them,
/// or a metric of your own on one of those inputs, plugs into
/// [`Trainer::with_metric`](crate::Trainer::with_metric).
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The batch's mean loss (unscaled by its share).
    pub loss: Tensor<1>,
    /// The model's outputs, `[batch, d_output]`.
    pub output: Tensor<2>,
    /// The batch's targets.
    pub targets: BatchTargets,
    /// The batch's share of its step (see [`Batch::share`](crate::Batch::share)).
    pub share: f32,
}

impl ItemLazy for StepOutput {
    fn sync(self) -> Result<Self, ExecutionError> {
        self.loss.device().flush()?;
        Ok(StepOutput {
            loss: self.loss.without_autodiff(),
            output: self.output.without_autodiff(),
            targets: match self.targets {
                BatchTargets::Classes(c) => BatchTargets::Classes(c.without_autodiff()),
                BatchTargets::None => BatchTargets::None,
                BatchTargets::Values(v) => BatchTargets::Values(v.without_autodiff()),
            },
            share: self.share,
        })
    }
}

impl Adaptor<BatchLoss> for StepOutput {
    fn adapt(&self) -> BatchLoss {
        BatchLoss {
            loss: self.loss.clone(),
            batch_size: self.output.dims()[0],
        }
    }
}

impl StepOutput {
    /// The true classes, `[batch]` (classification metrics only: regression targets are
    /// rounded down to whole numbers, which no kiln metric asks for).
    fn classes(&self) -> Tensor<1, Int> {
        match &self.targets {
            BatchTargets::Classes(c) => c.clone(),
            BatchTargets::Values(v) => v.clone().sum_dim(1).squeeze_dim(1).int(),
            BatchTargets::None => unreachable!("unlabelled data is never trained on"),
        }
    }
}

impl Adaptor<BatchHits> for StepOutput {
    fn adapt(&self) -> BatchHits {
        BatchHits {
            scores: class_scores(self.output.clone()),
            targets: self.classes(),
        }
    }
}

impl Adaptor<StepOutput> for StepOutput {
    fn adapt(&self) -> StepOutput {
        self.clone()
    }
}

impl Adaptor<AccuracyInput> for StepOutput {
    fn adapt(&self) -> AccuracyInput {
        AccuracyInput::new(class_scores(self.output.clone()), self.classes())
    }
}

impl Adaptor<TopKAccuracyInput> for StepOutput {
    fn adapt(&self) -> TopKAccuracyInput {
        TopKAccuracyInput::new(class_scores(self.output.clone()), self.classes())
    }
}

impl Adaptor<ConfusionStatsInput> for StepOutput {
    /// Class probabilities (softmax of the scores) and one-hot targets.
    fn adapt(&self) -> ConfusionStatsInput {
        let scores = class_scores(self.output.clone());
        let classes = scores.dims()[1];
        let one_hot = self.classes().one_hot::<2>(classes).bool();
        ConfusionStatsInput::new(softmax(scores, 1), one_hot)
    }
}

/// The outputs of one or more consecutive steps of one split, oldest first: the item kiln's
/// training and validation steps hand to burn-train's metrics (each step returns one; kiln's
/// training loop joins consecutive ones before sending them to burn-train's event thread).
#[derive(Debug, Clone, Default)]
pub struct StepOutputs {
    steps: Vec<StepOutput>,
}

impl StepOutputs {
    /// The steps, oldest first.
    pub fn steps(&self) -> &[StepOutput] {
        &self.steps
    }

    /// How many steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there is no step.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Appends `later`'s steps after these.
    pub(crate) fn append(&mut self, later: StepOutputs) {
        self.steps.extend(later.steps);
    }
}

impl From<StepOutput> for StepOutputs {
    fn from(step: StepOutput) -> Self {
        Self { steps: vec![step] }
    }
}

impl ItemLazy for StepOutputs {
    fn sync(self) -> Result<Self, ExecutionError> {
        Ok(Self {
            steps: self
                .steps
                .into_iter()
                .map(ItemLazy::sync)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl Adaptor<StepOutputs> for StepOutputs {
    fn adapt(&self) -> StepOutputs {
        self.clone()
    }
}

/// A metric on one step's input (adapted from a [`StepOutput`]), updated once per step of each
/// [`StepOutputs`] burn-train hands it.
///
/// burn-train gives the metadata of the group's last step; step `i` of `n` is given iteration
/// `last - (n - 1 - i)`, so that iterations count steps as with one event per step. Progress and
/// learning rate are the group's (its last step's).
#[derive(Clone)]
pub(crate) struct PerStep<Me>(pub Me);

impl<Me> Metric for PerStep<Me>
where
    Me: Metric,
    StepOutput: Adaptor<Me::Input>,
{
    type Input = StepOutputs;

    fn name(&self) -> MetricName {
        self.0.name()
    }

    fn description(&self) -> Option<String> {
        self.0.description()
    }

    fn attributes(&self) -> MetricAttributes {
        self.0.attributes()
    }

    fn update(
        &mut self,
        item: &StepOutputs,
        metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let n = item.len();
        let mut entry = None;
        for (i, step) in item.steps().iter().enumerate() {
            let step_metadata = MetricMetadata {
                progress: metadata.progress.clone(),
                iteration: metadata.iteration.map(|last| last + 1 + i - n),
                lr: metadata.lr.clone(),
            };
            entry = Some(self.0.update(&step.adapt(), &step_metadata)?);
        }
        match entry {
            Some(entry) => Ok(entry),
            // Never sent by kiln; an empty group changes nothing.
            None => Ok(SerializedEntry::new(String::new(), String::new())),
        }
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        self.0.compute()
    }

    fn clear(&mut self) {
        self.0.clear()
    }
}

impl<Me: Numeric> Numeric for PerStep<Me> {
    fn value(&self) -> Option<NumericEntry> {
        self.0.value()
    }

    fn running_value(&self) -> Option<NumericEntry> {
        self.0.running_value()
    }

    fn final_value(&self) -> NumericEntry {
        self.0.final_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::batch::BatchTargets;
    use burn::data::dataloader::Progress;
    use burn::tensor::{Device, Tensor};

    fn step(loss: f32, device: &Device) -> StepOutput {
        StepOutput {
            loss: Tensor::from_floats([loss], device),
            output: Tensor::from_floats([[0.0, 1.0]], device),
            targets: BatchTargets::Classes(Tensor::from_ints([1], device)),
            share: 1.0,
        }
    }

    /// Records the loss and iteration of every update.
    #[derive(Clone, Default)]
    struct Seen(Vec<(f32, Option<usize>)>);

    impl Metric for Seen {
        type Input = StepOutput;
        fn name(&self) -> MetricName {
            std::sync::Arc::new("seen".into())
        }
        fn update(
            &mut self,
            item: &StepOutput,
            metadata: &MetricMetadata,
        ) -> Result<SerializedEntry, TensorReadError> {
            self.0
                .push((item.loss.clone().into_scalar::<f32>(), metadata.iteration));
            Ok(SerializedEntry::new(
                format!("{}", self.0.len()),
                String::new(),
            ))
        }
        fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
            Ok(SerializedEntry::new(String::new(), String::new()))
        }
        fn clear(&mut self) {}
    }

    #[test]
    fn every_step_of_a_group_is_seen_in_order_with_its_iteration() {
        let device = Device::flex();
        let mut group = StepOutputs::from(step(0.5, &device));
        group.append(step(0.25, &device).into());
        group.append(step(0.125, &device).into());
        let mut metric = PerStep(Seen::default());
        let metadata = MetricMetadata {
            progress: Progress::new(7, 10, None),
            iteration: Some(7),
            lr: None,
        };
        let entry = metric.update(&group, &metadata).unwrap();
        assert_eq!(
            metric.0.0,
            [(0.5, Some(5)), (0.25, Some(6)), (0.125, Some(7))]
        );
        // The entry shown is the last step's.
        assert_eq!(entry.formatted, "3");
    }
}
