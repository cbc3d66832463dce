use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use burn::train::logger::MetricLogger;
use burn::train::metric::store::{MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use serde::{Deserialize, Serialize};

/// One epoch of a run, as `history.csv` has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// From 1.
    pub epoch: usize,
    /// Mean training loss per sample.
    pub train_loss: f64,
    /// Classification only.
    pub train_accuracy: Option<f64>,
    /// Mean validation loss per sample.
    pub val_loss: f64,
    /// Classification only.
    pub val_accuracy: Option<f64>,
    /// The learning rate used during the epoch.
    pub lr: f64,
    /// Wall time of the epoch, training and validation.
    pub seconds: f64,
    /// Wall time of the epoch's training alone, up to its first validation batch (what
    /// time-to-accuracy counts). `None` in a history read back from `history.csv`, which does
    /// not keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_seconds: Option<f64>,
    /// Users' metrics ([`Trainer::with_metric`](crate::Trainer::with_metric)), by name for
    /// the training split and `val_` + name for validation, as Keras names its logs; and in an
    /// f16 run, `loss_scale` (at the epoch's end) and `skipped_steps` (the epoch's optimiser
    /// steps skipped for gradients that overflowed; see [`LossScaler`](crate::LossScaler)).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

/// What happened in each epoch of a run (Keras's `History`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// One record per epoch, in order.
    pub epochs: Vec<EpochRecord>,
}

impl History {
    /// The header row of `history.csv`.
    pub const CSV_HEADER: &'static str =
        "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds";

    /// The history as CSV, with [`History::CSV_HEADER`] and then a column per user metric;
    /// empty cells for accuracies of a regression run.
    pub fn to_csv(&self) -> String {
        // Rust's `{:?}` writes the shortest text that reads back to the same f64, in exponent
        // form when very small or large: a learning rate of 7.32e-7 stays 7.32e-7 (fixed
        // decimals made it 0.00000073).
        let opt = |v: Option<f64>| v.map(|v| format!("{v:?}")).unwrap_or_default();
        let extra: BTreeSet<&String> = self.epochs.iter().flat_map(|r| r.metrics.keys()).collect();
        let mut out = Self::CSV_HEADER.to_string();
        for name in &extra {
            out.push(',');
            out.push_str(name);
        }
        out.push('\n');
        for r in &self.epochs {
            out.push_str(&format!(
                "{},{:?},{},{:?},{},{:?},{:.3}",
                r.epoch,
                r.train_loss,
                opt(r.train_accuracy),
                r.val_loss,
                opt(r.val_accuracy),
                r.lr,
                r.seconds
            ));
            for name in &extra {
                out.push(',');
                out.push_str(&opt(r.metrics.get(*name).copied()));
            }
            out.push('\n');
        }
        out
    }
}

impl History {
    /// Reads back what [`History::to_csv`] wrote (`seconds` may be missing). A malformed file
    /// is an error naming the row and column.
    pub fn from_csv(text: &str) -> Result<History, String> {
        let mut lines = text.lines();
        let header = lines.next().ok_or("empty file: expected a header row")?;
        let columns: Vec<&str> = header.split(',').map(str::trim).collect();
        let expected: Vec<&str> = Self::CSV_HEADER.split(',').collect();
        if columns.len() < expected.len() - 1 || columns[..6] != expected[..6] {
            return Err(format!(
                "header is {header:?}, expected {:?}",
                Self::CSV_HEADER
            ));
        }
        let mut epochs = Vec::new();
        for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let row = i + 2;
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            if cells.len() != columns.len() {
                return Err(format!(
                    "row {row} has {} cells, the header {}",
                    cells.len(),
                    columns.len()
                ));
            }
            let number = |c: usize| -> Result<f64, String> {
                cells[c].parse().map_err(|_| {
                    format!(
                        "row {row}, column {}: {:?} is not a number",
                        columns[c], cells[c]
                    )
                })
            };
            let optional = |c: usize| -> Result<Option<f64>, String> {
                if cells[c].is_empty() {
                    Ok(None)
                } else {
                    number(c).map(Some)
                }
            };
            let epoch = cells[0]
                .parse()
                .map_err(|_| format!("row {row}, column epoch: {:?} is not an epoch", cells[0]))?;
            let mut metrics = BTreeMap::new();
            for (c, name) in columns.iter().enumerate().skip(7) {
                if let Some(v) = optional(c)? {
                    metrics.insert(name.to_string(), v);
                }
            }
            epochs.push(EpochRecord {
                epoch,
                train_loss: number(1)?,
                train_accuracy: optional(2)?,
                val_loss: number(3)?,
                val_accuracy: optional(4)?,
                lr: number(5)?,
                seconds: if cells.len() > 6 { number(6)? } else { 0.0 },
                train_seconds: None,
                metrics,
            });
        }
        Ok(History { epochs })
    }
}

/// Mean of an epoch's entries as burn-train computes it: the final value when the metric gave
/// one, else the mean weighted by each entry's count.
pub(crate) fn epoch_value(entries: &[NumericEntry]) -> Option<f64> {
    if let Some(NumericEntry::Final(v)) = entries.last() {
        return Some(*v);
    }
    let (sum, n) = entries.iter().fold((0.0, 0usize), |(s, n), e| match e {
        NumericEntry::Value(v) => (s + v, n + 1),
        NumericEntry::Aggregated {
            aggregated_value,
            count,
        } => (s + aggregated_value * *count as f64, n + count),
        NumericEntry::Final(v) => (s + v, n + 1),
    });
    (n > 0).then(|| sum / n as f64)
}

/// A burn-train metric value in kiln's units: burn's accuracy is a percentage, kiln's (like
/// Keras's) a fraction.
pub(crate) fn in_kiln_units(metric: &str, value: f64) -> f64 {
    if metric == "Accuracy" {
        value / 100.0
    } else {
        value
    }
}

/// Everything the [`HistoryLogger`] saw.
#[derive(Default)]
pub(crate) struct Recorded {
    names: HashMap<MetricId, String>,
    entries: HashMap<(Split, usize, String), Vec<NumericEntry>>,
}

/// burn-train metric logger that keeps every numeric entry in memory: the store behind
/// burn-train's metric queries, which kiln's epoch-end hook reads into the [`History`].
#[derive(Clone, Default)]
pub(crate) struct HistoryLogger {
    pub recorded: Arc<Mutex<Recorded>>,
}

impl MetricLogger for HistoryLogger {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        let mut r = self.recorded.lock().expect("history lock");
        for numeric in update.entries_numeric {
            let Some(entry) = numeric.numeric_entry else {
                continue;
            };
            let name = r
                .names
                .get(&numeric.entry.metric_id)
                .cloned()
                .unwrap_or_default();
            r.entries
                .entry((split.clone(), epoch, name))
                .or_default()
                .push(entry);
        }
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        let r = self.recorded.lock().expect("history lock");
        Ok(r.entries
            .get(&(split.clone(), epoch, name.to_string()))
            .cloned()
            .unwrap_or_default())
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        let mut r = self.recorded.lock().expect("history lock");
        r.names
            .insert(definition.metric_id, definition.name.to_string());
    }

    fn log_epoch_summary(&mut self, _summary: burn::train::metric::store::EpochSummary) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_value_weights_by_count_unless_final() {
        let e = [
            NumericEntry::Aggregated {
                aggregated_value: 1.0,
                count: 3,
            },
            NumericEntry::Value(5.0),
        ];
        assert_eq!(epoch_value(&e), Some(2.0));
        assert_eq!(
            epoch_value(&[NumericEntry::Value(1.0), NumericEntry::Final(0.25)]),
            Some(0.25)
        );
        assert_eq!(epoch_value(&[]), None);
    }

    #[test]
    fn csv_reads_back_what_was_written() {
        let h = History {
            epochs: vec![
                EpochRecord {
                    epoch: 1,
                    train_loss: 0.5,
                    train_accuracy: Some(0.75),
                    val_loss: 0.25,
                    val_accuracy: Some(0.875),
                    lr: 0.001,
                    seconds: 1.5,
                    train_seconds: None,
                    metrics: BTreeMap::from([
                        ("top_2".to_string(), 0.875),
                        ("val_top_2".to_string(), 0.9375),
                    ]),
                },
                EpochRecord {
                    epoch: 2,
                    train_loss: 0.125,
                    train_accuracy: None,
                    val_loss: 0.0625,
                    val_accuracy: None,
                    lr: 0.0005,
                    seconds: 2.0,
                    train_seconds: None,
                    metrics: BTreeMap::from([("top_2".to_string(), 0.75)]),
                },
            ],
        };
        assert_eq!(History::from_csv(&h.to_csv()), Ok(h));
        let err = History::from_csv("epoch,train_loss\n").unwrap_err();
        assert!(err.contains("expected"), "{err}");
        let bad = format!("{}\n1,0.5,,x,,0.1,1\n", History::CSV_HEADER);
        let err = History::from_csv(&bad).unwrap_err();
        assert!(err.contains("row 2, column val_loss"), "{err}");
    }

    #[test]
    fn csv_has_the_documented_columns() {
        let h = History {
            epochs: vec![EpochRecord {
                epoch: 1,
                train_loss: 0.5,
                train_accuracy: None,
                val_loss: 0.25,
                val_accuracy: None,
                lr: 0.001,
                seconds: 1.5,
                train_seconds: None,
                metrics: BTreeMap::new(),
            }],
        };
        assert_eq!(
            h.to_csv(),
            "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds\n\
             1,0.5,,0.25,,0.001,1.500\n"
        );
    }

    /// Every value reads back to the same f64: a cosine schedule's tail rate, a loss with all
    /// its digits (fixed decimals wrote 7.32e-7 as 0.00000073).
    #[test]
    fn csv_values_read_back_exactly() {
        let record = |epoch, train_loss: f64, lr: f64| EpochRecord {
            epoch,
            train_loss,
            train_accuracy: Some(1.0 / 3.0),
            val_loss: train_loss.sqrt(),
            val_accuracy: Some(2.0 / 3.0),
            lr,
            seconds: 1.5,
            train_seconds: None,
            metrics: BTreeMap::from([("top_2".to_string(), 0.1 + 0.2)]),
        };
        let h = History {
            epochs: vec![
                record(1, 0.123_456_789_012_345_67, 7.32e-7),
                record(2, 3.7e26, 1e6),
                record(3, 1e-12, 1.0 / 7.0),
            ],
        };
        let text = h.to_csv();
        assert!(text.contains(",7.32e-7,"), "{text}");
        assert_eq!(History::from_csv(&text), Ok(h));
    }
}
