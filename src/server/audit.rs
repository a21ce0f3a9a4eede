//! The audit log: one JSON object per line for every request that reads or writes data.
//! Append-only and synced to disk before [`AuditLog::append`] returns, so a response implies a record.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use crate::error::{Error, Result};

/// How a request or job ended, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditResult {
    /// Done (the default: set the result explicitly anyway).
    #[default]
    Ok,
    /// Refused: no or unknown token, missing permission, limit exceeded.
    Refused,
    /// Accepted, then failed.
    Failed,
    /// Accepted and started in the background (a job); its end is a later entry.
    Started,
}

/// One line of the audit log. `None` fields are left out of the JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditEntry {
    /// When it happened (RFC 3339, UTC); [`AuditLog::append`] sets it when `None`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "rfc3339")]
    pub time: Option<DateTime<Utc>>,
    /// The request (or `job-<id>`, `event-<id>`) this entry belongs to.
    pub request_id: String,
    /// The user's name from the permissions file; never a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// `run`, `extract`, `cancel`, `sync`, `event`, `auth`, `schedule`, ...
    pub action: String,
    /// The tables read or written.
    pub tables: Vec<String>,
    /// Rows written, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    pub result: AuditResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
}

fn rfc3339<S: Serializer>(
    time: &Option<DateTime<Utc>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match time {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        None => s.serialize_none(),
    }
}

/// An append-only JSON-lines file. Share it as `Arc<AuditLog>`; appends from several threads
/// never interleave. Rotate it with a copy-and-truncate tool (the file is opened in append mode).
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (or creates, with its parent folders) the log for appending; existing lines are kept.
    pub fn open(path: impl Into<PathBuf>) -> Result<AuditLog> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(AuditLog {
            path,
            file: Mutex::new(file),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the entry as one line and syncs it to disk before returning. Blocking: from async
    /// code, call it in `spawn_blocking` or use [`AuditLog::append_async`].
    pub fn append(&self, entry: &AuditEntry) -> Result<()> {
        let mut line = if entry.time.is_some() {
            serde_json::to_vec(entry)
        } else {
            serde_json::to_vec(&AuditEntry {
                time: Some(Utc::now()),
                ..entry.clone()
            })
        }
        .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?;
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(&line)
            .and_then(|()| file.flush())
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// [`AuditLog::append`] on the blocking thread pool.
    pub async fn append_async(self: &Arc<Self>, entry: AuditEntry) -> Result<()> {
        let log = Arc::clone(self);
        tokio::task::spawn_blocking(move || log.append(&entry))
            .await
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(request_id: &str) -> AuditEntry {
        AuditEntry {
            request_id: request_id.into(),
            caller: Some("calibration-team".into()),
            action: "run".into(),
            tables: vec!["dbo.Sales".into()],
            result: AuditResult::Started,
            job_id: Some("j1".into()),
            ..AuditEntry::default()
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn entry_json_skips_none_and_sets_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        log.append(&entry("r1")).unwrap();
        let v = &lines(&path)[0];
        let obj = v.as_object().unwrap();
        assert_eq!(v["result"], "started");
        assert_eq!(v["caller"], "calibration-team");
        assert_eq!(v["tables"], serde_json::json!(["dbo.Sales"]));
        assert!(!obj.contains_key("rows"));
        assert!(!obj.contains_key("error"));
        assert!(!obj.contains_key("event_id"));
        let time = v["time"].as_str().unwrap();
        assert!(time.ends_with('Z'), "{time}");
        assert!(DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
        let fixed = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        log.append(&AuditEntry {
            time: Some(fixed),
            result: AuditResult::Refused,
            ..entry("r2")
        })
        .unwrap();
        let v = &lines(&path)[1];
        assert_eq!(v["time"], "2026-01-02T03:04:05.000Z");
        assert_eq!(v["result"], "refused");
    }

    #[test]
    fn concurrent_appends_do_not_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = Arc::new(AuditLog::open(&path).unwrap());
        let long = "x".repeat(10_000);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = Arc::clone(&log);
                let long = long.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        log.append(&AuditEntry {
                            error: Some(format!("{long}\nline break")),
                            ..entry(&format!("{t}-{i}"))
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = lines(&path);
        assert_eq!(all.len(), 200);
        let mut ids: Vec<&str> = all
            .iter()
            .map(|v| v["request_id"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 200);
    }

    #[test]
    fn reopening_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        AuditLog::open(&path)
            .unwrap()
            .append(&entry("first"))
            .unwrap();
        AuditLog::open(&path)
            .unwrap()
            .append(&entry("second"))
            .unwrap();
        let ids: Vec<String> = lines(&path)
            .iter()
            .map(|v| v["request_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["first", "second"]);
    }

    #[tokio::test]
    async fn append_async_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = Arc::new(AuditLog::open(&path).unwrap());
        log.append_async(entry("async")).await.unwrap();
        assert_eq!(lines(&path)[0]["request_id"], "async");
    }
}
