//! Source kinds: each one turns a step's configuration into a DataFusion table that streams rows.
//! One folder per kind: its configuration ([`SourceConfig`], the struct behind `type:`) checks
//! itself, declares what it reads and builds the running [`Source`]; `CONTRIBUTING.md` has the
//! recipe for a new kind.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::prelude::SessionContext;

use crate::error::{Error, Result};
use crate::output_types::SubMicrosecond;
use crate::pipeline::plan::PlannedStep;
use crate::pipeline::project::Project;
use crate::pipeline::resources::{Declaring, ResourceContext};
use crate::pipeline::run::RunInfo;
use crate::pipeline::spec::FieldError;
use crate::sql::Dialect;

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

/// What a source kind's configuration (the struct behind its `type:` in a pipeline file) does:
/// check itself, say what it reads, and build the running [`Source`]. Only [`build`] and
/// [`resources`] are required; the rest have defaults for kinds that take no SQL and name no
/// columns.
///
/// [`build`]: SourceConfig::build
/// [`resources`]: SourceConfig::resources
pub trait SourceConfig: Send + Sync + Debug {
    /// The SQL the step runs, for kinds that read with a query: [`Plan`] renders it for the
    /// kind's dialect. `None` (the default) for kinds that read files or tables.
    ///
    /// [`Plan`]: crate::pipeline::plan::Plan
    fn query(&self) -> Option<QueryText<'_>> {
        None
    }

    /// Checks the rendered fields that need no I/O (column names, relative paths); the error
    /// names the field. `bridge validate` refuses what this refuses.
    fn check(&self) -> std::result::Result<(), FieldError> {
        Ok(())
    }

    /// What the step reads (and creates): authorisation and conflict checks use only this.
    fn resources(&self, cx: &ResourceContext<'_>) -> Declaring;

    /// Builds the running source.
    fn build(&self, cx: &SourceContext<'_>) -> Result<Box<dyn Source>>;

    /// What an incremental source resumes from, for `bridge plan`: its mode and the saved
    /// position (`None` for kinds that read everything each run).
    fn incremental_state(&self, _cx: &StateContext<'_>) -> Result<Option<String>> {
        Ok(None)
    }
}

/// Where a source's saved state between runs is kept, and whose it is.
pub struct StateContext<'a> {
    /// The project's state store.
    pub store: &'a crate::pipeline::state::WatermarkStore,
    pub pipeline: &'a str,
    pub country: Option<&'a str>,
    pub step: &'a str,
}

/// Everything a source kind needs to build its running [`Source`].
pub struct SourceContext<'a> {
    /// The project (root, settings, state).
    pub project: &'a Project,
    /// The planned step: its id, rendered SQL and location.
    pub step: &'a PlannedStep,
    /// The run (pipeline, country, run id).
    pub run: &'a RunInfo,
    /// What the sinks this source feeds do with timestamp digits below the microsecond
    /// ([`crate::pipeline::plan::Plan::sub_microsecond_for`]).
    pub sub_microsecond: SubMicrosecond,
}

/// How a query source names what it reads: exactly one of a SQL file (`query`), inline SQL
/// (`sql`) or a whole table (`table`), in the kind's dialect.
#[derive(Debug, Clone, Copy)]
pub struct QueryText<'a> {
    /// The kind's name, for messages (`sqlserver`).
    pub kind: &'static str,
    /// The dialect the SQL is rendered for (placeholders, identifier quoting).
    pub dialect: Dialect,
    /// A SQL file under `queries/`.
    pub query: Option<&'a str>,
    /// Inline SQL.
    pub sql: Option<&'a str>,
    /// A table read whole.
    pub table: Option<&'a str>,
}

impl<'a> QueryText<'a> {
    /// The query fields of a kind's configuration.
    pub fn new(
        kind: &'static str,
        dialect: Dialect,
        query: &'a Option<String>,
        sql: &'a Option<String>,
        table: &'a Option<String>,
    ) -> Self {
        QueryText {
            kind,
            dialect,
            query: query.as_deref(),
            sql: sql.as_deref(),
            table: table.as_deref(),
        }
    }
}

/// Builds the source of a planned step; `sub_microsecond` is what the sinks it feeds do with
/// timestamp digits below the microsecond ([`crate::pipeline::plan::Plan::sub_microsecond_for`]).
pub fn build(
    project: &Project,
    step: &PlannedStep,
    run: &RunInfo,
    sub_microsecond: SubMicrosecond,
) -> Result<Box<dyn Source>> {
    let spec = step
        .spec
        .source
        .as_ref()
        .ok_or_else(|| Error::step(&step.id, "not a source step"))?;
    spec.config().build(&SourceContext {
        project,
        step,
        run,
        sub_microsecond,
    })
}

/// The sending end of a [`batch_channel`].
pub type BatchSender = tokio::sync::mpsc::Sender<
    std::result::Result<
        deltalake::arrow::array::RecordBatch,
        deltalake::datafusion::error::DataFusionError,
    >,
>;

/// A bounded channel (two batches in flight) whose receiving end is a record batch stream: the
/// producer (a query reading rows) can never run ahead of the consumer by more than that.
pub fn batch_channel(
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
