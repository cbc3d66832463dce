//! What a run reports: `metrics.json` and the printed test metrics.

use anyhow::Result;
use kiln::backend::Backend;
use kiln::datasets::ForecastReport;
use kiln::train::{DataProfile, Diagnosis, FitResult, Metrics};
use serde_json::json;

use super::out;
use super::spec::{ModelSpec, model_name};

/// What a run reports in `metrics.json`.
pub(super) struct Report {
    pub(super) test: Metrics,
    pub(super) best_epoch: usize,
    pub(super) epochs_run: usize,
    pub(super) stopped_early: bool,
    pub(super) train_seconds: f64,
    pub(super) samples_per_sec: f64,
    pub(super) n_params: usize,
    pub(super) forecast: Option<ForecastReport>,
    /// The loss of a model that ignores its inputs, which the diagnosis compares against.
    pub(super) baseline_loss: Option<f64>,
    pub(super) diagnosis: Diagnosis,
}

impl Report {
    pub(super) fn from_fit<M>(
        fit: &FitResult<M>,
        test: Metrics,
        forecast: Option<ForecastReport>,
        n_params: usize,
        profile: &DataProfile,
        diagnosis: Diagnosis,
    ) -> Self {
        Self {
            forecast,
            test,
            baseline_loss: profile.baseline_loss,
            diagnosis,
            best_epoch: fit.best_epoch,
            epochs_run: fit.epochs_run,
            stopped_early: fit.stopped_early,
            train_seconds: fit.train_seconds,
            samples_per_sec: fit.samples_per_sec,
            n_params,
        }
    }

    pub(super) fn metrics_json(
        &self,
        backend: Backend,
        devices: usize,
        model: &ModelSpec,
    ) -> serde_json::Value {
        let mut m = json!({
            "task": self.test.task,
            "backend": backend.name(),
            "devices": devices,
            "model": model_name(model),
            "n_params": self.n_params,
            "test_loss": self.test.loss,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "train_seconds": self.train_seconds,
            "samples_per_sec": self.samples_per_sec,
            "baseline_loss": self.baseline_loss,
            "findings": self.diagnosis.findings.len(),
        });
        let obj = m.as_object_mut().expect("an object");
        for (key, value) in [
            ("test_accuracy", self.test.accuracy),
            ("test_mse", self.test.mse),
            ("test_mae", self.test.mae),
            ("test_r2", self.test.r2),
        ] {
            if let Some(v) = value {
                obj.insert(key.into(), json!(v));
            }
        }
        if let Some(r) = &self.test.classes {
            let per_class: Vec<serde_json::Value> = (0..r.names.len())
                .map(|c| {
                    json!({
                        "class": r.names[c],
                        "precision": r.precision[c],
                        "recall": r.recall[c],
                        "f1": r.f1[c],
                        "support": r.confusion[c].iter().sum::<usize>(),
                    })
                })
                .collect();
            obj.insert("per_class".into(), json!(per_class));
            obj.insert("macro_precision".into(), json!(r.macro_precision));
            obj.insert("macro_recall".into(), json!(r.macro_recall));
            obj.insert("macro_f1".into(), json!(r.macro_f1));
            obj.insert("confusion_matrix".into(), json!(r.confusion));
        }
        if let Some(f) = &self.forecast {
            for (key, value) in forecast_metrics(f) {
                obj.insert(key.into(), json!(value));
            }
        }
        m
    }
}

/// Forecast errors in the series' units: `test_rmse`, `test_mae` and the naive baselines'.
pub(super) fn forecast_metrics(f: &ForecastReport) -> Vec<(&'static str, f64)> {
    let mut out = vec![
        ("test_rmse", f.model.rmse),
        ("test_mae", f.model.mae),
        ("naive_last_rmse", f.naive_last.rmse),
        ("naive_last_mae", f.naive_last.mae),
    ];
    if let Some(s) = f.naive_seasonal {
        out.push(("naive_seasonal_rmse", s.rmse));
        out.push(("naive_seasonal_mae", s.mae));
    }
    if let Some(season) = f.season {
        out.push(("season_length", season as f64));
    }
    out
}

pub(super) fn print_metrics(m: &Metrics, forecast: Option<&ForecastReport>) -> Result<()> {
    use std::fmt::Write;
    let mut text = format!("test_loss: {:.4}\n", m.loss);
    for (name, value) in [
        ("test_accuracy", m.accuracy),
        ("test_mse", m.mse),
        ("test_mae", m.mae),
        ("test_r2", m.r2),
    ] {
        if let Some(v) = value {
            writeln!(text, "{name}: {v:.4}")?;
        }
    }
    if let Some(report) = &m.classes {
        writeln!(text, "test_macro_f1: {:.4}", report.macro_f1)?;
        write!(text, "{report}")?;
    }
    if let Some(f) = forecast {
        // In the series' units; test_mae above is on the scaled differences the model outputs.
        for (name, value) in forecast_metrics(f) {
            writeln!(text, "forecast {name}: {value:.4}")?;
        }
    }
    out(&text)
}
