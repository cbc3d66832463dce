//! Code of your own at the end of every epoch: Keras's `Callback.on_epoch_end`.

use std::ops::ControlFlow;
use std::path::PathBuf;

use crate::{History, write_atomic};

/// Code of your own that the trainer runs at the end of every epoch, after validation and
/// kiln's own bookkeeping (early stopping, the schedule, the best weights), before the epoch's
/// checkpoint is written: Keras's `Callback.on_epoch_end`, whose `logs` are the history's last
/// record. Returning [`ControlFlow::Break`] stops the run after this epoch, as Keras's
/// `model.stop_training = True` does; the fit then reports `stopped_early`.
///
/// Any `FnMut(&History) -> ControlFlow<()> + Send` closure is a callback. A callback's own state
/// is not part of a checkpoint: a resumed run calls it from the resumed epoch on. A callback that
/// panics ends the run with an error naming it.
///
/// ```
/// use std::ops::ControlFlow;
/// use kiln_train::{Callback, History};
///
/// // Stop once the validation accuracy reaches 97%.
/// let mut target = |history: &History| match history.epochs.last() {
///     Some(epoch) if epoch.val_accuracy >= Some(0.97) => ControlFlow::Break(()),
///     _ => ControlFlow::Continue(()),
/// };
/// assert_eq!(target.on_epoch_end(&History::default()), ControlFlow::Continue(()));
/// ```
pub trait Callback: Send {
    /// Runs after each epoch; `history` holds every epoch so far, the one that just ended last.
    fn on_epoch_end(&mut self, history: &History) -> ControlFlow<()>;
}

impl<F: FnMut(&History) -> ControlFlow<()> + Send> Callback for F {
    fn on_epoch_end(&mut self, history: &History) -> ControlFlow<()> {
        self(history)
    }
}
/// Keras's `CSVLogger`: writes the history so far to a CSV file at the end of every epoch
/// (the columns of [`History::to_csv`]), so that a long run can be followed (`tail -F`) and a
/// killed one keeps its history. Each write replaces the file atomically and durably: a reader
/// never sees half a row. A write that fails (a full disk) ends the run with an error naming
/// the file.
#[derive(Debug, Clone)]
pub struct CsvLogger {
    path: PathBuf,
}

impl CsvLogger {
    /// Logs to `path` (created or replaced).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl Callback for CsvLogger {
    fn on_epoch_end(&mut self, history: &History) -> ControlFlow<()> {
        if let Err(e) = write_atomic(&self.path, history.to_csv().as_bytes()) {
            panic!("CsvLogger: {e}");
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EpochRecord;

    /// Each epoch's end rewrites the file with the history so far, as `History::to_csv`.
    #[test]
    fn csv_logger_writes_the_history_so_far_every_epoch() {
        let path = std::env::temp_dir().join(format!("kiln-csv-logger-{}.csv", std::process::id()));
        let mut logger = CsvLogger::new(&path);
        let mut history = History::default();
        for epoch in 1..=2 {
            history.epochs.push(EpochRecord {
                epoch,
                train_loss: 1.0 / epoch as f64,
                train_accuracy: None,
                val_loss: 2.0 / epoch as f64,
                val_accuracy: None,
                lr: 0.01,
                seconds: 1.5,
                train_seconds: None,
                metrics: Default::default(),
            });
            assert_eq!(logger.on_epoch_end(&history), ControlFlow::Continue(()));
            let written = std::fs::read_to_string(&path).unwrap();
            assert_eq!(written, history.to_csv());
            assert_eq!(written.lines().count(), 1 + epoch);
        }
        std::fs::remove_file(path).unwrap();
    }
}
