//! The SQL Server probe of [`crate::diagnostics`]: log in, ask the version, time a round trip.
//! Wanted when a host is configured; otherwise run by `test-connection` only when no other
//! connector is configured, to say what to set.

use async_trait::async_trait;

use crate::diagnostics::{Check, CheckError, Connector, Mode, Options, Probe, Wanted, within};
use crate::pipeline::Project;

/// Checks the project's SQL Server.
pub struct SqlServerProbe;

#[async_trait]
impl Probe for SqlServerProbe {
    fn connector(&self) -> Connector {
        Connector::SqlServer
    }

    fn wanted(&self, project: &Project, _options: &Options) -> Wanted {
        match project.sqlserver_settings() {
            Ok(s) if s.host.is_none() => Wanted::IfNothingElse,
            // Configured, or unreadable settings (reported by the check).
            _ => Wanted::Yes,
        }
    }

    async fn check(&self, project: &Project, options: &Options) -> Vec<Check> {
        let settings = match project.sqlserver_settings() {
            Ok(s) => s,
            Err(e) => {
                return vec![Check::new(
                    Connector::SqlServer,
                    "configuration",
                    Err(e.into()),
                )];
            }
        };
        let target = settings.describe();
        let probe = async {
            crate::mssql::test_connection(&settings)
                .await
                .map_err(CheckError::SqlServer)
        };
        let mut check = Check::new(Connector::SqlServer, target, Ok(String::new()));
        match within(options.timeout, probe).await {
            Ok(report) => {
                check.outcome = Ok(match options.mode {
                    Mode::Command => format!(
                        "{} (round trip {:.1} ms)",
                        report.server_version, report.round_trip_ms
                    ),
                    Mode::Readiness => format!("{:.1} ms", report.round_trip_ms),
                });
                check.details = serde_json::to_value(&report).ok();
            }
            Err(e) => check.outcome = Err(e),
        }
        vec![check]
    }
}
