//! Write-back: an Arrow C stream (pyarrow, polars, pandas through pyarrow, Spark batches), or a
//! Unity Catalog table read through the Statement Execution API, written into a SQL Server table by the bridge's `sqlserver` sink: the table's columns checked first,
//! then one transaction of TDS bulk loads, the delete cap and the idempotency key, committed
//! only when every row was written.
//!
//! The stream is read batch by batch on a blocking thread while the sink writes; nothing is
//! collected. A stream can be read once: a sink that scanned its input twice would fail here
//! rather than write half of it.

use std::sync::{Arc, Mutex};

use arrow_pyarrow::PyArrowType;
use bridge::databricks::DatabricksSettings;
use bridge::pipeline::metrics::StepMetrics;
use bridge::sinks::sqlserver::SqlServerSink;
use bridge::sinks::sqlserver::config::{SqlServerSinkSpec, SqlServerWriteMode};
use bridge::sinks::{Sink, SinkConfig};
use bridge::sources::databricks::DatabricksSource;
use bridge::sources::{Source, batch_channel};
use deltalake::arrow::array::RecordBatchReader;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::ffi_stream::ArrowArrayStreamReader;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::connection::Connection;
use crate::errors::to_py;
use crate::runtime::runtime;

/// What messages call the write (it stands for a pipeline's step name).
const STEP: &str = "sync_to_sql_server";

/// The caller's stream, read by the first (and only) scan.
struct OneScan {
    schema: SchemaRef,
    reader: Mutex<Option<ArrowArrayStreamReader>>,
}

impl std::fmt::Debug for OneScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneScan").finish_non_exhaustive()
    }
}

impl PartitionStream for OneScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, stream) = batch_channel(self.schema.clone());
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
        match reader {
            Some(reader) => {
                // The producer may call back into Python (it takes the GIL itself).
                tokio::task::spawn_blocking(move || {
                    for batch in reader {
                        let batch = batch.map_err(|e| {
                            DataFusionError::External(
                                format!("reading the source failed: {e}").into(),
                            )
                        });
                        let failed = batch.is_err();
                        if tx.blocking_send(batch).is_err() || failed {
                            break;
                        }
                    }
                });
            }
            None => {
                let _ = tx.try_send(Err(DataFusionError::Execution(
                    "the source stream was already read; it can be read once".into(),
                )));
            }
        }
        stream
    }
}

fn mode(operation: &str) -> PyResult<SqlServerWriteMode> {
    Ok(match operation.to_ascii_uppercase().as_str() {
        "INSERT" => SqlServerWriteMode::Insert,
        "UPSERT" => SqlServerWriteMode::Upsert,
        "UPDATE" => SqlServerWriteMode::Update,
        "DELETE" => SqlServerWriteMode::Delete,
        "REPLACE" => SqlServerWriteMode::Replace,
        _ => {
            return Err(PyValueError::new_err(format!(
                "operation: `{operation}` is not one of INSERT, UPSERT, UPDATE, DELETE, REPLACE"
            )));
        }
    })
}

/// Writes `input` and commits; returns the rows written and whether the idempotency key was
/// already recorded (then nothing was written and the rows are the first write's).
async fn write(
    sink: SqlServerSink,
    ctx: SessionContext,
    input: DataFrame,
) -> bridge::Result<(u64, bool)> {
    let metrics = Arc::new(StepMetrics::default());
    let staged = sink.stage(&ctx, input, Arc::clone(&metrics)).await?;
    staged.commit().await?;
    Ok((metrics.rows(), metrics.already_applied()))
}

/// The caller's stream as the input of one scan.
fn stream_input(reader: ArrowArrayStreamReader) -> bridge::Result<(SessionContext, DataFrame)> {
    let schema = reader.schema();
    let table = StreamingTable::try_new(
        Arc::clone(&schema),
        vec![Arc::new(OneScan {
            schema,
            reader: Mutex::new(Some(reader)),
        })],
    )
    .map_err(|e| bridge::Error::step_from(STEP, e))?;
    let ctx = SessionContext::new();
    let input = ctx
        .read_table(Arc::new(table))
        .map_err(|e| bridge::Error::step_from(STEP, e))?;
    Ok((ctx, input))
}

/// What the sink refuses before connecting is about the arguments: the table name, the keys a
/// mode needs and whether the source has them, a cap the mode cannot use.
fn argument_error(e: bridge::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// What a write reads: a Unity Catalog table name, or anything with `__arrow_c_stream__`.
#[derive(FromPyObject)]
enum Input {
    Table(String),
    Stream(PyArrowType<ArrowArrayStreamReader>),
}

#[pymethods]
impl Connection {
    /// Writes `source` into `target_table` in one transaction; returns `(rows_written,
    /// already_applied)`. `source` is anything with `__arrow_c_stream__`, or a Unity Catalog
    /// table name read through the Statement Execution API of the workspace the environment
    /// names (`DATABRICKS_HOST` with `DATABRICKS_TOKEN` or a profile; `DATABRICKS_WAREHOUSE_ID`
    /// unless `warehouse_id`).
    #[pyo3(signature = (source, target_table, operation, primary_keys=Vec::new(), max_delete_rows=None, idempotency_key=None, warehouse_id=None))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one by one.
    fn sync(
        &self,
        py: Python<'_>,
        source: Input,
        target_table: String,
        operation: &str,
        primary_keys: Vec<String>,
        max_delete_rows: Option<u64>,
        idempotency_key: Option<String>,
        warehouse_id: Option<String>,
    ) -> PyResult<(u64, bool)> {
        let spec = SqlServerSinkSpec {
            from: "source".into(),
            table: target_table,
            mode: mode(operation)?,
            primary_keys,
            max_delete_rows,
            idempotency_key,
            connection: None,
        };
        spec.check()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let sink =
            SqlServerSink::new(STEP, &spec, self.settings.clone()).map_err(argument_error)?;
        match source {
            Input::Stream(stream) => {
                let reader = stream.0;
                sink.check(&reader.schema()).map_err(argument_error)?;
                py.detach(|| {
                    runtime().block_on(async {
                        let (ctx, input) = stream_input(reader)?;
                        write(sink, ctx, input).await
                    })
                })
                .map_err(to_py)
            }
            Input::Table(table) => {
                let settings = DatabricksSettings::default();
                let source = DatabricksSource::table(STEP, &table, settings, warehouse_id)
                    .map_err(argument_error)?;
                py.detach(|| {
                    runtime().block_on(async {
                        let ctx = SessionContext::new();
                        let provider = source.open(&ctx).await.map_err(to_py)?;
                        sink.check(provider.schema().as_ref())
                            .map_err(argument_error)?;
                        let input = ctx
                            .read_table(provider)
                            .map_err(|e| to_py(bridge::Error::step_from(STEP, e)))?;
                        write(sink, ctx, input).await.map_err(to_py)
                    })
                })
            }
        }
    }
}
