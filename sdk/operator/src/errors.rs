//! The exceptions Python sees. Each carries the message the CLI prints for the same failure;
//! the class says what kind of failure it was, found by walking the error's causes:
//!
//! | class | raised when |
//! |---|---|
//! | `BridgeError` | the base class; anything not listed below (a pipeline file's error, ...) |
//! | `BridgeConnectionError` | SQL Server could not be reached or refused the login |
//! | `QueryError` | SQL Server refused a statement (syntax, unknown object, permission) |
//! | `SchemaMismatchError` | the input does not fit the target table, or the table does not exist |
//! | `LimitExceededError` | a write went over a limit the caller set (`max_delete_rows`) |
//! | `DataError` | a value the target cannot hold, duplicate keys, an input stream that failed |

use bridge::error::find_in_chain;
use bridge::mssql::{MssqlError, Phase};
use bridge::sinks::sqlserver::PlanError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    bridge_operator,
    BridgeError,
    PyException,
    "Base class of the operator's errors."
);
create_exception!(
    bridge_operator,
    BridgeConnectionError,
    BridgeError,
    "SQL Server could not be reached, or refused the login."
);
create_exception!(
    bridge_operator,
    QueryError,
    BridgeError,
    "SQL Server refused a statement."
);
create_exception!(
    bridge_operator,
    SchemaMismatchError,
    BridgeError,
    "The input does not fit the target table, or the table does not exist."
);
create_exception!(
    bridge_operator,
    LimitExceededError,
    BridgeError,
    "A write went over a limit the caller set; nothing was changed."
);
create_exception!(
    bridge_operator,
    DataError,
    BridgeError,
    "A value the target cannot hold, duplicate keys, or an input that failed mid-stream."
);

/// The kind of a bridge failure, from its chain of causes (through DataFusion's wrappers too).
fn kind(error: &bridge::Error) -> Kind {
    if error.refusal().is_some() {
        return Kind::Limit;
    }
    if let Some(m) = find_in_chain::<MssqlError>(error) {
        return match m.phase {
            Phase::Query => Kind::Query,
            _ => Kind::Connection,
        };
    }
    if find_in_chain::<PlanError>(error).is_some() {
        return Kind::Schema;
    }
    match error {
        bridge::Error::Step { .. } | bridge::Error::OutputType(_) => Kind::Data,
        _ => Kind::Other,
    }
}

enum Kind {
    Connection,
    Query,
    Schema,
    Limit,
    Data,
    Other,
}

/// The Python exception of a bridge error, with the CLI's message.
pub fn to_py(error: bridge::Error) -> PyErr {
    let message = error.to_string();
    match kind(&error) {
        Kind::Connection => BridgeConnectionError::new_err(message),
        Kind::Query => QueryError::new_err(message),
        Kind::Schema => SchemaMismatchError::new_err(message),
        Kind::Limit => LimitExceededError::new_err(message),
        Kind::Data => DataError::new_err(message),
        Kind::Other => BridgeError::new_err(message),
    }
}

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("BridgeError", py.get_type::<BridgeError>())?;
    m.add(
        "BridgeConnectionError",
        py.get_type::<BridgeConnectionError>(),
    )?;
    m.add("QueryError", py.get_type::<QueryError>())?;
    m.add("SchemaMismatchError", py.get_type::<SchemaMismatchError>())?;
    m.add("LimitExceededError", py.get_type::<LimitExceededError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    Ok(())
}
