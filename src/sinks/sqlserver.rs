//! `sqlserver` sink: writes a step's rows into a SQL Server table (insert, upsert, delete, replace).
//! The whole write is one transaction on one connection; it commits only when the run commits.
//!
//! Rows always travel as a TDS bulk load (tiberius `bulk_insert`), converted from Arrow row by row
//! while the input streams; values never appear in SQL text and identifiers are validated and
//! quoted with [`quote_ident`].
//!
//! | mode | what runs inside the transaction |
//! |---|---|
//! | `insert` | bulk load into the table itself; through a staging temp table and `INSERT … SELECT` when tiberius cannot bulk-load the table directly (see below) |
//! | `upsert` | bulk load into `#bridge_stage_<id>` (the target's column types), refuse duplicate keys, `UPDATE t … FROM t JOIN stage` on `primary_keys`, then `INSERT` the rows whose keys are not in the table; refused when the keys are not unique in the table (see [Caps](#caps)) |
//! | `update` | as `upsert` without the `INSERT`: rows whose keys match take the input's other columns, input rows without a match are ignored; the rows written are the rows updated; refused when the keys are not unique in the table |
//! | `delete` | key columns bulk-loaded into the staging table, `DELETE t FROM t JOIN stage`, the rows it removed checked against `max_delete_rows` |
//! | `replace` | `DELETE FROM` the table, the rows it removed checked against `max_delete_rows`, then as `insert` |
//!
//! Two phases: `stage` sends `SET XACT_ABORT ON; BEGIN TRANSACTION`, checks the input against
//! the table, writes everything, and keeps the connection (transaction still open) in the staged
//! output; `commit` sends `COMMIT`, `abort` sends `ROLLBACK`. Any failure rolls back, so the
//! table holds all the rows or none. When the connection is unusable (an I/O error, or a bulk
//! load cut mid-row) it is closed instead, which makes the server roll back.
//!
//! Before any write, the input is checked against `INFORMATION_SCHEMA.COLUMNS` (on the same
//! connection) and every problem is reported in one error: missing table, input columns the table
//! lacks, incompatible types, `NOT NULL` columns without a default that the input lacks, IDENTITY
//! or computed columns in the input, and primary keys missing from the table. In `delete` mode
//! only the key columns are written and checked. A nullable input column may feed a `NOT NULL`
//! column (Delta and CSV columns are nullable by type); an actual NULL fails the run, naming the
//! column and the row, and the transaction rolls back.
//!
//! Direct bulk loads (tiberius sends every updateable column, in table order, and names them
//! unquoted in `INSERT BULK`) are used only when the input covers every such column, the names are
//! plain identifiers, and no column is money/smallmoney/text/ntext/xml/image or a `time`/
//! `datetimeoffset` below 7 digits; otherwise rows are staged first. Decimal values are sent with
//! the target column's scale; a value with more decimals than that scale is an error, not a
//! silent rounding (floats are rounded to the scale). Like every SQL Server bulk load without
//! hints, a direct load does not check CHECK/FOREIGN KEY constraints nor fire triggers (tiberius
//! cannot add `WITH (CHECK_CONSTRAINTS, FIRE_TRIGGERS)`); staged paths use plain INSERT/UPDATE.
//!
//! # Caps
//!
//! Caps hold against what the statements actually changed, as SQL Server counts it
//! (`ROWCOUNT_BIG()` right after each statement, inside the open transaction), never against an
//! earlier `COUNT`: under READ COMMITTED rows committed by other sessions between a count and the
//! write would slip past it. A write over a cap fails and its whole transaction rolls back, so the
//! table is left as it was.
//!
//! - `max_delete_rows` (from the step, or the caller's grant on the server): `delete` and
//!   `replace` fail when their DELETE removed more rows ("would delete N rows from T, over
//!   max_delete_rows L; nothing was changed").
//! - `update` and `upsert` change at most one target row per input row: when the UPDATE changed
//!   more rows than there are input rows whose keys matched, `primary_keys` is not unique in the
//!   table (e.g. `[region]` matching thousands of rows) and the write is refused, naming the
//!   table, the keys and both counts. Together with the refusal of duplicate keys in the input,
//!   an update can change no more rows than the caller sent. `max_delete_rows` does not apply to
//!   updates (they remove nothing; a grant limits who may write the table at all), which keeps
//!   one limit with one meaning.
//!
//! # Idempotency keys
//!
//! With `idempotency_key`, the write happens at most once per key: the key is recorded in
//! `dbo.bridge_applied_keys` (`[key] nvarchar(200) PRIMARY KEY, rows_affected bigint,
//! applied_at datetime2`, created when missing) by the same transaction. Before writing, a key
//! already recorded makes the run change nothing and report the recorded rows (its output says
//! [`ALREADY_APPLIED`]). Otherwise the key is inserted as the transaction's first statement, so a
//! concurrent run with the same key waits on that row's lock: when the first commits, the
//! second's insert fails with a duplicate key (2627), it rolls back and reports "already
//! applied"; when the first rolls back, the second proceeds. After the write, the key's
//! `rows_affected` is set to the rows written (updated + inserted for `upsert`, updated for
//! `update`, deleted for `delete`, inserted for `insert`/`replace`), and everything commits
//! together: a crash before the commit leaves neither the rows nor the key.
//!
//! A table may be written by one step per run: a second writer would wait forever on the first
//! one's open transaction, so it is refused at once.
//!
//! # Values
//!
//! Every value is converted exactly or refused; nothing is clamped, wrapped or replaced. The
//! values of each input batch are all checked and encoded before any row of that batch is sent,
//! so a refused value in the first batch means nothing reaches the server; a refusal in a later
//! batch rolls back the rows the transaction already holds. Either way the table is left as it
//! was, and the error names the step, the column, the row (1-based, counted over the step's
//! whole input) and the value. The ranges are those of [`crate::mssql::ranges`].
//!
//! | Arrow input (what Spark/Databricks write) | target column | conversion, and what is refused |
//! |---|---|---|
//! | Int8 (`byte`), Int16 (`short`), Int32, Int64, unsigned | tinyint, smallint, int, bigint | exact; values outside the column's range (e.g. -1 or 300 into tinyint) |
//! | integers, Decimal128(p,s) (`decimal`), floats | decimal(p,s), numeric, money | rescaled to the column's scale; refused when digits would be lost (more decimals than the scale) or the integer digits exceed precision - scale; floats are rounded to the scale |
//! | Date32 (`date`), Date64 | date | exact; dates outside 0001-01-01..9999-12-31 (e.g. year 0 or 10000) |
//! | Timestamp(µs, "UTC") (`timestamp`) | datetime2(n) / datetimeoffset(n) | the UTC wall time / the instant with offset +00:00; rounded to n digits (exact for n >= 6); outside 0001..9999 refused |
//! | Timestamp(µs, None) (`timestamp_ntz`) | datetime2(n) / datetimeoffset(n) | the wall time / that time as UTC; as above |
//! | dates, timestamps | datetime, smalldatetime | rounded to the type's ticks; outside its range refused |
//! | Utf8, LargeUtf8, Utf8View (`string`) | nvarchar/nchar/ntext | UTF-16, any character; longer than the column (in UTF-16 units) refused |
//! | Utf8, LargeUtf8, Utf8View | varchar/char/text | in the column's code page (`COLLATIONPROPERTY(collation, 'CodePage')`); a character the code page cannot hold (`東` in code page 1252) is refused instead of becoming `?`, and the length is counted in bytes of that code page; when the server does not report the code page, the driver refuses such characters when it encodes the row (naming the row, not the column) |
//! | Binary, LargeBinary, BinaryView (`binary`), FixedSizeBinary | varbinary/binary/image | exact; longer than the column refused |
//! | NULL of any type | any nullable column | NULL; into a `NOT NULL` column refused |

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::{
    DataType, Date64Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, Schema, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
use tiberius::{ColumnData, TokenRow};

use crate::error::{Error, Result};
use crate::mssql::ranges::{
    self, DAYS_0001_TO_1970, DAYS_1900_TO_1970, IntRange, NANOS_PER_DAY, date_text, decimal_text,
};
use crate::mssql::{Client, MssqlError, Phase, SqlServerSettings, connect};
use crate::pipeline::metrics::StepMetrics;
use crate::pipeline::spec::{SqlServerSinkSpec, SqlServerWriteMode};
use crate::sinks::{CommitPhase, RunInfo, Sink, StagedOutput, check_columns};
use crate::sql::{Dialect, IdentError, quote_ident, validate_ident};

/// How long `ROLLBACK` may take before the connection is simply closed.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes rows into a SQL Server table.
#[derive(Debug)]
pub struct SqlServerSink {
    step: String,
    spec: SqlServerSinkSpec,
    run_id: String,
    settings: SqlServerSettings,
    table: TableRef,
}

impl SqlServerSink {
    /// A SQL Server sink for a step; `settings` are those of `config/` and the environment, the
    /// step's `connection:` overrides them.
    pub fn new(
        step: &str,
        spec: &SqlServerSinkSpec,
        settings: SqlServerSettings,
        run: &RunInfo,
    ) -> Result<Self> {
        let settings = match &spec.connection {
            Some(over) => settings.merged(over),
            None => settings,
        };
        let table =
            TableRef::parse(&spec.table).map_err(|e| Error::step(step, format!("table: {e}")))?;
        Ok(SqlServerSink {
            step: step.to_string(),
            spec: spec.clone(),
            run_id: run.run_id.clone(),
            settings,
            table,
        })
    }

    /// Marks the table as written by this step until its transaction ends.
    fn claim(&self) -> Result<TableClaim> {
        let key = format!(
            "{}|{}|{}.{}.{}",
            self.run_id,
            self.settings.describe(),
            self.table.catalog.as_deref().unwrap_or_default(),
            self.table.schema,
            self.table.name
        )
        .to_lowercase();
        let mut open = OPEN_WRITES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(other) = open.get(&key) {
            return Err(Error::step(
                &self.step,
                format!(
                    "step `{other}` of this run already writes {} in a transaction that commits \
                     only when the run commits, so this step would wait for it forever; write \
                     each table from one step per run",
                    self.table.display
                ),
            ));
        }
        open.insert(key.clone(), self.step.clone());
        Ok(TableClaim(key))
    }

    fn mode_name(&self) -> &'static str {
        match self.spec.mode {
            SqlServerWriteMode::Insert => "insert",
            SqlServerWriteMode::Upsert => "upsert",
            SqlServerWriteMode::Update => "update",
            SqlServerWriteMode::Delete => "delete",
            SqlServerWriteMode::Replace => "replace",
        }
    }
}

#[async_trait]
impl Sink for SqlServerSink {
    fn output(&self) -> Result<String> {
        Ok(output_id(&self.settings, &self.spec.table))
    }

    fn check(&self, schema: &Schema) -> Result<()> {
        let mode = self.spec.mode;
        let keys = &self.spec.primary_keys;
        if keys.is_empty()
            && matches!(
                mode,
                SqlServerWriteMode::Upsert
                    | SqlServerWriteMode::Update
                    | SqlServerWriteMode::Delete
            )
        {
            return Err(Error::step(
                &self.step,
                format!(
                    "mode `{}` needs `primary_keys` (the columns that identify a row of {})",
                    self.mode_name(),
                    self.table.display
                ),
            ));
        }
        if self.spec.max_delete_rows.is_some()
            && matches!(
                mode,
                SqlServerWriteMode::Insert
                    | SqlServerWriteMode::Upsert
                    | SqlServerWriteMode::Update
            )
        {
            return Err(Error::step(
                &self.step,
                format!(
                    "max_delete_rows applies to modes `delete` and `replace`; mode `{}` deletes nothing",
                    self.mode_name()
                ),
            ));
        }
        if let Some(key) = &self.spec.idempotency_key
            && (key.is_empty() || key.chars().count() > MAX_KEY_CHARS)
        {
            return Err(Error::step(
                &self.step,
                format!("idempotency_key must have 1 to {MAX_KEY_CHARS} characters"),
            ));
        }
        for (i, key) in keys.iter().enumerate() {
            quote_column(key).map_err(|e| Error::step(&self.step, format!("primary_keys: {e}")))?;
            if keys[..i].contains(key) {
                return Err(Error::step(
                    &self.step,
                    format!("primary_keys: `{key}` is listed twice"),
                ));
            }
        }
        check_columns(&self.step, schema, "primary_keys", keys.iter())?;
        if mode != SqlServerWriteMode::Delete {
            let bad: Vec<String> = schema
                .fields()
                .iter()
                .filter_map(|f| quote_column(f.name()).err().map(|e| e.to_string()))
                .collect();
            if !bad.is_empty() {
                return Err(Error::step(
                    &self.step,
                    format!(
                        "input columns cannot be written to SQL Server: {}; rename them in a transform",
                        bad.join("; ")
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn stage(
        &self,
        _ctx: &SessionContext,
        input: DataFrame,
        metrics: Arc<StepMetrics>,
    ) -> Result<Box<dyn StagedOutput>> {
        let claim = self.claim()?;
        let target = self.settings.describe();
        let client = connect(&self.settings)
            .await
            .map_err(|e| Fail::Sql(e).into_error(&self.step))?;
        let mut conn = Conn {
            client,
            target,
            broken: false,
        };
        let staged = |conn: Conn, output: String, in_transaction: bool| -> Box<dyn StagedOutput> {
            Box::new(StagedSqlServerWrite {
                step: self.step.clone(),
                table: self.table.display.clone(),
                conn,
                output,
                in_transaction,
                _claim: claim,
            })
        };
        let key = self.spec.idempotency_key.as_deref();
        if let Some(key) = key {
            let recorded = async {
                ensure_applied_keys_table(&mut conn).await?;
                applied_rows(&mut conn, key).await
            }
            .await
            .map_err(|e| e.into_error(&self.step))?;
            if let Some(rows) = recorded {
                return Ok(staged(
                    conn,
                    self.already_applied(key, rows, &metrics),
                    false,
                ));
            }
        }
        let schema = input.schema().as_arrow().clone();
        let plan = async {
            let columns = read_columns(&mut conn, &self.table).await?;
            plan_write(
                &self.table.display,
                self.spec.mode,
                &self.spec.primary_keys,
                &schema,
                &columns,
            )
            .map_err(Fail::Other)
        }
        .await
        .map_err(|e| e.into_error(&self.step))?;
        let written = async {
            conn.batch("SET XACT_ABORT ON; BEGIN TRANSACTION").await?;
            if let Some(key) = key {
                // First statement of the transaction: a concurrent run with the same key waits
                // here until this one ends.
                let inserted = conn
                    .execute_with(
                        &format!(
                            "INSERT INTO {APPLIED_KEYS} ([key], rows_affected, applied_at) \
                             VALUES (@P1, 0, SYSUTCDATETIME())"
                        ),
                        &[&key],
                    )
                    .await;
                match inserted {
                    Ok(_) => {}
                    Err(Fail::Sql(e)) if e.code == Some(DUPLICATE_KEY) && !conn.broken => {
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
            }
            let (output, rows) = self.write(&mut conn, &plan, input, &metrics).await?;
            if let Some(key) = key {
                conn.execute_with(
                    &format!(
                        "UPDATE {APPLIED_KEYS} SET rows_affected = @P1, applied_at = SYSUTCDATETIME() \
                         WHERE [key] = @P2"
                    ),
                    &[&i64::try_from(rows).unwrap_or(i64::MAX), &key],
                )
                .await?;
            }
            Ok(Some(output))
        }
        .await;
        match written {
            Ok(Some(output)) => Ok(staged(conn, output, true)),
            Ok(None) => {
                // Another run recorded the key (and committed) while this one waited.
                conn.rollback(&self.step).await;
                let key = key.expect("only keyed writes can lose a race");
                let rows = applied_rows(&mut conn, key)
                    .await
                    .map_err(|e| e.into_error(&self.step))?
                    .ok_or_else(|| {
                        Error::step(
                            &self.step,
                            format!(
                                "idempotency key `{key}` was reported as a duplicate but is not in {APPLIED_KEYS}"
                            ),
                        )
                    })?;
                Ok(staged(
                    conn,
                    self.already_applied(key, rows, &metrics),
                    false,
                ))
            }
            Err(e) => {
                conn.rollback(&self.step).await;
                Err(e.into_error(&self.step))
            }
        }
    }
}

/// Marks the output of a sink run whose idempotency key was already recorded (that run changed
/// nothing); see [`is_already_applied`].
pub const ALREADY_APPLIED: &str = ": already applied under idempotency key";

/// Whether a sink output line says the run's idempotency key was already recorded.
pub fn is_already_applied(output: &str) -> bool {
    // Table names cannot contain `:`, so only this marker can put it there.
    output.contains(ALREADY_APPLIED)
}

/// The table recording idempotency keys.
const APPLIED_KEYS: &str = "[dbo].[bridge_applied_keys]";
/// Longest idempotency key (`nvarchar(200)`).
const MAX_KEY_CHARS: usize = 200;
/// SQL Server's "Violation of PRIMARY KEY constraint".
const DUPLICATE_KEY: u32 = 2627;
/// SQL Server's "There is already an object named …".
const OBJECT_EXISTS: u32 = 2714;

/// Creates `dbo.bridge_applied_keys` when missing (outside any transaction). Two sessions may
/// race to create it: the loser's "already exists" is not an error.
async fn ensure_applied_keys_table(conn: &mut Conn) -> Result<(), Fail> {
    let sql = format!(
        "IF OBJECT_ID(N'dbo.bridge_applied_keys', N'U') IS NULL \
         CREATE TABLE {APPLIED_KEYS} ([key] nvarchar(200) NOT NULL PRIMARY KEY, \
         rows_affected bigint NOT NULL, applied_at datetime2 NOT NULL)"
    );
    match conn.batch(&sql).await {
        Err(Fail::Sql(e)) if e.code == Some(OBJECT_EXISTS) && !conn.broken => Ok(()),
        other => other,
    }
}

/// The rows recorded with an idempotency key, if it is recorded.
async fn applied_rows(conn: &mut Conn, key: &str) -> Result<Option<u64>, Fail> {
    let rows = conn
        .rows(
            &format!("SELECT rows_affected FROM {APPLIED_KEYS} WHERE [key] = @P1"),
            &[&key],
        )
        .await?;
    Ok(rows
        .first()
        .map(|r| int_at(r, 0).map_or(0, |n| u64::try_from(n).unwrap_or(0))))
}

impl SqlServerSink {
    /// The output of a run whose idempotency key was already recorded; the step reports the
    /// recorded rows.
    fn already_applied(&self, key: &str, rows: u64, metrics: &StepMetrics) -> String {
        metrics.reset_direct();
        metrics.record(usize::try_from(rows).unwrap_or(usize::MAX), 0);
        format!(
            "{} ({}{ALREADY_APPLIED} `{key}` with {rows} row{}; nothing written)",
            self.table.display,
            self.mode_name(),
            if rows == 1 { "" } else { "s" }
        )
    }

    /// Does the mode's whole write inside the open transaction; returns the output description
    /// and the rows written.
    async fn write(
        &self,
        conn: &mut Conn,
        plan: &WritePlan,
        input: DataFrame,
        metrics: &StepMetrics,
    ) -> Result<(String, u64), Fail> {
        let table = &self.table;
        let mut stream = input
            .execute_stream()
            .await
            .map_err(|e| Fail::Input(Box::new(e)))?;
        let rows_of = |n: u64| format!("{n} row{}", if n == 1 { "" } else { "s" });
        match self.spec.mode {
            SqlServerWriteMode::Insert => {
                let n = insert_rows(conn, table, plan, &mut stream, metrics).await?;
                Ok((format!("{} (insert: {})", table.display, rows_of(n)), n))
            }
            SqlServerWriteMode::Replace => {
                let deleted = conn
                    .execute_counted(&format!("DELETE FROM {}", table.quoted))
                    .await?;
                self.check_delete_limit(deleted)?;
                let n = insert_rows(conn, table, plan, &mut stream, metrics).await?;
                let output = format!(
                    "{} (replace: {}, {} deleted first)",
                    table.display,
                    rows_of(n),
                    rows_of(deleted)
                );
                Ok((output, n))
            }
            SqlServerWriteMode::Upsert => {
                let stage = Stage::create(conn, plan).await?;
                let staged = stage.load(conn, plan, &mut stream, metrics, true).await?;
                self.refuse_duplicate_keys(conn, plan, &stage, "an upsert")
                    .await?;
                let updated = update_from_stage(conn, table, plan, &stage).await?;
                let keys = plan.quoted_keys();
                let on = join_condition(&keys, "t", "s");
                let cols = plan.quoted_columns();
                let inserted = conn
                    .execute_counted(&format!(
                        "INSERT INTO {t} ({c}) SELECT {sc} FROM {s} AS s WHERE NOT EXISTS (SELECT 1 FROM {t} AS t WHERE {on})",
                        t = table.quoted,
                        c = cols.join(", "),
                        sc = prefixed(&cols, "s"),
                        s = stage.name
                    ))
                    .await?;
                // Every staged row either matched (and was updated) or was inserted.
                self.refuse_fan_out(updated, staged.saturating_sub(inserted))?;
                stage.drop(conn).await?;
                let output = format!(
                    "{} (upsert: {}: {updated} updated, {inserted} inserted)",
                    table.display,
                    rows_of(updated + inserted)
                );
                Ok((output, updated + inserted))
            }
            SqlServerWriteMode::Update => {
                let stage = Stage::create(conn, plan).await?;
                stage.load(conn, plan, &mut stream, metrics, false).await?;
                self.refuse_duplicate_keys(conn, plan, &stage, "an update")
                    .await?;
                let updated = update_from_stage(conn, table, plan, &stage).await?;
                if updated > 0 {
                    let on = join_condition(&plan.quoted_keys(), "t", "s");
                    let matched = conn
                        .scalar(&format!(
                            "SELECT COUNT_BIG(*) FROM {} AS s WHERE EXISTS (SELECT 1 FROM {} AS t WHERE {on})",
                            stage.name, table.quoted
                        ))
                        .await?;
                    self.refuse_fan_out(updated, u64::try_from(matched).unwrap_or(0))?;
                }
                stage.drop(conn).await?;
                metrics.record(usize::try_from(updated).unwrap_or(usize::MAX), 0);
                Ok((
                    format!("{} (update: {})", table.display, rows_of(updated)),
                    updated,
                ))
            }
            SqlServerWriteMode::Delete => {
                let stage = Stage::create(conn, plan).await?;
                stage.load(conn, plan, &mut stream, metrics, false).await?;
                let keys = plan.quoted_keys();
                let on = join_condition(&keys, "t", "s");
                let deleted = conn
                    .execute_counted(&format!(
                        "DELETE t FROM {} AS t INNER JOIN {} AS s ON {on}",
                        table.quoted, stage.name
                    ))
                    .await?;
                self.check_delete_limit(deleted)?;
                stage.drop(conn).await?;
                metrics.record(usize::try_from(deleted).unwrap_or(usize::MAX), 0);
                Ok((
                    format!("{} (delete: {})", table.display, rows_of(deleted)),
                    deleted,
                ))
            }
        }
    }

    /// Fails when the rows the DELETE actually removed (counted by the server inside the open
    /// transaction, so rows that appeared after any earlier read are included) are over
    /// `max_delete_rows`; the caller then rolls the whole transaction back.
    fn check_delete_limit(&self, deleted: u64) -> Result<(), Fail> {
        match self.spec.max_delete_rows {
            Some(limit) if deleted > limit => Err(Fail::Other(format!(
                "would delete {deleted} rows from {}, {OVER_DELETE_LIMIT} {limit}; nothing was changed",
                self.table.display
            ))),
            _ => Ok(()),
        }
    }

    /// Fails when an `update`/`upsert` changed more target rows than the input rows whose keys
    /// matched: some key is not unique in the table, so one input row overwrote several rows.
    /// The caller then rolls the whole transaction back.
    fn refuse_fan_out(&self, updated: u64, matched: u64) -> Result<(), Fail> {
        if updated <= matched {
            return Ok(());
        }
        let table = &self.table.display;
        Err(Fail::Other(format!(
            "mode `{mode}` would change {updated} rows of {table} for {matched} input row{s} \
             whose keys match (primary_keys: {keys}): these keys are not unique in {table}, so \
             one input row would overwrite several rows; use primary_keys that identify one row \
             of {table}; nothing was changed",
            mode = self.mode_name(),
            s = if matched == 1 { "" } else { "s" },
            keys = self.spec.primary_keys.join(", "),
        )))
    }

    /// Fails when a key appears more than once in the staged rows (`what`: "an upsert").
    async fn refuse_duplicate_keys(
        &self,
        conn: &mut Conn,
        plan: &WritePlan,
        stage: &Stage,
        what: &str,
    ) -> Result<(), Fail> {
        let keys = plan.quoted_keys();
        let dups = conn
            .scalar(&format!(
                "SELECT COUNT_BIG(*) FROM (SELECT {k} FROM {s} GROUP BY {k} HAVING COUNT(*) > 1) AS d",
                k = keys.join(", "),
                s = stage.name
            ))
            .await?;
        if dups > 0 {
            return Err(Fail::Other(format!(
                "the input has {dups} key {} more than once (primary_keys: {}); {what} needs one row per key",
                if dups == 1 {
                    "value that appears"
                } else {
                    "values that appear"
                },
                self.spec.primary_keys.join(", ")
            )));
        }
        Ok(())
    }
}

/// `UPDATE t SET <non-key columns> FROM t JOIN stage ON <keys>`; returns the rows updated.
async fn update_from_stage(
    conn: &mut Conn,
    table: &TableRef,
    plan: &WritePlan,
    stage: &Stage,
) -> Result<u64, Fail> {
    let on = join_condition(&plan.quoted_keys(), "t", "s");
    let set: Vec<String> = plan
        .columns
        .iter()
        .filter(|c| !c.is_key)
        .map(|c| format!("t.{q} = s.{q}", q = c.quoted))
        .collect();
    if set.is_empty() {
        return Ok(0);
    }
    conn.execute_counted(&format!(
        "UPDATE t SET {} FROM {} AS t INNER JOIN {} AS s ON {on}",
        set.join(", "),
        table.quoted,
        stage.name
    ))
    .await
}

/// In the error of a write refused for deleting more rows than `max_delete_rows` allows (the
/// server audits such runs and events as refused, not failed).
pub const OVER_DELETE_LIMIT: &str = "over max_delete_rows";

/// Whether a run's or event's error is a delete over `max_delete_rows`.
pub fn is_over_delete_limit(error: &str) -> bool {
    error.contains(OVER_DELETE_LIMIT) && error.contains("nothing was changed")
}

/// Bulk-loads the input into the table, directly or through a staging table.
async fn insert_rows(
    conn: &mut Conn,
    table: &TableRef,
    plan: &WritePlan,
    stream: &mut SendableRecordBatchStream,
    metrics: &StepMetrics,
) -> Result<u64, Fail> {
    tracing::debug!(table = %table.display, direct = plan.direct.is_some(), "bulk loading");
    if let Some(direct) = &plan.direct {
        return bulk_load(
            conn,
            &table.quoted,
            &plan.table,
            direct,
            stream,
            metrics,
            true,
        )
        .await;
    }
    let stage = Stage::create(conn, plan).await?;
    stage.load(conn, plan, stream, metrics, true).await?;
    let cols = plan.quoted_columns();
    let n = conn
        .execute(&format!(
            "INSERT INTO {} ({}) SELECT {} FROM {}",
            table.quoted,
            cols.join(", "),
            cols.join(", "),
            stage.name
        ))
        .await?;
    stage.drop(conn).await?;
    Ok(n)
}

fn join_condition(keys: &[String], left: &str, right: &str) -> String {
    keys.iter()
        .map(|k| format!("{left}.{k} = {right}.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn prefixed(cols: &[String], alias: &str) -> String {
    cols.iter()
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A session temp table holding the written columns with the target's types.
struct Stage {
    /// Quoted name, `[#bridge_stage_<hex>]`.
    name: String,
}

impl Stage {
    async fn create(conn: &mut Conn, plan: &WritePlan) -> Result<Stage, Fail> {
        let raw = format!("#bridge_stage_{}", uuid::Uuid::new_v4().simple());
        let name = quote_ident(&raw, Dialect::SqlServer).map_err(|e| Fail::Other(e.to_string()))?;
        let columns: Vec<String> = plan
            .columns
            .iter()
            .map(|c| {
                let collate = c
                    .collation
                    .as_deref()
                    .map(|n| format!(" COLLATE {n}"))
                    .unwrap_or_default();
                format!("{} {}{collate} NULL", c.quoted, c.sql_type.stage_type())
            })
            .collect();
        conn.batch(&format!("CREATE TABLE {name} ({})", columns.join(", ")))
            .await?;
        Ok(Stage { name })
    }

    async fn load(
        &self,
        conn: &mut Conn,
        plan: &WritePlan,
        stream: &mut SendableRecordBatchStream,
        metrics: &StepMetrics,
        count_rows: bool,
    ) -> Result<u64, Fail> {
        let columns: Vec<BulkColumn> = plan
            .columns
            .iter()
            .map(|c| BulkColumn {
                input: c.input,
                label: c.label.clone(),
                wire: c.wire,
                not_null: c.not_null,
            })
            .collect();
        bulk_load(
            conn,
            &self.name,
            &plan.table,
            &columns,
            stream,
            metrics,
            count_rows,
        )
        .await
    }

    async fn drop(self, conn: &mut Conn) -> Result<(), Fail> {
        conn.batch(&format!("DROP TABLE {}", self.name)).await
    }
}

/// One column of a bulk load: where its values come from and how they are sent.
#[derive(Debug, Clone)]
struct BulkColumn {
    input: usize,
    label: String,
    wire: Wire,
    not_null: bool,
}

/// Streams the input into `table` (the target itself or its staging table; `target` names the
/// target in messages) as a TDS bulk load; returns the rows loaded. Each batch is checked and
/// encoded whole before any of its rows is sent.
async fn bulk_load(
    conn: &mut Conn,
    table: &str,
    target_name: &str,
    columns: &[BulkColumn],
    stream: &mut SendableRecordBatchStream,
    metrics: &StepMetrics,
    count_rows: bool,
) -> Result<u64, Fail> {
    let target = conn.target.clone();
    let sql =
        |e: &tiberius::error::Error| Fail::Sql(MssqlError::from_tiberius(Phase::Query, &target, e));
    // Until the load ends cleanly, the connection may be mid-message: do not reuse it.
    conn.broken = true;
    let mut request = match conn.client.bulk_insert(table).await {
        Ok(r) => r,
        Err(e) => {
            conn.broken = is_io(&e);
            return Err(sql(&e));
        }
    };
    let mut sent: u64 = 0;
    let mut failure: Option<Fail> = None;
    'batches: while let Some(batch) = stream.next().await {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                failure = Some(Fail::Input(Box::new(e)));
                break;
            }
        };
        let arrays: Vec<&dyn Array> = columns
            .iter()
            .map(|c| batch.column(c.input).as_ref())
            .collect();
        let mut tokens = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            match encode_row(columns, &arrays, row) {
                Ok(token) => tokens.push(token),
                Err((column, message)) => {
                    failure = Some(Fail::Other(format!(
                        "column `{column}`, input row {}: {message}; nothing was written to \
                         {target_name} (its transaction is rolled back)",
                        sent + row as u64 + 1
                    )));
                    break 'batches;
                }
            }
        }
        for token in tokens {
            // A failed send may leave half a row in the request: the connection stays broken.
            request.send(token).await.map_err(|e| {
                let mut fail = MssqlError::from_tiberius(Phase::Query, &target, &e);
                let hint = if matches!(e, tiberius::error::Error::Encoding(_)) {
                    " (the code page of a char/varchar column of this row cannot hold one of its \
                     characters; write it to an nvarchar column or replace the character in a \
                     transform)"
                } else {
                    ""
                };
                fail.message = format!("input row {}: {}{hint}", sent + 1, fail.message);
                Fail::Sql(fail)
            })?;
            sent += 1;
        }
        let rows = if count_rows { batch.num_rows() } else { 0 };
        metrics.record(rows, batch.get_array_memory_size());
    }
    // Ending the load (even after a failure between rows) leaves the connection usable, so the
    // transaction can be rolled back explicitly.
    match request.finalize().await {
        Ok(result) => {
            conn.broken = false;
            match failure {
                Some(f) => Err(f),
                None => Ok(result.total()),
            }
        }
        Err(e) => {
            conn.broken = is_io(&e);
            Err(failure.unwrap_or_else(|| sql(&e)))
        }
    }
}

/// The bulk-load row of input row `row`, or the column and the message of its first bad value.
fn encode_row(
    columns: &[BulkColumn],
    arrays: &[&dyn Array],
    row: usize,
) -> Result<TokenRow<'static>, (String, String)> {
    let mut token = TokenRow::with_capacity(columns.len());
    for (column, array) in columns.iter().zip(arrays) {
        if column.not_null && array.is_null(row) {
            return Err((
                column.label.clone(),
                "NULL cannot go into a NOT NULL column".to_string(),
            ));
        }
        let value = value_at(*array, row)
            .and_then(|v| encode(v, column.wire))
            .map_err(|message| (column.label.clone(), message))?;
        token.push(value);
    }
    Ok(token)
}

fn is_io(e: &tiberius::error::Error) -> bool {
    matches!(e, tiberius::error::Error::Io { .. })
}

/// Why a write failed (turned into [`Error`] with the step's name at the end).
#[derive(Debug)]
enum Fail {
    /// SQL Server or the connection; transient ones are retried by the runner.
    Sql(MssqlError),
    /// Reading the input failed (may wrap a transient source error).
    Input(Box<DataFusionError>),
    /// Data, limits, configuration.
    Other(String),
}

impl Fail {
    fn into_error(self, step: &str) -> Error {
        match self {
            Fail::Sql(e) => Error::from_chain(step, &e),
            Fail::Input(e) => Error::from_chain(step, e.as_ref()),
            Fail::Other(message) => Error::step(step, message),
        }
    }
}

/// The sink's connection and whether it may still be talked to.
struct Conn {
    client: Client,
    target: String,
    broken: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("target", &self.target)
            .field("broken", &self.broken)
            .finish()
    }
}

impl Conn {
    fn fail(&mut self, e: tiberius::error::Error) -> Fail {
        if is_io(&e) {
            self.broken = true;
        }
        Fail::Sql(MssqlError::from_tiberius(Phase::Query, &self.target, &e))
    }

    /// Runs a batch (session scope: temp tables created here outlive it), ignoring results.
    async fn batch(&mut self, sql: &str) -> Result<(), Fail> {
        tracing::debug!(sql, "sqlserver sink batch");
        let result = match self.client.simple_query(sql).await {
            Ok(stream) => stream.into_results().await.map(|_| ()),
            Err(e) => Err(e),
        };
        result.map_err(|e| self.fail(e))
    }

    /// Runs one DML statement and returns the rows it affected.
    async fn execute(&mut self, sql: &str) -> Result<u64, Fail> {
        tracing::debug!(sql, "sqlserver sink statement");
        match self.client.execute(sql, &[]).await {
            Ok(result) => Ok(result.total()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Runs one DML statement and returns the rows that statement itself changed, as the server
    /// counts them right after it in the same batch (`ROWCOUNT_BIG()`; rows changed by triggers
    /// are not included, unlike the sum of every DONE count of the request).
    async fn execute_counted(&mut self, sql: &str) -> Result<u64, Fail> {
        let n = self
            .scalar(&format!("{sql}; SELECT ROWCOUNT_BIG()"))
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Runs one parameterised DML statement (sp_executesql) and returns the rows it affected.
    async fn execute_with(
        &mut self,
        sql: &str,
        params: &[&dyn tiberius::ToSql],
    ) -> Result<u64, Fail> {
        tracing::debug!(sql, "sqlserver sink statement");
        match self.client.execute(sql, params).await {
            Ok(result) => Ok(result.total()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The integer in the first column of the first row.
    async fn scalar(&mut self, sql: &str) -> Result<i64, Fail> {
        tracing::debug!(sql, "sqlserver sink query");
        let row = match self.client.simple_query(sql).await {
            Ok(stream) => stream.into_row().await,
            Err(e) => Err(e),
        };
        let row = row.map_err(|e| self.fail(e))?;
        Ok(row.as_ref().and_then(|r| int_at(r, 0)).unwrap_or(0))
    }

    /// Rows of a parameterised query (sp_executesql).
    async fn rows(
        &mut self,
        sql: &str,
        params: &[&dyn tiberius::ToSql],
    ) -> Result<Vec<tiberius::Row>, Fail> {
        let rows = match self.client.query(sql, params).await {
            Ok(stream) => stream.into_first_result().await,
            Err(e) => Err(e),
        };
        rows.map_err(|e| self.fail(e))
    }

    /// Rolls the transaction back, or closes the connection when it cannot be used any more
    /// (the server then rolls back).
    async fn rollback(&mut self, step: &str) {
        if self.broken {
            tracing::warn!(
                step,
                "closing the SQL Server connection; the server rolls back"
            );
            return;
        }
        let rollback = async {
            self.client
                .simple_query("IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION")
                .await?
                .into_results()
                .await
        };
        match tokio::time::timeout(ROLLBACK_TIMEOUT, rollback).await {
            Ok(Ok(_)) => tracing::info!(step, "rolled back"),
            Ok(Err(e)) => {
                tracing::warn!(step, error = %e, "rollback failed; closing the connection")
            }
            Err(_) => tracing::warn!(step, "rollback timed out; closing the connection"),
        }
    }
}

/// A write done inside an open transaction, waiting for the run to commit.
struct StagedSqlServerWrite {
    step: String,
    table: String,
    conn: Conn,
    output: String,
    /// Whether a transaction is open (false when the idempotency key was already recorded).
    in_transaction: bool,
    /// Released when the transaction ends (commit, abort or drop).
    _claim: TableClaim,
}

/// Tables with an open transaction of a sink, by run, server and table: step id.
static OPEN_WRITES: std::sync::Mutex<BTreeMap<String, String>> =
    std::sync::Mutex::new(BTreeMap::new());

/// A table written by one step of a run; dropping it frees the table for later runs.
#[derive(Debug)]
struct TableClaim(String);

impl Drop for TableClaim {
    fn drop(&mut self) {
        OPEN_WRITES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
    }
}

#[async_trait]
impl StagedOutput for StagedSqlServerWrite {
    fn commit_phase(&self) -> CommitPhase {
        CommitPhase::Transaction
    }

    fn target(&self) -> String {
        format!("SQL Server table {}", self.table)
    }

    async fn commit(self: Box<Self>) -> Result<Vec<String>> {
        let StagedSqlServerWrite {
            step,
            table,
            mut conn,
            output,
            in_transaction,
            _claim,
        } = *self;
        if !in_transaction {
            let _ = conn.client.close().await;
            return Ok(vec![output]);
        }
        conn.batch("COMMIT TRANSACTION")
            .await
            .map_err(|e| match e {
                Fail::Sql(m) => Error::from_chain(
                    &step,
                    &MssqlError {
                        message: format!("COMMIT of {table} failed: {}", m.message),
                        // Whether the COMMIT reached the server is unknown: never retry it.
                        transient: false,
                        ..m
                    },
                ),
                other => other.into_error(&step),
            })?;
        let _ = conn.client.close().await;
        Ok(vec![output])
    }

    async fn abort(self: Box<Self>) {
        let mut this = *self;
        this.conn.rollback(&this.step).await;
        let _ = this.conn.client.close().await;
    }
}

/// A target table name: as written, quoted, and its parts for INFORMATION_SCHEMA.
#[derive(Debug, Clone)]
struct TableRef {
    display: String,
    quoted: String,
    catalog: Option<String>,
    schema: String,
    name: String,
}

impl TableRef {
    fn parse(table: &str) -> Result<TableRef, IdentError> {
        let parts = validate_ident(table)?;
        let quoted = quote_ident(table, Dialect::SqlServer)?;
        let (catalog, schema, name) = match parts.as_slice() {
            [name] => (None, "dbo", *name),
            [schema, name] => (None, *schema, *name),
            [catalog, schema, name] => (Some(catalog.to_string()), *schema, *name),
            _ => unreachable!("validate_ident allows one to three parts"),
        };
        Ok(TableRef {
            display: table.to_string(),
            quoted,
            catalog,
            schema: schema.to_string(),
            name: name.to_string(),
        })
    }
}

/// Validates and quotes one column name (no dotted parts).
fn quote_column(name: &str) -> Result<String, IdentError> {
    if name.contains('.') {
        return Err(IdentError {
            ident: name.to_string(),
            reason: "a column name may not contain `.`",
        });
    }
    quote_ident(name, Dialect::SqlServer)
}

/// A column of the target table, from INFORMATION_SCHEMA.COLUMNS.
#[derive(Debug, Clone)]
struct TargetColumn {
    name: String,
    sql_type: SqlType,
    nullable: bool,
    has_default: bool,
    /// IDENTITY column (known only where COLUMNPROPERTY works).
    identity: bool,
    /// Computed column (known only where COLUMNPROPERTY works).
    computed: bool,
    /// Collation of character columns, when the server reports it.
    collation: Option<String>,
    /// Code page of char/varchar/text columns, when the server reports it.
    code_page: Option<u16>,
}

impl TargetColumn {
    /// Whether SQL Server fills the column itself (bulk loads and INSERTs leave it out).
    fn generated(&self) -> bool {
        self.identity || self.computed || self.sql_type == SqlType::RowVersion
    }
}

/// Reads the target's columns; empty if the table does not exist.
async fn read_columns(conn: &mut Conn, table: &TableRef) -> Result<Vec<TargetColumn>, Fail> {
    let from = match &table.catalog {
        Some(c) => format!(
            "{}.INFORMATION_SCHEMA.COLUMNS",
            quote_ident(c, Dialect::SqlServer).map_err(|e| Fail::Other(e.to_string()))?
        ),
        None => "INFORMATION_SCHEMA.COLUMNS".to_string(),
    };
    let base = "COLUMN_NAME, DATA_TYPE, IS_NULLABLE, COLUMN_DEFAULT, CHARACTER_MAXIMUM_LENGTH, \
                NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION";
    let filter = "WHERE TABLE_SCHEMA = @P1 AND TABLE_NAME = @P2 ORDER BY ORDINAL_POSITION";
    let object = "OBJECT_ID(QUOTENAME(TABLE_CATALOG) + N'.' + QUOTENAME(TABLE_SCHEMA) + N'.' + QUOTENAME(TABLE_NAME))";
    // COLLATIONPROPERTY returns sql_variant, which tiberius cannot read.
    let code_page = "CAST(COLLATIONPROPERTY(COLLATION_NAME, 'CodePage') AS int)";
    let full = format!(
        "SELECT {base}, COLLATION_NAME, COLUMNPROPERTY({object}, COLUMN_NAME, 'IsIdentity'), \
         COLUMNPROPERTY({object}, COLUMN_NAME, 'IsComputed'), {code_page} FROM {from} {filter}"
    );
    let params: [&dyn tiberius::ToSql; 2] = [&table.schema.as_str(), &table.name.as_str()];
    let (rows, extended) = match conn.rows(&full, &params).await {
        Ok(rows) => (rows, true),
        // Servers without COLUMNPROPERTY/COLLATION_NAME: the portable columns only (tiberius has
        // logged the server's error at ERROR by then; SQL Server and the TDS test server have them).
        Err(Fail::Sql(e)) if e.code.is_some() && !conn.broken => {
            tracing::debug!(error = %e, "extended column query failed; using the portable one");
            let basic = format!("SELECT {base} FROM {from} {filter}");
            (conn.rows(&basic, &params).await?, false)
        }
        Err(e) => return Err(e),
    };
    // Without the extended query, the code pages of char/varchar/text columns on their own.
    let mut code_pages: BTreeMap<String, u16> = BTreeMap::new();
    let narrow_text = |row: &tiberius::Row| {
        row.try_get::<&str, _>(1)
            .ok()
            .flatten()
            .is_some_and(|t| ["char", "varchar", "text"].contains(&t.to_ascii_lowercase().as_str()))
    };
    if !extended && rows.iter().any(narrow_text) {
        let sql = format!("SELECT COLUMN_NAME, {code_page} FROM {from} {filter}");
        match conn.rows(&sql, &params).await {
            Ok(found) => {
                for row in &found {
                    if let (Some(name), Some(cp)) = (
                        row.try_get::<&str, _>(0).ok().flatten(),
                        int_at(row, 1).and_then(|n| u16::try_from(n).ok()),
                    ) {
                        code_pages.insert(name.to_string(), cp);
                    }
                }
            }
            Err(Fail::Sql(e)) if e.code.is_some() && !conn.broken => {
                tracing::debug!(error = %e, "code page query failed; the driver checks varchar text");
            }
            Err(e) => return Err(e),
        }
    }
    let mut columns = Vec::with_capacity(rows.len());
    for row in &rows {
        let text = |i: usize| row.try_get::<&str, _>(i).ok().flatten().map(str::to_string);
        let name = text(0).unwrap_or_default();
        let data_type = text(1).unwrap_or_default().to_ascii_lowercase();
        let sql_type = SqlType::from_information_schema(
            &data_type,
            int_at(row, 4),
            int_at(row, 5),
            int_at(row, 6),
            int_at(row, 7),
        );
        let collation = if extended {
            text(8).filter(|c| {
                !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            })
        } else {
            None
        };
        columns.push(TargetColumn {
            sql_type,
            nullable: !text(2).is_some_and(|n| n.eq_ignore_ascii_case("NO")),
            has_default: text(3).is_some(),
            identity: extended && int_at(row, 9) == Some(1),
            computed: extended && int_at(row, 10) == Some(1),
            collation,
            code_page: if extended {
                int_at(row, 11).and_then(|n| u16::try_from(n).ok())
            } else {
                code_pages.get(&name).copied()
            },
            name,
        });
    }
    Ok(columns)
}

/// An integer cell, whatever integer type the server sent.
fn int_at(row: &tiberius::Row, i: usize) -> Option<i64> {
    row.try_get::<i64, _>(i)
        .ok()
        .flatten()
        .or_else(|| row.try_get::<i32, _>(i).ok().flatten().map(i64::from))
        .or_else(|| row.try_get::<i16, _>(i).ok().flatten().map(i64::from))
        .or_else(|| row.try_get::<u8, _>(i).ok().flatten().map(i64::from))
}

/// What a run writes: the input columns going to the table, and how.
#[derive(Debug)]
struct WritePlan {
    /// The table as the step names it, for messages.
    table: String,
    /// Written columns, in input order.
    columns: Vec<PlannedColumn>,
    /// Key columns (quoted target names), in `primary_keys` order.
    keys: Vec<String>,
    /// For insert/replace: the bulk columns of a direct load into the table, if one is possible.
    direct: Option<Vec<BulkColumn>>,
}

impl WritePlan {
    fn quoted_columns(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.quoted.clone()).collect()
    }

    fn quoted_keys(&self) -> Vec<String> {
        self.keys.clone()
    }
}

/// One input column and the target column it goes to.
#[derive(Debug, Clone)]
struct PlannedColumn {
    /// Index in the input schema.
    input: usize,
    /// Input column name, for messages.
    label: String,
    /// Quoted target column name.
    quoted: String,
    sql_type: SqlType,
    collation: Option<String>,
    wire: Wire,
    is_key: bool,
    /// The target column is NOT NULL: a NULL in the input fails the run (naming column and row).
    not_null: bool,
}

/// Checks the input against the table and decides how to write; every problem is listed.
fn plan_write(
    table: &str,
    mode: SqlServerWriteMode,
    primary_keys: &[String],
    input: &Schema,
    target: &[TargetColumn],
) -> Result<WritePlan, String> {
    if target.is_empty() {
        return Err(format!(
            "table {table} does not exist (INFORMATION_SCHEMA.COLUMNS lists no column for it)"
        ));
    }
    let find = |name: &str| -> Option<usize> {
        target.iter().position(|c| c.name == name).or_else(|| {
            let mut found = target
                .iter()
                .enumerate()
                .filter(|(_, c)| c.name.eq_ignore_ascii_case(name));
            match (found.next(), found.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        })
    };
    let deleting = mode == SqlServerWriteMode::Delete;
    let updating = mode == SqlServerWriteMode::Update;
    let mut problems: Vec<String> = Vec::new();
    let mut keys = Vec::new();
    for key in primary_keys {
        match find(key) {
            Some(i) => keys.push(quote_column(&target[i].name).unwrap_or_default()),
            None => problems.push(format!("primary key `{key}` is not a column of {table}")),
        }
    }
    let mut used = vec![false; target.len()];
    let mut columns = Vec::new();
    for (index, field) in input.fields().iter().enumerate() {
        let name = field.name();
        let is_key = primary_keys.iter().any(|k| k == name);
        if deleting && !is_key {
            continue;
        }
        let Some(t) = find(name) else {
            if !is_key {
                problems.push(format!("column `{name}` is not in {table}"));
            }
            continue;
        };
        let col = &target[t];
        if used[t] {
            problems.push(format!(
                "input columns `{name}` and another both go to {table}.{}",
                col.name
            ));
            continue;
        }
        used[t] = true;
        let quoted = match quote_column(&col.name) {
            Ok(q) => q,
            Err(e) => {
                problems.push(format!("column {table}.{}: {e}", col.name));
                continue;
            }
        };
        if col.computed {
            problems.push(format!(
                "column `{name}`: {table}.{} is a computed column and cannot be written",
                col.name
            ));
            continue;
        }
        if col.identity
            && !deleting
            && !(is_key
                && matches!(
                    mode,
                    SqlServerWriteMode::Upsert | SqlServerWriteMode::Update
                ))
        {
            problems.push(format!(
                "column `{name}`: {table}.{} is an IDENTITY column; SQL Server generates its values",
                col.name
            ));
            continue;
        }
        let Some(wire) = col.sql_type.wire().map(|w| w.in_code_page(col.code_page)) else {
            problems.push(format!(
                "column `{name}`: {table}.{} has type {}, which the sqlserver sink cannot write",
                col.name, col.sql_type
            ));
            continue;
        };
        if !col.sql_type.accepts(field.data_type()) {
            problems.push(format!(
                "column `{name}`: input type {} cannot be written to {table}.{} ({})",
                field.data_type(),
                col.name,
                col.sql_type
            ));
            continue;
        }
        columns.push(PlannedColumn {
            input: index,
            label: name.clone(),
            quoted,
            sql_type: col.sql_type.clone(),
            collation: col.collation.clone(),
            wire,
            is_key,
            not_null: !col.nullable,
        });
    }
    if updating && !columns.iter().any(|c| !c.is_key) {
        problems.push(format!(
            "mode `update` needs input columns besides the primary keys (the values to set in {table})"
        ));
    }
    if !deleting && !updating {
        for (i, col) in target.iter().enumerate() {
            if !used[i] && !col.nullable && !col.has_default && !col.generated() {
                problems.push(format!(
                    "{table}.{} is NOT NULL without a default and is not in the input",
                    col.name
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "{table} does not match the input ({} problem{}): {}; nothing was written",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems.join("; ")
        ));
    }
    let direct = matches!(
        mode,
        SqlServerWriteMode::Insert | SqlServerWriteMode::Replace
    )
    .then(|| direct_columns(target, &used, input, &columns))
    .flatten();
    Ok(WritePlan {
        table: table.to_string(),
        columns,
        keys,
        direct,
    })
}

/// The columns of a direct bulk load into the table (every updateable column, in table order),
/// or `None` when tiberius cannot load this table directly.
fn direct_columns(
    target: &[TargetColumn],
    used: &[bool],
    input: &Schema,
    planned: &[PlannedColumn],
) -> Option<Vec<BulkColumn>> {
    let mut out = Vec::new();
    for (i, col) in target.iter().enumerate() {
        if col.generated() {
            continue;
        }
        if !used[i] || !col.sql_type.direct_bulk_ok() || !is_plain_name(&col.name) {
            return None;
        }
        let quoted = quote_column(&col.name).ok()?;
        let p = planned.iter().find(|p| p.quoted == quoted)?;
        out.push(BulkColumn {
            input: p.input,
            label: input.field(p.input).name().clone(),
            wire: p.wire,
            not_null: p.not_null,
        });
    }
    Some(out)
}

/// A name tiberius may write unquoted in `INSERT BULK`: ASCII letters, digits and `_`, not a
/// reserved word.
fn is_plain_name(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "add",
        "all",
        "alter",
        "and",
        "any",
        "as",
        "asc",
        "authorization",
        "backup",
        "begin",
        "between",
        "break",
        "browse",
        "bulk",
        "by",
        "cascade",
        "case",
        "check",
        "checkpoint",
        "close",
        "clustered",
        "coalesce",
        "collate",
        "column",
        "commit",
        "compute",
        "constraint",
        "contains",
        "containstable",
        "continue",
        "convert",
        "create",
        "cross",
        "current",
        "current_date",
        "current_time",
        "current_timestamp",
        "current_user",
        "cursor",
        "database",
        "dbcc",
        "deallocate",
        "declare",
        "default",
        "delete",
        "deny",
        "desc",
        "disk",
        "distinct",
        "distributed",
        "double",
        "drop",
        "dump",
        "else",
        "end",
        "errlvl",
        "escape",
        "except",
        "exec",
        "execute",
        "exists",
        "exit",
        "external",
        "fetch",
        "file",
        "fillfactor",
        "for",
        "foreign",
        "freetext",
        "freetexttable",
        "from",
        "full",
        "function",
        "goto",
        "grant",
        "group",
        "having",
        "holdlock",
        "identity",
        "identity_insert",
        "identitycol",
        "if",
        "in",
        "index",
        "inner",
        "insert",
        "intersect",
        "into",
        "is",
        "join",
        "key",
        "kill",
        "left",
        "like",
        "lineno",
        "load",
        "merge",
        "national",
        "nocheck",
        "nonclustered",
        "not",
        "null",
        "nullif",
        "of",
        "off",
        "offsets",
        "on",
        "open",
        "opendatasource",
        "openquery",
        "openrowset",
        "openxml",
        "option",
        "or",
        "order",
        "outer",
        "over",
        "percent",
        "pivot",
        "plan",
        "precision",
        "primary",
        "print",
        "proc",
        "procedure",
        "public",
        "raiserror",
        "read",
        "readtext",
        "reconfigure",
        "references",
        "replication",
        "restore",
        "restrict",
        "return",
        "revert",
        "revoke",
        "right",
        "rollback",
        "rowcount",
        "rowguidcol",
        "rule",
        "save",
        "schema",
        "securityaudit",
        "select",
        "semantickeyphrasetable",
        "semanticsimilaritydetailstable",
        "semanticsimilaritytable",
        "session_user",
        "set",
        "setuser",
        "shutdown",
        "some",
        "statistics",
        "system_user",
        "table",
        "tablesample",
        "textsize",
        "then",
        "to",
        "top",
        "tran",
        "transaction",
        "trigger",
        "truncate",
        "try_convert",
        "tsequal",
        "union",
        "unique",
        "unpivot",
        "update",
        "updatetext",
        "use",
        "user",
        "values",
        "varying",
        "view",
        "waitfor",
        "when",
        "where",
        "while",
        "with",
        "within",
        "writetext",
    ];
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED.contains(&name.to_ascii_lowercase().as_str())
}

/// Character column flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CharKind {
    Char,
    VarChar,
    NChar,
    NVarChar,
}

/// A SQL Server column type as INFORMATION_SCHEMA describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SqlType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Real,
    Float,
    Decimal {
        numeric: bool,
        precision: u8,
        scale: u8,
    },
    Money,
    SmallMoney,
    Date,
    Time(u8),
    DateTime,
    SmallDateTime,
    DateTime2(u8),
    DateTimeOffset(u8),
    /// `len` in characters; `None` is `max`.
    Chars {
        kind: CharKind,
        len: Option<u32>,
    },
    Text,
    NText,
    Xml,
    /// `len` in bytes; `None` is `max`.
    Bytes {
        fixed: bool,
        len: Option<u32>,
    },
    Image,
    UniqueIdentifier,
    RowVersion,
    Other(String),
}

impl std::fmt::Display for SqlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = |l: &Option<u32>| l.map_or_else(|| "max".to_string(), |n| n.to_string());
        match self {
            SqlType::Bit => f.write_str("bit"),
            SqlType::TinyInt => f.write_str("tinyint"),
            SqlType::SmallInt => f.write_str("smallint"),
            SqlType::Int => f.write_str("int"),
            SqlType::BigInt => f.write_str("bigint"),
            SqlType::Real => f.write_str("real"),
            SqlType::Float => f.write_str("float"),
            SqlType::Decimal {
                numeric,
                precision,
                scale,
            } => write!(
                f,
                "{}({precision},{scale})",
                if *numeric { "numeric" } else { "decimal" }
            ),
            SqlType::Money => f.write_str("money"),
            SqlType::SmallMoney => f.write_str("smallmoney"),
            SqlType::Date => f.write_str("date"),
            SqlType::Time(n) => write!(f, "time({n})"),
            SqlType::DateTime => f.write_str("datetime"),
            SqlType::SmallDateTime => f.write_str("smalldatetime"),
            SqlType::DateTime2(n) => write!(f, "datetime2({n})"),
            SqlType::DateTimeOffset(n) => write!(f, "datetimeoffset({n})"),
            SqlType::Chars { kind, len: l } => {
                let name = match kind {
                    CharKind::Char => "char",
                    CharKind::VarChar => "varchar",
                    CharKind::NChar => "nchar",
                    CharKind::NVarChar => "nvarchar",
                };
                write!(f, "{name}({})", len(l))
            }
            SqlType::Text => f.write_str("text"),
            SqlType::NText => f.write_str("ntext"),
            SqlType::Xml => f.write_str("xml"),
            SqlType::Bytes { fixed, len: l } => {
                write!(
                    f,
                    "{}({})",
                    if *fixed { "binary" } else { "varbinary" },
                    len(l)
                )
            }
            SqlType::Image => f.write_str("image"),
            SqlType::UniqueIdentifier => f.write_str("uniqueidentifier"),
            SqlType::RowVersion => f.write_str("rowversion"),
            SqlType::Other(name) => f.write_str(name),
        }
    }
}

impl SqlType {
    /// The type of an INFORMATION_SCHEMA.COLUMNS row (`DATA_TYPE` in lower case).
    fn from_information_schema(
        data_type: &str,
        char_len: Option<i64>,
        precision: Option<i64>,
        scale: Option<i64>,
        dt_precision: Option<i64>,
    ) -> SqlType {
        let small =
            |v: Option<i64>, default: u8| v.and_then(|v| u8::try_from(v).ok()).unwrap_or(default);
        let len = char_len.and_then(|l| u32::try_from(l).ok());
        let fraction = small(dt_precision, 7).min(7);
        match data_type {
            "bit" => SqlType::Bit,
            "tinyint" => SqlType::TinyInt,
            "smallint" => SqlType::SmallInt,
            "int" => SqlType::Int,
            "bigint" => SqlType::BigInt,
            "real" => SqlType::Real,
            "float" if precision.is_some_and(|p| p <= 24) => SqlType::Real,
            "float" => SqlType::Float,
            "decimal" | "numeric" => SqlType::Decimal {
                numeric: data_type == "numeric",
                precision: small(precision, 18),
                scale: small(scale, 0),
            },
            "money" => SqlType::Money,
            "smallmoney" => SqlType::SmallMoney,
            "date" => SqlType::Date,
            "time" => SqlType::Time(fraction),
            "datetime" => SqlType::DateTime,
            "smalldatetime" => SqlType::SmallDateTime,
            "datetime2" => SqlType::DateTime2(fraction),
            "datetimeoffset" => SqlType::DateTimeOffset(fraction),
            "char" | "varchar" | "nchar" | "nvarchar" | "sysname" => SqlType::Chars {
                kind: match data_type {
                    "char" => CharKind::Char,
                    "varchar" => CharKind::VarChar,
                    "nchar" => CharKind::NChar,
                    _ => CharKind::NVarChar,
                },
                len: if data_type == "sysname" {
                    Some(128)
                } else {
                    len
                },
            },
            "text" => SqlType::Text,
            "ntext" => SqlType::NText,
            "xml" => SqlType::Xml,
            "binary" | "varbinary" => SqlType::Bytes {
                fixed: data_type == "binary",
                len,
            },
            "image" => SqlType::Image,
            "uniqueidentifier" => SqlType::UniqueIdentifier,
            "timestamp" | "rowversion" => SqlType::RowVersion,
            other => SqlType::Other(other.to_string()),
        }
    }

    /// How values are sent in a bulk load; `None` if the sink cannot write this type.
    fn wire(&self) -> Option<Wire> {
        Some(match self {
            SqlType::Bit => Wire::Bit,
            SqlType::TinyInt => Wire::U8,
            SqlType::SmallInt => Wire::I16,
            SqlType::Int => Wire::I32,
            SqlType::BigInt => Wire::I64,
            SqlType::Real => Wire::F32,
            SqlType::Float => Wire::F64,
            // tiberius' Numeric cannot carry 38 decimals.
            SqlType::Decimal {
                precision, scale, ..
            } if *scale < 38 && *precision <= 38 => Wire::Numeric {
                precision: *precision,
                scale: *scale,
            },
            SqlType::Decimal { .. } => return None,
            SqlType::Money => Wire::Numeric {
                precision: 19,
                scale: 4,
            },
            SqlType::SmallMoney => Wire::Numeric {
                precision: 10,
                scale: 4,
            },
            SqlType::Date => Wire::Date,
            SqlType::Time(n) => Wire::Time(*n),
            SqlType::DateTime => Wire::DateTime,
            SqlType::SmallDateTime => Wire::SmallDateTime,
            SqlType::DateTime2(n) => Wire::DateTime2(*n),
            SqlType::DateTimeOffset(n) => Wire::DateTimeOffset(*n),
            SqlType::Chars { kind, len } => Wire::Str {
                max_chars: *len,
                unicode: matches!(kind, CharKind::NChar | CharKind::NVarChar),
                code_page: None,
            },
            SqlType::Text => Wire::Str {
                max_chars: None,
                unicode: false,
                code_page: None,
            },
            SqlType::NText | SqlType::Xml => Wire::Str {
                max_chars: None,
                unicode: true,
                code_page: None,
            },
            SqlType::Bytes { len, .. } => Wire::Bytes { max: *len },
            SqlType::Image => Wire::Bytes { max: None },
            SqlType::UniqueIdentifier => Wire::Guid,
            SqlType::RowVersion | SqlType::Other(_) => return None,
        })
    }

    /// Whether input of this Arrow type may be written to a column of this type.
    fn accepts(&self, input: &DataType) -> bool {
        use DataType as A;
        let integer = matches!(
            input,
            A::Int8 | A::Int16 | A::Int32 | A::Int64 | A::UInt8 | A::UInt16 | A::UInt32 | A::UInt64
        );
        let numeric_target = matches!(
            self,
            SqlType::Decimal { .. } | SqlType::Money | SqlType::SmallMoney
        );
        match input {
            A::Null => self.wire().is_some(),
            A::Boolean => *self == SqlType::Bit,
            _ if integer => {
                numeric_target
                    || matches!(
                        self,
                        SqlType::TinyInt
                            | SqlType::SmallInt
                            | SqlType::Int
                            | SqlType::BigInt
                            | SqlType::Real
                            | SqlType::Float
                    )
            }
            A::Float32 | A::Float64 => {
                numeric_target || matches!(self, SqlType::Real | SqlType::Float)
            }
            A::Decimal128(..) => numeric_target,
            A::Utf8 | A::LargeUtf8 | A::Utf8View => matches!(
                self,
                SqlType::Chars { .. }
                    | SqlType::Text
                    | SqlType::NText
                    | SqlType::Xml
                    | SqlType::UniqueIdentifier
            ),
            A::Binary | A::LargeBinary | A::BinaryView | A::FixedSizeBinary(_) => {
                matches!(self, SqlType::Bytes { .. } | SqlType::Image)
            }
            A::Date32 | A::Date64 => matches!(
                self,
                SqlType::Date | SqlType::DateTime | SqlType::DateTime2(_) | SqlType::SmallDateTime
            ),
            A::Timestamp(..) => matches!(
                self,
                SqlType::DateTime
                    | SqlType::DateTime2(_)
                    | SqlType::DateTimeOffset(_)
                    | SqlType::SmallDateTime
            ),
            A::Time32(_) | A::Time64(_) => matches!(self, SqlType::Time(_)),
            _ => false,
        }
    }

    /// The column type of the staging table: the target's, or one tiberius can bulk-load that
    /// converts to it exactly.
    fn stage_type(&self) -> String {
        match self {
            SqlType::Money => "decimal(19,4)".to_string(),
            SqlType::SmallMoney => "decimal(10,4)".to_string(),
            SqlType::Text => "varchar(max)".to_string(),
            SqlType::NText | SqlType::Xml => "nvarchar(max)".to_string(),
            SqlType::Image => "varbinary(max)".to_string(),
            other => other.to_string(),
        }
    }

    /// Whether tiberius bulk-loads this column type correctly straight into the table (its
    /// `INSERT BULK` text omits the scale of time/datetimeoffset, doubles n(var)char lengths and
    /// cannot encode money, text, ntext, xml or image).
    fn direct_bulk_ok(&self) -> bool {
        match self {
            SqlType::Money
            | SqlType::SmallMoney
            | SqlType::Text
            | SqlType::NText
            | SqlType::Xml
            | SqlType::Image
            | SqlType::RowVersion
            | SqlType::Other(_) => false,
            SqlType::Time(n) | SqlType::DateTimeOffset(n) => *n == 7,
            SqlType::Chars {
                kind: CharKind::NChar | CharKind::NVarChar,
                len: Some(n),
            } => *n <= 2000,
            _ => self.wire().is_some(),
        }
    }
}

/// The TDS value type a column's bulk-load values must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Bit,
    U8,
    I16,
    I32,
    I64,
    F32,
    F64,
    Numeric {
        precision: u8,
        scale: u8,
    },
    Date,
    Time(u8),
    DateTime,
    SmallDateTime,
    DateTime2(u8),
    DateTimeOffset(u8),
    /// `max_chars`: UTF-16 units for unicode columns, bytes of the code page otherwise
    /// (characters when the code page is unknown).
    Str {
        max_chars: Option<u32>,
        unicode: bool,
        code_page: Option<u16>,
    },
    Bytes {
        max: Option<u32>,
    },
    Guid,
}

impl Wire {
    /// The wire of a char/varchar/text column whose code page is `code_page`.
    fn in_code_page(self, code_page: Option<u16>) -> Wire {
        match self {
            Wire::Str {
                max_chars,
                unicode: false,
                ..
            } => Wire::Str {
                max_chars,
                unicode: false,
                code_page,
            },
            other => other,
        }
    }
}

/// One Arrow value, borrowed from its array.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    /// Unscaled value and scale.
    Decimal(i128, i8),
    Str(&'a str),
    Bytes(&'a [u8]),
    /// Days since 1970-01-01.
    Days(i64),
    /// Nanoseconds since 1970-01-01 (UTC for zoned timestamps).
    Nanos(i128),
    /// Nanoseconds since midnight.
    TimeOfDay(i64),
}

/// The value at `row` of an Arrow array.
fn value_at(array: &dyn Array, row: usize) -> Result<Value<'_>, String> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    let int = |v: i128| Value::Int(v);
    Ok(match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => int(array.as_primitive::<Int8Type>().value(row).into()),
        DataType::Int16 => int(array.as_primitive::<Int16Type>().value(row).into()),
        DataType::Int32 => int(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => int(array.as_primitive::<Int64Type>().value(row).into()),
        DataType::UInt8 => int(array.as_primitive::<UInt8Type>().value(row).into()),
        DataType::UInt16 => int(array.as_primitive::<UInt16Type>().value(row).into()),
        DataType::UInt32 => int(array.as_primitive::<UInt32Type>().value(row).into()),
        DataType::UInt64 => int(array.as_primitive::<UInt64Type>().value(row).into()),
        DataType::Float32 => Value::Float(array.as_primitive::<Float32Type>().value(row).into()),
        DataType::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, scale) => {
            Value::Decimal(array.as_primitive::<Decimal128Type>().value(row), *scale)
        }
        DataType::Utf8 => Value::Str(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Value::Str(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Value::Str(array.as_string_view().value(row)),
        DataType::Binary => Value::Bytes(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => Value::Bytes(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => Value::Bytes(array.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => Value::Bytes(array.as_fixed_size_binary().value(row)),
        DataType::Date32 => Value::Days(
            array
                .as_primitive::<deltalake::arrow::datatypes::Date32Type>()
                .value(row)
                .into(),
        ),
        DataType::Date64 => Value::Days(
            array
                .as_primitive::<Date64Type>()
                .value(row)
                .div_euclid(86_400_000),
        ),
        DataType::Timestamp(unit, _) => {
            let (v, per_unit): (i64, i128) = match unit {
                TimeUnit::Second => (
                    array.as_primitive::<TimestampSecondType>().value(row),
                    1_000_000_000,
                ),
                TimeUnit::Millisecond => (
                    array.as_primitive::<TimestampMillisecondType>().value(row),
                    1_000_000,
                ),
                TimeUnit::Microsecond => (
                    array.as_primitive::<TimestampMicrosecondType>().value(row),
                    1_000,
                ),
                TimeUnit::Nanosecond => (
                    array.as_primitive::<TimestampNanosecondType>().value(row),
                    1,
                ),
            };
            Value::Nanos(i128::from(v) * per_unit)
        }
        DataType::Time32(TimeUnit::Second) => Value::TimeOfDay(
            i64::from(array.as_primitive::<Time32SecondType>().value(row)) * 1_000_000_000,
        ),
        DataType::Time32(_) => Value::TimeOfDay(
            i64::from(array.as_primitive::<Time32MillisecondType>().value(row)) * 1_000_000,
        ),
        DataType::Time64(TimeUnit::Microsecond) => {
            Value::TimeOfDay(array.as_primitive::<Time64MicrosecondType>().value(row) * 1_000)
        }
        DataType::Time64(_) => {
            Value::TimeOfDay(array.as_primitive::<Time64NanosecondType>().value(row))
        }
        other => return Err(format!("Arrow type {other} is not supported")),
    })
}

/// What to do about a value out of its column's range, said once for every kind of value.
const OUT_OF_RANGE_HINT: &str =
    "filter such values out or replace them in a transform, or write them to a wider column";

/// `value` as the bulk-load value of a column sent as `wire`.
fn encode(value: Value<'_>, wire: Wire) -> Result<ColumnData<'static>, String> {
    if value == Value::Null {
        return Ok(null_of(wire));
    }
    let mismatch = || format!("cannot convert {} for this column", value_text(value));
    Ok(match wire {
        Wire::Bit => match value {
            Value::Bool(b) => ColumnData::Bit(Some(b)),
            _ => return Err(mismatch()),
        },
        Wire::U8 => ColumnData::U8(Some(fit_int(value, ranges::TINYINT)?)),
        Wire::I16 => ColumnData::I16(Some(fit_int(value, ranges::SMALLINT)?)),
        Wire::I32 => ColumnData::I32(Some(fit_int(value, ranges::INT)?)),
        Wire::I64 => ColumnData::I64(Some(fit_int(value, ranges::BIGINT)?)),
        Wire::F32 => ColumnData::F32(Some(finite(as_float(value).ok_or_else(mismatch)?)? as f32)),
        Wire::F64 => ColumnData::F64(Some(finite(as_float(value).ok_or_else(mismatch)?)?)),
        Wire::Numeric { precision, scale } => {
            ColumnData::Numeric(Some(to_numeric(value, precision, scale)?))
        }
        Wire::Date => {
            let Value::Days(days) = value else {
                return Err(mismatch());
            };
            ColumnData::Date(Some(date_of(days).ok_or_else(|| {
                format!(
                    "date {} is outside the range of date ({}); {OUT_OF_RANGE_HINT}",
                    date_text(days),
                    ranges::DATE_RANGE
                )
            })?))
        }
        Wire::Time(scale) => match value {
            Value::TimeOfDay(ns) => {
                let unit = 10i64.pow(9 - u32::from(scale));
                let increments = (ns + unit / 2).div_euclid(unit);
                if !(0..86_400 * 10i64.pow(u32::from(scale))).contains(&increments) {
                    return Err(format!(
                        "time of day {} is outside the range of time({scale}) (00:00:00 to \
                         23:59:59.{})",
                        value_text(value),
                        "9".repeat(usize::from(scale))
                    ));
                }
                ColumnData::Time(Some(Time::new(increments as u64, scale)))
            }
            _ => return Err(mismatch()),
        },
        Wire::DateTime2(scale) => ColumnData::DateTime2(Some(datetime2_of(
            value,
            scale,
            &format!("datetime2({scale})"),
        )?)),
        Wire::DateTimeOffset(scale) => ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
            datetime2_of(value, scale, &format!("datetimeoffset({scale}) in UTC"))?,
            0,
        ))),
        Wire::DateTime => {
            let ns = instant_nanos(value).ok_or_else(mismatch)?;
            let mut days = ns.div_euclid(NANOS_PER_DAY);
            let mut fragments = (ns.rem_euclid(NANOS_PER_DAY) * 300 + 500_000_000) / 1_000_000_000;
            if fragments == 300 * 86_400 {
                days += 1;
                fragments = 0;
            }
            let days = i64::try_from(days + i128::from(DAYS_1900_TO_1970))
                .ok()
                .filter(|d| ranges::DATETIME_DAYS.contains(d))
                .ok_or_else(|| {
                    format!(
                        "{} is outside the range of datetime ({}); {OUT_OF_RANGE_HINT}",
                        value_text(value),
                        ranges::DATETIME_RANGE
                    )
                })?;
            ColumnData::DateTime(Some(DateTime::new(days as i32, fragments as u32)))
        }
        Wire::SmallDateTime => {
            let ns = instant_nanos(value).ok_or_else(mismatch)?;
            let minutes = (ns + 30_000_000_000).div_euclid(60_000_000_000);
            let days = i64::try_from(minutes.div_euclid(1_440) + i128::from(DAYS_1900_TO_1970))
                .ok()
                .filter(|d| ranges::SMALLDATETIME_DAYS.contains(d))
                .ok_or_else(|| {
                    format!(
                        "{} is outside the range of smalldatetime ({}); {OUT_OF_RANGE_HINT}",
                        value_text(value),
                        ranges::SMALLDATETIME_RANGE
                    )
                })?;
            ColumnData::SmallDateTime(Some(SmallDateTime::new(
                days as u16,
                minutes.rem_euclid(1_440) as u16,
            )))
        }
        Wire::Str {
            max_chars,
            unicode,
            code_page,
        } => {
            let Value::Str(s) = value else {
                return Err(mismatch());
            };
            let encoding = code_page
                .filter(|_| !unicode)
                .and_then(|cp| ranges::code_page_encoding(cp).map(|e| (cp, e)));
            let (len, unit) = match encoding {
                _ if unicode => (s.encode_utf16().count(), "characters".to_string()),
                Some((cp, encoding)) => match ranges::encoded_len(s, encoding) {
                    Ok(bytes) if bytes == s.chars().count() => (bytes, "characters".to_string()),
                    Ok(bytes) => (bytes, format!("bytes in code page {cp}")),
                    Err(c) => {
                        return Err(format!(
                            "{} cannot be stored in this char/varchar column: its code page {cp} \
                             has no `{c}` (U+{:04X}), which SQL Server would store as `?`; write \
                             the text to an nvarchar column, or replace the character in a \
                             transform",
                            value_text(value),
                            u32::from(c)
                        ));
                    }
                },
                None => (s.chars().count(), "characters".to_string()),
            };
            if let Some(max) = max_chars
                && len > max as usize
            {
                return Err(format!(
                    "text of {len} {unit} is longer than the column's {max} ({})",
                    value_text(value)
                ));
            }
            ColumnData::String(Some(Cow::Owned(s.to_string())))
        }
        Wire::Bytes { max } => {
            let Value::Bytes(b) = value else {
                return Err(mismatch());
            };
            if let Some(max) = max
                && b.len() > max as usize
            {
                return Err(format!(
                    "{} bytes are longer than the column's {max} ({})",
                    b.len(),
                    value_text(value)
                ));
            }
            ColumnData::Binary(Some(Cow::Owned(b.to_vec())))
        }
        Wire::Guid => match value {
            Value::Str(s) => ColumnData::Guid(Some(
                tiberius::Uuid::parse_str(s.trim())
                    .map_err(|e| format!("`{s}` is not a uniqueidentifier: {e}"))?,
            )),
            _ => return Err(mismatch()),
        },
    })
}

/// A value as an error message shows it: the number, `2024-01-31`, `10000-01-01 00:00:00`,
/// `` `text` `` (its first 40 characters), `0x0A0B…` (its first 16 bytes).
fn value_text(value: Value<'_>) -> String {
    match value {
        Value::Null => "NULL".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Int(v) => v.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Decimal(v, scale) => decimal_text(v, scale),
        Value::Str(s) => {
            let mut chars = s.chars();
            let head: String = chars.by_ref().take(40).collect();
            let more = if chars.next().is_some() { "…" } else { "" };
            format!("`{head}{more}`")
        }
        Value::Bytes(b) => format!(
            "0x{}{}",
            hex::encode_upper(&b[..b.len().min(16)]),
            if b.len() > 16 { "…" } else { "" }
        ),
        Value::Days(d) => date_text(d),
        Value::Nanos(ns) => ranges::timestamp_text(ns),
        Value::TimeOfDay(ns) if (0..86_400_000_000_000).contains(&ns) => ranges::time_text(ns),
        Value::TimeOfDay(ns) => format!("{ns} ns"),
    }
}

/// A NULL of the column's wire type.
fn null_of(wire: Wire) -> ColumnData<'static> {
    match wire {
        Wire::Bit => ColumnData::Bit(None),
        Wire::U8 => ColumnData::U8(None),
        Wire::I16 => ColumnData::I16(None),
        Wire::I32 => ColumnData::I32(None),
        Wire::I64 => ColumnData::I64(None),
        Wire::F32 => ColumnData::F32(None),
        Wire::F64 => ColumnData::F64(None),
        Wire::Numeric { .. } => ColumnData::Numeric(None),
        Wire::Date => ColumnData::Date(None),
        Wire::Time(_) => ColumnData::Time(None),
        Wire::DateTime => ColumnData::DateTime(None),
        Wire::SmallDateTime => ColumnData::SmallDateTime(None),
        Wire::DateTime2(_) => ColumnData::DateTime2(None),
        Wire::DateTimeOffset(_) => ColumnData::DateTimeOffset(None),
        Wire::Str { .. } => ColumnData::String(None),
        Wire::Bytes { .. } => ColumnData::Binary(None),
        Wire::Guid => ColumnData::Guid(None),
    }
}

/// An integer value as the integer type of `range`; values outside it are refused.
fn fit_int<T: TryFrom<i128>>(value: Value<'_>, range: IntRange) -> Result<T, String> {
    let Value::Int(v) = value else {
        return Err(format!(
            "cannot convert {} to {}",
            value_text(value),
            range.name
        ));
    };
    let refused = |m: String| format!("{m}; {OUT_OF_RANGE_HINT}");
    let v = range.check(v).map_err(refused)?;
    T::try_from(v).map_err(|_| refused(format!("{v} is out of range for {}", range.name)))
}

fn as_float(value: Value<'_>) -> Option<f64> {
    match value {
        Value::Float(f) => Some(f),
        Value::Int(i) => Some(i as f64),
        _ => None,
    }
}

fn finite(f: f64) -> Result<f64, String> {
    if f.is_finite() {
        Ok(f)
    } else {
        Err(format!("{f} cannot be stored in SQL Server"))
    }
}

/// A numeric/integer/float value as a `decimal(precision, scale)`: rescaled to the column's
/// scale; a value with more decimals than the scale, or more integer digits than
/// `precision - scale`, is refused (floats are rounded to the scale).
fn to_numeric(value: Value<'_>, precision: u8, scale: u8) -> Result<Numeric, String> {
    let ten = |n: u32| 10i128.checked_pow(n);
    let column = format!("decimal({precision},{scale})");
    let too_big = || {
        let digits = precision.saturating_sub(scale);
        format!(
            "{} does not fit {column}, which holds at most {digits} digit{} before the decimal \
             point; {OUT_OF_RANGE_HINT}",
            value_text(value),
            if digits == 1 { "" } else { "s" }
        )
    };
    let unscaled = match value {
        Value::Int(v) => ten(u32::from(scale))
            .and_then(|p| v.checked_mul(p))
            .ok_or_else(too_big)?,
        Value::Decimal(v, from) => {
            let shift = i32::from(scale) - i32::from(from);
            if shift >= 0 {
                ten(shift as u32)
                    .and_then(|p| v.checked_mul(p))
                    .ok_or_else(too_big)?
            } else {
                let p = ten((-shift) as u32).ok_or_else(too_big)?;
                if v % p != 0 {
                    return Err(format!(
                        "{} has more decimals than the column's scale {scale} ({column}); round \
                         it in a transform first (ROUND or CAST to DECIMAL(p,{scale}))",
                        decimal_text(v, from)
                    ));
                }
                v / p
            }
        }
        Value::Float(f) => {
            let scaled = (finite(f)? * 10f64.powi(i32::from(scale))).round();
            if scaled.abs() >= 1e38 {
                return Err(too_big());
            }
            scaled as i128
        }
        _ => {
            return Err(format!("cannot convert {} to a decimal", value_text(value)));
        }
    };
    let limit = ten(u32::from(precision)).unwrap_or(i128::MAX);
    if unscaled.abs() >= limit {
        return Err(too_big());
    }
    Ok(Numeric::new_with_scale(unscaled, scale))
}

/// Nanoseconds since 1970-01-01 of a date or timestamp value.
fn instant_nanos(value: Value<'_>) -> Option<i128> {
    match value {
        Value::Nanos(ns) => Some(ns),
        Value::Days(d) => Some(i128::from(d) * NANOS_PER_DAY),
        _ => None,
    }
}

/// The `date` of a day counted from 1970-01-01, if SQL Server's dates include it.
fn date_of(days_since_1970: i64) -> Option<Date> {
    let days = days_since_1970.checked_add(DAYS_0001_TO_1970)?;
    ranges::DATE_DAYS
        .contains(&days)
        .then(|| Date::new(days as u32))
}

/// A date/timestamp as datetime2 with `scale` fractional digits (rounded); `column` names the
/// column type in the message of a value out of range.
fn datetime2_of(value: Value<'_>, scale: u8, column: &str) -> Result<DateTime2, String> {
    let ns = instant_nanos(value)
        .ok_or_else(|| format!("cannot convert {} to a date-time", value_text(value)))?;
    let unit = 10i128.pow(9 - u32::from(scale));
    let units = (ns + unit / 2).div_euclid(unit);
    let per_day = NANOS_PER_DAY / unit;
    let day_of = |days: i128| i64::try_from(days).ok().and_then(date_of);
    let date = day_of(units.div_euclid(per_day)).ok_or_else(|| {
        let rounded = if day_of(ns.div_euclid(NANOS_PER_DAY)).is_some() {
            format!(" rounded to {scale} decimals")
        } else {
            String::new()
        };
        format!(
            "{}{rounded} is outside the range of {column} ({}); {OUT_OF_RANGE_HINT}",
            value_text(value),
            ranges::DATETIME2_RANGE
        )
    })?;
    let increments = units.rem_euclid(per_day) as u64;
    Ok(DateTime2::new(date, Time::new(increments, scale)))
}

/// The lock id of a table: the server, its database and the table's canonical name
/// ([`crate::auth::names::SqlTable`]), so `Sales`, `dbo.sales`, `[dbo].[Sales]` and
/// `mydb.dbo.Sales` (in database `mydb`) are one output.
fn output_id(settings: &SqlServerSettings, table: &str) -> String {
    let database = settings.database.as_deref();
    let name = match crate::auth::names::SqlTable::parse(table, database) {
        Ok(t) => t.key().join("."),
        // A name the canonical form refuses (another database): its own spelling, folded.
        Err(_) => table.to_lowercase(),
    };
    format!(
        "sqlserver://{}:{}/{}/{name}",
        settings.host.as_deref().unwrap_or_default().to_lowercase(),
        settings.port.unwrap_or(1433),
        database.unwrap_or_default().to_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::datatypes::Field;

    #[test]
    fn spellings_of_one_table_are_one_output() {
        let settings = SqlServerSettings {
            host: Some("DB.example".into()),
            database: Some("Sales".into()),
            ..Default::default()
        };
        let id = output_id(&settings, "dbo.Orders");
        assert_eq!(id, "sqlserver://db.example:1433/sales/dbo.orders");
        for same in [
            "Orders",
            "[dbo].[ORDERS]",
            "\"dbo\".\"orders\"",
            "sales.dbo.Orders",
        ] {
            assert_eq!(output_id(&settings, same), id, "{same}");
        }
        assert_ne!(output_id(&settings, "dbo.Orders2"), id);
        assert_ne!(output_id(&settings, "archive.Orders"), id);
    }

    fn col(name: &str, sql_type: SqlType, nullable: bool) -> TargetColumn {
        TargetColumn {
            name: name.to_string(),
            sql_type,
            nullable,
            has_default: false,
            identity: false,
            computed: false,
            collation: None,
            code_page: None,
        }
    }

    #[test]
    fn lists_every_mismatch_at_once() {
        let input = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Int64, true),
            Field::new("extra", DataType::Utf8, true),
        ]);
        let target = vec![
            col("id", SqlType::Int, false),
            col(
                "name",
                SqlType::Chars {
                    kind: CharKind::NVarChar,
                    len: Some(50),
                },
                true,
            ),
            col("required", SqlType::Date, false),
        ];
        let err =
            plan_write("dbo.T", SqlServerWriteMode::Insert, &[], &input, &target).unwrap_err();
        assert!(
            err.starts_with("dbo.T does not match the input (3 problems)"),
            "{err}"
        );
        assert!(
            !err.contains("`id`"),
            "a nullable input column may feed NOT NULL: {err}"
        );
        assert!(
            err.contains("input type Int64 cannot be written to dbo.T.name (nvarchar(50))"),
            "{err}"
        );
        assert!(err.contains("column `extra` is not in dbo.T"), "{err}");
        assert!(
            err.contains("dbo.T.required is NOT NULL without a default"),
            "{err}"
        );
    }

    #[test]
    fn direct_load_only_when_every_column_is_written() {
        let input = Schema::new(vec![
            Field::new("b", DataType::Utf8, true),
            Field::new("a", DataType::Int64, false),
        ]);
        let text = SqlType::Chars {
            kind: CharKind::VarChar,
            len: Some(10),
        };
        let target = vec![
            col("a", SqlType::BigInt, false),
            col("b", text.clone(), true),
        ];
        let plan = plan_write("t", SqlServerWriteMode::Insert, &[], &input, &target).unwrap();
        let direct = plan.direct.expect("direct load");
        assert_eq!(
            direct.iter().map(|c| c.input).collect::<Vec<_>>(),
            vec![1, 0]
        );
        let mut wider = target.clone();
        wider.push(col("c", SqlType::Int, true));
        let plan = plan_write("t", SqlServerWriteMode::Insert, &[], &input, &wider).unwrap();
        assert!(plan.direct.is_none());
        let mut money = target;
        money[0].sql_type = SqlType::Money;
        let plan = plan_write("t", SqlServerWriteMode::Insert, &[], &input, &money).unwrap();
        assert!(plan.direct.is_none());
    }

    #[test]
    fn converts_values_exactly() {
        let n = to_numeric(Value::Decimal(12345, 2), 18, 4).unwrap();
        assert_eq!((n.value(), n.scale()), (1_234_500, 4));
        let err = to_numeric(Value::Decimal(12345, 3), 18, 2).unwrap_err();
        assert!(err.contains("12.345 has more decimals"), "{err}");
        assert!(to_numeric(Value::Int(1000), 5, 2).is_err());
        assert_eq!(to_numeric(Value::Float(1.005), 10, 2).unwrap().value(), 100);
        assert!(fit_int::<i32>(Value::Int(1 << 40), ranges::INT).is_err());
        // 1970-01-02 00:00:00.000000123 as datetime2(7): rounded to 100 ns.
        let dt = datetime2_of(Value::Nanos(NANOS_PER_DAY + 151), 7, "datetime2(7)").unwrap();
        assert_eq!(dt.date().days() as i64, DAYS_0001_TO_1970 + 1);
        assert_eq!((dt.time().increments(), dt.time().scale()), (2, 7));
        // 23:59:59.9999999 rounds into the next day at scale 0.
        let dt = datetime2_of(Value::Nanos(NANOS_PER_DAY - 100), 0, "datetime2(0)").unwrap();
        assert_eq!(
            (dt.date().days() as i64, dt.time().increments()),
            (DAYS_0001_TO_1970 + 1, 0)
        );
        match encode(Value::Days(0), Wire::DateTime).unwrap() {
            ColumnData::DateTime(Some(d)) => {
                assert_eq!((d.days(), d.seconds_fragments()), (25_567, 0))
            }
            other => panic!("{other:?}"),
        }
        assert!(
            encode(
                Value::Str("ñandú"),
                Wire::Str {
                    max_chars: Some(4),
                    unicode: true,
                    code_page: None,
                }
            )
            .is_err()
        );
        assert!(encode(Value::Null, Wire::I32).is_ok());
        assert_eq!(decimal_text(-5, 3), "-0.005");
    }
}
