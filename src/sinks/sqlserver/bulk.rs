//! Bulk loads (TDS `INSERT BULK`) of the input, batch by batch, into the table or its staging
//! temp table.

use deltalake::arrow::array::Array;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use super::conn::{Conn, Fail, is_io};
use super::plan::WritePlan;
use super::rows;
use crate::mssql::encode::Wire;
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
/// encoded whole ([`rows::encode_batch`]) before any of its rows is sent.
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
    let frames = request.column_frames();
    let mut sent: u64 = 0;
    let mut failure: Option<Fail> = (frames.len() != columns.len()).then(|| {
        Fail::Other(format!(
            "the server's bulk load into {target_name} has {} columns where {} were planned: the \
             table changed while the step ran; run it again",
            frames.len(),
            columns.len()
        ))
    });
    while failure.is_none()
        && let Some(batch) = stream.next().await
    {
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
        // The whole batch is checked and encoded before any of it is sent.
        if let Err(bad) = rows::encode_batch(&mut request, &frames, columns, &arrays) {
            failure = Some(Fail::Other(format!(
                "column `{}`, input row {}: {}; nothing was written to {target_name} (its \
                 transaction is rolled back)",
                bad.column,
                sent + bad.row as u64 + 1,
                bad.message
            )));
            break;
        }
        // A failed send may leave half a packet on the wire: the connection stays broken.
        request.flush_packets().await.map_err(|e| sql(&e))?;
        sent += batch.num_rows() as u64;
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
