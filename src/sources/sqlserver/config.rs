//! The `sqlserver` source's configuration: a T-SQL query or table, read in batches, optionally
//! by key ranges on several connections or past an incremental watermark.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Access;
use crate::error::Result;
use crate::pipeline::resources::{Declaring, ResourceContext};
use crate::pipeline::spec::{FieldError, check_column_names};
use crate::sources::{QueryText, Source, SourceConfig, SourceContext};
use crate::sql::Dialect;

/// A SQL Server query source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlServerSourceSpec {
    /// SQL file to run (under `queries/`); values must use `{{ name | bind }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Inline T-SQL to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// A whole table to read (`schema.table`), as an alternative to `query`/`sql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Rows per Arrow batch (default 8192).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Read N key ranges of an integer column on N connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionSpec>,
    /// Read only rows past the last committed watermark of a column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalSpec>,
    /// Connection settings overriding `sqlserver:` in `config/` and `SQLSERVER_*` variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<crate::mssql::SqlServerSettings>,
    /// Next to each `datetimeoffset` column (read as a UTC instant), add `<column>_offset_minutes`
    /// (smallint) with the value's original offset from UTC.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_offsets: bool,
}

/// Incremental extraction: each run reads rows whose `column` is greater than the highest value
/// committed by the previous run of this pipeline, country and step (kept in `.bridge/state.db`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncrementalSpec {
    /// Ever-increasing column (an id, a modification time).
    pub column: String,
    /// Lower bound for the first run (exclusive); without it the first run reads everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<String>,
}

/// Parallel extraction by ranges of an integer column.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    /// Integer column whose [min, max] range is split.
    pub column: String,
    /// Number of ranges (and connections).
    pub partitions: u32,
}

impl SourceConfig for SqlServerSourceSpec {
    fn query(&self) -> Option<QueryText<'_>> {
        Some(QueryText::new(
            "sqlserver",
            Dialect::SqlServer,
            &self.query,
            &self.sql,
            &self.table,
        ))
    }

    /// The partition and watermark columns are quoted into SQL: each must be one identifier.
    fn check(&self) -> std::result::Result<(), FieldError> {
        check_column_names("partition.column", self.partition.iter().map(|p| &p.column))?;
        check_column_names(
            "incremental.column",
            self.incremental.iter().map(|i| &i.column),
        )
    }

    /// The table, or every table the query reads (a query that is not only `SELECT`s, or
    /// cannot be parsed, leaves the reads unknown: API callers may not run it).
    fn resources(&self, cx: &ResourceContext<'_>) -> Declaring {
        let database = self.connection.as_ref().and_then(|c| c.database.as_deref());
        cx.query_tables(self.table.as_ref(), Dialect::SqlServer)?
            .iter()
            .map(|n| Ok((cx.sql_table(n, database)?, Access::Read, false)))
            .collect()
    }

    fn build(&self, cx: &SourceContext<'_>) -> Result<Box<dyn Source>> {
        Ok(Box::new(super::SqlServerSource::new(
            cx.step,
            self,
            cx.project.sqlserver_settings()?,
            cx.project.root(),
            cx.run,
            cx.sub_microsecond,
        )?))
    }
}
