//! SQL Server column types: parsing T-SQL / SQLite type names, COLMETADATA TYPE_INFO and ROW encoding.
//! Also decodes client-sent TYPE_INFO and values (RPC parameters, bulk rows) into SQLite values.

use std::borrow::Cow;

use rusqlite::types::{Value, ValueRef};

use crate::error::{Error, SqlError};
use crate::values::{
    EPOCH_0001, EPOCH_1900, TICKS_PER_DAY, digit_count, fmt_date, fmt_datetime, fmt_decimal,
    fmt_guid, fmt_offset, fmt_time, from_cp1252, guid_swap, parse_decimal, parse_guid,
    parse_temporal, rescale, round_ticks, to_cp1252,
};
use crate::wire::{Input, ResponseWriter, utf16_to_string};

/// Collation sent with every character column: SQL_Latin1_General_CP1_CI_AS (code page 1252).
pub(crate) const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];
/// The name of [`COLLATION`], as `COLLATION_NAME` and `COLLATIONPROPERTY` spell it.
pub(crate) const COLLATION_NAME: &str = "SQL_Latin1_General_CP1_CI_AS";
/// The code page of [`COLLATION`].
pub(crate) const COLLATION_CODE_PAGE: i64 = 1252;

/// Length of a variable-size character/binary type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Len {
    /// At most n characters (n bytes for binary / single-byte strings).
    N(u16),
    /// `MAX`: sent as PLP.
    Max,
}

/// A SQL Server data type as seen by clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum SqlType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Real,
    Float,
    Decimal(u8, u8),
    Numeric(u8, u8),
    Money,
    SmallMoney,
    Date,
    Time(u8),
    DateTime,
    SmallDateTime,
    DateTime2(u8),
    DateTimeOffset(u8),
    Char(u16),
    VarChar(Len),
    NChar(u16),
    NVarChar(Len),
    Text,
    NText,
    Binary(u16),
    VarBinary(Len),
    Image,
    UniqueIdentifier,
    Xml,
}

fn clamp_scale(v: Option<u32>) -> u8 {
    v.unwrap_or(7).min(7) as u8
}

fn len_arg(arg: Option<&str>, default: u16, max: u16) -> Option<Len> {
    match arg {
        None => Some(Len::N(default)),
        Some(a) if a.eq_ignore_ascii_case("MAX") || a == "-1" => Some(Len::Max),
        Some(a) => {
            let n: u32 = a.parse().ok()?;
            if n == 0 {
                return None;
            }
            Some(if n > max as u32 {
                Len::Max
            } else {
                Len::N(n as u16)
            })
        }
    }
}

impl SqlType {
    /// Parse a type name. `tsql` selects T-SQL meanings for names SQLite users also use
    /// (`REAL` = float(24), `TEXT` = legacy text, `INTEGER` = int); otherwise the SQLite
    /// meanings apply (`REAL` = float, `TEXT` = nvarchar(max), `INTEGER` = bigint).
    pub fn parse(raw: &str, tsql: bool) -> Option<SqlType> {
        let cleaned: String = raw
            .chars()
            .filter(|c| !matches!(c, '[' | ']' | '"' | '`'))
            .collect::<String>()
            .to_ascii_uppercase();
        let mut s = cleaned.trim().to_string();
        // Affinity marker written by our DDL translation, e.g. `DECIMAL(18,4) TEXT`.
        if let Some(stripped) = s.strip_suffix(" TEXT")
            && !stripped.is_empty()
        {
            s = stripped.trim().to_string();
        }
        let (base, args) = match s.find('(') {
            Some(i) => {
                let close = s.rfind(')')?;
                if close <= i {
                    return None;
                }
                let inner = &s[i + 1..close];
                let args: Vec<String> = inner.split(',').map(|a| a.trim().to_string()).collect();
                (s[..i].trim().to_string(), args)
            }
            None => (s.clone(), Vec::new()),
        };
        let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
        let a0 = args.first().map(String::as_str);
        let num = |i: usize| args.get(i).and_then(|a| a.parse::<u32>().ok());
        let decimal = |p: Option<u32>, s: Option<u32>| -> Option<(u8, u8)> {
            let p = p.unwrap_or(18);
            let s = s.unwrap_or(0);
            if !(1..=38).contains(&p) || s > p {
                return None;
            }
            Some((p as u8, s as u8))
        };
        let t = match base.as_str() {
            "BIT" | "BOOL" | "BOOLEAN" => SqlType::Bit,
            "TINYINT" => SqlType::TinyInt,
            "SMALLINT" | "INT2" => SqlType::SmallInt,
            "INT" | "MEDIUMINT" | "INT4" => SqlType::Int,
            "INTEGER" if tsql => SqlType::Int,
            "INTEGER" | "BIGINT" | "INT8" | "UNSIGNED BIG INT" => SqlType::BigInt,
            "REAL" if tsql => SqlType::Real,
            "REAL" | "DOUBLE" | "DOUBLE PRECISION" => SqlType::Float,
            "FLOAT" => match num(0) {
                Some(n) if n <= 24 => SqlType::Real,
                _ => SqlType::Float,
            },
            "DECIMAL" | "DEC" => {
                let (p, s) = decimal(num(0), num(1))?;
                SqlType::Decimal(p, s)
            }
            "NUMERIC" => {
                let (p, s) = decimal(num(0), num(1))?;
                SqlType::Numeric(p, s)
            }
            "MONEY" => SqlType::Money,
            "SMALLMONEY" => SqlType::SmallMoney,
            "DATE" => SqlType::Date,
            "TIME" => SqlType::Time(clamp_scale(num(0))),
            "DATETIME" => SqlType::DateTime,
            "SMALLDATETIME" => SqlType::SmallDateTime,
            "DATETIME2" => SqlType::DateTime2(clamp_scale(num(0))),
            "TIMESTAMP" if !tsql => SqlType::DateTime2(7),
            "TIMESTAMP" | "ROWVERSION" => SqlType::Binary(8),
            "DATETIMEOFFSET" => SqlType::DateTimeOffset(clamp_scale(num(0))),
            "CHAR" | "CHARACTER" => match len_arg(a0, 1, 8000)? {
                Len::N(n) => SqlType::Char(n),
                Len::Max => return None,
            },
            "VARCHAR" | "CHARACTER VARYING" | "CHAR VARYING" => {
                if a0.is_none() && !tsql {
                    SqlType::NVarChar(Len::Max)
                } else {
                    SqlType::VarChar(len_arg(a0, 1, 8000)?)
                }
            }
            "NCHAR" | "NATIONAL CHAR" | "NATIONAL CHARACTER" => match len_arg(a0, 1, 4000)? {
                Len::N(n) => SqlType::NChar(n),
                Len::Max => return None,
            },
            "NVARCHAR" | "NATIONAL CHAR VARYING" | "NATIONAL CHARACTER VARYING" => {
                if a0.is_none() && !tsql {
                    SqlType::NVarChar(Len::Max)
                } else {
                    SqlType::NVarChar(len_arg(a0, 1, 4000)?)
                }
            }
            "SYSNAME" => SqlType::NVarChar(Len::N(128)),
            "TEXT" if tsql || a0 == Some("2147483647") => SqlType::Text,
            "TEXT" | "CLOB" | "STRING" => SqlType::NVarChar(Len::Max),
            "NTEXT" => SqlType::NText,
            "BINARY" => match len_arg(a0, 1, 8000)? {
                Len::N(n) => SqlType::Binary(n),
                Len::Max => return None,
            },
            "VARBINARY" | "BINARY VARYING" => {
                if a0.is_none() && !tsql {
                    SqlType::VarBinary(Len::Max)
                } else {
                    SqlType::VarBinary(len_arg(a0, 1, 8000)?)
                }
            }
            "BLOB" => SqlType::VarBinary(Len::Max),
            "IMAGE" => SqlType::Image,
            "UNIQUEIDENTIFIER" | "UUID" => SqlType::UniqueIdentifier,
            "XML" => SqlType::Xml,
            _ => return None,
        };
        Some(t)
    }

    /// Character types, the ones that carry a collation.
    pub fn is_collated(self) -> bool {
        matches!(
            self,
            SqlType::Char(_)
                | SqlType::VarChar(_)
                | SqlType::NChar(_)
                | SqlType::NVarChar(_)
                | SqlType::Text
                | SqlType::NText
        )
    }

    /// T-SQL spelling, e.g. `decimal(18,4)`, `nvarchar(max)`.
    pub fn tsql_name(&self) -> String {
        let len = |l: &Len| match l {
            Len::N(n) => n.to_string(),
            Len::Max => "max".to_string(),
        };
        match self {
            SqlType::Bit => "bit".into(),
            SqlType::TinyInt => "tinyint".into(),
            SqlType::SmallInt => "smallint".into(),
            SqlType::Int => "int".into(),
            SqlType::BigInt => "bigint".into(),
            SqlType::Real => "real".into(),
            SqlType::Float => "float".into(),
            SqlType::Decimal(p, s) => format!("decimal({p},{s})"),
            SqlType::Numeric(p, s) => format!("numeric({p},{s})"),
            SqlType::Money => "money".into(),
            SqlType::SmallMoney => "smallmoney".into(),
            SqlType::Date => "date".into(),
            SqlType::Time(n) => format!("time({n})"),
            SqlType::DateTime => "datetime".into(),
            SqlType::SmallDateTime => "smalldatetime".into(),
            SqlType::DateTime2(n) => format!("datetime2({n})"),
            SqlType::DateTimeOffset(n) => format!("datetimeoffset({n})"),
            SqlType::Char(n) => format!("char({n})"),
            SqlType::VarChar(l) => format!("varchar({})", len(l)),
            SqlType::NChar(n) => format!("nchar({n})"),
            SqlType::NVarChar(l) => format!("nvarchar({})", len(l)),
            SqlType::Text => "text".into(),
            SqlType::NText => "ntext".into(),
            SqlType::Binary(n) => format!("binary({n})"),
            SqlType::VarBinary(l) => format!("varbinary({})", len(l)),
            SqlType::Image => "image".into(),
            SqlType::UniqueIdentifier => "uniqueidentifier".into(),
            SqlType::Xml => "xml".into(),
        }
    }

    /// Declared type written into SQLite DDL (always quoted by the caller). It keeps the T-SQL
    /// type readable through `decltype` and gives SQLite the storage affinity we want: exact
    /// numerics and xml get a ` TEXT` suffix so SQLite never turns them into lossy REALs;
    /// `real` is spelled `float(24)` and legacy `text` `text(2147483647)`.
    pub fn ddl_name(&self) -> String {
        let name = self.tsql_name().to_ascii_uppercase();
        match self {
            SqlType::Decimal(..)
            | SqlType::Numeric(..)
            | SqlType::Money
            | SqlType::SmallMoney
            | SqlType::Xml => format!("{name} TEXT"),
            SqlType::Real => "FLOAT(24)".into(),
            SqlType::Text => "TEXT(2147483647)".into(),
            _ => name,
        }
    }

    /// Type to report for a value without declared type (computed expressions).
    pub fn infer(v: ValueRef<'_>) -> SqlType {
        match v {
            ValueRef::Integer(_) => SqlType::BigInt,
            ValueRef::Real(_) => SqlType::Float,
            ValueRef::Text(t)
                if t.len() > 4000
                    && std::str::from_utf8(t)
                        .map(|s| s.encode_utf16().count() > 4000)
                        .unwrap_or(true) =>
            {
                SqlType::NVarChar(Len::Max)
            }
            ValueRef::Blob(_) => SqlType::VarBinary(Len::Max),
            _ => SqlType::NVarChar(Len::N(4000)),
        }
    }

    fn decimal_len(p: u8) -> u8 {
        match p {
            1..=9 => 5,
            10..=19 => 9,
            20..=28 => 13,
            _ => 17,
        }
    }

    fn time_len(scale: u8) -> u8 {
        match scale {
            0..=2 => 3,
            3..=4 => 4,
            _ => 5,
        }
    }

    /// Write TYPE_INFO as SQL Server sends it in COLMETADATA (nullable variants).
    pub(crate) fn write_type_info(&self, w: &mut ResponseWriter) {
        let ushort = |w: &mut ResponseWriter, code: u8, l: Len, chars: bool, coll: bool| {
            w.put_u8(code);
            match l {
                Len::N(n) => w.put_u16(if chars { n * 2 } else { n }),
                Len::Max => w.put_u16(0xFFFF),
            }
            if coll {
                w.put(&COLLATION);
            }
        };
        match *self {
            SqlType::Bit => w.put(&[0x68, 1]),
            SqlType::TinyInt => w.put(&[0x26, 1]),
            SqlType::SmallInt => w.put(&[0x26, 2]),
            SqlType::Int => w.put(&[0x26, 4]),
            SqlType::BigInt => w.put(&[0x26, 8]),
            SqlType::Real => w.put(&[0x6D, 4]),
            SqlType::Float => w.put(&[0x6D, 8]),
            SqlType::Decimal(p, s) => w.put(&[0x6A, Self::decimal_len(p), p, s]),
            SqlType::Numeric(p, s) => w.put(&[0x6C, Self::decimal_len(p), p, s]),
            SqlType::Money => w.put(&[0x6E, 8]),
            SqlType::SmallMoney => w.put(&[0x6E, 4]),
            SqlType::Date => w.put(&[0x28]),
            SqlType::Time(n) => w.put(&[0x29, n]),
            SqlType::DateTime => w.put(&[0x6F, 8]),
            SqlType::SmallDateTime => w.put(&[0x6F, 4]),
            SqlType::DateTime2(n) => w.put(&[0x2A, n]),
            SqlType::DateTimeOffset(n) => w.put(&[0x2B, n]),
            SqlType::Char(n) => ushort(w, 0xAF, Len::N(n), false, true),
            SqlType::VarChar(l) => ushort(w, 0xA7, l, false, true),
            SqlType::NChar(n) => ushort(w, 0xEF, Len::N(n), true, true),
            SqlType::NVarChar(l) => ushort(w, 0xE7, l, true, true),
            SqlType::Binary(n) => ushort(w, 0xAD, Len::N(n), false, false),
            SqlType::VarBinary(l) => ushort(w, 0xA5, l, false, false),
            SqlType::Text | SqlType::NText | SqlType::Image => {
                let (code, len) = match self {
                    SqlType::Text => (0x23, 0x7FFF_FFFF),
                    SqlType::NText => (0x63, 0x7FFF_FFFE),
                    _ => (0x22, 0x7FFF_FFFF),
                };
                w.put_u8(code);
                w.put_u32(len);
                if code != 0x22 {
                    w.put(&COLLATION);
                }
                // TableName: no parts.
                w.put_u8(0);
            }
            SqlType::UniqueIdentifier => w.put(&[0x24, 16]),
            SqlType::Xml => w.put(&[0xF1, 0]),
        }
    }
}

fn value_text(v: ValueRef<'_>) -> Cow<'_, str> {
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t),
        ValueRef::Integer(i) => Cow::Owned(i.to_string()),
        ValueRef::Real(f) => Cow::Owned(f.to_string()),
        ValueRef::Null => Cow::Borrowed(""),
    }
}

fn conv_err(v: ValueRef<'_>, ty: &SqlType) -> SqlError {
    SqlError::conversion(format!(
        "Conversion failed when converting the value '{}' to data type {}.",
        value_text(v),
        ty.tsql_name()
    ))
}

fn value_i64(v: ValueRef<'_>, ty: &SqlType) -> Result<i64, SqlError> {
    match v {
        ValueRef::Integer(i) => Ok(i),
        ValueRef::Real(f) if f.is_finite() && f.abs() < 9.2e18 => Ok(f.trunc() as i64),
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                return Ok(i);
            }
            match s.parse::<f64>() {
                Ok(f) if f.is_finite() && f.abs() < 9.2e18 => Ok(f.trunc() as i64),
                _ if s.eq_ignore_ascii_case("true") => Ok(1),
                _ if s.eq_ignore_ascii_case("false") => Ok(0),
                _ => Err(conv_err(v, ty)),
            }
        }
        _ => Err(conv_err(v, ty)),
    }
}

fn value_f64(v: ValueRef<'_>, ty: &SqlType) -> Result<f64, SqlError> {
    match v {
        ValueRef::Integer(i) => Ok(i as f64),
        ValueRef::Real(f) => Ok(f),
        ValueRef::Text(t) => String::from_utf8_lossy(t)
            .trim()
            .parse::<f64>()
            .map_err(|_| conv_err(v, ty)),
        _ => Err(conv_err(v, ty)),
    }
}

/// Value as an exact decimal at `scale`, checked against `precision` digits.
fn value_decimal(
    v: ValueRef<'_>,
    ty: &SqlType,
    precision: u8,
    scale: u8,
) -> Result<i128, SqlError> {
    let (m, s) = match v {
        ValueRef::Integer(i) => (i as i128, 0),
        ValueRef::Real(f) => parse_decimal(&format!("{f}")).ok_or_else(|| conv_err(v, ty))?,
        ValueRef::Text(t) => {
            parse_decimal(&String::from_utf8_lossy(t)).ok_or_else(|| conv_err(v, ty))?
        }
        _ => return Err(conv_err(v, ty)),
    };
    let m = rescale(m, s, scale as u32).ok_or_else(|| overflow(v, ty))?;
    if digit_count(m) > precision as u32 {
        return Err(overflow(v, ty));
    }
    Ok(m)
}

fn overflow(v: ValueRef<'_>, ty: &SqlType) -> SqlError {
    SqlError::new(
        8115,
        format!(
            "Arithmetic overflow error converting '{}' to data type {}.",
            value_text(v),
            ty.tsql_name()
        ),
    )
}

fn truncation(ty: &SqlType) -> SqlError {
    SqlError::new(
        8152,
        format!(
            "String or binary data would be truncated (stored value is longer than {}).",
            ty.tsql_name()
        ),
    )
}

fn value_temporal(v: ValueRef<'_>, ty: &SqlType) -> Result<crate::values::Temporal, SqlError> {
    match v {
        ValueRef::Text(t) => {
            parse_temporal(&String::from_utf8_lossy(t)).ok_or_else(|| conv_err(v, ty))
        }
        _ => Err(conv_err(v, ty)),
    }
}

fn put_time_bytes(w: &mut ResponseWriter, ticks: u64, scale: u8) {
    let inc = ticks / 10u64.pow(7 - scale as u32);
    let n = SqlType::time_len(scale) as usize;
    w.put(&inc.to_le_bytes()[..n]);
}

fn put_date_bytes(w: &mut ResponseWriter, days: i64) {
    w.put(&(days as u32).to_le_bytes()[..3]);
}

fn put_plp(w: &mut ResponseWriter, data: &[u8]) {
    w.put_u64(data.len() as u64);
    if !data.is_empty() {
        w.put_u32(data.len() as u32);
        w.put(data);
    }
    w.put_u32(0);
}

/// Encode one value of a ROW token for a column of type `ty`.
pub(crate) fn encode_value(
    w: &mut ResponseWriter,
    ty: &SqlType,
    v: ValueRef<'_>,
) -> Result<(), SqlError> {
    let null = matches!(v, ValueRef::Null);
    match *ty {
        SqlType::Bit => {
            if null {
                w.put_u8(0);
            } else {
                let b = value_i64(v, ty)? != 0;
                w.put(&[1, b as u8]);
            }
        }
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            if null {
                w.put_u8(0);
                return Ok(());
            }
            let i = value_i64(v, ty)?;
            let (len, ok) = match ty {
                SqlType::TinyInt => (1, (0..=255).contains(&i)),
                SqlType::SmallInt => (2, i16::try_from(i).is_ok()),
                SqlType::Int => (4, i32::try_from(i).is_ok()),
                _ => (8, true),
            };
            if !ok {
                return Err(SqlError::new(
                    220,
                    format!(
                        "Arithmetic overflow error for data type {}, value = {i}.",
                        ty.tsql_name()
                    ),
                ));
            }
            w.put_u8(len as u8);
            w.put(&i.to_le_bytes()[..len]);
        }
        SqlType::Real => {
            if null {
                w.put_u8(0);
            } else {
                w.put_u8(4);
                w.put(&(value_f64(v, ty)? as f32).to_le_bytes());
            }
        }
        SqlType::Float => {
            if null {
                w.put_u8(0);
            } else {
                w.put_u8(8);
                w.put(&value_f64(v, ty)?.to_le_bytes());
            }
        }
        SqlType::Decimal(p, s) | SqlType::Numeric(p, s) => {
            if null {
                w.put_u8(0);
                return Ok(());
            }
            let m = value_decimal(v, ty, p, s)?;
            let len = SqlType::decimal_len(p);
            w.put_u8(len);
            w.put_u8(if m < 0 { 0 } else { 1 });
            w.put(&m.unsigned_abs().to_le_bytes()[..(len - 1) as usize]);
        }
        SqlType::Money | SqlType::SmallMoney => {
            if null {
                w.put_u8(0);
                return Ok(());
            }
            let prec = if *ty == SqlType::Money { 19 } else { 10 };
            let m = value_decimal(v, ty, prec, 4)?;
            if *ty == SqlType::Money {
                let i = i64::try_from(m).map_err(|_| overflow(v, ty))?;
                w.put_u8(8);
                w.put(&((i >> 32) as i32).to_le_bytes());
                w.put(&(i as u32).to_le_bytes());
            } else {
                let i = i32::try_from(m).map_err(|_| overflow(v, ty))?;
                w.put_u8(4);
                w.put(&i.to_le_bytes());
            }
        }
        SqlType::Date => {
            if null {
                w.put_u8(0);
                return Ok(());
            }
            let t = value_temporal(v, ty)?;
            w.put_u8(3);
            put_date_bytes(w, t.days);
        }
        SqlType::Time(n) => {
            if null {
                w.put_u8(0);
                return Ok(());
            }
            let t = value_temporal(v, ty)?;
            let (_, ticks) = round_ticks(t.ticks, n);
            w.put_u8(SqlType::time_len(n));
            put_time_bytes(w, ticks, n);
        }
        SqlType::DateTime2(n) => {
            if null {
                w.put_u8(0);
                return Ok(());
            }
            let t = value_temporal(v, ty)?;
            let (carry, ticks) = round_ticks(t.ticks, n);
            w.put_u8(SqlType::time_len(n) + 3);
            put_time_bytes(w, ticks, n);
            put_date_bytes(w, t.days + carry);
        }
        SqlType::DateTimeOffset(n) => {
            if null {
                w.put_u8(0);
                return Ok(());
            }
            let t = value_temporal(v, ty)?;
            let off = t.offset_min.unwrap_or(0);
            let total = (t.days as i128) * TICKS_PER_DAY as i128 + t.ticks as i128
                - off as i128 * 600_000_000;
            let days = total.div_euclid(TICKS_PER_DAY as i128) as i64;
            let ticks = total.rem_euclid(TICKS_PER_DAY as i128) as u64;
            let (carry, ticks) = round_ticks(ticks, n);
            w.put_u8(SqlType::time_len(n) + 5);
            put_time_bytes(w, ticks, n);
            put_date_bytes(w, days + carry);
            w.put(&off.to_le_bytes());
        }
        SqlType::DateTime => {
            if null {
                w.put_u8(0);
                return Ok(());
            }
            let t = value_temporal(v, ty)?;
            let mut days = t.days - EPOCH_0001 + EPOCH_1900;
            let mut frac = (t.ticks * 3 + 50_000) / 100_000;
            if frac >= 300 * 86_400 {
                frac -= 300 * 86_400;
                days += 1;
            }
            w.put_u8(8);
            w.put(&(days as i32).to_le_bytes());
            w.put(&(frac as u32).to_le_bytes());
        }
        SqlType::SmallDateTime => {
            if null {
                w.put_u8(0);
                return Ok(());
            }
            let t = value_temporal(v, ty)?;
            let mut days = t.days - EPOCH_0001 + EPOCH_1900;
            let mut mins = (t.ticks + 300_000_000) / 600_000_000;
            if mins >= 1440 {
                mins -= 1440;
                days += 1;
            }
            w.put_u8(4);
            w.put(&(days as u16).to_le_bytes());
            w.put(&(mins as u16).to_le_bytes());
        }
        SqlType::Char(_) | SqlType::VarChar(_) | SqlType::Text => {
            let max = matches!(ty, SqlType::VarChar(Len::Max));
            if null {
                match ty {
                    SqlType::Text => w.put_u8(0),
                    _ if max => w.put_u64(u64::MAX),
                    _ => w.put_u16(0xFFFF),
                }
                return Ok(());
            }
            let mut buf = std::mem::take(&mut w.scratch);
            buf.clear();
            to_cp1252(&value_text(v), &mut buf);
            let r = put_bytes_value(w, ty, &buf, b' ');
            w.scratch = buf;
            r?;
        }
        SqlType::NChar(_) | SqlType::NVarChar(_) | SqlType::NText | SqlType::Xml => {
            let plp = matches!(ty, SqlType::NVarChar(Len::Max) | SqlType::Xml);
            if null {
                match ty {
                    SqlType::NText => w.put_u8(0),
                    _ if plp => w.put_u64(u64::MAX),
                    _ => w.put_u16(0xFFFF),
                }
                return Ok(());
            }
            let mut buf = std::mem::take(&mut w.scratch);
            buf.clear();
            for u in value_text(v).encode_utf16() {
                buf.extend_from_slice(&u.to_le_bytes());
            }
            let r = put_bytes_value(w, ty, &buf, b' ');
            w.scratch = buf;
            r?;
        }
        SqlType::Binary(_) | SqlType::VarBinary(_) | SqlType::Image => {
            let max = matches!(ty, SqlType::VarBinary(Len::Max));
            if null {
                match ty {
                    SqlType::Image => w.put_u8(0),
                    _ if max => w.put_u64(u64::MAX),
                    _ => w.put_u16(0xFFFF),
                }
                return Ok(());
            }
            match v {
                ValueRef::Blob(b) | ValueRef::Text(b) => put_bytes_value(w, ty, b, 0)?,
                other => {
                    let s = value_text(other).into_owned();
                    put_bytes_value(w, ty, s.as_bytes(), 0)?
                }
            }
        }
        SqlType::UniqueIdentifier => {
            if null {
                w.put_u8(0);
                return Ok(());
            }
            let be = match v {
                ValueRef::Blob(b) if b.len() == 16 => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(b);
                    a
                }
                ValueRef::Text(t) => {
                    parse_guid(&String::from_utf8_lossy(t)).ok_or_else(|| conv_err(v, ty))?
                }
                _ => return Err(conv_err(v, ty)),
            };
            w.put_u8(16);
            w.put(&guid_swap(be));
        }
    }
    Ok(())
}

/// Write a non-NULL string/binary payload in the framing of `ty` (padding fixed-size types).
fn put_bytes_value(
    w: &mut ResponseWriter,
    ty: &SqlType,
    data: &[u8],
    pad: u8,
) -> Result<(), SqlError> {
    match *ty {
        SqlType::VarChar(Len::Max)
        | SqlType::NVarChar(Len::Max)
        | SqlType::VarBinary(Len::Max)
        | SqlType::Xml => {
            put_plp(w, data);
        }
        SqlType::Text | SqlType::NText | SqlType::Image => {
            w.put_u8(16);
            w.put(&[0xAA; 16]);
            w.put(&[0u8; 8]);
            w.put_u32(data.len() as u32);
            w.put(data);
        }
        SqlType::Char(n) | SqlType::Binary(n) | SqlType::NChar(n) => {
            let width = if matches!(ty, SqlType::NChar(_)) {
                n as usize * 2
            } else {
                n as usize
            };
            if data.len() > width {
                return Err(truncation(ty));
            }
            w.put_u16(width as u16);
            w.put(data);
            let fill = width - data.len();
            if matches!(ty, SqlType::NChar(_)) {
                for _ in 0..fill / 2 {
                    w.put(&[pad, 0]);
                }
            } else {
                for _ in 0..fill {
                    w.put_u8(pad);
                }
            }
        }
        SqlType::VarChar(Len::N(n))
        | SqlType::VarBinary(Len::N(n))
        | SqlType::NVarChar(Len::N(n)) => {
            let width = if matches!(ty, SqlType::NVarChar(_)) {
                n as usize * 2
            } else {
                n as usize
            };
            if data.len() > width {
                return Err(truncation(ty));
            }
            w.put_u16(data.len() as u16);
            w.put(data);
        }
        _ => return Err(SqlError::new(50000, "internal: not a string/binary type")),
    }
    Ok(())
}

/// A TYPE_INFO as sent by a client (RPC parameter or bulk-load COLMETADATA).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WireType {
    pub code: u8,
    pub len: u32,
    pub scale: u8,
    pub plp: bool,
}

/// Read a client TYPE_INFO (an RPC parameter's, or a bulk load's COLMETADATA, where clients
/// send no table name after TEXT/NTEXT/IMAGE).
pub(crate) fn read_type_info(inp: &mut impl Input) -> Result<WireType, Error> {
    let code = inp.u8()?;
    let mut t = WireType {
        code,
        len: 0,
        scale: 0,
        plp: false,
    };
    match code {
        0x1F => {}
        0x30 | 0x32 => t.len = 1,
        0x34 => t.len = 2,
        0x38 | 0x3A | 0x3B | 0x7A => t.len = 4,
        0x3C | 0x3D | 0x3E | 0x7F => t.len = 8,
        0x24 | 0x26 | 0x68 | 0x6D | 0x6E | 0x6F => t.len = inp.u8()? as u32,
        0x6A | 0x6C | 0x37 | 0x3F => {
            t.len = inp.u8()? as u32;
            let _precision = inp.u8()?;
            t.scale = inp.u8()?;
        }
        // DATENTYPE: no length or scale in TYPE_INFO (MS-TDS 2.2.5.6), in bulk loads too.
        0x28 => {}
        0x29..=0x2B => {
            t.scale = inp.u8()?;
            if t.scale > 7 {
                return Err(Error::protocol(format!("invalid time scale {}", t.scale)));
            }
        }
        0xA5 | 0xAD => {
            t.len = inp.u16le()? as u32;
            t.plp = t.len == 0xFFFF;
        }
        0xA7 | 0xAF | 0xE7 | 0xEF => {
            t.len = inp.u16le()? as u32;
            t.plp = t.len == 0xFFFF;
            inp.skip(5)?;
        }
        0x22 | 0x23 | 0x63 => {
            t.len = inp.u32le()?;
            if code != 0x22 {
                inp.skip(5)?;
            }
        }
        0xF1 => {
            t.plp = true;
            if inp.u8()? != 0 {
                inp.b_varchar()?;
                inp.b_varchar()?;
                inp.us_varchar()?;
            }
        }
        other => {
            return Err(Error::protocol(format!(
                "unsupported TYPE_INFO {other:#04x}"
            )));
        }
    }
    Ok(t)
}

fn read_plp(inp: &mut impl Input) -> Result<Option<Vec<u8>>, Error> {
    let total = inp.u64le()?;
    if total == u64::MAX {
        return Ok(None);
    }
    let mut out = Vec::new();
    loop {
        let chunk = inp.u32le()? as usize;
        if chunk == 0 {
            break;
        }
        out.extend(inp.read_vec(chunk)?);
    }
    Ok(Some(out))
}

fn le_int(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a[..b.len()].copy_from_slice(b);
    let v = i64::from_le_bytes(a);
    let shift = 64 - 8 * b.len() as u32;
    if shift == 0 { v } else { (v << shift) >> shift }
}

fn le_uint(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(a)
}

/// Read one value in the framing of `t` and convert it to its SQLite storage form.
pub(crate) fn read_value(inp: &mut impl Input, t: &WireType, bulk: bool) -> Result<Value, Error> {
    let code = t.code;
    // Payload bytes (None = NULL).
    let data: Option<Vec<u8>> = match code {
        0x1F => None,
        0x30 | 0x32 | 0x34 | 0x38 | 0x3A | 0x3B | 0x7A | 0x3C | 0x3D | 0x3E | 0x7F => {
            Some(inp.read_vec(t.len as usize)?)
        }
        0x24 | 0x26 | 0x68 | 0x6D | 0x6E | 0x6F | 0x6A | 0x6C | 0x37 | 0x3F | 0x28 | 0x29
        | 0x2A | 0x2B => {
            let n = inp.u8()? as usize;
            if n == 0 { None } else { Some(inp.read_vec(n)?) }
        }
        0xA5 | 0xAD | 0xA7 | 0xAF | 0xE7 | 0xEF | 0xF1 if t.plp => read_plp(inp)?,
        0xA5 | 0xAD | 0xA7 | 0xAF | 0xE7 | 0xEF => {
            let n = inp.u16le()?;
            if n == 0xFFFF {
                None
            } else {
                Some(inp.read_vec(n as usize)?)
            }
        }
        0x22 | 0x23 | 0x63 => {
            if bulk {
                let ptr = inp.u8()? as usize;
                if ptr == 0 {
                    None
                } else {
                    inp.skip(ptr + 8)?;
                    let n = inp.u32le()? as usize;
                    Some(inp.read_vec(n)?)
                }
            } else {
                let n = inp.u32le()?;
                if n == 0xFFFF_FFFF {
                    None
                } else {
                    Some(inp.read_vec(n as usize)?)
                }
            }
        }
        other => {
            return Err(Error::protocol(format!(
                "unsupported value type {other:#04x}"
            )));
        }
    };
    let Some(b) = data else {
        return Ok(Value::Null);
    };
    let bad = || {
        Error::protocol(format!(
            "invalid value length {} for type {code:#04x}",
            b.len()
        ))
    };
    let v = match code {
        0x30 | 0x32 | 0x68 => match b.len() {
            1 => Value::Integer(b[0] as i64),
            _ => return Err(bad()),
        },
        0x34 | 0x38 | 0x7F | 0x26 => match b.len() {
            1 => Value::Integer(b[0] as i64),
            2 | 4 | 8 => Value::Integer(le_int(&b)),
            _ => return Err(bad()),
        },
        0x3B | 0x3E | 0x6D => match b.len() {
            4 => Value::Real(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
            8 => Value::Real(f64::from_le_bytes(b[..8].try_into().map_err(|_| bad())?)),
            _ => return Err(bad()),
        },
        0x3C | 0x7A | 0x6E => {
            let m: i64 = match b.len() {
                4 => le_int(&b),
                8 => ((le_int(&b[0..4])) << 32) | le_uint(&b[4..8]) as i64,
                _ => return Err(bad()),
            };
            Value::Text(fmt_decimal(m as i128, 4))
        }
        0x6A | 0x6C | 0x37 | 0x3F => {
            if b.len() < 2 || b.len() > 17 {
                return Err(bad());
            }
            let mut a = [0u8; 16];
            a[..b.len() - 1].copy_from_slice(&b[1..]);
            let mag = u128::from_le_bytes(a);
            let m = i128::try_from(mag).map_err(|_| bad())?;
            Value::Text(fmt_decimal(if b[0] == 0 { -m } else { m }, t.scale as u32))
        }
        0x3D | 0x3A | 0x6F => match b.len() {
            8 => {
                let days = le_int(&b[0..4]) + EPOCH_0001 - EPOCH_1900;
                let frac = le_uint(&b[4..8]);
                let ticks = (frac * 100_000 + 1) / 3;
                Value::Text(fmt_datetime(days, ticks))
            }
            4 => {
                let days = le_uint(&b[0..2]) as i64 + EPOCH_0001 - EPOCH_1900;
                let mins = le_uint(&b[2..4]);
                Value::Text(fmt_datetime(days, mins * 600_000_000))
            }
            _ => return Err(bad()),
        },
        0x28 => {
            if b.len() != 3 {
                return Err(bad());
            }
            Value::Text(fmt_date(le_uint(&b) as i64))
        }
        0x29 => {
            let ticks = decode_time(&b, t.scale).ok_or_else(bad)?;
            Value::Text(fmt_time(ticks))
        }
        0x2A => {
            if b.len() < 6 {
                return Err(bad());
            }
            let (tb, db) = b.split_at(b.len() - 3);
            let ticks = decode_time(tb, t.scale).ok_or_else(bad)?;
            Value::Text(fmt_datetime(le_uint(db) as i64, ticks))
        }
        0x2B => {
            if b.len() < 8 {
                return Err(bad());
            }
            let (rest, ob) = b.split_at(b.len() - 2);
            let (tb, db) = rest.split_at(rest.len() - 3);
            let ticks = decode_time(tb, t.scale).ok_or_else(bad)?;
            let off = i16::from_le_bytes([ob[0], ob[1]]);
            let total = le_uint(db) as i128 * TICKS_PER_DAY as i128
                + ticks as i128
                + off as i128 * 600_000_000;
            let days = total.div_euclid(TICKS_PER_DAY as i128) as i64;
            let ticks = total.rem_euclid(TICKS_PER_DAY as i128) as u64;
            Value::Text(format!("{} {}", fmt_datetime(days, ticks), fmt_offset(off)))
        }
        0x24 => {
            let a: [u8; 16] = b.as_slice().try_into().map_err(|_| bad())?;
            Value::Text(fmt_guid(&guid_swap(a)))
        }
        0xA7 | 0xAF | 0x23 => Value::Text(from_cp1252(&b)),
        0xE7 | 0xEF | 0x63 | 0xF1 => Value::Text(utf16_to_string(&b)),
        0xA5 | 0xAD | 0x22 => Value::Blob(b),
        _ => return Err(bad()),
    };
    Ok(v)
}

/// Decode a TIME payload; the scale is taken from the length when it disagrees with TYPE_INFO.
fn decode_time(b: &[u8], scale: u8) -> Option<u64> {
    let scale = match (b.len(), scale) {
        (3, 0..=2) | (4, 3..=4) | (5, 5..=7) => scale,
        (3, _) => 2,
        (4, _) => 4,
        (5, _) => 7,
        _ => return None,
    };
    let inc = le_uint(b);
    let ticks = inc.checked_mul(10u64.pow(7 - scale as u32))?;
    (ticks < TICKS_PER_DAY).then_some(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!(
            SqlType::parse("DECIMAL(38,10) TEXT", false),
            Some(SqlType::Decimal(38, 10))
        );
        assert_eq!(
            SqlType::parse("nvarchar(max)", true),
            Some(SqlType::NVarChar(Len::Max))
        );
        assert_eq!(
            SqlType::parse("NVARCHAR(50)", true),
            Some(SqlType::NVarChar(Len::N(50)))
        );
        assert_eq!(SqlType::parse("INTEGER", false), Some(SqlType::BigInt));
        assert_eq!(SqlType::parse("INTEGER", true), Some(SqlType::Int));
        assert_eq!(SqlType::parse("REAL", true), Some(SqlType::Real));
        assert_eq!(SqlType::parse("FLOAT(24)", false), Some(SqlType::Real));
        assert_eq!(
            SqlType::parse("TEXT", false),
            Some(SqlType::NVarChar(Len::Max))
        );
        assert_eq!(
            SqlType::parse("TEXT(2147483647)", false),
            Some(SqlType::Text)
        );
        assert_eq!(
            SqlType::parse("datetime2", true),
            Some(SqlType::DateTime2(7))
        );
        assert_eq!(
            SqlType::parse("[varchar](10)", true),
            Some(SqlType::VarChar(Len::N(10)))
        );
        assert_eq!(SqlType::parse("geography", true), None);
        for t in [
            SqlType::Decimal(18, 4),
            SqlType::Real,
            SqlType::Text,
            SqlType::NVarChar(Len::Max),
            SqlType::Xml,
            SqlType::DateTimeOffset(3),
        ] {
            assert_eq!(SqlType::parse(&t.ddl_name(), false), Some(t));
        }
    }
}
