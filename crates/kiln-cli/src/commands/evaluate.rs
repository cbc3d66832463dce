//! `kiln eval` and `kiln predict`: a finished run on its test set, or on new inputs.

use anyhow::Result;
use kiln::Device;
use kiln::backend;
use kiln::datasets::{ForecastReport, TargetScaler, Targets};
use kiln::train::{MaskedLm, Metrics, RunDir, evaluate, evaluate_masked};

use crate::args::EvalArgs;
use crate::dataset::{Prepared, Scaler};

use super::perceptron::perceptron_metrics;
use super::report::print_metrics;
use super::spec::RunConfig;
use super::{EVAL_BATCH, err_line};

/// The scaling saved with a run must be the one its data gives now.
pub(super) fn check_scaler(run: &RunDir, config: &RunConfig, prepared: &Prepared) -> Result<()> {
    let changed = || {
        anyhow::anyhow!(
            "{}: the data changed since this run was trained (its scaling differs)",
            config.data.dataset
        )
    };
    if let Some(scaler) = &prepared.scaler
        && &run.read_json::<Scaler>("scaler.json")? != scaler
    {
        return Err(changed());
    }
    if let Some(targets) = &prepared.targets
        && &run.read_json::<TargetScaler>(TARGET_SCALER)? != targets
    {
        return Err(changed());
    }
    Ok(())
}

/// The file a run keeps its regression targets' scaling in.
pub(super) const TARGET_SCALER: &str = "target_scaler.json";

/// The model's test metrics, in the targets' own units: a run whose regression targets were
/// standardised has its outputs mapped back before they are scored.
///
/// A masked-language model is scored on the test texts' hidden tokens, masked as in training.
pub(super) fn test_metrics<M: kiln::common::Model>(
    model: &M,
    prepared: &Prepared,
    masking: Option<MaskedLm>,
    device: &Device,
) -> Metrics {
    let (test, task) = (&prepared.test, prepared.task);
    if let Some(masking) = masking {
        return evaluate_masked(model, test, masking, EVAL_BATCH, device);
    }
    let (Some(scaler), Targets::Values { values, names }) = (&prepared.targets, &test.y) else {
        return evaluate(model, test, task, EVAL_BATCH, device);
    };
    let mut outputs = kiln::train::predict(model, test, EVAL_BATCH, device);
    scaler.inverse(&mut outputs);
    let mut truth: Vec<Vec<f32>> = values.chunks(names.len()).map(<[f32]>::to_vec).collect();
    scaler.inverse(&mut truth);
    Metrics::regression(&truth.concat(), &outputs.concat(), names.len())
}

/// A run directory with its weights: an unfinished run (killed, or failed) is an error that
/// says so and how to continue it.
pub(super) fn open_finished(dir: &std::path::Path) -> Result<RunDir> {
    let run = RunDir::open(dir)?;
    if !run.file(RunDir::MODEL).exists() {
        return Err(run.unfinished().into());
    }
    Ok(run)
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    let run = open_finished(&args.run)?;
    let config: RunConfig = run.read_json("config.json")?;
    let (backend, device) = backend::device(args.device.as_deref())?;
    let prepared = config
        .data
        .prepare(Some(config.trainer.task), config.trainer.validation_split)?;
    check_scaler(&run, &config, &prepared)?;
    let (test, forecast) = with_model!(
        &config.model,
        &device,
        |fresh| reload_and_evaluate(&run, fresh, &prepared, &config, &device)?,
        perceptron | cfg | {
            let model = run.load_model(cfg.init(&device))?;
            (perceptron_metrics(&model, &prepared.test, &device), None)
        }
    );
    err_line(&format!(
        "kiln: evaluated {} with backend {backend}",
        run.path.display()
    ))?;
    print_metrics(&test, forecast.as_ref())
}

/// For series: the test forecasts' errors in the series' units, beside the naive baselines'.
pub(super) fn forecast<M: kiln::common::Model>(
    model: &M,
    prepared: &Prepared,
    device: &Device,
) -> Option<ForecastReport> {
    let windows = prepared.forecast.as_ref()?;
    let outputs = kiln::train::predict(model, &prepared.test, EVAL_BATCH, device);
    Some(windows.report(&outputs))
}

/// Loads a run's weights into `fresh` (same architecture) and evaluates it on the test set.
pub(super) fn reload_and_evaluate<M: kiln::common::Model>(
    run: &RunDir,
    fresh: M,
    data: &Prepared,
    config: &RunConfig,
    device: &Device,
) -> Result<(Metrics, Option<ForecastReport>)> {
    let model = run.load_model(fresh)?;
    Ok((
        test_metrics(&model, data, config.trainer.masked_lm, device),
        forecast(&model, data, device),
    ))
}
