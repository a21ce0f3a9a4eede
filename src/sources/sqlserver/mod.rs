//! `sqlserver` source: a rendered query run with bound parameters (sp_executesql), streamed into
//! Arrow batches; optionally split into N key ranges read on N connections. Rows are read with
//! `mssql-tds` ([`crate::mssql::arrow_reader`]) unless `read_driver: tiberius`; change tracking's
//! snapshot reads use a pooled tiberius connection, whose transaction they run in.
//!
//! The schema comes from `sp_describe_first_result_set` before any row is read, so types are the
//! declared ones (`decimal(18,4)` stays Decimal128(18,4)); see [`crate::mssql::types`] for the
//! mapping. Range partitioning wraps the query as a derived table, so the query may not end with
//! `ORDER BY` (SQL Server refuses it there).

pub mod change_tracking;
pub mod config;

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::array::{ArrayRef, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::functions_aggregate::min_max::MaxAccumulator;
use deltalake::datafusion::logical_expr::Accumulator;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::mssql::arrow_reader::{ArrowReader, ReadError, RowInto};
use crate::mssql::settings::ReadDriver;
use crate::mssql::types::{
    AppendError, ColumnBuilder, OFFSET_SUFFIX, arrow_type, truncated_by_column,
};
use crate::mssql::{
    MssqlError, Phase, Pool, SqlServerSettings, bind, nstring_literal, param_declarations,
};
use crate::output_types::{SubMicrosecond, Truncations};
use crate::pipeline::plan::PlannedStep;
use crate::pipeline::render::RenderedSql;
use crate::pipeline::run::RunInfo;
use crate::pipeline::state::WatermarkStore;
use crate::sources::sqlite::DEFAULT_BATCH_SIZE;
use crate::sources::{BatchSender, Source, batch_channel};
use crate::sql::{Dialect, SqlValue, quote_ident};
use change_tracking::{ChangeTracking, SnapshotRead};
use config::{IncrementalMode, PartitionSpec, SqlServerSourceSpec};

/// Streams a SQL Server query.
#[derive(Debug)]
pub struct SqlServerSource {
    step: String,
    /// Where the step is defined, for configuration errors.
    location: crate::error::Location,
    settings: SqlServerSettings,
    sql: RenderedSql,
    batch_size: usize,
    partition: Option<PartitionSpec>,
    incremental: Option<Incremental>,
    /// `incremental: {mode: change_tracking}`.
    change_tracking: Option<ChangeTracking>,
    /// What `datetime2(7)` digits below the microsecond become (from the sinks it feeds).
    sub_microsecond: SubMicrosecond,
    keep_offsets: bool,
    truncations: Arc<Truncations>,
}

/// One column of the query's result as SQL Server sends it.
#[derive(Debug, Clone)]
struct ValueColumn {
    name: String,
    data_type: deltalake::arrow::datatypes::DataType,
    /// A `datetimeoffset` whose offset is kept in a column of its own.
    keep_offset: bool,
    /// A type `mssql-tds` 0.1.0 misreads, so the query is read with tiberius: `image`, whose
    /// empty (not NULL) values it returns as NULL (found by tests/spark.rs).
    needs_tiberius: bool,
}

/// The highest value of the incremental column seen by this run.
type SharedMax = Arc<Mutex<Option<ScalarValue>>>;

/// The highest value of a `datetime2(7)` incremental column with its digits below the
/// microsecond (nanoseconds since 1970), which the Arrow column does not keep.
type ExactMax = Arc<Mutex<Option<i128>>>;

/// Where a scan folds the incremental column's values: its index in the schema, the Arrow
/// maximum, and the exact maximum of a timestamp column with the index of its builder.
type Watermark = (usize, SharedMax, ExactMax, usize);

/// Watermark extraction state of one source.
#[derive(Debug)]
struct Incremental {
    /// The ever-increasing column.
    column: String,
    /// The lower bound of the first run.
    initial: Option<String>,
    store: WatermarkStore,
    run: RunInfo,
    max: SharedMax,
    exact: ExactMax,
}

impl SqlServerSource {
    /// A SQL Server source for a planned step; `settings` are those of `config/` and the environment.
    pub fn new(
        step: &PlannedStep,
        spec: &SqlServerSourceSpec,
        settings: SqlServerSettings,
        project_root: &std::path::Path,
        run: &RunInfo,
        sub_microsecond: SubMicrosecond,
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
            location: step.location.clone(),
            settings,
            sql,
            batch_size: spec.batch_size.unwrap_or(DEFAULT_BATCH_SIZE).max(1),
            partition: spec.partition.clone(),
            incremental: spec.incremental.as_ref().and_then(|inc| {
                Some(Incremental {
                    column: inc.watermark_column()?.to_string(),
                    initial: inc.initial.clone(),
                    store: WatermarkStore::for_project(project_root),
                    run: run.clone(),
                    max: Arc::default(),
                    exact: Arc::default(),
                })
            }),
            change_tracking: match (&spec.incremental, &spec.table) {
                (Some(inc), Some(table)) if inc.mode == IncrementalMode::ChangeTracking => Some(
                    ChangeTracking::new(
                        &step.id,
                        table,
                        inc,
                        WatermarkStore::for_project(project_root),
                        run,
                    )
                    .map_err(|e| Error::step_from(&step.id, e))?,
                ),
                _ => None,
            },
            sub_microsecond,
            keep_offsets: spec.keep_offsets,
            truncations: Arc::clone(&run.truncations),
        })
    }

    /// A query read outside a pipeline (the Python operator): `sql` with its bound values,
    /// optionally split into key ranges, typed as a pipeline's source is (digits below the
    /// microsecond dropped). `name` stands for the step in messages.
    pub fn query(
        name: &str,
        settings: SqlServerSettings,
        sql: RenderedSql,
        partition: Option<PartitionSpec>,
        batch_size: Option<usize>,
    ) -> Self {
        SqlServerSource {
            step: name.to_string(),
            location: crate::error::Location::default(),
            settings,
            sql,
            batch_size: batch_size.unwrap_or(DEFAULT_BATCH_SIZE).max(1),
            partition,
            incremental: None,
            change_tracking: None,
            sub_microsecond: SubMicrosecond::Truncate,
            keep_offsets: false,
            truncations: Arc::new(Truncations::new(Default::default())),
        }
    }

    /// The query of each key range of the partitioning (the query itself when there is none),
    /// with its bound values: what each reader runs when the ranges are read elsewhere (the
    /// operator's Spark executors).
    pub async fn partition_sql(&self) -> Result<Vec<RenderedSql>> {
        let pool = crate::mssql::open_pool(&self.settings)
            .await
            .map_err(|e| self.fail_sql(e))?;
        let sql = self.effective_sql()?;
        self.partition_queries(&pool, &sql).await
    }

    fn fail(&self, e: impl std::fmt::Display) -> Error {
        Error::step(&self.step, e)
    }

    /// A SQL Server failure of this step, kept as the cause (callers tell a login failure from
    /// a refused query by it).
    fn fail_sql(&self, e: MssqlError) -> Error {
        Error::step_from(&self.step, e)
    }

    /// A pool that could not hand out a connection.
    fn fail_pool(&self, e: bb8::RunError<MssqlError>) -> Error {
        match e {
            bb8::RunError::User(e) => self.fail_sql(e),
            timeout @ bb8::RunError::TimedOut => self.fail(timeout),
        }
    }

    /// The query, restricted to rows past the last committed watermark for incremental sources.
    fn effective_sql(&self) -> Result<RenderedSql> {
        let Some(inc) = &self.incremental else {
            return Ok(self.sql.clone());
        };
        let last = inc
            .store
            .get(&inc.run.pipeline, inc.run.country.as_deref(), &self.step)?
            .or_else(|| inc.initial.clone());
        let Some(last) = last else {
            return Ok(self.sql.clone());
        };
        let column = quote_ident(&inc.column, Dialect::SqlServer).map_err(|e| self.fail(e))?;
        let mut params = self.sql.params.clone();
        params.push(SqlValue::Text(last));
        Ok(RenderedSql {
            text: format!(
                "SELECT * FROM ({}) AS bridge_incremental WHERE {column} > @P{}",
                self.sql.text,
                params.len()
            ),
            params,
        })
    }

    /// Column names and types of the query, without running it: the Arrow schema (with the
    /// offset columns `keep_offsets` adds) and the columns as SQL Server sends them.
    async fn describe(
        &self,
        pool: &Pool,
        sql: &RenderedSql,
    ) -> Result<(SchemaRef, Arc<Vec<ValueColumn>>)> {
        let target = self.settings.describe();
        let mut conn = pool.get().await.map_err(|e| self.fail_pool(e))?;
        let mut batch = format!(
            "EXEC sp_describe_first_result_set @tsql = {}",
            nstring_literal(&sql.text)
        );
        if !sql.params.is_empty() {
            batch.push_str(&format!(
                ", @params = {}",
                nstring_literal(&param_declarations(&sql.params))
            ));
        }
        let rows = conn
            .simple_query(batch)
            .await
            .map_err(|e| self.fail_sql(MssqlError::from_tiberius(Phase::Query, &target, &e)))?
            .into_first_result()
            .await
            .map_err(|e| self.fail_sql(MssqlError::from_tiberius(Phase::Query, &target, &e)))?;
        let mut fields = Vec::with_capacity(rows.len());
        let mut columns = Vec::with_capacity(rows.len());
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
            let data_type = arrow_type(type_name, self.sub_microsecond).map_err(|hint| {
                self.fail(format!(
                    "column `{name}` has type {type_name}, which Databricks cannot read; {hint}"
                ))
            })?;
            let keep_offset = self.keep_offsets
                && type_name
                    .trim()
                    .to_ascii_lowercase()
                    .starts_with("datetimeoffset");
            fields.push(Field::new(
                &name,
                data_type.clone(),
                nullable.unwrap_or(true),
            ));
            if keep_offset {
                fields.push(Field::new(
                    format!("{name}{OFFSET_SUFFIX}"),
                    deltalake::arrow::datatypes::DataType::Int16,
                    true,
                ));
            }
            let needs_tiberius = type_name.trim().eq_ignore_ascii_case("image");
            columns.push(ValueColumn {
                name,
                data_type,
                keep_offset,
                needs_tiberius,
            });
        }
        if fields.is_empty() {
            return Err(self.fail("the query returns no result set"));
        }
        Ok((Arc::new(Schema::new(fields)), Arc::new(columns)))
    }

    /// Opens a change-tracking read: checks the table, decides snapshot or changes, and reads
    /// it as one partition in a snapshot transaction. The schema is the table's (columns other
    /// than the key nullable: a deleted key has only its key) then `_change_op` and
    /// `_change_version`.
    async fn open_change_tracking(
        &self,
        ct: &ChangeTracking,
        pool: Pool,
    ) -> Result<Arc<dyn TableProvider>> {
        let target = self.settings.describe();
        let prepared = {
            let mut conn = pool.get().await.map_err(|e| self.fail_pool(e))?;
            ct.prepare(&mut conn, &target).await?
        };
        let (table_schema, table_columns) = self.describe(&pool, &self.sql).await?;
        let names: Vec<String> = table_columns.iter().map(|c| c.name.clone()).collect();
        let sql = ct.query(&prepared, &names)?;
        let is_key = |name: &str| {
            prepared
                .keys
                .iter()
                .any(|k| name == k || name.strip_suffix(OFFSET_SUFFIX) == Some(k.as_str()))
        };
        let mut fields: Vec<Field> = table_schema
            .fields()
            .iter()
            .map(|f| {
                let nullable = f.is_nullable() || !is_key(f.name());
                f.as_ref().clone().with_nullable(nullable)
            })
            .collect();
        let mut columns = table_columns.as_ref().clone();
        for (name, data_type) in [
            (crate::changes::OP_COLUMN, DataType::Utf8),
            (crate::changes::VERSION_COLUMN, DataType::Int64),
        ] {
            if names.iter().any(|n| n == name) {
                return Err(self.fail(format!(
                    "the table has a column `{name}`, which change tracking adds to every row; rename it in SQL Server"
                )));
            }
            fields.push(Field::new(name, data_type.clone(), false));
            columns.push(ValueColumn {
                name: name.to_string(),
                data_type,
                keep_offset: false,
                needs_tiberius: false,
            });
        }
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let partition = SqlServerPartition {
            step: self.step.clone(),
            target,
            pool,
            settings: self.settings.clone(),
            sql,
            schema: schema.clone(),
            columns: Arc::new(columns),
            batch_size: self.batch_size,
            watermark: None,
            sub_microsecond: self.sub_microsecond,
            truncations: (Arc::clone(&self.truncations), 0),
            snapshot: Some(ct.snapshot_read(&prepared.database)),
        };
        let table =
            StreamingTable::try_new(schema, vec![Arc::new(partition)]).map_err(|e| self.fail(e))?;
        Ok(Arc::new(table))
    }

    /// The queries of each partition: the query itself, or one key range each.
    async fn partition_queries(&self, pool: &Pool, sql: &RenderedSql) -> Result<Vec<RenderedSql>> {
        let Some(part) = &self.partition else {
            return Ok(vec![sql.clone()]);
        };
        let column = quote_ident(&part.column, Dialect::SqlServer).map_err(|e| self.fail(e))?;
        let target = self.settings.describe();
        let range_sql = format!(
            "SELECT CAST(MIN({column}) AS bigint), CAST(MAX({column}) AS bigint) FROM ({}) AS bridge_range",
            sql.text
        );
        let mut conn = pool.get().await.map_err(|e| self.fail_pool(e))?;
        let mut query = tiberius::Query::new(range_sql);
        for p in &sql.params {
            bind(&mut query, p);
        }
        let row = query
            .query(&mut conn.client)
            .await
            .map_err(|e| self.fail_sql(MssqlError::from_tiberius(Phase::Query, &target, &e)))?
            .into_row()
            .await
            .map_err(|e| self.fail_sql(MssqlError::from_tiberius(Phase::Query, &target, &e)))?;
        let (min, max): (Option<i64>, Option<i64>) =
            row.map(|r| (r.get(0), r.get(1))).unwrap_or((None, None));
        let bounds = partition_bounds(min.unwrap_or(0), max.unwrap_or(0), part.partitions);
        if bounds.is_empty() {
            return Ok(vec![sql.clone()]);
        }
        let mut queries = Vec::new();
        // Range i holds [bounds[i-1], bounds[i]): the first has no lower end (and takes the NULLs),
        // the last no upper end, so every row is read exactly once whatever its value.
        for i in 0..=bounds.len() {
            let mut params = sql.params.clone();
            let mut conditions = Vec::new();
            if i > 0 {
                params.push(SqlValue::Int(bounds[i - 1]));
                conditions.push(format!("{column} >= @P{}", params.len()));
            }
            if i < bounds.len() {
                params.push(SqlValue::Int(bounds[i]));
                conditions.push(format!("{column} < @P{}", params.len()));
            }
            let mut condition = format!("({})", conditions.join(" AND "));
            if i == 0 {
                condition = format!("{condition} OR {column} IS NULL");
            }
            let text = format!(
                "SELECT * FROM ({}) AS bridge_part WHERE {condition}",
                sql.text
            );
            queries.push(RenderedSql { text, params });
        }
        Ok(queries)
    }
}

/// The boundaries splitting the key range [min, max] into at most `partitions` ranges of equal
/// width: range 0 is below `bounds[0]`, range i is [bounds[i-1], bounds[i]), the last is from the
/// last bound up. Computed in i128, so keys anywhere in i64 (e.g. i64::MIN..=i64::MAX) neither
/// overflow nor get lost; every bound lies in (min, max], and there are fewer ranges than
/// `partitions` when the range has fewer values.
fn partition_bounds(min: i64, max: i64, partitions: u32) -> Vec<i64> {
    let (min, max) = (i128::from(min), i128::from(max.max(min)));
    let values = max - min + 1;
    let n = i128::from(partitions.max(1)).min(values);
    // Ceiling division: n ranges of `width` values cover the whole range.
    let width = (values + n - 1) / n;
    (1..n)
        .map(|i| min + i * width)
        .take_while(|bound| *bound <= max)
        .map(|bound| i64::try_from(bound).expect("a bound within [min, max] fits in i64"))
        .collect()
}

/// Folds a batch's values of the incremental column into the run's maximum.
fn observe_max(watermark: Option<&Watermark>, arrays: &[ArrayRef]) -> Result<(), DataFusionError> {
    let Some((index, max, ..)) = watermark else {
        return Ok(());
    };
    let array = &arrays[*index];
    let mut acc = MaxAccumulator::try_new(array.data_type())?;
    acc.update_batch(std::slice::from_ref(array))?;
    let batch_max = acc.evaluate()?;
    if batch_max.is_null() {
        return Ok(());
    }
    let mut max = max.lock().expect("watermark lock");
    if max
        .as_ref()
        .is_none_or(|m| batch_max.partial_cmp(m) == Some(std::cmp::Ordering::Greater))
    {
        *max = Some(batch_max);
    }
    Ok(())
}

#[async_trait]
impl Source for SqlServerSource {
    async fn after_commit(&self) -> Result<()> {
        if let Some(ct) = &self.change_tracking {
            return ct.save();
        }
        let Some(inc) = &self.incremental else {
            return Ok(());
        };
        let max = inc.max.lock().expect("watermark lock").clone();
        let exact = *inc.exact.lock().expect("watermark lock");
        if let Some(value) = max {
            // A maximum with digits below the microsecond (datetime2(7)) is written with all
            // seven digits, so the next run neither reads that row again nor skips its neighbours.
            let text = match exact {
                Some(ns) if ns.rem_euclid(1000) != 0 => crate::mssql::types::format_nanos(ns),
                _ => watermark_text(&value),
            };
            tracing::info!(step = %self.step, watermark = %text, "incremental watermark advanced");
            inc.store.set(
                &inc.run.pipeline,
                inc.run.country.as_deref(),
                &self.step,
                &text,
            )?;
        }
        Ok(())
    }

    async fn open(&self, _ctx: &SessionContext) -> Result<Arc<dyn TableProvider>> {
        let pool = crate::mssql::open_pool(&self.settings)
            .await
            .map_err(|e| match e.phase {
                // Nothing to connect to: a configuration error of this step (exit 2).
                crate::mssql::Phase::Config => Error::Plan {
                    location: self.location.clone(),
                    message: format!("step `{}`: {}", self.step, e.message),
                },
                _ => self.fail_sql(e),
            })?;
        if let Some(ct) = &self.change_tracking {
            return self.open_change_tracking(ct, pool).await;
        }
        let sql = self.effective_sql()?;
        let (schema, columns) = self.describe(&pool, &sql).await?;
        let watermark = match &self.incremental {
            Some(inc) => {
                let index = schema.index_of(&inc.column).map_err(|_| {
                    self.fail(format!(
                        "incremental.column: `{}` is not a column of the query",
                        inc.column
                    ))
                })?;
                let builder = columns
                    .iter()
                    .position(|c| c.name == inc.column)
                    .expect("a schema column is a value column");
                Some((index, Arc::clone(&inc.max), Arc::clone(&inc.exact), builder))
            }
            None => None,
        };
        let partitions: Vec<Arc<dyn PartitionStream>> = self
            .partition_queries(&pool, &sql)
            .await?
            .into_iter()
            .enumerate()
            .map(|(index, sql)| {
                Arc::new(SqlServerPartition {
                    step: self.step.clone(),
                    target: self.settings.describe(),
                    pool: pool.clone(),
                    settings: self.settings.clone(),
                    sql,
                    schema: schema.clone(),
                    columns: Arc::clone(&columns),
                    batch_size: self.batch_size,
                    watermark: watermark.clone(),
                    sub_microsecond: self.sub_microsecond,
                    truncations: (Arc::clone(&self.truncations), index),
                    snapshot: None,
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
    /// For reads on a connection of their own (`read_driver: mssql_tds`).
    settings: SqlServerSettings,
    sql: RenderedSql,
    schema: SchemaRef,
    columns: Arc<Vec<ValueColumn>>,
    batch_size: usize,
    /// The incremental column's index and the highest value seen, shared by all partitions.
    watermark: Option<Watermark>,
    sub_microsecond: SubMicrosecond,
    /// Where this partition (the index) records what it truncated.
    truncations: (Arc<Truncations>, usize),
    /// A change-tracking read: the query runs in a snapshot transaction.
    snapshot: Option<SnapshotRead>,
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
        let (tx, stream) = batch_channel(self.schema.clone());
        let pool = self.pool.clone();
        let settings = self.settings.clone();
        let sql = self.sql.clone();
        let read = Read {
            schema: self.schema.clone(),
            columns: Arc::clone(&self.columns),
            batch_size: self.batch_size,
            watermark: self.watermark.clone(),
            sub_microsecond: self.sub_microsecond,
            truncations: (Arc::clone(&self.truncations.0), self.truncations.1),
            snapshot: self.snapshot.clone(),
        };
        let step = self.step.clone();
        let target = self.target.clone();
        tokio::spawn(async move {
            let result = stream_rows((&pool, &settings), &sql, &read, (&step, &target), &tx).await;
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        stream
    }
}

/// How one partition's rows become batches.
struct Read {
    schema: SchemaRef,
    columns: Arc<Vec<ValueColumn>>,
    batch_size: usize,
    watermark: Option<Watermark>,
    sub_microsecond: SubMicrosecond,
    truncations: (Arc<Truncations>, usize),
    snapshot: Option<SnapshotRead>,
}

/// Reads one partition: with `mssql-tds` (its own connection) unless the settings ask for
/// tiberius, the read is a change-tracking snapshot (which runs in a pooled connection's
/// transaction) or a column has a type `mssql-tds` misreads.
async fn stream_rows(
    connection: (&Pool, &SqlServerSettings),
    sql: &RenderedSql,
    read: &Read,
    (step, target): (&str, &str),
    tx: &BatchSender,
) -> Result<(), DataFusionError> {
    let (pool, settings) = connection;
    let mut batches = Batches::new(read, step, tx);
    let open = if read.snapshot.is_none()
        && settings.read_driver.unwrap_or_default() == ReadDriver::MssqlTds
        && !read.columns.iter().any(|c| c.needs_tiberius)
    {
        read_mssql_tds(settings, sql, &mut batches).await?
    } else {
        read_tiberius(pool, sql, read, target, &mut batches).await?
    };
    if open {
        batches.finish().await?;
    }
    Ok(())
}

/// Reads the query with `mssql-tds`, whose decoder writes each value into its builder.
/// `Ok(false)`: the consumer went away.
async fn read_mssql_tds(
    settings: &SqlServerSettings,
    sql: &RenderedSql,
    batches: &mut Batches<'_>,
) -> Result<bool, DataFusionError> {
    let external = |e: MssqlError| DataFusionError::External(Box::new(e));
    let mut reader = ArrowReader::connect(settings).await.map_err(external)?;
    reader
        .query(&sql.text, &sql.params)
        .await
        .map_err(external)?;
    let mut text = String::with_capacity(256);
    loop {
        let mut row = RowInto::new(&mut batches.columns, &mut text);
        let more = match reader.next_row(&mut row).await {
            Ok(more) => more,
            Err(ReadError::Server(e)) => return Err(external(e)),
            Err(ReadError::Value { column, error }) => {
                return Err(batches.refused(column, &error));
            }
        };
        if !more {
            break;
        }
        if !batches.row_done().await? {
            return Ok(false);
        }
    }
    reader.finish().await.map_err(external)?;
    Ok(true)
}

/// Reads the query with tiberius on a pooled connection (in a snapshot transaction for
/// change tracking). `Ok(false)`: the consumer went away.
async fn read_tiberius(
    pool: &Pool,
    sql: &RenderedSql,
    read: &Read,
    target: &str,
    batches: &mut Batches<'_>,
) -> Result<bool, DataFusionError> {
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
            bb8::RunError::TimedOut => MssqlError::new(
                Phase::Tcp,
                target,
                "timed out waiting for a pooled connection",
                true,
            ),
        }))
    })?;
    conn.in_doubt = true;
    if let Some(snapshot) = &read.snapshot {
        snapshot
            .begin(&mut conn, target)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
    }
    let mut query = tiberius::Query::new(sql.text.clone());
    for p in &sql.params {
        bind(&mut query, p);
    }
    let mut rows = query
        .query(&mut conn.client)
        .await
        .map_err(tds)?
        .into_row_stream();
    while let Some(row) = rows.try_next().await.map_err(tds)? {
        for (i, value) in row.into_iter().enumerate() {
            let Some(column) = batches.columns.get_mut(i) else {
                return Err(DataFusionError::Execution(format!(
                    "step `{}`: the query returned more columns than it described",
                    batches.step
                )));
            };
            if let Err(error) = column.append(value) {
                return Err(batches.refused(i, &error));
            }
        }
        if !batches.row_done().await? {
            return Ok(false);
        }
    }
    drop(rows);
    if let Some(snapshot) = &read.snapshot {
        snapshot
            .end(&mut conn, target)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
    }
    conn.in_doubt = false;
    Ok(true)
}

/// The builders of one partition, cut into batches of `batch_size` rows as rows complete.
struct Batches<'a> {
    read: &'a Read,
    step: &'a str,
    tx: &'a BatchSender,
    columns: Vec<ColumnBuilder>,
    in_batch: usize,
    rows: u64,
}

impl<'a> Batches<'a> {
    fn new(read: &'a Read, step: &'a str, tx: &'a BatchSender) -> Self {
        let columns = read
            .columns
            .iter()
            .map(|c| {
                ColumnBuilder::new(
                    &c.data_type,
                    read.batch_size,
                    read.sub_microsecond,
                    c.keep_offset,
                )
            })
            .collect();
        Batches {
            read,
            step,
            tx,
            columns,
            in_batch: 0,
            rows: 0,
        }
    }

    /// The error of a value its column refused, naming the column and the row.
    fn refused(&self, column: usize, error: &AppendError) -> DataFusionError {
        DataFusionError::Execution(format!(
            "step `{}`: column `{}` row {}: {error}",
            self.step,
            self.read.columns[column].name,
            self.rows + 1
        ))
    }

    /// Takes the builders' values as one batch (and folds it into the watermark).
    fn take(&mut self) -> Result<RecordBatch, DataFusionError> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.read.schema.fields().len());
        for column in &mut self.columns {
            column.finish_into(&mut arrays);
        }
        observe_max(self.read.watermark.as_ref(), &arrays)?;
        self.in_batch = 0;
        Ok(RecordBatch::try_new(self.read.schema.clone(), arrays)?)
    }

    /// Counts a complete row and sends the batch once it is full; `Ok(false)` when the
    /// consumer has gone away.
    async fn row_done(&mut self) -> Result<bool, DataFusionError> {
        self.rows += 1;
        self.in_batch += 1;
        if self.in_batch < self.read.batch_size {
            return Ok(true);
        }
        let batch = self.take()?;
        Ok(self.tx.send(Ok(batch)).await.is_ok())
    }

    /// After the last row: the exact watermark, the truncation counts, then the last batch.
    async fn finish(mut self) -> Result<(), DataFusionError> {
        let read = self.read;
        if let Some((_, _, exact, builder)) = &read.watermark
            && let Some(ns) = self.columns[*builder].max_nanos()
        {
            let mut exact = exact.lock().expect("watermark lock");
            *exact = Some(exact.map_or(ns, |m| m.max(ns)));
        }
        let (truncations, index) = &read.truncations;
        truncations.set(
            self.step,
            *index,
            &truncated_by_column(read.columns.iter().map(|c| c.name.clone()), &self.columns),
        );
        if self.in_batch > 0 {
            let batch = self.take()?;
            let _ = self.tx.send(Ok(batch)).await;
        }
        Ok(())
    }
}

/// A watermark as SQL Server parses it back: numbers as digits, timestamps as
/// `YYYY-MM-DD HH:MM:SS[.fffffff]` (at most 7 decimals, trailing zeros dropped).
fn watermark_text(value: &ScalarValue) -> String {
    use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
    let text = value
        .to_array()
        .ok()
        .and_then(|array| {
            let formatter =
                ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default()).ok()?;
            Some(formatter.value(0).to_string())
        })
        .unwrap_or_else(|| value.to_string());
    if !matches!(
        value,
        ScalarValue::TimestampNanosecond(..) | ScalarValue::TimestampMicrosecond(..)
    ) {
        return text;
    }
    let text = text.replace('T', " ");
    let text = text.trim_end_matches('Z').to_string();
    match text.split_once('.') {
        Some((whole, fraction)) => {
            let fraction: String = fraction.chars().take(7).collect();
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                whole.to_string()
            } else {
                format!("{whole}.{fraction}")
            }
        }
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::partition_bounds;

    /// Which range of `bounds` a key falls in.
    fn range_of(bounds: &[i64], key: i64) -> usize {
        bounds.iter().take_while(|b| key >= **b).count()
    }

    #[test]
    fn bounds_split_the_whole_i64_range_without_overflow() {
        let bounds = partition_bounds(i64::MIN, i64::MAX, 4);
        assert_eq!(
            bounds,
            vec![-(1i64 << 62), 0, 1i64 << 62],
            "four ranges of 2^62 values each"
        );
        assert_eq!(range_of(&bounds, i64::MIN), 0);
        assert_eq!(range_of(&bounds, -1), 1);
        assert_eq!(range_of(&bounds, 0), 2);
        assert_eq!(range_of(&bounds, i64::MAX), 3);
    }

    #[test]
    fn bounds_near_the_extremes_keep_every_range_non_empty_and_ordered() {
        for (min, max, n) in [
            (i64::MAX - 2, i64::MAX, 8),
            (i64::MIN, i64::MIN + 5, 3),
            (i64::MIN, i64::MAX, 7),
            (-5, 5, 1),
            (3, 3, 4),
            (0, 1_000_000, 16),
        ] {
            let bounds = partition_bounds(min, max, n);
            assert!(bounds.len() < n as usize, "{min}..{max}/{n}: {bounds:?}");
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
            assert!(bounds.iter().all(|b| *b > min && *b <= max), "{bounds:?}");
        }
        assert_eq!(
            partition_bounds(i64::MAX - 2, i64::MAX, 8),
            vec![i64::MAX - 1, i64::MAX]
        );
        assert_eq!(partition_bounds(3, 3, 4), Vec::<i64>::new());
        assert_eq!(partition_bounds(0, 9, 3), vec![4, 8]);
    }

    #[test]
    fn every_key_falls_in_exactly_one_range() {
        let (min, max) = (i64::MAX - 100, i64::MAX);
        let bounds = partition_bounds(min, max, 6);
        let mut sizes = vec![0; bounds.len() + 1];
        for key in min..=max {
            sizes[range_of(&bounds, key)] += 1;
        }
        assert_eq!(sizes.iter().sum::<usize>(), 101);
        assert!(sizes.iter().all(|n| *n > 0), "{sizes:?}");
    }
}
