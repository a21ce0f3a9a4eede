//! `bridge serve`: the REST API, the job runner, the events poller and the GitOps watcher.
//! Jobs and their history live in an embedded SQLite database under `.bridge/`.

pub mod api;
pub mod audit;
mod events;
pub mod jobs;
pub mod metrics;
mod options;
pub mod probes;
pub mod refusals;
mod run_events;
pub mod runner;
pub mod schedule;
pub mod versions;
pub mod visibility;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::PermissionsStore;
use crate::error::{Error, Result};
use crate::pipeline::Project;
use crate::server::audit::AuditLog;
use crate::server::jobs::{JobStore, Reclaimed};
use crate::server::metrics::ServerMetrics;
use crate::server::probes::Probes;
use crate::server::refusals::RefusedAuthLog;
use crate::server::runner::JobRunner;
use crate::server::versions::Versions;
use crate::sync::EventStore;

pub use options::{Seconds, ServeOptions};

/// What the handlers share.
pub struct AppState {
    /// The project root (outputs and `.bridge/` live here).
    pub root: PathBuf,
    pub versions: Arc<Versions>,
    pub permissions: Arc<PermissionsStore>,
    pub audit: Arc<AuditLog>,
    /// Refused-auth audit lines, rate-limited.
    pub refused_auth: Arc<RefusedAuthLog>,
    pub jobs: Arc<JobStore>,
    pub runner: Arc<JobRunner>,
    pub events: Arc<dyn EventStore>,
    pub metrics: Arc<ServerMetrics>,
    /// The cached probes of `/health/ready` and `/metrics`.
    pub probes: Probes,
    pub started: Instant,
    /// The permissions file, which no job may read.
    pub permissions_file: PathBuf,
}

impl AppState {
    /// The access policy jobs of `project` are authorised against (output roots, protected
    /// files, configured database).
    pub fn policy(&self, project: &crate::pipeline::Project) -> Result<crate::auth::AccessPolicy> {
        project.access_policy(std::slice::from_ref(&self.permissions_file))
    }
}

/// Serves until `shutdown` fires, then stops taking requests, lets running jobs finish for the
/// grace period and interrupts the rest.
pub async fn serve(root: &Path, options: ServeOptions, shutdown: CancellationToken) -> Result<()> {
    options.check()?;
    let root = std::path::absolute(root).map_err(|e| Error::io(root, e))?;
    let bridge_dir = root.join(".bridge");
    std::fs::create_dir_all(&bridge_dir).map_err(|e| Error::io(&bridge_dir, e))?;

    let owner = uuid::Uuid::new_v4().hyphenated().to_string();
    let jobs = Arc::new(JobStore::open(
        &bridge_dir.join("server.db"),
        &owner,
        options.server_lease,
    )?);
    tracing::info!(%owner, lease_s = options.server_lease.as_secs_f64(), "server registered in the job store");
    log_reclaimed(jobs.reclaimed_on_open());
    let audit = Arc::new(AuditLog::open(
        options
            .audit_log
            .clone()
            .unwrap_or_else(|| bridge_dir.join("audit.log")),
    )?);
    let permissions_file = options
        .permissions
        .clone()
        .unwrap_or_else(|| root.join("config").join("permissions.yaml"));
    let permissions = Arc::new(PermissionsStore::open(permissions_file.clone())?);
    if let Some(e) = permissions.error() {
        tracing::error!(error = %e, "permissions file");
    }
    // Every project of this server (current version, fallbacks) derives from this one, which
    // carries the serve options' Databricks profile.
    let base = Project::new(&root).with_databricks_profile(options.databricks_profile.clone());
    let versions = Arc::new(Versions::new(base.clone(), &owner)?);
    versions.remove_copies_of(&jobs.reclaimed_on_open().dead_owners);
    if let Err(e) = versions.remove_stale_copies(|| jobs.live_owners()) {
        tracing::warn!(error = %e, "could not look for stale copies of project files");
    }
    // Invalid files at startup do not stop the server: /health/ready reports them and the next
    // valid edit is picked up.
    let _ = versions.reload().await;
    let events: Arc<dyn EventStore> = match (&options.databricks_events, &options.events_table) {
        (None, Some(path)) => Arc::new(crate::sync::LocalDeltaEvents::open(path).await?),
        (None, None) => Arc::new(
            crate::sync::SqliteEvents::open_default(
                &bridge_dir.join("events.db"),
                &bridge_dir.join("events").join("bridge_events"),
            )
            .await?,
        ),
        (Some(table), _) => {
            let client = base.databricks_client().await?;
            let warehouse = client.warehouse_id().map(str::to_string).ok_or_else(|| {
                Error::Invalid(
                    "--databricks-events needs a SQL warehouse: set `databricks.warehouse_id` in config/defaults.yaml, the profile's `warehouse_id`, or DATABRICKS_WAREHOUSE_ID".into(),
                )
            })?;
            tracing::info!(table = %table, warehouse = %warehouse, "events table in Databricks");
            Arc::new(crate::sync::DatabricksEvents::new(
                client, &warehouse, table,
            )?)
        }
    };
    let metrics = Arc::new(ServerMetrics::new());
    let runner = Arc::new(JobRunner::new(
        Arc::clone(&jobs),
        Arc::clone(&audit),
        Arc::clone(&metrics),
        options.max_concurrent_jobs,
    ));
    let refused_auth = Arc::new(RefusedAuthLog::new(Arc::clone(&audit)));
    let state = Arc::new(AppState {
        root: root.clone(),
        versions,
        permissions,
        audit,
        refused_auth,
        jobs,
        runner: Arc::clone(&runner),
        events,
        metrics,
        probes: Probes::default(),
        started: Instant::now(),
        permissions_file: std::path::absolute(&permissions_file).unwrap_or(permissions_file),
    });

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| Error::internal(format!("cannot listen on {}", options.listen), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::internal("listening socket", e))?;
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
    }
    tracing::info!(%addr, root = %root.display(), "serving");

    let background = CancellationToken::new();
    // The heartbeat outlives the other background tasks: jobs finishing in the shutdown grace
    // are still this server's.
    let heartbeat_stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(heartbeat(Arc::clone(&state), heartbeat_stop.clone()));
    tasks.spawn(flush_refusals(Arc::clone(&state), background.clone()));
    tasks.spawn(watch::watch_project(Arc::clone(&state), background.clone()));
    if options.schedules {
        tasks.spawn(schedule::run_schedules(
            Arc::clone(&state),
            background.clone(),
        ));
    }
    tasks.spawn(events::run_poller(
        Arc::clone(&state),
        options.clone(),
        background.clone(),
    ));
    tasks.close();

    let app = api::router(Arc::clone(&state));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    tracing::info!("shutting down: no new requests; waiting for running jobs");
    background.cancel();
    runner.shutdown(options.shutdown_grace).await;
    heartbeat_stop.cancel();
    tasks.wait().await;
    let _ = state.refused_auth.flush();
    // Every job of this server is final: nothing for another server to reclaim.
    state.versions.remove_own_copies();
    if let Err(e) = state.jobs.deregister() {
        tracing::warn!(error = %e, "could not remove this server's heartbeat; other servers will drop it after its lease");
    }
    served.map_err(|e| Error::internal("HTTP server failed", e))
}

fn log_reclaimed(reclaimed: &Reclaimed) {
    if reclaimed.jobs > 0 || !reclaimed.dead_owners.is_empty() {
        tracing::warn!(
            jobs = reclaimed.jobs,
            dead_servers = ?reclaimed.dead_owners,
            "jobs left queued or running by servers whose heartbeat lapsed were marked interrupted"
        );
    }
}

/// Refreshes this server's heartbeat every fifth of its lease, reclaiming the jobs (and removing
/// the copies of project files) of servers that died meanwhile.
async fn heartbeat(state: Arc<AppState>, stop: CancellationToken) {
    let period = (state.jobs.lease() / 5).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let jobs = Arc::clone(&state.jobs);
        match tokio::task::spawn_blocking(move || jobs.heartbeat()).await {
            Ok(Ok(reclaimed)) => {
                log_reclaimed(&reclaimed);
                state.versions.remove_copies_of(&reclaimed.dead_owners);
            }
            Ok(Err(e)) => tracing::error!(error = %e, "heartbeat not recorded; retrying"),
            Err(e) => tracing::error!(error = %e, "heartbeat task failed; retrying"),
        }
    }
}

/// Writes the summary line of suppressed refused-auth lines every second.
async fn flush_refusals(state: Arc<AppState>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let log = Arc::clone(&state.refused_auth);
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || log.flush()).await {
            tracing::error!(error = %e, "audit log write failed (suppressed refusals summary)");
        }
    }
}
