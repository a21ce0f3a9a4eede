//! SQL functions and views registered on every session's SQLite connection.
//! They emulate T-SQL built-ins (ISNULL, LEN, DATEADD, ...) and INFORMATION_SCHEMA on SQLite.

use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};

use crate::types::{COLLATION_CODE_PAGE, COLLATION_NAME, Len, SqlType};
use crate::values::{
    EPOCH_0001, TICKS_PER_DAY, Temporal, civil_from_days, days_from_civil, fmt_date, fmt_datetime,
    fmt_guid, fmt_offset, fmt_time, parse_guid, parse_temporal, round_ticks,
};

fn user_err(msg: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(msg.into().into())
}

fn text_of(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

fn now_text() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let days = (d.as_secs() / 86_400) as i64 + EPOCH_0001;
    let ticks = (d.as_secs() % 86_400) * 10_000_000 + d.subsec_nanos() as u64 / 100;
    fmt_datetime(days, ticks)
}

fn random_guid() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out[6] = (out[6] & 0x0F) | 0x40;
    out[8] = (out[8] & 0x3F) | 0x80;
    fmt_guid(&out)
}

/// Shape of a date/time text, so results keep the input's form.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Date,
    Time,
    DateTime,
}

fn temporal_arg(c: &Context<'_>, i: usize) -> rusqlite::Result<Option<(Temporal, Shape)>> {
    let Some(text) = text_of(c.get_raw(i)) else {
        return Ok(None);
    };
    let t = parse_temporal(&text).ok_or_else(|| {
        user_err(format!(
            "Conversion failed when converting date and/or time from character string '{text}'."
        ))
    })?;
    let trimmed = text.trim();
    let shape = if trimmed.len() >= 3 && trimmed.as_bytes()[2] == b':' {
        Shape::Time
    } else if trimmed.len() <= 10 {
        Shape::Date
    } else {
        Shape::DateTime
    };
    Ok(Some((t, shape)))
}

fn render(t: Temporal, shape: Shape) -> String {
    match shape {
        Shape::Date => fmt_date(t.days),
        Shape::Time => fmt_time(t.ticks),
        Shape::DateTime => match t.offset_min {
            Some(o) => format!("{} {}", fmt_datetime(t.days, t.ticks), fmt_offset(o)),
            None => fmt_datetime(t.days, t.ticks),
        },
    }
}

fn part_name(p: &str) -> Option<&'static str> {
    Some(match p.trim().to_ascii_lowercase().as_str() {
        "year" | "yy" | "yyyy" => "year",
        "quarter" | "qq" | "q" => "quarter",
        "month" | "mm" | "m" => "month",
        "dayofyear" | "dy" | "y" => "dayofyear",
        "day" | "dd" | "d" => "day",
        "week" | "wk" | "ww" => "week",
        "weekday" | "dw" | "w" => "weekday",
        "hour" | "hh" => "hour",
        "minute" | "mi" | "n" => "minute",
        "second" | "ss" | "s" => "second",
        "millisecond" | "ms" => "millisecond",
        "microsecond" | "mcs" => "microsecond",
        "nanosecond" | "ns" => "nanosecond",
        "tzoffset" | "tz" => "tzoffset",
        _ => return None,
    })
}

fn part_arg(c: &Context<'_>) -> rusqlite::Result<&'static str> {
    let p = text_of(c.get_raw(0)).unwrap_or_default();
    part_name(&p).ok_or_else(|| user_err(format!("'{p}' is not a recognized datepart option.")))
}

fn tick_unit(part: &str) -> Option<i128> {
    Some(match part {
        "hour" => 36_000_000_000,
        "minute" => 600_000_000,
        "second" => 10_000_000,
        "millisecond" => 10_000,
        "microsecond" => 10,
        _ => return None,
    })
}

fn add_months(t: Temporal, months: i64) -> Temporal {
    let (y, m, d) = civil_from_days(t.days - EPOCH_0001);
    let total = y * 12 + (m as i64 - 1) + months;
    let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
    let mut nd = d;
    while nd > 28 && civil_from_days(days_from_civil(ny, nm, nd)).1 != nm {
        nd -= 1;
    }
    Temporal {
        days: days_from_civil(ny, nm, nd) + EPOCH_0001,
        ..t
    }
}

fn dateadd(part: &str, n: i64, t: Temporal) -> rusqlite::Result<Temporal> {
    Ok(match part {
        "year" => add_months(t, n * 12),
        "quarter" => add_months(t, n * 3),
        "month" => add_months(t, n),
        "dayofyear" | "day" | "weekday" => Temporal {
            days: t.days + n,
            ..t
        },
        "week" => Temporal {
            days: t.days + 7 * n,
            ..t
        },
        "nanosecond" => add_ticks(t, n as i128 / 100),
        p => match tick_unit(p) {
            Some(u) => add_ticks(t, n as i128 * u),
            None => return Err(user_err(format!("DATEADD does not support datepart {p}"))),
        },
    })
}

fn add_ticks(t: Temporal, delta: i128) -> Temporal {
    let total = t.days as i128 * TICKS_PER_DAY as i128 + t.ticks as i128 + delta;
    Temporal {
        days: total.div_euclid(TICKS_PER_DAY as i128) as i64,
        ticks: total.rem_euclid(TICKS_PER_DAY as i128) as u64,
        offset_min: t.offset_min,
    }
}

fn utc(t: Temporal) -> Temporal {
    match t.offset_min {
        Some(o) => add_ticks(t, -(o as i128) * 600_000_000),
        None => t,
    }
}

fn datediff(part: &str, a: Temporal, b: Temporal) -> rusqlite::Result<i64> {
    let (a, b) = (utc(a), utc(b));
    let ymd = |t: Temporal| civil_from_days(t.days - EPOCH_0001);
    let total = |t: Temporal| t.days as i128 * TICKS_PER_DAY as i128 + t.ticks as i128;
    Ok(match part {
        "year" => ymd(b).0 - ymd(a).0,
        "quarter" => {
            let q = |t: Temporal| ymd(t).0 * 4 + (ymd(t).1 as i64 - 1) / 3;
            q(b) - q(a)
        }
        "month" => {
            let m = |t: Temporal| ymd(t).0 * 12 + ymd(t).1 as i64;
            m(b) - m(a)
        }
        "dayofyear" | "day" | "weekday" => b.days - a.days,
        "week" => (b.days + 1).div_euclid(7) - (a.days + 1).div_euclid(7),
        "nanosecond" => ((total(b) - total(a)) * 100) as i64,
        p => match tick_unit(p) {
            Some(u) => (total(b).div_euclid(u) - total(a).div_euclid(u)) as i64,
            None => return Err(user_err(format!("DATEDIFF does not support datepart {p}"))),
        },
    })
}

fn datepart(part: &str, t: Temporal) -> rusqlite::Result<i64> {
    let (y, m, d) = civil_from_days(t.days - EPOCH_0001);
    let jan1 = days_from_civil(y, 1, 1) + EPOCH_0001;
    let secs = t.ticks / 10_000_000;
    Ok(match part {
        "year" => y,
        "quarter" => (m as i64 - 1) / 3 + 1,
        "month" => m as i64,
        "dayofyear" => t.days - jan1 + 1,
        "day" => d as i64,
        "week" => (t.days + 1).div_euclid(7) - (jan1 + 1).div_euclid(7) + 1,
        "weekday" => (t.days + 1).rem_euclid(7) + 1,
        "hour" => (secs / 3600) as i64,
        "minute" => ((secs / 60) % 60) as i64,
        "second" => (secs % 60) as i64,
        "millisecond" => ((t.ticks % 10_000_000) / 10_000) as i64,
        "microsecond" => ((t.ticks % 10_000_000) / 10) as i64,
        "nanosecond" => ((t.ticks % 10_000_000) * 100) as i64,
        "tzoffset" => t.offset_min.unwrap_or(0) as i64,
        _ => {
            return Err(user_err(format!(
                "DATEPART does not support datepart {part}"
            )));
        }
    })
}

/// `CAST`/`CONVERT` to a temporal or GUID type: normalise the text to the storage format.
fn convert(v: ValueRef<'_>, type_name: &str) -> rusqlite::Result<Option<String>> {
    let Some(text) = text_of(v) else {
        return Ok(None);
    };
    let ty = SqlType::parse(type_name, true)
        .ok_or_else(|| user_err(format!("unknown type {type_name}")))?;
    let bad = || {
        user_err(format!(
            "Conversion failed when converting the value '{text}' to data type {type_name}."
        ))
    };
    if ty == SqlType::UniqueIdentifier {
        return parse_guid(&text)
            .map(|g| Some(fmt_guid(&g)))
            .ok_or_else(bad);
    }
    let t = parse_temporal(&text).ok_or_else(bad)?;
    Ok(Some(match ty {
        SqlType::Date => fmt_date(t.days),
        SqlType::Time(n) => fmt_time(round_ticks(t.ticks, n).1),
        SqlType::DateTime2(n) => {
            let (carry, ticks) = round_ticks(t.ticks, n);
            fmt_datetime(t.days + carry, ticks)
        }
        SqlType::DateTime => {
            let frac = (t.ticks * 3 + 50_000) / 100_000;
            let r = add_ticks(
                Temporal { ticks: 0, ..t },
                ((frac * 100_000 + 1) / 3) as i128,
            );
            fmt_datetime(r.days, r.ticks)
        }
        SqlType::SmallDateTime => {
            let mins = (t.ticks + 300_000_000) / 600_000_000;
            let r = add_ticks(Temporal { ticks: 0, ..t }, mins as i128 * 600_000_000);
            fmt_datetime(r.days, r.ticks)
        }
        SqlType::DateTimeOffset(n) => {
            let (carry, ticks) = round_ticks(t.ticks, n);
            format!(
                "{} {}",
                fmt_datetime(t.days + carry, ticks),
                fmt_offset(t.offset_min.unwrap_or(0))
            )
        }
        _ => text,
    }))
}

/// INFORMATION_SCHEMA facts of a declared type.
fn type_info(decl: &str, field: &str) -> Value {
    let Some(t) = SqlType::parse(decl, false) else {
        return Value::Null;
    };
    let name = t.tsql_name();
    let base = name.split('(').next().unwrap_or(&name).to_string();
    let chars = |l: Len| match l {
        Len::N(n) => n as i64,
        Len::Max => -1,
    };
    let (char_len, octet_len): (Option<i64>, Option<i64>) = match t {
        SqlType::Char(n) | SqlType::Binary(n) => (Some(n as i64), Some(n as i64)),
        SqlType::NChar(n) => (Some(n as i64), Some(n as i64 * 2)),
        SqlType::VarChar(l) | SqlType::VarBinary(l) => (Some(chars(l)), Some(chars(l))),
        SqlType::NVarChar(l) => (
            Some(chars(l)),
            Some(if chars(l) < 0 { -1 } else { chars(l) * 2 }),
        ),
        SqlType::Text | SqlType::Image => (Some(2_147_483_647), Some(2_147_483_647)),
        SqlType::NText => (Some(1_073_741_823), Some(2_147_483_646)),
        SqlType::Xml => (Some(-1), Some(-1)),
        _ => (None, None),
    };
    let (precision, scale): (Option<i64>, Option<i64>) = match t {
        SqlType::TinyInt => (Some(3), Some(0)),
        SqlType::SmallInt => (Some(5), Some(0)),
        SqlType::Int => (Some(10), Some(0)),
        SqlType::BigInt => (Some(19), Some(0)),
        SqlType::Decimal(p, s) | SqlType::Numeric(p, s) => (Some(p as i64), Some(s as i64)),
        SqlType::Money => (Some(19), Some(4)),
        SqlType::SmallMoney => (Some(10), Some(4)),
        SqlType::Real => (Some(24), None),
        SqlType::Float => (Some(53), None),
        _ => (None, None),
    };
    let dt_precision = match t {
        SqlType::Date | SqlType::SmallDateTime => Some(0),
        SqlType::DateTime => Some(3),
        SqlType::Time(n) | SqlType::DateTime2(n) | SqlType::DateTimeOffset(n) => Some(n as i64),
        _ => None,
    };
    let collated = t.is_collated();
    let int = |v: Option<i64>| v.map(Value::Integer).unwrap_or(Value::Null);
    match field {
        "name" => Value::Text(base),
        "collation" if collated => Value::Text(COLLATION_NAME.to_string()),
        "char_len" => int(char_len),
        "octet_len" => int(octet_len),
        "precision" => int(precision),
        "radix" => int(precision.map(|_| {
            if matches!(t, SqlType::Real | SqlType::Float) {
                2
            } else {
                10
            }
        })),
        "scale" => int(scale),
        "dt_precision" => int(dt_precision),
        _ => Value::Null,
    }
}

/// `QUOTENAME(s [, q])`: `s` delimited with `q` (`[` by default), the closing delimiter doubled
/// inside; NULL for more than 128 characters or a delimiter SQL Server does not accept.
pub(crate) fn quotename(s: &str, q: &str) -> Option<String> {
    if s.chars().count() > 128 {
        return None;
    }
    let (open, close) = match q {
        "[" | "]" => ('[', ']'),
        "\"" => ('"', '"'),
        "'" => ('\'', '\''),
        "(" | ")" => ('(', ')'),
        "<" | ">" => ('<', '>'),
        "{" | "}" => ('{', '}'),
        "`" => ('`', '`'),
        _ => return None,
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(open);
    for c in s.chars() {
        out.push(c);
        if c == close {
            out.push(c);
        }
    }
    out.push(close);
    Some(out)
}

/// The object part of a one- to four-part name as `OBJECT_ID` takes it (`'tempdb..#t'`,
/// `'[bridge].[dbo].[a]]b]'`, `'"x"'`): parts split at `.` outside `[…]` and `"…"`, delimiters
/// removed and doubled closing delimiters undone. `None` when the name ends without an object
/// part or a delimiter is not closed.
pub(crate) fn object_name(s: &str) -> Option<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.trim().chars().peekable();
    let mut at_start = true;
    while let Some(c) = chars.next() {
        let close = match c {
            '[' if at_start => Some(']'),
            '"' if at_start => Some('"'),
            _ => None,
        };
        if let Some(close) = close {
            let part = parts.last_mut().expect("one part");
            loop {
                match chars.next()? {
                    x if x == close && chars.peek() == Some(&close) => {
                        chars.next();
                        part.push(close);
                    }
                    x if x == close => break,
                    x => part.push(x),
                }
            }
            at_start = false;
        } else if c == '.' {
            parts.push(String::new());
            at_start = true;
        } else {
            parts.last_mut().expect("one part").push(c);
            at_start = false;
        }
    }
    let last = parts.pop().expect("one part");
    let last = last.trim();
    (!last.is_empty() && parts.len() < 4).then(|| last.to_string())
}

/// Types SQL Server reports for INFORMATION_SCHEMA columns that have no declared type here.
pub(crate) fn information_schema_type(column: &str) -> Option<SqlType> {
    Some(match column.to_ascii_uppercase().as_str() {
        "ORDINAL_POSITION"
        | "CHARACTER_MAXIMUM_LENGTH"
        | "CHARACTER_OCTET_LENGTH"
        | "NUMERIC_SCALE" => SqlType::Int,
        "NUMERIC_PRECISION" => SqlType::TinyInt,
        "NUMERIC_PRECISION_RADIX" | "DATETIME_PRECISION" => SqlType::SmallInt,
        "TABLE_CATALOG" | "TABLE_SCHEMA" | "TABLE_NAME" | "COLUMN_NAME" | "DATA_TYPE"
        | "CONSTRAINT_CATALOG" | "CONSTRAINT_SCHEMA" | "CONSTRAINT_NAME" => {
            SqlType::NVarChar(Len::N(128))
        }
        "IS_NULLABLE" => SqlType::VarChar(Len::N(3)),
        "TABLE_TYPE" => SqlType::VarChar(Len::N(10)),
        "CONSTRAINT_TYPE" => SqlType::VarChar(Len::N(11)),
        "IS_DEFERRABLE" | "INITIALLY_DEFERRED" => SqlType::VarChar(Len::N(2)),
        "COLUMN_DEFAULT" => SqlType::NVarChar(Len::N(4000)),
        "COLLATION_NAME" => SqlType::NVarChar(Len::N(128)),
        _ => return None,
    })
}

/// Temp views answering `INFORMATION_SCHEMA.TABLES` and `INFORMATION_SCHEMA.COLUMNS`.
pub(crate) fn create_system_views(
    conn: &rusqlite::Connection,
    database: &str,
) -> rusqlite::Result<()> {
    let db = database.replace('\'', "''");
    // User tables: neither SQLite's nor this server's internal ones (change tracking).
    let user =
        "m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND m.name NOT LIKE '\\_\\_ct\\_%' ESCAPE '\\'";
    crate::change_tracking::create_views(conn)?;
    conn.execute_batch(&format!(
        "DROP VIEW IF EXISTS temp.\"INFORMATION_SCHEMA.TABLE_CONSTRAINTS\";
         DROP VIEW IF EXISTS temp.\"INFORMATION_SCHEMA.KEY_COLUMN_USAGE\";
         CREATE TEMP VIEW \"INFORMATION_SCHEMA.TABLE_CONSTRAINTS\" AS
           SELECT '{db}' AS CONSTRAINT_CATALOG, 'dbo' AS CONSTRAINT_SCHEMA,
                  'PK_' || m.name AS CONSTRAINT_NAME, '{db}' AS TABLE_CATALOG,
                  'dbo' AS TABLE_SCHEMA, m.name AS TABLE_NAME,
                  'PRIMARY KEY' AS CONSTRAINT_TYPE, 'NO' AS IS_DEFERRABLE, 'NO' AS INITIALLY_DEFERRED
           FROM main.sqlite_master m
           WHERE m.type = 'table' AND {user}
             AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) p WHERE p.pk > 0);
         CREATE TEMP VIEW \"INFORMATION_SCHEMA.KEY_COLUMN_USAGE\" AS
           SELECT '{db}' AS CONSTRAINT_CATALOG, 'dbo' AS CONSTRAINT_SCHEMA,
                  'PK_' || m.name AS CONSTRAINT_NAME, '{db}' AS TABLE_CATALOG,
                  'dbo' AS TABLE_SCHEMA, m.name AS TABLE_NAME, p.name AS COLUMN_NAME,
                  p.pk AS ORDINAL_POSITION
           FROM main.sqlite_master m JOIN pragma_table_info(m.name) p
           WHERE m.type = 'table' AND {user} AND p.pk > 0;
         DROP VIEW IF EXISTS temp.\"INFORMATION_SCHEMA.TABLES\";
         DROP VIEW IF EXISTS temp.\"INFORMATION_SCHEMA.COLUMNS\";
         CREATE TEMP VIEW \"INFORMATION_SCHEMA.TABLES\" AS
           SELECT '{db}' AS TABLE_CATALOG, 'dbo' AS TABLE_SCHEMA, m.name AS TABLE_NAME,
                  CASE m.type WHEN 'view' THEN 'VIEW' ELSE 'BASE TABLE' END AS TABLE_TYPE
           FROM main.sqlite_master m
           WHERE m.type IN ('table', 'view') AND {user};
         CREATE TEMP VIEW \"INFORMATION_SCHEMA.COLUMNS\" AS
           SELECT '{db}' AS TABLE_CATALOG, 'dbo' AS TABLE_SCHEMA, m.name AS TABLE_NAME,
                  p.name AS COLUMN_NAME, p.cid + 1 AS ORDINAL_POSITION, p.dflt_value AS COLUMN_DEFAULT,
                  CASE WHEN p.\"notnull\" THEN 'NO' ELSE 'YES' END AS IS_NULLABLE,
                  __TDS_TYPE_INFO(p.type, 'name') AS DATA_TYPE,
                  __TDS_TYPE_INFO(p.type, 'char_len') AS CHARACTER_MAXIMUM_LENGTH,
                  __TDS_TYPE_INFO(p.type, 'octet_len') AS CHARACTER_OCTET_LENGTH,
                  __TDS_TYPE_INFO(p.type, 'precision') AS NUMERIC_PRECISION,
                  __TDS_TYPE_INFO(p.type, 'radix') AS NUMERIC_PRECISION_RADIX,
                  __TDS_TYPE_INFO(p.type, 'scale') AS NUMERIC_SCALE,
                  __TDS_TYPE_INFO(p.type, 'dt_precision') AS DATETIME_PRECISION,
                  __TDS_TYPE_INFO(p.type, 'collation') AS COLLATION_NAME
           FROM main.sqlite_master m JOIN pragma_table_info(m.name) p
           WHERE m.type IN ('table', 'view') AND {user};"
    ))
}

/// Prefix of the message of `__TDS_RAISE(number, message)`, mapped back to a SQL Server error.
pub(crate) const RAISE_PREFIX: &str = "__TDS_ERROR ";

/// Register the T-SQL helper functions.
pub(crate) fn register(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let det = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    let vol = FunctionFlags::SQLITE_UTF8;
    conn.create_scalar_function("__TDS_RAISE", 2, vol, |c| -> rusqlite::Result<i64> {
        let number: i64 = c.get(0)?;
        let message = text_of(c.get_raw(1)).unwrap_or_default();
        Err(user_err(format!("{RAISE_PREFIX}{number}: {message}")))
    })?;
    conn.create_scalar_function("ISNULL", 2, det, |c| {
        Ok(match c.get_raw(0) {
            ValueRef::Null => Value::from(c.get_raw(1)),
            v => Value::from(v),
        })
    })?;
    conn.create_scalar_function("LEN", 1, det, |c| {
        Ok(text_of(c.get_raw(0)).map(|s| s.trim_end_matches(' ').chars().count() as i64))
    })?;
    conn.create_scalar_function("DATALENGTH", 1, det, |c| {
        Ok(match c.get_raw(0) {
            ValueRef::Null => None,
            ValueRef::Blob(b) => Some(b.len() as i64),
            ValueRef::Integer(_) | ValueRef::Real(_) => Some(8),
            ValueRef::Text(t) => Some(String::from_utf8_lossy(t).encode_utf16().count() as i64 * 2),
        })
    })?;
    for n in [2, 3] {
        conn.create_scalar_function("CHARINDEX", n, det, |c| {
            let (Some(needle), Some(hay)) = (text_of(c.get_raw(0)), text_of(c.get_raw(1))) else {
                return Ok(None);
            };
            let start = if c.len() > 2 {
                c.get::<i64>(2)?.max(1) as usize - 1
            } else {
                0
            };
            let hay: Vec<char> = hay.to_lowercase().chars().collect();
            let needle: Vec<char> = needle.to_lowercase().chars().collect();
            if needle.is_empty() || needle.len() > hay.len() {
                return Ok(Some(0i64));
            }
            let pos = (start..=hay.len() - needle.len())
                .find(|&i| hay[i..i + needle.len()] == needle[..])
                .map(|i| i as i64 + 1)
                .unwrap_or(0);
            Ok(Some(pos))
        })?;
    }
    for name in ["GETDATE", "GETUTCDATE", "SYSDATETIME", "SYSUTCDATETIME"] {
        conn.create_scalar_function(name, 0, vol, |_| Ok(now_text()))?;
    }
    conn.create_scalar_function("NEWID", 0, vol, |_| Ok(random_guid()))?;
    // The one collation of this server; other names (and properties) are NULL, as in SQL Server.
    conn.create_scalar_function("COLLATIONPROPERTY", 2, det, |c| {
        let name = text_of(c.get_raw(0)).unwrap_or_default();
        let property = text_of(c.get_raw(1))
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !name.eq_ignore_ascii_case(COLLATION_NAME) {
            return Ok(None);
        }
        Ok(match property.as_str() {
            "codepage" => Some(COLLATION_CODE_PAGE),
            "lcid" => Some(1033),
            "comparisonstyle" => Some(196_609),
            "version" => Some(0),
            _ => None,
        })
    })?;
    for n in [1, 2] {
        conn.create_scalar_function("QUOTENAME", n, det, |c| {
            let Some(s) = text_of(c.get_raw(0)) else {
                return Ok(None);
            };
            let q = if c.len() > 1 {
                match text_of(c.get_raw(1)) {
                    Some(q) => q,
                    None => return Ok(None),
                }
            } else {
                "[".to_string()
            };
            Ok(quotename(&s, &q))
        })?;
    }
    conn.create_scalar_function("__TDS_OBJECT_NAME", 1, det, |c| {
        Ok(text_of(c.get_raw(0)).and_then(|s| object_name(&s)))
    })?;
    conn.create_scalar_function("__TDS_CONVERT", 2, det, |c| {
        let ty = text_of(c.get_raw(1)).unwrap_or_default();
        convert(c.get_raw(0), &ty)
    })?;
    conn.create_scalar_function("__TDS_TYPE_INFO", 2, det, |c| {
        let decl = text_of(c.get_raw(0)).unwrap_or_default();
        let field = text_of(c.get_raw(1)).unwrap_or_default();
        Ok(type_info(&decl, &field))
    })?;
    conn.create_scalar_function("DATEADD", 3, det, |c| {
        let part = part_arg(c)?;
        let Some(n) = c.get::<Option<i64>>(1)? else {
            return Ok(None);
        };
        let Some((t, shape)) = temporal_arg(c, 2)? else {
            return Ok(None);
        };
        let shape = if shape == Shape::Date && tick_unit(part).is_some() {
            Shape::DateTime
        } else {
            shape
        };
        Ok(Some(render(dateadd(part, n, t)?, shape)))
    })?;
    for name in ["DATEDIFF", "DATEDIFF_BIG"] {
        conn.create_scalar_function(name, 3, det, |c| {
            let part = part_arg(c)?;
            match (temporal_arg(c, 1)?, temporal_arg(c, 2)?) {
                (Some((a, _)), Some((b, _))) => Ok(Some(datediff(part, a, b)?)),
                _ => Ok(None),
            }
        })?;
    }
    conn.create_scalar_function("DATEPART", 2, det, |c| {
        let part = part_arg(c)?;
        match temporal_arg(c, 1)? {
            Some((t, _)) => Ok(Some(datepart(part, t)?)),
            None => Ok(None),
        }
    })?;
    conn.create_scalar_function("DATENAME", 2, det, |c| {
        const MONTHS: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        const DAYS: [&str; 7] = [
            "Sunday",
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
        ];
        let part = part_arg(c)?;
        let Some((t, _)) = temporal_arg(c, 1)? else {
            return Ok(None);
        };
        let v = datepart(part, t)?;
        Ok(Some(match part {
            "month" => MONTHS[(v - 1) as usize % 12].to_string(),
            "weekday" => DAYS[(v - 1) as usize % 7].to_string(),
            _ => v.to_string(),
        }))
    })?;
    for (name, part) in [("YEAR", "year"), ("MONTH", "month"), ("DAY", "day")] {
        conn.create_scalar_function(name, 1, det, move |c| match temporal_arg(c, 0)? {
            Some((t, _)) => Ok(Some(datepart(part, t)?)),
            None => Ok(None),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Temporal {
        parse_temporal(s).unwrap()
    }

    #[test]
    fn quotename_and_object_names_as_sql_server() {
        assert_eq!(quotename("a]b", "[").as_deref(), Some("[a]]b]"));
        assert_eq!(quotename("a\"b", "\"").as_deref(), Some("\"a\"\"b\""));
        assert_eq!(quotename("it's", "'").as_deref(), Some("'it''s'"));
        assert_eq!(quotename("x", "!"), None);
        assert_eq!(quotename(&"x".repeat(129), "["), None);
        assert_eq!(quotename(&"x".repeat(128), "[").map(|q| q.len()), Some(130));
        for (name, object) in [
            ("orders", Some("orders")),
            ("dbo.orders", Some("orders")),
            ("[bridge].[dbo].[orders]", Some("orders")),
            ("[a.b].[c]]d]", Some("c]d")),
            ("\"dbo\".\"x y\"", Some("x y")),
            ("tempdb..#stage", Some("#stage")),
            ("srv.db.dbo.t", Some("t")),
            ("a.srv.db.dbo.t", None),
            ("dbo.", None),
            ("[unclosed", None),
        ] {
            assert_eq!(object_name(name).as_deref(), object, "{name}");
        }
    }

    #[test]
    fn date_arithmetic() {
        let r = dateadd("month", 1, t("2024-01-31 10:00:00")).unwrap();
        assert_eq!(render(r, Shape::DateTime), "2024-02-29 10:00:00.0000000");
        let r = dateadd("minute", -90, t("2024-01-01 00:30:00")).unwrap();
        assert_eq!(render(r, Shape::DateTime), "2023-12-31 23:00:00.0000000");
        assert_eq!(
            datediff("year", t("2023-12-31"), t("2024-01-01")).unwrap(),
            1
        );
        assert_eq!(
            datediff("day", t("2024-03-01"), t("2024-02-28")).unwrap(),
            -2
        );
        assert_eq!(
            datediff("hour", t("2024-01-01 10:59"), t("2024-01-01 11:00")).unwrap(),
            1
        );
        assert_eq!(datepart("weekday", t("2024-01-07")).unwrap(), 1); // a Sunday
        assert_eq!(datepart("dayofyear", t("2024-12-31")).unwrap(), 366);
        assert_eq!(datepart("week", t("2024-01-07")).unwrap(), 2);
        assert_eq!(
            convert(ValueRef::Text(b"2024-01-02T03:04:05.123"), "datetime")
                .unwrap()
                .unwrap(),
            "2024-01-02 03:04:05.1233333"
        );
        assert_eq!(
            convert(ValueRef::Text(b"2024-01-02 03:04:05"), "date")
                .unwrap()
                .unwrap(),
            "2024-01-02"
        );
    }
}
