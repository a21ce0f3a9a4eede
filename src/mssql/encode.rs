//! Encoding of Arrow values into tiberius bulk-load values (`ColumnData`) for a column's TDS
//! type: every value is converted exactly or refused with a message naming it (the sink's table of
//! conversions is in [`crate::sinks::sqlserver`]). The decoding direction is in [`super::types`].

use std::borrow::Cow;

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::{
    DataType, Date64Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use tiberius::ColumnData;
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};

use super::ranges::{
    self, DAYS_0001_TO_1970, DAYS_1900_TO_1970, IntRange, NANOS_PER_DAY, date_text, decimal_text,
};

/// The TDS value type a column's bulk-load values must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    Bit,
    U8,
    I16,
    I32,
    I64,
    F32,
    F64,
    Numeric {
        precision: u8,
        scale: u8,
    },
    Date,
    Time(u8),
    DateTime,
    SmallDateTime,
    DateTime2(u8),
    DateTimeOffset(u8),
    /// `max_chars`: UTF-16 units for unicode columns, bytes of the code page otherwise
    /// (characters when the code page is unknown).
    Str {
        max_chars: Option<u32>,
        unicode: bool,
        code_page: Option<u16>,
    },
    Bytes {
        max: Option<u32>,
    },
    Guid,
}

impl Wire {
    /// The wire of a char/varchar/text column whose code page is `code_page`.
    pub(crate) fn in_code_page(self, code_page: Option<u16>) -> Wire {
        match self {
            Wire::Str {
                max_chars,
                unicode: false,
                ..
            } => Wire::Str {
                max_chars,
                unicode: false,
                code_page,
            },
            other => other,
        }
    }
}

/// One Arrow value, borrowed from its array.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    /// Unscaled value and scale.
    Decimal(i128, i8),
    Str(&'a str),
    Bytes(&'a [u8]),
    /// Days since 1970-01-01.
    Days(i64),
    /// Nanoseconds since 1970-01-01 (UTC for zoned timestamps).
    Nanos(i128),
    /// Nanoseconds since midnight.
    TimeOfDay(i64),
}

/// The value at `row` of an Arrow array.
pub(crate) fn value_at(array: &dyn Array, row: usize) -> Result<Value<'_>, EncodeError> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    let int = |v: i128| Value::Int(v);
    Ok(match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => int(array.as_primitive::<Int8Type>().value(row).into()),
        DataType::Int16 => int(array.as_primitive::<Int16Type>().value(row).into()),
        DataType::Int32 => int(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => int(array.as_primitive::<Int64Type>().value(row).into()),
        DataType::UInt8 => int(array.as_primitive::<UInt8Type>().value(row).into()),
        DataType::UInt16 => int(array.as_primitive::<UInt16Type>().value(row).into()),
        DataType::UInt32 => int(array.as_primitive::<UInt32Type>().value(row).into()),
        DataType::UInt64 => int(array.as_primitive::<UInt64Type>().value(row).into()),
        DataType::Float32 => Value::Float(array.as_primitive::<Float32Type>().value(row).into()),
        DataType::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, scale) => {
            Value::Decimal(array.as_primitive::<Decimal128Type>().value(row), *scale)
        }
        DataType::Utf8 => Value::Str(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Value::Str(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Value::Str(array.as_string_view().value(row)),
        DataType::Binary => Value::Bytes(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => Value::Bytes(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => Value::Bytes(array.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => Value::Bytes(array.as_fixed_size_binary().value(row)),
        DataType::Date32 => Value::Days(
            array
                .as_primitive::<deltalake::arrow::datatypes::Date32Type>()
                .value(row)
                .into(),
        ),
        DataType::Date64 => Value::Days(
            array
                .as_primitive::<Date64Type>()
                .value(row)
                .div_euclid(86_400_000),
        ),
        DataType::Timestamp(unit, _) => {
            let (v, per_unit): (i64, i128) = match unit {
                TimeUnit::Second => (
                    array.as_primitive::<TimestampSecondType>().value(row),
                    1_000_000_000,
                ),
                TimeUnit::Millisecond => (
                    array.as_primitive::<TimestampMillisecondType>().value(row),
                    1_000_000,
                ),
                TimeUnit::Microsecond => (
                    array.as_primitive::<TimestampMicrosecondType>().value(row),
                    1_000,
                ),
                TimeUnit::Nanosecond => (
                    array.as_primitive::<TimestampNanosecondType>().value(row),
                    1,
                ),
            };
            Value::Nanos(i128::from(v) * per_unit)
        }
        DataType::Time32(TimeUnit::Second) => Value::TimeOfDay(
            i64::from(array.as_primitive::<Time32SecondType>().value(row)) * 1_000_000_000,
        ),
        DataType::Time32(_) => Value::TimeOfDay(
            i64::from(array.as_primitive::<Time32MillisecondType>().value(row)) * 1_000_000,
        ),
        DataType::Time64(TimeUnit::Microsecond) => {
            Value::TimeOfDay(array.as_primitive::<Time64MicrosecondType>().value(row) * 1_000)
        }
        DataType::Time64(_) => {
            Value::TimeOfDay(array.as_primitive::<Time64NanosecondType>().value(row))
        }
        other => return Err(EncodeError::ArrowType(other.clone())),
    })
}

/// Why a value cannot be sent to its column; the message names the value (a row's column is
/// added by the sink).
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    /// The Arrow type has no SQL Server value.
    #[error("Arrow type {0} is not supported")]
    ArrowType(DataType),
    /// A value of another kind than the column's (text for an int column).
    #[error("cannot convert {value} {to}")]
    Mismatch {
        /// The value as messages show it.
        value: String,
        /// `for this column`, `to int`, `to a decimal`.
        to: String,
    },
    /// A value outside the column type's range (the message names the range and what to do).
    #[error("{0}")]
    OutOfRange(String),
    /// A decimal with more decimals than the column's scale.
    #[error("{0}")]
    Decimals(String),
    /// Text or bytes longer than the column.
    #[error("{0}")]
    TooLong(String),
    /// Text with a character the column's code page does not have.
    #[error("{0}")]
    CodePage(String),
    /// NaN or an infinity.
    #[error("{0} cannot be stored in SQL Server")]
    NotFinite(f64),
    /// Text that is not a uniqueidentifier.
    #[error("`{text}` is not a uniqueidentifier: {source}")]
    Guid {
        text: String,
        #[source]
        source: uuid::Error,
    },
}

impl EncodeError {
    fn mismatch(value: Value<'_>, to: &str) -> Self {
        EncodeError::Mismatch {
            value: value_text(value),
            to: to.to_string(),
        }
    }
}

/// What to do about a value out of its column's range, said once for every kind of value.
const OUT_OF_RANGE_HINT: &str =
    "filter such values out or replace them in a transform, or write them to a wider column";

/// `value` as the bulk-load value of a column sent as `wire`.
pub(crate) fn encode(value: Value<'_>, wire: Wire) -> Result<ColumnData<'static>, EncodeError> {
    if value == Value::Null {
        return Ok(null_of(wire));
    }
    let mismatch = || EncodeError::mismatch(value, "for this column");
    Ok(match wire {
        Wire::Bit => match value {
            Value::Bool(b) => ColumnData::Bit(Some(b)),
            _ => return Err(mismatch()),
        },
        Wire::U8 => ColumnData::U8(Some(fit_int(value, ranges::TINYINT)?)),
        Wire::I16 => ColumnData::I16(Some(fit_int(value, ranges::SMALLINT)?)),
        Wire::I32 => ColumnData::I32(Some(fit_int(value, ranges::INT)?)),
        Wire::I64 => ColumnData::I64(Some(fit_int(value, ranges::BIGINT)?)),
        Wire::F32 => ColumnData::F32(Some(to_real(finite(
            as_float(value).ok_or_else(mismatch)?,
        )?)?)),
        Wire::F64 => ColumnData::F64(Some(finite(as_float(value).ok_or_else(mismatch)?)?)),
        Wire::Numeric { precision, scale } => {
            ColumnData::Numeric(Some(to_numeric(value, precision, scale)?))
        }
        Wire::Date => {
            let Value::Days(days) = value else {
                return Err(mismatch());
            };
            ColumnData::Date(Some(date_of(days).ok_or_else(|| {
                EncodeError::OutOfRange(format!(
                    "date {} is outside the range of date ({}); {OUT_OF_RANGE_HINT}",
                    date_text(days),
                    ranges::DATE_RANGE
                ))
            })?))
        }
        Wire::Time(scale) => match value {
            Value::TimeOfDay(ns) => {
                let unit = 10i64.pow(9 - u32::from(scale));
                let increments = (ns + unit / 2).div_euclid(unit);
                if !(0..86_400 * 10i64.pow(u32::from(scale))).contains(&increments) {
                    return Err(EncodeError::OutOfRange(format!(
                        "time of day {} is outside the range of time({scale}) (00:00:00 to \
                         23:59:59.{})",
                        value_text(value),
                        "9".repeat(usize::from(scale))
                    )));
                }
                ColumnData::Time(Some(Time::new(increments as u64, scale)))
            }
            _ => return Err(mismatch()),
        },
        Wire::DateTime2(scale) => {
            ColumnData::DateTime2(Some(datetime2_of(value, scale, Zone::None)?))
        }
        Wire::DateTimeOffset(scale) => ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
            datetime2_of(value, scale, Zone::Utc)?,
            0,
        ))),
        Wire::DateTime => {
            let ns = instant_nanos(value).ok_or_else(mismatch)?;
            let mut days = ns.div_euclid(NANOS_PER_DAY);
            let mut fragments = (ns.rem_euclid(NANOS_PER_DAY) * 300 + 500_000_000) / 1_000_000_000;
            if fragments == 300 * 86_400 {
                days += 1;
                fragments = 0;
            }
            let days = i64::try_from(days + i128::from(DAYS_1900_TO_1970))
                .ok()
                .filter(|d| ranges::DATETIME_DAYS.contains(d))
                .ok_or_else(|| {
                    EncodeError::OutOfRange(format!(
                        "{} is outside the range of datetime ({}); {OUT_OF_RANGE_HINT}",
                        value_text(value),
                        ranges::DATETIME_RANGE
                    ))
                })?;
            ColumnData::DateTime(Some(DateTime::new(days as i32, fragments as u32)))
        }
        Wire::SmallDateTime => {
            let ns = instant_nanos(value).ok_or_else(mismatch)?;
            let minutes = (ns + 30_000_000_000).div_euclid(60_000_000_000);
            let days = i64::try_from(minutes.div_euclid(1_440) + i128::from(DAYS_1900_TO_1970))
                .ok()
                .filter(|d| ranges::SMALLDATETIME_DAYS.contains(d))
                .ok_or_else(|| {
                    EncodeError::OutOfRange(format!(
                        "{} is outside the range of smalldatetime ({}); {OUT_OF_RANGE_HINT}",
                        value_text(value),
                        ranges::SMALLDATETIME_RANGE
                    ))
                })?;
            ColumnData::SmallDateTime(Some(SmallDateTime::new(
                days as u16,
                minutes.rem_euclid(1_440) as u16,
            )))
        }
        Wire::Str {
            max_chars,
            unicode,
            code_page,
        } => {
            let Value::Str(s) = value else {
                return Err(mismatch());
            };
            let encoding = code_page
                .filter(|_| !unicode)
                .and_then(|cp| ranges::code_page_encoding(cp).map(|e| (cp, e)));
            let (len, unit) = match encoding {
                _ if unicode => (s.encode_utf16().count(), "characters".to_string()),
                Some((cp, encoding)) => match ranges::encoded_len(s, encoding) {
                    Ok(bytes) if bytes == s.chars().count() => (bytes, "characters".to_string()),
                    Ok(bytes) => (bytes, format!("bytes in code page {cp}")),
                    Err(c) => {
                        return Err(EncodeError::CodePage(format!(
                            "{} cannot be stored in this char/varchar column: its code page {cp} \
                             has no `{c}` (U+{:04X}), which SQL Server would store as `?`; write \
                             the text to an nvarchar column, or replace the character in a \
                             transform",
                            value_text(value),
                            u32::from(c)
                        )));
                    }
                },
                None => (s.chars().count(), "characters".to_string()),
            };
            if let Some(max) = max_chars
                && len > max as usize
            {
                return Err(EncodeError::TooLong(format!(
                    "text of {len} {unit} is longer than the column's {max} ({})",
                    value_text(value)
                )));
            }
            ColumnData::String(Some(Cow::Owned(s.to_string())))
        }
        Wire::Bytes { max } => {
            let Value::Bytes(b) = value else {
                return Err(mismatch());
            };
            if let Some(max) = max
                && b.len() > max as usize
            {
                return Err(EncodeError::TooLong(format!(
                    "{} bytes are longer than the column's {max} ({})",
                    b.len(),
                    value_text(value)
                )));
            }
            ColumnData::Binary(Some(Cow::Owned(b.to_vec())))
        }
        Wire::Guid => match value {
            Value::Str(s) => ColumnData::Guid(Some(tiberius::Uuid::parse_str(s.trim()).map_err(
                |source| EncodeError::Guid {
                    text: s.to_string(),
                    source,
                },
            )?)),
            _ => return Err(mismatch()),
        },
    })
}

/// A value as an error message shows it: the number, `2024-01-31`, `10000-01-01 00:00:00`,
/// `` `text` `` (its first 40 characters), `0x0A0B…` (its first 16 bytes).
fn value_text(value: Value<'_>) -> String {
    match value {
        Value::Null => "NULL".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Int(v) => v.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Decimal(v, scale) => decimal_text(v, scale),
        Value::Str(s) => {
            let mut chars = s.chars();
            let head: String = chars.by_ref().take(40).collect();
            let more = if chars.next().is_some() { "…" } else { "" };
            format!("`{head}{more}`")
        }
        Value::Bytes(b) => format!(
            "0x{}{}",
            hex::encode_upper(&b[..b.len().min(16)]),
            if b.len() > 16 { "…" } else { "" }
        ),
        Value::Days(d) => date_text(d),
        Value::Nanos(ns) => ranges::timestamp_text(ns),
        Value::TimeOfDay(ns) if (0..86_400_000_000_000).contains(&ns) => ranges::time_text(ns),
        Value::TimeOfDay(ns) => format!("{ns} ns"),
    }
}

/// A NULL of the column's wire type.
fn null_of(wire: Wire) -> ColumnData<'static> {
    match wire {
        Wire::Bit => ColumnData::Bit(None),
        Wire::U8 => ColumnData::U8(None),
        Wire::I16 => ColumnData::I16(None),
        Wire::I32 => ColumnData::I32(None),
        Wire::I64 => ColumnData::I64(None),
        Wire::F32 => ColumnData::F32(None),
        Wire::F64 => ColumnData::F64(None),
        Wire::Numeric { .. } => ColumnData::Numeric(None),
        Wire::Date => ColumnData::Date(None),
        Wire::Time(_) => ColumnData::Time(None),
        Wire::DateTime => ColumnData::DateTime(None),
        Wire::SmallDateTime => ColumnData::SmallDateTime(None),
        Wire::DateTime2(_) => ColumnData::DateTime2(None),
        Wire::DateTimeOffset(_) => ColumnData::DateTimeOffset(None),
        Wire::Str { .. } => ColumnData::String(None),
        Wire::Bytes { .. } => ColumnData::Binary(None),
        Wire::Guid => ColumnData::Guid(None),
    }
}

/// An integer value as the integer type of `range`; values outside it are refused.
fn fit_int<T: TryFrom<i128>>(value: Value<'_>, range: IntRange) -> Result<T, EncodeError> {
    let Value::Int(v) = value else {
        return Err(EncodeError::mismatch(value, &format!("to {}", range.name)));
    };
    let refused = |m: String| EncodeError::OutOfRange(format!("{m}; {OUT_OF_RANGE_HINT}"));
    let v = range.check(v).map_err(|e| refused(e.to_string()))?;
    T::try_from(v).map_err(|_| refused(format!("{v} is out of range for {}", range.name)))
}

fn as_float(value: Value<'_>) -> Option<f64> {
    match value {
        Value::Float(f) => Some(f),
        Value::Int(i) => Some(i as f64),
        _ => None,
    }
}

fn finite(f: f64) -> Result<f64, EncodeError> {
    if f.is_finite() {
        Ok(f)
    } else {
        Err(EncodeError::NotFinite(f))
    }
}

/// A finite float as `real`; magnitudes beyond its range (about ±3.4E+38), which would become
/// infinities SQL Server cannot store, are refused.
fn to_real(f: f64) -> Result<f32, EncodeError> {
    let real = f as f32;
    if real.is_finite() {
        Ok(real)
    } else {
        Err(EncodeError::OutOfRange(format!(
            "{f} is outside the range of real (-3.40E+38 to 3.40E+38); {OUT_OF_RANGE_HINT}"
        )))
    }
}

/// A numeric/integer/float value as a `decimal(precision, scale)`: rescaled to the column's
/// scale; a value with more decimals than the scale, or more integer digits than
/// `precision - scale`, is refused (floats are rounded to the scale).
fn to_numeric(value: Value<'_>, precision: u8, scale: u8) -> Result<Numeric, EncodeError> {
    let ten = |n: u32| 10i128.checked_pow(n);
    let column = format!("decimal({precision},{scale})");
    let too_big = || {
        let digits = precision.saturating_sub(scale);
        EncodeError::OutOfRange(format!(
            "{} does not fit {column}, which holds at most {digits} digit{} before the decimal \
             point; {OUT_OF_RANGE_HINT}",
            value_text(value),
            if digits == 1 { "" } else { "s" }
        ))
    };
    let unscaled = match value {
        Value::Int(v) => ten(u32::from(scale))
            .and_then(|p| v.checked_mul(p))
            .ok_or_else(too_big)?,
        Value::Decimal(v, from) => {
            let shift = i32::from(scale) - i32::from(from);
            if shift >= 0 {
                ten(shift as u32)
                    .and_then(|p| v.checked_mul(p))
                    .ok_or_else(too_big)?
            } else {
                let p = ten((-shift) as u32).ok_or_else(too_big)?;
                if v % p != 0 {
                    return Err(EncodeError::Decimals(format!(
                        "{} has more decimals than the column's scale {scale} ({column}); round \
                         it in a transform first (ROUND or CAST to DECIMAL(p,{scale}))",
                        decimal_text(v, from)
                    )));
                }
                v / p
            }
        }
        Value::Float(f) => {
            let scaled = (finite(f)? * 10f64.powi(i32::from(scale))).round();
            if scaled.abs() >= 1e38 {
                return Err(too_big());
            }
            scaled as i128
        }
        _ => {
            return Err(EncodeError::mismatch(value, "to a decimal"));
        }
    };
    let limit = ten(u32::from(precision)).unwrap_or(i128::MAX);
    if unscaled.abs() >= limit {
        return Err(too_big());
    }
    Ok(Numeric::new_with_scale(unscaled, scale))
}

/// Nanoseconds since 1970-01-01 of a date or timestamp value.
fn instant_nanos(value: Value<'_>) -> Option<i128> {
    match value {
        Value::Nanos(ns) => Some(ns),
        Value::Days(d) => Some(i128::from(d) * NANOS_PER_DAY),
        _ => None,
    }
}

/// The `date` of a day counted from 1970-01-01, if SQL Server's dates include it.
pub(crate) fn date_of(days_since_1970: i64) -> Option<Date> {
    let days = days_since_1970.checked_add(DAYS_0001_TO_1970)?;
    ranges::DATE_DAYS
        .contains(&days)
        .then(|| Date::new(days as u32))
}

/// Whether a datetime2 value goes to a `datetime2` column or (in UTC) to a `datetimeoffset` one;
/// only messages differ.
#[derive(Debug, Clone, Copy)]
enum Zone {
    None,
    Utc,
}

/// A date/timestamp as datetime2 with `scale` fractional digits (rounded); `zone` says which
/// column type a value out of range is refused for.
fn datetime2_of(value: Value<'_>, scale: u8, zone: Zone) -> Result<DateTime2, EncodeError> {
    let ns = instant_nanos(value).ok_or_else(|| EncodeError::mismatch(value, "to a date-time"))?;
    let unit = 10i128.pow(9 - u32::from(scale));
    let units = (ns + unit / 2).div_euclid(unit);
    let per_day = NANOS_PER_DAY / unit;
    let day_of = |days: i128| i64::try_from(days).ok().and_then(date_of);
    let date = day_of(units.div_euclid(per_day)).ok_or_else(|| {
        let column = match zone {
            Zone::None => format!("datetime2({scale})"),
            Zone::Utc => format!("datetimeoffset({scale}) in UTC"),
        };
        let rounded = if day_of(ns.div_euclid(NANOS_PER_DAY)).is_some() {
            format!(" rounded to {scale} decimals")
        } else {
            String::new()
        };
        EncodeError::OutOfRange(format!(
            "{}{rounded} is outside the range of {column} ({}); {OUT_OF_RANGE_HINT}",
            value_text(value),
            ranges::DATETIME2_RANGE
        ))
    })?;
    let increments = units.rem_euclid(per_day) as u64;
    Ok(DateTime2::new(date, Time::new(increments, scale)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_values_exactly() {
        let n = to_numeric(Value::Decimal(12345, 2), 18, 4).unwrap();
        assert_eq!((n.value(), n.scale()), (1_234_500, 4));
        let err = to_numeric(Value::Decimal(12345, 3), 18, 2).unwrap_err();
        assert!(matches!(err, EncodeError::Decimals(_)), "{err}");
        assert!(
            err.to_string().contains("12.345 has more decimals"),
            "{err}"
        );
        assert!(to_numeric(Value::Int(1000), 5, 2).is_err());
        assert_eq!(to_numeric(Value::Float(1.005), 10, 2).unwrap().value(), 100);
        assert!(fit_int::<i32>(Value::Int(1 << 40), ranges::INT).is_err());
        // 1970-01-02 00:00:00.000000123 as datetime2(7): rounded to 100 ns.
        let dt = datetime2_of(Value::Nanos(NANOS_PER_DAY + 151), 7, Zone::None).unwrap();
        assert_eq!(dt.date().days() as i64, DAYS_0001_TO_1970 + 1);
        assert_eq!((dt.time().increments(), dt.time().scale()), (2, 7));
        // 23:59:59.9999999 rounds into the next day at scale 0.
        let dt = datetime2_of(Value::Nanos(NANOS_PER_DAY - 100), 0, Zone::None).unwrap();
        assert_eq!(
            (dt.date().days() as i64, dt.time().increments()),
            (DAYS_0001_TO_1970 + 1, 0)
        );
        match encode(Value::Days(0), Wire::DateTime).unwrap() {
            ColumnData::DateTime(Some(d)) => {
                assert_eq!((d.days(), d.seconds_fragments()), (25_567, 0));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            encode(
                Value::Str("ñandú"),
                Wire::Str {
                    max_chars: Some(4),
                    unicode: true,
                    code_page: None,
                }
            )
            .is_err()
        );
        assert!(encode(Value::Null, Wire::I32).is_ok());
        let err = encode(Value::Float(1e39), Wire::F32).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "1000000000000000000000000000000000000000 is outside the range of real"
            ),
            "{err}"
        );
        assert!(encode(Value::Float(-3.4e38), Wire::F32).is_ok());
        assert_eq!(decimal_text(-5, 3), "-0.005");
    }
}
