//! Error types of the Databricks double.
//! `Error` is the public error of the seeding helpers; `ApiError` is an HTTP error answered as Databricks JSON.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Error of the direct (non-HTTP) helpers such as [`crate::DatabricksDouble::execute_sql`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite refused a statement or a value.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Local file system error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The statement failed the way a Databricks statement fails (`status.error`).
    #[error("{code}: {message}")]
    Statement {
        /// Databricks error code, e.g. `BAD_REQUEST`.
        code: String,
        /// Human readable message.
        message: String,
    },
}

/// An HTTP error answered as `{"error_code": ..., "message": ...}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// HEAD requests answer errors without a body.
    pub empty_body: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            empty_body: false,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "MALFORMED_REQUEST", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub fn does_not_exist(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", message)
    }

    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "ALREADY_EXISTS", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
    }

    pub fn without_body(mut self) -> Self {
        self.empty_body = true;
        self
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::internal(format!("i/o error in the double: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.empty_body {
            return self.status.into_response();
        }
        json_response(
            self.status,
            &serde_json::json!({ "error_code": self.code, "message": self.message }),
        )
    }
}

/// A JSON response with `content-type: application/json`.
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = value.to_string();
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
