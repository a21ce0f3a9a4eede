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
//!
//! - [`schema`]: the SQLite schema, its migrations and how a row becomes a [`Job`].
//! - [`store`]: [`JobStore`], the queries: jobs, their status, owners and heartbeats.

mod schema;
mod store;

pub use store::JobStore;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The error recorded on jobs found queued or running under a dead owner.
pub const INTERRUPTED_ERROR: &str = "the server stopped before the job finished; resubmit it";

/// Default and largest page sizes of [`JobStore::list`].
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;

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

/// A job id derived from `key` (a UUID built from its SHA-256): servers that derive it from the
/// same work store that work once.
pub fn derived_id(key: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}
