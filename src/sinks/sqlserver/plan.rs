//! Planning a write: the input checked against the target's columns (every problem listed at
//! once), and whether rows may be bulk-loaded straight into the table.

use deltalake::arrow::datatypes::Schema;

use super::bulk::BulkColumn;
use super::config::SqlServerWriteMode;
use super::target::{TargetColumn, quote_column};
use super::types::SqlType;
use crate::mssql::encode::Wire;

/// What a run writes: the input columns going to the table, and how.
#[derive(Debug)]
pub(super) struct WritePlan {
    /// The table as the step names it, for messages.
    pub(super) table: String,
    /// Written columns, in input order.
    pub(super) columns: Vec<PlannedColumn>,
    /// Key columns (quoted target names), in `primary_keys` order.
    pub(super) keys: Vec<String>,
    /// For insert/replace: the bulk columns of a direct load into the table, if one is possible.
    pub(super) direct: Option<Vec<BulkColumn>>,
}

impl WritePlan {
    pub(super) fn quoted_columns(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.quoted.clone()).collect()
    }

    pub(super) fn quoted_keys(&self) -> Vec<String> {
        self.keys.clone()
    }
}

/// One input column and the target column it goes to.
#[derive(Debug, Clone)]
pub(super) struct PlannedColumn {
    /// Index in the input schema.
    pub(super) input: usize,
    /// Input column name, for messages.
    pub(super) label: String,
    /// Quoted target column name.
    pub(super) quoted: String,
    pub(super) sql_type: SqlType,
    pub(super) collation: Option<String>,
    pub(super) wire: Wire,
    pub(super) is_key: bool,
    /// The target column is NOT NULL: a NULL in the input fails the run (naming column and row).
    pub(super) not_null: bool,
}

/// Why the input cannot be written to the table; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The table has no columns: it does not exist.
    #[error("table {0} does not exist (INFORMATION_SCHEMA.COLUMNS lists no column for it)")]
    NoTable(String),
    /// Columns of the input and the table do not match; every problem is listed.
    #[error(
        "{table} does not match the input ({} problem{}): {}; nothing was written",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.join("; ")
    )]
    Mismatch {
        table: String,
        problems: Vec<String>,
    },
}

/// Checks the input against the table and decides how to write; every problem is listed.
pub(super) fn plan_write(
    table: &str,
    mode: SqlServerWriteMode,
    primary_keys: &[String],
    input: &Schema,
    target: &[TargetColumn],
) -> Result<WritePlan, PlanError> {
    if target.is_empty() {
        return Err(PlanError::NoTable(table.to_string()));
    }
    let find = |name: &str| -> Option<usize> {
        target.iter().position(|c| c.name == name).or_else(|| {
            let mut found = target
                .iter()
                .enumerate()
                .filter(|(_, c)| c.name.eq_ignore_ascii_case(name));
            match (found.next(), found.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        })
    };
    let deleting = mode == SqlServerWriteMode::Delete;
    let updating = mode == SqlServerWriteMode::Update;
    let mut problems: Vec<String> = Vec::new();
    let mut keys = Vec::new();
    for key in primary_keys {
        match find(key) {
            Some(i) => keys.push(quote_column(&target[i].name).unwrap_or_default()),
            None => problems.push(format!("primary key `{key}` is not a column of {table}")),
        }
    }
    let mut used = vec![false; target.len()];
    let mut columns = Vec::new();
    for (index, field) in input.fields().iter().enumerate() {
        let name = field.name();
        let is_key = primary_keys.iter().any(|k| k == name);
        if deleting && !is_key {
            continue;
        }
        let Some(t) = find(name) else {
            if !is_key {
                problems.push(format!("column `{name}` is not in {table}"));
            }
            continue;
        };
        let col = &target[t];
        if used[t] {
            problems.push(format!(
                "input columns `{name}` and another both go to {table}.{}",
                col.name
            ));
            continue;
        }
        used[t] = true;
        let quoted = match quote_column(&col.name) {
            Ok(q) => q,
            Err(e) => {
                problems.push(format!("column {table}.{}: {e}", col.name));
                continue;
            }
        };
        if col.computed {
            problems.push(format!(
                "column `{name}`: {table}.{} is a computed column and cannot be written",
                col.name
            ));
            continue;
        }
        if col.identity
            && !deleting
            && !(is_key
                && matches!(
                    mode,
                    SqlServerWriteMode::Upsert | SqlServerWriteMode::Update
                ))
        {
            problems.push(format!(
                "column `{name}`: {table}.{} is an IDENTITY column; SQL Server generates its values",
                col.name
            ));
            continue;
        }
        let Some(wire) = col.sql_type.wire().map(|w| w.in_code_page(col.code_page)) else {
            problems.push(format!(
                "column `{name}`: {table}.{} has type {}, which the sqlserver sink cannot write",
                col.name, col.sql_type
            ));
            continue;
        };
        if !col.sql_type.accepts(field.data_type()) {
            problems.push(format!(
                "column `{name}`: input type {} cannot be written to {table}.{} ({})",
                field.data_type(),
                col.name,
                col.sql_type
            ));
            continue;
        }
        columns.push(PlannedColumn {
            input: index,
            label: name.clone(),
            quoted,
            sql_type: col.sql_type.clone(),
            collation: col.collation.clone(),
            wire,
            is_key,
            not_null: !col.nullable,
        });
    }
    if updating && !columns.iter().any(|c| !c.is_key) {
        problems.push(format!(
            "mode `update` needs input columns besides the primary keys (the values to set in {table})"
        ));
    }
    if !deleting && !updating {
        for (i, col) in target.iter().enumerate() {
            if !used[i] && !col.nullable && !col.has_default && !col.generated() {
                problems.push(format!(
                    "{table}.{} is NOT NULL without a default and is not in the input",
                    col.name
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(PlanError::Mismatch {
            table: table.to_string(),
            problems,
        });
    }
    let direct = matches!(
        mode,
        SqlServerWriteMode::Insert | SqlServerWriteMode::Replace
    )
    .then(|| direct_columns(target, &used, input, &columns))
    .flatten();
    Ok(WritePlan {
        table: table.to_string(),
        columns,
        keys,
        direct,
    })
}

/// The columns of a direct bulk load into the table (every updateable column, in table order),
/// or `None` when tiberius cannot load this table directly.
fn direct_columns(
    target: &[TargetColumn],
    used: &[bool],
    input: &Schema,
    planned: &[PlannedColumn],
) -> Option<Vec<BulkColumn>> {
    let mut out = Vec::new();
    for (i, col) in target.iter().enumerate() {
        if col.generated() {
            continue;
        }
        if !used[i] || !col.sql_type.direct_bulk_ok() || !is_plain_name(&col.name) {
            return None;
        }
        let quoted = quote_column(&col.name).ok()?;
        let p = planned.iter().find(|p| p.quoted == quoted)?;
        out.push(BulkColumn {
            input: p.input,
            label: input.field(p.input).name().clone(),
            wire: p.wire,
            not_null: p.not_null,
        });
    }
    Some(out)
}

/// A name tiberius may write unquoted in `INSERT BULK`: ASCII letters, digits and `_`, not a
/// reserved word.
fn is_plain_name(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "add",
        "all",
        "alter",
        "and",
        "any",
        "as",
        "asc",
        "authorization",
        "backup",
        "begin",
        "between",
        "break",
        "browse",
        "bulk",
        "by",
        "cascade",
        "case",
        "check",
        "checkpoint",
        "close",
        "clustered",
        "coalesce",
        "collate",
        "column",
        "commit",
        "compute",
        "constraint",
        "contains",
        "containstable",
        "continue",
        "convert",
        "create",
        "cross",
        "current",
        "current_date",
        "current_time",
        "current_timestamp",
        "current_user",
        "cursor",
        "database",
        "dbcc",
        "deallocate",
        "declare",
        "default",
        "delete",
        "deny",
        "desc",
        "disk",
        "distinct",
        "distributed",
        "double",
        "drop",
        "dump",
        "else",
        "end",
        "errlvl",
        "escape",
        "except",
        "exec",
        "execute",
        "exists",
        "exit",
        "external",
        "fetch",
        "file",
        "fillfactor",
        "for",
        "foreign",
        "freetext",
        "freetexttable",
        "from",
        "full",
        "function",
        "goto",
        "grant",
        "group",
        "having",
        "holdlock",
        "identity",
        "identity_insert",
        "identitycol",
        "if",
        "in",
        "index",
        "inner",
        "insert",
        "intersect",
        "into",
        "is",
        "join",
        "key",
        "kill",
        "left",
        "like",
        "lineno",
        "load",
        "merge",
        "national",
        "nocheck",
        "nonclustered",
        "not",
        "null",
        "nullif",
        "of",
        "off",
        "offsets",
        "on",
        "open",
        "opendatasource",
        "openquery",
        "openrowset",
        "openxml",
        "option",
        "or",
        "order",
        "outer",
        "over",
        "percent",
        "pivot",
        "plan",
        "precision",
        "primary",
        "print",
        "proc",
        "procedure",
        "public",
        "raiserror",
        "read",
        "readtext",
        "reconfigure",
        "references",
        "replication",
        "restore",
        "restrict",
        "return",
        "revert",
        "revoke",
        "right",
        "rollback",
        "rowcount",
        "rowguidcol",
        "rule",
        "save",
        "schema",
        "securityaudit",
        "select",
        "semantickeyphrasetable",
        "semanticsimilaritydetailstable",
        "semanticsimilaritytable",
        "session_user",
        "set",
        "setuser",
        "shutdown",
        "some",
        "statistics",
        "system_user",
        "table",
        "tablesample",
        "textsize",
        "then",
        "to",
        "top",
        "tran",
        "transaction",
        "trigger",
        "truncate",
        "try_convert",
        "tsequal",
        "union",
        "unique",
        "unpivot",
        "update",
        "updatetext",
        "use",
        "user",
        "values",
        "varying",
        "view",
        "waitfor",
        "when",
        "where",
        "while",
        "with",
        "within",
        "writetext",
    ];
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED.contains(&name.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::sqlserver::types::CharKind;
    use deltalake::arrow::datatypes::{DataType, Field};

    fn col(name: &str, sql_type: SqlType, nullable: bool) -> TargetColumn {
        TargetColumn {
            name: name.to_string(),
            sql_type,
            nullable,
            has_default: false,
            identity: false,
            computed: false,
            collation: None,
            code_page: None,
        }
    }

    #[test]
    fn lists_every_mismatch_at_once() {
        let input = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Int64, true),
            Field::new("extra", DataType::Utf8, true),
        ]);
        let target = vec![
            col("id", SqlType::Int, false),
            col(
                "name",
                SqlType::Chars {
                    kind: CharKind::NVarChar,
                    len: Some(50),
                },
                true,
            ),
            col("required", SqlType::Date, false),
        ];
        let err =
            plan_write("dbo.T", SqlServerWriteMode::Insert, &[], &input, &target).unwrap_err();
        assert!(
            matches!(&err, PlanError::Mismatch { problems, .. } if problems.len() == 3),
            "{err}"
        );
        let err = err.to_string();
        assert!(
            err.starts_with("dbo.T does not match the input (3 problems)"),
            "{err}"
        );
        assert!(
            !err.contains("`id`"),
            "a nullable input column may feed NOT NULL: {err}"
        );
        assert!(
            err.contains("input type Int64 cannot be written to dbo.T.name (nvarchar(50))"),
            "{err}"
        );
        assert!(err.contains("column `extra` is not in dbo.T"), "{err}");
        assert!(
            err.contains("dbo.T.required is NOT NULL without a default"),
            "{err}"
        );
    }

    #[test]
    fn direct_load_only_when_every_column_is_written() {
        let input = Schema::new(vec![
            Field::new("b", DataType::Utf8, true),
            Field::new("a", DataType::Int64, false),
        ]);
        let text = SqlType::Chars {
            kind: CharKind::VarChar,
            len: Some(10),
        };
        let target = vec![
            col("a", SqlType::BigInt, false),
            col("b", text.clone(), true),
        ];
        let plan = plan_write("t", SqlServerWriteMode::Insert, &[], &input, &target).unwrap();
        let direct = plan.direct.expect("direct load");
        assert_eq!(
            direct.iter().map(|c| c.input).collect::<Vec<_>>(),
            vec![1, 0]
        );
        let mut wider = target.clone();
        wider.push(col("c", SqlType::Int, true));
        let plan = plan_write("t", SqlServerWriteMode::Insert, &[], &input, &wider).unwrap();
        assert!(plan.direct.is_none());
        let mut money = target;
        money[0].sql_type = SqlType::Money;
        let plan = plan_write("t", SqlServerWriteMode::Insert, &[], &input, &money).unwrap();
        assert!(plan.direct.is_none());
    }
}
