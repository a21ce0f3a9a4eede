//! The output type policy: which Arrow types reach a Parquet file or a Delta table that Databricks
//! (Spark) reads, and how every other Arrow type is converted or refused. The `volume` and `delta`
//! sinks plan an [`OutputSchema`] from their input schema before anything is staged (a type
//! Databricks cannot read fails there, naming the column and the cast to use) and convert every
//! batch through it.
//!
//! | input Arrow type | written as | Parquet | Databricks sees | loss |
//! |---|---|---|---|---|
//! | Boolean, Int8/16/32/64, Float32/64, Utf8, Binary, Date32 | same | BOOLEAN, INT32/64, FLOAT/DOUBLE, STRING, BINARY, DATE | BOOLEAN, TINYINT..BIGINT, FLOAT/DOUBLE, STRING, BINARY, DATE | none |
//! | UInt8 / UInt16 / UInt32 / UInt64 | Int16 / Int32 / Int64 / Decimal128(20,0) | signed | SMALLINT / INT / BIGINT / DECIMAL(20,0) | none |
//! | Float16 | Float32 | FLOAT | FLOAT | none |
//! | Decimal32/64/128/256 with precision ≤ 38 | Decimal128(p,s) | DECIMAL(p,s) | DECIMAL(p,s) | none (more digits: refused) |
//! | LargeUtf8, Utf8View / LargeBinary, BinaryView, FixedSizeBinary | Utf8 / Binary | STRING / BINARY | STRING / BINARY | none |
//! | Dictionary of any of these | its value type | | | none |
//! | Date64 | Date32 | DATE | DATE | none (Date64 holds whole days) |
//! | Timestamp(s or ms or µs), no time zone | Timestamp(µs) | INT64 TIMESTAMP(MICROS, false) | TIMESTAMP_NTZ | none |
//! | Timestamp(s or ms or µs), any time zone | Timestamp(µs, "UTC") | INT64 TIMESTAMP(MICROS, true) | TIMESTAMP | none (Arrow holds instants; the zone name is not kept) |
//! | Timestamp(ns) | Timestamp(µs) | as above | as above | [`SubMicrosecond`]: digits below the µs truncated and counted (default), refused, or kept (`nanoseconds`, volume only: Spark cannot read it) |
//! | Time32/Time64 | Utf8 `HH:MM:SS[.f]` (s: no fraction, ms: 3, µs: 6, ns: 7 digits, 9 when a value has finer digits) | STRING | STRING | none; Spark and Delta have no time-of-day type |
//! | List, Struct, Map of types written as they are | same | nested | ARRAY, STRUCT, MAP | none |
//! | Null, Duration, Interval, Union, nested types needing a conversion | refused at prepare time, naming the column and the cast to use | | | |

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringBuilder, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::{CastOptions, cast_with_options};
use deltalake::arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampNanosecondType,
};
use deltalake::arrow::error::ArrowError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The time zone of every timestamp written with one (Delta and Spark expect `UTC`).
pub const UTC: &str = "UTC";

/// What a sink does with timestamp digits below the microsecond (SQL Server `datetime2(7)` has
/// 100 ns ticks; Databricks timestamps are microseconds).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SubMicrosecond {
    /// Drop them; the run summary, `--output json` and `_SUCCESS` count the values changed per
    /// column.
    #[default]
    Truncate,
    /// Fail the run at the first value that has them, naming its column and row.
    Error,
    /// Keep nanosecond timestamps (volume sink only; years 1677..2262 only). Spark cannot read
    /// them: only for other readers.
    Nanoseconds,
}

/// What an output is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Parquet files in a folder or volume.
    Parquet,
    /// A Delta table.
    Delta,
}

/// Why an output cannot be written for Databricks.
#[derive(Debug, thiserror::Error)]
pub enum OutputTypeError {
    /// A column's type has no Databricks equivalent.
    #[error(
        "step `{step}`: column `{column}` has type {data_type}, which Databricks cannot read; {reason}"
    )]
    Unsupported {
        step: String,
        column: String,
        data_type: String,
        /// Why, and what to do instead.
        reason: Box<Unreadable>,
    },
    /// A value has digits below the microsecond and the sink refuses to drop them.
    #[error(
        "step `{step}`: column `{column}` row {row}: {value} has digits below the microsecond, which \
         `sub_microsecond: error` refuses; set `sub_microsecond: truncate` (the default) to drop \
         and count them, or round the column in a transform"
    )]
    SubMicrosecond {
        step: String,
        column: String,
        row: u64,
        value: String,
    },
    /// `sub_microsecond: nanoseconds` on a sink that cannot hold nanoseconds.
    #[error(
        "step `{step}`: `sub_microsecond: nanoseconds` is not possible for a Delta table (Delta \
         timestamps are microseconds); use `truncate` or `error`"
    )]
    NanosecondsInDelta { step: String },
    /// Converting a batch failed.
    #[error("step `{step}`: converting column `{column}` for Databricks: {source}")]
    Convert {
        step: String,
        column: String,
        #[source]
        source: ArrowError,
    },
}

/// Why Databricks cannot read a type; each says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("Databricks decimals hold at most 38 digits: CAST it to DECIMAL(38, s) or to a string")]
    WideDecimal,
    #[error("decode the dictionary in a transform first")]
    Dictionary,
    #[error("give it a type: CAST(NULL AS <type>) in the query or transform")]
    Null,
    #[error("CAST it to BIGINT (a count of its unit) in a transform")]
    Duration,
    #[error("CAST it to a string in a transform")]
    Interval,
    #[error("CAST it to a string, a number or binary in the query or a transform")]
    Other,
    /// A nested field that would have to change type (nested fields are written as they are).
    #[error(
        "its field `{field}` ({from}) would have to become {to}; select it as a column of its own \
         or CAST it in a transform"
    )]
    NestedConversion {
        field: String,
        from: String,
        to: String,
    },
    /// A nested field of a type Databricks cannot read.
    #[error("its field `{field}` has type {data_type}: {reason}")]
    Nested {
        field: String,
        data_type: String,
        reason: Box<Unreadable>,
    },
}

/// Values per column whose digits below the microsecond were dropped.
pub type Counts = BTreeMap<String, u64>;

/// What a run dropped below the microsecond, per step and column: sources (SQL Server
/// `datetime2(7)`) and sinks (nanosecond inputs) record here; the run summary and each volume
/// folder's `_SUCCESS` report it. Each reader records the totals of one stream under its own
/// key (a partition, an attempt), replacing what an earlier scan of the same stream recorded, so
/// a step scanned twice or a sink retried is not counted twice.
#[derive(Debug, Default)]
pub struct Truncations {
    by_step: std::sync::Mutex<BTreeMap<String, BTreeMap<usize, Counts>>>,
    /// The sources each sink reads, through any transforms.
    upstream: BTreeMap<String, Vec<String>>,
}

impl Truncations {
    /// A registry for a run whose sinks read these sources.
    pub fn new(upstream: BTreeMap<String, Vec<String>>) -> Self {
        Truncations {
            by_step: Default::default(),
            upstream,
        }
    }

    /// Records the counts of one stream (`key`: a partition index) of a step.
    pub fn set(&self, step: &str, key: usize, counts: &BTreeMap<String, u64>) {
        let mut by_step = self.by_step.lock().expect("truncations lock");
        let streams = by_step.entry(step.to_string()).or_default();
        if counts.is_empty() {
            streams.remove(&key);
        } else {
            streams.insert(key, counts.clone());
        }
    }

    /// Values truncated per column by a step itself.
    pub fn of(&self, step: &str) -> BTreeMap<String, u64> {
        let by_step = self.by_step.lock().expect("truncations lock");
        let mut total = BTreeMap::new();
        for counts in by_step.get(step).into_iter().flat_map(|s| s.values()) {
            for (column, n) in counts {
                *total.entry(column.clone()).or_insert(0) += n;
            }
        }
        total
    }

    /// Values truncated for what a sink wrote, keyed `step.column`: by the sink and by the
    /// sources it reads.
    pub fn for_output(&self, sink: &str) -> BTreeMap<String, u64> {
        let mut steps: Vec<&str> = vec![sink];
        steps.extend(
            self.upstream
                .get(sink)
                .into_iter()
                .flatten()
                .map(String::as_str),
        );
        steps
            .into_iter()
            .flat_map(|step| {
                self.of(step)
                    .into_iter()
                    .map(move |(column, n)| (format!("{step}.{column}"), n))
            })
            .collect()
    }
}

/// How one column is converted.
#[derive(Debug, Clone)]
enum Convert {
    Keep,
    /// An exact Arrow cast.
    Cast(DataType),
    /// Nanoseconds to microseconds, counting (or refusing) values with finer digits.
    Micros {
        tz: Option<Arc<str>>,
        refuse: bool,
    },
    /// A time of day as text.
    TimeText,
}

/// The file schema of a sink's input and the conversion of its batches.
#[derive(Debug)]
pub struct OutputSchema {
    step: String,
    output: SchemaRef,
    columns: Vec<Convert>,
    rows_seen: u64,
    truncated: BTreeMap<String, u64>,
}

impl OutputSchema {
    /// Plans the file schema of `input` for `target`; every column Databricks could not read is
    /// refused here, before anything is written.
    pub fn plan(
        step: &str,
        input: &Schema,
        target: Target,
        sub_microsecond: SubMicrosecond,
    ) -> Result<Self, OutputTypeError> {
        if target == Target::Delta && sub_microsecond == SubMicrosecond::Nanoseconds {
            return Err(OutputTypeError::NanosecondsInDelta {
                step: step.to_string(),
            });
        }
        let mut fields = Vec::with_capacity(input.fields().len());
        let mut columns = Vec::with_capacity(input.fields().len());
        for field in input.fields() {
            let (data_type, convert) =
                column_type(field.data_type(), sub_microsecond).map_err(|reason| {
                    OutputTypeError::Unsupported {
                        step: step.to_string(),
                        column: field.name().clone(),
                        data_type: field.data_type().to_string(),
                        reason: Box::new(reason),
                    }
                })?;
            fields.push(
                Field::new(field.name(), data_type, field.is_nullable())
                    .with_metadata(field.metadata().clone()),
            );
            columns.push(convert);
        }
        Ok(OutputSchema {
            step: step.to_string(),
            output: Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())),
            columns,
            rows_seen: 0,
            truncated: BTreeMap::new(),
        })
    }

    /// The same conversion with its counts at zero (for another stream).
    pub fn fresh(&self) -> Self {
        OutputSchema {
            step: self.step.clone(),
            output: Arc::clone(&self.output),
            columns: self.columns.clone(),
            rows_seen: 0,
            truncated: BTreeMap::new(),
        }
    }

    /// The schema of what is written.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    /// Values per column whose digits below the microsecond were dropped so far.
    pub fn truncated(&self) -> &BTreeMap<String, u64> {
        &self.truncated
    }

    /// Converts one batch of the input into the file schema.
    pub fn convert(&mut self, batch: &RecordBatch) -> Result<RecordBatch, OutputTypeError> {
        let mut arrays = Vec::with_capacity(batch.num_columns());
        for (i, convert) in self.columns.iter().enumerate() {
            let column = batch.column(i);
            let name = self.output.field(i).name();
            let fail = |source| OutputTypeError::Convert {
                step: self.step.clone(),
                column: name.clone(),
                source,
            };
            arrays.push(match convert {
                Convert::Keep => Arc::clone(column),
                Convert::Cast(to) => cast_with_options(column, to, &EXACT).map_err(fail)?,
                Convert::TimeText => time_text(column).map_err(fail)?,
                Convert::Micros { tz, refuse } => {
                    let nanos = column.as_primitive::<TimestampNanosecondType>();
                    let (micros, dropped) = to_micros(nanos, tz.clone());
                    if let Some(first) = dropped.first {
                        if *refuse {
                            return Err(OutputTypeError::SubMicrosecond {
                                step: self.step.clone(),
                                column: name.clone(),
                                row: self.rows_seen + first as u64 + 1,
                                value: format_nanos(nanos.value(first)),
                            });
                        }
                        *self.truncated.entry(name.clone()).or_default() += dropped.count;
                    }
                    Arc::new(micros)
                }
            });
        }
        self.rows_seen += batch.num_rows() as u64;
        RecordBatch::try_new(Arc::clone(&self.output), arrays).map_err(|source| {
            OutputTypeError::Convert {
                step: self.step.clone(),
                column: "*".into(),
                source,
            }
        })
    }
}

/// Casts that never lose a value silently (an overflow is an error).
const EXACT: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: deltalake::arrow::util::display::FormatOptions::new(),
};

/// The written type of an input type and how to get there, or why it is refused (the cast to use).
fn column_type(
    data_type: &DataType,
    sub_microsecond: SubMicrosecond,
) -> Result<(DataType, Convert), Unreadable> {
    use DataType as T;
    let cast = |to: DataType| Ok((to.clone(), Convert::Cast(to)));
    match data_type {
        T::Boolean
        | T::Int8
        | T::Int16
        | T::Int32
        | T::Int64
        | T::Float32
        | T::Float64
        | T::Utf8
        | T::Binary
        | T::Date32 => Ok((data_type.clone(), Convert::Keep)),
        T::UInt8 => cast(T::Int16),
        T::UInt16 => cast(T::Int32),
        T::UInt32 => cast(T::Int64),
        T::UInt64 => cast(T::Decimal128(20, 0)),
        T::Float16 => cast(T::Float32),
        T::Decimal128(p, _) if *p <= 38 => Ok((data_type.clone(), Convert::Keep)),
        T::Decimal32(p, s) | T::Decimal64(p, s) => cast(T::Decimal128(*p, *s)),
        T::Decimal256(p, s) if *p <= 38 => cast(T::Decimal128(*p, *s)),
        T::Decimal128(..) | T::Decimal256(..) => Err(Unreadable::WideDecimal),
        T::LargeUtf8 | T::Utf8View => cast(T::Utf8),
        T::LargeBinary | T::BinaryView | T::FixedSizeBinary(_) => cast(T::Binary),
        T::Date64 => cast(T::Date32),
        T::Timestamp(unit, tz) => {
            let tz: Option<Arc<str>> = tz.as_ref().map(|_| Arc::from(UTC));
            match (unit, sub_microsecond) {
                (TimeUnit::Nanosecond, SubMicrosecond::Nanoseconds) => {
                    cast(T::Timestamp(TimeUnit::Nanosecond, tz))
                }
                (TimeUnit::Nanosecond, mode) => Ok((
                    T::Timestamp(TimeUnit::Microsecond, tz.clone()),
                    Convert::Micros {
                        tz,
                        refuse: mode == SubMicrosecond::Error,
                    },
                )),
                _ => cast(T::Timestamp(TimeUnit::Microsecond, tz)),
            }
        }
        T::Time32(_) | T::Time64(_) => Ok((T::Utf8, Convert::TimeText)),
        T::Dictionary(_, value) => match column_type(value, sub_microsecond)? {
            (to, Convert::Keep | Convert::Cast(_)) => cast(to),
            _ => Err(Unreadable::Dictionary),
        },
        T::List(child) | T::LargeList(child) | T::FixedSizeList(child, _) => {
            nested(data_type, std::iter::once(child), sub_microsecond)
        }
        T::Struct(children) => nested(data_type, children.iter(), sub_microsecond),
        T::Map(entries, _) => nested(data_type, std::iter::once(entries), sub_microsecond),
        T::Null => Err(Unreadable::Null),
        T::Duration(_) => Err(Unreadable::Duration),
        T::Interval(_) => Err(Unreadable::Interval),
        _ => Err(Unreadable::Other),
    }
}

/// A nested type is written as it is when each of its fields is.
fn nested<'a>(
    data_type: &DataType,
    children: impl Iterator<Item = &'a Arc<Field>>,
    sub_microsecond: SubMicrosecond,
) -> Result<(DataType, Convert), Unreadable> {
    for child in children {
        match column_type(child.data_type(), sub_microsecond) {
            Ok((_, Convert::Keep)) => {}
            Ok((to, _)) => {
                return Err(Unreadable::NestedConversion {
                    field: child.name().clone(),
                    from: child.data_type().to_string(),
                    to: to.to_string(),
                });
            }
            Err(reason) => {
                return Err(Unreadable::Nested {
                    field: child.name().clone(),
                    data_type: child.data_type().to_string(),
                    reason: Box::new(reason),
                });
            }
        }
    }
    Ok((data_type.clone(), Convert::Keep))
}

/// Values whose digits below the microsecond were dropped, and the first of them.
struct Dropped {
    count: u64,
    first: Option<usize>,
}

/// Nanoseconds to microseconds, rounding down (towards the past, also before 1970).
fn to_micros(
    nanos: &deltalake::arrow::array::TimestampNanosecondArray,
    tz: Option<Arc<str>>,
) -> (TimestampMicrosecondArray, Dropped) {
    let mut dropped = Dropped {
        count: 0,
        first: None,
    };
    let values: Vec<i64> = nanos
        .values()
        .iter()
        .enumerate()
        .map(|(i, &ns)| {
            if ns.rem_euclid(1000) != 0 && nanos.is_valid(i) {
                dropped.count += 1;
                dropped.first.get_or_insert(i);
            }
            ns.div_euclid(1000)
        })
        .collect();
    let micros =
        TimestampMicrosecondArray::new(values.into(), nanos.nulls().cloned()).with_timezone_opt(tz);
    (micros, dropped)
}

/// `YYYY-MM-DD HH:MM:SS.fffffffff` of nanoseconds since 1970.
fn format_nanos(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| format!("{}.{frac:09}", t.naive_utc().format("%Y-%m-%d %H:%M:%S")))
        .unwrap_or_else(|| format!("{ns} ns"))
}

/// A time-of-day column as fixed-width text.
fn time_text(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    // (value in the column's unit, ticks per second, fraction digits)
    let values: Vec<Option<(i64, i64, usize)>> = match column.data_type() {
        DataType::Time32(TimeUnit::Second) => column
            .as_primitive::<Time32SecondType>()
            .iter()
            .map(|v| v.map(|v| (i64::from(v), 1, 0)))
            .collect(),
        DataType::Time32(_) => column
            .as_primitive::<Time32MillisecondType>()
            .iter()
            .map(|v| v.map(|v| (i64::from(v), 1_000, 3)))
            .collect(),
        DataType::Time64(TimeUnit::Microsecond) => column
            .as_primitive::<Time64MicrosecondType>()
            .iter()
            .map(|v| v.map(|v| (v, 1_000_000, 6)))
            .collect(),
        DataType::Time64(_) => {
            let ns = column.as_primitive::<Time64NanosecondType>();
            // SQL Server's 100 ns ticks need 7 digits; finer values all 9.
            let digits = if ns.iter().flatten().all(|v| v % 100 == 0) {
                7
            } else {
                9
            };
            ns.iter()
                .map(|v| v.map(|v| (v, 1_000_000_000, digits)))
                .collect()
        }
        other => {
            return Err(ArrowError::CastError(format!(
                "{other} is not a time of day"
            )));
        }
    };
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * 16);
    for value in values {
        match value {
            None => out.append_null(),
            Some((v, per_second, digits)) => {
                let secs = v.div_euclid(per_second);
                let frac = v.rem_euclid(per_second);
                let mut text = format!(
                    "{:02}:{:02}:{:02}",
                    secs / 3600,
                    (secs / 60) % 60,
                    secs % 60
                );
                if digits > 0 {
                    let scaled = frac * 10i64.pow(9) / per_second;
                    let nine = format!("{scaled:09}");
                    text.push('.');
                    text.push_str(&nine[..digits]);
                }
                out.append_value(text);
            }
        }
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{
        Int64Array, StringArray, Time64NanosecondArray, TimestampNanosecondArray, UInt8Array,
    };

    fn one(data_type: DataType) -> Schema {
        Schema::new(vec![Field::new("c", data_type, true)])
    }

    #[test]
    fn unsigned_and_nanosecond_types_never_reach_a_file() {
        let input = Schema::new(vec![
            Field::new("u8", DataType::UInt8, true),
            Field::new("u64", DataType::UInt64, true),
            Field::new("ns", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new(
                "tz",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                true,
            ),
            Field::new("t", DataType::Time64(TimeUnit::Nanosecond), true),
        ]);
        let out = OutputSchema::plan("s", &input, Target::Delta, SubMicrosecond::Truncate)
            .unwrap()
            .schema();
        let types: Vec<String> = out
            .fields()
            .iter()
            .map(|f| f.data_type().to_string())
            .collect();
        assert_eq!(
            types,
            [
                "Int16",
                "Decimal128(20, 0)",
                "Timestamp(µs)",
                "Timestamp(µs, \"UTC\")",
                "Utf8"
            ]
        );
    }

    #[test]
    fn refused_types_name_the_column_and_the_cast() {
        for (data_type, hint) in [
            (DataType::Null, "CAST(NULL AS"),
            (DataType::Duration(TimeUnit::Second), "BIGINT"),
            (DataType::Decimal256(60, 2), "38 digits"),
        ] {
            let e = OutputSchema::plan(
                "s",
                &one(data_type),
                Target::Parquet,
                SubMicrosecond::Truncate,
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("column `c`") && e.contains(hint), "{e}");
        }
        let e = OutputSchema::plan(
            "s",
            &one(DataType::Timestamp(TimeUnit::Nanosecond, None)),
            Target::Delta,
            SubMicrosecond::Nanoseconds,
        )
        .unwrap_err();
        assert!(
            matches!(e, OutputTypeError::NanosecondsInDelta { .. }),
            "{e}"
        );
    }

    #[test]
    fn nanoseconds_are_truncated_and_counted_or_refused_with_their_row() {
        let schema = one(DataType::Timestamp(TimeUnit::Nanosecond, None));
        // 1969-12-31 23:59:59.999999999, 1970-01-01 00:00:01.000001, NULL, 00:00:00.0000001
        let values =
            TimestampNanosecondArray::from(vec![Some(-1), Some(1_000_001_000), None, Some(100)]);
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), vec![Arc::new(values)]).unwrap();
        let mut plan =
            OutputSchema::plan("s", &schema, Target::Parquet, SubMicrosecond::Truncate).unwrap();
        let out = plan.convert(&batch).unwrap();
        let micros = out
            .column(0)
            .as_primitive::<deltalake::arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(micros.value(0), -1, "rounded towards the past");
        assert_eq!(micros.value(1), 1_000_001);
        assert!(micros.is_null(2));
        assert_eq!(micros.value(3), 0);
        assert_eq!(plan.truncated().get("c"), Some(&2));

        let mut strict =
            OutputSchema::plan("s", &schema, Target::Parquet, SubMicrosecond::Error).unwrap();
        let batch2 = RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![Arc::new(TimestampNanosecondArray::from(vec![1_000, 2_000]))],
        )
        .unwrap();
        strict.convert(&batch2).unwrap();
        let e = strict.convert(&batch).unwrap_err().to_string();
        assert!(
            e.contains("column `c` row 3") && e.contains("1969-12-31 23:59:59.999999999"),
            "{e}"
        );
    }

    #[test]
    fn times_of_day_become_fixed_width_text() {
        let schema = one(DataType::Time64(TimeUnit::Nanosecond));
        let values = Time64NanosecondArray::from(vec![Some(0), Some(86_399_999_999_900), None]);
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), vec![Arc::new(values)]).unwrap();
        let mut plan =
            OutputSchema::plan("s", &schema, Target::Delta, SubMicrosecond::Truncate).unwrap();
        let out = plan.convert(&batch).unwrap();
        let text = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(text.value(0), "00:00:00.0000000");
        assert_eq!(text.value(1), "23:59:59.9999999");
        assert!(text.is_null(2));
    }

    #[test]
    fn casts_are_exact() {
        let schema = one(DataType::UInt8);
        let batch = RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![Arc::new(UInt8Array::from(vec![0, 255]))],
        )
        .unwrap();
        let mut plan =
            OutputSchema::plan("s", &schema, Target::Parquet, SubMicrosecond::Truncate).unwrap();
        let out = plan.convert(&batch).unwrap();
        let ints = cast_with_options(out.column(0), &DataType::Int64, &EXACT).unwrap();
        let ints = ints.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ints.values(), &[0, 255]);
    }
}
