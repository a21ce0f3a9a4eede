//! Error types of the TDS test server.
//! `Error` is the public error; `SqlError` is a T-SQL error that is sent to the client as a TDS ERROR token.

use std::fmt;

/// Errors returned by the public API and by a connection's internals.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A socket or file operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that do not follow the TDS protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The connection was closed (by the peer, by shutdown or by a fault plan).
    #[error("connection closed")]
    Closed,
}

impl Error {
    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        Error::Protocol(msg.into())
    }
}

/// A T-SQL level error, sent to the client as an ERROR token (number, state, class, message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// SQL Server error number (e.g. 208 "Invalid object name").
    pub number: u32,
    /// Error state.
    pub state: u8,
    /// Severity class (16 = user error, 14 = login failure).
    pub class: u8,
    /// Human readable message.
    pub message: String,
}

impl SqlError {
    /// A class-16 user error with state 1.
    pub fn new(number: u32, message: impl Into<String>) -> Self {
        SqlError {
            number,
            state: 1,
            class: 16,
            message: message.into(),
        }
    }

    /// "Incorrect syntax" (102).
    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new(102, message)
    }

    /// A construct this server does not implement (error 50000 with a descriptive message).
    pub fn unsupported(what: impl fmt::Display) -> Self {
        Self::new(
            50000,
            format!("tds-test-server does not support this T-SQL construct: {what}"),
        )
    }

    /// Conversion failure (245 / 8114 family).
    pub fn conversion(message: impl Into<String>) -> Self {
        Self::new(245, message)
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Msg {}, Level {}: {}",
            self.number, self.class, self.message
        )
    }
}

impl std::error::Error for SqlError {}

/// Map a SQLite error to the closest SQL Server error number and message.
pub(crate) fn map_sqlite_error(err: &rusqlite::Error) -> SqlError {
    use rusqlite::ErrorCode;
    let msg = err.to_string();
    // Prepare errors that point at a token come as SqlInputError (message without the offset).
    let failure = match err {
        rusqlite::Error::SqliteFailure(e, detail) => Some((e, detail.clone())),
        rusqlite::Error::SqlInputError { error, msg, .. } => Some((error, Some(msg.clone()))),
        _ => None,
    };
    if let Some((e, detail)) = failure {
        let text = detail.unwrap_or_else(|| msg.clone());
        match e.code {
            ErrorCode::ConstraintViolation => {
                if text.contains("NOT NULL") {
                    return SqlError::new(
                        515,
                        format!("Cannot insert the value NULL into column ({text})."),
                    );
                }
                if text.contains("UNIQUE") || text.contains("PRIMARY KEY") {
                    return SqlError::new(
                        2627,
                        format!(
                            "Violation of PRIMARY KEY or UNIQUE KEY constraint. Cannot insert duplicate key ({text})."
                        ),
                    );
                }
                return SqlError::new(
                    547,
                    format!("The statement conflicted with a constraint ({text})."),
                );
            }
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                return SqlError::new(
                    1222,
                    format!("Lock request time out period exceeded ({text})."),
                );
            }
            _ => {}
        }
        // Raised on purpose by `__TDS_RAISE(number, message)` (functions.rs).
        if let Some((number, message)) = text
            .strip_prefix(crate::functions::RAISE_PREFIX)
            .and_then(|r| r.split_once(": "))
            && let Ok(number) = number.parse()
        {
            return SqlError::new(number, message);
        }
        if let Some(name) = text.strip_prefix("no such table: ") {
            return SqlError::new(208, format!("Invalid object name '{name}'."));
        }
        if let Some(name) = text.strip_prefix("no such column: ") {
            return SqlError::new(207, format!("Invalid column name '{name}'."));
        }
        if text.contains("syntax error") || text.contains("incomplete input") {
            return SqlError::syntax(format!("Incorrect syntax ({text})."));
        }
        if let Some(rest) = text.strip_prefix("table ")
            && let Some(name) = rest.strip_suffix(" already exists")
        {
            return SqlError::new(
                2714,
                format!("There is already an object named '{name}' in the database."),
            );
        }
        return SqlError::new(50000, format!("SQLite error: {text}"));
    }
    SqlError::new(50000, format!("SQLite error: {msg}"))
}
