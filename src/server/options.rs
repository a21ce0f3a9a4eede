//! How `bridge serve` runs: [`ServeOptions`], the single home of the serve defaults (which the
//! command line shows as its own) and of their checks (which [`super::serve`] and the command
//! line both apply).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// How `bridge serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the address is printed).
    pub listen: SocketAddr,
    /// How often the events table is polled (a local table also wakes the poller on change).
    pub poll_interval: Duration,
    /// A running event older than this is presumed abandoned by a dead server and taken over.
    pub event_lease: Duration,
    /// An explicit local events Delta table; without it (and without `databricks_events`) the
    /// events live in the SQLite database `.bridge/events.db`.
    pub events_table: Option<PathBuf>,
    /// Use this Databricks table (`catalog.schema.table`) as the events table instead of the
    /// local one, through the project's SQL warehouse.
    pub databricks_events: Option<String>,
    /// How long a shutdown waits for running jobs before interrupting them.
    pub shutdown_grace: Duration,
    /// Completed and failed events are deleted from the SQLite or Databricks events store once
    /// finished longer ago than this (`--event-retention-days`, default 30 days).
    pub event_retention: Duration,
    /// Jobs run at the same time; more wait queued.
    pub max_concurrent_jobs: usize,
    /// Sync events this server applies at the same time (events of one target table are always
    /// applied one after the other); at least 1.
    pub event_workers: usize,
    /// The permissions file (default `config/permissions.yaml`).
    pub permissions: Option<PathBuf>,
    /// The audit log (default `.bridge/audit.log`).
    pub audit_log: Option<PathBuf>,
    /// Whether pipelines with `schedule:` run on schedule.
    pub schedules: bool,
    /// How long this server's heartbeat in the job store stays valid; it is refreshed every
    /// fifth of it. Another server on the root takes this one for dead (and its unfinished jobs
    /// for interrupted) once its heartbeat is older than this.
    pub server_lease: Duration,
    /// The profile of `~/.databrickscfg` every project of this server uses (`--profile`); it wins
    /// over `DATABRICKS_CONFIG_PROFILE` and `databricks.profile` in `config/defaults.yaml`.
    pub databricks_profile: Option<String>,
}

/// A duration option of `bridge serve`, given in seconds on the command line: its flag, its
/// default and whether 0 is refused.
#[derive(Debug, Clone, Copy)]
pub struct Seconds {
    /// The command-line flag, without `--`; errors name it.
    pub flag: &'static str,
    pub default: Duration,
    /// Why 0 is refused; `None` when 0 is allowed.
    pub zero_refused: Option<&'static str>,
}

impl Seconds {
    /// The duration of `secs` seconds; refused when not a finite number of seconds at least 0,
    /// or when 0 and 0 is refused.
    pub fn from_secs(&self, secs: f64) -> Result<Duration> {
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(Error::Invalid(format!(
                "--{}: expected a number of seconds, got {secs}",
                self.flag
            )));
        }
        self.check(Duration::from_secs_f64(secs))
    }

    /// `duration`, unless it is 0 and 0 is refused.
    pub fn check(&self, duration: Duration) -> Result<Duration> {
        match self.zero_refused {
            Some(why) if duration.is_zero() => Err(Error::Invalid(format!(
                "--{}: must be more than 0 seconds ({why}); the default is {}",
                self.flag,
                self.default.as_secs_f64()
            ))),
            _ => Ok(duration),
        }
    }
}

impl ServeOptions {
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 8000);
    pub const DEFAULT_MAX_JOBS: usize = 2;
    /// Sync events applied at the same time by default: an apply mostly waits on SQL Server and
    /// the source, so a few overlap well even on two cores.
    pub const DEFAULT_EVENT_WORKERS: usize = 4;
    pub const POLL_INTERVAL: Seconds = Seconds {
        flag: "poll-interval",
        default: Duration::from_secs(2),
        zero_refused: Some("0 would poll without pause"),
    };
    pub const EVENT_LEASE: Seconds = Seconds {
        flag: "event-lease",
        default: Duration::from_secs(600),
        zero_refused: Some("0 would take over running events at once"),
    };
    pub const SHUTDOWN_GRACE: Seconds = Seconds {
        flag: "shutdown-grace",
        default: Duration::from_secs(30),
        zero_refused: None,
    };
    pub const SERVER_LEASE: Seconds = Seconds {
        flag: "server-lease",
        default: Duration::from_secs(20),
        zero_refused: Some("0 would take every other server for dead"),
    };

    /// How long finished events are kept by default (30 days).
    pub const DEFAULT_EVENT_RETENTION: Duration = Duration::from_secs(30 * 86_400);
    /// The default of `--event-retention-days`.
    pub const DEFAULT_EVENT_RETENTION_DAYS: f64 =
        Self::DEFAULT_EVENT_RETENTION.as_secs_f64() / 86_400.0;

    /// The event retention of `days` days (`--event-retention-days`); refused when not a finite
    /// number of days more than 0.
    pub fn event_retention_days(days: f64) -> Result<Duration> {
        if !(days.is_finite() && days > 0.0) {
            return Err(Error::Invalid(format!(
                "--event-retention-days: must be more than 0 days (0 would delete every finished event at once), got {days}; the default is {}",
                Self::DEFAULT_EVENT_RETENTION_DAYS
            )));
        }
        Duration::try_from_secs_f64(days * 86_400.0)
            .map_err(|e| Error::Invalid(format!("--event-retention-days: {days} days: {e}")))
    }

    /// `--event-workers`: refused when 0 (no event would ever be applied).
    pub fn check_event_workers(workers: usize) -> Result<usize> {
        if workers == 0 {
            return Err(Error::Invalid(format!(
                "--event-workers: must be at least 1 (0 would never apply an event); the default is {}",
                Self::DEFAULT_EVENT_WORKERS
            )));
        }
        Ok(workers)
    }

    /// Refuses the durations that must be more than 0, the first in field order, and 0 event
    /// workers.
    pub fn check(&self) -> Result<()> {
        Self::POLL_INTERVAL.check(self.poll_interval)?;
        Self::EVENT_LEASE.check(self.event_lease)?;
        Self::SHUTDOWN_GRACE.check(self.shutdown_grace)?;
        if self.event_retention.is_zero() {
            Self::event_retention_days(0.0)?;
        }
        Self::SERVER_LEASE.check(self.server_lease)?;
        Self::check_event_workers(self.event_workers)?;
        Ok(())
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: Self::DEFAULT_LISTEN,
            poll_interval: Self::POLL_INTERVAL.default,
            event_lease: Self::EVENT_LEASE.default,
            events_table: None,
            databricks_events: None,
            shutdown_grace: Self::SHUTDOWN_GRACE.default,
            event_retention: Self::DEFAULT_EVENT_RETENTION,
            max_concurrent_jobs: Self::DEFAULT_MAX_JOBS,
            event_workers: Self::DEFAULT_EVENT_WORKERS,
            permissions: None,
            audit_log: None,
            schedules: true,
            server_lease: Self::SERVER_LEASE.default,
            databricks_profile: None,
        }
    }
}
