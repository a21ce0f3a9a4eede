//! `bridge serve`: its flags, read into [`ServeOptions`] (which holds the defaults and the
//! checks), and the server run until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use bridge::Result;
use bridge::server::ServeOptions;
use tokio_util::sync::CancellationToken;

use super::{Context, Outcome};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the address is printed on stdout).
    #[arg(long, default_value_t = ServeOptions::DEFAULT_LISTEN, env = "BRIDGE_LISTEN")]
    listen: std::net::SocketAddr,
    /// Seconds between polls of the events table.
    #[arg(long, default_value_t = ServeOptions::POLL_INTERVAL.default.as_secs_f64())]
    poll_interval: f64,
    /// Seconds after which a running event is presumed abandoned by a dead server and retaken.
    #[arg(long, default_value_t = ServeOptions::EVENT_LEASE.default.as_secs_f64())]
    event_lease: f64,
    /// Keep the events in this local Delta table instead of the default SQLite database
    /// .bridge/events.db (the store before; e.g. .bridge/events/bridge_events).
    #[arg(long, conflicts_with = "databricks_events")]
    events_table: Option<PathBuf>,
    /// Poll the events table in Databricks instead (default bridge.events.bridge_events),
    /// through the SQL warehouse of `databricks:` in config/defaults.yaml or the profile.
    #[arg(long, num_args = 0..=1, default_missing_value = bridge::sync::databricks::DEFAULT_EVENTS_TABLE)]
    databricks_events: Option<String>,
    /// Seconds a shutdown waits for running jobs before interrupting them.
    #[arg(long, default_value_t = ServeOptions::SHUTDOWN_GRACE.default.as_secs_f64())]
    shutdown_grace: f64,
    /// Days after which completed and failed events are deleted from the events store (the
    /// local database, or the Databricks table with --databricks-events; checked hourly;
    /// pending and running events are kept; a local Delta table keeps everything).
    #[arg(long, default_value_t = ServeOptions::DEFAULT_EVENT_RETENTION_DAYS)]
    event_retention_days: f64,
    /// Jobs that run at the same time; others wait queued.
    #[arg(long, default_value_t = ServeOptions::DEFAULT_MAX_JOBS)]
    max_jobs: usize,
    /// Sync events applied at the same time (the events of one target table are always applied
    /// one after the other, in order).
    #[arg(long, default_value_t = ServeOptions::DEFAULT_EVENT_WORKERS)]
    event_workers: usize,
    /// The permissions file (default config/permissions.yaml).
    #[arg(long)]
    permissions: Option<PathBuf>,
    /// The audit log (default .bridge/audit.log).
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Do not run pipelines on their `schedule:`.
    #[arg(long)]
    no_schedules: bool,
    /// Seconds this server's heartbeat in the job store stays valid (it is refreshed every fifth
    /// of it): another server on the same root takes this one for dead, and its unfinished jobs
    /// for interrupted, once its heartbeat is older than this.
    #[arg(long, default_value_t = ServeOptions::SERVER_LEASE.default.as_secs_f64())]
    server_lease: f64,
}

impl ServeArgs {
    /// The options, each duration checked in flag order; `profile` is the `--profile` of the
    /// command line.
    fn options(self, profile: Option<&str>) -> Result<ServeOptions> {
        Ok(ServeOptions {
            listen: self.listen,
            poll_interval: ServeOptions::POLL_INTERVAL.from_secs(self.poll_interval)?,
            event_lease: ServeOptions::EVENT_LEASE.from_secs(self.event_lease)?,
            events_table: self.events_table,
            databricks_events: self.databricks_events,
            shutdown_grace: ServeOptions::SHUTDOWN_GRACE.from_secs(self.shutdown_grace)?,
            event_retention: ServeOptions::event_retention_days(self.event_retention_days)?,
            max_concurrent_jobs: self.max_jobs,
            event_workers: ServeOptions::check_event_workers(self.event_workers)?,
            permissions: self.permissions,
            audit_log: self.audit_log,
            schedules: !self.no_schedules,
            server_lease: ServeOptions::SERVER_LEASE.from_secs(self.server_lease)?,
            databricks_profile: profile.map(str::to_string),
        })
    }
}

/// Serves until SIGTERM or Ctrl-C.
pub async fn serve(cx: &Context, args: ServeArgs) -> Result<Outcome> {
    let options = args.options(cx.project.databricks_profile())?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    bridge::server::serve(&cx.root, options, shutdown).await?;
    Ok(Outcome::Success)
}

/// Fires `shutdown` on SIGTERM or Ctrl-C.
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("stop signal received");
    shutdown.cancel();
}
