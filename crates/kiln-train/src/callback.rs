//! Code of your own at the end of every epoch: Keras's `Callback.on_epoch_end`.

use std::ops::ControlFlow;

use crate::History;

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
