//! The pipeline file format: serde types that are also the JSON Schema and the reference docs.
//! One struct per step kind; `deny_unknown_fields` everywhere so typos are errors, not silent defaults.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Location, Result};

/// A pipeline: named steps that read (sources), compute (transforms) and write (sinks).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Name of the pipeline, used in run summaries, output manifests and job listings.
    pub name: String,
    /// What the pipeline is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Cron expression (5 or 6 fields) for `bridge serve` to run this pipeline on schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Countries the scheduled runs are for (one job each); without it, one job with no country.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Default values of template parameters; overridden by `config/` and `--param`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub params: BTreeMap<String, serde_yaml::Value>,
    /// How many independent steps may run at the same time (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<usize>,
    /// The steps, in any order; dependencies come from `from:`, table names in SQL and `depends_on`.
    pub steps: Vec<StepSpec>,
}

/// One step of a pipeline: exactly one of `source`, `transform` or `sink`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Identifier of the step; transforms and sinks refer to earlier steps by it (as a table name).
    pub id: String,
    /// What the step does, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Steps that must finish before this one starts, besides those it reads from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Reads data into the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceSpec>,
    /// Computes a table from earlier steps with SQL (DataFusion dialect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<TransformSpec>,
    /// Writes the output of an earlier step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkSpec>,
}

/// The role a step plays in the DAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Source,
    Transform,
    Sink,
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StepKind::Source => "source",
            StepKind::Transform => "transform",
            StepKind::Sink => "sink",
        })
    }
}

/// Where the SQL of a step comes from: a file under `queries/` or inline text.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlText {
    /// A SQL file name, looked up in `queries/{country}/` then `queries/common/`, rendered with the run's parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Inline SQL, rendered with the run's parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

/// Reads a table into the pipeline.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceSpec {
    /// A query against a SQLite database file (the embedded default), streamed in batches.
    Sqlite(SqliteSourceSpec),
    /// Parquet file(s): a file, a directory or a glob.
    Parquet(FileSourceSpec),
    /// CSV file(s) with a header row.
    Csv(CsvSourceSpec),
    /// A Delta table (local path or URL).
    Delta(DeltaSourceSpec),
    /// A query on SQL Server, values bound as parameters, streamed in batches.
    Sqlserver(SqlServerSourceSpec),
    /// A Unity Catalog table or query read through a Databricks SQL warehouse (Statement
    /// Execution API, Arrow results streamed chunk by chunk).
    Databricks(DatabricksSourceSpec),
}

/// A Databricks SQL source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabricksSourceSpec {
    /// SQL file to run (under `queries/`); values must use `{{ name | bind }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Inline Databricks SQL to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// A whole table to read (`catalog.schema.table`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// SQL warehouse to run on (default: `databricks.warehouse_id` in config/defaults.yaml, the
    /// profile's `warehouse_id`, or `DATABRICKS_WAREHOUSE_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warehouse_id: Option<String>,
    /// How results come back: `external_links` (default: Arrow files behind presigned links,
    /// any size) or `inline` (JSON chunks in the API answers, at most 25 MiB in all).
    #[serde(default, skip_serializing_if = "is_default")]
    pub disposition: ResultDisposition,
}

/// How a `databricks` source's result is fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultDisposition {
    /// `EXTERNAL_LINKS` + `ARROW_STREAM`.
    #[default]
    ExternalLinks,
    /// `INLINE` + `JSON_ARRAY`.
    Inline,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

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

/// A SQLite query source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqliteSourceSpec {
    /// Path of the database file, relative to the project root.
    pub database: String,
    /// SQL file to run (under `queries/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Inline SQL to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// A whole table to read (`SELECT *`), as an alternative to `query`/`sql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Rows per Arrow batch (default 8192).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// SQL script that creates the database when the file does not exist yet (demo and dev databases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
}

/// A Parquet source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceSpec {
    /// File, directory or glob, relative to the project root.
    pub path: String,
}

/// A CSV source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvSourceSpec {
    /// File, directory or glob, relative to the project root.
    pub path: String,
    /// Whether the first line holds column names (default true).
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// Field delimiter, one ASCII character (default `,`).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
}

/// A Delta table source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeltaSourceSpec {
    /// Table location: a local path (relative to the project root) or a URL.
    pub path: String,
    /// Read this table version instead of the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// SQL over earlier steps, which appear as tables named by their ids.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformSpec {
    /// Inline SQL (DataFusion dialect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// SQL file (under `queries/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// Writes the output of an earlier step.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkSpec {
    /// Parquet files in a volume folder (local path or cloud URL), committed atomically.
    Volume(VolumeSinkSpec),
    /// A Delta table, appended to or overwritten in one commit.
    Delta(DeltaSinkSpec),
    /// A SQL Server table: insert, upsert, delete or replace, in one transaction.
    Sqlserver(SqlServerSinkSpec),
}

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

impl SinkSpec {
    /// The step this sink reads from.
    pub fn from(&self) -> &str {
        match self {
            SinkSpec::Volume(v) => &v.from,
            SinkSpec::Delta(d) => &d.from,
            SinkSpec::Sqlserver(s) => &s.from,
        }
    }

    /// What a sink writing for Databricks does with digits below the microsecond; `None` for
    /// sinks that do not write for Databricks.
    pub fn sub_microsecond(&self) -> Option<crate::output_types::SubMicrosecond> {
        match self {
            SinkSpec::Volume(v) => Some(v.sub_microsecond),
            SinkSpec::Delta(d) => Some(d.sub_microsecond),
            SinkSpec::Sqlserver(_) => None,
        }
    }
}

/// Parquet files written under `destination/path/`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeSinkSpec {
    /// The step whose rows are written.
    pub from: String,
    /// Root of the volume: a local directory (relative to the project root), a Unity Catalog
    /// volume (`/Volumes/catalog/schema/volume/...`, written through the Databricks Files API) or
    /// a URL (`s3://`, `az://`, `abfss://`, `gs://`).
    pub destination: String,
    /// Folder under the destination owned by this sink; each run replaces its content.
    /// Relative, without `..`.
    pub path: String,
    /// Base name of the files (default: the step id); files are `{file_name}-{n:05}.parquet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Parquet compression (default zstd).
    #[serde(default)]
    pub compression: Compression,
    /// Rows per Parquet row group (default 1,048,576).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_group_size: Option<usize>,
    /// Start a new file after this many rows (default: one file per partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows_per_file: Option<usize>,
    /// Write one `column=value/` folder per value of this column (Hive-style).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_by: Option<String>,
    /// Timestamp digits below the microsecond (SQL Server `datetime2(7)`): `truncate` (default;
    /// counted in the run summary and `_SUCCESS`), `error` (fail naming column and row) or
    /// `nanoseconds` (keep them; Spark and Databricks cannot read such files).
    #[serde(default)]
    pub sub_microsecond: crate::output_types::SubMicrosecond,
}

/// Parquet compression codecs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Snappy,
    Gzip,
    Lz4,
    None,
}

/// A Delta table written in one commit.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeltaSinkSpec {
    /// The step whose rows are written.
    pub from: String,
    /// Table location: a local path (relative to the project root) or a URL.
    pub path: String,
    /// `append` adds rows; `overwrite` replaces the table's content (default `append`).
    #[serde(default)]
    pub mode: DeltaWriteMode,
    /// Partition columns for a new table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_by: Vec<String>,
    /// Timestamp digits below the microsecond (SQL Server `datetime2(7)`): `truncate` (default;
    /// counted in the run summary) or `error` (fail naming column and row). Delta timestamps
    /// are microseconds, so `nanoseconds` is refused.
    #[serde(default)]
    pub sub_microsecond: crate::output_types::SubMicrosecond,
}

/// How a Delta sink treats existing rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeltaWriteMode {
    #[default]
    Append,
    Overwrite,
}

fn default_true() -> bool {
    true
}

fn default_delimiter() -> char {
    ','
}

impl StepSpec {
    /// The step's role, or an error if it declares none or several.
    pub fn kind(&self, file: &Path, text: &str) -> Result<StepKind> {
        let kinds: Vec<StepKind> = [
            self.source.as_ref().map(|_| StepKind::Source),
            self.transform.as_ref().map(|_| StepKind::Transform),
            self.sink.as_ref().map(|_| StepKind::Sink),
        ]
        .into_iter()
        .flatten()
        .collect();
        match kinds.as_slice() {
            [kind] => Ok(*kind),
            [] => Err(Error::Spec {
                location: Location::at(file, step_line(text, &self.id)),
                message: format!(
                    "step `{}` has no kind: expected exactly one of `source`, `transform` or `sink`",
                    self.id
                ),
            }),
            _ => Err(Error::Spec {
                location: Location::at(file, step_line(text, &self.id)),
                message: format!(
                    "step `{}` declares {}: expected exactly one of `source`, `transform` or `sink`",
                    self.id,
                    kinds
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            }),
        }
    }
}

/// Parses a rendered pipeline document; errors name the file, line and field path.
pub fn parse_pipeline(file: &Path, text: &str) -> Result<PipelineSpec> {
    serde_yaml::from_str(text).map_err(|e| yaml_error(file, text, &e))
}

/// Turns a serde_yaml error into a located [`Error::Spec`]. serde_yaml places errors inside a
/// tagged step kind at the step; the line of the offending key or value is looked up instead.
pub fn yaml_error(file: &Path, text: &str, e: &serde_yaml::Error) -> Error {
    let (mut line, mut column) = e
        .location()
        .map(|l| (Some(l.line()), Some(l.column())))
        .unwrap_or((None, None));
    let message = e.to_string();
    let culprit = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| message.split_once(p))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name.to_string());
    if let (Some(start), Some(name)) = (line, culprit) {
        let found = text.lines().enumerate().skip(start - 1).find_map(|(i, l)| {
            let body = l.trim_start().trim_start_matches("- ");
            let indent = l.len() - body.len();
            let key = body
                .strip_prefix(name.as_str())
                .is_some_and(|r| r.starts_with(':'));
            let value = body
                .split_once(':')
                .is_some_and(|(_, v)| v.trim().trim_matches(|c| c == '"' || c == '\'') == name);
            (key || value).then_some((i + 1, indent + 1))
        });
        if let Some((l, c)) = found {
            line = Some(l);
            column = Some(c);
        }
    }
    // serde_yaml appends " at line L column C" to its message; the location is printed in front instead.
    let mut message = message;
    if let Some(pos) = message.find(" at line ") {
        message.truncate(pos);
    }
    Error::Spec {
        location: Location {
            file: file.to_path_buf(),
            line,
            column,
        },
        message,
    }
}

/// The 1-based line where the step with this id is declared in the document, if it can be found.
pub fn step_line(text: &str, id: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let line = line.trim_start().trim_start_matches('-').trim_start();
            line.strip_prefix("id:")
                .map(|rest| rest.trim().trim_matches(|c| c == '"' || c == '\'') == id)
                .unwrap_or(false)
        })
        .map(|i| i + 1)
}

/// The JSON Schema of pipeline files, as committed in `schemas/pipeline.schema.json`.
pub fn pipeline_json_schema() -> String {
    let schema = schemars::schema_for!(PipelineSpec);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema always serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_names_line_and_field() {
        let text =
            "name: x\nsteps:\n  - id: a\n    source:\n      type: sqlite\n      databse: x.db\n";
        let err = parse_pipeline(Path::new("p.yaml"), text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("p.yaml:6:7: steps[0]: unknown field `databse`"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_source_type_lists_expected() {
        let text = "name: x\nsteps:\n  - id: a\n    source:\n      type: oracle\n      path: x\n";
        let msg = parse_pipeline(Path::new("p.yaml"), text)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown variant `oracle`"), "{msg}");
        assert!(msg.contains("sqlite"), "{msg}");
    }

    #[test]
    fn step_line_finds_ids() {
        let text = "steps:\n  - id: a\n  - id: \"b\"\n";
        assert_eq!(step_line(text, "a"), Some(2));
        assert_eq!(step_line(text, "b"), Some(3));
        assert_eq!(step_line(text, "c"), None);
    }

    #[test]
    fn step_kind_must_be_unique() {
        let text = "name: x\nsteps:\n  - id: a\n    transform: {sql: select 1}\n    sink: {type: delta, from: a, path: t}\n";
        let spec = parse_pipeline(Path::new("p.yaml"), text).unwrap();
        let err = spec.steps[0].kind(Path::new("p.yaml"), text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.yaml:3: step `a` declares `transform` and `sink`: expected exactly one of `source`, `transform` or `sink`"
        );
    }
}
