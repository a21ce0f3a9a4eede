//! Bulk loads (TDS `INSERT BULK`) of the input, batch by batch, into the table or its staging
//! temp table.

use deltalake::arrow::array::Array;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use tiberius::TokenRow;

use super::conn::{Conn, Fail, is_io};
use super::plan::WritePlan;
use crate::mssql::encode::{Wire, encode, value_at};
use crate::mssql::{MssqlError, Phase};
use crate::pipeline::metrics::StepMetrics;
use crate::sql::{Dialect, quote_ident};

/// A session temp table holding the written columns with the target's types.
pub(super) struct Stage {
    /// Quoted name, `[#bridge_stage_<hex>]`.
    pub(super) name: String,
}

impl Stage {
    pub(super) async fn create(conn: &mut Conn, plan: &WritePlan) -> Result<Stage, Fail> {
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

    pub(super) async fn load(
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

    pub(super) async fn drop(self, conn: &mut Conn) -> Result<(), Fail> {
        conn.batch(&format!("DROP TABLE {}", self.name)).await
    }
}

/// One column of a bulk load: where its values come from and how they are sent.
#[derive(Debug, Clone)]
pub(super) struct BulkColumn {
    pub(super) input: usize,
    pub(super) label: String,
    pub(super) wire: Wire,
    pub(super) not_null: bool,
}

/// Streams the input into `table` (the target itself or its staging table; `target` names the
/// target in messages) as a TDS bulk load; returns the rows loaded. Each batch is checked and
/// encoded whole before any of its rows is sent.
pub(super) async fn bulk_load(
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
            .map_err(|e| (column.label.clone(), e.to_string()))?;
        token.push(value);
    }
    Ok(token)
}
