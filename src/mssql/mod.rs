//! SQL Server over TDS: settings, tiberius connections and pools, the `mssql-tds` reader that
//! decodes result rows straight into Arrow, the type mapping and the value ranges of SQL Server's
//! types.
//! The `sqlserver` source and sink are built on this module.

pub mod arrow_reader;
pub mod connect;
pub(crate) mod encode;
pub mod probe;
pub mod ranges;
pub mod settings;
pub mod types;

pub use connect::{
    Client, MssqlError, Phase, Pool, PooledClient, connect, open_pool, pool, test_connection,
};
pub use settings::SqlServerSettings;

use crate::sql::SqlValue;

/// Binds a bridge value to a tiberius query.
pub fn bind(query: &mut tiberius::Query<'_>, value: &SqlValue) {
    match value {
        SqlValue::Null => query.bind(Option::<&str>::None),
        SqlValue::Bool(b) => query.bind(*b),
        SqlValue::Int(i) => query.bind(*i),
        SqlValue::Float(f) => query.bind(*f),
        SqlValue::Text(s) => query.bind(s.clone()),
    }
}

/// The `@params` declaration of `sp_executesql` / `sp_describe_first_result_set` for these values.
pub fn param_declarations(values: &[SqlValue]) -> String {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ty = match v {
                SqlValue::Null | SqlValue::Text(_) => "nvarchar(4000)",
                SqlValue::Bool(_) => "bit",
                SqlValue::Int(_) => "bigint",
                SqlValue::Float(_) => "float",
            };
            format!("@P{} {ty}", i + 1)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A T-SQL `N'...'` literal (quotes doubled). Used only for SQL text handed to
/// `sp_describe_first_result_set`, never for values.
pub fn nstring_literal(text: &str) -> String {
    format!("N'{}'", text.replace('\'', "''"))
}

/// Tables a T-SQL query reads, as written (`dbo.Sales`, `[dbo].[Sales]` -> `dbo.Sales`); names of
/// its common table expressions are left out. Used to check a caller's read permissions.
pub fn tables_read(sql: &str) -> std::result::Result<Vec<String>, String> {
    use deltalake::datafusion::sql::sqlparser::ast::{Statement, visit_relations};
    use deltalake::datafusion::sql::sqlparser::dialect::MsSqlDialect;
    use deltalake::datafusion::sql::sqlparser::parser::Parser;
    use std::ops::ControlFlow;

    let statements = Parser::parse_sql(&MsSqlDialect {}, sql).map_err(|e| e.to_string())?;
    let mut ctes = std::collections::BTreeSet::new();
    for statement in &statements {
        if let Statement::Query(query) = statement
            && let Some(with) = &query.with
        {
            ctes.extend(
                with.cte_tables
                    .iter()
                    .map(|c| c.alias.name.value.to_lowercase()),
            );
        }
    }
    let mut tables = Vec::new();
    let _ = visit_relations(&statements, |name| {
        let parts: Vec<&str> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(|i| i.value.as_str())
            .collect();
        let joined = parts.join(".");
        let is_cte = parts.len() == 1 && ctes.contains(&parts[0].to_lowercase());
        if !is_cte && !tables.contains(&joined) {
            tables.push(joined);
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(tables)
}

#[cfg(test)]
mod tables_read_tests {
    use super::tables_read;

    #[test]
    fn names_tables_not_ctes() {
        let sql = "WITH recent AS (SELECT * FROM [dbo].[Sales] WITH (NOLOCK) WHERE d > @P1) \
                   SELECT r.*, p.name FROM recent r JOIN dbo.Products p ON p.id = r.product_id";
        assert_eq!(tables_read(sql).unwrap(), vec!["dbo.Sales", "dbo.Products"]);
    }

    #[test]
    fn unparseable_sql_is_an_error() {
        assert!(tables_read("SELEC nothing FROM").is_err());
    }
}
