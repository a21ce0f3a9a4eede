//! The write modes (insert, upsert, update, delete, replace) inside the open transaction, and
//! their caps: `max_delete_rows` and one target row per input key, counted with `ROWCOUNT_BIG()`.

use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::prelude::DataFrame;

use super::SqlServerSink;
use super::bulk::{Stage, bulk_load};
use super::config::SqlServerWriteMode;
use super::conn::{Conn, Fail};
use super::plan::WritePlan;
use super::target::TableRef;
use crate::error::Refusal;
use crate::pipeline::metrics::StepMetrics;

impl SqlServerSink {
    /// Does the mode's whole write inside the open transaction; returns the output description
    /// and the rows written.
    pub(super) async fn write(
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
            Some(limit) if deleted > limit => Err(Fail::Refused(Refusal::DeleteCap {
                table: self.table.display.clone(),
                deleted,
                limit,
            })),
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
