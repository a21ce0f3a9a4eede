//! The events table in Databricks (`bridge.events.bridge_events` by default), through a SQL
//! warehouse: every state change is one conditional `UPDATE ... WHERE status = ...` statement.
//!
//! `num_affected_rows` tells whether this worker won a claim. A concurrent update of the same
//! row that Delta refuses (a `DELTA_CONCURRENT_*` error) is a lost race, not a failure.
//!
//! Claims take the oldest pending event whose target table has no sync running (the candidates'
//! query excludes them); two servers claiming at the same instant may still start two events of
//! one target side by side (on one machine the sink's table lock then runs them one after the
//! other; across machines their order is not kept).

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::databricks::{DatabricksClient, DatabricksError, Disposition, StatementParam};
use crate::sql::{Dialect, quote_ident};
use crate::sync::apply::SourceCatalog;
use crate::sync::event::{
    Event, EventRowError, EventStatus, NewEvent, Operation, Outcome, check_worker, claimable,
    parse_event_id,
};
use crate::sync::local::{ColumnType, EVENT_COLUMNS};
use crate::sync::store::{Claim, EventStore};
use crate::sync::{Result, SyncError};

/// The default events table.
pub const DEFAULT_EVENTS_TABLE: &str = "bridge.events.bridge_events";
/// Pending events looked at per claim attempt.
const CLAIM_CANDIDATES: usize = 8;

/// Events in a Databricks table, read and changed with SQL statements on a warehouse.
#[derive(Debug, Clone)]
pub struct DatabricksEvents {
    client: DatabricksClient,
    warehouse_id: String,
    /// The table as given (`catalog.schema.table`), for messages.
    table: String,
    /// The table quoted for SQL.
    quoted: String,
}

/// What a conditional update did.
enum Update {
    /// Rows changed (0: the condition no longer held).
    Changed(u64),
    /// Delta refused it because another writer changed the row first.
    Conflict,
}

impl DatabricksEvents {
    /// The events table `table` (`catalog.schema.table`) on `warehouse_id`.
    pub fn new(client: DatabricksClient, warehouse_id: &str, table: &str) -> Result<Self> {
        let parts = crate::sql::validate_ident(table)
            .map_err(|e| SyncError::invalid("events_table", e.to_string()))?;
        if parts.len() != 3 {
            return Err(SyncError::invalid(
                "events_table",
                format!("`{table}` must be catalog.schema.table"),
            ));
        }
        let quoted = quote_ident(table, Dialect::Databricks)
            .map_err(|e| SyncError::invalid("events_table", e.to_string()))?;
        Ok(DatabricksEvents {
            client,
            warehouse_id: warehouse_id.to_string(),
            table: table.to_string(),
            quoted,
        })
    }

    /// The `CREATE TABLE` statement of the events table (and its schema), as
    /// `schemas/bridge_events.sql` has it.
    pub fn create_table_sql(table: &str) -> Result<Vec<String>> {
        let parts = crate::sql::validate_ident(table)
            .map_err(|e| SyncError::invalid("events_table", e.to_string()))?;
        if parts.len() != 3 {
            return Err(SyncError::invalid(
                "events_table",
                format!("`{table}` must be catalog.schema.table"),
            ));
        }
        let schema = quote_ident(&format!("{}.{}", parts[0], parts[1]), Dialect::Databricks)
            .map_err(|e| SyncError::invalid("events_table", e.to_string()))?;
        let quoted = quote_ident(table, Dialect::Databricks)
            .map_err(|e| SyncError::invalid("events_table", e.to_string()))?;
        let columns: Vec<String> = EVENT_COLUMNS
            .iter()
            .map(|c| {
                format!(
                    "  {:<14} {:<13} {}COMMENT '{}'",
                    c.name,
                    c.ty.sql(),
                    if c.nullable { "" } else { "NOT NULL " },
                    c.comment.replace('\'', "''")
                )
            })
            .collect();
        Ok(vec![
            format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
            format!(
                "CREATE TABLE IF NOT EXISTS {quoted} (\n{}\n)\nUSING DELTA\nCLUSTER BY (status)\nCOMMENT 'Databricks -> SQL Server sync requests and pipeline runs (bridge serve)'\nTBLPROPERTIES (\n  'delta.enableDeletionVectors' = 'true',\n  'delta.enableRowTracking' = 'true'\n)",
                columns.join(",\n")
            ),
        ])
    }

    /// The statement that adds the RUN columns a table made by an older bridge lacks, given the
    /// table's columns; `None` when it has them all.
    pub fn upgrade_sql(table: &str, existing: &[String]) -> Result<Option<String>> {
        let quoted = quote_ident(table, Dialect::Databricks)
            .map_err(|e| SyncError::invalid("events_table", e.to_string()))?;
        let missing: Vec<String> = EVENT_COLUMNS
            .iter()
            .filter(|c| {
                crate::sync::local::RUN_COLUMNS.contains(&c.name)
                    && !existing.iter().any(|e| e.eq_ignore_ascii_case(c.name))
            })
            .map(|c| {
                format!(
                    "{} {} COMMENT '{}'",
                    c.name,
                    c.ty.sql(),
                    c.comment.replace('\'', "''")
                )
            })
            .collect();
        Ok((!missing.is_empty())
            .then(|| format!("ALTER TABLE {quoted} ADD COLUMNS ({})", missing.join(", "))))
    }

    fn fail(&self, e: impl std::fmt::Display) -> SyncError {
        SyncError::store(&self.table, e)
    }

    async fn statement(
        &self,
        sql: &str,
        params: &[StatementParam],
    ) -> std::result::Result<crate::databricks::StatementResult, DatabricksError> {
        self.client
            .execute_statement(&self.warehouse_id, sql, params, Disposition::Inline)
            .await
    }

    /// Deletes the pending rows of `event_id` when another row of that id was claimed (a
    /// duplicate queued at the same instant by another server).
    async fn drop_duplicate(&self, event_id: &str) -> Result<()> {
        let sql = format!(
            "DELETE FROM {0} WHERE event_id = :id AND status = 'pending' AND EXISTS \
             (SELECT 1 FROM {0} AS o WHERE o.event_id = :id AND o.status <> 'pending')",
            self.quoted
        );
        match self
            .statement(&sql, &[StatementParam::string("id", event_id)])
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Rows of a query as events.
    async fn events(&self, where_sql: &str, params: &[StatementParam]) -> Result<Vec<Event>> {
        let sql = format!("SELECT {} FROM {} {where_sql}", select_list(), self.quoted);
        let rows = self
            .statement(&sql, params)
            .await
            .map_err(|e| self.fail(e))?
            .into_text_rows()
            .await
            .map_err(|e| self.fail(e))?;
        rows.iter()
            .map(|row| event_of(row).map_err(|e| self.fail(e)))
            .collect()
    }

    /// A conditional `UPDATE`.
    async fn update(
        &self,
        set: &str,
        condition: &str,
        params: &[StatementParam],
    ) -> Result<Update> {
        let sql = format!("UPDATE {} SET {set} WHERE {condition}", self.quoted);
        match self.statement(&sql, params).await {
            Ok(result) => Ok(Update::Changed(
                result.affected_rows().await.map_err(|e| self.fail(e))?,
            )),
            Err(e) if is_conflict(&e) => {
                tracing::debug!(error = %e, "events table: lost an update race");
                Ok(Update::Conflict)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    async fn scalar(&self, sql: &str, params: &[StatementParam]) -> Result<Option<String>> {
        let rows = self
            .statement(sql, params)
            .await
            .map_err(|e| self.fail(e))?
            .into_text_rows()
            .await
            .map_err(|e| self.fail(e))?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten()))
    }
}

/// The columns of [`EVENT_COLUMNS`] as a select list. ARRAY columns are selected as
/// `to_json(col)`: the manifest reports them as `ARRAY`, which results cannot carry as Arrow
/// text, while their JSON is a plain STRING that [`event_of`] parses.
fn select_list() -> String {
    EVENT_COLUMNS
        .iter()
        .map(|c| match c.ty {
            ColumnType::StringArray => format!("to_json({0}) AS {0}", c.name),
            _ => c.name.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether Delta refused a write because of a concurrent one.
fn is_conflict(e: &DatabricksError) -> bool {
    match e {
        DatabricksError::Statement {
            error_code,
            message,
            ..
        } => {
            error_code
                .as_deref()
                .is_some_and(|c| c.contains("CONCURRENT"))
                || message.contains("DELTA_CONCURRENT")
                || message.contains("ConcurrentAppendException")
                || message.contains("ConcurrentDeleteReadException")
        }
        _ => false,
    }
}

/// A timestamp as a statement parameter value.
fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn ts_param(name: &str, at: DateTime<Utc>) -> StatementParam {
    StatementParam::typed(name, "TIMESTAMP", Some(ts(at)))
}

/// Parses a timestamp as Databricks renders it (`2024-01-02T03:04:05.123Z`, or with a space).
fn parse_ts(text: &str) -> std::result::Result<DateTime<Utc>, EventRowError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(
                text.trim_end_matches('Z'),
                "%Y-%m-%dT%H:%M:%S%.f",
            )
        })
        .map(|t| t.and_utc())
        .map_err(|source| EventRowError::Timestamp {
            text: text.to_string(),
            source,
        })
}

/// An event from a row of text values in [`EVENT_COLUMNS`] order.
fn event_of(row: &[Option<String>]) -> std::result::Result<Event, EventRowError> {
    let get = |name: &str| -> Option<&str> {
        let i = EVENT_COLUMNS.iter().position(|c| c.name == name)?;
        row.get(i)?.as_deref()
    };
    let need = |name: &'static str| get(name).ok_or(EventRowError::Null(name));
    let time = |name: &str| get(name).map(parse_ts).transpose();
    let primary_keys = match get("primary_keys") {
        None => Vec::new(),
        Some(json) => {
            serde_json::from_str::<Vec<String>>(json).map_err(|source| EventRowError::Keys {
                json: json.to_string(),
                source,
            })?
        }
    };
    Ok(Event {
        event_id: need("event_id")?.to_string(),
        operation: need("operation")?.parse::<Operation>()?,
        source_table: need("source_table")?.to_string(),
        target_table: need("target_table")?.to_string(),
        primary_keys,
        filter: get("filter").map(str::to_string),
        status: need("status")?.parse::<EventStatus>()?,
        rows_affected: get("rows_affected")
            .map(|v| {
                v.parse::<i64>().map_err(|source| EventRowError::Rows {
                    text: v.to_string(),
                    source,
                })
            })
            .transpose()?,
        error_message: get("error_message").map(str::to_string),
        created_at: parse_ts(need("created_at")?)?,
        started_at: time("started_at")?,
        completed_at: time("completed_at")?,
        created_by: get("created_by").map(str::to_string),
        claimed_by: get("claimed_by").map(str::to_string),
        pipeline: get("pipeline").map(str::to_string),
        country: get("country").map(str::to_string),
        params: get("params").map(str::to_string),
        job_id: get("job_id").map(str::to_string),
    })
}

#[async_trait]
impl EventStore for DatabricksEvents {
    async fn submit_as(&self, event_id: &str, event: NewEvent) -> Result<Event> {
        match self.submit_once(event_id, event).await? {
            Some(stored) => Ok(stored),
            None => Err(SyncError::Duplicate(event_id.to_string())),
        }
    }

    /// One `INSERT ... SELECT ... WHERE NOT EXISTS` (the id looked up in the same statement).
    /// Two inserts of one id committing at the same instant may both land; their rows share the
    /// id, so a claim (by id) takes both as one event.
    async fn submit_once(&self, event_id: &str, event: NewEvent) -> Result<Option<Event>> {
        event.validate()?;
        let mut stored = event.pending(&parse_event_id(event_id)?);
        // At the table's precision (microseconds): the event returned is the event stored.
        stored.created_at = DateTime::from_timestamp_micros(stored.created_at.timestamp_micros())
            .unwrap_or(stored.created_at);
        let keys = serde_json::to_string(&stored.primary_keys).expect("strings serialize");
        let sql = format!(
            "INSERT INTO {0} (event_id, operation, source_table, target_table, primary_keys, filter, status, created_at, created_by, pipeline, country, params) \
             SELECT :event_id, :operation, :source_table, :target_table, from_json(:primary_keys, 'array<string>'), :filter, 'pending', :created_at, :created_by, :pipeline, :country, :params \
             WHERE NOT EXISTS (SELECT 1 FROM {0} WHERE event_id = :event_id)",
            self.quoted
        );
        let params = [
            StatementParam::string("event_id", &stored.event_id),
            StatementParam::string("operation", stored.operation.as_str()),
            StatementParam::string("source_table", &stored.source_table),
            StatementParam::string("target_table", &stored.target_table),
            StatementParam::string("primary_keys", keys),
            StatementParam::typed("filter", "STRING", stored.filter.clone()),
            ts_param("created_at", stored.created_at),
            StatementParam::typed("created_by", "STRING", stored.created_by.clone()),
            StatementParam::typed("pipeline", "STRING", stored.pipeline.clone()),
            StatementParam::typed("country", "STRING", stored.country.clone()),
            StatementParam::typed("params", "STRING", stored.params.clone()),
        ];
        let inserted = self
            .statement(&sql, &params)
            .await
            .map_err(|e| self.fail(e))?
            .affected_rows()
            .await
            .map_err(|e| self.fail(e))?;
        Ok((inserted > 0).then_some(stored))
    }

    async fn get(&self, event_id: &str) -> Result<Option<Event>> {
        let Ok(id) = parse_event_id(event_id) else {
            return Ok(None);
        };
        Ok(self
            .events("WHERE event_id = :id", &[StatementParam::string("id", id)])
            .await?
            .pop())
    }

    async fn list(&self, status: Option<EventStatus>, limit: usize) -> Result<Vec<Event>> {
        let order = format!("ORDER BY created_at DESC, event_id DESC LIMIT {limit}");
        match status {
            Some(s) => {
                self.events(
                    &format!("WHERE status = :status {order}"),
                    &[StatementParam::string("status", s.as_str())],
                )
                .await
            }
            None => self.events(&order, &[]).await,
        }
    }

    async fn claim(&self, worker: &str, what: Claim) -> Result<Option<Event>> {
        check_worker(worker)?;
        let runs = if what == Claim::Any {
            ""
        } else {
            "operation <> 'RUN' AND "
        };
        let candidates = self
            .events(
                &format!(
                    "WHERE status = 'pending' AND {runs}(operation = 'RUN' OR lower(target_table) NOT IN \
                     (SELECT lower(target_table) FROM {} WHERE status = 'running' AND operation <> 'RUN')) \
                     ORDER BY created_at, event_id LIMIT {CLAIM_CANDIDATES}",
                    self.quoted
                ),
                &[],
            )
            .await?;
        // Of several pending syncs of one target, only the oldest.
        for mut event in claimable(candidates, &HashSet::new()) {
            let now = Utc::now();
            // A row whose id another row has already claimed is a duplicate (two servers queued
            // one schedule slot at the same instant): never claimed, and dropped below.
            let claim_sql = format!(
                "event_id = :id AND status = 'pending' AND NOT EXISTS \
                 (SELECT 1 FROM {} AS o WHERE o.event_id = :id AND o.status <> 'pending')",
                self.quoted
            );
            let updated = self
                .update(
                    "status = 'running', started_at = :now, claimed_by = :worker",
                    &claim_sql,
                    &[
                        ts_param("now", now),
                        StatementParam::string("worker", worker),
                        StatementParam::string("id", &event.event_id),
                    ],
                )
                .await?;
            if matches!(updated, Update::Changed(n) if n > 0) {
                event.status = EventStatus::Running;
                event.started_at = Some(now);
                event.claimed_by = Some(worker.to_string());
                return Ok(Some(event));
            }
            if event.operation == Operation::Run {
                self.drop_duplicate(&event.event_id).await?;
            }
        }
        Ok(None)
    }

    async fn reclaim_stale(&self, worker: &str, older_than: Duration) -> Result<Vec<Event>> {
        check_worker(worker)?;
        let lease = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let cutoff = Utc::now()
            .checked_sub_signed(lease)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let stale = self
            .events(
                "WHERE status = 'running' AND started_at < :cutoff ORDER BY created_at, event_id",
                &[ts_param("cutoff", cutoff)],
            )
            .await?;
        let mut taken = Vec::new();
        for mut event in stale {
            // Only the claim that was seen is taken over: same claimer, still stale.
            let Some(by) = event.claimed_by.clone() else {
                continue;
            };
            let now = Utc::now();
            let updated = self
                .update(
                    "started_at = :now, claimed_by = :worker",
                    "event_id = :id AND status = 'running' AND claimed_by = :by AND started_at < :cutoff",
                    &[
                        ts_param("now", now),
                        StatementParam::string("worker", worker),
                        StatementParam::string("id", &event.event_id),
                        StatementParam::string("by", by.clone()),
                        ts_param("cutoff", cutoff),
                    ],
                )
                .await?;
            if matches!(updated, Update::Changed(n) if n > 0) {
                tracing::info!(event_id = %event.event_id, previous = %by, "reclaimed a stale event");
                event.started_at = Some(now);
                event.claimed_by = Some(worker.to_string());
                taken.push(event);
            }
        }
        Ok(taken)
    }

    async fn finish(&self, event_id: &str, worker: &str, outcome: &Outcome) -> Result<bool> {
        check_worker(worker)?;
        let id = parse_event_id(event_id)?;
        let (status, rows, error) = outcome.stored();
        let (rows, error) = (rows.map(|n| n.to_string()), error.map(str::to_string));
        let job = outcome.job_id().map(str::to_string);
        let params = [
            StatementParam::string("status", status.as_str()),
            StatementParam::typed("rows", "BIGINT", rows),
            StatementParam::typed("error", "STRING", error),
            StatementParam::typed("job", "STRING", job),
            ts_param("now", Utc::now()),
            StatementParam::string("id", &id),
            StatementParam::string("worker", worker),
        ];
        for attempt in 0..3 {
            match self
                .update(
                    "status = :status, rows_affected = :rows, error_message = :error, job_id = :job, completed_at = :now",
                    "event_id = :id AND status = 'running' AND claimed_by = :worker",
                    &params,
                )
                .await?
            {
                Update::Changed(n) => return Ok(n > 0),
                Update::Conflict => {
                    tracing::debug!(event_id = %id, attempt, "finish conflicted; retrying");
                }
            }
        }
        Err(self.fail(format!(
            "could not record the outcome of event {id}: 3 update conflicts in a row"
        )))
    }

    async fn prune(&self, finished_before: DateTime<Utc>) -> Result<u64> {
        // Only finished rows, by a predicate on the clustering column: pending and running
        // events are never touched.
        let sql = format!(
            "DELETE FROM {} WHERE status IN ('completed', 'failed') AND completed_at < :before",
            self.quoted
        );
        self.statement(&sql, &[ts_param("before", finished_before)])
            .await
            .map_err(|e| self.fail(e))?
            .affected_rows()
            .await
            .map_err(|e| self.fail(e))
    }

    async fn heartbeat(&self, event_id: &str, worker: &str) -> Result<bool> {
        check_worker(worker)?;
        let id = parse_event_id(event_id)?;
        let params = [
            ts_param("now", Utc::now()),
            StatementParam::string("id", &id),
            StatementParam::string("worker", worker),
        ];
        for _ in 0..3 {
            match self
                .update(
                    "started_at = :now",
                    "event_id = :id AND status = 'running' AND claimed_by = :worker",
                    &params,
                )
                .await?
            {
                Update::Changed(n) => return Ok(n > 0),
                Update::Conflict => {}
            }
        }
        Ok(false)
    }

    async fn pending_count(&self) -> Result<u64> {
        let count = self
            .scalar(
                &format!(
                    "SELECT COUNT(*) FROM {} WHERE status = 'pending'",
                    self.quoted
                ),
                &[],
            )
            .await?;
        count
            .unwrap_or_default()
            .parse()
            .map_err(|e| self.fail(format!("pending count: {e}")))
    }

    async fn oldest_pending(&self) -> Result<Option<DateTime<Utc>>> {
        self.scalar(
            &format!(
                "SELECT MIN(created_at) FROM {} WHERE status = 'pending'",
                self.quoted
            ),
            &[],
        )
        .await?
        .map(|t| parse_ts(&t).map_err(|e| self.fail(e)))
        .transpose()
    }

    fn source_catalog(&self) -> SourceCatalog {
        SourceCatalog::Databricks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ddl_matches_the_documented_schema() {
        let sql = DatabricksEvents::create_table_sql("bridge.events.bridge_events").unwrap();
        assert_eq!(sql[0], "CREATE SCHEMA IF NOT EXISTS `bridge`.`events`");
        let documented = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/bridge_events.sql"),
        )
        .unwrap();
        for column in EVENT_COLUMNS {
            let line = sql[1]
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{} ", column.name)))
                .unwrap();
            let doc = documented
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{} ", column.name)))
                .unwrap();
            let words = |l: &str| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            assert_eq!(words(line), words(doc), "{}", column.name);
        }
        assert!(DatabricksEvents::create_table_sql("events").is_err());
        assert!(DatabricksEvents::create_table_sql("a.b.c; DROP TABLE x").is_err());
    }

    #[test]
    fn array_columns_are_selected_as_json() {
        let list = select_list();
        assert!(
            list.contains("to_json(primary_keys) AS primary_keys"),
            "{list}"
        );
        assert!(list.starts_with("event_id, "), "{list}");
    }

    #[test]
    fn rows_become_events() {
        let mut row: Vec<Option<String>> = vec![None; EVENT_COLUMNS.len()];
        let set = |row: &mut Vec<Option<String>>, name: &str, v: &str| {
            let i = EVENT_COLUMNS.iter().position(|c| c.name == name).unwrap();
            row[i] = Some(v.to_string());
        };
        set(&mut row, "event_id", "0b9e8c1e-3f7a-4d0e-9d7e-1c2b3a4d5e6f");
        set(&mut row, "operation", "UPSERT");
        set(&mut row, "source_table", "main.s.t");
        set(&mut row, "target_table", "dbo.T");
        set(&mut row, "primary_keys", r#"["id","period"]"#);
        set(&mut row, "status", "running");
        set(&mut row, "created_at", "2024-01-02T03:04:05.123Z");
        set(&mut row, "started_at", "2024-01-02 03:04:06.5");
        let e = event_of(&row).unwrap();
        assert_eq!(e.primary_keys, ["id", "period"]);
        assert_eq!(e.status, EventStatus::Running);
        assert_eq!(ts(e.created_at), "2024-01-02T03:04:05.123000Z");
        assert_eq!(ts(e.started_at.unwrap()), "2024-01-02T03:04:06.500000Z");
    }
}
