//! The `sqlserver` sink's configuration: a table changed in one transaction by `insert`,
//! `upsert`, `update`, `delete` or `replace`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Access;
use crate::error::Result;
use crate::pipeline::resources::{Declaring, ResourceContext};
use crate::pipeline::spec::{FieldError, check_column_names};
use crate::sinks::{Sink, SinkConfig, SinkContext};

/// Writes rows into a SQL Server table in one transaction.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlServerSinkSpec {
    /// The step whose rows are written.
    pub from: String,
    /// Target table, `schema.table` or `table`.
    pub table: String,
    /// `insert` (bulk load), `upsert` (by `primary_keys`), `update` (rows whose keys match take
    /// the input's other columns; input rows without a match are ignored), `delete` (rows whose
    /// keys match) or `replace` (empty the table, then insert).
    pub mode: SqlServerWriteMode,
    /// Key columns for `upsert`, `update` and `delete`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_keys: Vec<String>,
    /// Refuse (and change nothing) if more rows than this would be deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delete_rows: Option<u64>,
    /// A key recorded in `dbo.bridge_applied_keys` in the same transaction; a run whose key is
    /// already recorded changes nothing (it reports the rows recorded with the key). At most 200
    /// characters. The table is created when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Connection settings overriding `sqlserver:` in `config/` and `SQLSERVER_*` variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<crate::mssql::SqlServerSettings>,
}

/// How a SQL Server sink changes its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SqlServerWriteMode {
    /// Add the input rows (a bulk load).
    Insert,
    /// Update the rows whose `primary_keys` match, insert the others.
    Upsert,
    /// Update the rows whose `primary_keys` match with the input's other columns; input rows
    /// without a match are ignored. The rows written are the rows updated.
    Update,
    /// Delete the rows whose `primary_keys` match.
    Delete,
    /// Empty the table, then insert.
    Replace,
}

impl SinkConfig for SqlServerSinkSpec {
    fn from(&self) -> &str {
        &self.from
    }

    fn describe(&self) -> String {
        format!("{} (sqlserver, {:?})", self.table, self.mode)
    }

    fn check(&self) -> std::result::Result<(), FieldError> {
        check_column_names("primary_keys", self.primary_keys.iter())
    }

    /// The table; `delete` and `replace` delete rows (the grant's `max_delete_rows` applies).
    fn resources(&self, cx: &ResourceContext<'_>) -> Declaring {
        let database = self.connection.as_ref().and_then(|c| c.database.as_deref());
        let deletes = matches!(
            self.mode,
            SqlServerWriteMode::Delete | SqlServerWriteMode::Replace
        );
        Ok(vec![(
            cx.sql_table(&self.table, database)?,
            Access::Write,
            deletes,
        )])
    }

    fn cap_deletes(&mut self, limit: u64) {
        self.max_delete_rows = Some(self.max_delete_rows.map_or(limit, |l| l.min(limit)));
    }

    fn build(&self, cx: &SinkContext<'_>) -> Result<Box<dyn Sink>> {
        Ok(Box::new(super::SqlServerSink::new(
            &cx.step.id,
            self,
            cx.project.sqlserver_settings()?,
        )?))
    }
}
