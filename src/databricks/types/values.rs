//! Values of a Databricks result read as their column's engine type: from Arrow chunks
//! (rescaled decimals, timestamps to microseconds, nested values as JSON text) or from the
//! JSON_ARRAY text of inline results; a value that does not fit is an error naming its row.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array,
    Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray, new_null_array,
};
use deltalake::arrow::compute::{CastOptions, cast_with_options};
use deltalake::arrow::datatypes::{DataType, Decimal128Type, Int64Type, TimeUnit};

use super::{DatabricksType, TypeError, UTC};

/// One result column: its manifest type and its engine type.
#[derive(Debug, Clone)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) type_text: String,
    pub(super) dbx: DatabricksType,
    pub(super) engine: DataType,
}

impl Column {
    pub(super) fn error(&self, row: Option<u64>, message: impl std::fmt::Display) -> TypeError {
        TypeError::Value {
            column: self.name.clone(),
            type_text: self.type_text.clone(),
            row,
            message: message.to_string(),
        }
    }
}

/// Why a value cannot be read as its column's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Text that is not of the expected form.
    #[error("`{value}` is not {expected}")]
    NotA {
        value: String,
        /// What it should be (`an integer`, `a date (YYYY-MM-DD)`).
        expected: &'static str,
    },
    /// An integer out of the column type's range.
    #[error("{0} is out of range")]
    OutOfRange(i64),
    /// Binary text that is not base64.
    #[error("`{value}` is not base64: {source}")]
    NotBase64 {
        value: String,
        #[source]
        source: base64::DecodeError,
    },
    /// A decimal with more decimals than the column's scale.
    #[error("{value} has more than {scale} decimals")]
    Decimals { value: String, scale: i8 },
    /// A decimal too large for the column's precision.
    #[error("{value} does not fit DECIMAL({precision},{scale})")]
    DecimalOverflow {
        value: String,
        precision: u8,
        scale: i8,
    },
    /// Decimal text with more decimals than the column's scale.
    #[error("`{text}` has more than {scale} decimals for DECIMAL({precision},{scale})")]
    TextDecimals {
        text: String,
        precision: u8,
        scale: i8,
    },
    /// Decimal text too large for the column's precision.
    #[error("`{text}` does not fit DECIMAL({precision},{scale})")]
    TextDecimalOverflow {
        text: String,
        precision: u8,
        scale: i8,
    },
}

impl ValueError {
    pub(super) fn not(value: &str, expected: &'static str) -> Self {
        ValueError::NotA {
            value: value.to_string(),
            expected,
        }
    }
}

/// One column of an ARROW_STREAM batch in its engine type.
pub(super) fn column_from_arrow(
    c: &Column,
    array: &ArrayRef,
    first_row: u64,
) -> Result<ArrayRef, TypeError> {
    let wire = array.data_type();
    if wire == &c.engine {
        return Ok(array.clone());
    }
    let row = |i: usize| Some(first_row + i as u64 + 1);
    match (&c.dbx, wire) {
        (_, DataType::Null) => Ok(new_null_array(&c.engine, array.len())),
        (dbx, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            if !matches!(dbx, DatabricksType::String | DatabricksType::Variant) =>
        {
            // Text where a typed value is expected (decimals, as the Thrift protocol sends
            // them): read as JSON_ARRAY text is read.
            let text = cast_with_options(array, &DataType::Utf8, &CastOptions::default())
                .map_err(|e| c.error(None, e.to_string()))?;
            column_from_text(c, text.as_string::<i32>().iter(), first_row)
        }
        (DatabricksType::Timestamp | DatabricksType::TimestampNtz, DataType::Timestamp(unit, tz)) => {
            if c.dbx == DatabricksType::TimestampNtz
                && let Some(tz) = tz
            {
                return Err(c.error(
                    None,
                    format!(
                        "the result chunk has it as timestamps in zone {tz}, not as wall-clock times; select `CAST({} AS STRING)` to read it as text",
                        super::sql_ident(&c.name)
                    ),
                ));
            }
            let raw = cast_with_options(array, &DataType::Int64, &CastOptions::default())
                .map_err(|e| c.error(None, e.to_string()))?;
            let raw = raw.as_primitive::<Int64Type>();
            let micros = raw
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.map(|v| {
                        to_micros(v, *unit).ok_or_else(|| {
                            c.error(
                                row(i),
                                format!(
                                    "{v} {} cannot be held in microseconds exactly",
                                    unit_name(*unit)
                                ),
                            )
                        })
                    })
                    .transpose()
                })
                .collect::<Result<TimestampMicrosecondArray, _>>()?;
            Ok(Arc::new(match &c.dbx {
                DatabricksType::Timestamp => micros.with_timezone(UTC),
                _ => micros,
            }))
        }
        (DatabricksType::Variant, DataType::Struct(_)) => Err(c.error(
            None,
            format!(
                "the result chunk has it as a binary variant, not as JSON text; select `to_json({})` instead",
                super::sql_ident(&c.name)
            ),
        )),
        (DatabricksType::Decimal { precision, scale }, DataType::Decimal128(_, from_scale)) => {
            let values = array.as_primitive::<Decimal128Type>();
            let out = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.map(|v| {
                        rescale(v, *from_scale, *precision, *scale)
                            .map_err(|m| c.error(row(i), m))
                    })
                    .transpose()
                })
                .collect::<Result<Decimal128Array, _>>()?
                .with_precision_and_scale(*precision, *scale)
                .map_err(|e| c.error(None, e.to_string()))?;
            Ok(Arc::new(out))
        }
        _ => {
            let strict = CastOptions {
                safe: false,
                ..Default::default()
            };
            cast_with_options(array, &c.engine, &strict).map_err(|e| {
                c.error(
                    None,
                    format!(
                        "the result chunk has it as {wire}, which cannot be read as {}: {e}",
                        c.engine
                    ),
                )
            })
        }
    }
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "seconds",
        TimeUnit::Millisecond => "milliseconds",
        TimeUnit::Microsecond => "microseconds",
        TimeUnit::Nanosecond => "nanoseconds",
    }
}

/// A timestamp value of `unit` in microseconds, when exact and in range.
fn to_micros(v: i64, unit: TimeUnit) -> Option<i64> {
    match unit {
        TimeUnit::Second => v.checked_mul(1_000_000),
        TimeUnit::Millisecond => v.checked_mul(1_000),
        TimeUnit::Microsecond => Some(v),
        TimeUnit::Nanosecond => (v % 1_000 == 0).then_some(v / 1_000),
    }
}

/// An unscaled decimal at `from_scale` as DECIMAL(precision, scale), exactly.
pub(super) fn rescale(
    v: i128,
    from_scale: i8,
    precision: u8,
    scale: i8,
) -> Result<i128, ValueError> {
    let diff = i32::from(scale) - i32::from(from_scale);
    let scaled = if diff >= 0 {
        10i128
            .checked_pow(diff as u32)
            .and_then(|m| v.checked_mul(m))
    } else {
        let d = 10i128.checked_pow((-diff) as u32);
        match d {
            Some(d) if v % d == 0 => Some(v / d),
            Some(_) => {
                return Err(ValueError::Decimals {
                    value: render_decimal(v, from_scale),
                    scale,
                });
            }
            None => Some(0).filter(|_| v == 0),
        }
    };
    match scaled {
        Some(s) if s.unsigned_abs() < 10u128.pow(u32::from(precision)) => Ok(s),
        _ => Err(ValueError::DecimalOverflow {
            value: render_decimal(v, from_scale),
            precision,
            scale,
        }),
    }
}

fn render_decimal(v: i128, scale: i8) -> String {
    let digits = v.unsigned_abs().to_string();
    let s = scale.max(0) as usize;
    let body = if s == 0 {
        digits
    } else if digits.len() <= s {
        format!("0.{}{digits}", "0".repeat(s - digits.len()))
    } else {
        format!(
            "{}.{}",
            &digits[..digits.len() - s],
            &digits[digits.len() - s..]
        )
    };
    if v < 0 { format!("-{body}") } else { body }
}

/// Decimal text (`-12.340`, `1E+3`) as an unscaled DECIMAL(precision, scale) value, exactly:
/// digits beyond `scale` must be zeros, and the value must have at most `precision` digits.
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Result<i128, ValueError> {
    let bad = || ValueError::not(text, "a decimal number");
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(p) => (&t[..p], t[p + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (t, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part
            .chars()
            .chain(frac_part.chars())
            .all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    // value = digits * 10^(exponent - frac_len); unscaled = value * 10^scale
    let digits = format!("{int_part}{frac_part}");
    let shift = i64::from(exponent) - frac_part.len() as i64 + i64::from(scale);
    let digits = digits.trim_start_matches('0');
    let (kept, dropped) = if shift >= 0 {
        (digits, "")
    } else {
        let cut = (-shift) as usize;
        digits.split_at(digits.len().saturating_sub(cut))
    };
    if dropped.chars().any(|c| c != '0') {
        return Err(ValueError::TextDecimals {
            text: text.to_string(),
            precision,
            scale,
        });
    }
    let too_big = || ValueError::TextDecimalOverflow {
        text: text.to_string(),
        precision,
        scale,
    };
    let zeros = if shift > 0 { shift as usize } else { 0 };
    if !kept.is_empty() && kept.len() + zeros > usize::from(precision) {
        return Err(too_big());
    }
    let mut v: i128 = 0;
    for c in kept.chars() {
        v = v * 10 + i128::from(c as u8 - b'0');
    }
    if !kept.is_empty() {
        for _ in 0..zeros {
            v *= 10;
        }
    }
    Ok(if negative { -v } else { v })
}

/// An instant: RFC 3339 with `Z` or an offset (`2021-01-01T10:00:00.000-08:00`), or without
/// one (taken as UTC), as microseconds since the epoch.
fn parse_instant(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.timestamp_micros());
    }
    if let Ok(dt) = DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(dt.timestamp_micros());
    }
    parse_wall_clock(t.strip_suffix('Z').unwrap_or(t))
}

/// A wall-clock date and time (`2024-01-02T03:04:05.123`, `2024-01-02 03:04:05`, a date) as
/// microseconds since 1970-01-01 00:00; an offset, if any, is dropped.
fn parse_wall_clock(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.naive_local().and_utc().timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, format) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    let date = NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// Days since the epoch of a `YYYY-MM-DD` date.
fn parse_date(text: &str) -> Option<i32> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    i32::try_from((date - epoch).num_days()).ok()
}

/// One column of text values (JSON_ARRAY, or text in an Arrow chunk) in its engine type.
pub(super) fn column_from_text<'a>(
    c: &Column,
    values: impl Iterator<Item = Option<&'a str>>,
    first_row: u64,
) -> Result<ArrayRef, TypeError> {
    pub(super) fn parse_all<'a, T>(
        c: &Column,
        values: impl Iterator<Item = Option<&'a str>>,
        first_row: u64,
        parse: impl Fn(&str) -> Result<T, ValueError>,
    ) -> Result<Vec<Option<T>>, TypeError> {
        values
            .enumerate()
            .map(|(i, v)| {
                v.map(|v| parse(v).map_err(|m| c.error(Some(first_row + i as u64 + 1), m)))
                    .transpose()
            })
            .collect()
    }
    pub(super) fn int<T: TryFrom<i64>>(v: &str) -> Result<T, ValueError> {
        let n: i64 = v
            .trim()
            .parse()
            .map_err(|_| ValueError::not(v, "an integer"))?;
        T::try_from(n).map_err(|_| ValueError::OutOfRange(n))
    }
    pub(super) fn not(v: &str, what: &'static str) -> ValueError {
        ValueError::not(v, what)
    }
    Ok(match &c.dbx {
        DatabricksType::Boolean => {
            let parsed = parse_all(c, values, first_row, |v| {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(not(v, "true or false")),
                }
            })?;
            Arc::new(BooleanArray::from(parsed))
        }
        DatabricksType::TinyInt => {
            Arc::new(Int8Array::from(parse_all(c, values, first_row, int::<i8>)?))
        }
        DatabricksType::SmallInt => Arc::new(Int16Array::from(parse_all(
            c, values, first_row, int::<i16>,
        )?)),
        DatabricksType::Int => Arc::new(Int32Array::from(parse_all(
            c, values, first_row, int::<i32>,
        )?)),
        DatabricksType::BigInt => Arc::new(Int64Array::from(parse_all(
            c, values, first_row, int::<i64>,
        )?)),
        DatabricksType::Float => {
            Arc::new(Float32Array::from(parse_all(c, values, first_row, |v| {
                v.trim().parse::<f32>().map_err(|_| not(v, "a number"))
            })?))
        }
        DatabricksType::Double => {
            Arc::new(Float64Array::from(parse_all(c, values, first_row, |v| {
                v.trim().parse::<f64>().map_err(|_| not(v, "a number"))
            })?))
        }
        DatabricksType::Decimal { precision, scale } => Arc::new(
            Decimal128Array::from(parse_all(c, values, first_row, |v| {
                parse_decimal(v, *precision, *scale)
            })?)
            .with_precision_and_scale(*precision, *scale)
            .map_err(|e| c.error(None, e.to_string()))?,
        ),
        DatabricksType::String | DatabricksType::Variant => {
            Arc::new(values.collect::<StringArray>())
        }
        DatabricksType::Binary => {
            let parsed = parse_all(c, values, first_row, |v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v.trim())
                    .map_err(|source| ValueError::NotBase64 {
                        value: v.to_string(),
                        source,
                    })
            })?;
            Arc::new(BinaryArray::from_iter(parsed))
        }
        DatabricksType::Date => {
            Arc::new(Date32Array::from(parse_all(c, values, first_row, |v| {
                parse_date(v).ok_or_else(|| not(v, "a date (YYYY-MM-DD)"))
            })?))
        }
        DatabricksType::Timestamp => Arc::new(
            TimestampMicrosecondArray::from(parse_all(c, values, first_row, |v| {
                parse_instant(v).ok_or_else(|| not(v, "a timestamp"))
            })?)
            .with_timezone(UTC),
        ),
        DatabricksType::TimestampNtz => Arc::new(TimestampMicrosecondArray::from(parse_all(
            c,
            values,
            first_row,
            |v| parse_wall_clock(v).ok_or_else(|| not(v, "a date and time")),
        )?)),
        other => {
            return Err(c.error(
                None,
                format!("{other:?} columns are refused when the source opens; this is a bug"),
            ));
        }
    })
}
