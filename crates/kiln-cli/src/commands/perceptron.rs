//! The perceptron, trained by its own rule rather than the trainer, and recorded like any run:
//! progress, `summary.txt`, `history.csv` every epoch, `history.png` and `confusion.png`.

use std::time::Instant;

use anyhow::{Context, Result};
use kiln::Device;
use kiln::burn::module::Module;
use kiln::burn::tensor::{Int, Tensor, TensorData};
use kiln::datasets::{Data, Targets};
use kiln::fnn::{Perceptron, PerceptronConfig};
use kiln::train::{
    ClassReport, EpochRecord, History, Metrics, PlotRun, RunDir, Task, Verbosity, diagnose,
    plot_confusion, plot_histories,
};

use crate::dataset::Prepared;

use super::diagnose::{DIAGNOSIS, perceptron_profile};
use super::err_line;
use super::report::Report;
use super::tools::run_name;

pub(super) fn tensors(data: &Data, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let n = data.len();
    let x = Tensor::from_data(
        TensorData::new(data.x.clone(), [n, data.sample_len()]),
        device,
    );
    (
        x,
        Tensor::from_data(TensorData::new(labels(data), [n]), device),
    )
}

fn labels(data: &Data) -> Vec<i64> {
    match &data.y {
        Targets::Classes { labels, .. } => labels.iter().map(|&l| l as i64).collect(),
        Targets::Values { .. } | Targets::Unlabelled { .. } => {
            unreachable!("the perceptron is only built for labelled classes")
        }
    }
}

/// The perceptron's class (0 or 1) for every sample of `data`.
fn predictions(model: &Perceptron, data: &Data, device: &Device) -> Vec<usize> {
    let (x, _) = tensors(data, device);
    let out = model.forward(x).into_data();
    out.iter::<f32>().map(|v| usize::from(v > 0.5)).collect()
}

/// The perceptron's test metrics: accuracy, its error rate as the loss, and the class report.
pub(super) fn perceptron_metrics(model: &Perceptron, data: &Data, device: &Device) -> Metrics {
    let predicted = predictions(model, data, device);
    let truth: Vec<usize> = labels(data).into_iter().map(|l| l as usize).collect();
    let correct = truth.iter().zip(&predicted).filter(|(t, p)| t == p).count();
    let accuracy = correct as f64 / data.len().max(1) as f64;
    let names = match &data.y {
        Targets::Classes { names, .. } => names.clone(),
        _ => unreachable!("labelled classes"),
    };
    Metrics {
        task: Task::Classification,
        loss: 1.0 - accuracy,
        accuracy: Some(accuracy),
        mse: None,
        mae: None,
        r2: None,
        classes: Some(ClassReport::new(names, &truth, &predicted)),
    }
}

/// The perceptron's one layer, as a summary table row would show it.
pub(super) fn perceptron_summary(cfg: &PerceptronConfig, device: &Device) -> String {
    let n = Module::num_params(&cfg.init(device));
    format!(
        "Model: \"Perceptron\" (input (None, {}))\nweights and bias: {n} parameters, step output (None, 1)\n",
        cfg.d_input
    )
}

/// Trains the perceptron with its own rule (the trainer's gradient machinery does not apply to
/// a step function), one epoch at a time until an epoch makes no mistake, and records the run
/// like any other. Its "loss" is the error rate: the mistakes of the rule's pass over the
/// training part (it updates as it goes), and the validation part's after the epoch.
pub(super) fn train_perceptron(
    cfg: &PerceptronConfig,
    data: &Prepared,
    epochs: usize,
    device: &Device,
    run: &RunDir,
    verbosity: Verbosity,
) -> Result<Report> {
    let quiet = verbosity == Verbosity::Quiet;
    let table = perceptron_summary(cfg, device);
    run.write_text("summary.txt", &table)?;
    if !quiet {
        err_line(table.trim_end())?;
    }
    let mut model = cfg.init(device);
    let (x, t) = tensors(&data.train, device);
    let n = data.train.len() as f64;
    let name = run_name(run);
    let mut history = History::default();
    let mut converged = false;
    let mut train_seconds = 0.0;
    for epoch in 1..=epochs {
        let start = Instant::now();
        let fit = model.fit(x.clone(), t.clone(), 1);
        let seconds = start.elapsed().as_secs_f64();
        let errors = fit.errors_per_epoch[0] as f64 / n;
        let val = perceptron_metrics(&model, &data.valid, device).loss;
        // The epoch's whole time, validation included, as the trainer's `seconds`: the rule's
        // pass alone over a few features takes microseconds.
        train_seconds += start.elapsed().as_secs_f64();
        history.epochs.push(EpochRecord {
            epoch,
            train_loss: errors,
            train_accuracy: Some(1.0 - errors),
            val_loss: val,
            val_accuracy: Some(1.0 - val),
            lr: cfg.learning_rate,
            seconds: start.elapsed().as_secs_f64(),
            train_seconds: Some(seconds),
            metrics: Default::default(),
        });
        run.write_text("history.csv", &history.to_csv())?;
        if !quiet {
            err_line(&format!(
                "Epoch {epoch}/{epochs} - errors: {:.4} - accuracy: {:.4} - val_errors: {val:.4} \
                 - val_accuracy: {:.4}",
                errors,
                1.0 - errors,
                1.0 - val
            ))?;
        }
        if fit.converged {
            converged = true;
            break;
        }
    }
    let epochs_run = history.epochs.len();
    plot_histories(
        &run.file("history.png"),
        &[PlotRun {
            name: &name,
            history: &history,
            best_epoch: Some(epochs_run),
        }],
    )?;
    if converged && !quiet {
        err_line(&format!(
            "Epoch {epochs_run}: no mistake on the training part; the perceptron rule has converged"
        ))?;
    }
    let test = perceptron_metrics(&model, &data.test, device);
    if let Some(report) = &test.classes {
        plot_confusion(&run.file("confusion.png"), &report.names, &report.confusion)?;
    }
    let n_params = model.num_params();
    run.save_model(model).context("saving the perceptron")?;
    let profile = perceptron_profile(&data.train);
    let diagnosis = diagnose(&history, Some(&profile), &[]);
    run.write_json(DIAGNOSIS, &diagnosis)?;
    Ok(Report {
        baseline_loss: profile.baseline_loss,
        diagnosis,
        test,
        best_epoch: epochs_run,
        epochs_run,
        stopped_early: converged,
        train_seconds,
        samples_per_sec: n * epochs_run as f64 / train_seconds.max(1e-9),
        n_params,
        forecast: None,
    })
}
