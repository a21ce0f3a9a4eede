//! Schema drift: how a step's output differs from an existing Delta table's columns by name,
//! and whether the sink's `schema_evolution` lets it write anyway. New output columns are added
//! to the table as nullable columns; nullable table columns the output lacks are written as
//! null; a NOT NULL column the output lacks is always refused, and `schema_evolution: fail`
//! refuses any difference. Retyped columns never reach this point: the schema comparison
//! refuses them first ([`super::ExistingTableError::ColumnType`]).

use deltalake::kernel::DataType;

use super::config::SchemaEvolution;

/// One column that is in the output but not in the table, or the other way round.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftColumn {
    /// The column's name.
    pub name: String,
    /// Its Delta type (the output's for a new column, the table's for a missing one).
    pub data_type: DataType,
    /// Whether the table's column takes null (always true for a new column).
    pub nullable: bool,
}

impl DriftColumn {
    /// `` `email` (string) ``.
    fn describe(&self) -> String {
        format!("`{}` ({})", self.name, super::spark_name(&self.data_type))
    }
}

/// How a step's output differs from a table's columns by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drift {
    /// Output columns the table does not have, in output order.
    pub added: Vec<DriftColumn>,
    /// Table columns the output does not have, in table order.
    pub missing: Vec<DriftColumn>,
}

/// Why a drift is refused: the columns of each kind, described (`` `email` (string) ``).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftRefusal {
    /// New output columns `schema_evolution: fail` refuses.
    pub added: Vec<String>,
    /// Nullable table columns the output lacks, which `schema_evolution: fail` refuses.
    pub missing: Vec<String>,
    /// NOT NULL table columns the output lacks (refused in every mode).
    pub not_null: Vec<String>,
}

impl Drift {
    /// Whether the output matches the table's columns by name.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.missing.is_empty()
    }

    /// What `evolution` refuses of this drift, if anything.
    pub fn refusal(&self, evolution: SchemaEvolution) -> Option<DriftRefusal> {
        let describe = |columns: &mut dyn Iterator<Item = &DriftColumn>| {
            columns.map(DriftColumn::describe).collect::<Vec<_>>()
        };
        let fail = evolution == SchemaEvolution::Fail;
        let refusal = DriftRefusal {
            added: if fail {
                describe(&mut self.added.iter())
            } else {
                Vec::new()
            },
            missing: if fail {
                describe(&mut self.missing.iter().filter(|c| c.nullable))
            } else {
                Vec::new()
            },
            not_null: describe(&mut self.missing.iter().filter(|c| !c.nullable)),
        };
        (!(refusal.added.is_empty() && refusal.missing.is_empty() && refusal.not_null.is_empty()))
            .then_some(refusal)
    }

    /// The run summary's lines for an allowed drift, in the order the columns appear.
    pub fn notes(&self) -> Vec<String> {
        self.added
            .iter()
            .map(|c| {
                format!(
                    "added column `{}` ({})",
                    c.name,
                    super::spark_name(&c.data_type)
                )
            })
            .chain(self.missing.iter().map(|c| {
                format!(
                    "column `{}` is missing from the input; written as null",
                    c.name
                )
            }))
            .collect()
    }
}

impl std::fmt::Display for DriftRefusal {
    /// What is refused and what to do, after `step …: Delta table …: `.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!(
                "the step's output has columns the table does not have: {}",
                self.added.join(", ")
            ));
        }
        if !self.missing.is_empty() {
            parts.push(format!(
                "the table's columns {} are not in the step's output",
                self.missing.join(", ")
            ));
        }
        if !self.not_null.is_empty() {
            parts.push(format!(
                "the table's NOT NULL columns {} are not in the step's output and cannot be \
                 written as null",
                self.not_null.join(", ")
            ));
        }
        write!(f, "{} (nothing was written); ", parts.join("; and "))?;
        let mut todo = Vec::new();
        if !self.added.is_empty() || !self.missing.is_empty() {
            todo.push(
                "`schema_evolution: fail` refuses schema changes: set `schema_evolution: \
                 add_columns` (the default) to add new columns as nullable columns and write \
                 null into nullable columns the input lacks, or select exactly the table's \
                 columns in a transform",
            );
        }
        if !self.not_null.is_empty() {
            todo.push(
                "select the NOT NULL columns in a transform (with a value in every row), or \
                 write to a new table (another `path`)",
            );
        }
        write!(f, "{}", todo.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, data_type: DataType, nullable: bool) -> DriftColumn {
        DriftColumn {
            name: name.into(),
            data_type,
            nullable,
        }
    }

    #[test]
    fn add_columns_allows_new_and_nullable_missing_columns_and_notes_them() {
        let drift = Drift {
            added: vec![column("email", DataType::STRING, true)],
            missing: vec![column("note", DataType::LONG, true)],
        };
        assert_eq!(drift.refusal(SchemaEvolution::AddColumns), None);
        assert_eq!(
            drift.notes(),
            [
                "added column `email` (string)",
                "column `note` is missing from the input; written as null"
            ]
        );
        assert!(Drift::default().is_empty());
        assert_eq!(Drift::default().refusal(SchemaEvolution::Fail), None);
    }

    #[test]
    fn fail_refuses_every_difference_naming_each_column() {
        let drift = Drift {
            added: vec![
                column("email", DataType::STRING, true),
                column("age", DataType::INTEGER, true),
            ],
            missing: vec![column("note", DataType::STRING, true)],
        };
        let refusal = drift.refusal(SchemaEvolution::Fail).unwrap();
        let text = refusal.to_string();
        assert_eq!(refusal.added, ["`email` (string)", "`age` (int)"]);
        assert!(
            text.starts_with(
                "the step's output has columns the table does not have: `email` (string), \
                 `age` (int); and the table's columns `note` (string) are not in the step's \
                 output (nothing was written); `schema_evolution: fail` refuses"
            ) && text.contains("set `schema_evolution: add_columns`"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_not_null_column_is_refused_in_every_mode() {
        let drift = Drift {
            added: Vec::new(),
            missing: vec![
                column("id", DataType::LONG, false),
                column("note", DataType::STRING, true),
            ],
        };
        let refusal = drift.refusal(SchemaEvolution::AddColumns).unwrap();
        assert_eq!(refusal.not_null, ["`id` (bigint)"]);
        assert!(refusal.missing.is_empty());
        let text = refusal.to_string();
        assert!(
            text.contains("NOT NULL columns `id` (bigint) are not in the step's output")
                && !text.contains("schema_evolution")
                && text.contains("select the NOT NULL columns in a transform"),
            "{text}"
        );
        let refusal = drift.refusal(SchemaEvolution::Fail).unwrap();
        assert_eq!(refusal.missing, ["`note` (string)"]);
    }
}
