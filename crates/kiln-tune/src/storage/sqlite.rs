//! A study in an SQLite file (embedded: nothing to install or start).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Ask, Row, Storage, Tables, next_number, records, schema};
use crate::TuneError;
use crate::trial::{TrialRecord, TrialState};

/// How long a worker waits for another's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// A study database in one SQLite file; several processes may open it at once.
#[derive(Debug)]
pub struct SqliteStorage {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl SqliteStorage {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, TuneError> {
        let path = path.as_ref().to_path_buf();
        let fail = |e: rusqlite::Error| TuneError::Storage {
            url: format!("sqlite:{}", path.display()),
            reason: e.to_string(),
        };
        let connection = Connection::open(&path).map_err(fail)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
        // Write-ahead logging: readers do not block the worker that writes.
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        connection
            .execute_batch(&schema("INTEGER PRIMARY KEY"))
            .map_err(fail)?;
        Ok(Self {
            path,
            connection: Mutex::new(connection),
        })
    }

    fn fail(&self, e: rusqlite::Error) -> TuneError {
        TuneError::Storage {
            url: self.url(),
            reason: e.to_string(),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, TuneError> {
        let mut connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut connection).map_err(|e| self.fail(e))
    }
}

fn read_trials(c: &Connection, study: i64) -> rusqlite::Result<Tables> {
    let rows = c
        .prepare(
            "SELECT id, number, state, params, value, owner, heartbeat, message FROM trials \
             WHERE study_id = ?1 ORDER BY number",
        )?
        .query_map(params![study], |r| {
            Ok(Row {
                id: r.get(0)?,
                number: r.get(1)?,
                state: r.get(2)?,
                params: r.get(3)?,
                value: r.get(4)?,
                owner: r.get(5)?,
                heartbeat: r.get(6)?,
                message: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<Row>>>()?;
    let values = c
        .prepare(
            "SELECT v.trial_id, v.epoch, v.value FROM trial_values v \
             JOIN trials t ON t.id = v.trial_id WHERE t.study_id = ?1",
        )?
        .query_map(params![study], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, values))
}

impl Storage for SqliteStorage {
    fn url(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn load_study(&self, name: &str) -> Result<Option<(i64, String)>, TuneError> {
        self.with(|c| {
            c.query_row(
                "SELECT id, spec FROM studies WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
    }

    fn study_by_id(&self, id: i64) -> Result<(String, String), TuneError> {
        self.with(|c| {
            c.query_row(
                "SELECT name, spec FROM studies WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }

    fn create_study(&self, name: &str, spec: &str) -> Result<(i64, String), TuneError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO studies (name, spec) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, spec],
            )?;
            let study = tx.query_row(
                "SELECT id, spec FROM studies WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            tx.commit()?;
            Ok(study)
        })
    }

    fn ask(
        &self,
        study: i64,
        owner: &str,
        now: f64,
        next: &mut dyn FnMut(&[TrialRecord]) -> Ask,
    ) -> Result<Option<TrialRecord>, TuneError> {
        let url = self.url();
        let mut connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        let fail = |e: rusqlite::Error| TuneError::Storage {
            url: url.clone(),
            reason: e.to_string(),
        };
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let (rows, values) = read_trials(&tx, study).map_err(fail)?;
        let trials = records(&url, rows, values)?;
        let id = match next(&trials) {
            Ask::Stop => return Ok(None),
            Ask::Reclaim(id) => {
                tx.execute(
                    "UPDATE trials SET owner = ?1, heartbeat = ?2, state = 'running' WHERE id = ?3",
                    params![owner, now, id],
                )
                .map_err(fail)?;
                id
            }
            Ask::New(params) => {
                let params = serde_json::to_string(&params).expect("values serialise");
                tx.execute(
                    "INSERT INTO trials (study_id, number, state, params, owner, heartbeat) \
                     VALUES (?1, ?2, 'running', ?3, ?4, ?5)",
                    params![study, next_number(&trials), params, owner, now],
                )
                .map_err(fail)?;
                tx.last_insert_rowid()
            }
        };
        let (rows, values) = read_trials(&tx, study).map_err(fail)?;
        tx.commit().map_err(fail)?;
        let trial = records(&url, rows, values)?
            .into_iter()
            .find(|t| t.id == id);
        Ok(trial)
    }

    fn report(&self, trial: i64, epoch: u32, value: f64, now: f64) -> Result<(), TuneError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO trial_values (trial_id, epoch, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (trial_id, epoch) DO UPDATE SET value = excluded.value",
                params![trial, epoch, value],
            )?;
            tx.execute(
                "UPDATE trials SET heartbeat = ?1 WHERE id = ?2",
                params![now, trial],
            )?;
            tx.commit()
        })
    }

    fn finish(
        &self,
        trial: i64,
        state: TrialState,
        value: Option<f64>,
        message: Option<&str>,
    ) -> Result<(), TuneError> {
        self.with(|c| {
            c.execute(
                "UPDATE trials SET state = ?1, value = ?2, message = ?3 WHERE id = ?4",
                params![state.name(), value, message, trial],
            )
            .map(|_| ())
        })
    }

    fn heartbeat(&self, trials: &[i64], now: f64) -> Result<(), TuneError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for id in trials {
                tx.execute(
                    "UPDATE trials SET heartbeat = ?1 WHERE id = ?2",
                    params![now, id],
                )?;
            }
            tx.commit()
        })
    }

    fn trials(&self, study: i64) -> Result<Vec<TrialRecord>, TuneError> {
        let (rows, values) = self.with(|c| read_trials(c, study))?;
        records(&self.url(), rows, values)
    }

    fn study_of(&self, trial: i64) -> Result<i64, TuneError> {
        self.with(|c| {
            c.query_row(
                "SELECT study_id FROM trials WHERE id = ?1",
                params![trial],
                |r| r.get(0),
            )
        })
    }
}
