//! The events table behind a small trait: submit, look up, claim, reclaim after a crash, finish.
//! Backends: [`SqliteEvents`](crate::sync::SqliteEvents) (a local SQLite database, the default),
//! [`LocalDeltaEvents`](crate::sync::LocalDeltaEvents) (a local Delta table) and
//! [`DatabricksEvents`](crate::sync::DatabricksEvents) (conditional `UPDATE ... WHERE status = ...`
//! statements on a SQL warehouse).

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::sync::Result;
use crate::sync::event::{Event, EventStatus, NewEvent, Outcome};

/// Which events a claim may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Any event.
    Any,
    /// Sync events only (no RUN item).
    SyncsOnly,
}

impl Claim {
    /// Whether an event of `operation` may be claimed.
    pub fn allows(self, operation: crate::sync::Operation) -> bool {
        self == Claim::Any || operation != crate::sync::Operation::Run
    }
}

/// Where sync events live. Every state change is atomic: of several callers racing for the same
/// event, exactly one changes it and the others see "nothing to do", never an error.
#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug {
    /// Validates and stores a new event: a new UUID, `pending`, `created_at` now.
    async fn submit(&self, event: NewEvent) -> Result<Event> {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        self.submit_as(&id, event).await
    }

    /// Stores a new event as [`EventStore::submit`] does, under `event_id` (a UUID) chosen by
    /// the caller, so the caller can record the id (the server's audit line) before any poller
    /// can claim the event.
    async fn submit_as(&self, event_id: &str, event: NewEvent) -> Result<Event>;

    /// Stores a new event under `event_id` unless an event with that id is stored already
    /// (then `None`, and nothing changes): work with a deterministic id, such as a schedule's
    /// slot, is queued once however many servers queue it.
    async fn submit_once(&self, event_id: &str, event: NewEvent) -> Result<Option<Event>>;

    /// An event by id; `None` when there is none (or the id is not a UUID).
    async fn get(&self, event_id: &str) -> Result<Option<Event>>;

    /// Events, newest first, optionally only those with a status; at most `limit`.
    async fn list(&self, status: Option<EventStatus>, limit: usize) -> Result<Vec<Event>>;

    /// Claims the oldest pending event for `worker`: `running`, `started_at` now, `claimed_by`
    /// worker. A sync event whose target table has a sync running is not claimed (the events of
    /// one target are applied in submission order, one at a time); RUN events always may be.
    /// Returns the claimed event, or `None` when nothing claimable is pending (or every such
    /// event was claimed by someone else first).
    async fn claim_next(&self, worker: &str) -> Result<Option<Event>> {
        self.claim(worker, Claim::Any).await
    }

    /// [`EventStore::claim_next`], of the events `what` allows: a server whose runner is full
    /// claims only syncs, leaving RUN items to servers with room.
    async fn claim(&self, worker: &str, what: Claim) -> Result<Option<Event>>;

    /// Takes over `running` events whose `started_at` is older than `older_than` (their claimer
    /// crashed or lost its lease): each becomes claimed by `worker` with `started_at` now.
    /// Returns the events taken over, to be applied again.
    async fn reclaim_stale(&self, worker: &str, older_than: Duration) -> Result<Vec<Event>>;

    /// Records how an event ended, if it is still `running` and claimed by `worker`. Returns
    /// `false` (and changes nothing) when it is not: another worker took it over.
    async fn finish(&self, event_id: &str, worker: &str, outcome: &Outcome) -> Result<bool>;

    /// Renews `worker`'s claim of a running event (its `started_at` becomes now), so that a
    /// run longer than the lease is not taken over while its claimer is alive. Returns `false`
    /// when the event is no longer running under `worker`.
    async fn heartbeat(&self, event_id: &str, worker: &str) -> Result<bool>;

    /// How many events are pending.
    async fn pending_count(&self) -> Result<u64>;

    /// `created_at` of the oldest pending event (the "event lag" is now minus this).
    async fn oldest_pending(&self) -> Result<Option<DateTime<Utc>>>;

    /// Deletes completed and failed events that finished before `finished_before` (retention);
    /// returns how many. Backends that keep their history elsewhere delete nothing.
    async fn prune(&self, _finished_before: DateTime<Utc>) -> Result<u64> {
        Ok(0)
    }

    /// A local path whose changes mean "new events" (the poller watches it to wake at once),
    /// when the backend has one: a folder (watched with everything under it) or a file (watched
    /// with its siblings whose names start with its name, such as a SQLite `-wal` file).
    fn watch_path(&self) -> Option<PathBuf> {
        None
    }

    /// Where the `source_table` of this backend's events is read from.
    fn source_catalog(&self) -> crate::sync::SourceCatalog {
        crate::sync::SourceCatalog::LocalDelta
    }
}
