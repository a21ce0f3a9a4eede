//! Diagnostics shared by `bridge test-connection` and `GET /health/ready`: each connector (SQL
//! Server, Databricks) defines its [`Probe`] next to its client (`mssql::probe`,
//! `databricks::probe`) and is registered once in [`PROBES`]; [`run`] asks every probe whether
//! the project configures it and runs those that are wanted.
//!
//! A probe never fails as a whole: every outcome, good or bad, is a [`Check`] whose error is typed
//! ([`CheckError`]), so callers decide with types and print the cause for people.

use std::time::Duration;

use async_trait::async_trait;

use crate::databricks::DatabricksError;
use crate::databricks::probe::OpenError;
use crate::mssql::MssqlError;
use crate::pipeline::Project;

/// The connectors, in the order they are checked and reported.
pub static PROBES: &[&dyn Probe] = &[
    &crate::mssql::probe::SqlServerProbe,
    &crate::databricks::probe::DatabricksProbe,
];

/// What a connector checks.
#[async_trait]
pub trait Probe: Sync {
    /// Which connector this is.
    fn connector(&self) -> Connector;

    /// Whether the project (or the options) ask for this connector's checks.
    fn wanted(&self, project: &Project, options: &Options) -> Wanted;

    /// Runs the checks, stopping at the first failure that makes the next ones meaningless.
    async fn check(&self, project: &Project, options: &Options) -> Vec<Check>;
}

/// Whether a probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// The project configures the connector.
    Yes,
    /// Not configured: not checked.
    No,
    /// Not configured, but checked by [`Mode::Command`] when nothing else is, so the user learns
    /// what to set (SQL Server, the bridge's first connector).
    IfNothingElse,
}

/// Who asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// `bridge test-connection`: full details.
    #[default]
    Command,
    /// `/health/ready`: only what is configured, short details.
    Readiness,
}

/// What to check and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub mode: Mode,
    /// Also check that this volume folder (`/Volumes/catalog/schema/volume/...`) exists; asks for
    /// the Databricks checks.
    pub volume: Option<String>,
    /// How long a probe may wait for an answer (none: the clients' own timeouts).
    pub timeout: Option<Duration>,
}

/// A connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Connector {
    SqlServer,
    Databricks,
}

impl Connector {
    /// For people: `SQL Server`, `Databricks`.
    pub fn label(self) -> &'static str {
        match self {
            Connector::SqlServer => "SQL Server",
            Connector::Databricks => "Databricks",
        }
    }

    /// For machines (JSON keys, `/health/ready` checks): `sqlserver`, `databricks`.
    pub fn key(self) -> &'static str {
        match self {
            Connector::SqlServer => "sqlserver",
            Connector::Databricks => "databricks",
        }
    }
}

/// One check and its outcome.
#[derive(Debug)]
pub struct Check {
    pub connector: Connector,
    /// What was checked, e.g. `host:1433/db`, `workspace https://...`, `SQL warehouse abc`.
    pub name: String,
    /// What was found (`signed in as ...`), or why the check failed.
    pub outcome: Result<String, CheckError>,
    /// Figures for machine-readable output (the SQL Server version and round trip).
    pub details: Option<serde_json::Value>,
}

impl Check {
    pub fn new(
        connector: Connector,
        name: impl Into<String>,
        outcome: Result<String, CheckError>,
    ) -> Check {
        Check {
            connector,
            name: name.into(),
            outcome,
            details: None,
        }
    }

    /// `SQL Server host:1433/db`, `Databricks workspace https://...`.
    pub fn title(&self) -> String {
        format!("{} {}", self.connector.label(), self.name)
    }
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The project's files could not be read (a malformed `config/defaults.yaml`).
    #[error(transparent)]
    Project(#[from] crate::Error),
    /// SQL Server: the phase that failed and the server's message (the target is the check's
    /// name).
    #[error("{} failed: {}", .0.phase, .0.message)]
    SqlServer(#[source] MssqlError),
    /// A Databricks configuration or API error.
    #[error(transparent)]
    Databricks(#[from] DatabricksError),
    /// The workspace cannot be reached.
    #[error(transparent)]
    Workspace(#[from] OpenError),
    /// A volume path that is not `/Volumes/catalog/schema/volume/...`.
    #[error(transparent)]
    NotAVolumePath(#[from] crate::databricks::files::VolumePathError),
    /// The folder does not exist, or the caller may not see it.
    #[error("not found (or no access)")]
    NotFound,
    /// No answer within [`Options::timeout`].
    #[error("no answer within {} s", .0.as_secs_f64())]
    TimedOut(Duration),
}

/// Runs every wanted probe, in [`PROBES`] order, and returns their checks.
pub async fn run(project: &Project, options: &Options) -> Vec<Check> {
    run_probes(PROBES, project, options).await
}

/// [`run`] with another list of probes.
pub async fn run_probes(probes: &[&dyn Probe], project: &Project, options: &Options) -> Vec<Check> {
    let wanted: Vec<Wanted> = probes.iter().map(|p| p.wanted(project, options)).collect();
    let nothing_else = !wanted.contains(&Wanted::Yes) && options.mode == Mode::Command;
    let mut checks = Vec::new();
    for (probe, wanted) in probes.iter().zip(wanted) {
        let runs = match wanted {
            Wanted::Yes => true,
            Wanted::IfNothingElse => nothing_else,
            Wanted::No => false,
        };
        if runs {
            checks.extend(probe.check(project, options).await);
        }
    }
    checks
}

/// `future`'s outcome, or [`CheckError::TimedOut`] after `timeout` (none: no limit).
pub async fn within<T>(
    timeout: Option<Duration>,
    future: impl std::future::Future<Output = Result<T, CheckError>>,
) -> Result<T, CheckError> {
    match timeout {
        None => future.await,
        Some(limit) => tokio::time::timeout(limit, future)
            .await
            .unwrap_or(Err(CheckError::TimedOut(limit))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(Connector, Wanted);

    #[async_trait]
    impl Probe for Fake {
        fn connector(&self) -> Connector {
            self.0
        }
        fn wanted(&self, _: &Project, _: &Options) -> Wanted {
            self.1
        }
        async fn check(&self, _: &Project, _: &Options) -> Vec<Check> {
            vec![Check::new(self.0, "x", Ok("ok".into()))]
        }
    }

    #[tokio::test]
    async fn a_fallback_probe_runs_only_for_the_command_when_nothing_is_configured() {
        let project = Project::new(".");
        let command = Options::default();
        let readiness = Options {
            mode: Mode::Readiness,
            ..Options::default()
        };
        let connectors = |checks: Vec<Check>| -> Vec<Connector> {
            checks.into_iter().map(|c| c.connector).collect()
        };
        let fallback = Fake(Connector::SqlServer, Wanted::IfNothingElse);
        let unwanted = Fake(Connector::Databricks, Wanted::No);
        let configured = Fake(Connector::Databricks, Wanted::Yes);
        assert_eq!(
            connectors(run_probes(&[&fallback, &unwanted], &project, &command).await),
            [Connector::SqlServer]
        );
        assert!(
            run_probes(&[&fallback, &unwanted], &project, &readiness)
                .await
                .is_empty()
        );
        assert_eq!(
            connectors(run_probes(&[&fallback, &configured], &project, &command).await),
            [Connector::Databricks]
        );
    }

    #[tokio::test]
    async fn a_probe_past_its_timeout_is_a_typed_failure() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, CheckError>(())
        };
        let err = within(Some(Duration::from_millis(20)), slow)
            .await
            .unwrap_err();
        assert!(matches!(err, CheckError::TimedOut(_)));
        assert_eq!(err.to_string(), "no answer within 0.02 s");
    }
}
