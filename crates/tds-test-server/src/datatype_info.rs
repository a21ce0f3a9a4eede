//! `sp_datatype_info_100 @data_type, @ODBCVer`: the catalog procedure ODBC drivers (FreeTDS,
//! Microsoft's) call for `SQLGetTypeInfo`, FreeTDS at every connect. One row per SQL Server type
//! whose ODBC type is `@data_type` (0: all), with the columns and values SQL Server 2019 returns
//! for ODBC 3 (`@ODBCVer = 3`).

use rusqlite::types::Value;

use crate::types::{Len, SqlType};

/// The procedure's name.
pub(crate) const PROC: &str = "sp_datatype_info_100";

/// One type: name, ODBC type, precision, literal prefix and suffix, create params, case
/// sensitive, searchable, unsigned, minimum and maximum scale, SQL data type, datetime sub code,
/// radix, user type.
type Row = (
    &'static str,
    i64,
    i64,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
);

const Q: Option<&str> = Some("'");
#[rustfmt::skip]
const TYPES: &[Row] = &[
    ("sql_variant", -150, 8000, None, None, None, 0, 2, None, Some(0), Some(0), -150, None, Some(10), 0),
    ("uniqueidentifier", -11, 36, Q, Q, None, 0, 2, None, None, None, -11, None, None, 0),
    ("ntext", -10, 1_073_741_823, Some("N'"), Q, None, 0, 1, None, None, None, -10, None, None, 0),
    ("nvarchar", -9, 4000, Some("N'"), Q, Some("max length"), 0, 3, None, None, None, -9, None, None, 0),
    ("nchar", -8, 4000, Some("N'"), Q, Some("length"), 0, 3, None, None, None, -8, None, None, 0),
    ("bit", -7, 1, None, None, None, 0, 2, None, Some(0), Some(0), -7, None, None, 16),
    ("tinyint", -6, 3, None, None, None, 0, 2, Some(1), Some(0), Some(0), -6, None, Some(10), 5),
    ("bigint", -5, 19, None, None, None, 0, 2, Some(0), Some(0), Some(0), -5, None, Some(10), 0),
    ("image", -4, 2_147_483_647, Some("0x"), None, None, 0, 0, None, None, None, -4, None, None, 20),
    ("varbinary", -3, 8000, Some("0x"), None, Some("max length"), 0, 2, None, None, None, -3, None, None, 4),
    ("binary", -2, 8000, Some("0x"), None, Some("length"), 0, 2, None, None, None, -2, None, None, 3),
    ("text", -1, 2_147_483_647, Q, Q, None, 0, 1, None, None, None, -1, None, None, 19),
    ("char", 1, 8000, Q, Q, Some("length"), 0, 3, None, None, None, 1, None, None, 1),
    ("numeric", 2, 38, None, None, Some("precision,scale"), 0, 2, Some(0), Some(0), Some(38), 2, None, Some(10), 10),
    ("decimal", 3, 38, None, None, Some("precision,scale"), 0, 2, Some(0), Some(0), Some(38), 3, None, Some(10), 24),
    ("money", 3, 19, Some("$"), None, None, 0, 2, Some(0), Some(4), Some(4), 3, None, Some(10), 11),
    ("smallmoney", 3, 10, Some("$"), None, None, 0, 2, Some(0), Some(4), Some(4), 3, None, Some(10), 21),
    ("int", 4, 10, None, None, None, 0, 2, Some(0), Some(0), Some(0), 4, None, Some(10), 7),
    ("smallint", 5, 5, None, None, None, 0, 2, Some(0), Some(0), Some(0), 5, None, Some(10), 6),
    ("float", 6, 53, None, None, None, 0, 2, Some(0), None, None, 6, None, Some(2), 8),
    ("real", 7, 24, None, None, None, 0, 2, Some(0), None, None, 7, None, Some(2), 23),
    ("varchar", 12, 8000, Q, Q, Some("max length"), 0, 3, None, None, None, 12, None, None, 2),
    ("date", 91, 10, Q, Q, None, 0, 3, None, None, None, 9, Some(1), None, 0),
    ("time", -154, 16, Q, Q, Some("scale"), 0, 3, None, Some(0), Some(7), -154, Some(0), None, 0),
    ("datetime2", 93, 27, Q, Q, Some("scale"), 0, 3, None, Some(0), Some(7), 9, Some(3), None, 0),
    ("datetime", 93, 23, Q, Q, None, 0, 3, None, Some(3), Some(3), 9, Some(3), None, 12),
    ("smalldatetime", 93, 16, Q, Q, None, 0, 3, None, Some(0), Some(0), 9, Some(3), None, 22),
    ("datetimeoffset", -155, 34, Q, Q, Some("scale"), 0, 3, None, Some(0), Some(7), -155, Some(0), None, 0),
];

/// The result set's columns (name, type, nullable).
pub(crate) fn columns() -> Vec<(&'static str, SqlType, bool)> {
    let sysname = SqlType::NVarChar(Len::N(128));
    let text = SqlType::VarChar(Len::N(32));
    vec![
        ("TYPE_NAME", sysname, false),
        ("DATA_TYPE", SqlType::SmallInt, false),
        ("PRECISION", SqlType::Int, true),
        ("LITERAL_PREFIX", text, true),
        ("LITERAL_SUFFIX", text, true),
        ("CREATE_PARAMS", text, true),
        ("NULLABLE", SqlType::SmallInt, false),
        ("CASE_SENSITIVE", SqlType::SmallInt, false),
        ("SEARCHABLE", SqlType::SmallInt, false),
        ("UNSIGNED_ATTRIBUTE", SqlType::SmallInt, true),
        ("MONEY", SqlType::SmallInt, false),
        ("AUTO_INCREMENT", SqlType::SmallInt, true),
        ("LOCAL_TYPE_NAME", sysname, true),
        ("MINIMUM_SCALE", SqlType::SmallInt, true),
        ("MAXIMUM_SCALE", SqlType::SmallInt, true),
        ("SQL_DATA_TYPE", SqlType::SmallInt, false),
        ("SQL_DATETIME_SUB", SqlType::SmallInt, true),
        ("NUM_PREC_RADIX", SqlType::Int, true),
        ("INTERVAL_PRECISION", SqlType::SmallInt, true),
        ("USERTYPE", SqlType::SmallInt, true),
    ]
}

/// The rows for one ODBC type (0: every type), ordered by ODBC type as SQL Server orders them
/// (a stable sort: types of one ODBC type keep the table's order).
pub(crate) fn rows(data_type: i64) -> Vec<Vec<Value>> {
    let text = |s: Option<&str>| s.map_or(Value::Null, |s| Value::Text(s.into()));
    let int = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
    let mut rows: Vec<&Row> = TYPES
        .iter()
        .filter(|t| data_type == 0 || t.1 == data_type)
        .collect();
    rows.sort_by_key(|t| t.1);
    rows.into_iter()
        .map(
            |&(
                name,
                odbc,
                precision,
                prefix,
                suffix,
                params,
                cs,
                search,
                unsigned,
                min,
                max,
                sql,
                sub,
                radix,
                user,
            )| {
                let money = i64::from(name.ends_with("money"));
                vec![
                    Value::Text(name.into()),
                    Value::Integer(odbc),
                    Value::Integer(precision),
                    text(prefix),
                    text(suffix),
                    text(params),
                    Value::Integer(1),
                    Value::Integer(cs),
                    Value::Integer(search),
                    int(unsigned),
                    Value::Integer(money),
                    int(unsigned.map(|_| 0)),
                    Value::Text(name.into()),
                    int(min),
                    int(max),
                    Value::Integer(sql),
                    int(sub),
                    int(radix),
                    Value::Null,
                    Value::Integer(user),
                ]
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_odbc_type_or_all() {
        let names = |rows: Vec<Vec<Value>>| -> Vec<Value> {
            rows.into_iter().map(|r| r[0].clone()).collect()
        };
        assert_eq!(names(rows(12)), vec![Value::Text("varchar".into())]);
        assert_eq!(rows(93).len(), 3);
        let all = rows(0);
        assert_eq!(all.len(), TYPES.len());
        assert!(all.iter().all(|r| r.len() == columns().len()));
        assert_eq!(all[0][0], Value::Text("datetimeoffset".into()));
        assert!(rows(999).is_empty());
    }
}
