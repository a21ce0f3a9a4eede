//! Idempotency keys: `dbo.bridge_applied_keys`, recording a key in the write's transaction and
//! reporting a key already applied.

use super::SqlServerSink;
use super::conn::{Conn, Fail, int_at};
use crate::pipeline::metrics::StepMetrics;

/// In the output of a sink run whose idempotency key was already recorded (that run changed
/// nothing); the step's [`StepMetrics::already_applied`] says it by type.
pub const ALREADY_APPLIED: &str = ": already applied under idempotency key";

/// The table recording idempotency keys.
pub(super) const APPLIED_KEYS: &str = "[dbo].[bridge_applied_keys]";
/// Longest idempotency key (`nvarchar(200)`).
pub(super) const MAX_KEY_CHARS: usize = 200;
/// SQL Server's "Violation of PRIMARY KEY constraint".
const DUPLICATE_KEY: u32 = 2627;
/// SQL Server's "There is already an object named …".
const OBJECT_EXISTS: u32 = 2714;

/// Creates `dbo.bridge_applied_keys` when missing (outside any transaction). Two sessions may
/// race to create it: the loser's "already exists" is not an error.
pub(super) async fn ensure_applied_keys_table(conn: &mut Conn) -> Result<(), Fail> {
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
pub(super) async fn applied_rows(conn: &mut Conn, key: &str) -> Result<Option<u64>, Fail> {
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
    pub(super) fn already_applied(&self, key: &str, rows: u64, metrics: &StepMetrics) -> String {
        metrics.reset_direct();
        metrics.record(usize::try_from(rows).unwrap_or(usize::MAX), 0);
        metrics.mark_already_applied();
        format!(
            "{} ({}{ALREADY_APPLIED} `{key}` with {rows} row{}; nothing written)",
            self.table.display,
            self.mode_name(),
            if rows == 1 { "" } else { "s" }
        )
    }
}

/// Inserts `key` into [`APPLIED_KEYS`] (the transaction's first statement, so a concurrent run
/// with the same key waits here until this one ends); `false` when another run recorded the key
/// (and committed) while this one waited.
pub(super) async fn record_key(conn: &mut Conn, key: &str) -> Result<bool, Fail> {
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
        Ok(_) => Ok(true),
        Err(Fail::Sql(e)) if e.code == Some(DUPLICATE_KEY) && !conn.broken => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets the recorded key's `rows_affected` to the rows written.
pub(super) async fn set_key_rows(conn: &mut Conn, key: &str, rows: u64) -> Result<(), Fail> {
    conn.execute_with(
        &format!(
            "UPDATE {APPLIED_KEYS} SET rows_affected = @P1, applied_at = SYSUTCDATETIME() \
             WHERE [key] = @P2"
        ),
        &[&i64::try_from(rows).unwrap_or(i64::MAX), &key],
    )
    .await?;
    Ok(())
}
