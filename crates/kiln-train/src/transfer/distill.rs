//! Knowledge distillation (Hinton, Vinyals and Dean, 2015; Keras's `Distiller`): a student
//! learns from a trained teacher's softened class probabilities beside the labels.
//!
//! Each training step minimises
//! `alpha * CE(student, labels) + (1 - alpha) * T² * KL(softmax(teacher / T) || softmax(student / T))`,
//! the KL divergence summed over the classes and averaged over the batch; `T²` keeps the soft
//! term's gradients at the scale of the hard one's whatever the temperature. The teacher runs in
//! inference mode on the loader thread, on the very inputs the student gets (augmented ones
//! included), so its outputs are ready before the step needs them.

use std::sync::{Arc, Mutex};

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use kiln_common::BatchInput;
use kiln_datasets::Data;
use serde::{Deserialize, Serialize};

use crate::fit::steps::class_scores;
use crate::{Model, TrainError};

/// How a student learns from its teacher ([`TrainerConfig::distillation`](crate::TrainerConfig::distillation),
/// with the teacher given to [`Trainer::with_teacher`](crate::Trainer::with_teacher)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Distillation {
    /// Softens both models' probabilities: `softmax(logits / temperature)`; higher shows more of
    /// the teacher's ranking of the wrong classes. Default: 3 (Keras's `Distiller`).
    pub temperature: f64,
    /// The labels' cross-entropy's weight; the teacher's term has `1 - alpha`. Default: 0.1
    /// (Keras's `Distiller`).
    pub alpha: f64,
}

impl Default for Distillation {
    fn default() -> Self {
        Self {
            temperature: 3.0,
            alpha: 0.1,
        }
    }
}

impl Distillation {
    /// Checks the settings once, up front.
    pub fn check(&self) -> Result<(), TrainError> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(TrainError::option(
                "temperature",
                format!("must be a positive number, got {}", self.temperature),
            ));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(TrainError::option(
                "alpha",
                format!("must lie in [0, 1], got {}", self.alpha),
            ));
        }
        Ok(())
    }

    /// The step's objective for the student's `output` (`[batch, classes]`, or one binary
    /// logit), the `teacher`'s logits for the same inputs and the true `classes`.
    pub fn loss(
        &self,
        output: Tensor<2>,
        teacher: Tensor<2>,
        classes: &Tensor<1, Int>,
    ) -> Tensor<1> {
        let hard = crate::fit::model::loss(
            output.clone(),
            &crate::BatchTargets::Classes(classes.clone()),
        );
        self.objective(hard, output, teacher)
    }

    /// [`Distillation::loss`] given the labels' cross-entropy `hard`, already computed.
    pub(crate) fn objective(
        &self,
        hard: Tensor<1>,
        output: Tensor<2>,
        teacher: Tensor<2>,
    ) -> Tensor<1> {
        let t = self.temperature;
        let student = class_scores(output).div_scalar(t);
        let teacher = class_scores(teacher).div_scalar(t);
        let batch = student.dims()[0] as f64;
        // KL(p || q) = Σ p (log p - log q), with log p from log_softmax: finite where p is 0.
        let log_p = log_softmax(teacher.clone(), 1);
        let p = softmax(teacher, 1);
        let log_q = log_softmax(student, 1);
        let kl = (p * (log_p - log_q)).sum().mul_scalar(t * t / batch);
        hard.mul_scalar(self.alpha) + kl.mul_scalar(1.0 - self.alpha)
    }
}

/// Where a batch's teacher logits come from: the teacher itself, on the batch's inputs (which
/// augmentation changes every epoch), or a table of its logits for every training sample,
/// computed once before the first epoch when the inputs never change.
#[derive(Clone, Debug)]
pub(crate) enum TeacherOutputs {
    Live(Teacher),
    Table { logits: Arc<Vec<f32>>, width: usize },
}

impl TeacherOutputs {
    /// The teacher's logits for `data`'s samples, in batches of `batch`, as a table.
    pub(crate) fn table(teacher: &Teacher, data: &Data, batch: usize) -> Result<Self, TrainError> {
        let mut logits = Vec::new();
        let mut width = 0;
        let indices: Vec<usize> = (0..data.len()).collect();
        for chunk in indices.chunks(batch.max(1)) {
            let mut values = Vec::new();
            data.read_samples(chunk, &mut values)?;
            let out = (teacher.logits)(values, chunk.len(), &data.sample_shape);
            width = out.shape()[1];
            logits.extend(out.iter::<f32>());
        }
        Ok(Self::Table {
            logits: Arc::new(logits),
            width,
        })
    }

    /// The logits, `[indices.len(), classes]` on `device`, for the samples at `indices`, whose
    /// inputs (as the student gets them) are `values`.
    pub(crate) fn batch(
        &self,
        indices: &[usize],
        values: &[f32],
        shape: &[usize],
        device: &Device,
    ) -> Tensor<2> {
        match self {
            Self::Live(teacher) => teacher.logits(values.to_vec(), indices.len(), shape, device),
            Self::Table { logits, width } => {
                let mut rows = Vec::with_capacity(indices.len() * width);
                for &i in indices {
                    rows.extend_from_slice(&logits[i * width..(i + 1) * width]);
                }
                Tensor::from_data(TensorData::new(rows, [indices.len(), *width]), device)
            }
        }
    }
}

/// The teacher's forward pass: `batch` samples of a shape, flat, to its logits.
type TeacherFn = dyn Fn(Vec<f32>, usize, &[usize]) -> TensorData + Send + Sync;

/// A trained model whose outputs a student learns from, held in inference mode on its device:
/// one type for every teacher model.
#[derive(Clone)]
pub(crate) struct Teacher {
    logits: Arc<TeacherFn>,
}

impl Teacher {
    /// `model` (in inference mode) on `device`.
    pub(crate) fn new<M: Model>(model: M, device: &Device) -> Self {
        let model = Mutex::new(model.valid().fork(device));
        let device = device.clone();
        Self {
            logits: Arc::new(move |values, batch, shape| {
                let input = M::Input::from_samples(values, batch, shape, &device);
                let model = model.lock().expect("teacher lock");
                model.forward(input).into_data()
            }),
        }
    }

    /// The teacher's logits, `[batch, d_output]`, for `batch` samples of `shape` in `values`,
    /// on `device`.
    pub(crate) fn logits(
        &self,
        values: Vec<f32>,
        batch: usize,
        shape: &[usize],
        device: &Device,
    ) -> Tensor<2> {
        Tensor::from_data((self.logits)(values, batch, shape), device)
    }
}

impl std::fmt::Debug for Teacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Teacher")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax_row(z: &[f64], t: f64) -> Vec<f64> {
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = z.iter().map(|v| ((v - m) / t).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    #[test]
    fn the_loss_matches_the_hand_computed_mixture() {
        let device = Device::flex();
        let s = [[1.0, 2.0, 0.5], [0.0, -1.0, 2.0]];
        let t = [[3.0, 1.0, 0.0], [0.5, 0.5, 4.0]];
        let labels = [1usize, 2];
        let d = Distillation {
            temperature: 2.0,
            alpha: 0.3,
        };
        let got = d
            .loss(
                Tensor::from_floats(s, &device),
                Tensor::from_floats(t, &device),
                &Tensor::from_ints([1, 2], &device),
            )
            .into_scalar::<f32>() as f64;
        let (mut ce, mut kl) = (0.0, 0.0);
        for i in 0..2 {
            let q1 = softmax_row(&s[i], 1.0);
            ce -= q1[labels[i]].ln();
            let (p, q) = (softmax_row(&t[i], 2.0), softmax_row(&s[i], 2.0));
            kl += (0..3).map(|k| p[k] * (p[k] / q[k]).ln()).sum::<f64>();
        }
        let expected = 0.3 * ce / 2.0 + 0.7 * 4.0 * kl / 2.0;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    #[test]
    fn a_student_equal_to_its_teacher_has_only_the_labels_term() {
        let device = Device::flex();
        let z = Tensor::<2>::from_floats([[0.2, -0.4], [1.5, 0.1]], &device);
        let classes = Tensor::from_ints([0, 1], &device);
        let d = Distillation {
            temperature: 5.0,
            alpha: 0.25,
        };
        let got = d.loss(z.clone(), z.clone(), &classes).into_scalar::<f32>();
        let hard =
            crate::fit::model::loss(z, &crate::BatchTargets::Classes(classes)).into_scalar::<f32>();
        assert!((got - 0.25 * hard).abs() < 1e-6, "{got} vs {}", 0.25 * hard);
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = |temperature, alpha| Distillation { temperature, alpha }.check().is_err();
        assert!(bad(0.0, 0.1) && bad(f64::NAN, 0.1) && bad(2.0, 1.5) && bad(2.0, -0.1));
        assert!(!bad(1.0, 0.0) && !bad(20.0, 1.0));
    }
}
