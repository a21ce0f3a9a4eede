//! `sqlserver` source: a rendered query run with bound parameters (sp_executesql), streamed into
//! Arrow batches; optionally split into N key ranges read on N pooled connections.
//!
//! The schema comes from `sp_describe_first_result_set` before any row is read, so types are the
//! declared ones (`decimal(18,4)` stays Decimal128(18,4)); see [`crate::mssql::types`] for the
//! mapping. Range partitioning wraps the query as a derived table, so the query may not end with
//! `ORDER BY` (SQL Server refuses it there).

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::array::{ArrayRef, RecordBatch};
use deltalake::arrow::datatypes::{Field, Schema, SchemaRef};
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::prelude::SessionContext;
use futures::TryStreamExt;

use crate::error::{Error, Result};
use crate::mssql::types::{ColumnBuilder, arrow_type};
use crate::mssql::{
    MssqlError, Phase, Pool, SqlServerSettings, bind, nstring_literal, param_declarations,
};
use crate::pipeline::plan::PlannedStep;
use crate::pipeline::render::RenderedSql;
use crate::pipeline::spec::{PartitionSpec, SqlServerSourceSpec};
use crate::sources::Source;
use crate::sources::sqlite::DEFAULT_BATCH_SIZE;
use crate::sql::{Dialect, SqlValue, quote_ident};

/// Streams a SQL Server query.
#[derive(Debug)]
pub struct SqlServerSource {
    step: String,
    settings: SqlServerSettings,
    sql: RenderedSql,
    batch_size: usize,
    partition: Option<PartitionSpec>,
}

impl SqlServerSource {
    /// A SQL Server source for a planned step; `settings` are those of `config/` and the environment.
    pub fn new(
        step: &PlannedStep,
        spec: &SqlServerSourceSpec,
        settings: SqlServerSettings,
    ) -> Result<Self> {
        let sql = step
            .sql
            .clone()
            .ok_or_else(|| Error::step(&step.id, "sqlserver source without SQL"))?;
        let settings = match &spec.connection {
            Some(over) => settings.merged(over),
            None => settings,
        };
        Ok(SqlServerSource {
            step: step.id.clone(),
            settings,
            sql,
            batch_size: spec.batch_size.unwrap_or(DEFAULT_BATCH_SIZE).max(1),
            partition: spec.partition.clone(),
        })
    }

    fn fail(&self, e: impl std::fmt::Display) -> Error {
        Error::step(&self.step, e)
    }

    /// Column names and types of the query, without running it.
    async fn describe(&self, pool: &Pool) -> Result<SchemaRef> {
        let target = self.settings.describe();
        let mut conn = pool.get().await.map_err(|e| self.fail(e))?;
        let mut batch = format!(
            "EXEC sp_describe_first_result_set @tsql = {}",
            nstring_literal(&self.sql.text)
        );
        if !self.sql.params.is_empty() {
            batch.push_str(&format!(
                ", @params = {}",
                nstring_literal(&param_declarations(&self.sql.params))
            ));
        }
        let rows = conn
            .simple_query(batch)
            .await
            .map_err(|e| self.fail(MssqlError::from_tiberius(Phase::Query, &target, &e)))?
            .into_first_result()
            .await
            .map_err(|e| self.fail(MssqlError::from_tiberius(Phase::Query, &target, &e)))?;
        let mut fields = Vec::with_capacity(rows.len());
        for row in rows {
            let hidden: Option<bool> = row.get("is_hidden");
            if hidden == Some(true) {
                continue;
            }
            let name: Option<&str> = row.get("name");
            let type_name: Option<&str> = row.get("system_type_name");
            let nullable: Option<bool> = row.get("is_nullable");
            let name = name
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("column{}", fields.len() + 1));
            let type_name = type_name.unwrap_or("?");
            let data_type = arrow_type(type_name).ok_or_else(|| {
                self.fail(format!(
                    "column `{name}` has type {type_name}, which the bridge cannot map to Arrow; CAST it in the query"
                ))
            })?;
            fields.push(Field::new(name, data_type, nullable.unwrap_or(true)));
        }
        if fields.is_empty() {
            return Err(self.fail("the query returns no result set"));
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    /// The queries of each partition: the query itself, or one key range each.
    async fn partition_queries(&self, pool: &Pool) -> Result<Vec<RenderedSql>> {
        let Some(part) = &self.partition else {
            return Ok(vec![self.sql.clone()]);
        };
        let column = quote_ident(&part.column, Dialect::SqlServer).map_err(|e| self.fail(e))?;
        let target = self.settings.describe();
        let range_sql = format!(
            "SELECT CAST(MIN({column}) AS bigint), CAST(MAX({column}) AS bigint) FROM ({}) AS bridge_range",
            self.sql.text
        );
        let mut conn = pool.get().await.map_err(|e| self.fail(e))?;
        let mut query = tiberius::Query::new(range_sql);
        for p in &self.sql.params {
            bind(&mut query, p);
        }
        let row = query
            .query(&mut conn.client)
            .await
            .map_err(|e| self.fail(MssqlError::from_tiberius(Phase::Query, &target, &e)))?
            .into_row()
            .await
            .map_err(|e| self.fail(MssqlError::from_tiberius(Phase::Query, &target, &e)))?;
        let (min, max): (Option<i64>, Option<i64>) =
            row.map(|r| (r.get(0), r.get(1))).unwrap_or((None, None));
        let n = part.partitions.max(1) as i64;
        let (min, max) = (min.unwrap_or(0), max.unwrap_or(0));
        let width = ((max - min) / n + 1).max(1);
        let base = self.sql.params.len();
        let mut queries = Vec::new();
        for i in 0..n {
            let lo = min + i * width;
            let hi = if i == n - 1 { i64::MAX } else { lo + width };
            let nulls = if i == 0 {
                format!(" OR {column} IS NULL")
            } else {
                String::new()
            };
            let text = format!(
                "SELECT * FROM ({}) AS bridge_part WHERE ({column} >= @P{} AND {column} < @P{}){nulls}",
                self.sql.text,
                base + 1,
                base + 2
            );
            let mut params = self.sql.params.clone();
            params.push(SqlValue::Int(lo));
            params.push(SqlValue::Int(hi));
            queries.push(RenderedSql { text, params });
            if hi == i64::MAX || lo > max {
                break;
            }
        }
        Ok(queries)
    }
}

#[async_trait]
impl Source for SqlServerSource {
    async fn open(&self, _ctx: &SessionContext) -> Result<Arc<dyn TableProvider>> {
        let pool = crate::mssql::pool(&self.settings);
        let schema = self.describe(&pool).await?;
        let partitions: Vec<Arc<dyn PartitionStream>> = self
            .partition_queries(&pool)
            .await?
            .into_iter()
            .map(|sql| {
                Arc::new(SqlServerPartition {
                    step: self.step.clone(),
                    target: self.settings.describe(),
                    pool: pool.clone(),
                    sql,
                    schema: schema.clone(),
                    batch_size: self.batch_size,
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let table = StreamingTable::try_new(schema, partitions).map_err(|e| self.fail(e))?;
        Ok(Arc::new(table))
    }
}

/// One query (or key range) read on one pooled connection.
struct SqlServerPartition {
    step: String,
    target: String,
    pool: Pool,
    sql: RenderedSql,
    schema: SchemaRef,
    batch_size: usize,
}

impl std::fmt::Debug for SqlServerPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlServerPartition")
            .field("step", &self.step)
            .field("sql", &self.sql.text)
            .finish()
    }
}

impl PartitionStream for SqlServerPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, DataFusionError>>(2);
        let pool = self.pool.clone();
        let sql = self.sql.clone();
        let schema = self.schema.clone();
        let batch_size = self.batch_size;
        let step = self.step.clone();
        let target = self.target.clone();
        tokio::spawn(async move {
            let result = stream_rows(&pool, &sql, &schema, batch_size, &step, &target, &tx).await;
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

async fn stream_rows(
    pool: &Pool,
    sql: &RenderedSql,
    schema: &SchemaRef,
    batch_size: usize,
    step: &str,
    target: &str,
    tx: &tokio::sync::mpsc::Sender<Result<RecordBatch, DataFusionError>>,
) -> Result<(), DataFusionError> {
    let tds = |e: tiberius::error::Error| {
        DataFusionError::External(Box::new(MssqlError::from_tiberius(
            Phase::Query,
            target,
            &e,
        )))
    };
    let mut conn = pool.get().await.map_err(|e| {
        DataFusionError::External(Box::new(match e {
            bb8::RunError::User(e) => e,
            bb8::RunError::TimedOut => MssqlError {
                phase: Phase::Tcp,
                target: target.to_string(),
                message: "timed out waiting for a pooled connection".into(),
                code: None,
                transient: true,
            },
        }))
    })?;
    let mut query = tiberius::Query::new(sql.text.clone());
    for p in &sql.params {
        bind(&mut query, p);
    }
    conn.in_doubt = true;
    let mut rows = query
        .query(&mut conn.client)
        .await
        .map_err(tds)?
        .into_row_stream();
    let mut columns: Vec<ColumnBuilder> = schema
        .fields()
        .iter()
        .map(|f| ColumnBuilder::new(f.data_type(), batch_size))
        .collect();
    let mut in_batch = 0usize;
    let mut row_number = 0u64;
    while let Some(row) = rows.try_next().await.map_err(tds)? {
        row_number += 1;
        for (i, value) in row.into_iter().enumerate() {
            let column = columns.get_mut(i).ok_or_else(|| {
                DataFusionError::Execution(format!(
                    "step `{step}`: the query returned more columns than it described"
                ))
            })?;
            column.append(value).map_err(|message| {
                DataFusionError::Execution(format!(
                    "step `{step}`: column `{}` row {row_number}: {message}",
                    schema.field(i).name()
                ))
            })?;
        }
        in_batch += 1;
        if in_batch == batch_size {
            let arrays: Vec<ArrayRef> = columns.iter_mut().map(ColumnBuilder::finish).collect();
            if tx
                .send(Ok(RecordBatch::try_new(schema.clone(), arrays)?))
                .await
                .is_err()
            {
                return Ok(());
            }
            in_batch = 0;
        }
    }
    drop(rows);
    conn.in_doubt = false;
    if in_batch > 0 {
        let arrays: Vec<ArrayRef> = columns.iter_mut().map(ColumnBuilder::finish).collect();
        let _ = tx
            .send(Ok(RecordBatch::try_new(schema.clone(), arrays)?))
            .await;
    }
    Ok(())
}
