//! The sink's connection (batches, counted statements, rollback) and why a write failed.

use std::time::Duration;

use deltalake::datafusion::error::DataFusionError;

use crate::error::{Error, Refusal};
use crate::mssql::{Client, MssqlError, Phase};

/// How long `ROLLBACK` may take before the connection is simply closed.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn is_io(e: &tiberius::error::Error) -> bool {
    matches!(e, tiberius::error::Error::Io { .. })
}

/// Why a write failed (turned into [`Error`] with the step's name at the end).
#[derive(Debug)]
pub(super) enum Fail {
    /// SQL Server or the connection; transient ones are retried by the runner.
    Sql(MssqlError),
    /// Reading the input failed (may wrap a transient source error).
    Input(Box<DataFusionError>),
    /// The input does not fit the table (nothing was written).
    Plan(super::PlanError),
    /// Data, configuration.
    Other(String),
    /// Over a limit the caller set (nothing was changed).
    Refused(Refusal),
}

impl Fail {
    pub(super) fn into_error(self, step: &str) -> Error {
        match self {
            Fail::Sql(e) => Error::step_from(step, e),
            Fail::Input(e) => Error::step_from(step, *e),
            Fail::Plan(e) => Error::step_from(step, e),
            Fail::Other(message) => Error::step(step, message),
            Fail::Refused(refusal) => Error::Refused {
                step: step.to_string(),
                refusal,
            },
        }
    }
}

/// The sink's connection and whether it may still be talked to.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) target: String,
    pub(super) broken: bool,
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
    pub(super) fn fail(&mut self, e: tiberius::error::Error) -> Fail {
        if is_io(&e) {
            self.broken = true;
        }
        Fail::Sql(MssqlError::from_tiberius(Phase::Query, &self.target, &e))
    }

    /// Runs a batch (session scope: temp tables created here outlive it), ignoring results.
    pub(super) async fn batch(&mut self, sql: &str) -> Result<(), Fail> {
        tracing::debug!(sql, "sqlserver sink batch");
        let result = match self.client.simple_query(sql).await {
            Ok(stream) => stream.into_results().await.map(|_| ()),
            Err(e) => Err(e),
        };
        result.map_err(|e| self.fail(e))
    }

    /// Runs one DML statement and returns the rows it affected.
    pub(super) async fn execute(&mut self, sql: &str) -> Result<u64, Fail> {
        tracing::debug!(sql, "sqlserver sink statement");
        match self.client.execute(sql, &[]).await {
            Ok(result) => Ok(result.total()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Runs one DML statement and returns the rows that statement itself changed, as the server
    /// counts them right after it in the same batch (`ROWCOUNT_BIG()`; rows changed by triggers
    /// are not included, unlike the sum of every DONE count of the request).
    pub(super) async fn execute_counted(&mut self, sql: &str) -> Result<u64, Fail> {
        let n = self
            .scalar(&format!("{sql}; SELECT ROWCOUNT_BIG()"))
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Runs one parameterised DML statement (sp_executesql) and returns the rows it affected.
    pub(super) async fn execute_with(
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
    pub(super) async fn scalar(&mut self, sql: &str) -> Result<i64, Fail> {
        tracing::debug!(sql, "sqlserver sink query");
        let row = match self.client.simple_query(sql).await {
            Ok(stream) => stream.into_row().await,
            Err(e) => Err(e),
        };
        let row = row.map_err(|e| self.fail(e))?;
        Ok(row.as_ref().and_then(|r| int_at(r, 0)).unwrap_or(0))
    }

    /// Rows of a parameterised query (sp_executesql).
    pub(super) async fn rows(
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
    pub(super) async fn rollback(&mut self, step: &str) {
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
                tracing::warn!(step, error = %e, "rollback failed; closing the connection");
            }
            Err(_) => tracing::warn!(step, "rollback timed out; closing the connection"),
        }
    }
}

/// An integer cell, whatever integer type the server sent.
pub(super) fn int_at(row: &tiberius::Row, i: usize) -> Option<i64> {
    row.try_get::<i64, _>(i)
        .ok()
        .flatten()
        .or_else(|| row.try_get::<i32, _>(i).ok().flatten().map(i64::from))
        .or_else(|| row.try_get::<i16, _>(i).ok().flatten().map(i64::from))
        .or_else(|| row.try_get::<u8, _>(i).ok().flatten().map(i64::from))
}
