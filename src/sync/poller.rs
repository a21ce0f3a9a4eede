//! The events poller of `bridge serve`: claims pending events, asks the server whether each may
//! run, applies it and records the outcome. It wakes every `interval` and at once when the store's
//! watch folder changes.
//!
//! Up to `max_concurrent` syncs are applied at once (the store hands out one target's syncs one
//! at a time, in order); RUN items wait for their job outside those slots, and are claimed only
//! while the server has room to run one more (one per round), so a busy server leaves them to
//! others sharing the store.
//!
//! Recovery: an event whose claimer died stays `running`; once its `started_at` is older than the
//! lease, any poller takes it over and applies it again, which the idempotency key makes safe.
//! On shutdown the poller stops claiming, lets in-flight applies finish within the grace period,
//! then cancels them (a cancelled apply commits nothing; its event is recovered the same way).

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::{BoxError, Error};
use crate::pipeline::Plan;
use crate::pipeline::project::Project;
use crate::sync::apply::{ApplyLimits, apply_planned, plan_event};
use crate::sync::event::{Event, EventStatus, Operation, Outcome};
use crate::sync::store::{Claim, EventStore};
use crate::sync::{Result, SyncError};

/// How the server takes part in each event.
#[async_trait]
pub trait PollerHooks: Send + Sync {
    /// Decides whether an event may run (e.g. checks `created_by`'s grants against what the
    /// event's `plan` reads and writes) and with which limits. `Err(refusal)` marks the event
    /// failed with the refusal's message; nothing is applied.
    async fn authorize(
        &self,
        event: &Event,
        plan: &Plan,
    ) -> std::result::Result<ApplyLimits, BoxError>;

    /// Runs a RUN event's pipeline as its `created_by` and says how it ended; `None` when
    /// `cancel` fired first (the event stays running and is taken over after its lease). Only a
    /// server has pipelines to run: by default the event fails saying so.
    async fn run_pipeline(&self, _event: &Event, _cancel: &CancellationToken) -> Option<Outcome> {
        Some(Outcome::failed(
            "RUN events are run by `bridge serve`; this poller only applies table syncs",
        ))
    }

    /// Whether this server has room to run one more pipeline now: when it has not, the poller
    /// claims only syncs and leaves RUN items to servers that have (default: always).
    fn has_room_for_a_run(&self) -> bool {
        true
    }

    /// Called when an event has been claimed, before it is authorized and applied.
    async fn on_claimed(&self, _event: &Event) {}

    /// Called after the outcome was recorded; `event` carries the recorded status, and `duration`
    /// is the time from claim to outcome.
    async fn on_finished(&self, _event: &Event, _outcome: &Outcome, _duration: Duration) {}
}

/// Hooks that allow every event without limits (tests, single-user setups).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

#[async_trait]
impl PollerHooks for AllowAll {
    async fn authorize(
        &self,
        _event: &Event,
        _plan: &Plan,
    ) -> std::result::Result<ApplyLimits, BoxError> {
        Ok(ApplyLimits::default())
    }
}

/// How a poller behaves.
#[derive(Debug, Clone)]
pub struct PollerOptions {
    /// Time between polls when nothing wakes the poller (default 2 s).
    pub interval: Duration,
    /// A `running` event whose claim is older than this is taken over (default 10 min). Must be
    /// longer than the longest apply: an apply still running past it may be started a second
    /// time by another poller (which then waits for it and reports "already applied").
    pub lease: Duration,
    /// Identifies this poller in `claimed_by` (default: host, process id and a random suffix).
    pub worker_id: String,
    /// Events applied at the same time (default 1).
    pub max_concurrent: usize,
    /// On shutdown, how long in-flight applies may take before they are cancelled (default 30 s).
    pub shutdown_grace: Duration,
    /// Completed and failed events are deleted from the store once finished longer ago than
    /// this (checked every [`PRUNE_PERIOD`]; default 30 days); `None` keeps them.
    pub retention: Option<Duration>,
}

/// How often finished events past the retention are deleted.
pub const PRUNE_PERIOD: Duration = Duration::from_secs(3600);

impl Default for PollerOptions {
    fn default() -> Self {
        PollerOptions {
            interval: Duration::from_secs(2),
            lease: Duration::from_secs(600),
            worker_id: default_worker_id(),
            max_concurrent: 1,
            shutdown_grace: Duration::from_secs(30),
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

impl PollerOptions {
    /// How often stale claims are looked for: a quarter of the lease, at most a minute, at least
    /// the poll interval.
    pub fn reclaim_period(&self) -> Duration {
        (self.lease / 4)
            .min(Duration::from_secs(60))
            .max(self.interval)
    }
}

/// `{host}-{pid}-{8 hex}`: unique per process.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "bridge".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}

/// The project events are applied with; called for every event, so a reloaded configuration
/// applies to the next event.
pub type ProjectSource = Arc<dyn Fn() -> Project + Send + Sync>;

/// Claims and applies sync events.
pub struct Poller {
    store: Arc<dyn EventStore>,
    project: ProjectSource,
    hooks: Arc<dyn PollerHooks>,
    options: PollerOptions,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("store", &self.store)
            .field("options", &self.options)
            .finish()
    }
}

impl Poller {
    /// A poller over `store`; `project` gives the current project (configuration) for each event.
    pub fn new(
        store: Arc<dyn EventStore>,
        project: impl Fn() -> Project + Send + Sync + 'static,
        hooks: Arc<dyn PollerHooks>,
        options: PollerOptions,
    ) -> Poller {
        Poller {
            store,
            project: Arc::new(project),
            hooks,
            options,
        }
    }

    /// The worker id this poller claims events as.
    pub fn worker_id(&self) -> &str {
        &self.options.worker_id
    }

    /// Polls until `shutdown` fires, then drains in-flight applies (see the module docs).
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let wake = Arc::new(Notify::new());
        let _watcher = this.store.watch_path().and_then(|p| watch(&p, &wake));
        let applies = CancellationToken::new();
        let mut inflight: JoinSet<()> = JoinSet::new();
        // RUN events wait for their job (the runner limits how many run at once): they do not
        // hold one of the `max_concurrent` apply slots, so a long run does not stall syncs.
        let mut runs: JoinSet<()> = JoinSet::new();
        let mut reclaimed: VecDeque<Event> = VecDeque::new();
        let mut last_reclaim: Option<Instant> = None;
        let mut last_prune: Option<Instant> = None;
        // Events this poller is applying (a reclaim of one of them is not applied twice).
        let applying: Arc<Mutex<HashSet<String>>> = Arc::default();
        let slots = this.options.max_concurrent.max(1);
        tracing::info!(worker = %this.options.worker_id, "events poller started");
        while !shutdown.is_cancelled() {
            if last_reclaim.is_none_or(|t| t.elapsed() >= this.options.reclaim_period()) {
                last_reclaim = Some(Instant::now());
                match this
                    .store
                    .reclaim_stale(&this.options.worker_id, this.options.lease)
                    .await
                {
                    Ok(events) => reclaimed.extend(events),
                    Err(e) => tracing::warn!(error = %e, "events poller: reclaiming failed"),
                }
            }
            if let Some(retention) = this.options.retention
                && last_prune.is_none_or(|t| t.elapsed() >= PRUNE_PERIOD)
            {
                last_prune = Some(Instant::now());
                this.prune(retention).await;
            }
            // One RUN item per round: its job is in the runner (which says whether there is
            // room for another) before the next is claimed.
            let mut run_claimed = false;
            while inflight.len() < slots && !shutdown.is_cancelled() {
                let event = match reclaimed.pop_front() {
                    Some(event) if busy(&applying).contains(&event.event_id) => {
                        tracing::warn!(
                            event_id = %event.event_id,
                            "an event still being applied here outlived its lease; consider a longer lease"
                        );
                        continue;
                    }
                    Some(event) => event,
                    None => match this
                        .store
                        .claim(&this.options.worker_id, this.claimable(run_claimed))
                        .await
                    {
                        Ok(Some(event)) => event,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "events poller: claiming failed");
                            break;
                        }
                    },
                };
                run_claimed |= event.operation == Operation::Run;
                busy(&applying).insert(event.event_id.clone());
                let this = Arc::clone(&this);
                let cancel = applies.clone();
                let applying = Arc::clone(&applying);
                let set = if event.operation == Operation::Run {
                    &mut runs
                } else {
                    &mut inflight
                };
                set.spawn(async move {
                    let id = event.event_id.clone();
                    this.process(event, &cancel).await;
                    busy(&applying).remove(&id);
                });
            }
            let full = inflight.len() >= slots;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(this.options.interval), if !full => {}
                _ = wake.notified(), if !full => {}
                Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
                Some(_) = runs.join_next(), if !runs.is_empty() => {}
            }
        }
        tracing::info!(
            worker = %this.options.worker_id,
            in_flight = inflight.len() + runs.len(),
            "events poller stopping"
        );
        let drain = async {
            while inflight.join_next().await.is_some() {}
            while runs.join_next().await.is_some() {}
        };
        if tokio::time::timeout(this.options.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                "events poller: cancelling applies still running after the grace period"
            );
            applies.cancel();
            while inflight.join_next().await.is_some() {}
            while runs.join_next().await.is_some() {}
        }
    }

    /// What this poller may claim now: RUN items only while the server has room for a run and
    /// none was claimed in this round yet.
    fn claimable(&self, run_claimed: bool) -> Claim {
        if !run_claimed && self.hooks.has_room_for_a_run() {
            Claim::Any
        } else {
            Claim::SyncsOnly
        }
    }

    /// Deletes the events finished longer than `retention` ago.
    async fn prune(&self, retention: Duration) {
        let before = chrono::Duration::from_std(retention)
            .ok()
            .and_then(|r| chrono::Utc::now().checked_sub_signed(r))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        match self.store.prune(before).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(events = n, %before, "deleted finished events past the retention");
            }
            Err(e) => tracing::warn!(error = %e, "events poller: deleting old events failed"),
        }
    }

    /// Takes over stale events, then claims and applies pending events one by one until none is
    /// left; returns how many were processed (completed, failed or left for recovery).
    pub async fn poll_once(&self) -> Result<usize> {
        let never = CancellationToken::new();
        let mut processed = 0;
        for event in self
            .store
            .reclaim_stale(&self.options.worker_id, self.options.lease)
            .await?
        {
            self.process(event, &never).await;
            processed += 1;
        }
        while let Some(event) = self.store.claim_next(&self.options.worker_id).await? {
            self.process(event, &never).await;
            processed += 1;
        }
        Ok(processed)
    }

    /// Authorizes, applies and records one claimed event. A cancelled apply leaves the event
    /// `running` (recovered after the lease).
    async fn process(&self, event: Event, cancel: &CancellationToken) {
        let started = Instant::now();
        let id = event.event_id.clone();
        self.hooks.on_claimed(&event).await;
        if event.operation == Operation::Run {
            // A bad row (say, a sync's fields on a RUN) fails here, before anything is planned.
            let outcome = match event.request().validate() {
                Err(e) => Some(Outcome::failed(e.to_string())),
                Ok(()) => {
                    // A run may outlast the lease: the claim is renewed while it goes on.
                    let beat = async {
                        loop {
                            tokio::time::sleep(self.options.reclaim_period()).await;
                            match self.store.heartbeat(&id, &self.options.worker_id).await {
                                Ok(true) => {}
                                Ok(false) => {
                                    tracing::warn!(event_id = %id, "the run event was taken over while it ran here");
                                }
                                Err(e) => {
                                    tracing::warn!(event_id = %id, error = %e, "renewing the claim failed");
                                }
                            }
                        }
                    };
                    tokio::select! {
                        outcome = self.hooks.run_pipeline(&event, cancel) => outcome,
                        () = beat => None,
                    }
                }
            };
            let Some(outcome) = outcome else {
                tracing::warn!(event_id = %id, "run cancelled; the event will be recovered after its lease");
                return;
            };
            self.record(event, &outcome, started).await;
            return;
        }
        let project = (self.project)();
        let catalog = self.store.source_catalog();
        // What the event reads and writes is known from its plan before anything runs; the
        // plan authorised is the plan applied (its deletes capped by the creator's limits).
        let authorized = match plan_event(&project, &event, &ApplyLimits::default(), catalog) {
            Err(e) => Err(e.to_string()),
            Ok(plan) => self
                .hooks
                .authorize(&event, &plan)
                .await
                .map(|limits| (plan, limits))
                .map_err(|refusal| refusal.to_string()),
        };
        let outcome = match authorized {
            Err(refusal) => {
                tracing::info!(event_id = %id, reason = %refusal, "event refused");
                Outcome::failed(refusal)
            }
            Ok((mut plan, limits)) => {
                match apply_planned(&project, &event, &mut plan, &limits, catalog, cancel).await {
                    Ok(applied) => {
                        tracing::info!(
                            event_id = %id,
                            rows = applied.rows_affected,
                            already_applied = applied.already_applied,
                            "event applied"
                        );
                        Outcome::completed(applied.rows_affected)
                    }
                    Err(SyncError::Apply(Error::Cancelled)) => {
                        tracing::warn!(event_id = %id, "apply cancelled; the event will be recovered after its lease");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(event_id = %id, error = %e, "event failed");
                        Outcome::Failed {
                            error: e.to_string(),
                            refusal: e.refusal().cloned(),
                            job_id: None,
                        }
                    }
                }
            }
        };
        self.record(event, &outcome, started).await;
    }

    /// Records how a claimed event ended and tells the hooks.
    async fn record(&self, mut event: Event, outcome: &Outcome, started: Instant) {
        let id = event.event_id.clone();
        match self
            .store
            .finish(&id, &self.options.worker_id, outcome)
            .await
        {
            Ok(true) => {
                event.job_id = outcome.job_id().map(str::to_string);
                match outcome {
                    Outcome::Completed { rows_affected, .. } => {
                        event.status = EventStatus::Completed;
                        event.rows_affected =
                            Some(i64::try_from(*rows_affected).unwrap_or(i64::MAX));
                    }
                    Outcome::Failed { error, .. } => {
                        event.status = EventStatus::Failed;
                        event.error_message = Some(error.clone());
                    }
                }
                event.completed_at = Some(chrono::Utc::now());
                self.hooks
                    .on_finished(&event, outcome, started.elapsed())
                    .await;
            }
            Ok(false) => tracing::warn!(
                event_id = %id,
                "the event was taken over by another worker; its outcome is theirs to record"
            ),
            Err(e) => tracing::error!(
                event_id = %id,
                error = %e,
                "recording the outcome failed; the event will be recovered after its lease"
            ),
        }
    }
}

fn busy(set: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    set.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Watches `path` and wakes the poller on any change; `None` (interval polling only) when
/// watching is not possible. A folder is watched with everything under it; a file with its
/// siblings whose names start with its name (a SQLite database and its `-wal` file), so that
/// other files of its folder do not wake the poller.
fn watch(path: &Path, wake: &Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let wake = Arc::clone(wake);
    let (target, mode, prefix) = if path.is_file() {
        let prefix = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let folder = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (folder, notify::RecursiveMode::NonRecursive, prefix)
    } else {
        (path, notify::RecursiveMode::Recursive, None)
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let ours = prefix.as_deref().is_none_or(|prefix| {
            event.paths.iter().any(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
        });
        if ours && !event.kind.is_access() {
            wake.notify_one();
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "events poller: cannot watch for new events"))
    .ok()?;
    watcher
        .watch(target, mode)
        .map_err(|e| {
            tracing::warn!(path = %target.display(), error = %e, "events poller: cannot watch for new events");
        })
        .ok()?;
    Some(watcher)
}
