//! Bulk-load rows written straight from Arrow arrays into the load's buffer.
//!
//! For each batch, every column picks one writer for its Arrow type, its SQL Server type
//! ([`Wire`]) and the framing the server asked for ([`BulkFrame`]). A writer copies a value that
//! passes a cheap check. Anything else (a value out of range, a type without a writer, a NULL for
//! a NOT NULL column) goes through the general path, `value_at` → `encode` → tiberius: that path
//! alone decides what is refused and with which message, so the writers change speed, never
//! behaviour. Debug builds (the tests) encode every written value through the general path too
//! and panic if the bytes differ.

use bytes::{BufMut, BytesMut};
use deltalake::arrow::array::{
    Array, AsArray, BinaryArray, BinaryViewArray, BooleanArray, FixedSizeBinaryArray,
    LargeBinaryArray, LargeStringArray, PrimitiveArray, StringArray, StringViewArray,
};
use deltalake::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use futures::io::{AsyncRead, AsyncWrite};
use tiberius::{BulkFrame, BulkLoadRequest};

use super::bulk::BulkColumn;
use crate::mssql::encode::{Wire, date_of, encode, value_at};
use crate::mssql::ranges;

/// The TDS token that starts a row.
const ROW_TOKEN: u8 = 0xD1;

/// A value the load refuses: its row in the batch, its column's label and why.
#[derive(Debug)]
pub(super) struct BadValue {
    pub(super) row: usize,
    pub(super) column: String,
    pub(super) message: String,
}

/// Appends one `ROW` token per row of `arrays` (one array and one frame per load column, in the
/// load's order) to the request's buffer. On a bad value nothing of the batch stays in the buffer.
pub(super) fn encode_batch<S>(
    request: &mut BulkLoadRequest<'_, S>,
    frames: &[BulkFrame],
    columns: &[BulkColumn],
    arrays: &[&dyn Array],
) -> Result<(), BadValue>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    debug_assert_eq!(frames.len(), columns.len(), "one frame per load column");
    let writers: Vec<Writer<'_>> = columns
        .iter()
        .zip(arrays)
        .zip(frames)
        .map(|((c, a), f)| Writer::new(*a, c.wire, *f))
        .collect();
    let rows = arrays.first().map_or(0, |a| a.len());
    let start = request.buffer_mut().len();
    request
        .buffer_mut()
        .reserve(rows * (1 + 12 * columns.len()));
    for row in 0..rows {
        request.buffer_mut().put_u8(ROW_TOKEN);
        for (index, ((column, array), writer)) in
            columns.iter().zip(arrays).zip(&writers).enumerate()
        {
            let buf = request.buffer_mut();
            let at = buf.len();
            let written = if array.is_null(row) {
                !column.not_null && writer.write_null(buf)
            } else {
                writer.write(row, buf)
            };
            let outcome = if written {
                check_written(request, index, column, *array, row, at)
            } else {
                general(request, index, column, *array, row)
            };
            if let Err(message) = outcome {
                request.buffer_mut().truncate(start);
                return Err(BadValue {
                    row,
                    column: column.label.clone(),
                    message,
                });
            }
        }
    }
    Ok(())
}

/// The general path: the value's conversion (which refuses what does not fit) and tiberius'
/// encoding for the column.
fn general<S>(
    request: &mut BulkLoadRequest<'_, S>,
    index: usize,
    column: &BulkColumn,
    array: &dyn Array,
    row: usize,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    if column.not_null && array.is_null(row) {
        return Err("NULL cannot go into a NOT NULL column".to_string());
    }
    let value = value_at(array, row)
        .and_then(|v| encode(v, column.wire))
        .map_err(|e| e.to_string())?;
    request.encode_value(index, value).map_err(|e| {
        if matches!(e, tiberius::error::Error::Encoding(_)) {
            "the code page of this char/varchar column cannot hold one of its characters; write \
             it to an nvarchar column or replace the character in a transform"
                .to_string()
        } else {
            e.to_string()
        }
    })
}

/// Debug builds: the bytes a writer wrote from `at` on must be the general path's.
#[cfg(debug_assertions)]
fn check_written<S>(
    request: &mut BulkLoadRequest<'_, S>,
    index: usize,
    column: &BulkColumn,
    array: &dyn Array,
    row: usize,
    at: usize,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let written = request.buffer_mut()[at..].to_vec();
    let value = value_at(array, row)
        .and_then(|v| encode(v, column.wire))
        .unwrap_or_else(|e| {
            panic!(
                "column `{}` row {row}: written directly, but the general path refuses it: {e}",
                column.label
            )
        });
    let mut expected = BytesMut::new();
    request
        .encode_value_into(index, value, &mut expected)
        .expect("the general path encodes what the writer wrote");
    assert_eq!(
        written,
        expected.to_vec(),
        "column `{}` ({:?}, {}) row {row}: the direct writer's bytes differ from tiberius'",
        column.label,
        column.wire,
        array.data_type()
    );
    Ok(())
}

#[cfg(not(debug_assertions))]
#[inline(always)]
fn check_written<S>(
    _: &mut BulkLoadRequest<'_, S>,
    _: usize,
    _: &BulkColumn,
    _: &dyn Array,
    _: usize,
    _: usize,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    Ok(())
}

/// How one column's values are written, chosen once per batch.
enum Writer<'a> {
    /// Integers of any Arrow width into tinyint..bigint of `width` bytes.
    Int {
        values: Ints<'a>,
        min: i64,
        max: i64,
        width: u8,
        frame: BulkFrame,
    },
    /// Floats into float (8 bytes) or real (4).
    Float {
        values: Floats<'a>,
        real: bool,
        frame: BulkFrame,
    },
    Bit {
        values: &'a BooleanArray,
        frame: BulkFrame,
    },
    /// Decimals of the column's scale into decimal/numeric; `limit` = 10^precision.
    Decimal {
        values: &'a PrimitiveArray<Decimal128Type>,
        limit: u128,
        scale: u8,
    },
    Date(&'a PrimitiveArray<Date32Type>),
    /// Timestamps into datetime2 (`offset`: datetimeoffset in UTC) of `scale` digits;
    /// `per_unit` = nanoseconds per Arrow unit.
    Instant {
        values: &'a [i64],
        per_unit: i64,
        scale: u8,
        offset: bool,
    },
    /// Text into nchar/nvarchar(n): `max` UTF-16 units.
    Utf16 {
        values: Strs<'a>,
        max: usize,
    },
    /// ASCII text into char/varchar(n) of an ASCII-compatible code page: `max` bytes.
    Ascii {
        values: Strs<'a>,
        max: usize,
    },
    /// Bytes into binary/varbinary(n).
    Bytes {
        values: Bins<'a>,
        max: usize,
    },
    /// Text into uniqueidentifier.
    Guid(Strs<'a>),
    /// Every value takes the general path.
    General,
}

impl<'a> Writer<'a> {
    fn new(array: &'a dyn Array, wire: Wire, frame: BulkFrame) -> Writer<'a> {
        Self::pick(array, wire, frame).unwrap_or(Writer::General)
    }

    fn pick(array: &'a dyn Array, wire: Wire, frame: BulkFrame) -> Option<Writer<'a>> {
        let byte_len = frame == BulkFrame::ByteLen;
        let fixed_or_byte = byte_len || frame == BulkFrame::Fixed;
        Some(match wire {
            Wire::U8 | Wire::I16 | Wire::I32 | Wire::I64 if fixed_or_byte => {
                let range = match wire {
                    Wire::U8 => ranges::TINYINT,
                    Wire::I16 => ranges::SMALLINT,
                    Wire::I32 => ranges::INT,
                    _ => ranges::BIGINT,
                };
                Writer::Int {
                    values: Ints::of(array)?,
                    min: range.min as i64,
                    max: range.max as i64,
                    width: match wire {
                        Wire::U8 => 1,
                        Wire::I16 => 2,
                        Wire::I32 => 4,
                        _ => 8,
                    },
                    frame,
                }
            }
            Wire::F32 | Wire::F64 if fixed_or_byte => Writer::Float {
                values: Floats::of(array)?,
                real: wire == Wire::F32,
                frame,
            },
            Wire::Bit if fixed_or_byte => Writer::Bit {
                values: array.as_boolean_opt()?,
                frame,
            },
            Wire::Numeric { precision, scale } if byte_len => match array.data_type() {
                DataType::Decimal128(_, s) if *s == scale as i8 => Writer::Decimal {
                    values: array.as_primitive_opt()?,
                    limit: 10u128.checked_pow(u32::from(precision))?,
                    scale,
                },
                _ => return None,
            },
            Wire::Date if byte_len => Writer::Date(array.as_primitive_opt()?),
            Wire::DateTime2(scale) | Wire::DateTimeOffset(scale) if byte_len && scale <= 7 => {
                let (values, per_unit): (&[i64], i64) = match array.data_type() {
                    DataType::Timestamp(TimeUnit::Second, _) => (
                        array.as_primitive::<TimestampSecondType>().values(),
                        1_000_000_000,
                    ),
                    DataType::Timestamp(TimeUnit::Millisecond, _) => (
                        array.as_primitive::<TimestampMillisecondType>().values(),
                        1_000_000,
                    ),
                    DataType::Timestamp(TimeUnit::Microsecond, _) => (
                        array.as_primitive::<TimestampMicrosecondType>().values(),
                        1_000,
                    ),
                    DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                        (array.as_primitive::<TimestampNanosecondType>().values(), 1)
                    }
                    _ => return None,
                };
                Writer::Instant {
                    values,
                    per_unit,
                    scale,
                    offset: matches!(wire, Wire::DateTimeOffset(_)),
                }
            }
            Wire::Str {
                max_chars,
                unicode,
                code_page,
            } => {
                let BulkFrame::UShortLen { max: bytes } = frame else {
                    return None;
                };
                let values = Strs::of(array)?;
                let chars = max_chars.map_or(usize::MAX, |m| m as usize);
                if unicode {
                    Writer::Utf16 {
                        values,
                        max: chars.min(bytes / 2),
                    }
                } else {
                    // Every code page SQL Server uses for char/varchar keeps ASCII as it is; the
                    // general path takes the code pages it does not know.
                    ranges::code_page_encoding(code_page?)?;
                    Writer::Ascii {
                        values,
                        max: chars.min(bytes),
                    }
                }
            }
            Wire::Bytes { max } => {
                let BulkFrame::UShortLen { max: bytes } = frame else {
                    return None;
                };
                Writer::Bytes {
                    values: Bins::of(array)?,
                    max: max.map_or(bytes, |m| bytes.min(m as usize)),
                }
            }
            Wire::Guid if byte_len => Writer::Guid(Strs::of(array)?),
            _ => return None,
        })
    }

    /// Writes NULL if the column's framing has one.
    fn write_null(&self, buf: &mut BytesMut) -> bool {
        match self {
            Writer::General => false,
            Writer::Int { frame, .. } | Writer::Float { frame, .. } | Writer::Bit { frame, .. }
                if *frame == BulkFrame::Fixed =>
            {
                false
            }
            Writer::Utf16 { .. } | Writer::Ascii { .. } | Writer::Bytes { .. } => {
                buf.put_u16_le(0xffff);
                true
            }
            _ => {
                buf.put_u8(0);
                true
            }
        }
    }

    /// Writes the value at `row` (not NULL) if it passes this writer's check; writes nothing
    /// and returns false otherwise.
    fn write(&self, row: usize, buf: &mut BytesMut) -> bool {
        match self {
            Writer::General => false,
            Writer::Int {
                values,
                min,
                max,
                width,
                frame,
            } => {
                let Some(v) = values.get(row).filter(|v| (*min..=*max).contains(v)) else {
                    return false;
                };
                if *frame == BulkFrame::ByteLen {
                    buf.put_u8(*width);
                }
                buf.put_slice(&v.to_le_bytes()[..usize::from(*width)]);
                true
            }
            Writer::Float {
                values,
                real,
                frame,
            } => {
                let v = values.get(row);
                // NaN, infinities and floats beyond `real`'s range take the general path, which
                // refuses them.
                if !v.is_finite() || (*real && !(v as f32).is_finite()) {
                    return false;
                }
                let byte_len = *frame == BulkFrame::ByteLen;
                if *real {
                    if byte_len {
                        buf.put_u8(4);
                    }
                    buf.put_f32_le(v as f32);
                } else {
                    if byte_len {
                        buf.put_u8(8);
                    }
                    buf.put_f64_le(v);
                }
                true
            }
            Writer::Bit { values, frame } => {
                if *frame == BulkFrame::ByteLen {
                    buf.put_u8(1);
                }
                buf.put_u8(u8::from(values.value(row)));
                true
            }
            Writer::Decimal {
                values,
                limit,
                scale,
            } => {
                let v = values.value(row);
                let magnitude = v.unsigned_abs();
                if magnitude >= *limit {
                    return false;
                }
                put_numeric(buf, v < 0, magnitude, *scale);
                true
            }
            Writer::Date(values) => {
                let Some(date) = date_of(i64::from(values.value(row))) else {
                    return false;
                };
                buf.put_u8(3);
                buf.put_slice(&date.days().to_le_bytes()[..3]);
                true
            }
            Writer::Instant {
                values,
                per_unit,
                scale,
                offset,
            } => {
                let Some((days, increments)) = datetime2(values[row], *per_unit, *scale) else {
                    return false;
                };
                let time_len = time_len(*scale);
                buf.put_u8(time_len + 3 + if *offset { 2 } else { 0 });
                buf.put_slice(&increments.to_le_bytes()[..usize::from(time_len)]);
                buf.put_slice(&(days as u32).to_le_bytes()[..3]);
                if *offset {
                    buf.put_i16_le(0);
                }
                true
            }
            Writer::Utf16 { values, max } => put_utf16(buf, values.get(row), *max),
            Writer::Ascii { values, max } => {
                let s = values.get(row);
                if !s.is_ascii() || s.len() > *max {
                    return false;
                }
                buf.put_u16_le(s.len() as u16);
                buf.put_slice(s.as_bytes());
                true
            }
            Writer::Bytes { values, max } => {
                let b = values.get(row);
                if b.len() > *max {
                    return false;
                }
                buf.put_u16_le(b.len() as u16);
                buf.put_slice(b);
                true
            }
            Writer::Guid(values) => {
                let Ok(uuid) = uuid::Uuid::parse_str(values.get(row).trim()) else {
                    return false;
                };
                // MS-TDS GUIDs keep their first three groups little-endian.
                let mut b = *uuid.as_bytes();
                b[..4].reverse();
                b[4..6].reverse();
                b[6..8].reverse();
                buf.put_u8(16);
                buf.put_slice(&b);
                true
            }
        }
    }
}

/// A decimal as tiberius writes it: a length byte chosen by the value's own digits, the sign
/// (1 = positive) and the magnitude in 4, 8, 12 or 16 little-endian bytes.
fn put_numeric(buf: &mut BytesMut, negative: bool, magnitude: u128, scale: u8) {
    let digits = magnitude.checked_ilog10().map_or(0, |d| d + 1);
    let precision = digits.max(u32::from(scale) + 1);
    let len: u8 = match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    };
    buf.put_u8(len);
    buf.put_u8(u8::from(!negative));
    buf.put_slice(&magnitude.to_le_bytes()[..usize::from(len - 1)]);
}

/// Bytes of a `time` value of `scale` digits.
fn time_len(scale: u8) -> u8 {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

/// Days since 0001-01-01 and the time of day in units of `scale` digits of an Arrow timestamp,
/// rounded half up like the general path; `None` outside `datetime2`'s range or when the
/// nanoseconds do not fit an `i64` (the general path computes those in 128 bits).
fn datetime2(value: i64, per_unit: i64, scale: u8) -> Option<(i64, u64)> {
    let ns = value.checked_mul(per_unit)?;
    let unit = 10i64.pow(9 - u32::from(scale));
    let units = ns.checked_add(unit / 2)?.div_euclid(unit);
    let per_day = (ranges::NANOS_PER_DAY as i64) / unit;
    let date = date_of(units.div_euclid(per_day))?;
    Some((i64::from(date.days()), units.rem_euclid(per_day) as u64))
}

/// Writes `s` as a two-byte length and UTF-16LE, if it has at most `max` UTF-16 units.
fn put_utf16(buf: &mut BytesMut, s: &str, max: usize) -> bool {
    let at = buf.len();
    buf.put_u16_le(0);
    let mut units = 0usize;
    if s.is_ascii() {
        if s.len() > max {
            buf.truncate(at);
            return false;
        }
        units = s.len();
        buf.reserve(2 * units);
        for &b in s.as_bytes() {
            buf.put_slice(&[b, 0]);
        }
    } else {
        for unit in s.encode_utf16() {
            units += 1;
            if units > max {
                buf.truncate(at);
                return false;
            }
            buf.put_u16_le(unit);
        }
    }
    buf[at..at + 2].copy_from_slice(&((2 * units) as u16).to_le_bytes());
    true
}

/// An integer array of any Arrow width, read as `i64` (`u64` values above `i64::MAX` are left
/// to the general path, which refuses them).
enum Ints<'a> {
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
}

impl<'a> Ints<'a> {
    fn of(array: &'a dyn Array) -> Option<Self> {
        fn v<T: ArrowPrimitiveType>(a: &dyn Array) -> &[T::Native] {
            a.as_primitive::<T>().values()
        }
        Some(match array.data_type() {
            DataType::Int8 => Ints::I8(v::<Int8Type>(array)),
            DataType::Int16 => Ints::I16(v::<Int16Type>(array)),
            DataType::Int32 => Ints::I32(v::<Int32Type>(array)),
            DataType::Int64 => Ints::I64(v::<Int64Type>(array)),
            DataType::UInt8 => Ints::U8(v::<UInt8Type>(array)),
            DataType::UInt16 => Ints::U16(v::<UInt16Type>(array)),
            DataType::UInt32 => Ints::U32(v::<UInt32Type>(array)),
            DataType::UInt64 => Ints::U64(v::<UInt64Type>(array)),
            _ => return None,
        })
    }

    fn get(&self, row: usize) -> Option<i64> {
        Some(match self {
            Ints::I8(v) => i64::from(v[row]),
            Ints::I16(v) => i64::from(v[row]),
            Ints::I32(v) => i64::from(v[row]),
            Ints::I64(v) => v[row],
            Ints::U8(v) => i64::from(v[row]),
            Ints::U16(v) => i64::from(v[row]),
            Ints::U32(v) => i64::from(v[row]),
            Ints::U64(v) => i64::try_from(v[row]).ok()?,
        })
    }
}

/// A float array of either width, read as `f64`.
enum Floats<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl<'a> Floats<'a> {
    fn of(array: &'a dyn Array) -> Option<Self> {
        Some(match array.data_type() {
            DataType::Float32 => Floats::F32(array.as_primitive::<Float32Type>().values()),
            DataType::Float64 => Floats::F64(array.as_primitive::<Float64Type>().values()),
            _ => return None,
        })
    }

    fn get(&self, row: usize) -> f64 {
        match self {
            Floats::F32(v) => f64::from(v[row]),
            Floats::F64(v) => v[row],
        }
    }
}

/// A string array of any Arrow layout.
enum Strs<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl<'a> Strs<'a> {
    fn of(array: &'a dyn Array) -> Option<Self> {
        Some(match array.data_type() {
            DataType::Utf8 => Strs::Utf8(array.as_string()),
            DataType::LargeUtf8 => Strs::Large(array.as_string()),
            DataType::Utf8View => Strs::View(array.as_string_view()),
            _ => return None,
        })
    }

    fn get(&self, row: usize) -> &'a str {
        match self {
            Strs::Utf8(a) => a.value(row),
            Strs::Large(a) => a.value(row),
            Strs::View(a) => a.value(row),
        }
    }
}

/// A binary array of any Arrow layout.
enum Bins<'a> {
    Binary(&'a BinaryArray),
    Large(&'a LargeBinaryArray),
    View(&'a BinaryViewArray),
    Fixed(&'a FixedSizeBinaryArray),
}

impl<'a> Bins<'a> {
    fn of(array: &'a dyn Array) -> Option<Self> {
        Some(match array.data_type() {
            DataType::Binary => Bins::Binary(array.as_binary()),
            DataType::LargeBinary => Bins::Large(array.as_binary()),
            DataType::BinaryView => Bins::View(array.as_binary_view()),
            DataType::FixedSizeBinary(_) => Bins::Fixed(array.as_fixed_size_binary()),
            _ => return None,
        })
    }

    fn get(&self, row: usize) -> &'a [u8] {
        match self {
            Bins::Binary(a) => a.value(row),
            Bins::Large(a) => a.value(row),
            Bins::View(a) => a.value(row),
            Bins::Fixed(a) => a.value(row),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_length_follows_the_values_digits_like_tiberius() {
        let len = |m: u128, scale: u8| {
            let mut buf = BytesMut::new();
            put_numeric(&mut buf, false, m, scale);
            buf[0]
        };
        // tiberius: precision = digits of the integer part + scale (1 + scale when it is 0).
        assert_eq!(len(0, 4), 5);
        assert_eq!(len(99_999, 4), 5);
        assert_eq!(len(999_999_999, 4), 5);
        assert_eq!(len(1_000_000_000, 4), 9);
        assert_eq!(len(1, 9), 9);
        assert_eq!(len(10u128.pow(28) - 1, 0), 13);
        assert_eq!(len(10u128.pow(28), 0), 17);
    }

    #[test]
    fn datetime2_rounds_and_stays_in_range() {
        let day = (ranges::NANOS_PER_DAY) as i64;
        // 23:59:59.9999999 rounds into the next day at scale 0.
        assert_eq!(
            datetime2(day - 100, 1, 0),
            Some((ranges::DAYS_0001_TO_1970 + 1, 0))
        );
        assert_eq!(datetime2(151, 1, 7), Some((ranges::DAYS_0001_TO_1970, 2)));
        assert_eq!(
            datetime2(-1, 1_000_000_000, 0),
            Some((ranges::DAYS_0001_TO_1970 - 1, 86_399))
        );
        // Year 10000 and the i64 overflow both go to the general path.
        assert_eq!(datetime2(253_402_300_800, 1_000_000_000, 0), None);
        assert_eq!(datetime2(i64::MAX, 1_000, 7), None);
    }

    #[test]
    fn utf16_counts_units_and_leaves_nothing_when_too_long() {
        let mut buf = BytesMut::new();
        assert!(put_utf16(&mut buf, "añ😀", 4));
        assert_eq!(&buf[..2], &8u16.to_le_bytes());
        assert_eq!(buf.len(), 2 + 8);
        let mut buf = BytesMut::from(&b"x"[..]);
        assert!(!put_utf16(&mut buf, "añ😀", 3));
        assert!(!put_utf16(&mut buf, "abcd", 3));
        assert_eq!(&buf[..], b"x");
    }
}
