//! Schema drift of a volume folder: the columns a run writes against those the previous
//! `_SUCCESS` lists (each manifest records its columns). Readers of the folder (a Databricks
//! `COPY INTO` or `MERGE INTO`, a table over it) see the change, so it is never silent: added
//! columns are listed in the run summary, and dropped or retyped columns are refused unless the
//! sink's `schema_evolution` accepts them.

use deltalake::arrow::datatypes::Schema;
use serde::{Deserialize, Serialize};

use super::config::VolumeSchemaEvolution;
use crate::error::{Error, Result};
use crate::pipeline::metrics::StepMetrics;

/// A column of the files, as a manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ManifestColumn {
    pub(super) name: String,
    /// The Arrow type of the Parquet column (`Int64`, `Decimal128(10, 2)`, `Utf8`).
    #[serde(rename = "type")]
    pub(super) data_type: String,
}

/// The columns of the files written for `schema`.
pub(super) fn columns_of(schema: &Schema) -> Vec<ManifestColumn> {
    schema
        .fields()
        .iter()
        .map(|f| ManifestColumn {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
        })
        .collect()
}

/// How this run's columns differ from the previous manifest's.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Drift {
    pub(super) added: Vec<ManifestColumn>,
    pub(super) dropped: Vec<ManifestColumn>,
    /// (column, previous type, new type)
    pub(super) retyped: Vec<(String, String, String)>,
}

impl Drift {
    /// The differences between `previous` and `now`, by column name.
    pub(super) fn between(previous: &[ManifestColumn], now: &[ManifestColumn]) -> Drift {
        let find = |columns: &[ManifestColumn], name: &str| {
            columns.iter().find(|c| c.name == name).cloned()
        };
        let mut drift = Drift::default();
        for column in now {
            match find(previous, &column.name) {
                None => drift.added.push(column.clone()),
                Some(old) if old.data_type != column.data_type => drift.retyped.push((
                    column.name.clone(),
                    old.data_type,
                    column.data_type.clone(),
                )),
                Some(_) => {}
            }
        }
        drift.dropped = previous
            .iter()
            .filter(|c| find(now, &c.name).is_none())
            .cloned()
            .collect();
        drift
    }

    /// Applies `policy` for the sink `step` writing `folder`: an accepted change is noted in the
    /// run summary; a refused one fails the run (before anything is written) naming every column.
    pub(super) fn apply(
        &self,
        step: &str,
        folder: &str,
        policy: VolumeSchemaEvolution,
        metrics: &StepMetrics,
    ) -> Result<()> {
        let added: Vec<String> = self
            .added
            .iter()
            .map(|c| format!("`{}` ({})", c.name, c.data_type))
            .collect();
        let dropped: Vec<String> = self
            .dropped
            .iter()
            .map(|c| format!("`{}`", c.name))
            .collect();
        let retyped: Vec<String> = self
            .retyped
            .iter()
            .map(|(name, old, new)| format!("`{name}` from {old} to {new}"))
            .collect();
        let mut refused = Vec::new();
        let refuses = |kind| match policy {
            VolumeSchemaEvolution::Fail => true,
            VolumeSchemaEvolution::AddColumns => kind != "added",
            VolumeSchemaEvolution::Replace => false,
        };
        for (kind, list) in [
            ("added", &added),
            ("dropped", &dropped),
            ("retyped", &retyped),
        ] {
            if list.is_empty() {
                continue;
            }
            let text = format!("{kind} {}", list.join(", "));
            if refuses(kind) {
                refused.push(text);
            } else {
                metrics.note_schema_change(format!("{text} (since the previous run of {folder})"));
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        Err(Error::step(
            step,
            format!(
                "the columns written to {folder} changed since its previous run: {}; schema_evolution `{}` refuses this, and nothing was written. If readers of the folder are ready for it, set `schema_evolution: {}` on the sink; otherwise restore the column in the source or the transform",
                refused.join("; "),
                policy.name(),
                if dropped.is_empty() && retyped.is_empty() {
                    "add_columns"
                } else {
                    "replace"
                }
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(list: &[(&str, &str)]) -> Vec<ManifestColumn> {
        list.iter()
            .map(|(n, t)| ManifestColumn {
                name: n.to_string(),
                data_type: t.to_string(),
            })
            .collect()
    }

    #[test]
    fn columns_are_compared_by_name() {
        let before = cols(&[("id", "Int64"), ("name", "Utf8"), ("gone", "Int32")]);
        let now = cols(&[
            ("name", "Utf8"),
            ("id", "Decimal128(20, 0)"),
            ("new", "Boolean"),
        ]);
        let drift = Drift::between(&before, &now);
        assert_eq!(drift.added, cols(&[("new", "Boolean")]));
        assert_eq!(drift.dropped, cols(&[("gone", "Int32")]));
        assert_eq!(
            drift.retyped,
            vec![("id".into(), "Int64".into(), "Decimal128(20, 0)".into())]
        );
        assert_eq!(Drift::between(&before, &before), Drift::default());
    }

    #[test]
    fn the_policy_decides_what_is_noted_and_what_is_refused() {
        let before = cols(&[("id", "Int64"), ("gone", "Int32")]);
        let added = Drift::between(&before[..1], &cols(&[("id", "Int64"), ("new", "Utf8")]));
        let dropped = Drift::between(&before, &before[..1]);
        let metrics = StepMetrics::default();
        added
            .apply("s", "out/x", VolumeSchemaEvolution::AddColumns, &metrics)
            .unwrap();
        assert_eq!(
            metrics.schema_changes(),
            ["added `new` (Utf8) (since the previous run of out/x)"]
        );
        let e = dropped
            .apply("s", "out/x", VolumeSchemaEvolution::AddColumns, &metrics)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dropped `gone`") && e.contains("schema_evolution: replace"),
            "{e}"
        );
        let e = added
            .apply("s", "out/x", VolumeSchemaEvolution::Fail, &metrics)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("added `new` (Utf8)") && e.contains("nothing was written"),
            "{e}"
        );
        dropped
            .apply("s", "out/x", VolumeSchemaEvolution::Replace, &metrics)
            .unwrap();
        assert_eq!(metrics.schema_changes().len(), 2);
    }
}
