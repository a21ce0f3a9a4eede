//! SQL Server over TDS with tiberius: settings, connections and pools, and the type mapping.
//! The `sqlserver` source and sink are built on this module.

pub mod connect;
pub mod settings;
pub mod types;

pub use connect::{Client, MssqlError, Phase, Pool, connect, pool, test_connection};
pub use settings::SqlServerSettings;

use crate::sql::SqlValue;

/// Binds a bridge value to a tiberius query.
pub fn bind(query: &mut tiberius::Query<'_>, value: &SqlValue) {
    match value {
        SqlValue::Null => query.bind(Option::<&str>::None),
        SqlValue::Bool(b) => query.bind(*b),
        SqlValue::Int(i) => query.bind(*i),
        SqlValue::Float(f) => query.bind(*f),
        SqlValue::Text(s) => query.bind(s.clone()),
    }
}

/// The `@params` declaration of `sp_executesql` / `sp_describe_first_result_set` for these values.
pub fn param_declarations(values: &[SqlValue]) -> String {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ty = match v {
                SqlValue::Null | SqlValue::Text(_) => "nvarchar(4000)",
                SqlValue::Bool(_) => "bit",
                SqlValue::Int(_) => "bigint",
                SqlValue::Float(_) => "float",
            };
            format!("@P{} {ty}", i + 1)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A T-SQL `N'...'` literal (quotes doubled). Used only for SQL text handed to
/// `sp_describe_first_result_set`, never for values.
pub fn nstring_literal(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}
