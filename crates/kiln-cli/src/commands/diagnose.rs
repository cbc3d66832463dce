//! `kiln diagnose` and the diagnosis every run gets: findings about the run from its history
//! and its data's trivial baseline (`kiln_train::diagnose`), kept in `diagnosis.json`.

use anyhow::{Context, Result};
use kiln::datasets::Data;
use kiln::train::{
    DataProfile, Diagnosis, EpochGradients, History, RunDir, TrainerConfig, diagnose,
    gradients_from_csv, gradients_to_csv, plot_gradients,
};

use crate::args::DiagnoseArgs;

use super::out;
use super::spec::RunConfig;

/// The file a run keeps its diagnosis in.
pub(super) const DIAGNOSIS: &str = "diagnosis.json";
/// The file a run keeps its gradient statistics in, and their picture.
pub(super) const GRADIENTS: &str = "diagnostics.csv";
const GRADIENTS_PNG: &str = "diagnostics.png";

/// The run's gradient statistics as `diagnostics.csv`, none where it has none.
fn read_gradients(run: &RunDir) -> Result<Vec<EpochGradients>> {
    let path = run.file(GRADIENTS);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    gradients_from_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Writes this fit's gradient statistics (after those of the epochs a resumed run had
/// already recorded) as `diagnostics.csv` and `diagnostics.png`, and returns them all.
pub(super) fn record_gradients(
    run: &RunDir,
    new: &[EpochGradients],
    resumed: bool,
) -> Result<Vec<EpochGradients>> {
    let first_new = new.first().map_or(usize::MAX, |e| e.epoch);
    let mut all: Vec<EpochGradients> = if resumed {
        read_gradients(run)?
            .into_iter()
            .filter(|e| e.epoch < first_new)
            .collect()
    } else {
        Vec::new()
    };
    all.extend(new.iter().cloned());
    if !all.is_empty() {
        run.write_text(GRADIENTS, &gradients_to_csv(&all))?;
        plot_gradients(&run.file(GRADIENTS_PNG), &all)?;
    }
    Ok(all)
}

/// The epoch whose weights a run kept, when early stopping restored them (Keras's
/// `restore_best_weights`): `best` of the `ran` epochs.
pub(super) fn kept_epoch(trainer: &TrainerConfig, best: usize, ran: usize) -> Option<usize> {
    trainer
        .early_stopping
        .as_ref()
        .is_some_and(|r| r.restore_best_weights)
        .then_some(best)
        .filter(|&best| best != ran)
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

/// `kiln diagnose --run DIR`: the run's diagnosis again, from its `history.csv`, its
/// `diagnostics.csv` and the baseline its `metrics.json` records (a run made before kiln
/// recorded them is read from its history alone).
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
    let metrics = match std::fs::read_to_string(run.file("metrics.json")) {
        Ok(text) => Some(
            serde_json::from_str::<serde_json::Value>(&text)
                .with_context(|| format!("{}: not JSON", run.file("metrics.json").display()))?,
        ),
        Err(_) => None,
    };
    let baseline = metrics.as_ref().and_then(|m| m["baseline_loss"].as_f64());
    let profile = baseline.map(|b| DataProfile {
        baseline_loss: Some(b),
        input_scale: 0.0,
    });
    let gradients = read_gradients(&run)?;
    let mut diagnosis: Diagnosis = diagnose(&history, profile.as_ref(), &gradients);
    let config = run.read_json::<RunConfig>("config.json").ok();
    if let (Some(config), Some(best)) = (
        config,
        metrics.as_ref().and_then(|m| m["best_epoch"].as_u64()),
    ) && let Some(epoch) = kept_epoch(&config.trainer, best as usize, history.epochs.len())
    {
        diagnosis = diagnosis.kept_epoch(epoch);
    }
    out(&diagnosis.to_string())
}
