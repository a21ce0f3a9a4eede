//! `sqlite` source, the embedded default: runs a query on a SQLite file and streams Arrow batches.
//! Rows are read on a blocking thread and sent through a bounded channel, one batch at a time.
//!
//! Type mapping, decided by each result column's declared type (case-insensitive):
//!
//! | declared type                         | Arrow type                 | values accepted                          |
//! |---------------------------------------|----------------------------|------------------------------------------|
//! | `BOOLEAN`, `BOOL`, `BIT`              | Boolean                    | integers (0 = false)                     |
//! | `DATE`                                | Date32                     | text `YYYY-MM-DD`                        |
//! | `DATETIME`, `TIMESTAMP`               | Timestamp(µs)              | text `YYYY-MM-DD[ T]HH:MM:SS[.f]`, unix seconds |
//! | `DECIMAL(p,s)`, `NUMERIC(p,s)`        | Decimal128(p, s)           | text (exact), integers, reals (rounded)  |
//! | contains `INT`                        | Int64                      | integers                                 |
//! | contains `CHAR`, `CLOB`, `TEXT`       | Utf8                       | any value (numbers are formatted)        |
//! | contains `BLOB`                       | Binary                     | blobs, text (as UTF-8 bytes)             |
//! | contains `REAL`, `FLOA`, `DOUB`; bare `NUMERIC`/`DECIMAL` | Float64 | reals, integers                   |
//! | none (an expression)                  | from the first non-NULL value: Int64, Float64, Utf8 or Binary (all NULL: Utf8) |
//!
//! NULL is accepted everywhere. A value that does not fit its column's type is an error naming the
//! column and the row, never a silent NULL.

pub mod config;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{NaiveDate, NaiveDateTime};
use deltalake::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Decimal128Type, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::prelude::SessionContext;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::pipeline::plan::PlannedStep;
use crate::pipeline::project::Project;
use crate::pipeline::render::RenderedSql;
use crate::sources::{BatchSender, Source, batch_channel};
use crate::sql::SqlValue;
use config::SqliteSourceSpec;

/// Default rows per batch.
pub const DEFAULT_BATCH_SIZE: usize = 8192;

/// Streams the result of a query on a SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteSource {
    step: String,
    database: PathBuf,
    seed: Option<PathBuf>,
    sql: RenderedSql,
    batch_size: usize,
}

impl SqliteSource {
    /// A SQLite source for a planned step (its SQL already rendered for SQLite).
    pub fn new(project: &Project, step: &PlannedStep, spec: &SqliteSourceSpec) -> Result<Self> {
        let sql = step
            .sql
            .clone()
            .ok_or_else(|| Error::step(&step.id, "sqlite source without SQL"))?;
        Ok(SqliteSource {
            step: step.id.clone(),
            database: project.resolve(&spec.database),
            seed: spec.seed.as_deref().map(|s| project.resolve(s)),
            sql,
            batch_size: spec.batch_size.unwrap_or(DEFAULT_BATCH_SIZE).max(1),
        })
    }

    /// Creates the database from the seed script if the file does not exist (written to a temporary
    /// file, then renamed, so a failed seed leaves nothing behind).
    fn ensure_database(&self) -> Result<()> {
        if self.database.exists() {
            return Ok(());
        }
        let Some(seed) = &self.seed else {
            return Err(Error::step(
                &self.step,
                format!("SQLite database {} does not exist", self.database.display()),
            ));
        };
        let script = std::fs::read_to_string(seed).map_err(|e| Error::io(seed, e))?;
        if let Some(parent) = self.database.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let tmp = self
            .database
            .with_extension(format!("seed-{}.tmp", uuid::Uuid::new_v4().simple()));
        let result = Connection::open(&tmp)
            .and_then(|conn| conn.execute_batch(&script))
            .map_err(|e| Error::step(&self.step, format!("seed script {}: {e}", seed.display())));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &self.database).map_err(|e| Error::io(&self.database, e))
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        Connection::open_with_flags(
            &self.database,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    }

    /// Learns the result schema: declared types first, the first non-NULL value for expressions.
    fn probe_schema(&self) -> Result<SchemaRef> {
        let fail = |e: rusqlite::Error| Error::step(&self.step, format!("SQLite: {e}"));
        let conn = self.connect().map_err(fail)?;
        let mut stmt = conn.prepare(&self.sql.text).map_err(fail)?;
        let mut types: Vec<(String, Option<DataType>)> = stmt
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), c.decl_type().map(arrow_type_for_decl)))
            .collect();
        if types.iter().any(|(_, t)| t.is_none()) {
            let mut rows = stmt
                .query(rusqlite::params_from_iter(
                    self.sql.params.iter().map(to_sqlite),
                ))
                .map_err(fail)?;
            let mut scanned = 0;
            while let Some(row) = rows.next().map_err(fail)? {
                for (i, (_, t)) in types.iter_mut().enumerate() {
                    if t.is_none() {
                        *t = match row.get_ref(i).map_err(fail)? {
                            ValueRef::Null => None,
                            ValueRef::Integer(_) => Some(DataType::Int64),
                            ValueRef::Real(_) => Some(DataType::Float64),
                            ValueRef::Text(_) => Some(DataType::Utf8),
                            ValueRef::Blob(_) => Some(DataType::Binary),
                        };
                    }
                }
                scanned += 1;
                if scanned >= self.batch_size || types.iter().all(|(_, t)| t.is_some()) {
                    break;
                }
            }
        }
        let fields: Vec<Field> = types
            .into_iter()
            .map(|(name, t)| Field::new(name, t.unwrap_or(DataType::Utf8), true))
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }
}

#[async_trait]
impl Source for SqliteSource {
    async fn open(&self, _ctx: &SessionContext) -> Result<Arc<dyn TableProvider>> {
        let this = self.clone();
        let schema = tokio::task::spawn_blocking(move || {
            this.ensure_database()?;
            this.probe_schema()
        })
        .await
        .map_err(|e| Error::step(&self.step, e))??;
        let partition = SqlitePartition {
            source: self.clone(),
            schema: schema.clone(),
        };
        let table = StreamingTable::try_new(schema, vec![Arc::new(partition)])
            .map_err(|e| Error::step(&self.step, e))?;
        Ok(Arc::new(table))
    }
}

/// One scan of the query; each `execute` runs it again.
#[derive(Debug)]
struct SqlitePartition {
    source: SqliteSource,
    schema: SchemaRef,
}

impl PartitionStream for SqlitePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, stream) = batch_channel(self.schema.clone());
        let source = self.source.clone();
        let schema = self.schema.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = read_batches(&source, &schema, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        stream
    }
}

fn read_batches(
    source: &SqliteSource,
    schema: &SchemaRef,
    tx: &BatchSender,
) -> Result<(), DataFusionError> {
    let ext = |e: rusqlite::Error| DataFusionError::External(Box::new(e));
    let conn = source.connect().map_err(ext)?;
    let mut stmt = conn.prepare(&source.sql.text).map_err(ext)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(
            source.sql.params.iter().map(to_sqlite),
        ))
        .map_err(ext)?;
    let mut columns: Vec<ColumnBuilder> = schema
        .fields()
        .iter()
        .map(|f| ColumnBuilder::new(f.data_type(), source.batch_size))
        .collect();
    let mut in_batch = 0usize;
    let mut row_number = 0u64;
    while let Some(row) = rows.next().map_err(ext)? {
        row_number += 1;
        for (i, column) in columns.iter_mut().enumerate() {
            let value = row.get_ref(i).map_err(ext)?;
            column.append(value).map_err(|message| {
                DataFusionError::Execution(format!(
                    "step `{}`: column `{}` row {row_number}: {message}",
                    source.step,
                    schema.field(i).name()
                ))
            })?;
        }
        in_batch += 1;
        if in_batch == source.batch_size {
            let batch = finish_batch(schema, &mut columns)?;
            if tx.blocking_send(Ok(batch)).is_err() {
                return Ok(()); // the reader went away (cancelled or LIMIT satisfied)
            }
            in_batch = 0;
        }
    }
    if in_batch > 0 {
        let batch = finish_batch(schema, &mut columns)?;
        let _ = tx.blocking_send(Ok(batch));
    }
    Ok(())
}

fn finish_batch(
    schema: &SchemaRef,
    columns: &mut [ColumnBuilder],
) -> Result<RecordBatch, DataFusionError> {
    let arrays: Vec<ArrayRef> = columns.iter_mut().map(ColumnBuilder::finish).collect();
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}

fn to_sqlite(value: &SqlValue) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Bool(b) => Value::Integer(i64::from(*b)),
        SqlValue::Int(i) => Value::Integer(*i),
        SqlValue::Float(f) => Value::Real(*f),
        SqlValue::Text(s) => Value::Text(s.clone()),
    }
}

/// The Arrow type of a column from its declared SQLite type (see the module docs).
pub fn arrow_type_for_decl(decl: &str) -> DataType {
    let upper = decl.trim().to_ascii_uppercase();
    let base = upper.split('(').next().unwrap_or("").trim();
    match base {
        "BOOLEAN" | "BOOL" | "BIT" => return DataType::Boolean,
        "DATE" => return DataType::Date32,
        "DATETIME" | "TIMESTAMP" => return DataType::Timestamp(TimeUnit::Microsecond, None),
        "DECIMAL" | "NUMERIC" => {
            return decimal_args(&upper)
                .map(|(p, s)| DataType::Decimal128(p, s))
                .unwrap_or(DataType::Float64);
        }
        _ => {}
    }
    if upper.contains("INT") {
        DataType::Int64
    } else if upper.contains("CHAR") || upper.contains("CLOB") || upper.contains("TEXT") {
        DataType::Utf8
    } else if upper.contains("BLOB") || upper.is_empty() {
        DataType::Binary
    } else {
        // REAL, FLOAT, DOUBLE and anything else with numeric affinity.
        DataType::Float64
    }
}

fn decimal_args(decl: &str) -> Option<(u8, i8)> {
    let inner = decl.split_once('(')?.1.split_once(')')?.0;
    let mut parts = inner.split(',').map(|p| p.trim().parse::<u8>().ok());
    let precision = parts.next()??;
    let scale = parts.next().unwrap_or(Some(0))?;
    (1..=38)
        .contains(&precision)
        .then_some(())
        .filter(|_| scale <= precision)
        .map(|_| (precision, scale as i8))
}

/// Arrow builder for one column of a batch.
enum ColumnBuilder {
    Boolean(BooleanBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Date32(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Decimal(Decimal128Builder, u8, i8),
}

impl ColumnBuilder {
    fn new(data_type: &DataType, capacity: usize) -> Self {
        match data_type {
            DataType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(capacity)),
            DataType::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(capacity)),
            DataType::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(capacity)),
            DataType::Binary => ColumnBuilder::Binary(BinaryBuilder::with_capacity(capacity, 0)),
            DataType::Date32 => ColumnBuilder::Date32(Date32Builder::with_capacity(capacity)),
            DataType::Timestamp(_, _) => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
            DataType::Decimal128(p, s) => ColumnBuilder::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(*p, *s)
                    .expect("precision and scale were validated"),
                *p,
                *s,
            ),
            _ => ColumnBuilder::Utf8(StringBuilder::with_capacity(capacity, capacity * 16)),
        }
    }

    fn append(&mut self, value: ValueRef<'_>) -> std::result::Result<(), CellError> {
        match (self, value) {
            (ColumnBuilder::Boolean(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Boolean(b), ValueRef::Integer(i)) => b.append_value(i != 0),
            (ColumnBuilder::Int64(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Int64(b), ValueRef::Integer(i)) => b.append_value(i),
            (ColumnBuilder::Float64(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Float64(b), ValueRef::Real(f)) => b.append_value(f),
            (ColumnBuilder::Float64(b), ValueRef::Integer(i)) => b.append_value(i as f64),
            (ColumnBuilder::Utf8(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Utf8(b), ValueRef::Text(t)) => b.append_value(utf8(t)?),
            (ColumnBuilder::Utf8(b), ValueRef::Integer(i)) => b.append_value(i.to_string()),
            (ColumnBuilder::Utf8(b), ValueRef::Real(f)) => b.append_value(f.to_string()),
            (ColumnBuilder::Binary(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Binary(b), ValueRef::Blob(t) | ValueRef::Text(t)) => b.append_value(t),
            (ColumnBuilder::Date32(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Date32(b), ValueRef::Text(t)) => {
                let s = utf8(t)?;
                let date = NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
                    .map_err(|_| CellError::not_a(s, "date (expected YYYY-MM-DD)"))?;
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
                b.append_value((date - epoch).num_days() as i32);
            }
            (ColumnBuilder::Timestamp(b), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Timestamp(b), ValueRef::Integer(secs)) => {
                b.append_value(secs.saturating_mul(1_000_000));
            }
            (ColumnBuilder::Timestamp(b), ValueRef::Text(t)) => {
                let s = utf8(t)?;
                let parsed = [
                    "%Y-%m-%d %H:%M:%S%.f",
                    "%Y-%m-%dT%H:%M:%S%.f",
                    "%Y-%m-%d %H:%M",
                ]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
                .or_else(|| {
                    NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                })
                .ok_or_else(|| {
                    CellError::not_a(s, "timestamp (expected YYYY-MM-DD HH:MM:SS[.f])")
                })?;
                b.append_value(parsed.and_utc().timestamp_micros());
            }
            (ColumnBuilder::Decimal(b, _, _), ValueRef::Null) => b.append_null(),
            (ColumnBuilder::Decimal(b, p, s), ValueRef::Text(t)) => {
                let s_text = utf8(t)?;
                let fraction = s_text.trim().split_once('.').map_or("", |(_, f)| f);
                if fraction.trim_end_matches('0').len() > *s as usize {
                    return Err(CellError::TooManyDecimals {
                        text: s_text.to_string(),
                        precision: *p,
                        scale: *s,
                    });
                }
                let v = deltalake::arrow::compute::kernels::cast_utils::parse_decimal::<
                    Decimal128Type,
                >(s_text.trim(), *p, *s)
                .map_err(|_| CellError::NotADecimal {
                    text: s_text.to_string(),
                    precision: *p,
                    scale: *s,
                })?;
                b.append_value(v);
            }
            (ColumnBuilder::Decimal(b, p, s), ValueRef::Integer(i)) => {
                let v = i128::from(i).checked_mul(10i128.pow(*s as u32)).ok_or(
                    CellError::DecimalOverflow {
                        value: i,
                        precision: *p,
                        scale: *s,
                    },
                )?;
                b.append_value(v);
            }
            (ColumnBuilder::Decimal(b, _, s), ValueRef::Real(f)) => {
                b.append_value((f * 10f64.powi(i32::from(*s))).round() as i128);
            }
            (builder, v) => {
                return Err(CellError::Mismatch {
                    found: sqlite_kind(&v),
                    column: builder.kind_name(),
                });
            }
        }
        Ok(())
    }

    fn kind_name(&self) -> &'static str {
        match self {
            ColumnBuilder::Boolean(_) => "BOOLEAN",
            ColumnBuilder::Int64(_) => "INTEGER",
            ColumnBuilder::Float64(_) => "REAL",
            ColumnBuilder::Utf8(_) => "TEXT",
            ColumnBuilder::Binary(_) => "BLOB",
            ColumnBuilder::Date32(_) => "DATE",
            ColumnBuilder::Timestamp(_) => "TIMESTAMP",
            ColumnBuilder::Decimal(..) => "DECIMAL",
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Utf8(b) => Arc::new(b.finish()),
            ColumnBuilder::Binary(b) => Arc::new(b.finish()),
            ColumnBuilder::Date32(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .expect("precision and scale were validated"),
            ),
        }
    }
}

fn utf8(bytes: &[u8]) -> std::result::Result<&str, CellError> {
    Ok(std::str::from_utf8(bytes)?)
}

/// Why a SQLite value does not fit its column's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum CellError {
    #[error("{found} value does not fit a {column} column")]
    Mismatch {
        found: &'static str,
        column: &'static str,
    },
    #[error("invalid UTF-8: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    #[error("`{text}` is not a {expected}")]
    NotA {
        text: String,
        expected: &'static str,
    },
    #[error("`{text}` has more than {scale} decimals for DECIMAL({precision},{scale})")]
    TooManyDecimals {
        text: String,
        precision: u8,
        scale: i8,
    },
    #[error("`{text}` is not a DECIMAL({precision},{scale})")]
    NotADecimal {
        text: String,
        precision: u8,
        scale: i8,
    },
    #[error("{value} does not fit DECIMAL({precision},{scale})")]
    DecimalOverflow {
        value: i64,
        precision: u8,
        scale: i8,
    },
}

impl CellError {
    fn not_a(text: &str, expected: &'static str) -> Self {
        CellError::NotA {
            text: text.to_string(),
            expected,
        }
    }
}

fn sqlite_kind(v: &ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "a NULL",
        ValueRef::Integer(_) => "an INTEGER",
        ValueRef::Real(_) => "a REAL",
        ValueRef::Text(_) => "a TEXT",
        ValueRef::Blob(_) => "a BLOB",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_declared_types() {
        assert_eq!(arrow_type_for_decl("INTEGER"), DataType::Int64);
        assert_eq!(arrow_type_for_decl("varchar(50)"), DataType::Utf8);
        assert_eq!(
            arrow_type_for_decl("DECIMAL(18, 4)"),
            DataType::Decimal128(18, 4)
        );
        assert_eq!(arrow_type_for_decl("NUMERIC"), DataType::Float64);
        assert_eq!(arrow_type_for_decl("DATE"), DataType::Date32);
        assert_eq!(
            arrow_type_for_decl("datetime"),
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(arrow_type_for_decl("BOOLEAN"), DataType::Boolean);
        assert_eq!(arrow_type_for_decl("BLOB"), DataType::Binary);
        assert_eq!(arrow_type_for_decl("DOUBLE PRECISION"), DataType::Float64);
    }

    #[test]
    fn rejects_values_that_do_not_fit() {
        let mut b = ColumnBuilder::new(&DataType::Int64, 4);
        let err = b.append(ValueRef::Text(b"abc")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a TEXT value does not fit a INTEGER column"
        );
        let mut d = ColumnBuilder::new(&DataType::Decimal128(10, 2), 4);
        d.append(ValueRef::Text(b"12.345")).unwrap_err();
        d.append(ValueRef::Text(b"12.34")).unwrap();
    }
}
