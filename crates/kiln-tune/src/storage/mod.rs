//! Where a study lives: an embedded SQLite file (the default), or a PostgreSQL server that
//! workers on several machines share (Optuna's model of distributed tuning).
//!
//! Every change is a transaction, so that any number of processes work on one study: `ask`
//! reads the trials and adds the next under a lock (SQLite's `BEGIN IMMEDIATE`, PostgreSQL's
//! advisory lock on the study), so no two workers get the same trial number or grid point.

#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

use std::collections::BTreeMap;

use crate::TuneError;
use crate::space::Params;
use crate::trial::{TrialRecord, TrialState};

#[cfg(feature = "postgres")]
pub use self::postgres::PostgresStorage;
pub use sqlite::SqliteStorage;

/// What `ask` does next, decided from the study's trials.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    /// Take over this running trial, whose worker died: same number, same values.
    Reclaim(i64),
    /// Add a trial with these values.
    New(Params),
    /// Nothing to do: the budget is spent (or the grid used up).
    Stop,
}

/// A study's database.
pub trait Storage: Send + Sync {
    /// Where it is (`sqlite:PATH`, `postgres://...` without the password).
    fn url(&self) -> String;
    /// The study named `name`: its key and its configuration (JSON), if there is one.
    fn load_study(&self, name: &str) -> Result<Option<(i64, String)>, TuneError>;
    /// The name and configuration of the study whose key is `id`.
    fn study_by_id(&self, id: i64) -> Result<(String, String), TuneError>;
    /// Creates the study `name` with `spec`, or returns the one that exists (several workers
    /// may create it at once).
    fn create_study(&self, name: &str, spec: &str) -> Result<(i64, String), TuneError>;
    /// In one transaction: the study's trials go to `next`, and what it answers is done (a
    /// reclaimed or new trial, owned by `owner` with its heartbeat at `now`).
    fn ask(
        &self,
        study: i64,
        owner: &str,
        now: f64,
        next: &mut dyn FnMut(&[TrialRecord]) -> Ask,
    ) -> Result<Option<TrialRecord>, TuneError>;
    /// Records `value` at `epoch` of `trial` (replacing one reported before, as a resumed
    /// trial does), and its heartbeat.
    fn report(&self, trial: i64, epoch: u32, value: f64, now: f64) -> Result<(), TuneError>;
    /// Ends `trial` in `state` with its objective `value`.
    fn finish(
        &self,
        trial: i64,
        state: TrialState,
        value: Option<f64>,
        message: Option<&str>,
    ) -> Result<(), TuneError>;
    /// Says that the workers of `trials` are alive.
    fn heartbeat(&self, trials: &[i64], now: f64) -> Result<(), TuneError>;
    /// The study's trials, by number.
    fn trials(&self, study: i64) -> Result<Vec<TrialRecord>, TuneError>;
    /// The key of the study `trial` belongs to.
    fn study_of(&self, trial: i64) -> Result<i64, TuneError>;
    /// One trial and the key of its study.
    fn trial(&self, trial: i64) -> Result<(i64, TrialRecord), TuneError> {
        let study = self.study_of(trial)?;
        let found = self.trials(study)?.into_iter().find(|t| t.id == trial);
        found.map(|t| (study, t)).ok_or_else(|| TuneError::Storage {
            url: self.url(),
            reason: format!("no trial with key {trial}"),
        })
    }
}

/// Opens the storage at `url`: `postgres://...` (or `postgresql://`), else an SQLite file
/// (`sqlite:PATH` or a plain path), created if missing.
pub fn open(url: &str) -> Result<Box<dyn Storage>, TuneError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(Box::new(PostgresStorage::connect(url)?));
        #[cfg(not(feature = "postgres"))]
        return Err(TuneError::Storage {
            url: url.into(),
            reason: "this kiln was built without PostgreSQL (feature `postgres`)".into(),
        });
    }
    let path = url.strip_prefix("sqlite:").unwrap_or(url);
    Ok(Box::new(SqliteStorage::open(path)?))
}

/// The tables, in SQL both databases read (`KEY` is each one's auto-numbered key).
fn schema(key: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS studies (
            id {key},
            name TEXT NOT NULL UNIQUE,
            spec TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS trials (
            id {key},
            study_id BIGINT NOT NULL REFERENCES studies(id),
            number BIGINT NOT NULL,
            state TEXT NOT NULL,
            params TEXT NOT NULL,
            value DOUBLE PRECISION,
            owner TEXT NOT NULL,
            heartbeat DOUBLE PRECISION NOT NULL,
            message TEXT,
            UNIQUE (study_id, number)
        );
        CREATE TABLE IF NOT EXISTS trial_values (
            trial_id BIGINT NOT NULL REFERENCES trials(id),
            epoch INTEGER NOT NULL,
            value DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (trial_id, epoch)
        );"
    )
}

/// A `trials` row, before its epochs' values are attached.
struct Row {
    id: i64,
    number: i64,
    state: String,
    params: String,
    value: Option<f64>,
    owner: String,
    heartbeat: f64,
    message: Option<String>,
}

/// A study's `trials` rows and its `(trial_id, epoch, value)` triples.
type Tables = (Vec<Row>, Vec<(i64, i32, f64)>);

/// Records from rows and `(trial_id, epoch, value)` triples; `url` names the database in errors.
fn records(
    url: &str,
    rows: Vec<Row>,
    values: Vec<(i64, i32, f64)>,
) -> Result<Vec<TrialRecord>, TuneError> {
    let mut by_trial: BTreeMap<i64, Vec<(u32, f64)>> = BTreeMap::new();
    for (trial, epoch, value) in values {
        by_trial
            .entry(trial)
            .or_default()
            .push((epoch.max(0) as u32, value));
    }
    rows.into_iter()
        .map(|r| {
            let bad = |reason: String| TuneError::Storage {
                url: url.to_string(),
                reason: format!("trial {}: {reason}", r.number),
            };
            let mut intermediate = by_trial.remove(&r.id).unwrap_or_default();
            intermediate.sort_by_key(|(e, _)| *e);
            Ok(TrialRecord {
                id: r.id,
                number: u64::try_from(r.number).map_err(|e| bad(e.to_string()))?,
                state: r.state.parse().map_err(bad)?,
                params: serde_json::from_str(&r.params).map_err(|e| bad(e.to_string()))?,
                value: r.value,
                intermediate,
                owner: r.owner,
                heartbeat: r.heartbeat,
                message: r.message,
            })
        })
        .collect()
}

/// The study's trial numbers are dense from 0: the next is their count.
fn next_number(trials: &[TrialRecord]) -> i64 {
    trials
        .iter()
        .map(|t| t.number as i64 + 1)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::space::ParamValue;

    /// What every storage must do; run on SQLite here and on a real PostgreSQL server by the
    /// integration test when `KILN_TEST_POSTGRES` names one.
    pub(crate) fn storage_contract(storage: &dyn Storage, name: &str) {
        let (study, spec) = storage.create_study(name, "{\"a\":1}").unwrap();
        assert_eq!(spec, "{\"a\":1}");
        // Created again: the same study, the first spec.
        assert_eq!(storage.create_study(name, "{}").unwrap(), (study, spec));
        assert_eq!(storage.load_study(name).unwrap().unwrap().0, study);
        assert!(storage.load_study("no such study").unwrap().is_none());

        let params: Params = [("lr".to_string(), ParamValue::Float(0.01))].into();
        let first = storage
            .ask(study, "host:1", 10.0, &mut |trials| {
                assert!(trials.is_empty());
                Ask::New(params.clone())
            })
            .unwrap()
            .unwrap();
        assert_eq!((first.number, first.state), (0, TrialState::Running));
        let second = storage
            .ask(study, "host:2", 11.0, &mut |trials| {
                assert_eq!(trials.len(), 1);
                Ask::New(Params::new())
            })
            .unwrap()
            .unwrap();
        assert_eq!(second.number, 1);
        storage.report(first.id, 1, 0.5, 12.0).unwrap();
        storage.report(first.id, 2, 0.4, 13.0).unwrap();
        // A resumed trial reports epoch 2 again: replaced, not doubled.
        storage.report(first.id, 2, 0.3, 14.0).unwrap();
        storage
            .finish(first.id, TrialState::Complete, Some(0.3), None)
            .unwrap();
        storage
            .finish(second.id, TrialState::Failed, None, Some("diverged"))
            .unwrap();
        let trials = storage.trials(study).unwrap();
        assert_eq!(trials.len(), 2);
        assert_eq!(trials[0].intermediate, vec![(1, 0.5), (2, 0.3)]);
        assert_eq!(trials[0].params, params);
        assert_eq!(trials[0].value, Some(0.3));
        assert_eq!(trials[0].heartbeat, 14.0);
        assert_eq!(trials[1].state, TrialState::Failed);
        assert_eq!(trials[1].message.as_deref(), Some("diverged"));
        let (owner_study, one) = storage.trial(first.id).unwrap();
        assert_eq!((owner_study, one.number), (study, 0));

        // A running trial taken over keeps its number and values, with a new owner.
        let third = storage
            .ask(study, "host:3", 20.0, &mut |_| Ask::New(params.clone()))
            .unwrap()
            .unwrap();
        let again = storage
            .ask(study, "host:4", 30.0, &mut |_| Ask::Reclaim(third.id))
            .unwrap()
            .unwrap();
        assert_eq!((again.number, again.owner.as_str()), (2, "host:4"));
        assert_eq!(again.heartbeat, 30.0);
        storage.heartbeat(&[third.id], 40.0).unwrap();
        assert_eq!(storage.trial(third.id).unwrap().1.heartbeat, 40.0);
        assert!(
            storage
                .ask(study, "host:5", 50.0, &mut |_| Ask::Stop)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn sqlite_keeps_the_storage_contract() {
        let dir = std::env::temp_dir().join(format!("kiln-tune-sqlite-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let storage = open(dir.join("study.db").to_str().unwrap()).unwrap();
        storage_contract(storage.as_ref(), "contract");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
