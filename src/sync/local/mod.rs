//! The events table as a local Delta table (delta-rs), for `bridge serve` without Databricks and
//! for tests. Its columns are those of `schemas/bridge_events.sql` ([`EVENT_COLUMNS`]).
//!
//! # Atomic claims
//!
//! A claim is a Delta `UPDATE ... SET status = 'running', started_at = now, claimed_by = worker
//! WHERE event_id = X AND status = 'pending'`, committed with delta-rs' optimistic concurrency.
//! Values are bound as literals of DataFusion expressions, never pasted into SQL text.
//!
//! Every event is appended in its own data file, and an UPDATE rewrites the files holding the rows
//! it matched (removes them and adds the rewritten ones). Two workers claiming the same event
//! therefore both remove the same file; the second commit finds the first in the log and its
//! conflict check fails with `ConcurrentDeleteDelete` (or `ConcurrentDeleteRead`), so it is not
//! committed. A worker whose snapshot already shows the event running matches no row and
//! commits nothing. Either way the loser sees 0 rows updated: a lost race, not an error, and it
//! moves on to the next pending event. Commits that touch other events' files do not conflict and
//! are retried by delta-rs on the new version. Submits (blind appends) may be refused by delta-rs
//! after a concurrent UPDATE (it treats an append as reading every file); they are retried here.
//!
//! The same holds for [`finish`](EventStore::finish) (`WHERE ... status = 'running' AND
//! claimed_by = worker`) and [`reclaim_stale`](EventStore::reclaim_stale) (`WHERE ... status =
//! 'running' AND claimed_by = <old> AND started_at = <old>`): a concurrent change of the same
//! event makes exactly one of them win. Compacting the table (OPTIMIZE) while servers use it is
//! not covered by the tests; the one-file-per-event layout is what keeps claims of different
//! events from conflicting, so leave the table uncompacted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use deltalake::DeltaTableError;
use deltalake::arrow::datatypes::DataType as ArrowType;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::logical_expr::{Expr, SortExpr, col, lit};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::StructField;
use deltalake::kernel::transaction::TransactionError;
use deltalake::protocol::SaveMode;
use tokio::sync::Mutex;

use crate::sync::event::{
    Event, EventStatus, NewEvent, Operation, Outcome, check_worker, claimable, parse_event_id,
    running_targets,
};
use crate::sync::store::{Claim, EventStore};
use crate::sync::{Result, SyncError};

mod schema;

pub use schema::{ColumnType, EVENT_COLUMNS, EventColumn, RUN_COLUMNS, event_schema};
use schema::{batch_of, events_of, same_type};

/// How many pending events one claim attempt looks at.
const CLAIM_CANDIDATES: usize = 8;
/// How many times a claim re-reads the table after losing every candidate.
const CLAIM_ROUNDS: usize = 4;
/// How many times a submit or finish is retried after a commit conflict.
const CONFLICT_RETRIES: usize = 8;

/// The events table as a local Delta table.
#[derive(Debug)]
pub struct LocalDeltaEvents {
    path: PathBuf,
    location: String,
    /// The table at the latest version this store saw; refreshed before each operation.
    table: Mutex<DeltaTable>,
}

/// What a conditional UPDATE did.
enum Update {
    /// It committed and changed this many rows.
    Changed(usize),
    /// Another writer changed the rows first; nothing was committed.
    Conflict,
}

impl LocalDeltaEvents {
    /// Opens the events table at `path`, creating the folder and the table when missing.
    /// An existing table must have exactly the columns of [`EVENT_COLUMNS`].
    pub async fn open(path: impl AsRef<Path>) -> Result<LocalDeltaEvents> {
        let path = path.as_ref().to_path_buf();
        let location = path.display().to_string();
        let fail = |e: &dyn std::fmt::Display| SyncError::store(&location, e);
        std::fs::create_dir_all(&path).map_err(|e| fail(&e))?;
        let path = path.canonicalize().map_err(|e| fail(&e))?;
        let url = deltalake::ensure_table_uri(path.display().to_string()).map_err(|e| fail(&e))?;
        let mut table = deltalake::DeltaTableBuilder::from_url(url.clone())
            .and_then(deltalake::DeltaTableBuilder::build)
            .map_err(|e| fail(&e))?;
        // Load only a table that exists: loading a new folder logs the Delta kernel's "No files
        // in log segment" at ERROR level before delta-rs treats it as empty.
        let exists = table
            .verify_deltatable_existence()
            .await
            .map_err(|e| fail(&e))?;
        if exists {
            table.load().await.map_err(|e| fail(&e))?;
        } else {
            let created = table
                .clone()
                .create()
                .with_table_name("bridge_events")
                .with_comment("Databricks -> SQL Server sync requests (bridge serve)")
                .with_columns(EVENT_COLUMNS.iter().map(|c| {
                    StructField::new(c.name, c.ty.delta(), c.nullable)
                        .with_metadata([("comment", c.comment)])
                }))
                .with_save_mode(SaveMode::Ignore)
                .await;
            table = match created {
                Ok(t) => t,
                // Another process created it at the same moment.
                Err(e) => {
                    tracing::debug!(error = %e, "creating the events table failed; reloading");
                    let mut t = DeltaTable::try_from_url(url).await.map_err(|e| fail(&e))?;
                    t.load().await.map_err(|e| fail(&e))?;
                    t
                }
            };
        }
        let store = LocalDeltaEvents {
            path,
            location,
            table: Mutex::new(table),
        };
        store.check_schema().await?;
        Ok(store)
    }

    /// Every event of the table, oldest first.
    pub async fn all_events(&self) -> Result<Vec<Event>> {
        self.read(None, oldest_first(), None).await
    }

    /// The table folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, e: impl std::fmt::Display) -> SyncError {
        SyncError::store(&self.location, e)
    }

    /// Checks the table's columns; a table made before RUN events gains their columns in place.
    async fn check_schema(&self) -> Result<()> {
        let table = self.latest().await?;
        let names: Vec<String> = table
            .snapshot()
            .map_err(|e| self.fail(e))?
            .snapshot()
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let missing: Vec<&EventColumn> = EVENT_COLUMNS
            .iter()
            .filter(|c| RUN_COLUMNS.contains(&c.name) && !names.iter().any(|n| n == c.name))
            .collect();
        if !missing.is_empty() && names.len() + missing.len() == EVENT_COLUMNS.len() {
            let upgraded = table
                .add_columns()
                .with_fields(missing.iter().map(|c| {
                    StructField::new(c.name, c.ty.delta(), c.nullable)
                        .with_metadata([("comment", c.comment)])
                }))
                .await;
            match upgraded {
                Ok(t) => *self.table.lock().await = t,
                // Another server upgraded it first: the check below reads its version.
                Err(e) => tracing::debug!(error = %e, "adding the RUN columns failed; rechecking"),
            }
            tracing::info!(table = %self.location, "events table upgraded with the RUN columns");
        }
        let table = self.latest().await?;
        let schema = table
            .snapshot()
            .map_err(|e| self.fail(e))?
            .snapshot()
            .arrow_schema();
        let found: Vec<(String, ArrowType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        let expected: Vec<(String, ArrowType)> = EVENT_COLUMNS
            .iter()
            .map(|c| (c.name.to_string(), c.ty.arrow()))
            .collect();
        let same = found.len() == expected.len()
            && found
                .iter()
                .zip(&expected)
                .all(|((fname, ftype), (ename, etype))| fname == ename && same_type(ftype, etype));
        if !same {
            let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
            return Err(self.fail(format!(
                "is not a bridge_events table: its columns are {}; expected those of schemas/bridge_events.sql",
                names.join(", ")
            )));
        }
        Ok(())
    }

    /// The table at its latest version.
    async fn latest(&self) -> Result<DeltaTable> {
        let mut table = self.table.lock().await;
        table.update_state().await.map_err(|e| self.fail(e))?;
        Ok(table.clone())
    }

    /// Keeps a table state returned by an operation if it is newer than the cached one.
    async fn remember(&self, newer: DeltaTable) {
        let mut table = self.table.lock().await;
        if newer.version() > table.version() {
            *table = newer;
        }
    }

    /// The lowercased target tables of the running sync events.
    async fn running_targets(&self) -> Result<std::collections::HashSet<String>> {
        let running = self
            .read(
                Some(col("status").eq(lit(EventStatus::Running.as_str()))),
                Vec::new(),
                None,
            )
            .await?;
        Ok(running_targets(&running))
    }

    /// Rows matching `filter`, sorted, at most `limit`.
    async fn read(
        &self,
        filter: Option<Expr>,
        sort: Vec<SortExpr>,
        limit: Option<usize>,
    ) -> Result<Vec<Event>> {
        let table = self.latest().await?;
        let ctx: SessionContext = deltalake::delta_datafusion::create_session().into_inner();
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| self.fail(e))?;
        let provider = table.table_provider().await.map_err(|e| self.fail(e))?;
        let mut df = ctx.read_table(provider).map_err(|e| self.fail(e))?;
        if let Some(filter) = filter {
            df = df.filter(filter).map_err(|e| self.fail(e))?;
        }
        if !sort.is_empty() {
            df = df.sort(sort).map_err(|e| self.fail(e))?;
        }
        if limit.is_some() {
            df = df.limit(0, limit).map_err(|e| self.fail(e))?;
        }
        let batches = df.collect().await.map_err(|e| self.fail(e))?;
        let mut events = Vec::new();
        for batch in &batches {
            events.extend(events_of(batch).map_err(|e| self.fail(e))?);
        }
        Ok(events)
    }

    /// `UPDATE ... SET updates WHERE predicate`, committed optimistically.
    async fn update(&self, predicate: Expr, updates: Vec<(&str, Expr)>) -> Result<Update> {
        let table = self.latest().await?;
        let mut builder = table.update().with_predicate(predicate);
        for (column, value) in updates {
            builder = builder.with_update(column, value);
        }
        // The span lets the log filter silence delta-rs' ERROR for a lost race here alone.
        let span = tracing::warn_span!("events_update");
        match tracing::Instrument::instrument(builder.into_future(), span).await {
            Ok((table, metrics)) => {
                self.remember(table).await;
                Ok(Update::Changed(metrics.num_updated_rows))
            }
            Err(e) if is_conflict(&e) => {
                tracing::debug!(error = %e, "events table: lost a commit race");
                Ok(Update::Conflict)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Deletes the pending rows of `event_id` when another row of that id is no longer pending
    /// (a duplicate queued at the same instant by another server: `submit_once` looks the id up
    /// before it appends); `true` when it did.
    async fn drop_duplicate(&self, event_id: &str) -> Result<bool> {
        let taken = self
            .read(
                Some(
                    col("event_id")
                        .eq(lit(event_id))
                        .and(col("status").not_eq(lit(EventStatus::Pending.as_str()))),
                ),
                Vec::new(),
                Some(1),
            )
            .await?;
        if taken.is_empty() {
            return Ok(false);
        }
        let table = self.latest().await?;
        let deleted = table
            .delete()
            .with_predicate(
                col("event_id")
                    .eq(lit(event_id))
                    .and(col("status").eq(lit(EventStatus::Pending.as_str()))),
            )
            .await;
        match deleted {
            Ok((table, _)) => self.remember(table).await,
            Err(e) if is_conflict(&e) => {}
            Err(e) => return Err(self.fail(e)),
        }
        Ok(true)
    }

    /// Claims one event if it is still pending; `true` if this call claimed it.
    async fn try_claim(&self, event_id: &str, worker: &str, now: DateTime<Utc>) -> Result<bool> {
        let predicate = col("event_id")
            .eq(lit(event_id))
            .and(col("status").eq(lit(EventStatus::Pending.as_str())));
        let updated = self
            .update(
                predicate,
                vec![
                    ("status", lit(EventStatus::Running.as_str())),
                    ("started_at", timestamp(now)),
                    ("claimed_by", lit(worker)),
                ],
            )
            .await?;
        Ok(matches!(updated, Update::Changed(n) if n > 0))
    }
}

#[async_trait]
impl EventStore for LocalDeltaEvents {
    async fn submit_as(&self, event_id: &str, event: NewEvent) -> Result<Event> {
        event.validate()?;
        let stored = Event {
            created_at: now(),
            ..event.pending(&crate::sync::event::parse_event_id(event_id)?)
        };
        let batch = batch_of(&stored).map_err(|e| self.fail(e))?;
        for attempt in 0.. {
            let table = self.latest().await?;
            match table
                .write(vec![batch.clone()])
                .with_save_mode(SaveMode::Append)
                .await
            {
                Ok(table) => {
                    self.remember(table).await;
                    return Ok(stored);
                }
                Err(e) if is_conflict(&e) && attempt < CONFLICT_RETRIES => {
                    tracing::debug!(error = %e, attempt, "events table: submit conflicted; retrying");
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        unreachable!("the loop returns")
    }

    /// Looks the id up, then appends: two servers queueing one id at the same instant may both
    /// store it, and the claim (by id) then takes both rows as one event.
    async fn submit_once(&self, event_id: &str, event: NewEvent) -> Result<Option<Event>> {
        if self.get(event_id).await?.is_some() {
            return Ok(None);
        }
        self.submit_as(event_id, event).await.map(Some)
    }

    async fn get(&self, event_id: &str) -> Result<Option<Event>> {
        let Ok(id) = parse_event_id(event_id) else {
            return Ok(None);
        };
        Ok(self
            .read(Some(col("event_id").eq(lit(id))), Vec::new(), Some(1))
            .await?
            .pop())
    }

    async fn list(&self, status: Option<EventStatus>, limit: usize) -> Result<Vec<Event>> {
        let filter = status.map(|s| col("status").eq(lit(s.as_str())));
        self.read(
            filter,
            vec![
                col("created_at").sort(false, false),
                col("event_id").sort(false, false),
            ],
            Some(limit),
        )
        .await
    }

    async fn claim(&self, worker: &str, what: Claim) -> Result<Option<Event>> {
        check_worker(worker)?;
        for _ in 0..CLAIM_ROUNDS {
            let candidates = self
                .read(
                    Some(col("status").eq(lit(EventStatus::Pending.as_str()))),
                    oldest_first(),
                    Some(CLAIM_CANDIDATES),
                )
                .await?;
            let mut candidates = claimable(candidates, &self.running_targets().await?);
            candidates.retain(|e| what.allows(e.operation));
            if candidates.is_empty() {
                return Ok(None);
            }
            // The oldest first; after a lost race, a random one of the others: the workers that
            // lost together would otherwise all race again for the next oldest.
            let mut candidates = std::collections::VecDeque::from(candidates);
            while let Some(mut event) = candidates.pop_front() {
                if event.operation == Operation::Run && self.drop_duplicate(&event.event_id).await?
                {
                    continue;
                }
                let now = now();
                if self.try_claim(&event.event_id, worker, now).await? {
                    event.status = EventStatus::Running;
                    event.started_at = Some(now);
                    event.claimed_by = Some(worker.to_string());
                    return Ok(Some(event));
                }
                if !candidates.is_empty() {
                    let pick = uuid::Uuid::new_v4().as_u128() as usize % candidates.len();
                    candidates.swap(0, pick);
                }
            }
        }
        Ok(None)
    }

    async fn reclaim_stale(&self, worker: &str, older_than: Duration) -> Result<Vec<Event>> {
        check_worker(worker)?;
        let lease = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let cutoff = now()
            .checked_sub_signed(lease)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let stale = self
            .read(
                Some(
                    col("status")
                        .eq(lit(EventStatus::Running.as_str()))
                        .and(col("started_at").lt(timestamp(cutoff))),
                ),
                oldest_first(),
                None,
            )
            .await?;
        let mut taken = Vec::new();
        for mut event in stale {
            // Only the claim that was seen is taken over: same claimer, same start.
            let mut predicate = col("event_id")
                .eq(lit(event.event_id.as_str()))
                .and(col("status").eq(lit(EventStatus::Running.as_str())));
            predicate = match &event.claimed_by {
                Some(by) => predicate.and(col("claimed_by").eq(lit(by.as_str()))),
                None => predicate.and(col("claimed_by").is_null()),
            };
            predicate = match event.started_at {
                Some(at) => predicate.and(col("started_at").eq(timestamp(at))),
                None => predicate.and(col("started_at").is_null()),
            };
            let now = now();
            let updated = self
                .update(
                    predicate,
                    vec![("started_at", timestamp(now)), ("claimed_by", lit(worker))],
                )
                .await?;
            if matches!(updated, Update::Changed(n) if n > 0) {
                tracing::info!(
                    event_id = %event.event_id,
                    previous = event.claimed_by.as_deref().unwrap_or("?"),
                    "reclaimed a stale event"
                );
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
        let (rows, error) = (
            lit(ScalarValue::Int64(rows)),
            lit(ScalarValue::Utf8(error.map(str::to_string))),
        );
        let job = lit(ScalarValue::Utf8(outcome.job_id().map(str::to_string)));
        for attempt in 0..=CONFLICT_RETRIES {
            let predicate = col("event_id")
                .eq(lit(id.as_str()))
                .and(col("status").eq(lit(EventStatus::Running.as_str())))
                .and(col("claimed_by").eq(lit(worker)));
            let updated = self
                .update(
                    predicate,
                    vec![
                        ("status", lit(status.as_str())),
                        ("rows_affected", rows.clone()),
                        ("job_id", job.clone()),
                        ("error_message", error.clone()),
                        ("completed_at", timestamp(now())),
                    ],
                )
                .await?;
            match updated {
                Update::Changed(n) => return Ok(n > 0),
                // Someone changed the event's file: look again (it may have been reclaimed).
                Update::Conflict => {
                    tracing::debug!(event_id = %id, attempt, "finish conflicted; retrying");
                }
            }
        }
        Err(self.fail(format!(
            "could not record the outcome of event {id}: {} commit conflicts in a row",
            CONFLICT_RETRIES + 1
        )))
    }

    async fn heartbeat(&self, event_id: &str, worker: &str) -> Result<bool> {
        check_worker(worker)?;
        let id = parse_event_id(event_id)?;
        for attempt in 0..=CONFLICT_RETRIES {
            let predicate = col("event_id")
                .eq(lit(id.as_str()))
                .and(col("status").eq(lit(EventStatus::Running.as_str())))
                .and(col("claimed_by").eq(lit(worker)));
            match self
                .update(predicate, vec![("started_at", timestamp(now()))])
                .await?
            {
                Update::Changed(n) => return Ok(n > 0),
                Update::Conflict => {
                    tracing::debug!(event_id = %id, attempt, "heartbeat conflicted; retrying");
                }
            }
        }
        Ok(false)
    }

    async fn pending_count(&self) -> Result<u64> {
        let table = self.latest().await?;
        let ctx: SessionContext = deltalake::delta_datafusion::create_session().into_inner();
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| self.fail(e))?;
        let provider = table.table_provider().await.map_err(|e| self.fail(e))?;
        let n = ctx
            .read_table(provider)
            .and_then(|df| df.filter(col("status").eq(lit(EventStatus::Pending.as_str()))))
            .map_err(|e| self.fail(e))?
            .count()
            .await
            .map_err(|e| self.fail(e))?;
        Ok(n as u64)
    }

    async fn oldest_pending(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .read(
                Some(col("status").eq(lit(EventStatus::Pending.as_str()))),
                oldest_first(),
                Some(1),
            )
            .await?
            .first()
            .map(|e| e.created_at))
    }

    fn watch_path(&self) -> Option<PathBuf> {
        Some(self.path.join("_delta_log"))
    }
}

fn oldest_first() -> Vec<SortExpr> {
    vec![
        col("created_at").sort(true, false),
        col("event_id").sort(true, false),
    ]
}

/// Now, at the table's precision (microseconds), so stored and returned values are equal.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn timestamp(t: DateTime<Utc>) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(t.timestamp_micros()),
        Some("UTC".into()),
    ))
}

/// Whether a delta-rs error means another writer committed a conflicting change first.
fn is_conflict(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_),
        } | DeltaTableError::VersionAlreadyExists(_)
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::sync::event::Operation;

    fn request(n: usize) -> NewEvent {
        NewEvent {
            operation: Operation::Upsert,
            source_table: "main.sales.results".into(),
            target_table: "dbo.Results".into(),
            primary_keys: vec!["id".into(), format!("k{n}")],
            filter: Some("amount > 1".into()),
            created_by: Some("job".into()),
            pipeline: None,
            country: None,
            params: None,
        }
    }

    #[tokio::test]
    async fn an_event_can_be_stored_under_a_chosen_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDeltaEvents::open(dir.path().join("events"))
            .await
            .unwrap();
        let id = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
        let stored = store.submit_as(id, request(1)).await.unwrap();
        assert_eq!(stored.event_id, id.to_lowercase());
        assert_eq!(store.get(&stored.event_id).await.unwrap().unwrap(), stored);
        let e = store.submit_as("job-7", request(2)).await.unwrap_err();
        assert_eq!(e.field(), Some("event_id"), "{e}");
        assert_eq!(store.pending_count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn events_round_trip_and_claims_go_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDeltaEvents::open(dir.path().join("events"))
            .await
            .unwrap();
        assert_eq!(store.pending_count().await.unwrap(), 0);
        let first = store.submit(request(1)).await.unwrap();
        let second = store.submit(request(2)).await.unwrap();
        assert_eq!(store.get(&first.event_id).await.unwrap().unwrap(), first);
        assert_eq!(store.get("not-a-uuid").await.unwrap(), None);
        assert_eq!(store.pending_count().await.unwrap(), 2);
        assert_eq!(
            store.oldest_pending().await.unwrap(),
            Some(first.created_at)
        );

        let claimed = store.claim_next("w1").await.unwrap().unwrap();
        assert_eq!(claimed.event_id, first.event_id);
        assert_eq!(claimed.status, EventStatus::Running);
        assert_eq!(store.get(&first.event_id).await.unwrap().unwrap(), claimed);

        // Only the claimer may finish it.
        let done = Outcome::completed(7);
        assert!(!store.finish(&first.event_id, "w2", &done).await.unwrap());
        assert!(store.finish(&first.event_id, "w1", &done).await.unwrap());
        assert!(!store.finish(&first.event_id, "w1", &done).await.unwrap());
        let finished = store.get(&first.event_id).await.unwrap().unwrap();
        assert_eq!(finished.status, EventStatus::Completed);
        assert_eq!(finished.rows_affected, Some(7));
        assert!(finished.completed_at.is_some());

        let next = store.claim_next("w1").await.unwrap().unwrap();
        assert_eq!(next.event_id, second.event_id);
        assert!(store.claim_next("w1").await.unwrap().is_none());
        let failed = Outcome::failed("boom");
        assert!(store.finish(&next.event_id, "w1", &failed).await.unwrap());
        let next = store.get(&second.event_id).await.unwrap().unwrap();
        assert_eq!(
            (
                next.status,
                next.error_message.as_deref(),
                next.rows_affected
            ),
            (EventStatus::Failed, Some("boom"), None)
        );
        let listed = store.list(None, 10).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].event_id, second.event_id, "newest first");
    }

    #[tokio::test]
    async fn stale_claims_are_taken_over_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDeltaEvents::open(dir.path()).await.unwrap();
        let event = store.submit(request(1)).await.unwrap();
        store.claim_next("crashed").await.unwrap().unwrap();
        let lease = Duration::from_secs(600);
        assert!(store.reclaim_stale("w2", lease).await.unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let taken = store
            .reclaim_stale("w2", Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].claimed_by.as_deref(), Some("w2"));
        // The crashed worker can no longer finish it; the new claimer can.
        let done = Outcome::completed(1);
        assert!(
            !store
                .finish(&event.event_id, "crashed", &done)
                .await
                .unwrap()
        );
        assert!(store.finish(&event.event_id, "w2", &done).await.unwrap());
    }

    #[tokio::test]
    async fn reopening_checks_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        drop(LocalDeltaEvents::open(dir.path()).await.unwrap());
        LocalDeltaEvents::open(dir.path()).await.unwrap();
        let other = tempfile::tempdir().unwrap();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", ArrowType::Int64, true)])),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        let url = deltalake::ensure_table_uri(other.path().display().to_string()).unwrap();
        DeltaTable::try_from_url(url)
            .await
            .unwrap()
            .write(vec![batch])
            .await
            .unwrap();
        let err = LocalDeltaEvents::open(other.path()).await.unwrap_err();
        assert!(
            err.to_string().contains("is not a bridge_events table"),
            "{err}"
        );
    }
}
