//! The `delta` sink's configuration: a Delta table appended to, overwritten or merged into by
//! key in one commit, with what to do when the input's columns drift from the table's.

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
    /// `append` adds rows; `overwrite` replaces the table's content; `merge` applies the rows by
    /// `keys` (upserts, and deletes for change rows whose `_change_op` is `delete`). Default
    /// `append`.
    #[serde(default)]
    pub mode: DeltaWriteMode,
    /// The columns that identify a row, for `mode: merge` (required there, refused otherwise).
    /// Several input rows of one key resolve to the last one: highest `_change_version` when
    /// the input has that column, else the last in input order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// What a merge does with a deleted key (`_change_op` = `delete`): `hard` (default) deletes
    /// the row; `soft` keeps it and sets its `_deleted_at` (timestamp, UTC: the run's commit
    /// time), a column the table gets when missing. A later insert or update clears it.
    #[serde(default)]
    pub deletes: DeltaDeletes,
    /// What to do when the input's columns differ from an existing table's: `add_columns`
    /// (default) adds new input columns as nullable columns in the same commit and writes null
    /// into nullable table columns the input lacks (both listed in the run summary); `fail`
    /// refuses either before anything is written. A column of another type is always refused.
    #[serde(default)]
    pub schema_evolution: SchemaEvolution,
    /// Target size in bytes of the table's data files (default 104857600, delta-rs'): set as
    /// the table property `delta.targetFileSize` when the sink creates the table, and used by
    /// every write. A merge rewrites each file that holds a changed key, so smaller files make
    /// merges of changes clustered by key (recent rows) rewrite less of the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_file_size: Option<std::num::NonZeroU64>,
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
    /// Upsert (and delete) the rows by `keys`, in one commit (the table is created when
    /// missing).
    Merge,
}

/// What a merge does with a key whose last change is a delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeltaDeletes {
    /// Delete the table's row.
    #[default]
    Hard,
    /// Keep the row and set its `_deleted_at` to the run's commit time.
    Soft,
}

/// What a Delta sink does when the input's columns differ from the table's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SchemaEvolution {
    /// Add new input columns (nullable) and write null into nullable columns the input lacks.
    #[default]
    AddColumns,
    /// Refuse any difference before writing.
    Fail,
}

impl SinkConfig for DeltaSinkSpec {
    fn from(&self) -> &str {
        &self.from
    }

    fn describe(&self) -> String {
        let mode = match self.mode {
            DeltaWriteMode::Append => "append".to_string(),
            DeltaWriteMode::Overwrite => "overwrite".to_string(),
            DeltaWriteMode::Merge => format!(
                "merge on {}{}",
                self.keys.join(", "),
                match self.deletes {
                    DeltaDeletes::Hard => "",
                    DeltaDeletes::Soft => ", soft deletes",
                }
            ),
        };
        format!("{} (delta, {mode})", self.path)
    }

    fn sub_microsecond(&self) -> Option<SubMicrosecond> {
        Some(self.sub_microsecond)
    }

    fn check(&self) -> std::result::Result<(), FieldError> {
        check_column_names("partition_by", self.partition_by.iter())?;
        check_column_names("keys", self.keys.iter())?;
        match self.mode {
            DeltaWriteMode::Merge => {
                if self.keys.is_empty() {
                    return Err(FieldError::new(
                        "keys",
                        "`mode: merge` needs `keys`: the columns that identify a row (e.g. \
                         `keys: [id]`)",
                    ));
                }
                if let Some(i) =
                    (1..self.keys.len()).find(|&i| self.keys[..i].contains(&self.keys[i]))
                {
                    return Err(FieldError::new(
                        "keys",
                        format!("column `{}` is listed twice", self.keys[i]),
                    ));
                }
                if let Some(k) = self.keys.iter().find(|k| is_change_column(k)) {
                    return Err(FieldError::new(
                        "keys",
                        format!(
                            "`{k}` is a change column (not written to the table) and cannot be a \
                             key"
                        ),
                    ));
                }
            }
            mode => {
                let mode = format!("{mode:?}").to_lowercase();
                if !self.keys.is_empty() {
                    return Err(FieldError::new(
                        "keys",
                        format!(
                            "keys are for `mode: merge` only; remove them or set `mode: merge` \
                             (the mode is `{mode}`)"
                        ),
                    ));
                }
                if self.deletes == DeltaDeletes::Soft {
                    return Err(FieldError::new(
                        "deletes",
                        format!(
                            "`deletes: soft` is for `mode: merge` only; remove it or set `mode: \
                             merge` (the mode is `{mode}`)"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The table (a lakehouse table under `lakehouse_root`, else its location); an overwrite
    /// and a merge delete rows.
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

/// Whether a column is one of the change columns a merge reads but does not write.
pub(crate) fn is_change_column(name: &str) -> bool {
    name == crate::changes::OP_COLUMN || name == crate::changes::VERSION_COLUMN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> DeltaSinkSpec {
        serde_yaml::from_str(&format!("{{from: s, path: lake/t, {yaml}}}")).unwrap()
    }

    /// Checks that `yaml` is refused on `field` with a message holding `needle`.
    fn refused(yaml: &str, field: &str, needle: &str) {
        let e = spec(yaml).check().unwrap_err();
        assert_eq!(e.field, field, "{yaml}");
        assert!(e.message.contains(needle), "{yaml}: {}", e.message);
    }

    #[test]
    fn merge_needs_keys_and_keys_need_merge() {
        refused("mode: merge", "keys", "`mode: merge` needs `keys`");
        refused("keys: [id]", "keys", "the mode is `append`");
        refused(
            "mode: overwrite, deletes: soft",
            "deletes",
            "the mode is `overwrite`",
        );
        refused(
            "mode: merge, keys: [id, _change_version]",
            "keys",
            "`_change_version` is a change column",
        );
        refused(
            "mode: merge, keys: [id, region, id]",
            "keys",
            "`id` is listed twice",
        );
        refused("mode: merge, keys: [a.b]", "keys", "");
        spec("mode: merge, keys: [id, region], deletes: soft")
            .check()
            .unwrap();
    }

    #[test]
    fn fields_have_their_defaults_and_unknown_ones_are_refused() {
        let s = spec("mode: merge, keys: [id]");
        assert_eq!(s.deletes, DeltaDeletes::Hard);
        assert_eq!(s.schema_evolution, SchemaEvolution::AddColumns);
        assert_eq!(
            spec("schema_evolution: fail").schema_evolution,
            SchemaEvolution::Fail
        );
        assert!(
            serde_yaml::from_str::<DeltaSinkSpec>("{from: s, path: t, schema_evolution: add}")
                .is_err()
        );
        assert!(serde_yaml::from_str::<DeltaSinkSpec>("{from: s, path: t, key: [id]}").is_err());
        assert_eq!(
            spec("mode: merge, keys: [id, region], deletes: soft").describe(),
            "lake/t (delta, merge on id, region, soft deletes)"
        );
        assert_eq!(
            spec("mode: overwrite").describe(),
            "lake/t (delta, overwrite)"
        );
    }
}
