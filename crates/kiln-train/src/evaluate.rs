use burn::tensor::Device;
use kiln_common::Model;
use kiln_datasets::{Data, Targets};
use serde::Serialize;

use crate::batch::make_batch;
use crate::model::{Task, class_scores, loss};
use crate::report::ClassReport;

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
    /// Regression: coefficient of determination, `1 - SS_res / SS_tot`.
    pub r2: Option<f64>,
    /// Classification: confusion matrix, per-class precision, recall and F1.
    pub classes: Option<ClassReport>,
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
        (Targets::Values { values, .. }, Task::Regression) => {
            let mean = values.iter().map(|&v| v as f64).sum::<f64>() / values.len().max(1) as f64;
            let (mut se, mut ae, mut tot) = (0.0, 0.0, 0.0);
            for (&y, &p) in values.iter().zip(&outputs) {
                let (y, p) = (y as f64, p as f64);
                se += (y - p).powi(2);
                ae += (y - p).abs();
                tot += (y - mean).powi(2);
            }
            let m = values.len().max(1) as f64;
            metrics.mse = Some(se / m);
            metrics.mae = Some(ae / m);
            metrics.r2 = Some(if tot > 0.0 { 1.0 - se / tot } else { 0.0 });
        }
        _ => {}
    }
    metrics
}
