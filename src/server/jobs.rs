//! The persistent job store: every job submitted to `bridge serve`, its status and its summary.
//! Kept in SQLite (`.bridge/server.db`); jobs left running by a stopped server become `interrupted`.
//!
//! All methods block (SQLite behind a mutex): from async code call them inside
//! `tokio::task::spawn_blocking`, with the store shared as `Arc<JobStore>`.

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

/// The error recorded on jobs found queued or running when the store is opened.
pub const INTERRUPTED_ERROR: &str = "the server stopped before the job finished; resubmit it";

/// Default and largest page sizes of [`JobStore::list`].
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;

/// The version of the schema below, in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

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

const COLUMNS: &str = "id, kind, pipeline, pipeline_file, country, params, status, submitted_by, \
                       created_at, started_at, finished_at, error, summary, request";

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
}

/// A job to insert; it starts `queued`.
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

/// The job store. Blocking: see the module documentation.
#[derive(Debug)]
pub struct JobStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    interrupted_on_open: usize,
}

fn now() -> String {
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
    })
}

impl JobStore {
    /// Opens (or creates) the store, then marks every job still `queued` or `running` as
    /// `interrupted`: no server is running them any more.
    pub fn open(path: &Path) -> Result<JobStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let db = |e: rusqlite::Error| Error::io(path, std::io::Error::other(e));
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(db)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), %mode, "SQLite did not switch to WAL mode");
        }
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(db)?;
        if version > SCHEMA_VERSION {
            return Err(Error::Unsupported(format!(
                "{}: the job store was written by a newer bridge (schema {version}, this one knows {SCHEMA_VERSION})",
                path.display()
            )));
        }
        conn.execute_batch(SCHEMA).map_err(db)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(db)?;
        let interrupted = conn
            .execute(
                "UPDATE jobs SET status = ?1, error = ?2, finished_at = ?3
                 WHERE status IN (?4, ?5)",
                params![
                    JobStatus::Interrupted.as_str(),
                    INTERRUPTED_ERROR,
                    now(),
                    JobStatus::Queued.as_str(),
                    JobStatus::Running.as_str(),
                ],
            )
            .map_err(db)?;
        Ok(JobStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            interrupted_on_open: interrupted,
        })
    }

    /// How many jobs [`JobStore::open`] marked `interrupted`.
    pub fn interrupted_on_open(&self) -> usize {
        self.interrupted_on_open
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
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, NULL, NULL, NULL, ?10)"
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
                now(),
                job.request.to_string(),
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
                    now(),
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
                    now(),
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
        let mut conditions: Vec<&str> = Vec::new();
        let mut values: Vec<&dyn ToSql> = Vec::new();
        let status = filter.status.map(JobStatus::as_str);
        if let Some(status) = &status {
            conditions.push("status = ?");
            values.push(status);
        }
        if let Some(pipeline) = &filter.pipeline {
            conditions.push("pipeline = ?");
            values.push(pipeline);
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
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
        let next = filter.offset.saturating_add(items.len());
        let next_offset =
            (!items.is_empty() && u64::try_from(next).is_ok_and(|n| n < total)).then_some(next);
        Ok(Page {
            items,
            total,
            next_offset,
        })
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
        }
    }

    fn store(dir: &tempfile::TempDir) -> JobStore {
        JobStore::open(&dir.path().join(".bridge").join("server.db")).unwrap()
    }

    #[test]
    fn insert_and_get() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        assert_eq!(s.interrupted_on_open(), 0);
        let job = s.insert(&new_job("sales")).unwrap();
        assert_eq!(job.status, JobStatus::Queued);
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
    fn reopening_marks_unfinished_jobs_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let (queued, running, done) = {
            let s = store(&dir);
            let queued = s.insert(&new_job("a")).unwrap().id;
            let running = s.insert(&new_job("b")).unwrap().id;
            s.mark_running(&running).unwrap();
            let done = s.insert(&new_job("c")).unwrap().id;
            s.finish(&done, JobStatus::Succeeded, Some(json!({})), None)
                .unwrap();
            (queued, running, done)
        };
        let s = store(&dir);
        assert_eq!(s.interrupted_on_open(), 2);
        for id in [&queued, &running] {
            let j = s.get(id).unwrap().unwrap();
            assert_eq!(j.status, JobStatus::Interrupted);
            assert_eq!(j.error.as_deref(), Some(INTERRUPTED_ERROR));
            assert!(j.finished_at.is_some());
            assert_eq!(j.request["pipeline"], j.pipeline);
        }
        assert_eq!(s.get(&done).unwrap().unwrap().status, JobStatus::Succeeded);
        assert!(
            !s.finish(&running, JobStatus::Succeeded, None, None)
                .unwrap()
        );
        assert_eq!(s.list(&JobFilter::default()).unwrap().total, 3);
        drop(s);
        assert_eq!(store(&dir).interrupted_on_open(), 0);
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
