//! A study told: `tune.csv`, the table of the best trials, and which hyperparameters mattered.

use std::collections::BTreeMap;

use crate::space::ParamValue;
use crate::trial::{TrialRecord, TrialState};
use crate::tuner::StudyResult;

/// `tune.csv`: one row per trial in number order: `trial`, each hyperparameter, `value` (the
/// best it reported), `epochs` (run), `state` (complete, pruned, failed, running), `message`
/// (why it failed).
pub fn study_csv(study: &StudyResult) -> String {
    let names: Vec<&String> = study.config.space.params.iter().map(|(n, _)| n).collect();
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = vec!["trial"];
    header.extend(names.iter().map(|n| n.as_str()));
    header.extend(["value", "epochs", "state", "message"]);
    writer.write_record(&header).expect("writing to memory");
    for t in &study.trials {
        let mut row = vec![t.number.to_string()];
        row.extend(names.iter().map(|n| {
            t.params
                .get(*n)
                .map(ToString::to_string)
                .unwrap_or_default()
        }));
        row.push(t.value.map(|v| format!("{v:?}")).unwrap_or_default());
        row.push(t.epochs().to_string());
        row.push(t.state.to_string());
        row.push(t.message.clone().unwrap_or_default());
        writer.write_record(&row).expect("writing to memory");
    }
    String::from_utf8(writer.into_inner().expect("writing to memory")).expect("UTF-8 cells")
}

/// The `top` best trials as a table, best first, and the study's counts.
pub fn study_table(study: &StudyResult, top: usize) -> String {
    let direction = study.config.direction;
    let mut ranked: Vec<&TrialRecord> = study
        .trials
        .iter()
        .filter(|t| matches!(t.state, TrialState::Complete | TrialState::Pruned))
        .filter(|t| t.value.is_some())
        .collect();
    ranked.sort_by(|a, b| {
        (a.state != TrialState::Complete)
            .cmp(&(b.state != TrialState::Complete))
            .then(
                direction
                    .cost(a.value.unwrap_or(f64::NAN))
                    .total_cmp(&direction.cost(b.value.unwrap_or(f64::NAN))),
            )
    });
    let names: Vec<&String> = study.config.space.params.iter().map(|(n, _)| n).collect();
    let objective = &study.config.objective;
    let mut rows: Vec<Vec<String>> = vec![
        ["trial", objective.as_str(), "epochs", "state"]
            .iter()
            .map(|s| s.to_string())
            .chain(names.iter().map(|n| n.to_string()))
            .collect(),
    ];
    for t in ranked.iter().take(top) {
        let mut row = vec![
            t.number.to_string(),
            t.value.map(|v| format!("{v:.4}")).unwrap_or_default(),
            t.epochs().to_string(),
            t.state.to_string(),
        ];
        row.extend(
            names
                .iter()
                .map(|n| t.params.get(*n).map(short).unwrap_or_default()),
        );
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    let count = |s: TrialState| study.trials.iter().filter(|t| t.state == s).count();
    out.push_str(&format!(
        "{} trials: {} complete, {} pruned, {} failed; {} epochs in all\n",
        study.trials.len(),
        count(TrialState::Complete),
        count(TrialState::Pruned),
        count(TrialState::Failed),
        study.epochs()
    ));
    out
}

/// A value short enough for a table: real numbers to 4 significant digits.
fn short(v: &ParamValue) -> String {
    match v {
        ParamValue::Float(x) => {
            let s = format!("{x:.3e}");
            let plain = format!("{x:.4}");
            if (1e-3..1e4).contains(&x.abs()) {
                plain
            } else {
                s
            }
        }
        other => other.to_string(),
    }
}

/// How much of the spread of the complete trials' values each hyperparameter accounts for,
/// most first: the correlation ratio η² of the values grouped by the hyperparameter (its
/// choices, or quartiles of a numeric range). Empty with fewer than 4 complete trials.
pub fn importance(study: &StudyResult) -> Vec<(String, f64)> {
    let complete: Vec<&TrialRecord> = study
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && t.value.is_some_and(f64::is_finite))
        .collect();
    if complete.len() < 4 {
        return Vec::new();
    }
    let values: Vec<f64> = complete.iter().map(|t| t.value.unwrap_or(0.0)).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let total: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
    let mut scores: Vec<(String, f64)> = study
        .config
        .space
        .params
        .iter()
        .map(|(name, _)| {
            let groups = group(&complete, name);
            let between: f64 = groups
                .values()
                .map(|members| {
                    let m = members.iter().map(|&i| values[i]).sum::<f64>() / members.len() as f64;
                    members.len() as f64 * (m - mean).powi(2)
                })
                .sum();
            let share = if total > 0.0 { between / total } else { 0.0 };
            (name.clone(), share)
        })
        .collect();
    scores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scores
}

/// Indices of `trials` grouped by their value of `name`: numbers by quartile of rank, the
/// rest by value.
fn group(trials: &[&TrialRecord], name: &str) -> BTreeMap<String, Vec<usize>> {
    let numeric: Option<Vec<f64>> = trials
        .iter()
        .map(|t| match t.params.get(name) {
            Some(ParamValue::Float(v)) => Some(*v),
            Some(ParamValue::Int(v)) => Some(*v as f64),
            _ => None,
        })
        .collect();
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    match numeric {
        Some(xs) => {
            let mut order: Vec<usize> = (0..xs.len()).collect();
            order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
            for (rank, &i) in order.iter().enumerate() {
                let quartile = rank * 4 / xs.len();
                groups.entry(quartile.to_string()).or_default().push(i);
            }
        }
        None => {
            for (i, t) in trials.iter().enumerate() {
                let key = t
                    .params
                    .get(name)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                groups.entry(key).or_default().push(i);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Params, SearchSpace};
    use crate::study::StudyConfig;

    fn result() -> StudyResult {
        let space = SearchSpace::new()
            .log_float("lr", 1e-4, 1e-1)
            .choice("hidden", &["64", "128,64"]);
        let trial = |number: u64, lr: f64, hidden: &str, value: f64, state: TrialState| {
            let params: Params = [
                ("lr".to_string(), ParamValue::Float(lr)),
                ("hidden".to_string(), ParamValue::Choice(hidden.into())),
            ]
            .into();
            TrialRecord {
                id: number as i64,
                number,
                state,
                params,
                value: (state != TrialState::Failed).then_some(value),
                intermediate: vec![(1, value + 0.1), (2, value)],
                owner: String::new(),
                heartbeat: 0.0,
                message: (state == TrialState::Failed).then(|| "diverged".to_string()),
            }
        };
        // The value is set by lr alone; hidden does not matter.
        let trials = vec![
            trial(0, 1e-4, "64", 0.9, TrialState::Complete),
            trial(1, 1e-3, "128,64", 0.5, TrialState::Complete),
            trial(2, 1e-2, "64", 0.2, TrialState::Complete),
            trial(3, 1e-1, "128,64", 0.3, TrialState::Complete),
            trial(4, 5e-4, "64", 0.7, TrialState::Pruned),
            trial(5, 0.09, "64", 0.0, TrialState::Failed),
        ];
        StudyResult {
            config: StudyConfig::new("t", space, "val_loss"),
            trials,
        }
    }

    #[test]
    fn the_csv_has_a_row_per_trial_with_quoted_lists() {
        let csv = study_csv(&result());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "trial,lr,hidden,value,epochs,state,message");
        assert_eq!(lines[2], "1,0.001,\"128,64\",0.5,2,complete,");
        assert_eq!(lines[6], "5,0.09,64,,2,failed,diverged");
        assert_eq!(lines.len(), 7);
    }

    #[test]
    fn the_table_ranks_complete_trials_first_then_pruned() {
        let table = study_table(&result(), 3);
        let rows: Vec<&str> = table.lines().collect();
        assert!(rows[1].starts_with("2 "), "{table}");
        assert!(rows[2].starts_with("3 "), "{table}");
        assert!(rows[3].starts_with("1 "), "{table}");
        assert!(
            rows[4].contains("6 trials: 4 complete, 1 pruned, 1 failed; 12 epochs"),
            "{table}"
        );
    }

    #[test]
    fn the_parameter_that_sets_the_value_matters_most() {
        let scores = importance(&result());
        assert_eq!(scores[0].0, "lr");
        // lr's quartiles hold one trial each: all the spread. hidden: means 0.55 and 0.4.
        assert!((scores[0].1 - 1.0).abs() < 1e-12, "{scores:?}");
        let values = [0.9, 0.5, 0.2, 0.3];
        let mean: f64 = values.iter().sum::<f64>() / 4.0;
        let total: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
        let between = 2.0 * (0.55f64 - mean).powi(2) + 2.0 * (0.4f64 - mean).powi(2);
        assert!((scores[1].1 - between / total).abs() < 1e-12, "{scores:?}");
    }
}
