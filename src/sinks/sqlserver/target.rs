//! The target table: its name, and its columns as INFORMATION_SCHEMA (and COLUMNPROPERTY,
//! COLLATIONPROPERTY) describe them.

use std::collections::BTreeMap;

use super::conn::{Conn, Fail, int_at};
use super::types::SqlType;
use crate::sql::{Dialect, IdentError, quote_ident, validate_ident};

/// A target table name: as written, quoted, and its parts for INFORMATION_SCHEMA.
#[derive(Debug, Clone)]
pub(super) struct TableRef {
    pub(super) display: String,
    pub(super) quoted: String,
    pub(super) catalog: Option<String>,
    pub(super) schema: String,
    pub(super) name: String,
}

impl TableRef {
    pub(super) fn parse(table: &str) -> Result<TableRef, IdentError> {
        let parts = validate_ident(table)?;
        let quoted = quote_ident(table, Dialect::SqlServer)?;
        let (catalog, schema, name) = match parts.as_slice() {
            [name] => (None, "dbo", *name),
            [schema, name] => (None, *schema, *name),
            [catalog, schema, name] => (Some(catalog.to_string()), *schema, *name),
            _ => unreachable!("validate_ident allows one to three parts"),
        };
        Ok(TableRef {
            display: table.to_string(),
            quoted,
            catalog,
            schema: schema.to_string(),
            name: name.to_string(),
        })
    }
}

/// Validates and quotes one column name (no dotted parts).
pub(super) fn quote_column(name: &str) -> Result<String, IdentError> {
    if name.contains('.') {
        return Err(IdentError {
            ident: name.to_string(),
            reason: "a column name may not contain `.`",
        });
    }
    quote_ident(name, Dialect::SqlServer)
}

/// A column of the target table, from INFORMATION_SCHEMA.COLUMNS.
#[derive(Debug, Clone)]
pub(super) struct TargetColumn {
    pub(super) name: String,
    pub(super) sql_type: SqlType,
    pub(super) nullable: bool,
    pub(super) has_default: bool,
    /// IDENTITY column (known only where COLUMNPROPERTY works).
    pub(super) identity: bool,
    /// Computed column (known only where COLUMNPROPERTY works).
    pub(super) computed: bool,
    /// Collation of character columns, when the server reports it.
    pub(super) collation: Option<String>,
    /// Code page of char/varchar/text columns, when the server reports it.
    pub(super) code_page: Option<u16>,
}

impl TargetColumn {
    /// Whether SQL Server fills the column itself (bulk loads and INSERTs leave it out).
    pub(super) fn generated(&self) -> bool {
        self.identity || self.computed || self.sql_type == SqlType::RowVersion
    }
}

/// Reads the target's columns; empty if the table does not exist.
pub(super) async fn read_columns(
    conn: &mut Conn,
    table: &TableRef,
) -> Result<Vec<TargetColumn>, Fail> {
    let from = match &table.catalog {
        Some(c) => format!(
            "{}.INFORMATION_SCHEMA.COLUMNS",
            quote_ident(c, Dialect::SqlServer).map_err(|e| Fail::Other(e.to_string()))?
        ),
        None => "INFORMATION_SCHEMA.COLUMNS".to_string(),
    };
    let base = "COLUMN_NAME, DATA_TYPE, IS_NULLABLE, COLUMN_DEFAULT, CHARACTER_MAXIMUM_LENGTH, \
                NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION";
    let filter = "WHERE TABLE_SCHEMA = @P1 AND TABLE_NAME = @P2 ORDER BY ORDINAL_POSITION";
    let object = "OBJECT_ID(QUOTENAME(TABLE_CATALOG) + N'.' + QUOTENAME(TABLE_SCHEMA) + N'.' + QUOTENAME(TABLE_NAME))";
    // COLLATIONPROPERTY returns sql_variant, which tiberius cannot read.
    let code_page = "CAST(COLLATIONPROPERTY(COLLATION_NAME, 'CodePage') AS int)";
    let full = format!(
        "SELECT {base}, COLLATION_NAME, COLUMNPROPERTY({object}, COLUMN_NAME, 'IsIdentity'), \
         COLUMNPROPERTY({object}, COLUMN_NAME, 'IsComputed'), {code_page} FROM {from} {filter}"
    );
    let params: [&dyn tiberius::ToSql; 2] = [&table.schema.as_str(), &table.name.as_str()];
    let (rows, extended) = match conn.rows(&full, &params).await {
        Ok(rows) => (rows, true),
        // Servers without COLUMNPROPERTY/COLLATION_NAME: the portable columns only (tiberius has
        // logged the server's error at ERROR by then; SQL Server and the TDS test server have them).
        Err(Fail::Sql(e)) if e.code.is_some() && !conn.broken => {
            tracing::debug!(error = %e, "extended column query failed; using the portable one");
            let basic = format!("SELECT {base} FROM {from} {filter}");
            (conn.rows(&basic, &params).await?, false)
        }
        Err(e) => return Err(e),
    };
    // Without the extended query, the code pages of char/varchar/text columns on their own.
    let mut code_pages: BTreeMap<String, u16> = BTreeMap::new();
    let narrow_text = |row: &tiberius::Row| {
        row.try_get::<&str, _>(1)
            .ok()
            .flatten()
            .is_some_and(|t| ["char", "varchar", "text"].contains(&t.to_ascii_lowercase().as_str()))
    };
    if !extended && rows.iter().any(narrow_text) {
        let sql = format!("SELECT COLUMN_NAME, {code_page} FROM {from} {filter}");
        match conn.rows(&sql, &params).await {
            Ok(found) => {
                for row in &found {
                    if let (Some(name), Some(cp)) = (
                        row.try_get::<&str, _>(0).ok().flatten(),
                        int_at(row, 1).and_then(|n| u16::try_from(n).ok()),
                    ) {
                        code_pages.insert(name.to_string(), cp);
                    }
                }
            }
            Err(Fail::Sql(e)) if e.code.is_some() && !conn.broken => {
                tracing::debug!(error = %e, "code page query failed; the driver checks varchar text");
            }
            Err(e) => return Err(e),
        }
    }
    let mut columns = Vec::with_capacity(rows.len());
    for row in &rows {
        let text = |i: usize| row.try_get::<&str, _>(i).ok().flatten().map(str::to_string);
        let name = text(0).unwrap_or_default();
        let data_type = text(1).unwrap_or_default().to_ascii_lowercase();
        let sql_type = SqlType::from_information_schema(
            &data_type,
            int_at(row, 4),
            int_at(row, 5),
            int_at(row, 6),
            int_at(row, 7),
        );
        let collation = if extended {
            text(8).filter(|c| {
                !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            })
        } else {
            None
        };
        columns.push(TargetColumn {
            sql_type,
            nullable: !text(2).is_some_and(|n| n.eq_ignore_ascii_case("NO")),
            has_default: text(3).is_some(),
            identity: extended && int_at(row, 9) == Some(1),
            computed: extended && int_at(row, 10) == Some(1),
            collation,
            code_page: if extended {
                int_at(row, 11).and_then(|n| u16::try_from(n).ok())
            } else {
                code_pages.get(&name).copied()
            },
            name,
        });
    }
    Ok(columns)
}
