//! Ending a run promptly when one of its helper threads fails.
//!
//! burn-train runs the renderer, the metrics and the loggers on other threads. When one of them
//! panicked, burn-train's asynchronous event processor could wait for it for ever (a flush
//! request queued before the thread died is never answered), so kiln's components never panic
//! across burn-train: they report here, which stops the run through burn-train's interrupter,
//! and the trainer returns the failure as an error.

use std::sync::{Arc, Mutex};

use burn::train::Interrupter;
use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, Split};
use burn::train::metric::{MetricDefinition, NumericEntry};

/// Why a run was stopped from a helper thread.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Failure {
    /// The progress output (a pipe, say) was closed: stop quietly, as Unix tools do.
    OutputClosed,
    /// A component failed; the text says which and why.
    Component(String),
}

/// The first failure reported, shared by the components and the trainer.
#[derive(Clone, Default)]
pub(crate) struct Failures {
    interrupter: Interrupter,
    first: Arc<Mutex<Option<Failure>>>,
}

impl Failures {
    pub fn new(interrupter: Interrupter) -> Self {
        Self {
            interrupter,
            first: Arc::default(),
        }
    }

    /// Records `failure` (the first one wins) and stops the run.
    pub fn report(&self, failure: Failure) {
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(failure);
        }
        self.interrupter.stop(Some("a component of the run failed"));
    }

    /// Runs `f`, turning a panic into a reported failure of `what`.
    pub fn guard<T>(&self, what: &str, f: impl FnOnce() -> T) -> Option<T> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(value) => Some(value),
            Err(payload) => {
                let reason = panic_text(payload.as_ref());
                self.report(Failure::Component(format!("{what}: {reason}")));
                None
            }
        }
    }

    pub fn first(&self) -> Option<Failure> {
        self.first.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A panic's message, where it has one.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

/// A user's burn-train metric logger, run so that a panic in it ends the run with an error
/// naming it instead of killing burn-train's metric store thread.
pub(crate) struct GuardedLogger {
    pub name: String,
    pub inner: Box<dyn MetricLogger>,
    pub failures: Failures,
}

impl MetricLogger for GuardedLogger {
    fn log(&mut self, update: MetricsUpdate, epoch: usize, split: &Split) {
        let what = format!("metric logger `{}`", self.name);
        self.failures
            .guard(&what, || self.inner.log(update, epoch, split));
    }

    fn read_numeric(
        &mut self,
        name: &str,
        epoch: usize,
        split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        let what = format!("metric logger `{}`", self.name);
        self.failures
            .guard(&what, || self.inner.read_numeric(name, epoch, split))
            .unwrap_or_else(|| Err(format!("{what} failed")))
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        let what = format!("metric logger `{}`", self.name);
        self.failures
            .guard(&what, || self.inner.log_metric_definition(definition));
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        let what = format!("metric logger `{}`", self.name);
        self.failures
            .guard(&what, || self.inner.log_epoch_summary(summary));
    }
}
