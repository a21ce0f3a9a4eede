//! `sqlserver` sink: writes a step's rows into a SQL Server table (insert, upsert, delete, replace).
//! The whole write is one transaction on one connection; it commits only when the run commits.
//!
//! Rows always travel as a TDS bulk load (tiberius `bulk_insert`), converted from Arrow row by row
//! while the input streams; values never appear in SQL text and identifiers are validated and
//! quoted with [`crate::sql::quote_ident`].
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
//!
//! The code: the sink and its two phases here; `modes` (the write modes and their caps), `bulk`
//! (bulk loads and the staging table), `target` (the table's columns), `plan` (checking the input
//! against them), `types` (SQL Server column types), `keys` (idempotency keys), `conn` (the
//! connection); values are encoded by `crate::mssql::encode`.

pub mod config;

mod bulk;
mod conn;
mod keys;
mod modes;
mod plan;
mod rows;
mod target;
mod types;

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::datatypes::Schema;
use deltalake::datafusion::prelude::{DataFrame, SessionContext};

use crate::error::{Error, Result};
use crate::mssql::{MssqlError, SqlServerSettings, connect};
use crate::pipeline::metrics::StepMetrics;
use crate::sinks::{CommitPhase, Sink, StagedOutput, check_columns};
use config::{SqlServerSinkSpec, SqlServerWriteMode};
use conn::{Conn, Fail};
use keys::{
    APPLIED_KEYS, MAX_KEY_CHARS, applied_rows, ensure_applied_keys_table, record_key, set_key_rows,
};
use plan::plan_write;
use target::{TableRef, quote_column, read_columns};

pub use keys::ALREADY_APPLIED;
pub use plan::PlanError;

/// Writes rows into a SQL Server table.
#[derive(Debug)]
pub struct SqlServerSink {
    step: String,
    spec: SqlServerSinkSpec,
    settings: SqlServerSettings,
    table: TableRef,
}

impl SqlServerSink {
    /// A SQL Server sink for a step; `settings` are those of `config/` and the environment, the
    /// step's `connection:` overrides them.
    pub fn new(step: &str, spec: &SqlServerSinkSpec, settings: SqlServerSettings) -> Result<Self> {
        let settings = match &spec.connection {
            Some(over) => settings.merged(over),
            None => settings,
        };
        let table =
            TableRef::parse(&spec.table).map_err(|e| Error::step(step, format!("table: {e}")))?;
        Ok(SqlServerSink {
            step: step.to_string(),
            spec: spec.clone(),
            settings,
            table,
        })
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
            .map_err(Fail::Plan)
        }
        .await
        .map_err(|e| e.into_error(&self.step))?;
        let written: Result<Option<String>, Fail> = async {
            conn.batch("SET XACT_ABORT ON; BEGIN TRANSACTION").await?;
            // First statement of the transaction: a concurrent run with the same key waits here
            // until this one ends.
            if let Some(key) = key
                && !record_key(&mut conn, key).await?
            {
                return Ok(None);
            }
            let (output, rows) = self.write(&mut conn, &plan, input, &metrics).await?;
            if let Some(key) = key {
                set_key_rows(&mut conn, key, rows).await?;
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

/// A write done inside an open transaction, waiting for the run to commit.
struct StagedSqlServerWrite {
    step: String,
    table: String,
    conn: Conn,
    output: String,
    /// Whether a transaction is open (false when the idempotency key was already recorded).
    in_transaction: bool,
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
        } = *self;
        if !in_transaction {
            let _ = conn.client.close().await;
            return Ok(vec![output]);
        }
        conn.batch("COMMIT TRANSACTION")
            .await
            .map_err(|e| match e {
                Fail::Sql(m) => Error::step_from(
                    &step,
                    MssqlError {
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
}
