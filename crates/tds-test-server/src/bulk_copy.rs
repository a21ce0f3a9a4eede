//! What bulk-copy clients ask before they load: `SET FMTONLY ON` (column metadata of a query
//! without its rows: FreeTDS' `freebcp`, SqlClient) and the metadata batch of SqlClient's
//! `SqlBulkCopy`, which Microsoft's `mssql-python` `bulkcopy` sends too. That batch builds its
//! column list with dynamic SQL over `sys.all_columns` and ends with
//! `EXEC sp_tablecollations_100`; the server does not interpret such scripts, so the batch is
//! recognised as a whole and rewritten to what it amounts to for an ordinary table:
//! `SELECT @@TRANCOUNT; SET FMTONLY ON; SELECT * FROM t; SET FMTONLY OFF;
//! EXEC sp_tablecollations_100 N't'`.

use rusqlite::types::Value;

use crate::error::{SqlError, map_sqlite_error};
use crate::types::{COLLATION, COLLATION_NAME, Len, SqlType};

/// The procedure SqlBulkCopy asks for each column's collation.
pub(crate) const TABLE_COLLATIONS_PROC: &str = "sp_tablecollations_100";

/// The simple batch a SqlBulkCopy metadata batch amounts to, or `None` for any other batch.
pub(crate) fn rewrite(sql: &str) -> Option<String> {
    let upper = sql.to_ascii_uppercase();
    if !(upper.contains("SET FMTONLY ON") && upper.contains("SYS.ALL_COLUMNS")) {
        return None;
    }
    // `EXEC(N'SELECT ' + @Column_Names + N' FROM <table>')`: the table as the client wrote it,
    // inside an N'...' literal (quotes doubled).
    let at = upper.rfind("N' FROM ")? + "N' FROM ".len();
    let end = at + sql[at..].find("')")?;
    let table = sql[at..end].replace("''", "'");
    let mut out = String::new();
    if upper.trim_start().starts_with("SELECT @@TRANCOUNT") {
        out.push_str("SELECT @@TRANCOUNT;\n");
    }
    out.push_str(&format!(
        "SET FMTONLY ON;\nSELECT * FROM {table};\nSET FMTONLY OFF;\n"
    ));
    if upper.contains(&TABLE_COLLATIONS_PROC.to_ascii_uppercase()) {
        out.push_str(&format!(
            "EXEC {TABLE_COLLATIONS_PROC} N'{}';\n",
            table.replace('\'', "''")
        ));
    }
    Some(out)
}

/// Columns of `sp_tablecollations_100`'s result set.
pub(crate) fn table_collations_columns() -> [(&'static str, SqlType, bool); 4] {
    [
        ("colid", SqlType::Int, false),
        ("name", SqlType::NVarChar(Len::N(128)), false),
        ("tds_collation", SqlType::Binary(5), true),
        ("collation", SqlType::NVarChar(Len::N(128)), true),
    ]
}

/// `sp_tablecollations_100 N'[schema].[table]'`: one row per column in order; the collation
/// of character columns, NULL for the others. An unknown table gives no rows, as in SQL Server.
pub(crate) fn table_collations(
    conn: &rusqlite::Connection,
    object: &str,
) -> Result<Vec<Vec<Value>>, SqlError> {
    let table = object
        .rsplit('.')
        .next()
        .unwrap_or(object)
        .trim_matches(|c| c == '[' || c == ']' || c == '"');
    let mut st = conn
        .prepare("SELECT cid, name, type FROM pragma_table_info(?1)")
        .map_err(|e| map_sqlite_error(&e))?;
    let rows = st
        .query_map([table], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| map_sqlite_error(&e))?;
    Ok(rows
        .into_iter()
        .map(|(cid, name, decl)| {
            let collated = SqlType::parse(&decl, false).is_some_and(SqlType::is_collated);
            vec![
                Value::Integer(cid + 1),
                Value::Text(name),
                if collated {
                    Value::Blob(COLLATION.to_vec())
                } else {
                    Value::Null
                },
                if collated {
                    Value::Text(COLLATION_NAME.into())
                } else {
                    Value::Null
                },
            ]
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch mssql-python 1.16 (mssql-py-core) sends before `bulkcopy`, as captured.
    const MSSQL_PYTHON: &str = "SELECT @@TRANCOUNT;\n\nDECLARE @Column_Names NVARCHAR(MAX) = NULL;\n\
        DECLARE @object_id INT = OBJECT_ID(N'[t1]');\nDECLARE @sql NVARCHAR(MAX);\n\
        SET @sql = N'SELECT @CN = COALESCE(@CN + N'', '', N'''') + QUOTENAME([name]) FROM sys.all_columns WHERE [object_id] = @ObjId';\n\
        SET @sql = @sql + N' ORDER BY [column_id] ASC';\n\
        EXEC sp_executesql @sql, N'@CN NVARCHAR(MAX) OUTPUT, @ObjId INT', @CN = @Column_Names OUTPUT, @ObjId = @object_id;\n\n\
        SELECT @Column_Names = COALESCE(@Column_Names, '*');\n\nSET FMTONLY ON;\n\
        EXEC(N'SELECT ' + @Column_Names + N' FROM [t1]');\nSET FMTONLY OFF;\n\n\
        EXEC sp_tablecollations_100 N'[t1]';";

    #[test]
    fn the_metadata_batch_becomes_what_it_asks() {
        assert_eq!(
            rewrite(MSSQL_PYTHON).unwrap(),
            "SELECT @@TRANCOUNT;\nSET FMTONLY ON;\nSELECT * FROM [t1];\nSET FMTONLY OFF;\n\
             EXEC sp_tablecollations_100 N'[t1]';\n"
        );
        let quoted = MSSQL_PYTHON.replace("N' FROM [t1]'", "N' FROM [o''k]'");
        assert!(rewrite(&quoted).unwrap().contains("SELECT * FROM [o'k];"));
        assert_eq!(
            rewrite("SET FMTONLY ON select * from t SET FMTONLY OFF"),
            None
        );
    }

    #[test]
    fn collations_are_given_for_character_columns_only() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t1 (id INT NOT NULL, name NVARCHAR(20), d DATE)")
            .unwrap();
        let rows = table_collations(&conn, "dbo.[t1]").unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0][0], Value::Integer(1));
        assert_eq!(rows[0][2], Value::Null);
        assert_eq!(rows[1][1], Value::Text("name".into()));
        assert_eq!(rows[1][2], Value::Blob(COLLATION.to_vec()));
        assert_eq!(rows[1][3], Value::Text(COLLATION_NAME.into()));
        assert!(table_collations(&conn, "missing").unwrap().is_empty());
    }
}
