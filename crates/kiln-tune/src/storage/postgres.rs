//! A study in a PostgreSQL server, for workers on several machines.

use std::sync::Mutex;

use postgres::{Client, NoTls};

use super::{Ask, Row, Storage, Tables, next_number, records, schema};
use crate::TuneError;
use crate::trial::{TrialRecord, TrialState};

/// The advisory lock taken while the tables are created (any number fixed for kiln).
const SCHEMA_LOCK: i64 = 0x6b69_6c6e;

/// A study database on a PostgreSQL server (`postgres://user:password@host/database`).
pub struct PostgresStorage {
    url: String,
    client: Mutex<Client>,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("url", &self.url)
            .finish()
    }
}

/// The server's own message (postgres::Error's Display is only `db error`).
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// `url` without its password.
fn shown(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user_info = &url[scheme + 3..at];
            match user_info.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl PostgresStorage {
    /// Connects to the server at `url` (no TLS: a server on a trusted network or loopback)
    /// and creates kiln's tables if they are missing.
    pub fn connect(url: &str) -> Result<Self, TuneError> {
        let shown = shown(url);
        let fail = |e: postgres::Error| TuneError::Storage {
            url: shown.clone(),
            reason: describe(&e),
        };
        let mut client = Client::connect(url, NoTls).map_err(fail)?;
        let mut tx = client.transaction().map_err(fail)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(fail)?;
        tx.batch_execute(&schema("BIGSERIAL PRIMARY KEY"))
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(Self {
            url: shown,
            client: Mutex::new(client),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, TuneError> {
        let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut client).map_err(|e| TuneError::Storage {
            url: self.url.clone(),
            reason: describe(&e),
        })
    }
}

fn read_trials(
    c: &mut impl postgres::GenericClient,
    study: i64,
) -> Result<Tables, postgres::Error> {
    let rows = c
        .query(
            "SELECT id, number, state, params, value, owner, heartbeat, message FROM trials \
             WHERE study_id = $1 ORDER BY number",
            &[&study],
        )?
        .into_iter()
        .map(|r| Row {
            id: r.get(0),
            number: r.get(1),
            state: r.get(2),
            params: r.get(3),
            value: r.get(4),
            owner: r.get(5),
            heartbeat: r.get(6),
            message: r.get(7),
        })
        .collect();
    let values = c
        .query(
            "SELECT v.trial_id, v.epoch, v.value FROM trial_values v \
             JOIN trials t ON t.id = v.trial_id WHERE t.study_id = $1",
            &[&study],
        )?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    Ok((rows, values))
}

impl Storage for PostgresStorage {
    fn url(&self) -> String {
        self.url.clone()
    }

    fn load_study(&self, name: &str) -> Result<Option<(i64, String)>, TuneError> {
        self.with(|c| {
            let row = c.query_opt("SELECT id, spec FROM studies WHERE name = $1", &[&name])?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
    }

    fn study_by_id(&self, id: i64) -> Result<(String, String), TuneError> {
        self.with(|c| {
            let r = c.query_one("SELECT name, spec FROM studies WHERE id = $1", &[&id])?;
            Ok((r.get(0), r.get(1)))
        })
    }

    fn create_study(&self, name: &str, spec: &str) -> Result<(i64, String), TuneError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO studies (name, spec) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &spec],
            )?;
            let r = c.query_one("SELECT id, spec FROM studies WHERE name = $1", &[&name])?;
            Ok((r.get(0), r.get(1)))
        })
    }

    fn ask(
        &self,
        study: i64,
        owner: &str,
        now: f64,
        next: &mut dyn FnMut(&[TrialRecord]) -> Ask,
    ) -> Result<Option<TrialRecord>, TuneError> {
        let fail = |e: postgres::Error| TuneError::Storage {
            url: self.url.clone(),
            reason: describe(&e),
        };
        let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let mut tx = client.transaction().map_err(fail)?;
        // One worker at a time decides the study's next trial.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&study])
            .map_err(fail)?;
        let (rows, values) = read_trials(&mut tx, study).map_err(fail)?;
        let trials = records(&self.url, rows, values)?;
        let id: i64 = match next(&trials) {
            Ask::Stop => return Ok(None),
            Ask::Reclaim(id) => {
                tx.execute(
                    "UPDATE trials SET owner = $1, heartbeat = $2, state = 'running' WHERE id = $3",
                    &[&owner, &now, &id],
                )
                .map_err(fail)?;
                id
            }
            Ask::New(params) => {
                let params = serde_json::to_string(&params).expect("values serialise");
                tx.query_one(
                    "INSERT INTO trials (study_id, number, state, params, owner, heartbeat) \
                     VALUES ($1, $2, 'running', $3, $4, $5) RETURNING id",
                    &[&study, &next_number(&trials), &params, &owner, &now],
                )
                .map_err(fail)?
                .get(0)
            }
        };
        let (rows, values) = read_trials(&mut tx, study).map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(records(&self.url, rows, values)?
            .into_iter()
            .find(|t| t.id == id))
    }

    fn report(&self, trial: i64, epoch: u32, value: f64, now: f64) -> Result<(), TuneError> {
        let epoch = i32::try_from(epoch).unwrap_or(i32::MAX);
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO trial_values (trial_id, epoch, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (trial_id, epoch) DO UPDATE SET value = EXCLUDED.value",
                &[&trial, &epoch, &value],
            )?;
            tx.execute(
                "UPDATE trials SET heartbeat = $1 WHERE id = $2",
                &[&now, &trial],
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
                "UPDATE trials SET state = $1, value = $2, message = $3 WHERE id = $4",
                &[&state.name(), &value, &message, &trial],
            )
            .map(|_| ())
        })
    }

    fn heartbeat(&self, trials: &[i64], now: f64) -> Result<(), TuneError> {
        self.with(|c| {
            c.execute(
                "UPDATE trials SET heartbeat = $1 WHERE id = ANY($2)",
                &[&now, &trials],
            )
            .map(|_| ())
        })
    }

    fn trials(&self, study: i64) -> Result<Vec<TrialRecord>, TuneError> {
        let (rows, values) = self.with(|c| read_trials(c, study))?;
        records(&self.url, rows, values)
    }

    fn study_of(&self, trial: i64) -> Result<i64, TuneError> {
        self.with(|c| {
            c.query_one("SELECT study_id FROM trials WHERE id = $1", &[&trial])
                .map(|r| r.get(0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            shown("postgres://kiln:secret@localhost:5432/studies"),
            "postgres://kiln:***@localhost:5432/studies"
        );
        assert_eq!(shown("postgres://localhost/db"), "postgres://localhost/db");
    }

    /// The storage contract on a real server, when `KILN_TEST_POSTGRES` names one (.ci/run
    /// starts one); skipped, saying so, otherwise.
    #[test]
    fn postgres_keeps_the_storage_contract() {
        let Ok(url) = std::env::var("KILN_TEST_POSTGRES") else {
            eprintln!("KILN_TEST_POSTGRES is not set: no PostgreSQL server to test against");
            return;
        };
        let storage = PostgresStorage::connect(&url).unwrap();
        let name = format!("contract-{}-{}", std::process::id(), crate::study::now());
        super::super::tests::storage_contract(&storage, &name);
    }
}
