//! Source kinds: each one turns a step's configuration into a DataFusion table that streams rows.
//! One module per kind behind the [`Source`] trait; SQL Server and Databricks plug in the same way.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::prelude::SessionContext;

use crate::error::{Error, Result};
use crate::pipeline::plan::PlannedStep;
use crate::pipeline::project::Project;
use crate::pipeline::run::RunInfo;
use crate::pipeline::spec::SourceSpec;

pub mod csv;
pub mod databricks;
pub mod delta;
pub mod parquet;
pub mod sqlite;
pub mod sqlserver;

/// A readable table: opening it checks it exists and learns its schema, reading it streams batches.
#[async_trait]
pub trait Source: Send + Sync + Debug {
    /// Opens the source as a table provider. Each scan of the provider reads the source again.
    async fn open(&self, ctx: &SessionContext) -> Result<Arc<dyn TableProvider>>;

    /// Called once the run has committed (incremental sources record their watermark here).
    async fn after_commit(&self) -> Result<()> {
        Ok(())
    }
}

/// Makes the session read Parquet INT96 timestamps, Spark's default encoding of `TIMESTAMP`
/// (`spark.sql.parquet.outputTimestampType=INT96`, also in Delta tables Spark writes), as
/// Timestamp(µs, "UTC"), which is Spark's `TIMESTAMP`: DataFusion's default, nanoseconds, holds
/// only 1677..2262 and wraps silently outside it (`0001-01-01` comes back as a wrong date).
/// Only INT96 columns are affected; the `parquet` and `delta` sources call it before they read.
pub(crate) fn read_int96_as_spark(ctx: &SessionContext) {
    let state = ctx.state_ref();
    let mut state = state.write();
    let parquet = &mut state.config_mut().options_mut().execution.parquet;
    if parquet.coerce_int96.is_none() {
        parquet.coerce_int96 = Some("us".to_string());
        parquet.coerce_int96_tz = Some("UTC".to_string());
    }
}

/// Builds the source of a planned step; `sub_microsecond` is what the sinks it feeds do with
/// timestamp digits below the microsecond ([`crate::pipeline::plan::Plan::sub_microsecond_for`]).
pub fn build(
    project: &Project,
    step: &PlannedStep,
    run: &RunInfo,
    sub_microsecond: crate::output_types::SubMicrosecond,
) -> Result<Box<dyn Source>> {
    let spec = step
        .spec
        .source
        .as_ref()
        .ok_or_else(|| Error::step(&step.id, "not a source step"))?;
    Ok(match spec {
        SourceSpec::Sqlite(s) => Box::new(sqlite::SqliteSource::new(project, step, s)?),
        SourceSpec::Parquet(p) => Box::new(parquet::ParquetSource::new(project, &step.id, p)),
        SourceSpec::Csv(c) => Box::new(csv::CsvSource::new(project, &step.id, c)?),
        SourceSpec::Delta(d) => Box::new(delta::DeltaSource::new(project, &step.id, d)),
        SourceSpec::Databricks(d) => Box::new(databricks::DatabricksSource::new(
            step,
            d,
            project.databricks_settings()?,
        )?),
        SourceSpec::Sqlserver(s) => Box::new(sqlserver::SqlServerSource::new(
            step,
            s,
            project.sqlserver_settings()?,
            project.root(),
            run,
            sub_microsecond,
        )?),
    })
}

/// The sending end of a [`batch_channel`].
pub(crate) type BatchSender = tokio::sync::mpsc::Sender<
    std::result::Result<
        deltalake::arrow::array::RecordBatch,
        deltalake::datafusion::error::DataFusionError,
    >,
>;

/// A bounded channel (two batches in flight) whose receiving end is a record batch stream: the
/// producer (a query reading rows) can never run ahead of the consumer by more than that.
pub(crate) fn batch_channel(
    schema: deltalake::arrow::datatypes::SchemaRef,
) -> (
    BatchSender,
    deltalake::datafusion::execution::SendableRecordBatchStream,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let adapter =
        deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, stream);
    (tx, Box::pin(adapter))
}
