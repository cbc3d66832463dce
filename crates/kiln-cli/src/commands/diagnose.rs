//! `kiln diagnose` and the diagnosis every run gets: findings about the run from its history
//! and its data's trivial baseline (`kiln_train::diagnose`), kept in `diagnosis.json`.

use anyhow::{Context, Result};
use kiln::datasets::Data;
use kiln::train::{DataProfile, Diagnosis, History, RunDir, diagnose};

use crate::args::DiagnoseArgs;
use crate::dataset::{Prepared, Scaler};

use super::out;

/// The file a run keeps its diagnosis in.
pub(super) const DIAGNOSIS: &str = "diagnosis.json";

/// The training data's profile for the rules. Token ids are indices, not magnitudes: a text
/// run's inputs are not judged for their scale.
pub(super) fn profile(prepared: &Prepared) -> DataProfile {
    let mut profile = DataProfile::of(&prepared.train);
    if matches!(prepared.scaler, Some(Scaler::Text(_))) {
        profile.input_scale = 0.0;
    }
    profile
}

/// The perceptron's profile: its "loss" is the error rate, whose baseline is the error rate of
/// always answering the most frequent class.
pub(super) fn perceptron_profile(train: &Data) -> DataProfile {
    let counts = train.class_counts();
    let majority = counts.iter().copied().max().unwrap_or(0) as f64;
    DataProfile {
        baseline_loss: Some(1.0 - majority / train.len().max(1) as f64),
        input_scale: DataProfile::of(train).input_scale,
    }
}

/// `kiln diagnose --run DIR`: the run's diagnosis again, from its `history.csv` and the
/// baseline its `metrics.json` records (a run made before kiln recorded it is read from its
/// history alone).
pub fn diagnose_run(args: &DiagnoseArgs) -> Result<()> {
    let run = RunDir::open(&args.run)?;
    let path = run.file("history.csv");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {}: the run has no history yet (it ends its first epoch first)",
            path.display()
        )
    })?;
    let history =
        History::from_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let baseline = match std::fs::read_to_string(run.file("metrics.json")) {
        Ok(text) => serde_json::from_str::<serde_json::Value>(&text)
            .with_context(|| format!("{}: not JSON", run.file("metrics.json").display()))?
            ["baseline_loss"]
            .as_f64(),
        Err(_) => None,
    };
    let profile = baseline.map(|b| DataProfile {
        baseline_loss: Some(b),
        input_scale: 0.0,
    });
    let diagnosis: Diagnosis = diagnose(&history, profile.as_ref());
    out(&diagnosis.to_string())
}

/// Writes the diagnosis into the run.
pub(super) fn record(run: &RunDir, diagnosis: &Diagnosis) -> Result<()> {
    run.write_json(DIAGNOSIS, diagnosis)?;
    Ok(())
}
