//! The API's failures: [`ApiError`], answered as an [`ErrorBody`] with its status, and the audit
//! helpers every handler uses to log what it started or refused.

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::server::AppState;
use crate::server::audit::{AuditEntry, AuditResult};

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorBody {
    /// A short code: `invalid_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `invalid_pipeline`, `invalid_input`, `not_ready`, `internal`.
    pub error: String,
    /// What is wrong, for people (file:line for pipeline problems).
    pub detail: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A failed request.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, error: &str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                detail: detail.into(),
                field: None,
            },
        }
    }

    pub(super) fn field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    pub(super) fn bad_request(field: &str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", detail).field(field)
    }

    pub(super) fn not_found(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub(super) fn internal(e: impl std::fmt::Display) -> Self {
        // Logged under the API's own target, as before the split into modules.
        tracing::error!(target: "bridge::server::api", error = %e, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        match e {
            E::Spec { .. } | E::Render { .. } | E::Plan { .. } | E::StepSql(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_pipeline",
                e.to_string(),
            ),
            E::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", m),
            // Every other invalid input (an output type Databricks cannot read) is the caller's
            // to fix too; the rest is the server's.
            e if e.is_invalid_input() => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                e.to_string(),
            ),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl AppState {
    /// Appends an audit line; the response waits for it (a lost audit line fails the request).
    pub(super) async fn audit(&self, entry: AuditEntry) -> Result<(), ApiError> {
        let audit = Arc::clone(&self.audit);
        tokio::task::spawn_blocking(move || audit.append(&entry))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)
    }

    /// Audits `entry` as refused with `detail`, then gives the error to answer with (or the
    /// audit log's own error when the line could not be written).
    pub(super) async fn refuse(
        &self,
        entry: AuditEntry,
        status: StatusCode,
        code: &str,
        detail: String,
    ) -> ApiError {
        let line = AuditEntry {
            result: AuditResult::Refused,
            error: Some(detail.clone()),
            ..entry
        };
        match self.audit(line).await {
            Ok(()) => ApiError::new(status, code, detail),
            Err(e) => e,
        }
    }
}

/// Error of a job or event not started because its audit line could not be written.
pub const UNAUDITED: &str =
    "not started: the audit log could not be written (see the server log); resubmit it";
