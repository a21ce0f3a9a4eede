//! Databricks result types to engine types: the output type policy (issue 11) in reverse, for the
//! `databricks` source. Every result column is mapped from what the Statement Execution API says
//! about it (the manifest) and what it sends (ARROW_STREAM chunks or JSON_ARRAY text) to the one
//! Arrow type the DAG sees, chunk by chunk; types the bridge does not read are refused when the
//! source opens, naming the column and the expression to select instead.
//!
//! # What the API sends (researched)
//!
//! - The manifest: `manifest.schema.columns[]` has `name`, `type_text` (upper case:
//!   `BIGINT`, `DECIMAL(10,2)`, `TIMESTAMP_NTZ`, `ARRAY<INT>`, `MAP<STRING, STRING>`, `VOID`,
//!   `INTERVAL DAY TO SECOND`), `type_name` (`LONG`, `BYTE`, `SHORT`, `DECIMAL`, `TIMESTAMP`,
//!   `TIMESTAMP_NTZ`, `VARIANT`, `INTERVAL`, `NULL`...), `position`, `type_precision` and
//!   `type_scale` (DECIMAL), `type_interval_type` (`DAY TO SECOND`). Seen in answers a SQL
//!   warehouse gave, recorded by Databricks' JDBC driver
//!   (<https://github.com/databricks/databricks-jdbc>, `src/test/resources/sqlexecapi/**/mappings`);
//!   the published `type_name` enum (<https://docs.databricks.com/api/workspace/statementexecution/executestatement>,
//!   e.g. <https://databricks.github.io/sdk-js/api/variables/_databricks_sdk-statementexecution.v1.ColumnTypeName.html>)
//!   lacks `TIMESTAMP_NTZ` and `VARIANT`, which the warehouse sends anyway. The JDBC driver notes
//!   that some servers leave `type_name` empty for TIMESTAMP_NTZ and reads `type_text`
//!   (`DatabricksResultSetMetaData.java`); so does this module.
//! - ARROW_STREAM chunks (the recorded chunk files of the same repository,
//!   `src/test/resources/cloudfetchapi/**/mappings`, LZ4 frames decoded and read with arrow-ipc):
//!   TIMESTAMP is `Timestamp(µs, "Etc/UTC")` — the session time zone, `America/Los_Angeles` in a
//!   session that set one; DECIMAL(p,s) is `Decimal128(p,s)`; DATE `Date32`; BINARY `Binary`;
//!   STRING `Utf8` (non-ASCII as is); VARIANT `Utf8` holding the JSON text; VOID `Null`;
//!   `INTERVAL YEAR [TO MONTH]` `Interval(YearMonth)` and day-time intervals `Duration(µs)`;
//!   NOT NULL columns are non-nullable fields. The other types follow Spark's Arrow mapping
//!   (`ArrowUtils.toArrowType`, <https://github.com/apache/spark>,
//!   `sql/api/src/main/scala/org/apache/spark/sql/util/ArrowUtils.scala`): TINYINT `Int8`,
//!   SMALLINT `Int16`, FLOAT `Float32`, TIMESTAMP_NTZ `Timestamp(µs, None)`, ARRAY/MAP/STRUCT as
//!   Arrow List/Map/Struct. The ADBC driver's Statement Execution reader confirms that this API
//!   sends complex types and intervals as native Arrow arrays, unlike the Thrift protocol
//!   (<https://github.com/adbc-drivers/databricks>, `csharp/src/ComplexTypeSerializingStream.cs`,
//!   `csharp/src/IntervalSerializingStream.cs`).
//! - Decimals as text: Databricks' Thrift protocol sends DECIMAL as strings unless
//!   `decimalAsArrow` is asked for, and databricks-sql-python casts every decimal column to
//!   `decimal128(type_precision, type_scale)` whatever arrives
//!   (<https://github.com/databricks/databricks-sql-python>, `convert_decimals_in_arrow_table` in
//!   `src/databricks/sql/utils.py`). This API sends Decimal128; text (or another precision) is
//!   still read, exactly, with the manifest's precision and scale.
//! - JSON_ARRAY (INLINE) text: every value a string; TIMESTAMP with the session offset
//!   (`2021-01-01T10:00:00.000-08:00`, recorded) or `Z`; BINARY base64 (as the JDBC driver
//!   decodes it, `ByteArrayConverter.java`).
//!
//! # The mapping
//!
//! | Databricks (`type_name`) | ARROW_STREAM sends | engine type | JSON_ARRAY text read as |
//! |---|---|---|---|
//! | BOOLEAN | Boolean | Boolean | `true` / `false` |
//! | TINYINT (`BYTE`) | Int8 | Int8 (kept signed, -128..127) | integer |
//! | SMALLINT (`SHORT`), INT, BIGINT (`LONG`) | Int16, Int32, Int64 | same | integer |
//! | FLOAT, DOUBLE | Float32, Float64 | same | number, `NaN`, `Infinity` |
//! | DECIMAL(p,s) | Decimal128(p,s) (text read exactly too) | Decimal128(p,s) | exact; more than `s` decimals or `p` digits is an error |
//! | STRING, CHAR, VARCHAR | Utf8 | Utf8 | as is |
//! | BINARY | Binary | Binary | base64 |
//! | DATE | Date32 | Date32 (0001-01-01..9999-12-31) | `YYYY-MM-DD` |
//! | TIMESTAMP | Timestamp(µs, session zone, e.g. "Etc/UTC") | Timestamp(µs, "UTC"): the instant, zone label normalised (s/ms/ns units are scaled exactly) | ISO 8601 with offset or `Z` |
//! | TIMESTAMP_NTZ | Timestamp(µs, None) | Timestamp(µs, None) | ISO 8601 wall clock |
//! | VARIANT | Utf8 (JSON text) | Utf8: the JSON text, kept because the API already sends text | as is |
//! | INTERVAL | Interval(YearMonth) / Duration(µs) | refused: select `CAST(col AS STRING)` | |
//! | ARRAY, MAP, STRUCT | List / Map / Struct | refused: select `to_json(col)` | |
//! | VOID (`NULL`) | Null | refused: give it a type, `CAST(col AS STRING)` | |
//! | anything else (USER_DEFINED_TYPE, GEOMETRY...) | | refused: `CAST(col AS STRING)` | |
//!
//! Engine fields are all nullable (a NOT NULL column's values fit a nullable field).

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array,
    Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, RecordBatch,
    RecordBatchOptions, StringArray, TimestampMicrosecondArray, new_null_array,
};
use deltalake::arrow::compute::{CastOptions, cast_with_options};
use deltalake::arrow::datatypes::{
    DataType, Decimal128Type, Field, Int64Type, Schema, SchemaRef, TimeUnit,
};

use crate::databricks::statements::ColumnInfo;

/// The zone label of TIMESTAMP columns in the engine.
const UTC: &str = "UTC";

/// A Databricks SQL type, as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabricksType {
    Boolean,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: i8,
    },
    String,
    Binary,
    Date,
    Timestamp,
    TimestampNtz,
    Variant,
    Interval,
    Array,
    Map,
    Struct,
    Void,
    /// A type this module does not know, by its name.
    Other(String),
}

impl DatabricksType {
    /// The type of a manifest column: its `type_name`, or the first word of its `type_text` when
    /// the name is missing; `type_text` `TIMESTAMP_NTZ` wins over a `type_name` `TIMESTAMP`.
    pub fn of(column: &ColumnInfo) -> DatabricksType {
        let text = column.type_text.as_deref().unwrap_or("").trim();
        let text_base: String = text
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>()
            .to_ascii_uppercase();
        if text_base == "TIMESTAMP_NTZ" {
            return DatabricksType::TimestampNtz;
        }
        let base = column
            .type_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_ascii_uppercase)
            .unwrap_or(text_base);
        match base.as_str() {
            "BOOLEAN" => DatabricksType::Boolean,
            "BYTE" | "TINYINT" => DatabricksType::TinyInt,
            "SHORT" | "SMALLINT" => DatabricksType::SmallInt,
            "INT" | "INTEGER" => DatabricksType::Int,
            "LONG" | "BIGINT" => DatabricksType::BigInt,
            "FLOAT" | "REAL" => DatabricksType::Float,
            "DOUBLE" => DatabricksType::Double,
            "DECIMAL" | "DEC" | "NUMERIC" => match decimal_of(column) {
                Some((precision, scale)) => DatabricksType::Decimal { precision, scale },
                None => DatabricksType::Other(if text.is_empty() { base } else { text.into() }),
            },
            "STRING" | "CHAR" | "VARCHAR" => DatabricksType::String,
            "BINARY" => DatabricksType::Binary,
            "DATE" => DatabricksType::Date,
            "TIMESTAMP" | "TIMESTAMP_LTZ" => DatabricksType::Timestamp,
            "TIMESTAMP_NTZ" => DatabricksType::TimestampNtz,
            "VARIANT" => DatabricksType::Variant,
            "INTERVAL" => DatabricksType::Interval,
            "ARRAY" => DatabricksType::Array,
            "MAP" => DatabricksType::Map,
            "STRUCT" => DatabricksType::Struct,
            "NULL" | "VOID" => DatabricksType::Void,
            _ => DatabricksType::Other(base),
        }
    }

    /// The engine type of a column of this type, or why it is refused and what to select.
    fn engine_type(&self, column: &str) -> Result<DataType, (&'static str, String)> {
        let ident = sql_ident(column);
        Ok(match self {
            DatabricksType::Boolean => DataType::Boolean,
            DatabricksType::TinyInt => DataType::Int8,
            DatabricksType::SmallInt => DataType::Int16,
            DatabricksType::Int => DataType::Int32,
            DatabricksType::BigInt => DataType::Int64,
            DatabricksType::Float => DataType::Float32,
            DatabricksType::Double => DataType::Float64,
            DatabricksType::Decimal { precision, scale } => {
                DataType::Decimal128(*precision, *scale)
            }
            DatabricksType::String | DatabricksType::Variant => DataType::Utf8,
            DatabricksType::Binary => DataType::Binary,
            DatabricksType::Date => DataType::Date32,
            DatabricksType::Timestamp => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
            }
            DatabricksType::TimestampNtz => DataType::Timestamp(TimeUnit::Microsecond, None),
            DatabricksType::Interval => {
                return Err((
                    "an interval, which Parquet files for Databricks and SQL Server tables cannot hold",
                    format!("CAST({ident} AS STRING)"),
                ));
            }
            DatabricksType::Array | DatabricksType::Map | DatabricksType::Struct => {
                return Err((
                    "a nested type; the bridge writes flat columns",
                    format!("to_json({ident})"),
                ));
            }
            DatabricksType::Void => {
                return Err((
                    "the NULL type: every value is NULL, so the column has no type to write; cast it to the type it should have",
                    format!("CAST({ident} AS STRING)"),
                ));
            }
            DatabricksType::Other(_) => {
                return Err((
                    "a type the bridge does not read",
                    format!("CAST({ident} AS STRING)"),
                ));
            }
        })
    }
}

/// Precision and scale from the manifest fields, else from `DECIMAL(p,s)` in `type_text`, else
/// Spark's default `DECIMAL(10,0)`; `None` when they are not a valid Decimal128 (1..=38 digits,
/// 0 <= scale <= precision).
fn decimal_of(column: &ColumnInfo) -> Option<(u8, i8)> {
    let (precision, scale) = match (column.type_precision, column.type_scale) {
        (Some(p), Some(s)) => (i64::from(p), i64::from(s)),
        _ => {
            let text = column.type_text.as_deref().unwrap_or("");
            match text.split_once('(') {
                Some((_, rest)) => {
                    let inner = rest.trim_end().strip_suffix(')')?;
                    let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
                    (p.trim().parse().ok()?, s.trim().parse().ok()?)
                }
                None => (10, 0),
            }
        }
    };
    ((1..=38).contains(&precision) && (0..=precision).contains(&scale))
        .then_some((precision as u8, scale as i8))
}

/// A column name as a SQL identifier: bare when it is one, else in backticks.
fn sql_ident(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if bare {
        name.to_string()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

/// A column refused at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Column name.
    pub column: String,
    /// Its type as the manifest writes it.
    pub type_text: String,
    /// Why it is refused.
    pub why: &'static str,
    /// What to select instead.
    pub select: String,
}

/// Result columns the bridge cannot read as they are, or values that do not have their column's
/// type.
#[derive(Debug, thiserror::Error)]
pub enum TypeError {
    /// Columns of types the bridge does not read, each with the expression to select instead.
    #[error("{}", RefusedList(.0))]
    Refused(Vec<Refusal>),
    /// A value (or a whole chunk column) that cannot be read as its column's type.
    #[error(
        "column `{column}` ({type_text}){}: {message}",
        row.map(|r| format!(", row {r} of the result")).unwrap_or_default()
    )]
    Value {
        column: String,
        type_text: String,
        /// 1-based row of the whole result, when one row is at fault.
        row: Option<u64>,
        message: String,
    },
}

struct RefusedList<'a>(&'a [Refusal]);

impl fmt::Display for RefusedList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = self.0.len() > 1;
        write!(
            f,
            "the result has {} the bridge cannot read as {}: ",
            if plural { "columns" } else { "a column" },
            if plural { "they are" } else { "it is" }
        )?;
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "`{}` is {} ({}), select `{}` instead",
                r.column, r.type_text, r.why, r.select
            )?;
        }
        f.write_str(
            ". Select these expressions in the source's query (`sql:` or `query:`; a `table:` source reads every column as it is) and run again; no rows were read and nothing was written.",
        )
    }
}

/// One result column: its manifest type and its engine type.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    type_text: String,
    dbx: DatabricksType,
    engine: DataType,
}

impl Column {
    fn error(&self, row: Option<u64>, message: impl std::fmt::Display) -> TypeError {
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
    fn not(value: &str, expected: &'static str) -> Self {
        ValueError::NotA {
            value: value.to_string(),
            expected,
        }
    }
}

/// The engine types of a statement's result, and the conversion of its chunks to them.
#[derive(Debug, Clone)]
pub struct ResultTypes {
    columns: Vec<Column>,
    schema: SchemaRef,
}

impl ResultTypes {
    /// The engine types of the manifest's columns; every column of a type the bridge does not
    /// read is named in one error, with the expression to select instead.
    pub fn new(columns: &[ColumnInfo]) -> Result<ResultTypes, TypeError> {
        let mut mapped = Vec::with_capacity(columns.len());
        let mut refused = Vec::new();
        for c in columns {
            let dbx = DatabricksType::of(c);
            let type_text = c
                .type_text
                .clone()
                .or_else(|| c.type_name.clone())
                .unwrap_or_else(|| "an unnamed type".into());
            match dbx.engine_type(&c.name) {
                Ok(engine) => mapped.push(Column {
                    name: c.name.clone(),
                    type_text,
                    dbx,
                    engine,
                }),
                Err((why, select)) => refused.push(Refusal {
                    column: c.name.clone(),
                    type_text,
                    why,
                    select,
                }),
            }
        }
        if !refused.is_empty() {
            return Err(TypeError::Refused(refused));
        }
        let schema = Arc::new(Schema::new(
            mapped
                .iter()
                .map(|c| Field::new(&c.name, c.engine.clone(), true))
                .collect::<Vec<_>>(),
        ));
        Ok(ResultTypes {
            columns: mapped,
            schema,
        })
    }

    /// The engine schema (every field nullable).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether the result has no columns (a DDL statement).
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// A batch of an ARROW_STREAM chunk in engine types. `first_row` is the 0-based row of the
    /// whole result the batch starts at (for messages). The caller checks the column count.
    pub fn from_arrow(
        &self,
        batch: &RecordBatch,
        first_row: u64,
    ) -> Result<RecordBatch, TypeError> {
        let arrays = self
            .columns
            .iter()
            .zip(batch.columns())
            .map(|(c, a)| column_from_arrow(c, a, first_row))
            .collect::<Result<Vec<_>, _>>()?;
        self.batch(arrays, batch.num_rows())
    }

    /// JSON_ARRAY rows (strings or NULL) in engine types; `first_row` as for [`Self::from_arrow`].
    pub fn from_text(
        &self,
        rows: &[Vec<Option<String>>],
        first_row: u64,
    ) -> Result<RecordBatch, TypeError> {
        let arrays = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let values = rows.iter().map(|r| r.get(i).and_then(|v| v.as_deref()));
                column_from_text(c, values, first_row)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch(arrays, rows.len())
    }

    fn batch(&self, arrays: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch, TypeError> {
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| TypeError::Value {
            column: "*".into(),
            type_text: "result".into(),
            row: None,
            message: format!("the converted columns do not form a batch: {e}"),
        })
    }
}

/// One column of an ARROW_STREAM batch in its engine type.
fn column_from_arrow(c: &Column, array: &ArrayRef, first_row: u64) -> Result<ArrayRef, TypeError> {
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
                        sql_ident(&c.name)
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
                sql_ident(&c.name)
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
fn rescale(v: i128, from_scale: i8, precision: u8, scale: i8) -> Result<i128, ValueError> {
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
fn column_from_text<'a>(
    c: &Column,
    values: impl Iterator<Item = Option<&'a str>>,
    first_row: u64,
) -> Result<ArrayRef, TypeError> {
    fn parse_all<'a, T>(
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
    fn int<T: TryFrom<i64>>(v: &str) -> Result<T, ValueError> {
        let n: i64 = v
            .trim()
            .parse()
            .map_err(|_| ValueError::not(v, "an integer"))?;
        T::try_from(n).map_err(|_| ValueError::OutOfRange(n))
    }
    fn not(v: &str, what: &'static str) -> ValueError {
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

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{ListArray, TimestampNanosecondArray};
    use deltalake::arrow::datatypes::Int32Type;

    fn column(name: &str, type_name: &str, type_text: &str) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            type_name: Some(type_name.into()),
            type_text: Some(type_text.into()),
            type_precision: None,
            type_scale: None,
            position: None,
            type_interval_type: None,
        }
    }

    fn lines(batch: &RecordBatch) -> Vec<String> {
        deltalake::arrow::util::pretty::pretty_format_batches(std::slice::from_ref(batch))
            .unwrap()
            .to_string()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn manifest_types_map_to_the_policy() {
        let cols = [
            column("b", "BOOLEAN", "BOOLEAN"),
            column("t", "BYTE", "TINYINT"),
            column("s", "SHORT", "SMALLINT"),
            column("i", "INT", "INT"),
            column("l", "LONG", "BIGINT"),
            column("f", "FLOAT", "FLOAT"),
            column("d", "DOUBLE", "DOUBLE"),
            ColumnInfo {
                type_precision: Some(38),
                type_scale: Some(18),
                ..column("dec", "DECIMAL", "DECIMAL(38,18)")
            },
            column("dec2", "DECIMAL", "decimal(7, 2)"),
            column("str", "STRING", "STRING"),
            column("vc", "STRING", "VARCHAR(10)"),
            column("bin", "BINARY", "BINARY"),
            column("dt", "DATE", "DATE"),
            column("ts", "TIMESTAMP", "TIMESTAMP"),
            column("ntz", "TIMESTAMP_NTZ", "TIMESTAMP_NTZ"),
            column("ntz2", "", "TIMESTAMP_NTZ"),
            column("v", "VARIANT", "VARIANT"),
        ];
        let types = ResultTypes::new(&cols).unwrap();
        let got: Vec<String> = types
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{}:{}", f.name(), f.data_type()))
            .collect();
        assert_eq!(
            got,
            [
                "b:Boolean",
                "t:Int8",
                "s:Int16",
                "i:Int32",
                "l:Int64",
                "f:Float32",
                "d:Float64",
                "dec:Decimal128(38, 18)",
                "dec2:Decimal128(7, 2)",
                "str:Utf8",
                "vc:Utf8",
                "bin:Binary",
                "dt:Date32",
                "ts:Timestamp(µs, \"UTC\")",
                "ntz:Timestamp(µs)",
                "ntz2:Timestamp(µs)",
                "v:Utf8",
            ]
        );
        assert!(types.schema().fields().iter().all(|f| f.is_nullable()));
    }

    #[test]
    fn intervals_nested_void_and_unknown_types_are_refused_with_what_to_select() {
        let err = ResultTypes::new(&[
            column("id", "LONG", "BIGINT"),
            column("tags", "ARRAY", "ARRAY<STRING>"),
            column("wait time", "INTERVAL", "INTERVAL DAY TO SECOND"),
            column("m", "MAP", "MAP<STRING, STRING>"),
            column("nothing", "NULL", "VOID"),
            column("g", "USER_DEFINED_TYPE", "GEOMETRY"),
            ColumnInfo {
                type_precision: Some(40),
                type_scale: Some(0),
                ..column("huge", "DECIMAL", "DECIMAL(40,0)")
            },
        ])
        .unwrap_err();
        let TypeError::Refused(refused) = &err else {
            panic!("{err}")
        };
        let selects: Vec<(&str, &str)> = refused
            .iter()
            .map(|r| (r.column.as_str(), r.select.as_str()))
            .collect();
        assert_eq!(
            selects,
            [
                ("tags", "to_json(tags)"),
                ("wait time", "CAST(`wait time` AS STRING)"),
                ("m", "to_json(m)"),
                ("nothing", "CAST(nothing AS STRING)"),
                ("g", "CAST(g AS STRING)"),
                ("huge", "CAST(huge AS STRING)"),
            ]
        );
        let text = err.to_string();
        assert!(
            text.contains("`tags` is ARRAY<STRING> (a nested type; the bridge writes flat columns), select `to_json(tags)` instead"),
            "{text}"
        );
        assert!(
            text.contains("`wait time` is INTERVAL DAY TO SECOND"),
            "{text}"
        );
        assert!(!text.contains('\n'), "one paragraph: {text}");
    }

    #[test]
    fn chunks_in_api_types_become_engine_types() {
        // Some servers name TIMESTAMP_NTZ columns TIMESTAMP; type_text tells them apart.
        let ntz = column("ntz", "TIMESTAMP", "TIMESTAMP_NTZ");
        let types = ResultTypes::new(&[
            column("ts", "TIMESTAMP", "TIMESTAMP"),
            column("ns", "TIMESTAMP", "TIMESTAMP"),
            ntz,
            ColumnInfo {
                type_precision: Some(38),
                type_scale: Some(18),
                ..column("dec", "DECIMAL", "DECIMAL(38,18)")
            },
            ColumnInfo {
                type_precision: Some(10),
                type_scale: Some(2),
                ..column("wider", "DECIMAL", "DECIMAL(10,2)")
            },
            column("t", "BYTE", "TINYINT"),
            column("v", "VARIANT", "VARIANT"),
            column("n", "INT", "INT"),
        ])
        .unwrap();
        let wire = Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("America/Los_Angeles".into())),
                true,
            ),
            Field::new(
                "ns",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("Etc/UTC".into())),
                true,
            ),
            Field::new(
                "ntz",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Field::new("dec", DataType::Utf8, true),
            Field::new("wider", DataType::Decimal128(12, 4), true),
            Field::new("t", DataType::Int8, false),
            Field::new("v", DataType::Utf8, true),
            Field::new("n", DataType::Null, true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(wire),
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(-62_135_596_800_000_000), None])
                        .with_timezone("America/Los_Angeles"),
                ),
                Arc::new(
                    TimestampNanosecondArray::from(vec![Some(1_000), None])
                        .with_timezone("Etc/UTC"),
                ),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(253_402_300_799_999_999),
                    None,
                ])),
                Arc::new(StringArray::from(vec![
                    Some("-99999999999999999999.999999999999999999"),
                    None,
                ])),
                Arc::new(
                    Decimal128Array::from(vec![Some(1_234_500), None])
                        .with_precision_and_scale(12, 4)
                        .unwrap(),
                ),
                Arc::new(Int8Array::from(vec![-128, 127])),
                Arc::new(StringArray::from(vec![Some(r#"{"a":1}"#), None])),
                Arc::new(deltalake::arrow::array::NullArray::new(2)),
            ],
        )
        .unwrap();
        let out = types.from_arrow(&batch, 0).unwrap();
        assert_eq!(out.schema(), *types.schema());
        let l = lines(&out);
        assert_eq!(
            l[3],
            "| 0001-01-01T00:00:00Z | 1970-01-01T00:00:00.000001Z | 9999-12-31T23:59:59.999999 | -99999999999999999999.999999999999999999 | 123.45 | -128 | {\"a\":1} |   |"
        );
        assert_eq!(out.column(0).null_count(), 1);
        assert_eq!(out.column(5).null_count(), 0);
        assert_eq!(out.column(7).null_count(), 2);
    }

    #[test]
    fn values_that_do_not_fit_are_errors_naming_column_and_row() {
        let types = ResultTypes::new(&[
            ColumnInfo {
                type_precision: Some(5),
                type_scale: Some(2),
                ..column("amount", "DECIMAL", "DECIMAL(5,2)")
            },
            column("ts", "TIMESTAMP", "TIMESTAMP"),
        ])
        .unwrap();
        let wire = Arc::new(Schema::new(vec![
            Field::new("amount", DataType::Decimal128(6, 3), true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = |dec: i128, ns: i64| {
            RecordBatch::try_new(
                wire.clone(),
                vec![
                    Arc::new(
                        Decimal128Array::from(vec![Some(1_000), Some(dec)])
                            .with_precision_and_scale(6, 3)
                            .unwrap(),
                    ),
                    Arc::new(TimestampNanosecondArray::from(vec![0, ns]).with_timezone("UTC")),
                ],
            )
            .unwrap()
        };
        let err = types
            .from_arrow(&batch(1_005, 0), 40)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "column `amount` (DECIMAL(5,2)), row 42 of the result: 1.005 has more than 2 decimals"
        );
        let err = types
            .from_arrow(&batch(0, 1_500), 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("column `ts` (TIMESTAMP), row 2 of the result: 1500 nanoseconds"),
            "{err}"
        );

        let wire_list = Arc::new(Schema::new(vec![Field::new(
            "amount",
            DataType::new_list(DataType::Int32, true),
            true,
        )]));
        let single = ResultTypes::new(&[ColumnInfo {
            type_precision: Some(5),
            type_scale: Some(2),
            ..column("amount", "DECIMAL", "DECIMAL(5,2)")
        }])
        .unwrap();
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1)])]);
        let err = single
            .from_arrow(
                &RecordBatch::try_new(wire_list, vec![Arc::new(list)]).unwrap(),
                0,
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("column `amount` (DECIMAL(5,2)): the result chunk has it as List"),
            "{err}"
        );
    }

    #[test]
    fn json_array_text_becomes_engine_types() {
        let types = ResultTypes::new(&[
            column("id", "LONG", "BIGINT"),
            column("t", "BYTE", "TINYINT"),
            ColumnInfo {
                type_precision: Some(18),
                type_scale: Some(4),
                ..column("amount", "DECIMAL", "DECIMAL(18,4)")
            },
            column("at", "TIMESTAMP", "TIMESTAMP"),
            column("wall", "TIMESTAMP_NTZ", "TIMESTAMP_NTZ"),
            column("day", "DATE", "DATE"),
            column("bin", "BINARY", "BINARY"),
            column("ok", "BOOLEAN", "BOOLEAN"),
            column("x", "DOUBLE", "DOUBLE"),
            column("name", "STRING", "STRING"),
        ])
        .unwrap();
        let row = |v: [&str; 10]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
        let rows = vec![
            row([
                "1",
                "-128",
                "12.3400",
                "2021-01-01T10:00:00.000-08:00",
                "2024-01-02T03:04:05.123",
                "0001-01-01",
                "AP8=",
                "true",
                "NaN",
                "Grüße",
            ]),
            vec![None; 10],
        ];
        let batch = types.from_text(&rows, 0).unwrap();
        let l = lines(&batch);
        assert_eq!(
            l[3],
            "| 1  | -128 | 12.3400 | 2021-01-01T18:00:00Z | 2024-01-02T03:04:05.123 | 0001-01-01 | 00ff | true | NaN | Grüße |"
        );
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(9).null_count(), 1);
        let mut bad = rows.clone();
        bad[1] = row([
            "2",
            "128",
            "0",
            "2024-01-01Z",
            "2024-01-01",
            "2024-01-01",
            "",
            "false",
            "1",
            "a",
        ]);
        let err = types.from_text(&bad, 10).unwrap_err().to_string();
        assert_eq!(
            err,
            "column `t` (TINYINT), row 12 of the result: 128 is out of range"
        );
        bad[1][1] = Some("1".into());
        bad[1][2] = Some("1.23456".into());
        let err = types.from_text(&bad, 10).unwrap_err().to_string();
        assert!(err.contains("`1.23456` has more than 4 decimals"), "{err}");
    }

    #[test]
    fn decimal_text_is_read_exactly() {
        assert_eq!(parse_decimal("12.34", 10, 4), Ok(123_400));
        assert_eq!(parse_decimal("-0.5", 3, 1), Ok(-5));
        assert_eq!(parse_decimal("1E+3", 6, 2), Ok(100_000));
        assert_eq!(parse_decimal("1.2000", 5, 2), Ok(120));
        assert_eq!(parse_decimal("000.00", 1, 0), Ok(0));
        let max = "99999999999999999999.999999999999999999";
        assert_eq!(parse_decimal(max, 38, 18), Ok(10i128.pow(38) - 1));
        assert_eq!(
            parse_decimal(&format!("-{max}"), 38, 18),
            Ok(1 - 10i128.pow(38))
        );
        assert!(parse_decimal("100000000000000000000", 38, 18).is_err());
        assert!(
            parse_decimal("0.005", 5, 2)
                .unwrap_err()
                .to_string()
                .contains("more than 2 decimals")
        );
        assert!(parse_decimal("1.2.3", 5, 2).is_err());
        assert!(parse_decimal("", 5, 2).is_err());
        assert!(parse_decimal("1e40", 38, 0).is_err());
        assert_eq!(rescale(1_234_500, 4, 10, 2), Ok(12_345));
        assert_eq!(rescale(5, 0, 3, 2), Ok(500));
        assert!(rescale(5, 0, 2, 2).is_err());
    }
}
