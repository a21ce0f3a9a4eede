//! The events table as a local SQLite database ([`SqliteEvents`]), the default store of
//! `bridge serve` (`.bridge/events.db`). Its columns are those of `schemas/bridge_events.sql`
//! ([`EVENT_COLUMNS`](crate::sync::local::EVENT_COLUMNS)) plus a `seq` that orders events by
//! submission; `primary_keys` is a JSON array of names and timestamps are integer microseconds
//! since the Unix epoch (UTC).
//!
//! # Flat cost
//!
//! Every operation is one indexed statement: claims and counts read the `(status, seq)` index, so
//! they touch only pending or running rows however long the history grows; look-ups read the
//! `event_id` index. Finished events are deleted after the retention period
//! ([`SqliteEvents::prune`]).
//!
//! # Order
//!
//! Sync events of one target table are applied one at a time, in submission order: a pending
//! sync is not claimed while a sync of the same target table (compared case-insensitively) is
//! running, so the events of different tables are what several workers apply side by side. RUN
//! events are not held back (their pipelines take the output locks they need).
//!
//! # Atomic claims
//!
//! A claim is one statement, `UPDATE ... SET status = 'running' WHERE seq = (the oldest pending
//! event whose target has no running sync) AND status = 'pending' RETURNING ...`. SQLite runs a write statement under the database's
//! write lock, from the read of the oldest pending event to the update, so of several servers
//! sharing the file (WAL mode, a 5 s busy timeout) exactly one claims each event.
//! [`finish`](EventStore::finish) is `UPDATE ... WHERE event_id = ? AND status = 'running' AND
//! claimed_by = worker`, so only the current claimer records an outcome. Values are always bound
//! parameters.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::{Type, Value};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::sync::event::{
    Event, EventRowError, EventStatus, NewEvent, Outcome, check_worker, parse_event_id,
};
use crate::sync::store::{Claim, EventStore};
use crate::sync::{LocalDeltaEvents, Result, SyncError};

/// The version of the schema, in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id      TEXT NOT NULL UNIQUE,
    operation     TEXT NOT NULL,
    source_table  TEXT NOT NULL,
    target_table  TEXT NOT NULL,
    primary_keys  TEXT,
    filter        TEXT,
    status        TEXT NOT NULL,
    rows_affected INTEGER,
    error_message TEXT,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    completed_at  INTEGER,
    created_by    TEXT,
    claimed_by    TEXT,
    pipeline      TEXT,
    country       TEXT,
    params        TEXT,
    job_id        TEXT
);
CREATE INDEX IF NOT EXISTS events_status_seq ON events (status, seq);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// The columns an event is read from, in [`event_of`]'s order.
const COLUMNS: &str = "event_id, operation, source_table, target_table, primary_keys, filter, \
     status, rows_affected, error_message, created_at, started_at, completed_at, created_by, \
     claimed_by, pipeline, country, params, job_id";

/// The `meta` key recording that the old default Delta table was imported.
const IMPORTED_KEY: &str = "imported_delta_table";

/// How many times a claim that found nothing looks again while events are pending.
const CLAIM_ROUNDS: usize = 4;

/// The events table as a SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteEvents {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    location: String,
    conn: Mutex<Connection>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fail(&self, e: impl std::fmt::Display) -> SyncError {
        SyncError::store(&self.location, e)
    }
}

impl SqliteEvents {
    /// Opens the database at `path`, creating its folder, the file and the schema when missing.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteEvents> {
        let path = path.as_ref().to_path_buf();
        let location = path.display().to_string();
        let fail = |e: &dyn std::fmt::Display| SyncError::store(&location, e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
        let mut conn = Connection::open(&path).map_err(|e| fail(&e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| fail(&e))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| fail(&e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %location, %mode, "SQLite did not switch to WAL mode");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| fail(&e))?;
        migrate(&mut conn, &location)?;
        Ok(SqliteEvents {
            inner: Arc::new(Inner {
                path,
                location,
                conn: Mutex::new(conn),
            }),
        })
    }

    /// Opens the default store at `path` and, the first time, imports the events of the old
    /// default Delta table at `old_table` when it exists (see [`SqliteEvents::import`]).
    pub async fn open_default(path: &Path, old_table: &Path) -> Result<SqliteEvents> {
        let path = path.to_path_buf();
        let store = tokio::task::spawn_blocking(move || SqliteEvents::open(path))
            .await
            .map_err(|e| SyncError::store("events database", e))??;
        if !old_table.join("_delta_log").is_dir() || store.imported().await? {
            return Ok(store);
        }
        let old = LocalDeltaEvents::open(old_table).await?;
        let events = old.all_events().await?;
        let n = store.import(events).await?;
        tracing::info!(
            from = %old_table.display(),
            to = %store.inner.location,
            events = n,
            "imported the events of the old Delta events table"
        );
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether an import was recorded.
    async fn imported(&self) -> Result<bool> {
        self.blocking(|inner| {
            inner
                .lock()
                .query_row(
                    "SELECT 1 FROM meta WHERE key = ?1",
                    params![IMPORTED_KEY],
                    |_| Ok(()),
                )
                .optional()
                .map(|found| found.is_some())
                .map_err(|e| inner.fail(e))
        })
        .await
    }

    /// Stores `events` as they are (ids, statuses, timestamps), oldest first, skipping those
    /// already here, and records that an import happened; returns how many were added.
    pub async fn import(&self, mut events: Vec<Event>) -> Result<u64> {
        events.sort_by(|a, b| (a.created_at, &a.event_id).cmp(&(b.created_at, &b.event_id)));
        self.blocking(move |inner| {
            let mut conn = inner.lock();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| inner.fail(e))?;
            let mut added = 0u64;
            {
                let mut stmt = tx
                    .prepare(&format!(
                        "INSERT OR IGNORE INTO events ({COLUMNS}) VALUES \
                         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
                    ))
                    .map_err(|e| inner.fail(e))?;
                for e in &events {
                    added += u64::try_from(insert(&mut stmt, e).map_err(|e| inner.fail(e))?)
                        .unwrap_or(0);
                }
            }
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![IMPORTED_KEY, micros(now()).to_string()],
            )
            .map_err(|e| inner.fail(e))?;
            tx.commit().map_err(|e| inner.fail(e))?;
            Ok(added)
        })
        .await
    }

    /// Runs `f` on the blocking pool.
    /// `UPDATE events SET {set}` of an event still running under `worker`; `values` are bound
    /// to the placeholders of `set` (`?1`...), the event and the worker after them. Whether the
    /// event changed (`false`: it is no longer `worker`'s).
    async fn update_claimed(
        &self,
        event_id: &str,
        worker: &str,
        set: &'static str,
        mut values: Vec<Value>,
    ) -> Result<bool> {
        check_worker(worker)?;
        let id = parse_event_id(event_id)?;
        let n = values.len();
        let sql = format!(
            "UPDATE events SET {set} WHERE event_id = ?{} AND status = ?{} AND claimed_by = ?{}",
            n + 1,
            n + 2,
            n + 3
        );
        values.extend([
            Value::from(id),
            Value::from(EventStatus::Running.as_str().to_string()),
            Value::from(worker.to_string()),
        ]);
        self.blocking(move |inner| {
            let changed = inner
                .lock()
                .prepare_cached(&sql)
                .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(values)))
                .map_err(|e| inner.fail(e))?;
            Ok(changed == 1)
        })
        .await
    }

    /// Validates and stores a pending event under `event_id` with `insert` (`INSERT`, or
    /// `INSERT OR IGNORE` which stores nothing when the id exists: then [`SyncError::Duplicate`]).
    async fn store_new(
        &self,
        event_id: &str,
        event: NewEvent,
        insert_sql: &'static str,
    ) -> Result<Event> {
        event.validate()?;
        let stored = Event {
            created_at: now(),
            ..event.pending(&parse_event_id(event_id)?)
        };
        let row = stored.clone();
        self.blocking(move |inner| {
            let conn = inner.lock();
            let mut stmt = conn
                .prepare_cached(&format!(
                    "{insert_sql} INTO events ({COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
                ))
                .map_err(|e| inner.fail(e))?;
            match insert(&mut stmt, &row).map_err(|e| inner.fail(e))? {
                0 => Err(SyncError::Duplicate(row.event_id.clone())),
                _ => Ok(()),
            }
        })
        .await?;
        Ok(stored)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| self.inner.fail(e))?
    }

    /// Events matching `sql` (a statement selecting [`COLUMNS`]) with `values` bound.
    async fn query(&self, sql: String, values: Vec<rusqlite::types::Value>) -> Result<Vec<Event>> {
        self.blocking(move |inner| {
            let conn = inner.lock();
            let mut stmt = conn.prepare_cached(&sql).map_err(|e| inner.fail(e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(values), event_of)
                .map_err(|e| inner.fail(e))?;
            rows.collect::<rusqlite::Result<Vec<Event>>>()
                .map_err(|e| inner.fail(e))
        })
        .await
    }
}

/// Brings the schema to [`SCHEMA_VERSION`] in one write transaction.
fn migrate(conn: &mut Connection, location: &str) -> Result<()> {
    let fail = |e: rusqlite::Error| SyncError::store(location, e);
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(fail)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(fail)?;
    if version > SCHEMA_VERSION {
        return Err(SyncError::store(
            location,
            format!(
                "written by a newer bridge (schema {version}, this one knows {SCHEMA_VERSION}); \
                 run that version, or move the file away to start a new history"
            ),
        ));
    }
    if version < 1 {
        tx.execute_batch(SCHEMA).map_err(fail)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(fail)?;
    tx.commit().map_err(fail)
}

/// Inserts one event (the 18 columns of [`COLUMNS`]).
fn insert(stmt: &mut rusqlite::Statement<'_>, e: &Event) -> rusqlite::Result<usize> {
    let keys = serde_json::to_string(&e.primary_keys)
        .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
    stmt.execute(params![
        e.event_id,
        e.operation.as_str(),
        e.source_table,
        e.target_table,
        keys,
        e.filter,
        e.status.as_str(),
        e.rows_affected,
        e.error_message,
        micros(e.created_at),
        e.started_at.map(micros),
        e.completed_at.map(micros),
        e.created_by,
        e.claimed_by,
        e.pipeline,
        e.country,
        e.params,
        e.job_id,
    ])
}

/// A row of [`COLUMNS`] as an event.
fn event_of(row: &Row<'_>) -> rusqlite::Result<Event> {
    let bad = |idx: usize, ty: Type, e: EventRowError| {
        rusqlite::Error::FromSqlConversionFailure(idx, ty, Box::new(e))
    };
    let time = |idx: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        let v: Option<i64> = row.get(idx)?;
        Ok(v.and_then(DateTime::from_timestamp_micros))
    };
    let keys: Option<String> = row.get(4)?;
    let primary_keys = match keys {
        None => Vec::new(),
        Some(json) => serde_json::from_str(&json)
            .map_err(|source| bad(4, Type::Text, EventRowError::Keys { json, source }))?,
    };
    let operation: String = row.get(1)?;
    let status: String = row.get(6)?;
    Ok(Event {
        event_id: row.get(0)?,
        operation: operation
            .parse()
            .map_err(|e| bad(1, Type::Text, EventRowError::Name(e)))?,
        source_table: row.get(2)?,
        target_table: row.get(3)?,
        primary_keys,
        filter: row.get(5)?,
        status: status
            .parse()
            .map_err(|e| bad(6, Type::Text, EventRowError::Name(e)))?,
        rows_affected: row.get(7)?,
        error_message: row.get(8)?,
        created_at: time(9)?
            .ok_or_else(|| bad(9, Type::Integer, EventRowError::Null("created_at")))?,
        started_at: time(10)?,
        completed_at: time(11)?,
        created_by: row.get(12)?,
        claimed_by: row.get(13)?,
        pipeline: row.get(14)?,
        country: row.get(15)?,
        params: row.get(16)?,
        job_id: row.get(17)?,
    })
}

/// Now, at the table's precision (microseconds), so stored and returned values are equal.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

#[async_trait]
impl EventStore for SqliteEvents {
    async fn submit_as(&self, event_id: &str, event: NewEvent) -> Result<Event> {
        self.store_new(event_id, event, "INSERT").await
    }

    async fn submit_once(&self, event_id: &str, event: NewEvent) -> Result<Option<Event>> {
        match self.store_new(event_id, event, "INSERT OR IGNORE").await {
            Ok(stored) => Ok(Some(stored)),
            Err(SyncError::Duplicate(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get(&self, event_id: &str) -> Result<Option<Event>> {
        let Ok(id) = parse_event_id(event_id) else {
            return Ok(None);
        };
        Ok(self
            .query(
                format!("SELECT {COLUMNS} FROM events WHERE event_id = ?1"),
                vec![id.into()],
            )
            .await?
            .pop())
    }

    async fn list(&self, status: Option<EventStatus>, limit: usize) -> Result<Vec<Event>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match status {
            Some(status) => {
                self.query(
                    format!(
                        "SELECT {COLUMNS} FROM events WHERE status = ?1 ORDER BY seq DESC LIMIT ?2"
                    ),
                    vec![status.as_str().to_string().into(), limit.into()],
                )
                .await
            }
            None => {
                self.query(
                    format!("SELECT {COLUMNS} FROM events ORDER BY seq DESC LIMIT ?1"),
                    vec![limit.into()],
                )
                .await
            }
        }
    }

    async fn claim(&self, worker: &str, what: Claim) -> Result<Option<Event>> {
        check_worker(worker)?;
        let worker = worker.to_string();
        let runs = what == Claim::Any;
        self.blocking(move |inner| {
            let conn = inner.lock();
            let mut claim = conn
                .prepare_cached(&format!(
                    "UPDATE events SET status = ?1, started_at = ?2, claimed_by = ?3 \
                     WHERE seq = (SELECT seq FROM events AS e WHERE e.status = ?4 \
                       AND (?5 OR e.operation <> 'RUN') \
                       AND (e.operation = 'RUN' OR NOT EXISTS (SELECT 1 FROM events AS r \
                         WHERE r.status = ?1 AND r.operation <> 'RUN' \
                         AND lower(r.target_table) = lower(e.target_table))) \
                     ORDER BY e.seq LIMIT 1) \
                     AND status = ?4 RETURNING {COLUMNS}"
                ))
                .map_err(|e| inner.fail(e))?;
            for _ in 0..CLAIM_ROUNDS {
                let claimed = claim
                    .query_row(
                        params![
                            EventStatus::Running.as_str(),
                            micros(now()),
                            worker,
                            EventStatus::Pending.as_str(),
                            runs
                        ],
                        event_of,
                    )
                    .optional()
                    .map_err(|e| inner.fail(e))?;
                if claimed.is_some() {
                    return Ok(claimed);
                }
                // The statement runs under the write lock, so nothing pending is the usual
                // reason; look once more only if an event is pending now.
                let pending: bool = conn
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM events WHERE status = ?1)",
                        params![EventStatus::Pending.as_str()],
                        |row| row.get(0),
                    )
                    .map_err(|e| inner.fail(e))?;
                if !pending {
                    break;
                }
            }
            Ok(None)
        })
        .await
    }

    async fn reclaim_stale(&self, worker: &str, older_than: Duration) -> Result<Vec<Event>> {
        check_worker(worker)?;
        let lease = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let cutoff = now()
            .checked_sub_signed(lease)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let worker = worker.to_string();
        self.blocking(move |inner| {
            let running = EventStatus::Running.as_str();
            let mut conn = inner.lock();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| inner.fail(e))?;
            let previous: Vec<(String, Option<String>)> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT event_id, claimed_by FROM events \
                         WHERE status = ?1 AND started_at < ?2 ORDER BY seq",
                    )
                    .map_err(|e| inner.fail(e))?;
                stmt.query_map(params![running, micros(cutoff)], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .and_then(Iterator::collect)
                .map_err(|e| inner.fail(e))?
            };
            if previous.is_empty() {
                return Ok(Vec::new());
            }
            let taken: Vec<Event> = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "UPDATE events SET started_at = ?1, claimed_by = ?2 \
                         WHERE status = ?3 AND started_at < ?4 RETURNING {COLUMNS}"
                    ))
                    .map_err(|e| inner.fail(e))?;
                stmt.query_map(
                    params![micros(now()), worker, running, micros(cutoff)],
                    event_of,
                )
                .and_then(Iterator::collect)
                .map_err(|e| inner.fail(e))?
            };
            tx.commit().map_err(|e| inner.fail(e))?;
            let mut taken = taken;
            taken.sort_by(|a, b| (a.created_at, &a.event_id).cmp(&(b.created_at, &b.event_id)));
            for event in &taken {
                let before = previous
                    .iter()
                    .find(|(id, _)| *id == event.event_id)
                    .and_then(|(_, by)| by.as_deref());
                tracing::info!(
                    event_id = %event.event_id,
                    previous = before.unwrap_or("?"),
                    "reclaimed a stale event"
                );
            }
            Ok(taken)
        })
        .await
    }

    async fn finish(&self, event_id: &str, worker: &str, outcome: &Outcome) -> Result<bool> {
        let (status, rows, error) = outcome.stored();
        self.update_claimed(
            event_id,
            worker,
            "status = ?1, rows_affected = ?2, error_message = ?3, job_id = ?4, completed_at = ?5",
            vec![
                Value::from(status.as_str().to_string()),
                Value::from(rows),
                Value::from(error.map(str::to_string)),
                Value::from(outcome.job_id().map(str::to_string)),
                Value::from(micros(now())),
            ],
        )
        .await
    }

    async fn heartbeat(&self, event_id: &str, worker: &str) -> Result<bool> {
        self.update_claimed(
            event_id,
            worker,
            "started_at = ?1",
            vec![Value::from(micros(now()))],
        )
        .await
    }

    async fn pending_count(&self) -> Result<u64> {
        self.blocking(|inner| {
            let n: i64 = inner
                .lock()
                .prepare_cached("SELECT COUNT(*) FROM events WHERE status = ?1")
                .and_then(|mut s| {
                    s.query_row(params![EventStatus::Pending.as_str()], |row| row.get(0))
                })
                .map_err(|e| inner.fail(e))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn oldest_pending(&self) -> Result<Option<DateTime<Utc>>> {
        self.blocking(|inner| {
            let at: Option<i64> = inner
                .lock()
                .prepare_cached(
                    "SELECT created_at FROM events WHERE status = ?1 ORDER BY seq LIMIT 1",
                )
                .and_then(|mut s| {
                    s.query_row(params![EventStatus::Pending.as_str()], |row| row.get(0))
                        .optional()
                })
                .map_err(|e| inner.fail(e))?;
            Ok(at.and_then(DateTime::from_timestamp_micros))
        })
        .await
    }

    /// Deletes completed and failed events that finished before `finished_before`; pending and
    /// running events are kept. Returns how many were deleted.
    async fn prune(&self, finished_before: DateTime<Utc>) -> Result<u64> {
        self.blocking(move |inner| {
            let n = inner
                .lock()
                .execute(
                    "DELETE FROM events WHERE status IN (?1, ?2) AND completed_at < ?3",
                    params![
                        EventStatus::Completed.as_str(),
                        EventStatus::Failed.as_str(),
                        micros(finished_before)
                    ],
                )
                .map_err(|e| inner.fail(e))?;
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
        .await
    }

    fn watch_path(&self) -> Option<PathBuf> {
        Some(self.inner.path.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::sync::event::Operation;

    fn request(n: usize) -> NewEvent {
        NewEvent {
            operation: Operation::Upsert,
            source_table: "main.sales.results".into(),
            target_table: "dbo.Results".into(),
            primary_keys: vec!["id".into(), format!("k{n}")],
            filter: Some("amount > 1".into()),
            created_by: Some("job".into()),
            pipeline: None,
            country: None,
            params: None,
        }
    }

    fn store_in(dir: &tempfile::TempDir) -> SqliteEvents {
        SqliteEvents::open(dir.path().join("sub").join("events.db")).unwrap()
    }

    #[tokio::test]
    async fn events_round_trip_and_claims_go_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        assert_eq!(store.pending_count().await.unwrap(), 0);
        assert_eq!(store.oldest_pending().await.unwrap(), None);
        let first = store.submit(request(1)).await.unwrap();
        let second = store.submit(request(2)).await.unwrap();
        let id = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
        let third = store.submit_as(id, request(3)).await.unwrap();
        assert_eq!(third.event_id, id.to_lowercase());
        let e = store.submit_as("job-7", request(4)).await.unwrap_err();
        assert_eq!(e.field(), Some("event_id"), "{e}");
        assert!(
            store.submit_as(id, request(5)).await.is_err(),
            "ids are unique"
        );
        assert_eq!(store.get(&first.event_id).await.unwrap().unwrap(), first);
        assert_eq!(store.get(id).await.unwrap().unwrap(), third);
        assert_eq!(store.get("not-a-uuid").await.unwrap(), None);
        assert_eq!(store.pending_count().await.unwrap(), 3);
        assert_eq!(
            store.oldest_pending().await.unwrap(),
            Some(first.created_at)
        );

        let claimed = store.claim_next("w1").await.unwrap().unwrap();
        assert_eq!(claimed.event_id, first.event_id);
        assert_eq!(claimed.status, EventStatus::Running);
        assert_eq!(claimed.claimed_by.as_deref(), Some("w1"));
        assert!(claimed.started_at.is_some());
        assert_eq!(store.get(&first.event_id).await.unwrap().unwrap(), claimed);
        assert_eq!(store.pending_count().await.unwrap(), 2);
        assert_eq!(
            store.oldest_pending().await.unwrap(),
            Some(second.created_at)
        );

        // Only the claimer may finish it, once.
        let done = Outcome::Completed {
            rows_affected: 7,
            job_id: Some("job-1".into()),
        };
        assert!(!store.finish(&first.event_id, "w2", &done).await.unwrap());
        assert!(store.finish(&first.event_id, "w1", &done).await.unwrap());
        assert!(!store.finish(&first.event_id, "w1", &done).await.unwrap());
        let finished = store.get(&first.event_id).await.unwrap().unwrap();
        assert_eq!(finished.status, EventStatus::Completed);
        assert_eq!(finished.rows_affected, Some(7));
        assert_eq!(finished.job_id.as_deref(), Some("job-1"));
        assert!(finished.completed_at.is_some());
        // A pending event cannot be finished.
        let failed = Outcome::failed("boom");
        assert!(!store.finish(&second.event_id, "w1", &failed).await.unwrap());

        let next = store.claim_next("w1").await.unwrap().unwrap();
        assert_eq!(next.event_id, second.event_id);
        assert!(store.finish(&next.event_id, "w1", &failed).await.unwrap());
        let next = store.get(&second.event_id).await.unwrap().unwrap();
        assert_eq!(
            (
                next.status,
                next.error_message.as_deref(),
                next.rows_affected
            ),
            (EventStatus::Failed, Some("boom"), None)
        );
        assert_eq!(
            store.claim_next("w1").await.unwrap().unwrap().event_id,
            third.event_id
        );
        assert!(store.claim_next("w1").await.unwrap().is_none());
        assert!(store.claim_next("").await.is_err(), "worker is checked");

        let listed: Vec<String> = store
            .list(None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        assert_eq!(
            listed,
            [&third.event_id, &second.event_id, &first.event_id].map(String::clone),
            "newest first"
        );
        assert_eq!(store.list(None, 2).await.unwrap().len(), 2);
        let failed = store.list(Some(EventStatus::Failed), 10).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].event_id, second.event_id);
        assert!(
            store
                .list(Some(EventStatus::Pending), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn the_syncs_of_one_target_are_claimed_one_at_a_time_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let first = store.submit(request(1)).await.unwrap();
        let same_target = store
            .submit(NewEvent {
                target_table: "DBO.results".into(),
                ..request(2)
            })
            .await
            .unwrap();
        let other_target = store
            .submit(NewEvent {
                target_table: "dbo.Other".into(),
                ..request(3)
            })
            .await
            .unwrap();
        let claim = |w: &'static str| {
            let store = store.clone();
            async move { store.claim_next(w).await.unwrap().map(|e| e.event_id) }
        };
        assert_eq!(claim("w1").await, Some(first.event_id.clone()));
        // dbo.Results has a sync running: the next event of another table is claimed instead.
        assert_eq!(claim("w2").await, Some(other_target.event_id.clone()));
        assert_eq!(
            claim("w3").await,
            None,
            "held back while its target is busy"
        );
        assert_eq!(store.pending_count().await.unwrap(), 1);
        assert!(
            store
                .finish(&first.event_id, "w1", &Outcome::completed(1))
                .await
                .unwrap()
        );
        assert_eq!(claim("w3").await, Some(same_target.event_id));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claimers_on_one_file_claim_each_event_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = store_in(&dir);
        let b = store_in(&dir);
        let n = 60;
        let mut submitted = HashSet::new();
        for i in 0..n {
            let store = if i % 2 == 0 { &a } else { &b };
            let event = NewEvent {
                target_table: format!("dbo.Results{}", i % 5),
                ..request(i)
            };
            submitted.insert(store.submit(event).await.unwrap().event_id);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..8 {
            // Each task its own connection half the time: both instances, several per file.
            let store = match t % 3 {
                0 => a.clone(),
                1 => b.clone(),
                _ => store_in(&dir),
            };
            tasks.spawn(async move {
                let worker = format!("w{t}");
                let mut mine = Vec::new();
                while let Some(e) = store.claim_next(&worker).await.unwrap() {
                    assert_eq!(e.claimed_by.as_deref(), Some(worker.as_str()));
                    assert!(
                        store
                            .finish(&e.event_id, &worker, &Outcome::completed(1))
                            .await
                            .unwrap()
                    );
                    mine.push(e.event_id);
                }
                mine
            });
        }
        let mut claimed = Vec::new();
        while let Some(mine) = tasks.join_next().await {
            claimed.extend(mine.unwrap());
        }
        assert_eq!(claimed.len(), n, "every event claimed exactly once");
        assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), submitted);
        assert_eq!(a.pending_count().await.unwrap(), 0);
        assert_eq!(
            b.list(Some(EventStatus::Completed), 1000)
                .await
                .unwrap()
                .len(),
            n
        );
    }

    #[tokio::test]
    async fn stale_claims_are_taken_over_after_the_lease_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let event = store.submit(request(1)).await.unwrap();
        store.claim_next("crashed").await.unwrap().unwrap();
        assert!(
            store
                .reclaim_stale("w2", Duration::from_secs(600))
                .await
                .unwrap()
                .is_empty()
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
        let taken = store
            .reclaim_stale("w2", Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].event_id, event.event_id);
        assert_eq!(taken[0].claimed_by.as_deref(), Some("w2"));
        assert_eq!(taken[0].status, EventStatus::Running);
        // Just taken over: not stale again at once.
        assert!(
            store
                .reclaim_stale("w3", Duration::from_secs(1))
                .await
                .unwrap()
                .is_empty()
        );
        let done = Outcome::completed(1);
        assert!(
            !store
                .finish(&event.event_id, "crashed", &done)
                .await
                .unwrap()
        );
        assert!(store.finish(&event.event_id, "w2", &done).await.unwrap());
        // Finished events are never reclaimed.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            store
                .reclaim_stale("w3", Duration::from_millis(1))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn prune_deletes_only_events_finished_before_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(store.submit(request(i)).await.unwrap().event_id);
        }
        // 0 completed, 1 failed, 2 running, 3 pending.
        for (i, outcome) in [Outcome::completed(1), Outcome::failed("x")]
            .iter()
            .enumerate()
        {
            let e = store.claim_next("w").await.unwrap().unwrap();
            assert_eq!(e.event_id, ids[i]);
            assert!(store.finish(&e.event_id, "w", outcome).await.unwrap());
        }
        store.claim_next("w").await.unwrap().unwrap();
        let hour_ago = Utc::now() - chrono::Duration::hours(1);
        assert_eq!(store.prune(hour_ago).await.unwrap(), 0, "recent rows stay");
        assert_eq!(store.list(None, 10).await.unwrap().len(), 4);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.prune(Utc::now()).await.unwrap(), 2);
        let left: Vec<(String, EventStatus)> = store
            .list(None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.event_id, e.status))
            .collect();
        assert_eq!(
            left,
            [
                (ids[3].clone(), EventStatus::Pending),
                (ids[2].clone(), EventStatus::Running)
            ]
        );
        assert_eq!(store.pending_count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn the_old_default_delta_table_is_imported_once() {
        let dir = tempfile::tempdir().unwrap();
        let old_path = dir.path().join(".bridge/events/bridge_events");
        let db = dir.path().join(".bridge/events.db");
        // No old table: nothing imported, no table created.
        let empty = tempfile::tempdir().unwrap();
        let fresh = SqliteEvents::open_default(&empty.path().join("events.db"), &old_path)
            .await
            .unwrap();
        assert!(fresh.list(None, 10).await.unwrap().is_empty());
        assert!(!old_path.exists());

        let old = LocalDeltaEvents::open(&old_path).await.unwrap();
        let done = old.submit(request(1)).await.unwrap();
        let running = old.submit(request(2)).await.unwrap();
        let pending = old.submit(request(3)).await.unwrap();
        old.claim_next("old").await.unwrap().unwrap();
        assert!(
            old.finish(&done.event_id, "old", &Outcome::completed(5))
                .await
                .unwrap()
        );
        old.claim_next("old").await.unwrap().unwrap();
        let before = old.all_events().await.unwrap();
        assert_eq!(before.len(), 3);

        let store = SqliteEvents::open_default(&db, &old_path).await.unwrap();
        let mut after = store.list(None, 10).await.unwrap();
        after.reverse();
        assert_eq!(
            after, before,
            "ids, statuses and timestamps kept, oldest first"
        );
        assert_eq!(store.pending_count().await.unwrap(), 1);
        assert_eq!(
            store.oldest_pending().await.unwrap(),
            Some(pending.created_at)
        );
        // Running stays finishable by its claimer; pending stays claimable (once the running
        // event of its target is done: one target's events are applied in order).
        assert!(store.claim_next("new").await.unwrap().is_none());
        assert!(
            store
                .finish(&running.event_id, "old", &Outcome::completed(1))
                .await
                .unwrap()
        );
        assert_eq!(
            store.claim_next("new").await.unwrap().unwrap().event_id,
            pending.event_id
        );

        // Once only: a reopen imports nothing more, even if the old table changed.
        old.submit(request(4)).await.unwrap();
        drop(store);
        let store = SqliteEvents::open_default(&db, &old_path).await.unwrap();
        assert_eq!(store.list(None, 10).await.unwrap().len(), 3);
        // And an import again adds only what is missing.
        let again = store.import(old.all_events().await.unwrap()).await.unwrap();
        assert_eq!(again, 1);
        assert_eq!(store.list(None, 10).await.unwrap().len(), 4);
    }

    #[test]
    fn a_database_of_a_newer_bridge_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        drop(SqliteEvents::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let e = SqliteEvents::open(&path).unwrap_err();
        assert!(e.to_string().contains("newer bridge"), "{e}");
    }

    #[test]
    fn the_watched_path_is_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        assert_eq!(
            store.watch_path().unwrap(),
            dir.path().join("sub").join("events.db")
        );
    }
}
