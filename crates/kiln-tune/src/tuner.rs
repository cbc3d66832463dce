//! `Tuner`: a study run from code, trials in worker threads (KerasTuner's `search`, Optuna's
//! `study.optimize`).

use std::fmt::Display;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_train::{Callback, EpochRecord, History};

use crate::TuneError;
use crate::pruner::Pruner;
use crate::sampler::Sampler;
use crate::space::SearchSpace;
use crate::storage::{self, Storage};
use crate::study::{Study, StudyConfig, Trial, best_of, this_owner};
use crate::trial::{Direction, TrialRecord};

/// A hyperparameter search run from code: each trial calls your objective with its values.
///
/// ```
/// use kiln_tune::{Pruner, SearchSpace, Tuner};
///
/// let space = SearchSpace::new().float("x", -5.0, 5.0);
/// let study = Tuner::new(space, "loss")
///     .trials(30)
///     .optimize(|trial| Ok::<f64, String>((trial.float("x") - 2.0).powi(2)))
///     .unwrap();
/// let best = study.best().unwrap();
/// assert!((best.params["x"].as_f64().unwrap() - 2.0).abs() < 1.0);
/// ```
#[derive(Debug, Clone)]
pub struct Tuner {
    config: StudyConfig,
    storage: Option<String>,
    workers: usize,
    time_budget: Option<Duration>,
}

impl Tuner {
    /// A study of `space` towards the metric `objective` (its direction from its name: losses
    /// and errors down, the rest up), with TPE, no pruner, seed 0, one worker, in memory.
    pub fn new(space: SearchSpace, objective: &str) -> Self {
        Self {
            config: StudyConfig::new("study", space, objective),
            storage: None,
            workers: 1,
            time_budget: None,
        }
    }

    /// The study's name in its storage. Default `study`.
    pub fn name(mut self, name: &str) -> Self {
        self.config.name = name.into();
        self
    }

    /// Whether lower or higher is better.
    pub fn direction(mut self, direction: Direction) -> Self {
        self.config.direction = direction;
        self
    }

    /// The sampler. Default TPE.
    pub fn sampler(mut self, sampler: Sampler) -> Self {
        self.config.sampler = sampler;
        self
    }

    /// The pruner. Default none.
    pub fn pruner(mut self, pruner: Pruner) -> Self {
        self.config.pruner = pruner;
        self
    }

    /// The sampler's seed. Default 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// Stop handing out trials after `n` in all.
    pub fn trials(mut self, n: u64) -> Self {
        self.config.budget.trials = Some(n);
        self
    }

    /// Stop handing out trials once the trials have run `n` epochs in all.
    pub fn epoch_budget(mut self, n: u64) -> Self {
        self.config.budget.epochs = Some(n);
        self
    }

    /// Stop handing out trials after this long (running ones finish).
    pub fn time_budget(mut self, budget: Duration) -> Self {
        self.time_budget = Some(budget);
        self
    }

    /// Trials at a time, each in a thread of its own. Default 1.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Where the study lives: an SQLite file, `sqlite:PATH` or `postgres://...`. Default: an
    /// SQLite database in memory, gone with the process.
    pub fn storage(mut self, url: &str) -> Self {
        self.storage = Some(url.into());
        self
    }

    /// Anything else to keep with the study (the command line's fixed flags).
    pub fn extra(mut self, extra: serde_json::Value) -> Self {
        self.config.extra = extra;
        self
    }

    /// Its configuration.
    pub fn config(&self) -> &StudyConfig {
        &self.config
    }

    /// Creates (or joins) the study in its storage.
    pub fn study(&self) -> Result<Study, TuneError> {
        self.check()?;
        let storage: Arc<dyn Storage> = Arc::from(storage::open(
            self.storage.as_deref().unwrap_or(":memory:"),
        )?);
        Study::open(storage, self.config.clone())
    }

    fn check(&self) -> Result<(), TuneError> {
        if self.workers == 0 {
            return Err(TuneError::InvalidOption {
                option: "workers",
                reason: "must be at least 1".into(),
            });
        }
        let bounded = self.config.budget.trials.is_some()
            || self.config.budget.epochs.is_some()
            || self.time_budget.is_some()
            || matches!(self.config.sampler, Sampler::Grid { .. });
        if !bounded {
            return Err(TuneError::InvalidOption {
                option: "budget",
                reason: "give a number of trials, an epoch budget or a time budget".into(),
            });
        }
        self.config.check()
    }

    /// Runs the study: each worker asks for a trial, calls `objective` with it and records
    /// what it returned (`Err` or a panic: failed, and the study goes on), until the budget is
    /// spent. An objective that calls [`Trial::report`] (or trains with
    /// [`Trial::pruning_callback`]) can be pruned.
    pub fn optimize<F, E>(&self, objective: F) -> Result<StudyResult, TuneError>
    where
        F: Fn(&Trial) -> Result<f64, E> + Sync,
        E: Display,
    {
        let study = self.study()?;
        let deadline = self.time_budget.map(|d| Instant::now() + d);
        let owner = this_owner();
        let worker = || -> Result<(), TuneError> {
            while deadline.is_none_or(|d| Instant::now() < d) {
                let Some(trial) = study.ask(&owner)? else {
                    break;
                };
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| objective(&trial)));
                let outcome = match outcome {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(panic) => Err(panic_text(panic.as_ref())),
                };
                trial.finish(outcome)?;
            }
            Ok(())
        };
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.workers).map(|_| scope.spawn(worker)).collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().expect("a tuning worker panicked"))
        })?;
        StudyResult::of(&study)
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the objective panicked".into())
}

/// A study's trials once it is done.
#[derive(Debug, Clone)]
pub struct StudyResult {
    /// The study's configuration.
    pub config: StudyConfig,
    /// Its trials, by number.
    pub trials: Vec<TrialRecord>,
}

impl StudyResult {
    /// The study's trials as they are now.
    pub fn of(study: &Study) -> Result<Self, TuneError> {
        Ok(Self {
            config: study.config().clone(),
            trials: study.trials()?,
        })
    }

    /// The best trial (complete ones first).
    pub fn best(&self) -> Option<&TrialRecord> {
        best_of(&self.trials, self.config.direction)
    }

    /// Epochs run by all the trials together.
    pub fn epochs(&self) -> u64 {
        self.trials.iter().map(|t| u64::from(t.epochs())).sum()
    }
}

/// The value a history's epoch holds for `metric`: `val_loss`, `val_accuracy`, `train_loss`,
/// `train_accuracy`, `lr`, or a user metric by name.
pub fn metric_of(record: &EpochRecord, metric: &str) -> Option<f64> {
    match metric {
        "val_loss" => Some(record.val_loss),
        "val_accuracy" => record.val_accuracy,
        "train_loss" | "loss" => Some(record.train_loss),
        "train_accuracy" | "accuracy" => record.train_accuracy,
        "lr" => Some(record.lr),
        other => record.metrics.get(other).copied(),
    }
}

impl Trial {
    /// A kiln trainer callback that reports the study's objective after every epoch and stops
    /// the run when the pruner says so (Optuna's `PyTorchLightningPruningCallback`). `epochs`
    /// is the run's last epoch: a trial that reaches it is complete, so the pruner is not asked
    /// there.
    ///
    /// # Panics
    /// The callback panics (which ends the run with an error naming it) when the storage
    /// cannot be written, or the history has no value for the objective.
    pub fn pruning_callback(&self, epochs: usize) -> impl Callback + 'static {
        let trial = self.clone();
        let objective = self.study().config().objective.clone();
        move |history: &History| {
            let Some(record) = history.epochs.last() else {
                return ControlFlow::Continue(());
            };
            let Some(value) = metric_of(record, &objective) else {
                panic!("the objective `{objective}` is not in the training history");
            };
            let epoch = u32::try_from(record.epoch).unwrap_or(u32::MAX);
            let reported = if record.epoch >= epochs {
                trial.record(epoch, value).map(|()| false)
            } else {
                trial.report(epoch, value)
            };
            match reported {
                Ok(true) => ControlFlow::Break(()),
                Ok(false) => ControlFlow::Continue(()),
                Err(e) => panic!("reporting to the study: {e}"),
            }
        }
    }
}
