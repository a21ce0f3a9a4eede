//! Databricks -> SQL Server syncs requested as rows of the `bridge_events` table.
//! A store holds the events; the poller claims each one once and applies it to SQL Server.
//!
//! - [`event`]: the request ([`NewEvent`]), the stored row ([`Event`]) and their checks.
//! - [`filter`]: what an event's `filter` may contain (bounded expressions and functions).
//! - [`store`]: the [`EventStore`] trait (submit, claim, reclaim, finish) every backend implements.
//! - [`sqlite`]: [`SqliteEvents`], the events table as a local SQLite database (the default).
//! - [`local`]: [`LocalDeltaEvents`], the events table as a local Delta table.
//! - [`databricks`]: [`DatabricksEvents`], the events table in Databricks via a SQL warehouse.
//! - [`apply`]: [`apply_event`], one event as a pipeline run (source -> filter -> `sqlserver` sink).
//! - [`poller`]: [`Poller`], the loop `bridge serve` runs.
//!
//! Exactly once: claiming is atomic (one claimer wins), and the SQL Server write records the
//! event id as its idempotency key in the same transaction, so an event re-applied after a
//! crash changes nothing and reports the first application's rows.

pub mod apply;
pub mod databricks;
pub mod event;
pub mod filter;
pub mod local;
pub mod poller;
pub mod sqlite;
pub mod store;

pub use apply::{AppliedEvent, ApplyLimits, SourceCatalog, apply_event, apply_planned};
pub use databricks::DatabricksEvents;
pub use event::{Event, EventStatus, NewEvent, Operation, Outcome};
pub use local::LocalDeltaEvents;
pub use poller::{AllowAll, Poller, PollerHooks, PollerOptions, ProjectSource};
pub use sqlite::SqliteEvents;
pub use store::{Claim, EventStore};

use crate::error::{Error, Location};

/// Errors of the sync module.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The event (or an argument) is malformed: the field and what is wrong with it.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The events table could not be read or written.
    #[error("events table {location}: {message}")]
    Store { location: String, message: String },
    /// An event with this id is stored already (nothing was stored).
    #[error("event_id: an event with id {0} is stored already")]
    Duplicate(String),
    /// Applying the event failed (a pipeline error: source, SQL, SQL Server).
    #[error(transparent)]
    Apply(#[from] Error),
}

impl SyncError {
    /// A field-named validation error.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        SyncError::Invalid {
            field,
            message: message.into(),
        }
    }

    /// The refusal this error is (a delete over the caller's cap), if it is one.
    pub fn refusal(&self) -> Option<&crate::error::Refusal> {
        match self {
            SyncError::Apply(e) => e.refusal(),
            _ => None,
        }
    }

    /// The event field at fault, for validation errors.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            SyncError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    /// A failure of the events table at `location`.
    pub fn store(location: impl Into<String>, message: impl std::fmt::Display) -> Self {
        SyncError::Store {
            location: location.into(),
            message: message.to_string(),
        }
    }
}

impl From<SyncError> for Error {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Invalid { field, message } => Error::Spec {
                location: Location::file("event"),
                message: format!("{field}: {message}"),
            },
            SyncError::Store { location, message } => {
                Error::io(location, std::io::Error::other(message))
            }
            SyncError::Duplicate(id) => Error::Invalid(SyncError::Duplicate(id).to_string()),
            SyncError::Apply(e) => e,
        }
    }
}

/// Result with [`SyncError`].
pub type Result<T, E = SyncError> = std::result::Result<T, E>;
