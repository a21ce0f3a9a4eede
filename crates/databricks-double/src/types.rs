//! Databricks column types: mapping from SQLite declared types, value conversion, JSON and Arrow encoding.
//! See the crate documentation for the storage encoding of each type in SQLite, and for what the
//! manifest and the ARROW_STREAM chunks carry for each type (as the real Statement Execution API
//! sends them).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, DurationMicrosecondArray,
    Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Int64Array,
    IntervalYearMonthArray, ListArray, NullArray, StringArray, TimestampMicrosecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rusqlite::types::Value;

/// The Databricks type of a result column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
    Decimal(u8, i8),
    Date,
    /// `TIMESTAMP` (`TIMESTAMP_LTZ`): an instant, microseconds since the epoch in UTC.
    Timestamp,
    /// `TIMESTAMP_NTZ`: a wall-clock date and time, microseconds since 1970-01-01 00:00.
    TimestampNtz,
    Utf8,
    Binary,
    Null,
    /// `VARIANT`, stored as compact JSON text (ARROW_STREAM sends it as JSON text too).
    Variant,
    /// `INTERVAL <from> [TO <to>]`: months (year-month) or microseconds (day-time).
    Interval(IntervalField, IntervalField),
    /// `ARRAY<element>` of a simple element type, stored as JSON text.
    Array(&'static Kind),
}

/// A field of an interval type: `INTERVAL DAY TO SECOND` is `(Day, Second)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum IntervalField {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl IntervalField {
    fn parse(word: &str) -> Option<IntervalField> {
        Some(match word {
            "YEAR" => IntervalField::Year,
            "MONTH" => IntervalField::Month,
            "DAY" => IntervalField::Day,
            "HOUR" => IntervalField::Hour,
            "MINUTE" => IntervalField::Minute,
            "SECOND" => IntervalField::Second,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            IntervalField::Year => "YEAR",
            IntervalField::Month => "MONTH",
            IntervalField::Day => "DAY",
            IntervalField::Hour => "HOUR",
            IntervalField::Minute => "MINUTE",
            IntervalField::Second => "SECOND",
        }
    }

    fn year_month(self) -> bool {
        matches!(self, IntervalField::Year | IntervalField::Month)
    }
}

/// `INTERVAL YEAR`, `INTERVAL DAY TO SECOND`...: the fields of an interval declaration, when valid
/// (both of one family, the first not smaller than the second).
fn parse_interval(decl: &str) -> Option<Kind> {
    let words: Vec<&str> = decl.split_whitespace().collect();
    let (from, to) = match words.as_slice() {
        ["INTERVAL", f] => (IntervalField::parse(f)?, IntervalField::parse(f)?),
        ["INTERVAL", f, "TO", t] => (IntervalField::parse(f)?, IntervalField::parse(t)?),
        _ => return None,
    };
    (from.year_month() == to.year_month() && from <= to).then_some(Kind::Interval(from, to))
}

/// Element types an `ARRAY<...>` column may have (decimals and nested types are not supported).
static ARRAY_ELEMENTS: [Kind; 10] = [
    Kind::Bool,
    Kind::I8,
    Kind::I16,
    Kind::I32,
    Kind::I64,
    Kind::F32,
    Kind::F64,
    Kind::Date,
    Kind::Timestamp,
    Kind::Utf8,
];

/// Declared-type prefix of ARRAY columns in SQLite: `ARRAY<STRING>` is declared `ARRAY_OF_STRING`
/// (no affinity keyword, so SQLite keeps the JSON text as it is).
pub(crate) const ARRAY_DECL_PREFIX: &str = "ARRAY_OF_";

/// One typed value of a result column.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Dec(i128),
    Date(i32),
    Ts(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Kind {
    /// Maps a SQLite declared type (as written in CREATE TABLE) to a Databricks type.
    pub fn from_decltype(decl: &str) -> Option<Kind> {
        let d = decl.trim().to_ascii_uppercase();
        if let Some(element) = d.strip_prefix(ARRAY_DECL_PREFIX) {
            return Kind::array_of(Kind::from_decltype(element)?);
        }
        if d.starts_with("INTERVAL") {
            // Declared `INTERVAL_DAY_TO_SECOND` in SQLite (see the SQL rewriting).
            return parse_interval(&d.replace('_', " "));
        }
        let (base, args) = match d.find('(') {
            Some(p) => (
                d[..p].trim().to_string(),
                Some(d[p + 1..].trim_end_matches(')').to_string()),
            ),
            None => (d.clone(), None),
        };
        Some(match base.as_str() {
            "BIGINT" | "LONG" => Kind::I64,
            "INT" | "INTEGER" => Kind::I32,
            "SMALLINT" | "SHORT" => Kind::I16,
            "TINYINT" | "BYTE" => Kind::I8,
            "DOUBLE" | "REAL" | "DOUBLE PRECISION" => Kind::F64,
            "FLOAT" => Kind::F32,
            "BOOLEAN" | "BOOL" => Kind::Bool,
            "STRING" | "TEXT" | "VARCHAR" | "CHAR" | "NVARCHAR" | "CLOB" => Kind::Utf8,
            "DECIMAL" | "DEC" | "NUMERIC" | "DECIMAL_TEXT" => {
                let (p, s) = match args {
                    None => (10, 0),
                    Some(a) => {
                        let mut it = a.split(',').map(|x| x.trim().parse::<i64>());
                        let p = match it.next() {
                            Some(Ok(p)) => p,
                            _ => return None,
                        };
                        let s = match it.next() {
                            Some(Ok(s)) => s,
                            None => 0,
                            Some(Err(_)) => return None,
                        };
                        (p, s)
                    }
                };
                if !(1..=38).contains(&p) || s < 0 || s > p {
                    return None;
                }
                Kind::Decimal(p as u8, s as i8)
            }
            "DATE" => Kind::Date,
            "TIMESTAMP" | "TIMESTAMP_LTZ" | "DATETIME" => Kind::Timestamp,
            "TIMESTAMP_NTZ" => Kind::TimestampNtz,
            "BINARY" | "BLOB" | "VARBINARY" => Kind::Binary,
            "VARIANT" => Kind::Variant,
            _ => return None,
        })
    }

    /// `ARRAY<element>`, when `element` is a supported element type.
    pub fn array_of(element: Kind) -> Option<Kind> {
        ARRAY_ELEMENTS
            .iter()
            .find(|k| **k == element)
            .map(Kind::Array)
    }

    /// Infers a type from the values of an expression column without declared type.
    pub fn infer<'a>(values: impl Iterator<Item = &'a Value>) -> Kind {
        let mut kind = Kind::Null;
        for v in values {
            let k = match v {
                Value::Null => continue,
                Value::Integer(_) => Kind::I64,
                Value::Real(_) => Kind::F64,
                Value::Text(_) => Kind::Utf8,
                Value::Blob(_) => Kind::Binary,
            };
            kind = match (kind, k) {
                (Kind::Null, k) => k,
                (a, b) if a == b => a,
                (Kind::I64, Kind::F64) | (Kind::F64, Kind::I64) => Kind::F64,
                _ => Kind::Utf8,
            };
        }
        kind
    }

    /// `ColumnInfoTypeName` of the Statement Execution API (`TIMESTAMP_NTZ` and `VARIANT` are
    /// what the API sends for those types, though the published enum lacks them).
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Bool => "BOOLEAN",
            Kind::I8 => "BYTE",
            Kind::I16 => "SHORT",
            Kind::I32 => "INT",
            Kind::I64 => "LONG",
            Kind::F32 => "FLOAT",
            Kind::F64 => "DOUBLE",
            Kind::Decimal(..) => "DECIMAL",
            Kind::Date => "DATE",
            Kind::Timestamp => "TIMESTAMP",
            Kind::TimestampNtz => "TIMESTAMP_NTZ",
            Kind::Utf8 => "STRING",
            Kind::Binary => "BINARY",
            Kind::Null => "NULL",
            Kind::Variant => "VARIANT",
            Kind::Interval(..) => "INTERVAL",
            Kind::Array(_) => "ARRAY",
        }
    }

    /// Full SQL type text, as `type_text` of the manifest: upper case, `DECIMAL(10,2)` without a
    /// space, `VOID` for the NULL type, `INTERVAL DAY TO SECOND`, `ARRAY<INT>`.
    pub fn type_text(self) -> String {
        match self {
            Kind::Bool => "BOOLEAN".into(),
            Kind::I8 => "TINYINT".into(),
            Kind::I16 => "SMALLINT".into(),
            Kind::I32 => "INT".into(),
            Kind::I64 => "BIGINT".into(),
            Kind::F32 => "FLOAT".into(),
            Kind::F64 => "DOUBLE".into(),
            Kind::Decimal(p, s) => format!("DECIMAL({p},{s})"),
            Kind::Date => "DATE".into(),
            Kind::Timestamp => "TIMESTAMP".into(),
            Kind::TimestampNtz => "TIMESTAMP_NTZ".into(),
            Kind::Utf8 => "STRING".into(),
            Kind::Binary => "BINARY".into(),
            Kind::Null => "VOID".into(),
            Kind::Variant => "VARIANT".into(),
            Kind::Interval(..) => format!("INTERVAL {}", self.interval_type().unwrap_or_default()),
            Kind::Array(element) => format!("ARRAY<{}>", element.type_text()),
        }
    }

    /// `type_interval_type` of the manifest: `DAY TO SECOND`, `YEAR` (intervals only).
    pub fn interval_type(self) -> Option<String> {
        match self {
            Kind::Interval(from, to) if from == to => Some(from.name().to_string()),
            Kind::Interval(from, to) => Some(format!("{} TO {}", from.name(), to.name())),
            _ => None,
        }
    }

    /// The Arrow type of the column in ARROW_STREAM chunks: Spark's mapping (`ArrowUtils`), as
    /// the warehouse sends it. TIMESTAMP carries the session time zone (`Etc/UTC` by default).
    pub fn arrow_type(self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::I8 => DataType::Int8,
            Kind::I16 => DataType::Int16,
            Kind::I32 => DataType::Int32,
            Kind::I64 => DataType::Int64,
            Kind::F32 => DataType::Float32,
            Kind::F64 => DataType::Float64,
            Kind::Decimal(p, s) => DataType::Decimal128(p, s),
            Kind::Date => DataType::Date32,
            Kind::Timestamp => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(SESSION_TIME_ZONE.into()))
            }
            Kind::TimestampNtz => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Utf8 | Kind::Variant => DataType::Utf8,
            Kind::Binary => DataType::Binary,
            Kind::Null => DataType::Null,
            Kind::Interval(from, _) if from.year_month() => {
                DataType::Interval(IntervalUnit::YearMonth)
            }
            Kind::Interval(..) => DataType::Duration(TimeUnit::Microsecond),
            Kind::Array(element) => DataType::List(Arc::new(list_element(element.arrow_type()))),
        }
    }
}

/// The time zone label of TIMESTAMP columns in ARROW_STREAM chunks: a warehouse's default session
/// time zone, as the real API sends it (`SET TIME ZONE` changes it there; not in the double).
pub(crate) const SESSION_TIME_ZONE: &str = "Etc/UTC";

/// The child field of a list, named `element` as Spark names it.
fn list_element(data_type: DataType) -> Field {
    Field::new("element", data_type, true)
}

/// Converts a stored SQLite value to a cell of the column's type.
pub(crate) fn convert(v: Value, kind: Kind) -> Result<Cell, String> {
    if let Value::Null = v {
        return Ok(Cell::Null);
    }
    let bad = |v: &Value| {
        format!(
            "[CAST_INVALID_INPUT] the value {v:?} cannot be read as {}",
            kind.type_text()
        )
    };
    Ok(match kind {
        Kind::Null => Cell::Null,
        Kind::I8 | Kind::I16 | Kind::I32 | Kind::I64 => {
            let i = match &v {
                Value::Integer(i) => *i,
                Value::Real(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => *f as i64,
                Value::Text(t) => t.trim().parse::<i64>().map_err(|_| bad(&v))?,
                _ => return Err(bad(&v)),
            };
            let (lo, hi) = match kind {
                Kind::I8 => (i8::MIN as i64, i8::MAX as i64),
                Kind::I16 => (i16::MIN as i64, i16::MAX as i64),
                Kind::I32 => (i32::MIN as i64, i32::MAX as i64),
                _ => (i64::MIN, i64::MAX),
            };
            if i < lo || i > hi {
                return Err(format!(
                    "[CAST_OVERFLOW] the value {i} does not fit {}",
                    kind.type_text()
                ));
            }
            Cell::Int(i)
        }
        Kind::F32 | Kind::F64 => match &v {
            Value::Integer(i) => Cell::Float(*i as f64),
            Value::Real(f) => Cell::Float(*f),
            Value::Text(t) => Cell::Float(t.trim().parse::<f64>().map_err(|_| bad(&v))?),
            _ => return Err(bad(&v)),
        },
        Kind::Bool => match &v {
            Value::Integer(i) => Cell::Bool(*i != 0),
            Value::Real(f) => Cell::Bool(*f != 0.0),
            Value::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Cell::Bool(true),
                "false" | "0" => Cell::Bool(false),
                _ => return Err(bad(&v)),
            },
            _ => return Err(bad(&v)),
        },
        Kind::Decimal(p, s) => {
            let d = match &v {
                Value::Integer(i) => parse_decimal(&i.to_string(), s),
                Value::Real(f) => parse_decimal(&format!("{:.*}", s as usize, f), s),
                Value::Text(t) => parse_decimal(t.trim(), s),
                _ => None,
            }
            .ok_or_else(|| bad(&v))?;
            if d.unsigned_abs() >= 10u128.pow(p as u32) {
                return Err(format!(
                    "[NUMERIC_VALUE_OUT_OF_RANGE] the value {} does not fit {}",
                    render_decimal(d, s),
                    kind.type_text()
                ));
            }
            Cell::Dec(d)
        }
        Kind::Date => match &v {
            Value::Text(t) => Cell::Date(parse_date(t).ok_or_else(|| bad(&v))?),
            _ => return Err(bad(&v)),
        },
        Kind::Timestamp => match &v {
            Value::Text(t) => Cell::Ts(parse_timestamp(t).ok_or_else(|| bad(&v))?),
            _ => return Err(bad(&v)),
        },
        Kind::TimestampNtz => match &v {
            Value::Text(t) => Cell::Ts(parse_timestamp_ntz(t).ok_or_else(|| bad(&v))?),
            _ => return Err(bad(&v)),
        },
        Kind::Variant => match &v {
            Value::Integer(i) => Cell::Text(i.to_string()),
            Value::Real(f) => Cell::Text(serde_json::Value::from(*f).to_string()),
            Value::Text(t) => Cell::Text(
                serde_json::from_str::<serde_json::Value>(t)
                    .map_err(|e| format!("{} (not JSON: {e})", bad(&v)))?
                    .to_string(),
            ),
            _ => return Err(bad(&v)),
        },
        Kind::Interval(from, _) => {
            let n = match &v {
                Value::Integer(i) => *i,
                Value::Text(t) => {
                    parse_interval_text(t, from.year_month()).ok_or_else(|| bad(&v))?
                }
                _ => return Err(bad(&v)),
            };
            if from.year_month() && i32::try_from(n).is_err() {
                return Err(format!(
                    "[CAST_OVERFLOW] the value {n} does not fit {}",
                    kind.type_text()
                ));
            }
            Cell::Int(n)
        }
        Kind::Utf8 => match v {
            Value::Text(t) => Cell::Text(t),
            Value::Integer(i) => Cell::Text(i.to_string()),
            Value::Real(f) => Cell::Text(render_float(f)),
            Value::Blob(b) => Cell::Text(String::from_utf8_lossy(&b).into_owned()),
            Value::Null => Cell::Null,
        },
        Kind::Binary => match v {
            Value::Blob(b) => Cell::Bytes(b),
            Value::Text(t) => Cell::Bytes(t.into_bytes()),
            other => return Err(bad(&other)),
        },
        Kind::Array(element) => match &v {
            Value::Text(t) => {
                let items = array_items(t, *element).map_err(|m| format!("{} ({m})", bad(&v)))?;
                // Compact JSON, as the JSON_ARRAY format renders arrays.
                let json: Vec<serde_json::Value> = items
                    .iter()
                    .map(|c| match render(c, *element) {
                        None => serde_json::Value::Null,
                        Some(text) => match c {
                            Cell::Int(_) | Cell::Float(_) | Cell::Bool(_) => {
                                serde_json::from_str(&text)
                                    .unwrap_or(serde_json::Value::String(text))
                            }
                            _ => serde_json::Value::String(text),
                        },
                    })
                    .collect();
                Cell::Text(serde_json::Value::Array(json).to_string())
            }
            _ => return Err(bad(&v)),
        },
    })
}

/// The elements of an array stored as JSON text, as cells of the element type.
fn array_items(json: &str, element: Kind) -> Result<Vec<Cell>, String> {
    let items: Vec<serde_json::Value> =
        serde_json::from_str(json).map_err(|e| format!("not a JSON array: {e}"))?;
    items
        .into_iter()
        .map(|item| {
            let value = match item {
                serde_json::Value::Null => Value::Null,
                serde_json::Value::Bool(b) => Value::Integer(b as i64),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => Value::Integer(i),
                    None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
                },
                serde_json::Value::String(s) => Value::Text(s),
                other => return Err(format!("nested value {other} in an array of simple values")),
            };
            convert(value, element)
        })
        .collect()
}

/// Renders a cell the way the JSON_ARRAY format does: every value a string, NULL as null.
pub(crate) fn render(cell: &Cell, kind: Kind) -> Option<String> {
    Some(match cell {
        Cell::Null => return None,
        Cell::Bool(b) => b.to_string(),
        Cell::Int(i) => match kind {
            Kind::Interval(from, _) => render_interval(*i, from.year_month()),
            _ => i.to_string(),
        },
        Cell::Float(f) => {
            let r = render_float(*f);
            match kind {
                // Shortest text that round-trips the 32-bit value (0.1, not 0.10000000149011612).
                Kind::F32 if f.is_finite() && !r.ends_with(".0") => format!("{}", *f as f32),
                _ => r,
            }
        }
        Cell::Dec(d) => match kind {
            Kind::Decimal(_, s) => render_decimal(*d, s),
            _ => d.to_string(),
        },
        Cell::Date(days) => render_date(*days),
        Cell::Ts(us) => match kind {
            Kind::TimestampNtz => render_timestamp_ntz(*us),
            _ => render_timestamp(*us),
        },
        Cell::Text(t) => t.clone(),
        Cell::Bytes(b) => base64::engine::general_purpose::STANDARD.encode(b),
    })
}

/// Builds one Arrow array from the cells of a column.
pub(crate) fn build_array(
    kind: Kind,
    cells: &[Cell],
) -> Result<ArrayRef, arrow::error::ArrowError> {
    fn ints(cells: &[Cell]) -> impl Iterator<Item = Option<i64>> + '_ {
        cells.iter().map(|c| match c {
            Cell::Int(i) => Some(*i),
            _ => None,
        })
    }
    fn floats(cells: &[Cell]) -> impl Iterator<Item = Option<f64>> + '_ {
        cells.iter().map(|c| match c {
            Cell::Float(f) => Some(*f),
            _ => None,
        })
    }
    Ok(match kind {
        Kind::Bool => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        Kind::I8 => Arc::new(
            ints(cells)
                .map(|o| o.map(|i| i as i8))
                .collect::<Int8Array>(),
        ),
        Kind::I16 => Arc::new(
            ints(cells)
                .map(|o| o.map(|i| i as i16))
                .collect::<Int16Array>(),
        ),
        Kind::I32 => Arc::new(
            ints(cells)
                .map(|o| o.map(|i| i as i32))
                .collect::<Int32Array>(),
        ),
        Kind::I64 => Arc::new(ints(cells).collect::<Int64Array>()),
        Kind::F32 => Arc::new(
            floats(cells)
                .map(|o| o.map(|f| f as f32))
                .collect::<Float32Array>(),
        ),
        Kind::F64 => Arc::new(floats(cells).collect::<Float64Array>()),
        Kind::Decimal(p, s) => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Dec(d) => Some(*d),
                    _ => None,
                })
                .collect::<Decimal128Array>()
                .with_precision_and_scale(p, s)?,
        ),
        Kind::Date => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Date(d) => Some(*d),
                    _ => None,
                })
                .collect::<Date32Array>(),
        ),
        Kind::Timestamp | Kind::TimestampNtz => {
            let array = cells
                .iter()
                .map(|c| match c {
                    Cell::Ts(t) => Some(*t),
                    _ => None,
                })
                .collect::<TimestampMicrosecondArray>();
            match kind {
                Kind::Timestamp => Arc::new(array.with_timezone(SESSION_TIME_ZONE)),
                _ => Arc::new(array),
            }
        }
        Kind::Interval(from, _) if from.year_month() => Arc::new(
            ints(cells)
                .map(|o| o.map(|i| i as i32))
                .collect::<IntervalYearMonthArray>(),
        ),
        Kind::Interval(..) => Arc::new(ints(cells).collect::<DurationMicrosecondArray>()),
        Kind::Utf8 | Kind::Variant => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Text(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect::<StringArray>(),
        ),
        Kind::Binary => Arc::new(BinaryArray::from_iter(cells.iter().map(|c| match c {
            Cell::Bytes(b) => Some(b.as_slice()),
            _ => None,
        }))),
        Kind::Null => Arc::new(NullArray::new(cells.len())),
        Kind::Array(element) => {
            let mut offsets = vec![0i32];
            let mut valid = Vec::with_capacity(cells.len());
            let mut items = Vec::new();
            for cell in cells {
                if let Cell::Text(json) = cell {
                    items.extend(
                        array_items(json, *element).map_err(arrow::error::ArrowError::CastError)?,
                    );
                    valid.push(true);
                } else {
                    valid.push(false);
                }
                offsets.push(items.len() as i32);
            }
            Arc::new(ListArray::try_new(
                Arc::new(list_element(element.arrow_type())),
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                build_array(*element, &items)?,
                Some(NullBuffer::from(valid)),
            )?)
        }
    })
}

/// Parses a decimal literal (`-12.34`, `1e3`) into an unscaled integer with `scale` digits, rounding half up.
pub(crate) fn parse_decimal(text: &str, scale: i8) -> Option<i128> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(p) => (&t[..p], t[p + 1..].parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(p) => (&mantissa[..p], &mantissa[p + 1..]),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part
        .chars()
        .chain(frac_part.chars())
        .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let digits: String = format!("{int_part}{frac_part}");
    // value = digits * 10^(exp - frac_len); want unscaled = value * 10^scale
    let shift = exp - frac_part.len() as i32 + scale as i32;
    let digits = digits.trim_start_matches('0');
    let mut v: i128 = 0;
    if shift >= 0 {
        for c in digits.chars() {
            v = v.checked_mul(10)?.checked_add((c as u8 - b'0') as i128)?;
        }
        for _ in 0..shift {
            v = v.checked_mul(10)?;
        }
    } else {
        let cut = (-shift) as usize;
        let keep = digits.len().saturating_sub(cut);
        for c in digits[..keep].chars() {
            v = v.checked_mul(10)?.checked_add((c as u8 - b'0') as i128)?;
        }
        let first_dropped = if digits.len() >= cut {
            digits.as_bytes().get(keep)
        } else {
            None
        };
        if let Some(d) = first_dropped
            && *d >= b'5'
        {
            v = v.checked_add(1)?;
        }
    }
    Some(if neg { -v } else { v })
}

pub(crate) fn render_decimal(v: i128, scale: i8) -> String {
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let s = scale.max(0) as usize;
    let body = if s == 0 {
        digits
    } else if digits.len() <= s {
        format!("0.{}{}", "0".repeat(s - digits.len()), digits)
    } else {
        format!(
            "{}.{}",
            &digits[..digits.len() - s],
            &digits[digits.len() - s..]
        )
    };
    if neg { format!("-{body}") } else { body }
}

pub(crate) fn render_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => panic!("epoch"),
};

/// `YYYY-MM-DD` (a time part after it is ignored) to days since the epoch.
pub(crate) fn parse_date(text: &str) -> Option<i32> {
    let t = text.trim();
    let d = NaiveDate::parse_from_str(t.get(..10)?, "%Y-%m-%d").ok()?;
    Some((d - EPOCH).num_days() as i32)
}

pub(crate) fn render_date(days: i32) -> String {
    (EPOCH + chrono::Duration::days(days as i64))
        .format("%Y-%m-%d")
        .to_string()
}

/// ISO 8601 text (`2024-01-02T03:04:05.123Z`, `2024-01-02 03:04:05`, with offset, or a date) to
/// microseconds since the epoch, UTC. Text without offset is taken as UTC.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.timestamp_micros());
    }
    if let Ok(dt) = DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(dt.timestamp_micros());
    }
    let naive = t
        .strip_suffix('Z')
        .or_else(|| t.strip_suffix(" UTC"))
        .unwrap_or(t);
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    if naive.len() == 10 {
        let d = NaiveDate::parse_from_str(naive, "%Y-%m-%d").ok()?;
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros());
    }
    None
}

/// Renders like Databricks JSON results: `2024-01-02T03:04:05.123Z` (microseconds when not whole milliseconds).
pub(crate) fn render_timestamp(us: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(us) {
        Some(dt) if us.rem_euclid(1000) == 0 => dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => us.to_string(),
    }
}

/// Wall-clock text (`2024-01-02T03:04:05.123`, `2024-01-02 03:04:05`, a date) to microseconds
/// since 1970-01-01 00:00. An offset, if any, is dropped: the wall-clock time is kept.
pub(crate) fn parse_timestamp_ntz(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.naive_local().and_utc().timestamp_micros());
    }
    parse_timestamp(t)
}

/// Renders a TIMESTAMP_NTZ like a TIMESTAMP, without the zone: `2024-01-02T03:04:05.123`.
pub(crate) fn render_timestamp_ntz(us: i64) -> String {
    let text = render_timestamp(us);
    text.strip_suffix('Z').map(str::to_string).unwrap_or(text)
}

/// Renders an interval as the warehouse renders it in text: `Y-M` for year-month (`100-0`),
/// `D HH:MM:SS.fffffffff` for day-time (`3 12:30:15.000000000`).
pub(crate) fn render_interval(n: i64, year_month: bool) -> String {
    let sign = if n < 0 { "-" } else { "" };
    let a = n.unsigned_abs();
    if year_month {
        return format!("{sign}{}-{}", a / 12, a % 12);
    }
    let (secs, micros) = (a / 1_000_000, a % 1_000_000);
    format!(
        "{sign}{} {:02}:{:02}:{:02}.{:06}000",
        secs / 86_400,
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        micros
    )
}

/// The inverse of [`render_interval`]; a bare integer is months or microseconds.
fn parse_interval_text(text: &str, year_month: bool) -> Option<i64> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i64>() {
        return Some(n);
    }
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let n = if year_month {
        let (y, m) = t.split_once('-')?;
        y.parse::<i64>().ok()? * 12 + m.parse::<i64>().ok()?
    } else {
        let (d, clock) = t.split_once(' ')?;
        let mut parts = clock.split(':');
        let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let frac: String = format!("{frac:0<6}").chars().take(6).collect();
        ((d.parse::<i64>().ok()? * 24 + h.parse::<i64>().ok()?) * 60 + m.parse::<i64>().ok()?)
            * 60_000_000
            + whole.parse::<i64>().ok()? * 1_000_000
            + frac.parse::<i64>().ok()?
    };
    Some(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_and_render() {
        assert_eq!(parse_decimal("12.34", 4), Some(123400));
        assert_eq!(parse_decimal("-0.5", 0), Some(-1));
        assert_eq!(parse_decimal("1e3", 2), Some(100000));
        assert_eq!(parse_decimal("0.00005", 4), Some(1));
        assert_eq!(parse_decimal("abc", 2), None);
        assert_eq!(render_decimal(123400, 4), "12.3400");
        assert_eq!(render_decimal(-5, 3), "-0.005");
        assert_eq!(render_decimal(42, 0), "42");
    }

    #[test]
    fn types_from_decltype() {
        assert_eq!(
            Kind::from_decltype("DECIMAL(18,4)"),
            Some(Kind::Decimal(18, 4))
        );
        assert_eq!(Kind::from_decltype("bigint"), Some(Kind::I64));
        assert_eq!(Kind::from_decltype("VARCHAR(20)"), Some(Kind::Utf8));
        assert_eq!(Kind::from_decltype("NUM"), None);
    }

    #[test]
    fn new_types_from_decltype() {
        use IntervalField::*;
        assert_eq!(
            Kind::from_decltype("TIMESTAMP_NTZ"),
            Some(Kind::TimestampNtz)
        );
        assert_eq!(Kind::from_decltype("variant"), Some(Kind::Variant));
        assert_eq!(
            Kind::from_decltype("INTERVAL_DAY_TO_SECOND"),
            Some(Kind::Interval(Day, Second))
        );
        assert_eq!(
            Kind::from_decltype("INTERVAL YEAR"),
            Some(Kind::Interval(Year, Year))
        );
        assert_eq!(Kind::from_decltype("INTERVAL_MONTH_TO_YEAR"), None);
        assert_eq!(Kind::from_decltype("INTERVAL_YEAR_TO_DAY"), None);
        assert_eq!(
            Kind::from_decltype("DECIMAL_TEXT(38,18)"),
            Some(Kind::Decimal(38, 18))
        );
        let k = Kind::Interval(Hour, Minute);
        assert_eq!(k.type_text(), "INTERVAL HOUR TO MINUTE");
        assert_eq!(k.interval_type().as_deref(), Some("HOUR TO MINUTE"));
        assert_eq!(Kind::Interval(Month, Month).type_text(), "INTERVAL MONTH");
        assert_eq!(Kind::Null.type_text(), "VOID");
        assert_eq!(Kind::TimestampNtz.type_name(), "TIMESTAMP_NTZ");
    }

    #[test]
    fn intervals_render_and_parse_back() {
        for (n, ym, text) in [
            (14, true, "1-2"),
            (-1, true, "-0-1"),
            (273_600_000_001, false, "3 04:00:00.000001000"),
            (-45_789_000, false, "-0 00:00:45.789000000"),
        ] {
            assert_eq!(render_interval(n, ym), text);
            assert_eq!(parse_interval_text(text, ym), Some(n), "{text}");
        }
        assert_eq!(parse_interval_text("12", true), Some(12));
        assert_eq!(parse_interval_text("x", false), None);
    }

    #[test]
    fn wall_clock_timestamps_keep_their_clock() {
        let us = parse_timestamp_ntz("2024-01-02T03:04:05.5+02:00").unwrap();
        assert_eq!(render_timestamp_ntz(us), "2024-01-02T03:04:05.500");
        assert_eq!(parse_timestamp_ntz("2024-01-02 03:04:05.5"), Some(us));
        let err = convert(Value::Text("not a time".into()), Kind::TimestampNtz).unwrap_err();
        assert!(err.contains("TIMESTAMP_NTZ"), "{err}");
    }

    #[test]
    fn timestamps() {
        let us = parse_timestamp("2024-01-02T03:04:05.123Z").unwrap();
        assert_eq!(render_timestamp(us), "2024-01-02T03:04:05.123Z");
        assert_eq!(parse_timestamp("2024-01-02 03:04:05.123"), Some(us));
        assert_eq!(
            render_timestamp(parse_timestamp("2024-01-02").unwrap()),
            "2024-01-02T00:00:00.000Z"
        );
        assert_eq!(render_date(parse_date("2024-02-29").unwrap()), "2024-02-29");
    }
}
