//! Databricks REST client: workspace configuration and auth, retries, the Files API (volumes)
//! and the SQL Statement Execution API (queries streamed as Arrow).
//!
//! Configuration follows Databricks' unified auth: `DATABRICKS_HOST` with `DATABRICKS_TOKEN` or
//! `DATABRICKS_CLIENT_ID`/`DATABRICKS_CLIENT_SECRET` (OAuth machine-to-machine), or a profile of
//! `~/.databrickscfg`. Secrets never appear in errors, logs or `Debug` output.

mod auth;
mod client;
mod config;
pub mod files;
pub mod probe;
pub mod statements;
pub mod types;

pub use auth::Secret;
pub use client::DatabricksClient;
pub use config::{AuthKind, DEFAULT_STATEMENT_TIMEOUT, DatabricksConfig, DatabricksSettings};
pub use files::VolumeStore;
pub use statements::{Disposition, StatementParam, StatementResult, TypedResult};
pub use types::{ResultTypes, TypeError};

/// Errors of the Databricks client.
#[derive(Debug, thiserror::Error)]
pub enum DatabricksError {
    /// The workspace configuration is missing or malformed (names the file and line, or the
    /// environment variable).
    #[error("{origin}: {message}")]
    Config { origin: String, message: String },
    /// Getting an OAuth token failed.
    #[error("OAuth token request to {host} failed: {message}")]
    Auth { host: String, message: String },
    /// The API answered with an error status.
    #[error("Databricks {method} {path} answered {status}{}: {message}", error_code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Api {
        method: String,
        path: String,
        status: u16,
        error_code: Option<String>,
        message: String,
    },
    /// The request could not be sent or its answer not read.
    #[error("Databricks {method} {path}: {message}")]
    Transport {
        method: String,
        path: String,
        message: String,
    },
    /// The answer did not have the documented shape.
    #[error("unexpected answer from Databricks {what}: {message}")]
    Protocol { what: String, message: String },
    /// A result column's type, or a value, the bridge does not read.
    #[error(transparent)]
    Types(#[from] TypeError),
    /// A SQL statement did not finish in time; it was canceled.
    #[error("statement {statement_id} did not finish within {}; it was canceled (databricks.statement_timeout_secs in config/defaults.yaml sets the limit)", humanize(*timeout))]
    StatementTimeout {
        statement_id: String,
        timeout: std::time::Duration,
    },
    /// A SQL statement failed, was canceled or closed on the warehouse.
    #[error("statement {statement_id} {state}{}: {message}", error_code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Statement {
        statement_id: String,
        state: String,
        error_code: Option<String>,
        message: String,
    },
}

impl DatabricksError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            DatabricksError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether this is a 404 (or a `RESOURCE_DOES_NOT_EXIST`/`NOT_FOUND` error code).
    pub fn is_not_found(&self) -> bool {
        match self {
            DatabricksError::Api {
                status, error_code, ..
            } => {
                *status == 404
                    || matches!(
                        error_code.as_deref(),
                        Some("NOT_FOUND" | "RESOURCE_DOES_NOT_EXIST")
                    )
            }
            _ => false,
        }
    }

    fn protocol(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        DatabricksError::Protocol {
            what: what.into(),
            message: message.to_string(),
        }
    }
}

/// `90 s`, `2 h`, `1.5 h` for messages.
fn humanize(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 120.0 {
        format!("{} s", (secs * 10.0).round() / 10.0)
    } else if secs < 7200.0 {
        format!("{} min", (secs / 6.0).round() / 10.0)
    } else {
        format!("{} h", (secs / 360.0).round() / 10.0)
    }
}

/// Result alias of the Databricks client.
pub type Result<T, E = DatabricksError> = std::result::Result<T, E>;
