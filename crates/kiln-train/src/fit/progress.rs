use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Instant;

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::fit::failures::{Failure, Failures};
use crate::records::history::{epoch_value, in_kiln_units};

/// How much a run prints while it trains (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// Nothing.
    Quiet,
    /// One line per epoch, as in a log file.
    Lines,
    /// A progress bar during each epoch, then its line.
    Bar,
}

impl Verbosity {
    /// A bar on a terminal, lines otherwise.
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            Verbosity::Bar
        } else {
            Verbosity::Lines
        }
    }
}

/// Keras-style progress for burn-train: `Epoch 3/20 - 1.2s - loss: 0.1234 - accuracy: ...`.
pub(crate) struct ProgressRenderer {
    verbosity: Verbosity,
    names: HashMap<MetricId, String>,
    total_epochs: usize,
    bar: Option<ProgressBar>,
    /// Entries of the current epoch, keyed by (validation?, metric name).
    entries: HashMap<(bool, String), Vec<NumericEntry>>,
    epoch_start: Instant,
    in_valid: bool,
    failures: Failures,
}

impl ProgressRenderer {
    pub fn new(verbosity: Verbosity, failures: Failures) -> Self {
        Self {
            verbosity,
            names: HashMap::new(),
            total_epochs: 0,
            bar: None,
            entries: HashMap::new(),
            epoch_start: Instant::now(),
            in_valid: false,
            failures,
        }
    }

    /// Prints a line to standard error. A closed stream (the reader of a pipe has gone) stops
    /// the run quietly and the display with it; another write error stops it with that error.
    fn line(&mut self, text: &str) {
        use std::io::Write;
        if let Err(e) = writeln!(std::io::stderr(), "{text}") {
            self.verbosity = Verbosity::Quiet;
            self.failures
                .report(if e.kind() == std::io::ErrorKind::BrokenPipe {
                    Failure::OutputClosed
                } else {
                    Failure::Component(format!("writing the progress display: {e}"))
                });
        }
    }

    fn record(&mut self, valid: bool, state: MetricState) {
        if let MetricState::Numeric(entry, Some(value)) = state {
            let name = self
                .names
                .get(&entry.metric_id)
                .cloned()
                .unwrap_or_default();
            self.entries.entry((valid, name)).or_default().push(value);
        }
    }

    /// Keras's epoch line: loss, accuracy and users' metrics, then the same for validation.
    fn summary(&self) -> String {
        let mut parts = Vec::new();
        for valid in [false, true] {
            let prefix = if valid { "val_" } else { "" };
            let mut others: Vec<&String> = (self.entries.keys())
                .filter(|(v, name)| *v == valid && name != "Loss" && name != "Accuracy")
                .map(|(_, name)| name)
                .collect();
            others.sort();
            let names = ["Loss", "Accuracy"]
                .into_iter()
                .chain(others.into_iter().map(String::as_str));
            for metric in names {
                if let Some(v) = self
                    .entries
                    .get(&(valid, metric.to_string()))
                    .and_then(|e| epoch_value(e))
                    .map(|v| in_kiln_units(metric, v))
                {
                    let label = match metric {
                        "Loss" => "loss",
                        "Accuracy" => "accuracy",
                        other => other,
                    };
                    parts.push(format!("{prefix}{label}: {v:.4}"));
                }
            }
        }
        parts.join(" - ")
    }
}

impl MetricsRendererTraining for ProgressRenderer {
    fn update_train(&mut self, state: MetricState) {
        self.record(false, state);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.record(true, state);
    }
}

impl MetricsRendererEvaluation for ProgressRenderer {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}
}

impl MetricsRenderer for ProgressRenderer {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id, definition.name.to_string());
    }
}

impl TrainingProgressLogger for ProgressRenderer {
    fn start(
        &mut self,
        total_epochs: usize,
        _start: usize,
        _items: Option<usize>,
        _label: Option<&str>,
    ) {
        self.total_epochs = total_epochs;
    }

    fn update_epoch(&mut self, epoch: usize) {
        if self.verbosity != Verbosity::Quiet {
            let line = format!(
                "Epoch {epoch}/{} - {:.1}s - {}",
                self.total_epochs,
                self.epoch_start.elapsed().as_secs_f64(),
                self.summary()
            );
            self.line(&line);
        }
        self.entries.clear();
        self.epoch_start = Instant::now();
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        self.in_valid = split == "valid";
        if self.verbosity == Verbosity::Bar && !self.in_valid {
            let bar = ProgressBar::new(total_items as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {msg}")
                    .expect("valid template"),
            );
            self.bar = Some(bar);
        }
    }

    fn update_split(&mut self, items_processed: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(items_processed as u64);
            bar.set_message(self.summary());
        }
    }

    fn end_split(&mut self) {
        if !self.in_valid
            && let Some(bar) = self.bar.take()
        {
            bar.finish_and_clear();
        }
    }

    fn end(&mut self) {}

    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for ProgressRenderer {
    fn start_global_progress(&mut self, _total_tests: usize) {}
    fn start_test(&mut self, _name: &str, _total_items: usize) {}
    fn update_test_progress(&mut self, _items_processed: usize) {}
    fn end_test(&mut self) {}
    fn end_global_progress(&mut self) {}
    fn log_event_evaluation(&mut self, _event: String) {}
}
