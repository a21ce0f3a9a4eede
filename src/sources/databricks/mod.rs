//! `databricks` source: a Unity Catalog table or a query run on a SQL warehouse through the
//! Statement Execution API; its Arrow result is streamed into the DAG one chunk at a time.
//!
//! Opening the source runs the statement (so a bad query or a missing table fails before any
//! sink writes) and keeps its result for the first scan; later scans run it again. The result's
//! columns are mapped to engine types by [`crate::databricks::types`] (the output type policy
//! in reverse: TIMESTAMP as `Timestamp(µs, "UTC")`, TIMESTAMP_NTZ without zone, TINYINT as
//! Int8, DECIMAL exactly...), declared at open and applied to every chunk; a column of a type
//! the bridge does not read (INTERVAL, ARRAY/MAP/STRUCT, VOID) fails the open, naming it and what
//! to select instead.

pub mod config;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::prelude::SessionContext;
use futures::TryStreamExt;

use crate::databricks::{DatabricksSettings, Disposition, StatementParam, TypedResult};
use crate::error::{Error, Result};
use crate::pipeline::plan::PlannedStep;
use crate::pipeline::render::RenderedSql;
use crate::sources::Source;
use crate::sql::{Dialect, SqlValue, quote_ident};
use config::{DatabricksSourceSpec, ResultDisposition};

/// Reads a query's result from a Databricks SQL warehouse.
#[derive(Debug, Clone)]
pub struct DatabricksSource {
    step: String,
    sql: RenderedSql,
    warehouse_id: Option<String>,
    disposition: Disposition,
    settings: DatabricksSettings,
    /// Where the step is declared, for configuration errors.
    location: crate::error::Location,
}

impl DatabricksSource {
    /// A Databricks source for a planned step; `settings` are the project's `databricks:` section.
    pub fn new(
        step: &PlannedStep,
        spec: &DatabricksSourceSpec,
        settings: DatabricksSettings,
    ) -> Result<Self> {
        let sql = step
            .sql
            .clone()
            .ok_or_else(|| Error::step(&step.id, "databricks source without SQL"))?;
        Ok(DatabricksSource {
            step: step.id.clone(),
            sql,
            warehouse_id: spec.warehouse_id.clone(),
            disposition: match spec.disposition {
                ResultDisposition::ExternalLinks => Disposition::ExternalLinks,
                ResultDisposition::Inline => Disposition::Inline,
            },
            settings,
            location: step.location.clone(),
        })
    }

    /// A whole table read outside a pipeline (the Python operator's write-back of a Unity
    /// Catalog table name, without Spark): `SELECT *` of the validated, quoted name, its result
    /// fetched as Arrow files. `name` stands for the step in messages.
    pub fn table(
        name: &str,
        table: &str,
        settings: DatabricksSettings,
        warehouse_id: Option<String>,
    ) -> Result<Self> {
        let quoted = quote_ident(table, Dialect::Databricks).map_err(|e| Error::step(name, e))?;
        Ok(DatabricksSource {
            step: name.to_string(),
            sql: RenderedSql {
                text: format!("SELECT * FROM {quoted}"),
                params: Vec::new(),
            },
            warehouse_id,
            disposition: Disposition::ExternalLinks,
            settings,
            location: crate::error::Location::default(),
        })
    }

    fn fail(&self, e: impl std::fmt::Display) -> Error {
        Error::step(&self.step, e)
    }
}

/// The statement's parameters: `:p1`, `:p2`... with the SQL type of each value.
pub fn statement_params(values: &[SqlValue]) -> Vec<StatementParam> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let name = format!("p{}", i + 1);
            match v {
                SqlValue::Null => StatementParam::typed(&name, "STRING", None),
                SqlValue::Bool(b) => StatementParam::typed(&name, "BOOLEAN", Some(b.to_string())),
                SqlValue::Int(n) => StatementParam::typed(&name, "BIGINT", Some(n.to_string())),
                SqlValue::Float(x) => StatementParam::typed(&name, "DOUBLE", Some(x.to_string())),
                SqlValue::Text(t) => StatementParam::string(&name, t.clone()),
            }
        })
        .collect()
}

/// Runs a source's statement: the client, the warehouse, and the finished statement with the
/// engine types of its columns.
async fn run_statement(source: &DatabricksSource) -> Result<TypedResult> {
    // At once: what to set when nothing is configured, or why the workspace cannot be reached.
    let client = crate::databricks::probe::open_client(&source.settings)
        .await
        .map_err(|e| e.into_error(&source.step))?;
    let warehouse = source
        .warehouse_id
        .clone()
        .or_else(|| client.warehouse_id().map(str::to_string))
        .ok_or_else(|| Error::Plan {
            location: source.location.clone(),
            message: format!(
                "step `{}`: no SQL warehouse: set `warehouse_id` on the source, `databricks.warehouse_id` in config/defaults.yaml, or DATABRICKS_WAREHOUSE_ID",
                source.step
            ),
        })?;
    client
        .execute_statement(
            &warehouse,
            &source.sql.text,
            &statement_params(&source.sql.params),
            source.disposition,
        )
        .await
        .and_then(super::super::databricks::statements::StatementResult::into_typed)
        .map_err(|e| source.fail(e))
}

#[async_trait]
impl Source for DatabricksSource {
    async fn open(&self, _ctx: &SessionContext) -> Result<Arc<dyn TableProvider>> {
        let result = run_statement(self).await?;
        tracing::info!(
            step = %self.step,
            statement = %result.statement_id(),
            rows = result.total_row_count(),
            "Databricks statement finished"
        );
        let schema = result.schema().clone();
        let partition = DatabricksPartition {
            source: self.clone(),
            schema: schema.clone(),
            first: Arc::new(Mutex::new(Some(result))),
        };
        let table =
            StreamingTable::try_new(schema, vec![Arc::new(partition)]).map_err(|e| self.fail(e))?;
        Ok(Arc::new(table))
    }
}

/// One scan: the result kept by `open`, then fresh runs of the statement.
#[derive(Debug)]
struct DatabricksPartition {
    source: DatabricksSource,
    schema: SchemaRef,
    first: Arc<Mutex<Option<TypedResult>>>,
}

impl PartitionStream for DatabricksPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let kept = self
            .first
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let source = self.source.clone();
        let expected = self.schema.clone();
        let external = |e: Error| DataFusionError::External(Box::new(e));
        let batches = futures::stream::once(async move {
            let result = match kept {
                Some(r) => r,
                None => run_statement(&source).await?,
            };
            if result.schema() != &expected {
                return Err(source.fail(format!(
                    "the result's columns changed since the statement was first run: {:?}",
                    result.columns().iter().map(|c| &c.name).collect::<Vec<_>>()
                )));
            }
            let step = source.step.clone();
            Ok(result.into_stream().map_err(move |e| Error::step(&step, e)))
        })
        .try_flatten()
        .map_err(external);
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}
