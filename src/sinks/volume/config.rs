//! The `volume` sink's configuration: Parquet files in a folder of a volume (local, Unity
//! Catalog or object store), replaced atomically by each run.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Access;
use crate::error::Result;
use crate::output_types::SubMicrosecond;
use crate::pipeline::project::{check_owned_folder, check_relative};
use crate::pipeline::resources::{Declaring, Resource, ResourceContext};
use crate::pipeline::spec::{FieldError, check_column_names};
use crate::sinks::{Sink, SinkConfig, SinkContext};

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
    /// Parquet compression (default zstd). Encodings are chosen per file and column: a column
    /// whose first 8,192 rows in the file are more than 90 % distinct is written PLAIN, the
    /// others with a dictionary.
    #[serde(default)]
    pub compression: Compression,
    /// Rows per Parquet row group (default 262,144).
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
    /// What a run does when its columns differ from those of the folder's previous run (its
    /// `_SUCCESS` lists them): `add_columns` (default: new columns are written and listed in
    /// the run summary; dropped or retyped columns fail the run), `fail` (any change fails) or
    /// `replace` (any change is written and listed).
    #[serde(default)]
    pub schema_evolution: VolumeSchemaEvolution,
}

/// How a volume sink treats a change of its folder's columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VolumeSchemaEvolution {
    /// New columns are written and listed; dropped or retyped columns fail the run.
    #[default]
    AddColumns,
    /// Any change of the columns fails the run.
    Fail,
    /// Any change is written and listed in the run summary.
    Replace,
}

impl VolumeSchemaEvolution {
    /// The name as written in a pipeline file.
    pub fn name(self) -> &'static str {
        match self {
            VolumeSchemaEvolution::AddColumns => "add_columns",
            VolumeSchemaEvolution::Fail => "fail",
            VolumeSchemaEvolution::Replace => "replace",
        }
    }
}

/// Parquet compression codecs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Zstandard: small files, fast to read; the default.
    #[default]
    Zstd,
    /// Snappy: faster to write, larger files.
    Snappy,
    /// Gzip: small files, slow to write.
    Gzip,
    /// LZ4 (raw): the fastest, larger files.
    Lz4,
    /// No compression.
    None,
}

impl SinkConfig for VolumeSinkSpec {
    fn from(&self) -> &str {
        &self.from
    }

    fn describe(&self) -> String {
        format!("{}/{} (volume)", self.destination, self.path)
    }

    fn sub_microsecond(&self) -> Option<SubMicrosecond> {
        Some(self.sub_microsecond)
    }

    /// `path` is a folder the sink owns under the destination; `file_name` a plain name.
    fn check(&self) -> std::result::Result<(), FieldError> {
        check_owned_folder(&self.path).map_err(|e| FieldError::new("path", e.to_string()))?;
        if let Some(name) = &self.file_name {
            check_relative(name).map_err(|e| FieldError::new("file_name", e.to_string()))?;
            if name.contains('/') {
                return Err(FieldError::new("file_name", "may not contain `/`"));
            }
        }
        check_column_names("partition_by", self.partition_by.iter())
    }

    /// The folder, replaced whole by each run.
    fn resources(&self, cx: &ResourceContext<'_>) -> Declaring {
        let folder = format!("{}/{}", self.destination.trim_end_matches('/'), self.path);
        Ok(vec![(
            Resource::Location(cx.place(&folder)?),
            Access::Write,
            true,
        )])
    }

    fn build(&self, cx: &SinkContext<'_>) -> Result<Box<dyn Sink>> {
        Ok(Box::new(super::VolumeSink::new(
            cx.project,
            &cx.step.id,
            self,
            cx.run,
        )?))
    }
}
