//! The persistent job store: every job submitted to `bridge serve`, its status and its summary.
//! Kept in SQLite (`.bridge/server.db`), shared by every server on the project root.
//!
//! Each server has an owner id (a UUID per process start) and a row in `servers` whose heartbeat
//! it refreshes every fifth of its lease ([`JobStore::heartbeat`]); every job records its owner.
//! A server whose heartbeat is older than its own lease is dead: the next server to open the
//! store or beat its heartbeat marks that owner's queued and running jobs `interrupted` and
//! drops its row. A live server's jobs are never touched. Jobs of servers older than owners
//! (no owner recorded) count as a dead owner's.
//!
//! All methods block (SQLite behind a mutex): from async code call them inside
//! `tokio::task::spawn_blocking`, with the store shared as `Arc<JobStore>`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The error recorded on jobs found queued or running under a dead owner.
pub const INTERRUPTED_ERROR: &str = "the server stopped before the job finished; resubmit it";

/// Default and largest page sizes of [`JobStore::list`].
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;

/// The version of the schema (after [`MIGRATIONS`]), in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    pipeline      TEXT NOT NULL,
    pipeline_file TEXT,
    country       TEXT,
    params        TEXT NOT NULL,
    status        TEXT NOT NULL,
    submitted_by  TEXT,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    error         TEXT,
    summary       TEXT,
    request       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status_created ON jobs (status, created_at);
CREATE INDEX IF NOT EXISTS jobs_pipeline_created ON jobs (pipeline, created_at);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
";

/// What takes a database of schema `n - 1` (the index) to schema `n`; a new database runs
/// [`SCHEMA`] (version 1) and then every step.
const MIGRATIONS: [&str; 1] = [
    // 2: jobs carry their owner and the SQL Server tables they touch; servers beat a heartbeat.
    "ALTER TABLE jobs ADD COLUMN owner TEXT;
     ALTER TABLE jobs ADD COLUMN tables TEXT;
     CREATE INDEX IF NOT EXISTS jobs_owner_status ON jobs (owner, status);
     CREATE TABLE IF NOT EXISTS servers (
         owner        TEXT PRIMARY KEY,
         pid          INTEGER NOT NULL,
         started_at   TEXT NOT NULL,
         heartbeat_ms INTEGER NOT NULL,
         lease_ms     INTEGER NOT NULL
     );",
];

const COLUMNS: &str = "id, kind, pipeline, pipeline_file, country, params, status, submitted_by, \
                       created_at, started_at, finished_at, error, summary, request, owner, tables";

/// Where a job is in its life. `succeeded`, `failed`, `cancelled` and `interrupted` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Accepted, waiting for a free slot.
    Queued,
    /// Running.
    Running,
    /// Finished; its outputs are committed.
    Succeeded,
    /// Failed; nothing was committed by the failing step.
    Failed,
    /// Cancelled by a user before it committed.
    Cancelled,
    /// Stopped by a server shutdown or crash; resubmit it.
    Interrupted,
}

impl JobStatus {
    /// Every status, in life order.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Interrupted,
    ];

    /// The lowercase name, as in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Interrupted => "interrupted",
        }
    }

    /// Whether the status is final (no transition leaves it).
    pub fn is_final(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of [`JobStatus::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown job status `{0}`; expected one of queued, running, succeeded, failed, cancelled, interrupted"
)]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// A job as stored. Times are RFC 3339 in UTC with microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    /// A UUID.
    pub id: String,
    /// `run`, `extract` or `schedule`.
    #[schema(example = "run")]
    pub kind: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The pipeline file, relative to the project root.
    pub pipeline_file: Option<String>,
    pub country: Option<String>,
    /// The parameters the job was submitted with.
    pub params: serde_json::Value,
    pub status: JobStatus,
    /// The user who submitted it (`None` for scheduled runs).
    pub submitted_by: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// Why it failed, was cancelled or interrupted.
    pub error: Option<String>,
    /// The run summary: per step rows, bytes, duration and outputs.
    pub summary: Option<serde_json::Value>,
    /// The original request body, to resubmit an interrupted job.
    pub request: serde_json::Value,
    /// The owner id of the server that accepted it (`None` for jobs of older servers).
    pub owner: Option<String>,
    /// The SQL Server tables it reads or writes (empty when it touches none, or for jobs of
    /// older servers).
    pub tables: Vec<String>,
}

/// A job to insert; it starts `queued`, owned by the store's server.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// `run`, `extract` or `schedule`.
    pub kind: String,
    pub pipeline: String,
    pub pipeline_file: Option<String>,
    pub country: Option<String>,
    pub params: serde_json::Value,
    pub submitted_by: Option<String>,
    pub request: serde_json::Value,
    /// The SQL Server tables it reads or writes.
    pub tables: Vec<String>,
}

/// Which jobs [`JobStore::list`] returns: newest first, `limit` from `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub pipeline: Option<String>,
    /// Page size, clamped to 1..=[`MAX_PAGE`] (default [`DEFAULT_PAGE`]).
    pub limit: usize,
    /// Jobs to skip (the previous page's `next_offset`).
    pub offset: usize,
}

impl Default for JobFilter {
    fn default() -> Self {
        JobFilter {
            status: None,
            pipeline: None,
            limit: DEFAULT_PAGE,
            offset: 0,
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many items match the filter in all.
    pub total: u64,
    /// The `offset` of the next page; absent on the last page.
    pub next_offset: Option<usize>,
}

/// Who and what a visibility check of a job looks at (see [`JobStore::list_visible`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobAccess {
    pub submitted_by: Option<String>,
    pub tables: Vec<String>,
}

/// What a reclaim of dead servers' jobs did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Jobs marked `interrupted`.
    pub jobs: usize,
    /// Owner ids of the dead servers whose rows were dropped.
    pub dead_owners: Vec<String>,
}

/// The job store of one server. Blocking: see the module documentation.
#[derive(Debug)]
pub struct JobStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    owner: String,
    lease: Duration,
    reclaimed_on_open: Reclaimed,
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A text column holding JSON.
fn json_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<serde_json::Value>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
    })
    .transpose()
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = row.get(6)?;
    Ok(Job {
        id: row.get(0)?,
        kind: row.get(1)?,
        pipeline: row.get(2)?,
        pipeline_file: row.get(3)?,
        country: row.get(4)?,
        params: json_column(row, 5)?.unwrap_or_default(),
        status: status
            .parse()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(6, Type::Text, Box::new(e)))?,
        submitted_by: row.get(7)?,
        created_at: row.get(8)?,
        started_at: row.get(9)?,
        finished_at: row.get(10)?,
        error: row.get(11)?,
        summary: json_column(row, 12)?,
        request: json_column(row, 13)?.unwrap_or_default(),
        owner: row.get(14)?,
        tables: tables_column(row, 15)?,
    })
}

/// The `tables` column: a JSON array of names; NULL (jobs of older servers) is empty.
fn tables_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<Vec<String>> {
    json_column(row, idx)?
        .map(|v| {
            serde_json::from_value(v).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
            })
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

/// Milliseconds since the Unix epoch, the clock of heartbeats.
fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The `WHERE` clause of a filter and its values (bound, never spliced into SQL).
fn filter_sql<'a>(
    filter: &'a JobFilter,
    status: Option<&'a &'static str>,
) -> (String, Vec<&'a dyn ToSql>) {
    let mut conditions: Vec<&str> = Vec::new();
    let mut values: Vec<&dyn ToSql> = Vec::new();
    if let Some(status) = status {
        conditions.push("status = ?");
        values.push(status);
    }
    if let Some(pipeline) = &filter.pipeline {
        conditions.push("pipeline = ?");
        values.push(pipeline);
    }
    let sql = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    (sql, values)
}

/// A page of `items` starting at `offset` of `total`.
fn page<T>(items: Vec<T>, offset: usize, total: u64) -> Page<T> {
    let next = offset.saturating_add(items.len());
    let next_offset =
        (!items.is_empty() && u64::try_from(next).is_ok_and(|n| n < total)).then_some(next);
    Page {
        items,
        total,
        next_offset,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Brings the schema to [`SCHEMA_VERSION`], in one write transaction so servers opening a new
/// database at the same time migrate it once.
fn migrate(conn: &mut Connection, path: &Path) -> rusqlite::Result<Option<Error>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Ok(Some(Error::internal(
            path.display().to_string(),
            crate::error::Message(format!(
                "the job store was written by a newer bridge (schema {version}, this one knows \
                 {SCHEMA_VERSION}); run that version, or move the file away to start a new history"
            )),
        )));
    }
    if version < 1 {
        tx.execute_batch(SCHEMA)?;
    }
    for (i, step) in MIGRATIONS.iter().enumerate() {
        let to = i64::try_from(i).unwrap_or(i64::MAX) + 2;
        if version < to {
            tx.execute_batch(step)?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(None)
}

impl JobStore {
    /// Opens (or creates, or migrates) the store as the server `owner` (a fresh UUID per
    /// process start) whose heartbeat stays valid for `lease`; registers its heartbeat, then
    /// marks the queued and running jobs of dead servers `interrupted` (see the module docs).
    pub fn open(path: &Path, owner: &str, lease: Duration) -> Result<JobStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let db = |e: rusqlite::Error| Error::io(path, std::io::Error::other(e));
        let mut conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(db)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), %mode, "SQLite did not switch to WAL mode");
        }
        if let Some(e) = migrate(&mut conn, path).map_err(db)? {
            return Err(e);
        }
        let mut store = JobStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            owner: owner.to_string(),
            lease,
            reclaimed_on_open: Reclaimed::default(),
        };
        store.reclaimed_on_open = store.beat(true)?;
        Ok(store)
    }

    /// What [`JobStore::open`] reclaimed from dead servers.
    pub fn reclaimed_on_open(&self) -> &Reclaimed {
        &self.reclaimed_on_open
    }

    /// This server's owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The lease of this server's heartbeat.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Refreshes this server's heartbeat and reclaims the jobs of servers that died since (call
    /// it every fifth of the lease or more often).
    pub fn heartbeat(&self) -> Result<Reclaimed> {
        self.beat(false)
    }

    fn beat(&self, first: bool) -> Result<Reclaimed> {
        let now = now_ms();
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))?;
        let refreshed = tx
            .execute(
                "UPDATE servers SET heartbeat_ms = ?1, lease_ms = ?2 WHERE owner = ?3",
                params![now, millis(self.lease), self.owner],
            )
            .map_err(|e| self.db(e))?;
        if refreshed == 0 {
            if !first {
                tracing::error!(
                    owner = %self.owner,
                    "this server's heartbeat lapsed and another server took it for dead: its queued and running jobs were marked interrupted; keep the job store on a local disk and the lease longer than any pause"
                );
            }
            tx.execute(
                "INSERT INTO servers (owner, pid, started_at, heartbeat_ms, lease_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    self.owner,
                    std::process::id(),
                    now_rfc3339(),
                    now,
                    millis(self.lease)
                ],
            )
            .map_err(|e| self.db(e))?;
        }
        let dead_owners = {
            let mut stmt = tx
                .prepare(
                    "SELECT owner FROM servers WHERE heartbeat_ms + lease_ms < ?1 AND owner != ?2
                     ORDER BY owner",
                )
                .map_err(|e| self.db(e))?;
            stmt.query_map(params![now, self.owner], |row| row.get::<_, String>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
                .map_err(|e| self.db(e))?
        };
        tx.execute(
            "DELETE FROM servers WHERE heartbeat_ms + lease_ms < ?1 AND owner != ?2",
            params![now, self.owner],
        )
        .map_err(|e| self.db(e))?;
        let jobs = tx
            .execute(
                "UPDATE jobs SET status = ?1, error = ?2, finished_at = ?3
                 WHERE status IN (?4, ?5)
                   AND (owner IS NULL OR owner NOT IN (SELECT owner FROM servers))",
                params![
                    JobStatus::Interrupted.as_str(),
                    INTERRUPTED_ERROR,
                    now_rfc3339(),
                    JobStatus::Queued.as_str(),
                    JobStatus::Running.as_str(),
                ],
            )
            .map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        Ok(Reclaimed { jobs, dead_owners })
    }

    /// Owner ids of the servers whose heartbeat is within its lease (this one included).
    pub fn live_owners(&self) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT owner FROM servers WHERE heartbeat_ms + lease_ms >= ?1 ORDER BY owner")
            .map_err(|e| self.db(e))?;
        stmt.query_map(params![now_ms()], |row| row.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(|e| self.db(e))
    }

    /// Removes this server's heartbeat row: on a clean shutdown, once no job of it is queued or
    /// running.
    pub fn deregister(&self) -> Result<()> {
        self.lock()
            .execute("DELETE FROM servers WHERE owner = ?1", params![self.owner])
            .map(|_| ())
            .map_err(|e| self.db(e))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn db(&self, e: rusqlite::Error) -> Error {
        Error::io(&self.path, std::io::Error::other(e))
    }

    fn get_locked(&self, conn: &Connection, id: &str) -> Result<Option<Job>> {
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
            params![id],
            job_from_row,
        )
        .optional()
        .map_err(|e| self.db(e))
    }

    /// Stores a new job, `queued`, with a fresh id.
    pub fn insert(&self, job: &NewJob) -> Result<Job> {
        let id = uuid::Uuid::new_v4().to_string();
        let conn = self.lock();
        conn.execute(
            &format!(
                "INSERT INTO jobs ({COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL, NULL, NULL, ?10, ?11, ?12)"
            ),
            params![
                id,
                job.kind,
                job.pipeline,
                job.pipeline_file,
                job.country,
                job.params.to_string(),
                JobStatus::Queued.as_str(),
                job.submitted_by,
                now_rfc3339(),
                job.request.to_string(),
                self.owner,
                serde_json::Value::from(job.tables.clone()).to_string(),
            ],
        )
        .map_err(|e| self.db(e))?;
        self.get_locked(&conn, &id)?
            .ok_or_else(|| self.db(rusqlite::Error::QueryReturnedNoRows))
    }

    /// Moves a `queued` job to `running`. `false` (nothing changed) if the job is unknown or
    /// not queued, e.g. cancelled while it waited.
    pub fn mark_running(&self, id: &str) -> Result<bool> {
        let changed = self
            .lock()
            .execute(
                "UPDATE jobs SET status = ?1, started_at = ?2 WHERE id = ?3 AND status = ?4",
                params![
                    JobStatus::Running.as_str(),
                    now_rfc3339(),
                    id,
                    JobStatus::Queued.as_str()
                ],
            )
            .map_err(|e| self.db(e))?;
        Ok(changed == 1)
    }

    /// Moves a `queued` or `running` job to a final status with its summary and error. `false`
    /// (nothing changed) if the job is unknown, already final (a cancelled job never becomes
    /// succeeded) or `status` is not final.
    pub fn finish(
        &self,
        id: &str,
        status: JobStatus,
        summary: Option<serde_json::Value>,
        error: Option<String>,
    ) -> Result<bool> {
        if !status.is_final() {
            return Ok(false);
        }
        let changed = self
            .lock()
            .execute(
                "UPDATE jobs SET status = ?1, finished_at = ?2, summary = ?3, error = ?4
                 WHERE id = ?5 AND status IN (?6, ?7)",
                params![
                    status.as_str(),
                    now_rfc3339(),
                    summary.map(|s| s.to_string()),
                    error,
                    id,
                    JobStatus::Queued.as_str(),
                    JobStatus::Running.as_str(),
                ],
            )
            .map_err(|e| self.db(e))?;
        Ok(changed == 1)
    }

    /// The job with this id.
    pub fn get(&self, id: &str) -> Result<Option<Job>> {
        let conn = self.lock();
        self.get_locked(&conn, id)
    }

    /// A page of jobs matching the filter, newest first.
    pub fn list(&self, filter: &JobFilter) -> Result<Page<Job>> {
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let (limit_value, offset_value) = (
            i64::try_from(limit).unwrap_or(i64::MAX),
            i64::try_from(filter.offset).unwrap_or(i64::MAX),
        );
        let status = filter.status.map(JobStatus::as_str);
        let (filter_sql, mut values) = filter_sql(filter, status.as_ref());
        let conn = self.lock();
        let total: u64 = conn
            .query_row(
                &format!("SELECT COUNT(*) FROM jobs{filter_sql}"),
                values.as_slice(),
                |row| row.get(0),
            )
            .map_err(|e| self.db(e))?;
        values.push(&limit_value);
        values.push(&offset_value);
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM jobs{filter_sql}
                 ORDER BY created_at DESC, seq DESC LIMIT ? OFFSET ?"
            ))
            .map_err(|e| self.db(e))?;
        let items = stmt
            .query_map(values.as_slice(), job_from_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<Job>>>())
            .map_err(|e| self.db(e))?;
        Ok(page(items, filter.offset, total))
    }

    /// [`JobStore::list`] over only the jobs `visible` accepts: `total` and the offsets count
    /// those alone. Reads who submitted each matching job and what it touches (one light pass,
    /// `visible` asked once per distinct pair), then loads the page's jobs.
    pub fn list_visible(
        &self,
        filter: &JobFilter,
        visible: &dyn Fn(&JobAccess) -> bool,
    ) -> Result<Page<Job>> {
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let status = filter.status.map(JobStatus::as_str);
        let (filter_sql, values) = filter_sql(filter, status.as_ref());
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT id, submitted_by, tables FROM jobs{filter_sql}
                 ORDER BY created_at DESC, seq DESC"
            ))
            .map_err(|e| self.db(e))?;
        let mut rows = stmt.query(values.as_slice()).map_err(|e| self.db(e))?;
        let mut decided: HashMap<(Option<String>, Option<String>), bool> = HashMap::new();
        let (mut total, mut ids) = (0u64, Vec::new());
        while let Some(row) = rows.next().map_err(|e| self.db(e))? {
            let submitted_by: Option<String> = row.get(1).map_err(|e| self.db(e))?;
            let tables_text: Option<String> = row.get(2).map_err(|e| self.db(e))?;
            let key = (submitted_by, tables_text);
            let shown = match decided.get(&key) {
                Some(shown) => *shown,
                None => {
                    let access = JobAccess {
                        submitted_by: key.0.clone(),
                        tables: tables_column(row, 2).map_err(|e| self.db(e))?,
                    };
                    let shown = visible(&access);
                    decided.insert(key, shown);
                    shown
                }
            };
            if !shown {
                continue;
            }
            let position = usize::try_from(total).unwrap_or(usize::MAX);
            if position >= filter.offset && ids.len() < limit {
                ids.push(row.get::<_, String>(0).map_err(|e| self.db(e))?);
            }
            total += 1;
        }
        drop(rows);
        drop(stmt);
        let mut items = Vec::with_capacity(ids.len());
        for id in &ids {
            items.extend(self.get_locked(&conn, id)?);
        }
        Ok(page(items, filter.offset, total))
    }

    /// Whether a scheduled run of the pipeline for the country is queued or running (on any
    /// server of the store).
    pub fn scheduled_active(&self, pipeline: &str, country: Option<&str>) -> Result<bool> {
        self.lock()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE kind = 'schedule' AND pipeline = ?1
                    AND country IS ?2 AND status IN (?3, ?4))",
                params![
                    pipeline,
                    country,
                    JobStatus::Queued.as_str(),
                    JobStatus::Running.as_str()
                ],
                |row| row.get(0),
            )
            .map_err(|e| self.db(e))
    }

    /// How many jobs have each status, for every status (zeros included).
    pub fn counts_by_status(&self) -> Result<Vec<(JobStatus, u64)>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")
            .map_err(|e| self.db(e))?;
        let counted = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.db(e))?;
        Ok(JobStatus::ALL
            .into_iter()
            .map(|status| {
                let n = counted
                    .iter()
                    .find(|(s, _)| s == status.as_str())
                    .map_or(0, |(_, n)| *n);
                (status, n)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn new_job(pipeline: &str) -> NewJob {
        NewJob {
            kind: "run".into(),
            pipeline: pipeline.into(),
            pipeline_file: Some(format!("pipelines/{pipeline}.yaml")),
            country: Some("co".into()),
            params: json!({"period": "202401"}),
            submitted_by: Some("calibration-team".into()),
            request: json!({"pipeline": pipeline, "country": "co"}),
            tables: vec!["dbo.Sales".into()],
        }
    }

    fn db(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join(".bridge").join("server.db")
    }

    fn store_as(dir: &tempfile::TempDir, owner: &str, lease: Duration) -> JobStore {
        JobStore::open(&db(dir), owner, lease).unwrap()
    }

    fn store(dir: &tempfile::TempDir) -> JobStore {
        store_as(
            dir,
            &uuid::Uuid::new_v4().to_string(),
            crate::server::ServeOptions::SERVER_LEASE.default,
        )
    }

    #[test]
    fn insert_and_get() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        assert_eq!(s.reclaimed_on_open(), &Reclaimed::default());
        let job = s.insert(&new_job("sales")).unwrap();
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!(job.owner.as_deref(), Some(s.owner()));
        assert_eq!(job.tables, ["dbo.Sales"]);
        assert!(uuid::Uuid::parse_str(&job.id).is_ok());
        assert!(chrono::DateTime::parse_from_rfc3339(&job.created_at).is_ok());
        assert_eq!(job.started_at, None);
        assert_eq!(job.params, json!({"period": "202401"}));
        assert_eq!(s.get(&job.id).unwrap(), Some(job.clone()));
        assert_eq!(s.get("nope").unwrap(), None);

        assert!(s.mark_running(&job.id).unwrap());
        let summary = json!({"steps": [{"id": "load", "rows": 10}]});
        assert!(
            s.finish(&job.id, JobStatus::Succeeded, Some(summary.clone()), None)
                .unwrap()
        );
        let done = s.get(&job.id).unwrap().unwrap();
        assert_eq!(done.status, JobStatus::Succeeded);
        assert_eq!(done.summary, Some(summary));
        assert!(done.started_at.is_some() && done.finished_at.is_some());
        let json = serde_json::to_value(&done).unwrap();
        assert_eq!(json["status"], "succeeded");
    }

    #[test]
    fn terminal_states_are_final() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let job = s.insert(&new_job("sales")).unwrap();
        assert!(
            s.finish(
                &job.id,
                JobStatus::Cancelled,
                None,
                Some("cancelled".into())
            )
            .unwrap()
        );
        assert!(!s.mark_running(&job.id).unwrap());
        assert!(!s.finish(&job.id, JobStatus::Succeeded, None, None).unwrap());
        assert!(!s.finish(&job.id, JobStatus::Failed, None, None).unwrap());
        let j = s.get(&job.id).unwrap().unwrap();
        assert_eq!(j.status, JobStatus::Cancelled);
        assert_eq!(j.error.as_deref(), Some("cancelled"));

        let other = s.insert(&new_job("sales")).unwrap();
        assert!(!s.finish(&other.id, JobStatus::Running, None, None).unwrap());
        assert!(s.mark_running(&other.id).unwrap());
        assert!(!s.mark_running(&other.id).unwrap());
        assert!(!s.finish("unknown", JobStatus::Failed, None, None).unwrap());
    }

    #[test]
    fn list_filters_and_pages_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let mut ids = Vec::new();
        for i in 0..7 {
            let job = s
                .insert(&new_job(if i % 2 == 0 { "sales" } else { "stock" }))
                .unwrap();
            ids.push(job.id);
        }
        s.mark_running(&ids[6]).unwrap();
        s.finish(&ids[4], JobStatus::Failed, None, Some("boom".into()))
            .unwrap();

        let all = s.list(&JobFilter::default()).unwrap();
        assert_eq!(all.total, 7);
        assert_eq!(all.next_offset, None);
        let listed: Vec<&str> = all.items.iter().map(|j| j.id.as_str()).collect();
        let expected: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
        assert_eq!(listed, expected);

        let page = s
            .list(&JobFilter {
                limit: 3,
                ..JobFilter::default()
            })
            .unwrap();
        assert_eq!(page.items.len(), 3);
        assert_eq!(page.next_offset, Some(3));
        let last = s
            .list(&JobFilter {
                limit: 3,
                offset: 6,
                ..JobFilter::default()
            })
            .unwrap();
        assert_eq!(last.items.len(), 1);
        assert_eq!(last.items[0].id, ids[0]);
        assert_eq!(last.next_offset, None);
        let beyond = s
            .list(&JobFilter {
                offset: 100,
                ..JobFilter::default()
            })
            .unwrap();
        assert!(beyond.items.is_empty());
        assert_eq!(beyond.total, 7);

        let sales = s
            .list(&JobFilter {
                pipeline: Some("sales".into()),
                ..JobFilter::default()
            })
            .unwrap();
        assert_eq!(sales.total, 4);
        assert!(sales.items.iter().all(|j| j.pipeline == "sales"));
        let failed_sales = s
            .list(&JobFilter {
                pipeline: Some("sales".into()),
                status: Some(JobStatus::Failed),
                ..JobFilter::default()
            })
            .unwrap();
        assert_eq!(failed_sales.total, 1);
        assert_eq!(failed_sales.items[0].id, ids[4]);
        let queued = s
            .list(&JobFilter {
                status: Some(JobStatus::Queued),
                limit: 0,
                ..JobFilter::default()
            })
            .unwrap();
        assert_eq!(queued.total, 5);
        assert_eq!(queued.items.len(), 1, "a limit of 0 is raised to 1");
        assert_eq!(queued.next_offset, Some(1));
        // Values are bound, never spliced into SQL.
        let odd = s
            .list(&JobFilter {
                pipeline: Some("x' OR '1'='1".into()),
                ..JobFilter::default()
            })
            .unwrap();
        assert_eq!(odd.total, 0);
    }

    #[test]
    fn a_live_servers_jobs_are_left_alone_and_a_dead_ones_are_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        // Long enough that a loaded machine (CI compiling next to it) does not let it lapse
        // between two steps that expect the first server alive.
        let lease = Duration::from_secs(3);
        let a = store_as(&dir, "server-a", lease);
        let queued = a.insert(&new_job("a")).unwrap().id;
        let running = a.insert(&new_job("b")).unwrap().id;
        a.mark_running(&running).unwrap();
        let done = a.insert(&new_job("c")).unwrap().id;
        a.finish(&done, JobStatus::Succeeded, Some(json!({})), None)
            .unwrap();

        // A second server while the first is alive: nothing of the first is touched.
        a.heartbeat().unwrap();
        let b = store_as(&dir, "server-b", lease);
        assert_eq!(b.reclaimed_on_open(), &Reclaimed::default());
        assert_eq!(b.live_owners().unwrap(), ["server-a", "server-b"]);
        std::thread::sleep(lease / 2);
        a.heartbeat().unwrap();
        std::thread::sleep(lease / 2);
        assert_eq!(b.heartbeat().unwrap(), Reclaimed::default());
        assert_eq!(b.get(&running).unwrap().unwrap().status, JobStatus::Running);

        // The first dies (no deregistration, no more heartbeats): once its lease has passed the
        // next heartbeat of another server interrupts its unfinished jobs and drops its row.
        drop(a);
        std::thread::sleep(lease + Duration::from_millis(100));
        let reclaimed = b.heartbeat().unwrap();
        assert_eq!(reclaimed.jobs, 2);
        assert_eq!(reclaimed.dead_owners, ["server-a"]);
        for id in [&queued, &running] {
            let j = b.get(id).unwrap().unwrap();
            assert_eq!(j.status, JobStatus::Interrupted);
            assert_eq!(j.error.as_deref(), Some(INTERRUPTED_ERROR));
            assert!(j.finished_at.is_some());
            assert_eq!(j.request["pipeline"], j.pipeline);
            assert_eq!(j.owner.as_deref(), Some("server-a"));
        }
        assert_eq!(b.get(&done).unwrap().unwrap().status, JobStatus::Succeeded);
        assert!(
            !b.finish(&running, JobStatus::Succeeded, None, None)
                .unwrap()
        );
        assert_eq!(b.live_owners().unwrap(), ["server-b"]);
        assert_eq!(b.heartbeat().unwrap(), Reclaimed::default());

        // A clean stop removes the row; a server opening later finds nobody to reclaim.
        let own = b.insert(&new_job("d")).unwrap().id;
        b.finish(&own, JobStatus::Cancelled, None, None).unwrap();
        b.deregister().unwrap();
        drop(b);
        let c = store_as(&dir, "server-c", lease);
        assert_eq!(c.reclaimed_on_open(), &Reclaimed::default());
        assert_eq!(c.live_owners().unwrap(), ["server-c"]);
        assert_eq!(c.list(&JobFilter::default()).unwrap().total, 4);
    }

    #[test]
    fn startup_reclaims_the_jobs_of_a_server_dead_for_its_own_lease() {
        let dir = tempfile::tempdir().unwrap();
        // A short lease of its own: the dead server is judged by it, not by the newcomer's.
        let a = store_as(&dir, "server-a", Duration::from_millis(100));
        let running = a.insert(&new_job("a")).unwrap().id;
        a.mark_running(&running).unwrap();
        drop(a);
        std::thread::sleep(Duration::from_millis(200));
        let b = store_as(&dir, "server-b", Duration::from_secs(60));
        assert_eq!(b.reclaimed_on_open().jobs, 1);
        assert_eq!(b.reclaimed_on_open().dead_owners, ["server-a"]);
        assert_eq!(
            b.get(&running).unwrap().unwrap().status,
            JobStatus::Interrupted
        );
    }

    #[test]
    fn a_schema_1_database_is_migrated_and_its_jobs_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(db(&dir).parent().unwrap()).unwrap();
        {
            let conn = Connection::open(db(&dir)).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            for (id, status) in [("old-done", "succeeded"), ("old-running", "running")] {
                conn.execute(
                    "INSERT INTO jobs (id, kind, pipeline, params, status, submitted_by, created_at, request)
                     VALUES (?1, 'run', 'sales', '{}', ?2, 'alice', '2025-01-01T00:00:00.000000Z', '{}')",
                    params![id, status],
                )
                .unwrap();
            }
        }
        let s = store(&dir);
        // A job of a server older than owners has no heartbeat to wait for: interrupted.
        assert_eq!(s.reclaimed_on_open().jobs, 1);
        let old = s.get("old-done").unwrap().unwrap();
        assert_eq!(old.status, JobStatus::Succeeded);
        assert_eq!((old.owner, old.tables), (None, Vec::<String>::new()));
        assert_eq!(
            s.get("old-running").unwrap().unwrap().status,
            JobStatus::Interrupted
        );
        let version: i64 = s
            .lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        s.insert(&new_job("sales")).unwrap();
        drop(s);
        // Opening again does not migrate twice.
        assert_eq!(store(&dir).list(&JobFilter::default()).unwrap().total, 3);

        // A newer schema is refused, naming the file and what to do.
        {
            let conn = Connection::open(db(&dir)).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let e = JobStore::open(
            &db(&dir),
            "x",
            crate::server::ServeOptions::SERVER_LEASE.default,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("server.db") && e.to_string().contains("newer bridge"),
            "{e}"
        );
    }

    #[test]
    fn list_visible_counts_and_pages_only_visible_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let mut mine = Vec::new();
        for i in 0..9 {
            let job = NewJob {
                submitted_by: Some(if i % 3 == 0 { "me" } else { "other" }.into()),
                tables: if i % 3 == 1 {
                    vec!["dbo.Open".into()]
                } else {
                    vec!["dbo.Secret".into()]
                },
                ..new_job(if i < 6 { "sales" } else { "stock" })
            };
            let id = s.insert(&job).unwrap().id;
            if i % 3 != 2 {
                mine.push(id);
            }
        }
        mine.reverse();
        let visible = |a: &JobAccess| {
            a.submitted_by.as_deref() == Some("me") || a.tables == ["dbo.Open".to_string()]
        };
        let all = s.list_visible(&JobFilter::default(), &visible).unwrap();
        assert_eq!(all.total, 6);
        let ids: Vec<&str> = all.items.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, mine.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(all.next_offset, None);
        let second = s
            .list_visible(
                &JobFilter {
                    limit: 4,
                    offset: 4,
                    ..JobFilter::default()
                },
                &visible,
            )
            .unwrap();
        assert_eq!(second.total, 6);
        assert_eq!(second.items.len(), 2);
        assert_eq!(second.items[0].id, mine[4]);
        assert_eq!(second.next_offset, None);
        let first = s
            .list_visible(
                &JobFilter {
                    limit: 4,
                    ..JobFilter::default()
                },
                &visible,
            )
            .unwrap();
        assert_eq!(first.next_offset, Some(4));
        let stock = s
            .list_visible(
                &JobFilter {
                    pipeline: Some("stock".into()),
                    ..JobFilter::default()
                },
                &visible,
            )
            .unwrap();
        assert_eq!(stock.total, 2);
        let none = s.list_visible(&JobFilter::default(), &|_| false).unwrap();
        assert_eq!((none.total, none.items.len()), (0, 0));
    }

    #[test]
    fn scheduled_runs_are_busy_per_pipeline_and_country() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let scheduled = |country: Option<&str>| NewJob {
            kind: "schedule".into(),
            country: country.map(str::to_string),
            submitted_by: None,
            ..new_job("sales")
        };
        let a = s.insert(&scheduled(Some("colombia"))).unwrap().id;
        assert!(s.scheduled_active("sales", Some("colombia")).unwrap());
        assert!(!s.scheduled_active("sales", Some("mexico")).unwrap());
        assert!(!s.scheduled_active("sales", None).unwrap());
        assert!(!s.scheduled_active("stock", Some("colombia")).unwrap());
        // A run submitted over the API does not hold off the schedule.
        s.insert(&new_job("sales")).unwrap();
        assert!(!s.scheduled_active("sales", Some("co")).unwrap());
        s.insert(&scheduled(None)).unwrap();
        assert!(s.scheduled_active("sales", None).unwrap());
        s.mark_running(&a).unwrap();
        assert!(s.scheduled_active("sales", Some("colombia")).unwrap());
        s.finish(&a, JobStatus::Succeeded, None, None).unwrap();
        assert!(!s.scheduled_active("sales", Some("colombia")).unwrap());
    }

    #[test]
    fn counts_every_status() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let a = s.insert(&new_job("a")).unwrap().id;
        let b = s.insert(&new_job("a")).unwrap().id;
        s.insert(&new_job("a")).unwrap();
        s.mark_running(&a).unwrap();
        s.finish(&b, JobStatus::Cancelled, None, None).unwrap();
        let counts = s.counts_by_status().unwrap();
        assert_eq!(
            counts,
            vec![
                (JobStatus::Queued, 1),
                (JobStatus::Running, 1),
                (JobStatus::Succeeded, 0),
                (JobStatus::Failed, 0),
                (JobStatus::Cancelled, 1),
                (JobStatus::Interrupted, 0),
            ]
        );
    }

    #[test]
    fn status_names() {
        for status in JobStatus::ALL {
            assert_eq!(status.to_string().parse::<JobStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                json!(status.as_str())
            );
        }
        let e = "done".parse::<JobStatus>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown job status `done`; expected one of queued, running, succeeded, failed, cancelled, interrupted"
        );
    }

    #[test]
    fn wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let mode: String = s
            .lock()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
