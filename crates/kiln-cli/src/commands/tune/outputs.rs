//! What a study writes and prints: a line per trial, tune.csv, tune.png, the table of the best
//! trials and best/config.json.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use kiln::train::{ParamPanel, StudyPlot, TrialCurve, plot_study, write_atomic};
use kiln::tune::{
    Distribution, ParamValue, Study, StudyResult, TrialRecord, TrialState, importance, study_csv,
    study_table,
};

use super::worker::trial_dir;
use crate::commands::{err_line, out};

/// Best trials in the final table.
const TABLE_ROWS: usize = 10;

/// After each trial: a line on the terminal, tune.csv and tune.png brought up to date.
pub fn progress(
    dir: &Path,
    study: &Study,
    record: &TrialRecord,
    best: &Mutex<Option<TrialRecord>>,
    quiet: bool,
) -> Result<()> {
    let result = StudyResult::of(study)?;
    write_records(dir, &result)?;
    if quiet {
        return Ok(());
    }
    let mut best = best.lock().expect("best trial");
    *best = result.best().cloned();
    let params: Vec<String> = record
        .params
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    let value = record.value.map_or_else(String::new, |v| {
        format!(" {} {v:.4}", result.config.objective)
    });
    let why = match (&record.state, &record.message) {
        (TrialState::Failed, Some(m)) => format!(": {m}"),
        _ => String::new(),
    };
    let leader = best.as_ref().map_or_else(String::new, |b| {
        format!(
            "; best: trial {} ({:.4})",
            b.number,
            b.value.unwrap_or(f64::NAN)
        )
    });
    err_line(&format!(
        "trial {} {}{value} after {} epochs ({}){why}{leader}",
        record.number,
        record.state,
        record.epochs(),
        params.join(", ")
    ))
}

/// tune.csv and tune.png.
fn write_records(dir: &Path, result: &StudyResult) -> Result<()> {
    write_atomic(&dir.join("tune.csv"), study_csv(result).as_bytes())?;
    plot_study(&dir.join("tune.png"), &plot_of(result))?;
    Ok(())
}

/// The study's picture: every trial's curve, and the objective against the two hyperparameters
/// that mattered most.
fn plot_of(result: &StudyResult) -> StudyPlot {
    let best = result.best().map(|b| b.number);
    let curves = result
        .trials
        .iter()
        .filter(|t| !t.intermediate.is_empty())
        .map(|t| TrialCurve {
            points: t
                .intermediate
                .iter()
                .map(|(e, v)| (f64::from(*e), *v))
                .collect(),
            pruned: t.state == TrialState::Pruned,
            best: Some(t.number) == best,
        })
        .collect();
    let mut ranked = importance(result);
    if ranked.is_empty() {
        ranked = result
            .config
            .space
            .params
            .iter()
            .map(|(n, _)| (n.clone(), f64::NAN))
            .collect();
    }
    let params = ranked
        .iter()
        .take(2)
        .filter_map(|(name, share)| {
            let d = result.config.space.get(name)?;
            let labels = match d {
                Distribution::Choice { choices } => Some(choices.clone()),
                _ => None,
            };
            let x = |v: &ParamValue| match (v, &labels) {
                (ParamValue::Choice(c), Some(labels)) => {
                    labels.iter().position(|l| l == c).map(|i| i as f64)
                }
                (v, _) => v.as_f64(),
            };
            let points = |state: TrialState| -> Vec<(f64, f64)> {
                result
                    .trials
                    .iter()
                    .filter(|t| t.state == state)
                    .filter_map(|t| Some((x(t.params.get(name)?)?, t.value?)))
                    .collect()
            };
            let title = if share.is_nan() {
                name.clone()
            } else {
                format!("{name} (explains {:.0}%)", share * 100.0)
            };
            Some(ParamPanel {
                title,
                log_x: matches!(
                    d,
                    Distribution::Float { log: true, .. } | Distribution::Int { log: true, .. }
                ),
                points: points(TrialState::Complete),
                pruned: points(TrialState::Pruned),
                labels,
            })
        })
        .collect();
    StudyPlot {
        objective: result.config.objective.clone(),
        curves,
        params,
    }
}

/// At the end: the records, the best trial's config.json in best/, and the table.
pub fn finish(dir: &Path, study: &Study) -> Result<()> {
    let result = StudyResult::of(study)?;
    write_records(dir, &result)?;
    let mut text = study_table(&result, TABLE_ROWS);
    let mattered = importance(&result);
    if !mattered.is_empty() {
        let shares: Vec<String> = mattered
            .iter()
            .map(|(n, s)| format!("{n} {:.0}%", s * 100.0))
            .collect();
        text.push_str(&format!(
            "share of the spread of {} each explains: {}\n",
            result.config.objective,
            shares.join(", ")
        ));
    }
    if let Some(best) = result.best() {
        let config = trial_dir(dir, best.number).join("config.json");
        if config.exists() {
            let target = dir.join("best").join("config.json");
            std::fs::create_dir_all(dir.join("best"))?;
            let bytes =
                std::fs::read(&config).with_context(|| format!("reading {}", config.display()))?;
            write_atomic(&target, &bytes)?;
            text.push_str(&format!(
                "best: trial {} ({} {:.4}); train it again with kiln train --config {}\n",
                best.number,
                result.config.objective,
                best.value.unwrap_or(f64::NAN),
                target.display()
            ));
        } else {
            text.push_str(&format!(
                "best: trial {} ({} {:.4}), run on another machine: {}\n",
                best.number,
                result.config.objective,
                best.value.unwrap_or(f64::NAN),
                best.owner
            ));
        }
    }
    text.push_str(&format!("study directory: {}\n", dir.display()));
    out(&text)
}
