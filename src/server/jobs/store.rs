//! [`JobStore`]: jobs inserted, moved through their statuses, listed and counted; servers'
//! heartbeats, and the jobs of dead servers marked interrupted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::schema::{COLUMNS, filter_sql, job_from_row, migrate, tables_column};
use super::{
    INTERRUPTED_ERROR, Job, JobAccess, JobFilter, JobStatus, MAX_PAGE, NewJob, Page, Reclaimed,
};
use crate::error::{Error, Result};

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

/// Milliseconds since the Unix epoch, the clock of heartbeats.
fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
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
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        self.insert_as(&id, job)?
            .ok_or_else(|| self.db(rusqlite::Error::QueryReturnedNoRows))
    }

    /// Stores a new job `queued` under `id`, chosen by the caller so that several servers asking
    /// for the same work (a RUN event, a schedule slot) store it once: `None` when a job with
    /// that id exists already.
    pub fn insert_as(&self, id: &str, job: &NewJob) -> Result<Option<Job>> {
        let conn = self.lock();
        let inserted = conn
            .execute(
                &format!(
                "INSERT OR IGNORE INTO jobs ({COLUMNS})
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
        if inserted == 0 {
            return Ok(None);
        }
        self.get_locked(&conn, id)
    }

    /// Makes this server the owner of a job no server started, to run it here: one `queued` by
    /// another server (a run accepted by `POST /runs` there, whose queue item this server
    /// claimed), or one `interrupted` before it started (its server stopped first), which
    /// becomes queued again. `None` (nothing changed) when the job is unknown, was started, or
    /// was cancelled meanwhile.
    pub fn adopt(&self, id: &str) -> Result<Option<Job>> {
        let conn = self.lock();
        let changed = conn
            .execute(
                "UPDATE jobs SET owner = ?1, status = ?2, error = NULL, finished_at = NULL
                 WHERE id = ?3 AND started_at IS NULL AND status IN (?2, ?4)",
                params![
                    self.owner,
                    JobStatus::Queued.as_str(),
                    id,
                    JobStatus::Interrupted.as_str()
                ],
            )
            .map_err(|e| self.db(e))?;
        if changed == 0 {
            return Ok(None);
        }
        self.get_locked(&conn, id)
    }

    /// Cancels a job that is still `queued` (no server started it); `false` (nothing changed)
    /// when it is not queued any more.
    pub fn cancel_queued(&self, id: &str, error: &str) -> Result<bool> {
        let changed = self
            .lock()
            .execute(
                "UPDATE jobs SET status = ?1, finished_at = ?2, error = ?3 WHERE id = ?4 AND status = ?5",
                params![
                    JobStatus::Cancelled.as_str(),
                    now_rfc3339(),
                    error,
                    id,
                    JobStatus::Queued.as_str()
                ],
            )
            .map_err(|e| self.db(e))?;
        Ok(changed == 1)
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
            .and_then(std::iter::Iterator::collect::<rusqlite::Result<Vec<Job>>>)
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
mod tests;
