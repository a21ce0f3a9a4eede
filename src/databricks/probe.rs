//! Opening a workspace at once, and the Databricks probe of [`crate::diagnostics`].
//!
//! [`open_client`] resolves the configuration and checks that something answers at the
//! workspace's address (DNS and TCP, a few seconds at most) before a run's first request: the
//! client retries failures to connect for minutes, which hides "no such host" or "connection
//! refused" from people. A missing host, token or profile is an [`OpenError::Config`] (a plan error
//! of the step, exit 2); an address nobody answers at is [`OpenError::Unreachable`].
//! Behind an HTTP proxy (`HTTPS_PROXY`, `ALL_PROXY`...) the address is not probed: the proxy
//! decides what is reachable.
//!
//! [`DatabricksProbe`] checks the workspace (the current user), the configured SQL warehouse and,
//! when asked, a volume folder.

use std::time::Duration;

use async_trait::async_trait;

use crate::databricks::{DatabricksClient, DatabricksConfig, DatabricksError, DatabricksSettings};
use crate::diagnostics::{Check, CheckError, Connector, Mode, Options, Probe, Wanted, within};
use crate::error::Error;
use crate::pipeline::Project;

/// How long the address probe of [`open_client`] waits for DNS and TCP.
pub const CONNECT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a workspace cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No host, no credentials, an unknown profile, a malformed `~/.databrickscfg`.
    #[error("Databricks is not configured: {0}")]
    Config(#[source] DatabricksError),
    /// Nothing answers at the workspace's address (no such host, connection refused, timeout).
    #[error("cannot connect to {address} (Databricks workspace {host}): {source}")]
    Unreachable {
        host: String,
        address: String,
        #[source]
        source: std::io::Error,
    },
}

impl OpenError {
    /// The run's error for `step`: the step failed because of this. A missing configuration is
    /// the caller's to fix ([`Error::is_invalid_input`], the CLI exits 2); the run adds the
    /// step's `file:line`.
    pub fn into_error(self, step: &str) -> Error {
        Error::step_from(step, self)
    }
}

/// A client of the workspace `settings` select, once its address answers.
pub async fn open_client(settings: &DatabricksSettings) -> Result<DatabricksClient, OpenError> {
    let config = settings.resolve().map_err(OpenError::Config)?;
    open_config(&config).await
}

/// A client of a resolved workspace, once its address answers.
pub async fn open_config(config: &DatabricksConfig) -> Result<DatabricksClient, OpenError> {
    let client = DatabricksClient::new(config).map_err(OpenError::Config)?;
    check_reachable(&config.host, CONNECT_PROBE_TIMEOUT).await?;
    Ok(client)
}

/// Whether requests to `host` go through a proxy (then the address is not probed).
fn behind_proxy(scheme: &str) -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let mut keys = vec!["ALL_PROXY", "all_proxy"];
    keys.extend(if scheme == "http" {
        ["HTTP_PROXY", "http_proxy"]
    } else {
        ["HTTPS_PROXY", "https_proxy"]
    });
    keys.into_iter().any(set)
}

/// Resolves the workspace's host and opens (then closes) a TCP connection to it.
pub async fn check_reachable(host: &str, timeout: Duration) -> Result<(), OpenError> {
    let url = url::Url::parse(host).map_err(|e| {
        OpenError::Config(DatabricksError::Config {
            origin: "workspace host".into(),
            message: format!("`{host}`: {e}"),
        })
    })?;
    if behind_proxy(url.scheme()) {
        return Ok(());
    }
    let name = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let address = format!("{name}:{port}");
    let unreachable = |source: std::io::Error| OpenError::Unreachable {
        host: host.to_string(),
        address: address.clone(),
        source,
    };
    let attempt = async {
        let addrs: Vec<_> = tokio::net::lookup_host((name.trim_matches(['[', ']']), port))
            .await?
            .collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address found");
        for addr in addrs {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result.map_err(unreachable),
        Err(_) => Err(unreachable(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} s", timeout.as_secs_f64()),
        ))),
    }
}

/// Checks the project's Databricks workspace.
pub struct DatabricksProbe;

#[async_trait]
impl Probe for DatabricksProbe {
    fn connector(&self) -> Connector {
        Connector::Databricks
    }

    fn wanted(&self, project: &Project, options: &Options) -> Wanted {
        let Ok(settings) = project.databricks_settings() else {
            return Wanted::Yes; // the check reports the unreadable settings
        };
        let configured = match options.mode {
            Mode::Command => settings.is_configured(),
            // A server is not made unready by a ~/.databrickscfg it does not use.
            Mode::Readiness => settings.is_named(),
        };
        if configured || options.volume.is_some() {
            Wanted::Yes
        } else {
            Wanted::No
        }
    }

    async fn check(&self, project: &Project, options: &Options) -> Vec<Check> {
        let check = |name: String, outcome| Check::new(Connector::Databricks, name, outcome);
        let config = match project.databricks_settings().map(|s| s.resolve()) {
            Err(e) => return vec![check("configuration".into(), Err(e.into()))],
            Ok(Err(e)) => return vec![check("configuration".into(), Err(e.into()))],
            Ok(Ok(config)) => config,
        };
        let workspace = format!("workspace {}", config.host);
        let client = match within(options.timeout, async { Ok(open_config(&config).await?) }).await
        {
            Ok(client) => client,
            Err(e) => return vec![check(workspace, Err(e))],
        };
        let user = within(options.timeout, async { Ok(client.current_user().await?) }).await;
        let mut checks = match user {
            Ok(user) => vec![check(
                workspace,
                Ok(match options.mode {
                    Mode::Command => format!("signed in as {user} ({})", config.origin),
                    Mode::Readiness => format!("signed in as {user}"),
                }),
            )],
            Err(e) => return vec![check(workspace, Err(e))],
        };
        if let Some(id) = client.warehouse_id() {
            let found = within(options.timeout, async { Ok(client.warehouse(id).await?) }).await;
            checks.push(check(
                format!("SQL warehouse {id}"),
                found.map(|w| format!("{} is {}", w.name, w.state)),
            ));
        }
        if let Some(path) = &options.volume {
            let exists = within(options.timeout, async {
                crate::databricks::files::check_volume_path(path)
                    .map_err(CheckError::NotAVolumePath)?;
                match client.directory_exists(path).await? {
                    true => Ok("exists".to_string()),
                    false => Err(CheckError::NotFound),
                }
            })
            .await;
            checks.push(check(format!("volume {path}"), exists));
        }
        checks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Location;

    #[tokio::test]
    async fn a_closed_port_is_reported_at_once() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("http://127.0.0.1:{port}");
        if behind_proxy("http") {
            return;
        }
        let started = std::time::Instant::now();
        let err = check_reachable(&host, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(err, OpenError::Unreachable { .. }));
        assert!(
            err.to_string().starts_with(&format!(
                "cannot connect to 127.0.0.1:{port} (Databricks workspace {host}): "
            )),
            "{err}"
        );
        let step = err.into_error("sales");
        assert!(!step.is_invalid_input());
    }

    #[test]
    fn a_missing_configuration_is_invalid_input_placed_at_the_step() {
        let err = OpenError::Config(DatabricksError::Config {
            origin: "environment".into(),
            message: "no workspace host: set DATABRICKS_HOST".into(),
        })
        .into_error("sales");
        assert!(err.is_invalid_input());
        let at = Location::at("pipelines/x.yaml", Some(3));
        assert_eq!(
            err.placed(|step| (step == "sales").then_some(&at))
                .to_string(),
            "pipelines/x.yaml:3: step `sales` failed: Databricks is not configured: environment: no workspace host: set DATABRICKS_HOST"
        );
    }
}
