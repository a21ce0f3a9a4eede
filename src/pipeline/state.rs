//! Run state kept between runs: the watermarks of incremental sources, per pipeline, country and step.
//! Stored in an embedded SQLite file, `.bridge/state.db` under the project root.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};

/// Watermarks of incremental extractions.
#[derive(Debug, Clone)]
pub struct WatermarkStore {
    path: PathBuf,
}

impl WatermarkStore {
    /// The store of a project.
    pub fn for_project(root: &Path) -> Self {
        WatermarkStore {
            path: root.join(".bridge").join("state.db"),
        }
    }

    fn open(&self) -> Result<Connection> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let fail = |e: rusqlite::Error| Error::internal(self.path.display().to_string(), e);
        let conn = Connection::open(&self.path).map_err(fail)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(fail)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS watermarks (
                pipeline TEXT NOT NULL, country TEXT NOT NULL, step TEXT NOT NULL,
                value TEXT NOT NULL, updated_at TEXT NOT NULL,
                PRIMARY KEY (pipeline, country, step))",
        )
        .map_err(fail)?;
        Ok(conn)
    }

    /// The last committed watermark, if any.
    pub fn get(&self, pipeline: &str, country: Option<&str>, step: &str) -> Result<Option<String>> {
        if !self.path.exists() {
            return Ok(None);
        }
        let conn = self.open()?;
        conn.query_row(
            "SELECT value FROM watermarks WHERE pipeline = ?1 AND country = ?2 AND step = ?3",
            params![pipeline, country.unwrap_or(""), step],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| Error::internal(self.path.display().to_string(), e))
    }

    /// Records a watermark after a run committed.
    pub fn set(
        &self,
        pipeline: &str,
        country: Option<&str>,
        step: &str,
        value: &str,
    ) -> Result<()> {
        let conn = self.open()?;
        conn.execute(
            "INSERT INTO watermarks (pipeline, country, step, value, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (pipeline, country, step) DO UPDATE SET value = excluded.value,
                 updated_at = excluded.updated_at",
            params![
                pipeline,
                country.unwrap_or(""),
                step,
                value,
                chrono::Utc::now().to_rfc3339()
            ],
        )
        .map_err(|e| Error::internal(self.path.display().to_string(), e))?;
        Ok(())
    }
}
