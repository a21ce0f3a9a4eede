//! The pipeline file format: serde types that are also the JSON Schema and the reference docs.
//! The step kinds' configurations live in their folders (`sources/<kind>/config.rs`,
//! `sinks/<kind>/config.rs`); the tagged enums here gather them, each with the one match that
//! hands out a kind's [`SourceConfig`](crate::sources::SourceConfig) or
//! [`SinkConfig`](crate::sinks::SinkConfig). `deny_unknown_fields` everywhere so typos are errors.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Location, Result};

// Each kind's configuration lives in its folder; the format is all of them.
pub use crate::sinks::delta::config::{DeltaSinkSpec, DeltaWriteMode};
pub use crate::sinks::sqlserver::config::{SqlServerSinkSpec, SqlServerWriteMode};
pub use crate::sinks::volume::config::{Compression, VolumeSchemaEvolution, VolumeSinkSpec};
pub use crate::sources::csv::config::CsvSourceSpec;
pub use crate::sources::databricks::config::{DatabricksSourceSpec, ResultDisposition};
pub use crate::sources::delta::config::DeltaSourceSpec;
pub use crate::sources::parquet::config::FileSourceSpec;
pub use crate::sources::sqlite::config::SqliteSourceSpec;
pub use crate::sources::sqlserver::config::{IncrementalSpec, PartitionSpec, SqlServerSourceSpec};

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

impl SourceSpec {
    /// The kind's configuration: the one place that matches on the kinds.
    pub fn config(&self) -> &dyn crate::sources::SourceConfig {
        match self {
            SourceSpec::Sqlite(c) => c,
            SourceSpec::Parquet(c) => c,
            SourceSpec::Csv(c) => c,
            SourceSpec::Delta(c) => c,
            SourceSpec::Sqlserver(c) => c,
            SourceSpec::Databricks(c) => c,
        }
    }
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

impl SinkSpec {
    /// The kind's configuration: the one place that matches on the kinds.
    pub fn config(&self) -> &dyn crate::sinks::SinkConfig {
        match self {
            SinkSpec::Volume(c) => c,
            SinkSpec::Delta(c) => c,
            SinkSpec::Sqlserver(c) => c,
        }
    }

    /// The kind's configuration, to change it (see [`SinkConfig::cap_deletes`]).
    pub fn config_mut(&mut self) -> &mut dyn crate::sinks::SinkConfig {
        match self {
            SinkSpec::Volume(c) => c,
            SinkSpec::Delta(c) => c,
            SinkSpec::Sqlserver(c) => c,
        }
    }
}

/// A field of a step's configuration that its kind refused ([`SourceConfig::check`],
/// [`SinkConfig::check`]); the plan prints it after the step and its role
/// (`step `out`: sink.primary_keys: ...`).
///
/// [`SourceConfig::check`]: crate::sources::SourceConfig::check
/// [`SinkConfig::check`]: crate::sinks::SinkConfig::check
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field, from the kind's configuration (`primary_keys`, `partition.column`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A refusal of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Checks that each named column is one identifier: kinds quote them into SQL, so `bridge
/// validate` refuses what the run would refuse.
pub fn check_column_names<'a>(
    field: &str,
    columns: impl IntoIterator<Item = &'a String>,
) -> std::result::Result<(), FieldError> {
    for column in columns {
        match crate::sql::validate_ident(column) {
            Ok(parts) if parts.len() == 1 => {}
            Ok(_) => {
                return Err(FieldError::new(
                    field,
                    format!("`{column}` must be one column name"),
                ));
            }
            Err(e) => return Err(FieldError::new(field, e.to_string())),
        }
    }
    Ok(())
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
