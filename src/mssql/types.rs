//! SQL Server column types and their Arrow equivalents, and decoding of tiberius values into Arrow.
//! The mapping keeps every value exact; where Arrow has no exact type it says so below.
//!
//! | SQL Server                              | Arrow                        | notes |
//! |-----------------------------------------|------------------------------|-------|
//! | bit                                     | Boolean                      | |
//! | tinyint / smallint / int / bigint       | UInt8 / Int16 / Int32 / Int64| |
//! | real / float                            | Float32 / Float64            | |
//! | decimal(p,s), numeric(p,s)              | Decimal128(p,s)              | |
//! | money / smallmoney                      | Decimal128(19,4) / (10,4)    | tiberius reads money as f64, rounded back to 4 decimals: exact up to 15 significant digits (±99,999,999,999.9999); CAST larger amounts to decimal(19,4) in the query |
//! | date                                    | Date32                       | |
//! | time(n)                                 | Time64(ns)                   | |
//! | datetime, smalldatetime                 | Timestamp(µs)                | datetime's 1/300 s ticks rounded to the millisecond, as SQL Server displays them |
//! | datetime2(0..6) / datetime2(7)          | Timestamp(µs) / Timestamp(ns)| ns covers 1677..2262; other years are an error naming the column |
//! | datetimeoffset(n)                       | Timestamp(µs or ns, "+00:00")| normalised to UTC |
//! | char, varchar, nchar, nvarchar, text, ntext (incl. max), xml | Utf8 | |
//! | binary, varbinary (incl. max), image    | Binary                       | |
//! | uniqueidentifier                        | Utf8                         | canonical upper-case form |
//!
//! NULL is accepted in every column.

use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    Time64NanosecondBuilder, TimestampMicrosecondBuilder, TimestampNanosecondBuilder, UInt8Builder,
};
use deltalake::arrow::datatypes::{DataType, TimeUnit};
use tiberius::ColumnData;

/// Days from 0001-01-01 to 1970-01-01.
const DAYS_0001_TO_1970: i64 = 719_162;
/// Days from 1900-01-01 to 1970-01-01.
const DAYS_1900_TO_1970: i64 = 25_567;

/// Arrow type of a SQL Server type name as `sp_describe_first_result_set` spells it
/// (`decimal(18,4)`, `datetime2(7)`, `nvarchar(max)`), or `None` if it is not supported.
pub fn arrow_type(system_type_name: &str) -> Option<DataType> {
    let lower = system_type_name.trim().to_ascii_lowercase();
    let (base, args) = match lower.split_once('(') {
        Some((b, rest)) => (b.trim(), rest.trim_end_matches(')').trim()),
        None => (lower.as_str(), ""),
    };
    let nums: Vec<u8> = args
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    let utc: Arc<str> = Arc::from("+00:00");
    Some(match base {
        "bit" => DataType::Boolean,
        "tinyint" => DataType::UInt8,
        "smallint" => DataType::Int16,
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
        "time" => DataType::Time64(TimeUnit::Nanosecond),
        "datetime" | "smalldatetime" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "datetime2" => DataType::Timestamp(precision_unit(nums.first().copied()), None),
        "datetimeoffset" => DataType::Timestamp(precision_unit(nums.first().copied()), Some(utc)),
        "char" | "varchar" | "nchar" | "nvarchar" | "text" | "ntext" | "xml" | "sysname"
        | "uniqueidentifier" => DataType::Utf8,
        "binary" | "varbinary" | "image" | "timestamp" | "rowversion" => DataType::Binary,
        _ => return None,
    })
}

fn precision_unit(n: Option<u8>) -> TimeUnit {
    match n {
        Some(n) if n <= 6 => TimeUnit::Microsecond,
        _ => TimeUnit::Nanosecond,
    }
}

/// Arrow builder for one column, fed with tiberius values.
pub enum ColumnBuilder {
    Boolean(BooleanBuilder),
    UInt8(UInt8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Date32(Date32Builder),
    Time64(Time64NanosecondBuilder),
    TimestampMicros(TimestampMicrosecondBuilder, Option<Arc<str>>),
    TimestampNanos(TimestampNanosecondBuilder, Option<Arc<str>>),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
}

impl ColumnBuilder {
    /// A builder for an Arrow type produced by [`arrow_type`].
    pub fn new(data_type: &DataType, capacity: usize) -> Self {
        match data_type {
            DataType::Boolean => Self::Boolean(BooleanBuilder::with_capacity(capacity)),
            DataType::UInt8 => Self::UInt8(UInt8Builder::with_capacity(capacity)),
            DataType::Int16 => Self::Int16(Int16Builder::with_capacity(capacity)),
            DataType::Int32 => Self::Int32(Int32Builder::with_capacity(capacity)),
            DataType::Int64 => Self::Int64(Int64Builder::with_capacity(capacity)),
            DataType::Float32 => Self::Float32(Float32Builder::with_capacity(capacity)),
            DataType::Float64 => Self::Float64(Float64Builder::with_capacity(capacity)),
            DataType::Decimal128(p, s) => {
                Self::Decimal(Decimal128Builder::with_capacity(capacity), *p, *s)
            }
            DataType::Date32 => Self::Date32(Date32Builder::with_capacity(capacity)),
            DataType::Time64(_) => Self::Time64(Time64NanosecondBuilder::with_capacity(capacity)),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => Self::TimestampMicros(
                TimestampMicrosecondBuilder::with_capacity(capacity),
                tz.clone(),
            ),
            DataType::Timestamp(_, tz) => Self::TimestampNanos(
                TimestampNanosecondBuilder::with_capacity(capacity),
                tz.clone(),
            ),
            DataType::Binary => Self::Binary(BinaryBuilder::with_capacity(capacity, 0)),
            _ => Self::Utf8(StringBuilder::with_capacity(capacity, capacity * 16)),
        }
    }

    /// Appends one value; a value of an unexpected kind is an error message.
    pub fn append(&mut self, value: ColumnData<'_>) -> Result<(), String> {
        use ColumnData as C;
        match (self, value) {
            (Self::Boolean(b), C::Bit(v)) => b.append_option(v),
            (Self::UInt8(b), C::U8(v)) => b.append_option(v),
            (Self::Int16(b), C::I16(v)) => b.append_option(v),
            (Self::Int32(b), C::I32(v)) => b.append_option(v),
            (Self::Int64(b), C::I64(v)) => b.append_option(v),
            (Self::Float32(b), C::F32(v)) => b.append_option(v),
            (Self::Float64(b), C::F64(v)) => b.append_option(v),
            (Self::Float64(b), C::F32(v)) => b.append_option(v.map(f64::from)),
            (Self::Decimal(b, _, s), C::Numeric(v)) => {
                b.append_option(v.map(|n| rescale(n.value(), n.scale() as i8, *s)))
            }
            (Self::Decimal(b, _, s), C::F64(v)) => {
                b.append_option(v.map(|f| (f * 10f64.powi(i32::from(*s))).round() as i128))
            }
            (Self::Date32(b), C::Date(v)) => {
                b.append_option(v.map(|d| (i64::from(d.days()) - DAYS_0001_TO_1970) as i32))
            }
            (Self::Time64(b), C::Time(v)) => b.append_option(v.map(|t| time_nanos(t) as i64)),
            (Self::TimestampMicros(b, _), v) => b.append_option(timestamp_nanos(&v)?.map(|ns| {
                // Round to the microsecond (datetime ticks are 1/300 s).
                (ns as f64 / 1000.0).round() as i64
            })),
            (Self::TimestampNanos(b, _), v) => match timestamp_nanos(&v)? {
                None => b.append_null(),
                Some(ns) => b.append_value(i64::try_from(ns).map_err(|_| {
                    "timestamp outside 1677..2262 cannot be held in nanoseconds".to_string()
                })?),
            },
            (Self::Utf8(b), C::String(v)) => b.append_option(v.as_deref()),
            (Self::Utf8(b), C::Guid(v)) => {
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                b.append_option(v.map(|g| &*g.as_hyphenated().encode_upper(&mut text)))
            }
            (Self::Utf8(b), C::Xml(v)) => b.append_option(v.map(|x| x.to_string())),
            (Self::Binary(b), C::Binary(v)) => b.append_option(v.as_deref()),
            (builder, value) => {
                return Err(format!(
                    "value {value:?} does not match the described column type ({})",
                    builder.kind()
                ));
            }
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Boolean(_) => "bit",
            Self::UInt8(_) => "tinyint",
            Self::Int16(_) => "smallint",
            Self::Int32(_) => "int",
            Self::Int64(_) => "bigint",
            Self::Float32(_) => "real",
            Self::Float64(_) => "float",
            Self::Decimal(..) => "decimal",
            Self::Date32(_) => "date",
            Self::Time64(_) => "time",
            Self::TimestampMicros(..) | Self::TimestampNanos(..) => "datetime",
            Self::Utf8(_) => "string",
            Self::Binary(_) => "binary",
        }
    }

    /// The column's values so far; the builder is reset.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Boolean(b) => Arc::new(b.finish()),
            Self::UInt8(b) => Arc::new(b.finish()),
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
            Self::Time64(b) => Arc::new(b.finish()),
            Self::TimestampMicros(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
            Self::TimestampNanos(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::Binary(b) => Arc::new(b.finish()),
        }
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

/// Nanoseconds since 1970-01-01 (UTC for datetimeoffset) of any date-time value.
fn timestamp_nanos(value: &ColumnData<'_>) -> Result<Option<i128>, String> {
    const DAY: i128 = 86_400_000_000_000;
    Ok(match value {
        ColumnData::DateTime2(v) => v.map(|dt| {
            (i128::from(dt.date().days()) - i128::from(DAYS_0001_TO_1970)) * DAY
                + i128::from(time_nanos(dt.time()))
        }),
        ColumnData::DateTimeOffset(v) => v.map(|dto| {
            let dt = dto.datetime2();
            (i128::from(dt.date().days()) - i128::from(DAYS_0001_TO_1970)) * DAY
                + i128::from(time_nanos(dt.time()))
        }),
        ColumnData::DateTime(v) => v.map(|dt| {
            // 1/300 s ticks, rounded to the millisecond as SQL Server shows them (.997, not .99667).
            let millis = (i128::from(dt.seconds_fragments()) * 1000 + 150) / 300;
            (i128::from(dt.days()) - i128::from(DAYS_1900_TO_1970)) * DAY + millis * 1_000_000
        }),
        ColumnData::SmallDateTime(v) => v.map(|dt| {
            (i128::from(dt.days()) - i128::from(DAYS_1900_TO_1970)) * DAY
                + i128::from(dt.seconds_fragments()) * 60_000_000_000
        }),
        other => return Err(format!("value {other:?} is not a date-time")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_type_names() {
        assert_eq!(
            arrow_type("decimal(18,4)"),
            Some(DataType::Decimal128(18, 4))
        );
        assert_eq!(
            arrow_type("NUMERIC(38, 10)"),
            Some(DataType::Decimal128(38, 10))
        );
        assert_eq!(
            arrow_type("datetime2(7)"),
            Some(DataType::Timestamp(TimeUnit::Nanosecond, None))
        );
        assert_eq!(
            arrow_type("datetime2(3)"),
            Some(DataType::Timestamp(TimeUnit::Microsecond, None))
        );
        assert_eq!(arrow_type("nvarchar(max)"), Some(DataType::Utf8));
        assert_eq!(arrow_type("varbinary(16)"), Some(DataType::Binary));
        assert_eq!(arrow_type("float"), Some(DataType::Float64));
        assert_eq!(arrow_type("money"), Some(DataType::Decimal128(19, 4)));
        assert_eq!(arrow_type("geography"), None);
    }

    #[test]
    fn decodes_dates_exactly() {
        use deltalake::arrow::array::Array;
        use tiberius::time::{Date, DateTime2, Time};
        let mut b = ColumnBuilder::new(&DataType::Timestamp(TimeUnit::Nanosecond, None), 1);
        // 1970-01-02 00:00:00.0000001
        let v = DateTime2::new(Date::new(DAYS_0001_TO_1970 as u32 + 1), Time::new(1, 7));
        b.append(ColumnData::DateTime2(Some(v))).unwrap();
        b.append(ColumnData::DateTime2(None)).unwrap();
        let a = b.finish();
        let a = a
            .as_any()
            .downcast_ref::<deltalake::arrow::array::TimestampNanosecondArray>()
            .unwrap();
        assert_eq!(a.value(0), 86_400_000_000_000 + 100);
        assert!(a.is_null(1));
    }
}
