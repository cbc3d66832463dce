//! Metrics of your own beside kiln's loss and accuracy ([`Trainer::with_metric`]).
//!
//! burn-train registers metrics by their concrete type, which must be known where the training
//! is built, inside `fit`; a trainer holds users' metrics before that, so they are kept behind
//! a small object-safe trait and handed to burn-train as one [`UserMetric`] type.
//!
//! [`Trainer::with_metric`]: crate::Trainer::with_metric

use burn::tensor::TensorReadError;
use burn::train::metric::{
    Adaptor, Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericEntry,
    SerializedEntry,
};

use crate::fit::steps::StepOutput;

/// A burn-train numeric metric whose input kiln's training step provides, its type erased.
trait ErasedMetric: Send + Sync {
    fn clone_box(&self) -> Box<dyn ErasedMetric>;
    fn name(&self) -> MetricName;
    fn description(&self) -> Option<String>;
    fn attributes(&self) -> MetricAttributes;
    fn update(
        &mut self,
        item: &StepOutput,
        metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError>;
    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError>;
    fn clear(&mut self);
    fn value(&self) -> Option<NumericEntry>;
    fn running_value(&self) -> Option<NumericEntry>;
    fn final_value(&self) -> NumericEntry;
}

impl<Me> ErasedMetric for Me
where
    Me: Metric + Numeric + 'static,
    StepOutput: Adaptor<Me::Input>,
{
    fn clone_box(&self) -> Box<dyn ErasedMetric> {
        Box::new(self.clone())
    }
    fn name(&self) -> MetricName {
        Metric::name(self)
    }
    fn description(&self) -> Option<String> {
        Metric::description(self)
    }
    fn attributes(&self) -> MetricAttributes {
        Metric::attributes(self)
    }
    fn update(
        &mut self,
        item: &StepOutput,
        metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        Metric::update(self, &item.adapt(), metadata)
    }
    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        Metric::compute(self)
    }
    fn clear(&mut self) {
        Metric::clear(self)
    }
    fn value(&self) -> Option<NumericEntry> {
        Numeric::value(self)
    }
    fn running_value(&self) -> Option<NumericEntry> {
        Numeric::running_value(self)
    }
    fn final_value(&self) -> NumericEntry {
        Numeric::final_value(self)
    }
}

/// A user's metric, as burn-train sees it.
pub(crate) struct UserMetric(Box<dyn ErasedMetric>);

impl UserMetric {
    pub fn new<Me>(metric: Me) -> Self
    where
        Me: Metric + Numeric + 'static,
        StepOutput: Adaptor<Me::Input>,
    {
        Self(Box::new(metric))
    }

    pub fn name(&self) -> String {
        self.0.name().to_string()
    }
}

impl Clone for UserMetric {
    fn clone(&self) -> Self {
        Self(self.0.clone_box())
    }
}

impl Metric for UserMetric {
    type Input = StepOutput;

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
        item: &StepOutput,
        metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        self.0.update(item, metadata)
    }
    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        self.0.compute()
    }
    fn clear(&mut self) {
        self.0.clear()
    }
}

impl Numeric for UserMetric {
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
