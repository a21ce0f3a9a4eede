//! The job store's SQLite schema (and its migrations from older bridges), the columns a job is
//! read from, and the `WHERE` clause of a job filter.

use std::path::Path;

use rusqlite::types::Type;
use rusqlite::{Connection, Row, ToSql};

use super::{Job, JobFilter};
use crate::error::Error;

/// The version of the schema (after [`MIGRATIONS`]), in `PRAGMA user_version`.
pub(super) const SCHEMA_VERSION: i64 = 2;

pub(super) const SCHEMA: &str = "
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
pub(super) const MIGRATIONS: [&str; 1] = [
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

pub(super) const COLUMNS: &str = "id, kind, pipeline, pipeline_file, country, params, status, submitted_by, \
                       created_at, started_at, finished_at, error, summary, request, owner, tables";

/// A text column holding JSON.
fn json_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<serde_json::Value>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
    })
    .transpose()
}

pub(super) fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
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
pub(super) fn tables_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<Vec<String>> {
    json_column(row, idx)?
        .map(|v| {
            serde_json::from_value(v).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
            })
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

/// The `WHERE` clause of a filter and its values (bound, never spliced into SQL).
pub(super) fn filter_sql<'a>(
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

/// Brings the schema to [`SCHEMA_VERSION`], in one write transaction so servers opening a new
/// database at the same time migrate it once.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> rusqlite::Result<Option<Error>> {
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
