//! SQL Server column types and their Arrow equivalents, and decoding of tiberius values into Arrow.
//! The Arrow types are those of the output type policy (`crate::output_types`, README "Types"):
//! what a transform sees is what Databricks reads, and every value is exact unless said below.
//!
//! | SQL Server                              | Arrow                        | notes |
//! |-----------------------------------------|------------------------------|-------|
//! | bit                                     | Boolean                      | |
//! | tinyint / smallint / int / bigint       | Int16 / Int16 / Int32 / Int64| tinyint is 0..255: signed 16 bits, as Databricks has no unsigned types |
//! | real / float                            | Float32 / Float64            | |
//! | decimal(p,s), numeric(p,s)              | Decimal128(p,s)              | |
//! | money / smallmoney                      | Decimal128(19,4) / (10,4)    | exact over the whole range (the vendored tiberius reads money as a Numeric of scale 4) |
//! | date                                    | Date32                       | 0001-01-01..9999-12-31 |
//! | time(0) / (1..3) / (4..6) / (7)         | Time32(s) / Time32(ms) / Time64(µs) / Time64(ns) | written for Databricks as text `HH:MM:SS[.f…]` with the column's digits |
//! | datetime, smalldatetime                 | Timestamp(µs)                | datetime's 1/300 s ticks rounded to the millisecond, as SQL Server displays them |
//! | datetime2(0..7)                         | Timestamp(µs)                | the whole range 0001..9999; datetime2(7)'s 7th digit follows the sinks' `sub_microsecond` (truncated and counted by default; `nanoseconds`: Timestamp(ns), 1677..2262 only) |
//! | datetimeoffset(n)                       | Timestamp(µs, "UTC")         | the instant; `keep_offsets: true` adds `<column>_offset_minutes` (Int16) |
//! | char, varchar, nchar, nvarchar, text, ntext (incl. max), xml | Utf8 | |
//! | binary, varbinary (incl. max), image, rowversion | Binary              | |
//! | uniqueidentifier                        | Utf8                         | canonical upper-case form |
//! | sql_variant, hierarchyid, geography, geometry | refused, naming the cast to use | |
//!
//! NULL is accepted in every column.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    Time32MillisecondArray, Time32SecondArray, Time64MicrosecondArray, Time64NanosecondArray,
    TimestampMicrosecondBuilder, TimestampNanosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, TimeUnit};
use tiberius::ColumnData;

use super::ranges::{DAYS_0001_TO_1970, DAYS_1900_TO_1970};
use crate::output_types::{SubMicrosecond, UTC};

/// The suffix of the column `keep_offsets: true` adds next to a `datetimeoffset` column.
pub const OFFSET_SUFFIX: &str = "_offset_minutes";

/// Arrow type of a SQL Server type name as `sp_describe_first_result_set` spells it
/// (`decimal(18,4)`, `datetime2(7)`, `nvarchar(max)`), or why it cannot be read (with the cast
/// to use in the query). `sub_microsecond` decides `datetime2(7)` and `datetimeoffset(7)`.
pub fn arrow_type(
    system_type_name: &str,
    sub_microsecond: SubMicrosecond,
) -> Result<DataType, UnreadableType> {
    let lower = system_type_name.trim().to_ascii_lowercase();
    let (base, args) = match lower.split_once('(') {
        Some((b, rest)) => (b.trim(), rest.trim_end_matches(')').trim()),
        None => (lower.as_str(), ""),
    };
    let nums: Vec<u8> = args
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    let scale = nums.first().copied().unwrap_or(7);
    let unit = if scale == 7 && sub_microsecond == SubMicrosecond::Nanoseconds {
        TimeUnit::Nanosecond
    } else {
        TimeUnit::Microsecond
    };
    Ok(match base {
        "bit" => DataType::Boolean,
        "tinyint" | "smallint" => DataType::Int16,
        "int" => DataType::Int32,
        "bigint" => DataType::Int64,
        "real" => DataType::Float32,
        "float" => match nums.first() {
            Some(n) if *n <= 24 => DataType::Float32,
            _ => DataType::Float64,
        },
        "decimal" | "numeric" => {
            let p = nums.first().copied().unwrap_or(18);
            let s = nums.get(1).copied().unwrap_or(0);
            DataType::Decimal128(p, s as i8)
        }
        "money" => DataType::Decimal128(19, 4),
        "smallmoney" => DataType::Decimal128(10, 4),
        "date" => DataType::Date32,
        "time" => match scale {
            0 => DataType::Time32(TimeUnit::Second),
            1..=3 => DataType::Time32(TimeUnit::Millisecond),
            4..=6 => DataType::Time64(TimeUnit::Microsecond),
            _ => DataType::Time64(TimeUnit::Nanosecond),
        },
        "datetime" | "smalldatetime" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "datetime2" => DataType::Timestamp(unit, None),
        "datetimeoffset" => DataType::Timestamp(unit, Some(Arc::from(UTC))),
        "char" | "varchar" | "nchar" | "nvarchar" | "text" | "ntext" | "xml" | "sysname"
        | "uniqueidentifier" => DataType::Utf8,
        "binary" | "varbinary" | "image" | "timestamp" | "rowversion" => DataType::Binary,
        "sql_variant" => return Err(UnreadableType::Variant),
        "hierarchyid" => return Err(UnreadableType::HierarchyId),
        "geography" | "geometry" => return Err(UnreadableType::Spatial),
        _ => return Err(UnreadableType::Other),
    })
}

/// Why a SQL Server type cannot be read; each says what to select instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnreadableType {
    /// `sql_variant`.
    #[error(
        "Databricks has no variant of SQL Server values: CAST it to the type it holds (e.g. \
         CAST(col AS nvarchar(4000)) or CAST(col AS decimal(38, 10))) in the query"
    )]
    Variant,
    /// `hierarchyid`.
    #[error("read it as text with col.ToString() (or CAST(col AS nvarchar(4000))) in the query")]
    HierarchyId,
    /// `geography`, `geometry`.
    #[error(
        "read it as well-known text with col.STAsText() or as well-known binary with \
         col.STAsBinary() in the query"
    )]
    Spatial,
    /// Any other type.
    #[error("CAST it to a string, a number or binary in the query")]
    Other,
}

/// Why a value could not be appended to its column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The driver sent a value of another kind than the described column type.
    #[error("value {value} does not match the described column type ({column})")]
    Mismatch {
        /// The value, as debug text.
        value: String,
        column: &'static str,
    },
    /// Not a date-time, for a timestamp column.
    #[error("value {0} is not a date-time")]
    NotDateTime(String),
    /// Digits below the microsecond under `sub_microsecond: error`.
    #[error(
        "{0} has digits below the microsecond, which the sink's `sub_microsecond: error` \
         refuses; use `truncate` (the default) to drop and count them"
    )]
    SubMicrosecond(String),
    /// A date-time nanoseconds since 1970 cannot hold.
    #[error(
        "{0} is outside 1677..2262, which nanoseconds cannot hold (the sink's \
         `sub_microsecond: nanoseconds`); use `truncate` (the default)"
    )]
    OutsideNanoseconds(String),
}

/// One non-NULL value as a driver decoded it, in the units the builders take.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Bool(bool),
    U8(u8),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    /// An unscaled decimal and its scale.
    Decimal(i128, u8),
    /// Days since 1970-01-01.
    Date(i64),
    /// Nanoseconds since midnight.
    Time(u64),
    /// Nanoseconds since 1970-01-01 (UTC for a `datetimeoffset`), and a `datetimeoffset`'s
    /// offset in minutes.
    Timestamp(i128, Option<i16>),
    Str(&'a str),
    Guid(uuid::Uuid),
    Bytes(&'a [u8]),
}

/// Arrow builder for one column, fed with values of either driver ([`Value`]).
pub enum ColumnBuilder {
    Boolean(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Date32(Date32Builder),
    /// A time of day in `unit`s since midnight.
    Time(Int64Builder, TimeUnit),
    TimestampMicros {
        values: TimestampMicrosecondBuilder,
        tz: Option<Arc<str>>,
        /// What digits below the microsecond do (`truncate` or `error`).
        below: SubMicrosecond,
        /// Values whose digits below the microsecond were dropped.
        truncated: u64,
        /// The highest value appended, exact (nanoseconds since 1970).
        max_ns: Option<i128>,
        /// `keep_offsets`: each value's offset from UTC in minutes.
        offsets: Option<Int16Builder>,
    },
    TimestampNanos {
        values: TimestampNanosecondBuilder,
        tz: Option<Arc<str>>,
        offsets: Option<Int16Builder>,
    },
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
}

impl ColumnBuilder {
    /// A builder for an Arrow type produced by [`arrow_type`]; `keep_offset` adds the offset
    /// column of a `datetimeoffset`.
    pub fn new(
        data_type: &DataType,
        capacity: usize,
        sub_microsecond: SubMicrosecond,
        keep_offset: bool,
    ) -> Self {
        let offsets = keep_offset.then(|| Int16Builder::with_capacity(capacity));
        match data_type {
            DataType::Boolean => Self::Boolean(BooleanBuilder::with_capacity(capacity)),
            DataType::Int16 => Self::Int16(Int16Builder::with_capacity(capacity)),
            DataType::Int32 => Self::Int32(Int32Builder::with_capacity(capacity)),
            DataType::Int64 => Self::Int64(Int64Builder::with_capacity(capacity)),
            DataType::Float32 => Self::Float32(Float32Builder::with_capacity(capacity)),
            DataType::Float64 => Self::Float64(Float64Builder::with_capacity(capacity)),
            DataType::Decimal128(p, s) => {
                Self::Decimal(Decimal128Builder::with_capacity(capacity), *p, *s)
            }
            DataType::Date32 => Self::Date32(Date32Builder::with_capacity(capacity)),
            DataType::Time32(unit) | DataType::Time64(unit) => {
                Self::Time(Int64Builder::with_capacity(capacity), *unit)
            }
            DataType::Timestamp(TimeUnit::Nanosecond, tz) => Self::TimestampNanos {
                values: TimestampNanosecondBuilder::with_capacity(capacity),
                tz: tz.clone(),
                offsets,
            },
            DataType::Timestamp(_, tz) => Self::TimestampMicros {
                values: TimestampMicrosecondBuilder::with_capacity(capacity),
                tz: tz.clone(),
                below: sub_microsecond,
                truncated: 0,
                max_ns: None,
                offsets,
            },
            DataType::Binary => Self::Binary(BinaryBuilder::with_capacity(capacity, 0)),
            _ => Self::Utf8(StringBuilder::with_capacity(capacity, capacity * 16)),
        }
    }

    /// Appends one tiberius value; a value of an unexpected kind (or one the column refuses) is
    /// an error.
    pub fn append(&mut self, value: ColumnData<'_>) -> Result<(), AppendError> {
        use ColumnData as C;
        let xml;
        let value = match value {
            C::Bit(v) => v.map(Value::Bool),
            C::U8(v) => v.map(Value::U8),
            C::I16(v) => v.map(Value::I16),
            C::I32(v) => v.map(Value::I32),
            C::I64(v) => v.map(Value::I64),
            C::F32(v) => v.map(Value::F32),
            C::F64(v) => v.map(Value::F64),
            C::Numeric(v) => v.map(|n| Value::Decimal(n.value(), n.scale())),
            C::Date(v) => v.map(|d| Value::Date(i64::from(d.days()) - DAYS_0001_TO_1970)),
            C::Time(v) => v.map(|t| Value::Time(time_nanos(t))),
            C::DateTime2(v) => v.map(|dt| Value::Timestamp(datetime2_nanos(dt), None)),
            C::DateTimeOffset(v) => {
                v.map(|dto| Value::Timestamp(datetime2_nanos(dto.datetime2()), Some(dto.offset())))
            }
            C::DateTime(v) => v.map(|dt| {
                Value::Timestamp(datetime_nanos(dt.days(), dt.seconds_fragments()), None)
            }),
            C::SmallDateTime(v) => v.map(|dt| {
                Value::Timestamp(smalldatetime_nanos(dt.days(), dt.seconds_fragments()), None)
            }),
            C::String(ref v) => v.as_deref().map(Value::Str),
            C::Guid(v) => v.map(Value::Guid),
            C::Xml(v) => {
                xml = v.map(|x| x.to_string());
                xml.as_deref().map(Value::Str)
            }
            C::Binary(ref v) => v.as_deref().map(Value::Bytes),
        };
        match value {
            Some(v) => self.push(v),
            None => {
                self.push_null();
                Ok(())
            }
        }
    }

    /// Appends a NULL (and a NULL offset where offsets are kept).
    pub fn push_null(&mut self) {
        match self {
            Self::Boolean(b) => b.append_null(),
            Self::Int16(b) => b.append_null(),
            Self::Int32(b) => b.append_null(),
            Self::Int64(b) | Self::Time(b, _) => b.append_null(),
            Self::Float32(b) => b.append_null(),
            Self::Float64(b) => b.append_null(),
            Self::Decimal(b, ..) => b.append_null(),
            Self::Date32(b) => b.append_null(),
            Self::TimestampMicros {
                values, offsets, ..
            } => {
                values.append_null();
                if let Some(o) = offsets {
                    o.append_null();
                }
            }
            Self::TimestampNanos {
                values, offsets, ..
            } => {
                values.append_null();
                if let Some(o) = offsets {
                    o.append_null();
                }
            }
            Self::Utf8(b) => b.append_null(),
            Self::Binary(b) => b.append_null(),
        }
    }

    /// Appends one non-NULL value, whichever driver decoded it; a value of an unexpected kind
    /// (or one the column refuses) is an error.
    pub fn push(&mut self, value: Value<'_>) -> Result<(), AppendError> {
        use Value as V;
        match (self, value) {
            (Self::Boolean(b), V::Bool(v)) => b.append_value(v),
            (Self::Int16(b), V::U8(v)) => b.append_value(i16::from(v)),
            (Self::Int16(b), V::I16(v)) => b.append_value(v),
            (Self::Int32(b), V::I32(v)) => b.append_value(v),
            (Self::Int64(b), V::I64(v)) => b.append_value(v),
            (Self::Float32(b), V::F32(v)) => b.append_value(v),
            (Self::Float64(b), V::F64(v)) => b.append_value(v),
            (Self::Float64(b), V::F32(v)) => b.append_value(f64::from(v)),
            (Self::Decimal(b, _, s), V::Decimal(v, scale)) => {
                b.append_value(rescale(v, scale as i8, *s));
            }
            (Self::Decimal(b, _, s), V::F64(f)) => {
                b.append_value((f * 10f64.powi(i32::from(*s))).round() as i128);
            }
            (Self::Date32(b), V::Date(days)) => b.append_value(days as i32),
            (Self::Time(b, unit), V::Time(ns)) => {
                let per_unit = match unit {
                    TimeUnit::Second => 1_000_000_000,
                    TimeUnit::Millisecond => 1_000_000,
                    TimeUnit::Microsecond => 1_000,
                    TimeUnit::Nanosecond => 1,
                };
                // The column's unit holds every digit of its scale: nothing is lost.
                b.append_value((ns / per_unit) as i64);
            }
            (
                Self::TimestampMicros {
                    values,
                    below,
                    truncated,
                    offsets,
                    max_ns,
                    ..
                },
                V::Timestamp(ns, offset),
            ) => {
                let (micros, rest) = (ns.div_euclid(1000), ns.rem_euclid(1000));
                if rest != 0 {
                    if *below == SubMicrosecond::Error {
                        return Err(AppendError::SubMicrosecond(format_nanos(ns)));
                    }
                    *truncated += 1;
                }
                *max_ns = Some(max_ns.map_or(ns, |m| m.max(ns)));
                push_offset(offsets.as_mut(), offset);
                values.append_value(
                    i64::try_from(micros).expect("years 1..9999 fit in microseconds"),
                );
            }
            (
                Self::TimestampNanos {
                    values, offsets, ..
                },
                V::Timestamp(ns, offset),
            ) => {
                let ns = i64::try_from(ns)
                    .map_err(|_| AppendError::OutsideNanoseconds(format_nanos(ns)))?;
                push_offset(offsets.as_mut(), offset);
                values.append_value(ns);
            }
            (Self::TimestampMicros { .. } | Self::TimestampNanos { .. }, other) => {
                return Err(AppendError::NotDateTime(format!("{other:?}")));
            }
            (Self::Utf8(b), V::Str(v)) => b.append_value(v),
            (Self::Utf8(b), V::Guid(g)) => {
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                b.append_value(&*g.as_hyphenated().encode_upper(&mut text));
            }
            (Self::Binary(b), V::Bytes(v)) => b.append_value(v),
            (builder, value) => {
                return Err(AppendError::Mismatch {
                    value: format!("{value:?}"),
                    column: builder.kind(),
                });
            }
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Boolean(_) => "bit",
            Self::Int16(_) => "smallint",
            Self::Int32(_) => "int",
            Self::Int64(_) => "bigint",
            Self::Float32(_) => "real",
            Self::Float64(_) => "float",
            Self::Decimal(..) => "decimal",
            Self::Date32(_) => "date",
            Self::Time(..) => "time",
            Self::TimestampMicros { .. } | Self::TimestampNanos { .. } => "datetime",
            Self::Utf8(_) => "string",
            Self::Binary(_) => "binary",
        }
    }

    /// The highest value so far of a microsecond timestamp column, with the digits it dropped
    /// (an incremental watermark must not lose them).
    pub fn max_nanos(&self) -> Option<i128> {
        match self {
            Self::TimestampMicros { max_ns, .. } => *max_ns,
            _ => None,
        }
    }

    /// Values so far whose digits below the microsecond were dropped.
    pub fn truncated(&self) -> u64 {
        match self {
            Self::TimestampMicros { truncated, .. } => *truncated,
            _ => 0,
        }
    }

    /// Appends the column's values so far (and its offsets column, if kept) to `out`; the
    /// builder is reset.
    pub fn finish_into(&mut self, out: &mut Vec<ArrayRef>) {
        let array: ArrayRef = match self {
            Self::Boolean(b) => Arc::new(b.finish()),
            Self::Int16(b) => Arc::new(b.finish()),
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Float32(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Decimal(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .expect("precision and scale come from the server"),
            ),
            Self::Date32(b) => Arc::new(b.finish()),
            Self::Time(b, unit) => {
                let values = b.finish();
                let narrow = || values.iter().map(|v| v.map(|v| v as i32));
                match unit {
                    TimeUnit::Second => Arc::new(narrow().collect::<Time32SecondArray>()),
                    TimeUnit::Millisecond => Arc::new(narrow().collect::<Time32MillisecondArray>()),
                    TimeUnit::Microsecond => {
                        Arc::new(values.iter().collect::<Time64MicrosecondArray>())
                    }
                    TimeUnit::Nanosecond => {
                        Arc::new(values.iter().collect::<Time64NanosecondArray>())
                    }
                }
            }
            Self::TimestampMicros {
                values,
                tz,
                offsets,
                ..
            } => {
                out.push(Arc::new(values.finish().with_timezone_opt(tz.clone())));
                if let Some(offsets) = offsets {
                    out.push(Arc::new(offsets.finish()));
                }
                return;
            }
            Self::TimestampNanos {
                values,
                tz,
                offsets,
            } => {
                out.push(Arc::new(values.finish().with_timezone_opt(tz.clone())));
                if let Some(offsets) = offsets {
                    out.push(Arc::new(offsets.finish()));
                }
                return;
            }
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::Binary(b) => Arc::new(b.finish()),
        };
        out.push(array);
    }
}

/// Truncation counts per column name of a set of builders.
pub fn truncated_by_column(
    names: impl Iterator<Item = String>,
    columns: &[ColumnBuilder],
) -> BTreeMap<String, u64> {
    names
        .zip(columns)
        .filter(|(_, c)| c.truncated() > 0)
        .map(|(name, c)| (name, c.truncated()))
        .collect()
}

fn push_offset(offsets: Option<&mut Int16Builder>, offset: Option<i16>) {
    if let Some(offsets) = offsets {
        offsets.append_option(offset);
    }
}

/// `YYYY-MM-DD HH:MM:SS.fffffff` of nanoseconds since 1970 (as SQL Server parses `datetime2`).
pub fn format_nanos(ns: i128) -> String {
    const DAY: i128 = 86_400_000_000_000;
    let (days, rest) = (ns.div_euclid(DAY), ns.rem_euclid(DAY));
    let date = chrono::NaiveDate::from_num_days_from_ce_opt(
        (days + i128::from(DAYS_0001_TO_1970) + 1) as i32,
    );
    let secs = rest / 1_000_000_000;
    match date {
        Some(d) => format!(
            "{d} {:02}:{:02}:{:02}.{:07}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60,
            (rest % 1_000_000_000) / 100
        ),
        None => format!("{ns} ns since 1970"),
    }
}

fn rescale(value: i128, from: i8, to: i8) -> i128 {
    match to - from {
        0 => value,
        d if d > 0 => value * 10i128.pow(d as u32),
        d => value / 10i128.pow((-d) as u32),
    }
}

fn time_nanos(t: tiberius::time::Time) -> u64 {
    t.increments() * 10u64.pow(9u32.saturating_sub(u32::from(t.scale())))
}

const DAY_NS: i128 = 86_400_000_000_000;

/// Nanoseconds since 1970-01-01 of a `datetime2` (UTC for a `datetimeoffset`).
fn datetime2_nanos(dt: tiberius::time::DateTime2) -> i128 {
    date_time_nanos(dt.date().days(), time_nanos(dt.time()))
}

/// Nanoseconds since 1970-01-01 of a day since 0001-01-01 and nanoseconds since midnight.
pub fn date_time_nanos(days_since_0001: u32, nanos: u64) -> i128 {
    (i128::from(days_since_0001) - i128::from(DAYS_0001_TO_1970)) * DAY_NS + i128::from(nanos)
}

/// Nanoseconds since 1970-01-01 of a `datetime`: days since 1900 and 1/300 s ticks, rounded to
/// the millisecond as SQL Server shows them (.997, not .99667).
pub fn datetime_nanos(days_since_1900: i32, ticks: u32) -> i128 {
    let millis = (i128::from(ticks) * 1000 + 150) / 300;
    (i128::from(days_since_1900) - i128::from(DAYS_1900_TO_1970)) * DAY_NS + millis * 1_000_000
}

/// Nanoseconds since 1970-01-01 of a `smalldatetime`: days since 1900 and minutes.
pub fn smalldatetime_nanos(days_since_1900: u16, minutes: u16) -> i128 {
    (i128::from(days_since_1900) - i128::from(DAYS_1900_TO_1970)) * DAY_NS
        + i128::from(minutes) * 60_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Array, AsArray};
    use deltalake::arrow::datatypes::TimestampMicrosecondType;
    use tiberius::time::{Date, DateTime2, Time};

    const T: SubMicrosecond = SubMicrosecond::Truncate;

    #[test]
    fn maps_type_names() {
        assert_eq!(
            arrow_type("decimal(18,4)", T),
            Ok(DataType::Decimal128(18, 4))
        );
        assert_eq!(
            arrow_type("NUMERIC(38, 10)", T),
            Ok(DataType::Decimal128(38, 10))
        );
        assert_eq!(
            arrow_type("datetime2(7)", T),
            Ok(DataType::Timestamp(TimeUnit::Microsecond, None))
        );
        assert_eq!(
            arrow_type("datetime2(7)", SubMicrosecond::Nanoseconds),
            Ok(DataType::Timestamp(TimeUnit::Nanosecond, None))
        );
        assert_eq!(
            arrow_type("datetimeoffset(3)", SubMicrosecond::Nanoseconds),
            Ok(DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into())
            ))
        );
        assert_eq!(arrow_type("tinyint", T), Ok(DataType::Int16));
        assert_eq!(
            arrow_type("time(0)", T),
            Ok(DataType::Time32(TimeUnit::Second))
        );
        assert_eq!(
            arrow_type("time", T),
            Ok(DataType::Time64(TimeUnit::Nanosecond))
        );
        assert_eq!(arrow_type("nvarchar(max)", T), Ok(DataType::Utf8));
        assert_eq!(arrow_type("varbinary(16)", T), Ok(DataType::Binary));
        assert_eq!(arrow_type("float", T), Ok(DataType::Float64));
        assert_eq!(arrow_type("money", T), Ok(DataType::Decimal128(19, 4)));
        for (name, cast) in [
            ("geography", "STAsText()"),
            ("hierarchyid", "ToString()"),
            ("sql_variant", "CAST(col AS"),
        ] {
            let hint = arrow_type(name, T).unwrap_err().to_string();
            assert!(hint.contains(cast), "{name}: {hint}");
        }
    }

    fn datetime2(days_since_0001: u32, increments: u64) -> ColumnData<'static> {
        ColumnData::DateTime2(Some(DateTime2::new(
            Date::new(days_since_0001),
            Time::new(increments, 7),
        )))
    }

    #[test]
    fn datetime2_covers_the_whole_range_in_microseconds() {
        let micros = DataType::Timestamp(TimeUnit::Microsecond, None);
        let mut b = ColumnBuilder::new(&micros, 4, T, false);
        // 0001-01-01 00:00:00, 9999-12-31 23:59:59.9999999, 1970-01-02 00:00:00.0000001, NULL
        b.append(datetime2(0, 0)).unwrap();
        b.append(datetime2(3_652_058, 863_999_999_999)).unwrap();
        b.append(datetime2(DAYS_0001_TO_1970 as u32 + 1, 1))
            .unwrap();
        b.append(ColumnData::DateTime2(None)).unwrap();
        assert_eq!(b.truncated(), 2);
        let mut out = Vec::new();
        b.finish_into(&mut out);
        let a = out[0].as_primitive::<TimestampMicrosecondType>();
        assert_eq!(a.value(0), -DAYS_0001_TO_1970 * 86_400_000_000);
        assert_eq!(a.value(1), 253_402_300_799_999_999);
        assert_eq!(a.value(2), 86_400_000_000);
        assert!(a.is_null(3));

        let mut strict = ColumnBuilder::new(&micros, 1, SubMicrosecond::Error, false);
        strict.append(datetime2(0, 10)).unwrap();
        let e = strict.append(datetime2(0, 11)).unwrap_err().to_string();
        assert!(e.contains("0001-01-01 00:00:00.0000011"), "{e}");

        let mut nanos = ColumnBuilder::new(
            &DataType::Timestamp(TimeUnit::Nanosecond, None),
            1,
            SubMicrosecond::Nanoseconds,
            false,
        );
        let e = nanos.append(datetime2(0, 0)).unwrap_err().to_string();
        assert!(e.contains("1677..2262"), "{e}");
    }
}
