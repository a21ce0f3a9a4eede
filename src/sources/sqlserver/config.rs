//! The `sqlserver` source's configuration: a T-SQL query or table, read in batches, optionally
//! by key ranges on several connections or past an incremental watermark.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Access;
use crate::error::Result;
use crate::pipeline::resources::{Declaring, ResourceContext};
use crate::pipeline::spec::{FieldError, check_column_names};
use crate::sources::{QueryText, Source, SourceConfig, SourceContext, StateContext};
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
    pub incremental: Option<Box<IncrementalSpec>>,
    /// Connection settings overriding `sqlserver:` in `config/` and `SQLSERVER_*` variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<crate::mssql::SqlServerSettings>,
    /// Next to each `datetimeoffset` column (read as a UTC instant), add `<column>_offset_minutes`
    /// (smallint) with the value's original offset from UTC.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_offsets: bool,
}

/// Incremental extraction, in one of two modes:
/// - `watermark` (the default, with `column`): each run reads rows whose `column` is greater than
///   the highest value committed by the previous run of this pipeline, country and step. It sees
///   inserts and updates that move the column, never deletes.
/// - `change_tracking` (with `table`): SQL Server Change Tracking. The first run reads a
///   consistent snapshot of the table (snapshot isolation) and records its change version; each
///   later run reads the keys changed since the last committed version, one row per key with
///   `_change_op` (`insert`, `update`, `delete`) and `_change_version`, deleted keys carrying
///   their key columns. Feed it to a `delta` sink with `mode: merge`, or a `volume` sink.
///
/// What was read is recorded (in `.bridge/state.db`) only once the run commits: dry runs and
/// failed runs read the same rows again next time.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncrementalSpec {
    /// `watermark` (default) or `change_tracking`.
    #[serde(default)]
    pub mode: IncrementalMode,
    /// Watermark: the ever-increasing column (an id, a modification time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Watermark: lower bound for the first run (exclusive); without it the first run reads
    /// everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<String>,
    /// Change tracking: the key columns (default: the table's primary key, which change
    /// tracking requires).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Change tracking: what a run does when the saved version is older than the table's
    /// `CHANGE_TRACKING_MIN_VALID_VERSION` (changes were cleaned up before they were read):
    /// `fail` (default) or `full_refresh` (read a new snapshot).
    #[serde(default)]
    pub on_expired: OnExpired,
}

/// How an incremental source finds what changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncrementalMode {
    /// Rows past the highest committed value of `column`.
    #[default]
    Watermark,
    /// SQL Server Change Tracking: inserts, updates and deletes since the committed version.
    ChangeTracking,
}

/// What a change-tracking source does when its saved version has expired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExpired {
    /// Fail, naming the table, both versions and how to resync.
    #[default]
    Fail,
    /// Read a new snapshot of the whole table.
    FullRefresh,
}

impl IncrementalSpec {
    /// The watermark column, for the watermark mode (checked by [`SourceConfig::check`]).
    pub fn watermark_column(&self) -> Option<&str> {
        match self.mode {
            IncrementalMode::Watermark => self.column.as_deref(),
            IncrementalMode::ChangeTracking => None,
        }
    }
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

    /// The partition, watermark and key columns are quoted into SQL: each must be one
    /// identifier. Change tracking reads one `table` in one snapshot, so it takes no query and
    /// no partitions.
    fn check(&self) -> std::result::Result<(), FieldError> {
        check_column_names("partition.column", self.partition.iter().map(|p| &p.column))?;
        let Some(inc) = &self.incremental else {
            return Ok(());
        };
        check_column_names("incremental.column", inc.column.iter())?;
        check_column_names("incremental.keys", inc.keys.iter())?;
        let refuse = |field: &str, message: &str| Err(FieldError::new(field, message));
        match inc.mode {
            IncrementalMode::Watermark => {
                if inc.column.is_none() {
                    return refuse(
                        "incremental.column",
                        "the watermark mode needs the ever-increasing column to read past (or `mode: change_tracking`)",
                    );
                }
                if !inc.keys.is_empty() {
                    return refuse(
                        "incremental.keys",
                        "only `mode: change_tracking` takes keys",
                    );
                }
                if inc.on_expired != OnExpired::Fail {
                    return refuse(
                        "incremental.on_expired",
                        "only `mode: change_tracking` has versions that expire",
                    );
                }
            }
            IncrementalMode::ChangeTracking => {
                if self.table.is_none() {
                    return refuse(
                        "table",
                        "change tracking reads one table: name it with `table:` (not `query`/`sql`)",
                    );
                }
                if self.partition.is_some() {
                    return refuse(
                        "partition",
                        "change tracking reads the table in one snapshot transaction, on one connection",
                    );
                }
                for (field, set) in [
                    ("incremental.column", inc.column.is_some()),
                    ("incremental.initial", inc.initial.is_some()),
                ] {
                    if set {
                        return refuse(
                            field,
                            "only the watermark mode takes it; change tracking reads versions",
                        );
                    }
                }
            }
        }
        Ok(())
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

    fn incremental_state(&self, cx: &StateContext<'_>) -> Result<Option<String>> {
        let Some(inc) = &self.incremental else {
            return Ok(None);
        };
        Ok(Some(match inc.mode {
            IncrementalMode::Watermark => {
                let saved = cx.store.get(cx.pipeline, cx.country, cx.step)?;
                format!(
                    "watermark on `{}`, {}",
                    inc.column.as_deref().unwrap_or_default(),
                    match (saved, &inc.initial) {
                        (Some(value), _) =>
                            format!("saved value {value}: the next run reads rows past it"),
                        (None, Some(initial)) => format!(
                            "no saved value: the next run reads rows past the initial {initial}"
                        ),
                        (None, None) => "no saved value: the next run reads every row".to_string(),
                    }
                )
            }
            IncrementalMode::ChangeTracking => {
                let saved =
                    super::change_tracking::saved_in(cx.store, cx.pipeline, cx.country, cx.step)?;
                format!(
                    "change_tracking, {}",
                    match saved {
                        Some(version) => format!(
                            "saved version {version}: the next run reads the changes after it"
                        ),
                        None => "no saved version: the next run reads a snapshot of the table"
                            .to_string(),
                    }
                )
            }
        }))
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
