//! sql-databricks-bridge: declarative pipelines that move data between SQL Server and Databricks.
//! Pipelines are YAML files rendered with per-country parameters and run as a DAG on DataFusion.

pub mod auth;
pub mod changes;
pub mod databricks;
pub mod diagnostics;
pub mod error;
pub mod mssql;
pub mod output_types;
pub mod pipeline;
pub mod secret;
#[cfg(feature = "server")]
pub mod server;
pub mod sinks;
pub mod sources;
pub mod sql;
#[cfg(feature = "server")]
pub mod sync;

pub use error::{Error, Location, Result};
