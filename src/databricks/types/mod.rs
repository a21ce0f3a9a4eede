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

mod values;

use std::fmt;
use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::databricks::statements::ColumnInfo;
use values::{Column, column_from_arrow, column_from_text};
pub use values::{ValueError, parse_decimal};

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

#[cfg(test)]
mod tests;
