//! The `delta` sink's configuration: a Delta table appended to or overwritten in one commit.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Access;
use crate::error::Result;
use crate::output_types::SubMicrosecond;
use crate::pipeline::resources::{Declaring, ResourceContext};
use crate::pipeline::spec::{FieldError, check_column_names};
use crate::sinks::{Sink, SinkConfig, SinkContext};

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
    /// Add the rows to the table (created when missing).
    #[default]
    Append,
    /// Replace the table's rows with the input's, in one commit.
    Overwrite,
}

impl SinkConfig for DeltaSinkSpec {
    fn from(&self) -> &str {
        &self.from
    }

    fn describe(&self) -> String {
        format!("{} (delta, {:?})", self.path, self.mode)
    }

    fn sub_microsecond(&self) -> Option<SubMicrosecond> {
        Some(self.sub_microsecond)
    }

    fn check(&self) -> std::result::Result<(), FieldError> {
        check_column_names("partition_by", self.partition_by.iter())
    }

    /// The table (a lakehouse table under `lakehouse_root`, else its location); an overwrite
    /// deletes rows.
    fn resources(&self, cx: &ResourceContext<'_>) -> Declaring {
        Ok(vec![(cx.delta(&self.path)?, Access::Write, true)])
    }

    fn build(&self, cx: &SinkContext<'_>) -> Result<Box<dyn Sink>> {
        Ok(Box::new(super::DeltaSink::new(
            cx.project,
            &cx.step.id,
            self,
            cx.run,
        )))
    }
}
