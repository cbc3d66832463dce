use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::nn::loss::{BinaryCrossEntropyLossConfig, CrossEntropyLossConfig, MseLoss, Reduction};
use burn::tensor::Tensor;
use burn::train::{InferenceStep, TrainOutput, TrainStep};

pub use kiln_common::Model;

use std::sync::Arc;

use crate::data::batch::{Batch, BatchTargets};
use crate::fit::loss_scale::{LossScaler, rescaled};
use crate::fit::steps::{StepOutput, StepOutputs};
use crate::{Distillation, GradientProbe};

/// The learning problem, which picks the loss and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Classes: cross-entropy over the logits, or binary cross-entropy when the model has one
    /// output (a single logit); accuracy is reported.
    Classification,
    /// Real values: mean squared error is the loss; MAE and R² are reported.
    Regression,
}

impl Task {
    /// The task's name as the CLI and `config.json` spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "classification" => Ok(Task::Classification),
            "regression" => Ok(Task::Regression),
            other => Err(format!(
                "unknown task `{other}` (valid: classification, regression)"
            )),
        }
    }
}

/// A [`Model`] together with its [`Task`]: the module burn-train's `Learner` trains. Its
/// training step computes the task's loss and its gradients.
#[derive(Module, Debug)]
pub struct Supervised<M> {
    /// The model being trained.
    pub model: M,
    #[module(skip)]
    /// Which loss the step computes.
    pub task: Task,
    #[module(skip)]
    /// Measures the gradients of a sample of the steps (diagnostics on).
    pub probe: Option<Arc<GradientProbe>>,
    #[module(skip)]
    /// Learning from a teacher: the training step's objective mixes the labels' loss with the
    /// teacher's softened outputs, given in each [`Batch::teacher`]. Validation is on the
    /// labels alone, as Keras's `Distiller` evaluates.
    pub distillation: Option<Distillation>,
    #[module(skip)]
    /// f16 training's dynamic loss scale: each training step scales the loss by it before the
    /// backward pass and unscales the gradients after (see [`LossScaler`]).
    pub loss_scale: Option<Arc<LossScaler>>,
}

impl<M: Model> Supervised<M> {
    /// Forward pass and loss of one batch.
    pub fn forward_loss(&self, batch: Batch<M::Input>) -> StepOutput {
        self.forward_objective(batch).0
    }

    /// Forward pass of one batch, its loss against the targets, and what the training step
    /// minimises: that same loss, or with a teacher's logits in the batch and
    /// [`Supervised::distillation`], the distillation objective. The step's recorded loss
    /// stays the labels' own, so that training and validation curves compare.
    pub fn forward_objective(&self, batch: Batch<M::Input>) -> (StepOutput, Tensor<1>) {
        let output = self.model.forward(batch.inputs);
        let loss = loss(output.clone(), &batch.targets);
        let objective = match (&self.distillation, batch.teacher) {
            (Some(d), Some(teacher)) => d.objective(loss.clone(), output.clone(), teacher),
            _ => loss.clone(),
        };
        let step = StepOutput {
            loss,
            output,
            targets: batch.targets,
            share: batch.share,
        };
        (step, objective)
    }
}

/// The loss of `output` against `targets`: cross-entropy for classes (binary cross-entropy on
/// a single logit), mean squared error for values.
pub fn loss(output: Tensor<2>, targets: &BatchTargets) -> Tensor<1> {
    let device = output.device();
    match targets {
        BatchTargets::Classes(classes) if output.dims()[1] == 1 => {
            BinaryCrossEntropyLossConfig::new()
                .with_logits(true)
                .init(&device)
                .forward(output, classes.clone().unsqueeze_dim(1))
        }
        BatchTargets::Classes(classes) => CrossEntropyLossConfig::new()
            .init(&device)
            .forward(output, classes.clone()),
        BatchTargets::Values(values) => {
            MseLoss::new().forward(output, values.clone(), Reduction::Mean)
        }
        BatchTargets::None => unreachable!("unlabelled data is for prediction; `fit` rejects it"),
    }
}

impl<M: Model> TrainStep for Supervised<M> {
    type Input = Batch<M::Input>;
    type Output = StepOutputs;

    fn step(&self, batch: Self::Input) -> TrainOutput<StepOutputs> {
        let (item, objective) = self.forward_objective(batch);
        // Data-parallel steps sum the devices' gradients: each batch's loss counts by its share
        // of the step's samples, so that the sum is the step's mean (see `Batch::share`).
        let scale = self.loss_scale.as_ref().map(|s| s.scale());
        let factor = item.share * scale.unwrap_or(1.0);
        let grads = if factor == 1.0 {
            objective.backward()
        } else {
            (objective * factor).backward()
        };
        let mut output = TrainOutput::new(self, grads, item.into());
        if let Some(scale) = scale {
            output.grads = rescaled(self, output.grads, 1.0 / scale);
        }
        if let Some(probe) = &self.probe {
            probe.step(&self.model, &output.grads);
        }
        output
    }
}

impl<M: Model> InferenceStep for Supervised<M> {
    type Input = Batch<M::Input>;
    type Output = StepOutputs;

    fn step(&self, batch: Self::Input) -> StepOutputs {
        if let Some(probe) = &self.probe {
            probe.validation_step(&self.model);
        }
        self.forward_loss(batch).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::steps::class_scores;
    use burn::tensor::Device;

    fn close(a: f32, b: f64) -> bool {
        (a as f64 - b).abs() < 1e-5
    }

    #[test]
    fn cross_entropy_matches_the_hand_computed_value() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], &device);
        let targets = BatchTargets::Classes(Tensor::from_ints([2, 0], &device));
        // -log softmax: row 1 target 2: log(e^1 + e^2 + e^3) - 3; row 2: log 3.
        let row1 = ((1f64).exp() + (2f64).exp() + (3f64).exp()).ln() - 3.0;
        let expected = (row1 + 3f64.ln()) / 2.0;
        assert!(close(loss(logits, &targets).into_scalar::<f32>(), expected));
    }

    #[test]
    fn a_single_logit_uses_binary_cross_entropy() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats([[0.5], [-1.0]], &device);
        let targets = BatchTargets::Classes(Tensor::from_ints([1, 0], &device));
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        let expected = (-(sig(0.5).ln()) - (1.0 - sig(-1.0)).ln()) / 2.0;
        assert!(close(
            loss(logits.clone(), &targets).into_scalar::<f32>(),
            expected
        ));
        // Its class scores [0, z] rank class 1 first exactly when sigmoid(z) > 0.5.
        let predicted: Vec<i64> = class_scores(logits)
            .argmax(1)
            .into_data()
            .iter::<i64>()
            .collect();
        assert_eq!(predicted, [1, 0]);
    }

    #[test]
    fn regression_uses_mean_squared_error() {
        let device = Device::flex();
        let out = Tensor::<2>::from_floats([[1.0], [4.0]], &device);
        let targets = BatchTargets::Values(Tensor::from_floats([[2.0], [2.0]], &device));
        assert!(close(loss(out, &targets).into_scalar::<f32>(), 2.5));
    }
}
