//! Extraction: a query (with bound values) read into Arrow batches by the bridge's `sqlserver`
//! source and handed to Python as a `pyarrow.RecordBatchReader` over the Arrow C stream
//! interface. Batches take the type policy of the bridge's Parquet outputs (what Databricks
//! reads: `tinyint` as Int16, timestamps in microseconds, ...).
//!
//! Connecting, describing the query and reading its first batch happen before the reader is
//! returned, so those failures raise the operator's exceptions; a failure later in the stream
//! surfaces from pyarrow as an `OSError` carrying the same message.

use std::sync::Arc;

use arrow_pyarrow::PyArrowType;
use bridge::output_types::{OutputSchema, SubMicrosecond, Target};
use bridge::pipeline::render::RenderedSql;
use bridge::sources::Source;
use bridge::sources::sqlserver::SqlServerSource;
use bridge::sources::sqlserver::config::PartitionSpec;
use bridge::sql::SqlValue;
use deltalake::arrow::array::{RecordBatch, RecordBatchReader};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::prelude::SessionContext;
use futures::StreamExt;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::connection::Connection;
use crate::errors::to_py;
use crate::runtime::runtime;

/// What messages call the extraction (it stands for a pipeline's step name).
const STEP: &str = "extract_to_arrow";

/// A value bound to the query as `@P1`, `@P2`, ...: `None`, `bool`, `int`, `float` or `str`.
/// (The Python layer turns dates, datetimes and decimals into ISO text first.)
pub struct Param(SqlValue);

impl<'a, 'py> FromPyObject<'a, 'py> for Param {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if ob.is_none() {
            return Ok(Param(SqlValue::Null));
        }
        if let Ok(b) = ob.extract::<bool>() {
            return Ok(Param(SqlValue::Bool(b)));
        }
        if let Ok(i) = ob.extract::<i64>() {
            return Ok(Param(SqlValue::Int(i)));
        }
        if let Ok(f) = ob.extract::<f64>() {
            return Ok(Param(SqlValue::Float(f)));
        }
        if let Ok(s) = ob.extract::<String>() {
            return Ok(Param(SqlValue::Text(s)));
        }
        Err(PyValueError::new_err(format!(
            "params: a value of type {} cannot be bound; use None, bool, int, float or str",
            ob.get_type().name()?
        )))
    }
}

fn rendered(query: String, params: Vec<Param>) -> RenderedSql {
    RenderedSql {
        text: query,
        params: params.into_iter().map(|p| p.0).collect(),
    }
}

fn partition(partition_on: Option<String>, partitions: u32) -> PyResult<Option<PartitionSpec>> {
    match partition_on {
        None if partitions > 1 => Err(PyValueError::new_err(
            "partitions: more than 1 needs partition_on (an integer column of the query)",
        )),
        None => Ok(None),
        Some(_) if partitions == 0 => Err(PyValueError::new_err("partitions: must be at least 1")),
        Some(column) => Ok(Some(PartitionSpec { column, partitions })),
    }
}

/// The batches of one extraction, converted to the output type policy.
struct Batches {
    /// The runtime the stream's tasks run on (taken once, not per batch).
    runtime: Arc<tokio::runtime::Runtime>,
    schema: SchemaRef,
    first: Option<RecordBatch>,
    stream: SendableRecordBatchStream,
    convert: OutputSchema,
}

impl Iterator for Batches {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(batch) = self.first.take() {
            return Some(Ok(batch));
        }
        // pyarrow calls this without the GIL, on a thread that is not the runtime's.
        let next = self.runtime.block_on(self.stream.next())?;
        Some(
            next.map_err(|e| ArrowError::ExternalError(Box::new(e)))
                .and_then(|batch| {
                    self.convert
                        .convert(&batch)
                        .map_err(|e| ArrowError::ExternalError(Box::new(e)))
                }),
        )
    }
}

impl RecordBatchReader for Batches {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

/// Opens the query (connect, describe, first batch) and returns its batches.
async fn open(
    connection: &Connection,
    sql: RenderedSql,
    partition: Option<PartitionSpec>,
    batch_size: Option<usize>,
) -> bridge::Result<Batches> {
    let source = SqlServerSource::query(
        STEP,
        connection.settings.clone(),
        sql,
        partition,
        batch_size,
    );
    let ctx = SessionContext::new();
    let provider = source.open(&ctx).await?;
    let step_error =
        |e: deltalake::datafusion::error::DataFusionError| bridge::Error::step_from(STEP, e);
    let mut stream = ctx
        .read_table(provider)
        .map_err(step_error)?
        .execute_stream()
        .await
        .map_err(step_error)?;
    let mut convert = OutputSchema::plan(
        STEP,
        &stream.schema(),
        Target::Parquet,
        SubMicrosecond::Truncate,
    )?;
    let first = match stream.next().await {
        Some(batch) => Some(convert.convert(&batch.map_err(unwrap_step)?)?),
        None => None,
    };
    Ok(Batches {
        runtime: runtime(),
        schema: convert.schema(),
        first,
        stream,
        convert,
    })
}

/// A source's own error when DataFusion carries one, else the DataFusion error as the step's.
fn unwrap_step(e: deltalake::datafusion::error::DataFusionError) -> bridge::Error {
    use deltalake::datafusion::error::DataFusionError;
    match e {
        DataFusionError::External(inner) => match inner.downcast::<bridge::Error>() {
            Ok(bridge_error) => *bridge_error,
            Err(other) => bridge::Error::step_from(STEP, DataFusionError::External(other)),
        },
        other => bridge::Error::step_from(STEP, other),
    }
}

#[pymethods]
impl Connection {
    /// Runs `query` with `params` bound as `@P1`, `@P2`, ...; with `partition_on`, reads
    /// `partitions` key ranges of that integer column on as many connections at once.
    #[pyo3(signature = (query, params=Vec::new(), partition_on=None, partitions=1, batch_size=None))]
    fn extract(
        &self,
        py: Python<'_>,
        query: String,
        params: Vec<Param>,
        partition_on: Option<String>,
        partitions: u32,
        batch_size: Option<usize>,
    ) -> PyResult<PyArrowType<Box<dyn RecordBatchReader + Send>>> {
        let partition = partition(partition_on, partitions)?;
        let sql = rendered(query, params);
        let batches = py
            .detach(|| runtime().block_on(open(self, sql, partition, batch_size)))
            .map_err(to_py)?;
        Ok(PyArrowType(Box::new(batches)))
    }

    /// The query of each key range (`[(sql, params), ...]`), for readers elsewhere (Spark
    /// executors): the ranges of `partition_on` split into at most `partitions`.
    #[pyo3(signature = (query, params=Vec::new(), partition_on=String::new(), partitions=1))]
    fn partition_queries(
        &self,
        py: Python<'_>,
        query: String,
        params: Vec<Param>,
        partition_on: String,
        partitions: u32,
    ) -> PyResult<Vec<(String, Vec<Py<PyAny>>)>> {
        let partition = partition(Some(partition_on), partitions)?;
        let source = SqlServerSource::query(
            STEP,
            self.settings.clone(),
            rendered(query, params),
            partition,
            None,
        );
        let queries = py
            .detach(|| runtime().block_on(source.partition_sql()))
            .map_err(to_py)?;
        queries
            .into_iter()
            .map(|q| {
                let values = q
                    .params
                    .iter()
                    .map(|v| value_to_py(py, v))
                    .collect::<PyResult<Vec<_>>>()?;
                Ok((q.text, values))
            })
            .collect()
    }
}

fn value_to_py(py: Python<'_>, value: &SqlValue) -> PyResult<Py<PyAny>> {
    Ok(match value {
        SqlValue::Null => py.None(),
        SqlValue::Bool(b) => b.into_pyobject(py)?.to_owned().into_any().unbind(),
        SqlValue::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        SqlValue::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
        SqlValue::Text(s) => s.into_pyobject(py)?.into_any().unbind(),
    })
}
