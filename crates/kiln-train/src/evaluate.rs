use burn::tensor::Device;
use kiln_common::Model;
use kiln_datasets::{Data, Targets};
use serde::Serialize;

use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;

use crate::data::batch::{BatchTargets, DataBatcher, make_batch};
use crate::data::masking::MaskedLm;
use crate::fit::model::{Task, loss};
use crate::fit::steps::class_scores;
use crate::records::report::ClassReport;

/// Test metrics of a model on a dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// The task the metrics are of.
    pub task: Task,
    /// Mean loss per sample: cross-entropy, or mean squared error for regression.
    pub loss: f64,
    /// Classification: fraction of samples whose highest-scoring class is the true one.
    pub accuracy: Option<f64>,
    /// Regression: mean squared error.
    pub mse: Option<f64>,
    /// Regression: mean absolute error.
    pub mae: Option<f64>,
    /// Regression: coefficient of determination, `1 - SS_res / SS_tot` of each output,
    /// averaged over the outputs (scikit-learn's `r2_score`, `multioutput="uniform_average"`).
    pub r2: Option<f64>,
    /// Classification: confusion matrix, per-class precision, recall and F1.
    pub classes: Option<ClassReport>,
}

impl Metrics {
    /// Regression metrics of `predicted` against `truth` (row-major, `width` outputs per
    /// sample): mean squared error (also the loss, as in training), mean absolute error and R².
    /// For predictions mapped back to the data's units, as from a
    /// [`kiln_datasets::TargetScaler`].
    pub fn regression(truth: &[f32], predicted: &[f32], width: usize) -> Self {
        let (mut se, mut ae) = (0.0, 0.0);
        for (&y, &p) in truth.iter().zip(predicted) {
            let (y, p) = (y as f64, p as f64);
            se += (y - p).powi(2);
            ae += (y - p).abs();
        }
        let m = truth.len().max(1) as f64;
        Self {
            task: Task::Regression,
            loss: se / m,
            accuracy: None,
            mse: Some(se / m),
            mae: Some(ae / m),
            r2: Some(r2_score(truth, predicted, width)),
            classes: None,
        }
    }
}

/// The model's outputs for every sample of `data`, in order: `data.len()` rows of `d_output`
/// values (logits for classification). The model runs in evaluation mode (no dropout).
pub fn predict<M: Model>(
    model: &M,
    data: &Data,
    batch_size: usize,
    device: &Device,
) -> Vec<Vec<f32>> {
    let model = model.valid().fork(device);
    let mut rows = Vec::with_capacity(data.len());
    let indices: Vec<usize> = (0..data.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = make_batch::<M::Input>(data, chunk, device);
        let out = model.forward(batch.inputs);
        let [_, d] = out.dims();
        let values: Vec<f32> = out.into_data().try_to_vec().expect("float output");
        rows.extend(values.chunks(d).map(<[f32]>::to_vec));
    }
    rows
}

/// Evaluates `model` on `data` (Keras's `evaluate`): loss and the task's metrics.
pub fn evaluate<M: Model>(
    model: &M,
    data: &Data,
    task: Task,
    batch_size: usize,
    device: &Device,
) -> Metrics {
    let model = model.valid().fork(device);
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut loss_sum = 0.0f64;
    let mut predicted_classes = Vec::new();
    let mut outputs = Vec::with_capacity(data.len());
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = make_batch::<M::Input>(data, chunk, device);
        let out = model.forward(batch.inputs);
        let l: f64 = loss(out.clone(), &batch.targets).into_scalar::<f32>() as f64;
        loss_sum += l * chunk.len() as f64;
        if task == Task::Classification {
            let predicted: Vec<i64> = class_scores(out.clone())
                .argmax(1)
                .into_data()
                .iter::<i64>()
                .collect();
            predicted_classes.extend(predicted.into_iter().map(|p| p as usize));
        }
        outputs.extend(out.into_data().iter::<f32>());
    }
    let n = data.len().max(1) as f64;
    let mut metrics = Metrics {
        task,
        loss: loss_sum / n,
        accuracy: None,
        mse: None,
        mae: None,
        r2: None,
        classes: None,
    };
    match (&data.y, task) {
        (Targets::Classes { labels, names }, Task::Classification) => {
            let correct = labels
                .iter()
                .zip(&predicted_classes)
                .filter(|(t, p)| t == p)
                .count();
            metrics.accuracy = Some(correct as f64 / n);
            metrics.classes = Some(ClassReport::new(names.clone(), labels, &predicted_classes));
        }
        (Targets::Values { values, names }, Task::Regression) => {
            metrics = Metrics::regression(values, &outputs, names.len());
        }
        _ => {}
    }
    metrics
}
/// A masked-language model on `data`'s texts, masked as `masking` says (the same masks for the
/// same texts and batch size, as validation does): the mean cross-entropy and accuracy over the
/// hidden tokens, each token counting once.
pub fn evaluate_masked<M: Model>(
    model: &M,
    data: &Data,
    masking: MaskedLm,
    batch_size: usize,
    device: &Device,
) -> Metrics {
    let model = model.valid().fork(device);
    let batcher = DataBatcher::<M::Input>::new(Arc::new(data.clone())).with_masking(masking);
    let indices: Vec<usize> = (0..data.len()).collect();
    let (mut loss_sum, mut correct, mut tokens) = (0.0f64, 0usize, 0usize);
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = batcher.batch(chunk.to_vec(), device);
        let out = model.forward(batch.inputs);
        let BatchTargets::Classes(targets) = &batch.targets else {
            unreachable!("masking gives the hidden tokens as classes")
        };
        let n = targets.dims()[0];
        loss_sum += loss(out.clone(), &batch.targets).into_scalar::<f32>() as f64 * n as f64;
        let hits = out.argmax(1).squeeze_dim::<1>(1).equal(targets.clone());
        correct += hits.int().sum().into_scalar::<i64>() as usize;
        tokens += n;
    }
    let n = tokens.max(1) as f64;
    Metrics {
        task: Task::Classification,
        loss: loss_sum / n,
        accuracy: Some(correct as f64 / n),
        mse: None,
        mae: None,
        r2: None,
        classes: None,
    }
}

/// scikit-learn's `r2_score` with `multioutput="uniform_average"`: `1 - SS_res / SS_tot` of
/// each of the `width` outputs (row-major values), averaged. An output constant in `truth` scores
/// 1 when predicted exactly, else 0 (its `force_finite`).
fn r2_score(truth: &[f32], predicted: &[f32], width: usize) -> f64 {
    let width = width.max(1);
    let rows = truth.len() / width;
    let column = |values: &[f32], j: usize| -> Vec<f64> {
        (0..rows).map(|i| values[i * width + j] as f64).collect()
    };
    let per_output = (0..width).map(|j| {
        let (y, p) = (column(truth, j), column(predicted, j));
        let mean = y.iter().sum::<f64>() / rows.max(1) as f64;
        let res: f64 = y.iter().zip(&p).map(|(y, p)| (y - p).powi(2)).sum();
        let tot: f64 = y.iter().map(|y| (y - mean).powi(2)).sum();
        match (tot > 0.0, res > 0.0) {
            (true, _) => 1.0 - res / tot,
            (false, false) => 1.0,
            (false, true) => 0.0,
        }
    });
    per_output.sum::<f64>() / width as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against scikit-learn: `r2_score([[1, 10], [2, 20], [3, 30], [4, 40]],
    /// [[1.5, 12], [2, 18], [2.5, 33], [4, 40]])` is 0.933 (0.9 and 0.966 averaged), where one
    /// variance pooled over both outputs gives 0.9885.
    #[test]
    fn r2_averages_the_outputs_as_scikit_learn_does() {
        let truth = [1., 10., 2., 20., 3., 30., 4., 40.];
        let predicted = [1.5, 12., 2., 18., 2.5, 33., 4., 40.];
        let r2 = r2_score(&truth, &predicted, 2);
        assert!(
            (r2 - (0.9 + (1.0 - 17.0 / 500.0)) / 2.0).abs() < 1e-12,
            "{r2}"
        );
        // One output: the usual 1 - SS_res / SS_tot; a constant output predicted exactly: 1.
        assert!((r2_score(&[1., 2., 3.], &[1., 2., 4.], 1) - 0.5).abs() < 1e-12);
        assert_eq!(r2_score(&[2., 2.], &[2., 2.], 1), 1.0);
        assert_eq!(r2_score(&[2., 2.], &[2., 3.], 1), 0.0);
    }
}
