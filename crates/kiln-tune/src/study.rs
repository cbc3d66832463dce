//! A study: its configuration in the storage, and the trials it hands out.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::TuneError;
use crate::pruner::Pruner;
use crate::sampler::Sampler;
use crate::space::{ParamValue, Params, SearchSpace};
use crate::storage::{Ask, Storage};
use crate::trial::{Direction, TrialRecord, TrialState};

/// Seconds without a heartbeat after which a running trial of another machine counts as
/// abandoned (its worker's own machine knows sooner: the process is gone). Default for
/// [`StudyConfig::stale_after`].
pub const STALE_AFTER: f64 = 120.0;

/// When a study stops handing out trials. Trials already running finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Budget {
    /// Trials in all (complete, pruned, failed or running).
    pub trials: Option<u64>,
    /// Epochs in all, summed over the trials (what a pruner saves).
    pub epochs: Option<u64>,
}

/// What a study searches and how: stored with it, so that every worker (and a resumed study)
/// works the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyConfig {
    /// The study's name in its storage.
    pub name: String,
    /// What it searches.
    pub space: SearchSpace,
    /// The metric trials report, such as `val_loss`.
    pub objective: String,
    /// Whether lower or higher is better.
    pub direction: Direction,
    /// How each trial's values are chosen.
    pub sampler: Sampler,
    /// When a trial stops early.
    pub pruner: Pruner,
    /// Seeds the sampler: the same seed and trials give the same values.
    pub seed: u64,
    /// When it stops handing out trials.
    pub budget: Budget,
    /// Seconds without a heartbeat after which another machine's running trial is taken over.
    pub stale_after: f64,
    /// What else the study's workers need (the command line keeps its fixed `kiln train`
    /// flags here).
    pub extra: serde_json::Value,
}

impl StudyConfig {
    /// A study of `space` towards `objective`, in the objective's natural direction (losses
    /// and errors down, the rest up), with TPE, no pruner, seed 0 and no budget.
    pub fn new(name: &str, space: SearchSpace, objective: &str) -> Self {
        Self {
            name: name.to_string(),
            space,
            objective: objective.to_string(),
            direction: Direction::for_metric(objective),
            sampler: Sampler::default(),
            pruner: Pruner::None,
            seed: 0,
            budget: Budget::default(),
            stale_after: STALE_AFTER,
            extra: serde_json::Value::Null,
        }
    }

    /// Checks every part, once, before any trial runs.
    pub fn check(&self) -> Result<(), TuneError> {
        self.space.check()?;
        self.sampler.check(&self.space)?;
        self.pruner.check()?;
        if self.name.is_empty() {
            return Err(TuneError::InvalidOption {
                option: "name",
                reason: "a study needs a name".into(),
            });
        }
        if self.budget.trials == Some(0) || self.budget.epochs == Some(0) {
            return Err(TuneError::InvalidOption {
                option: "budget",
                reason: "a budget of 0 trials or epochs runs nothing".into(),
            });
        }
        Ok(())
    }

    /// The first field in which a stored study differs from this one (budgets may change on
    /// resuming).
    fn differs_from(&self, stored: &StudyConfig) -> Option<&'static str> {
        [
            ("the search space", self.space != stored.space),
            ("the objective", self.objective != stored.objective),
            ("the direction", self.direction != stored.direction),
            ("the sampler", self.sampler != stored.sampler),
            ("the pruner", self.pruner != stored.pruner),
            ("the seed", self.seed != stored.seed),
            ("the fixed flags", self.extra != stored.extra),
        ]
        .into_iter()
        .find(|(_, differs)| *differs)
        .map(|(what, _)| what)
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// This process as a trial owner: `host:pid`.
pub fn this_owner() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether a running trial's worker is gone: a process of this machine that no longer
/// exists, or no heartbeat for `stale_after` seconds.
fn abandoned(trial: &TrialRecord, stale_after: f64, at: f64) -> bool {
    if trial.state != TrialState::Running {
        return false;
    }
    let here = host_name();
    if let Some((host, pid)) = trial.owner.rsplit_once(':')
        && host == here
        && std::path::Path::new("/proc/self").exists()
    {
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            return true;
        }
        if pid == std::process::id().to_string() {
            return false;
        }
    }
    at - trial.heartbeat > stale_after
}

struct Shared {
    storage: Arc<dyn Storage>,
    id: i64,
    config: StudyConfig,
}

/// A study open in its storage. Cloning shares it.
#[derive(Clone)]
pub struct Study {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Study {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Study")
            .field("name", &self.shared.config.name)
            .field("storage", &self.shared.storage.url())
            .finish()
    }
}

impl Study {
    /// Creates the study in `storage`, or joins the one of the same name there: its
    /// configuration must be the same but for the budget (which `config`'s replaces).
    pub fn open(storage: Arc<dyn Storage>, config: StudyConfig) -> Result<Self, TuneError> {
        config.check()?;
        let spec = serde_json::to_string(&config).expect("a study config serialises");
        let (id, stored) = storage.create_study(&config.name, &spec)?;
        let stored: StudyConfig = parse_spec(storage.as_ref(), &config.name, &stored)?;
        if let Some(what) = config.differs_from(&stored) {
            return Err(TuneError::Mismatch {
                name: config.name.clone(),
                what: what.into(),
            });
        }
        Ok(Self {
            shared: Arc::new(Shared {
                storage,
                id,
                config,
            }),
        })
    }

    /// The study `name` as it was stored.
    pub fn load(storage: Arc<dyn Storage>, name: &str) -> Result<Self, TuneError> {
        let Some((id, spec)) = storage.load_study(name)? else {
            return Err(TuneError::NoStudy {
                name: name.into(),
                url: storage.url(),
            });
        };
        let config = parse_spec(storage.as_ref(), name, &spec)?;
        Ok(Self {
            shared: Arc::new(Shared {
                storage,
                id,
                config,
            }),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &StudyConfig {
        &self.shared.config
    }

    /// Its storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.shared.storage
    }

    /// Its trials, by number.
    pub fn trials(&self) -> Result<Vec<TrialRecord>, TuneError> {
        self.shared.storage.trials(self.shared.id)
    }

    /// The next trial for `owner` (see [`this_owner`]): an abandoned running trial first (its
    /// worker died: same number and values, `resumed` set), else a paused trial that ASHA
    /// promotes (`resumed` set too: it goes on from the epoch it paused at), else a new one
    /// from the sampler; `None` when the budget is spent or the sampler has nothing left.
    pub fn ask(&self, owner: &str) -> Result<Option<Trial>, TuneError> {
        let config = &self.shared.config;
        let at = now();
        let (mut resumed, mut promoted) = (false, false);
        let record = self
            .shared
            .storage
            .ask(self.shared.id, owner, at, &mut |trials| {
                (resumed, promoted) = (false, false);
                if let Some(stale) = trials.iter().find(|t| abandoned(t, config.stale_after, at)) {
                    resumed = true;
                    return Ask::Reclaim(stale.id);
                }
                let epochs: u64 = trials.iter().map(|t| u64::from(t.epochs())).sum();
                if config.budget.epochs.is_some_and(|n| epochs >= n) {
                    return Ask::Stop;
                }
                // A promotion adds no trial: it goes on when the trials' budget is spent.
                let last = config
                    .budget
                    .trials
                    .is_some_and(|n| trials.len() as u64 >= n);
                if let Some(paused) = config.pruner.promotion(trials, config.direction, last) {
                    (resumed, promoted) = (true, true);
                    return Ask::Reclaim(paused);
                }
                if last {
                    return Ask::Stop;
                }
                let number = trials.len() as u64;
                match config.sampler.sample(
                    &config.space,
                    trials,
                    number,
                    config.seed,
                    config.direction,
                ) {
                    Some(params) => Ask::New(params),
                    None => Ask::Stop,
                }
            })?;
        Ok(record.map(|record| {
            let mut trial = Trial::new(self.clone(), record, resumed);
            trial.promoted = promoted;
            trial
        }))
    }

    /// The trial whose key is `id` (a worker process handed one by its parent).
    pub fn attach(storage: Arc<dyn Storage>, id: i64) -> Result<Trial, TuneError> {
        let (study, record) = storage.trial(id)?;
        let (name, spec) = storage.study_by_id(study)?;
        let config = parse_spec(storage.as_ref(), &name, &spec)?;
        let study = Study {
            shared: Arc::new(Shared {
                storage,
                id: study,
                config,
            }),
        };
        Ok(Trial::new(study, record, false))
    }

    /// The best finished trial: complete ones first, then pruned ones by the value they had.
    pub fn best_trial(&self) -> Result<Option<TrialRecord>, TuneError> {
        Ok(best_of(&self.trials()?, self.shared.config.direction).cloned())
    }
}

/// The best complete trial (or, when none is complete, the best pruned one).
pub fn best_of(trials: &[TrialRecord], direction: Direction) -> Option<&TrialRecord> {
    let best = |state: TrialState| {
        trials
            .iter()
            .filter(|t| t.state == state)
            .filter(|t| t.value.is_some_and(|v| !v.is_nan()))
            .min_by(|a, b| {
                direction
                    .cost(a.value.unwrap_or(f64::NAN))
                    .total_cmp(&direction.cost(b.value.unwrap_or(f64::NAN)))
                    .then(a.number.cmp(&b.number))
            })
    };
    best(TrialState::Complete).or_else(|| best(TrialState::Pruned))
}

fn parse_spec(storage: &dyn Storage, name: &str, spec: &str) -> Result<StudyConfig, TuneError> {
    serde_json::from_str(spec).map_err(|e| TuneError::Storage {
        url: storage.url(),
        reason: format!("study `{name}`: its stored configuration does not read: {e}"),
    })
}

/// One trial being run: its values, and the pruner's answer after each epoch. Cloning shares it.
#[derive(Clone)]
pub struct Trial {
    study: Study,
    record: TrialRecord,
    resumed: bool,
    /// Epochs it had reported when handed out: the pruner has decided on those already.
    start_epoch: u32,
    promoted: bool,
    pruned: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Trial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trial")
            .field("number", &self.record.number)
            .field("params", &self.record.params)
            .finish()
    }
}

impl Trial {
    fn new(study: Study, record: TrialRecord, resumed: bool) -> Self {
        Self {
            study,
            start_epoch: record.epochs(),
            record,
            resumed,
            promoted: false,
            pruned: Arc::default(),
        }
    }

    /// Its number in the study, from 0.
    pub fn number(&self) -> u64 {
        self.record.number
    }

    /// Its key in the storage.
    pub fn id(&self) -> i64 {
        self.record.id
    }

    /// Its values.
    pub fn params(&self) -> &Params {
        &self.record.params
    }

    /// The study it belongs to.
    pub fn study(&self) -> &Study {
        &self.study
    }

    /// Whether it ran before: taken over from a worker that died, or paused by ASHA and now
    /// promoted. Its run may have a checkpoint to go on from, after [`Trial::start_epoch`].
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Whether ASHA paused it at a rung and now promotes it: its run ended there (a
    /// checkpoint, and metrics of the epochs so far) and goes on to its last epoch.
    pub fn promoted(&self) -> bool {
        self.promoted
    }

    /// The epochs it had reported when handed out (0 for a new trial). An objective that can
    /// resume its run goes on after them (the command line's trials resume their checkpoints);
    /// one that trains from the start again reports them again, and the pruner, which has
    /// decided on them already, is asked only after them.
    pub fn start_epoch(&self) -> u32 {
        self.start_epoch
    }

    /// The value of `name` as a real number (a whole number or a numeric choice converted).
    ///
    /// # Panics
    /// If the search space has no `name` (a programming error in the objective).
    pub fn float(&self, name: &str) -> f64 {
        self.value(name)
            .as_f64()
            .unwrap_or_else(|| panic!("hyperparameter `{name}` is not a number"))
    }

    /// The value of `name` as a whole number.
    ///
    /// # Panics
    /// If the search space has no `name`, or it is not a whole number.
    pub fn int(&self, name: &str) -> i64 {
        match self.value(name) {
            ParamValue::Int(v) => *v,
            other => other
                .to_string()
                .parse()
                .unwrap_or_else(|_| panic!("hyperparameter `{name}` is not a whole number")),
        }
    }

    /// The value of `name` as text (a choice, or a number written out).
    ///
    /// # Panics
    /// If the search space has no `name`.
    pub fn choice(&self, name: &str) -> String {
        self.value(name).to_string()
    }

    fn value(&self, name: &str) -> &ParamValue {
        self.record
            .params
            .get(name)
            .unwrap_or_else(|| panic!("the search space has no hyperparameter `{name}`"))
    }

    /// Records the objective after `epoch` (from 1), without asking the pruner. A value that is
    /// not finite is not recorded.
    pub fn record(&self, epoch: u32, value: f64) -> Result<(), TuneError> {
        if !value.is_finite() {
            return Ok(());
        }
        self.study
            .shared
            .storage
            .report(self.record.id, epoch, value, now())
    }

    /// Records the objective after `epoch` (from 1) and asks the pruner: `true` means stop now
    /// (and the trial ends pruned). A value that is not finite is not recorded.
    pub fn report(&self, epoch: u32, value: f64) -> Result<bool, TuneError> {
        if !value.is_finite() {
            return Ok(false);
        }
        self.record(epoch, value)?;
        let shared = &self.study.shared;
        // Without a pruner there is nothing to decide: no need to read the study back; nor
        // on an epoch it decided on before the trial paused.
        if shared.config.pruner == Pruner::None || epoch <= self.start_epoch {
            return Ok(false);
        }
        let trials = shared.storage.trials(shared.id)?;
        let Some(me) = trials.iter().find(|t| t.id == self.record.id) else {
            return Ok(false);
        };
        let prune = shared
            .config
            .pruner
            .should_prune(me, epoch, &trials, shared.config.direction);
        if prune {
            self.pruned.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(prune)
    }

    /// Whether the pruner stopped it.
    pub fn was_pruned(&self) -> bool {
        self.pruned.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ends it: `Ok(value)` complete (or pruned, when the pruner stopped it: its value then the
    /// best it reported), `Err(reason)` failed.
    pub fn finish(&self, outcome: Result<f64, String>) -> Result<TrialRecord, TuneError> {
        let shared = &self.study.shared;
        let reported = || -> Result<Option<f64>, TuneError> {
            let (_, me) = shared.storage.trial(self.record.id)?;
            Ok(shared
                .config
                .direction
                .best(me.intermediate.iter().map(|(_, v)| *v)))
        };
        let (state, value, message) = match outcome {
            Ok(_) if self.was_pruned() => (TrialState::Pruned, reported()?, None),
            Ok(v) if v.is_finite() => (TrialState::Complete, Some(v), None),
            Ok(v) => (
                TrialState::Failed,
                None,
                Some(format!("the objective was {v}")),
            ),
            Err(reason) => (TrialState::Failed, None, Some(reason)),
        };
        shared
            .storage
            .finish(self.record.id, state, value, message.as_deref())?;
        Ok(shared.storage.trial(self.record.id)?.1)
    }
}
