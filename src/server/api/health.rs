//! `GET /health/live`, `GET /health/ready` (project files, permissions, SQL Server, lakehouse
//! and events table) and `GET /metrics` (Prometheus).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppStateRef;
use super::error::ApiError;
use crate::diagnostics::{Check, Connector};
use crate::server::metrics::Scrape;

/// The process is up.
#[utoipa::path(get, path = "/health/live", responses((status = 200, description = "Alive")))]
pub(super) async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// What `/health/ready` checked.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Readiness {
    /// True when every check passed.
    pub ready: bool,
    /// Each check: `ok`, `not configured`, or what failed.
    #[schema(value_type = Object)]
    pub checks: BTreeMap<String, String>,
    /// The loaded version of the project files.
    pub version: Option<String>,
}

/// Ready to take work: project files valid, permissions valid, the configured connectors (SQL
/// Server, Databricks) and the lakehouse reachable. The connector and events-table probes are
/// cached for a few seconds (see `server::probes`).
#[utoipa::path(get, path = "/health/ready",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub(super) async fn ready(State(state): AppStateRef) -> (StatusCode, Json<Readiness>) {
    let mut report = Report::default();
    let current = state.versions.current();
    match (state.versions.error(), &current) {
        (Some(e), _) => report.fail("config", format!("invalid, previous version kept: {e}")),
        (None, None) => report.fail("config", "no valid version loaded"),
        (None, Some(_)) => report.pass("config", "ok"),
    }
    match state.permissions.error() {
        Some(e) => report.fail("permissions", format!("invalid, previous set kept: {e}")),
        None => report.pass("permissions", "ok"),
    }
    if let Some(version) = &current {
        let checks = state.probes.connectors(&version.id, &version.project).await;
        for probe in crate::diagnostics::PROBES {
            report.connector(probe.connector(), &checks);
        }
        match lakehouse_ready(&version.project) {
            Ok(detail) => report.pass("lakehouse", detail),
            Err(e) => report.fail("lakehouse", e),
        }
    }
    match state.probes.events(state.events.as_ref()).await.pending {
        Ok(n) => report.pass("events", format!("ok ({n} pending)")),
        Err(e) => report.fail("events", e),
    }
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready: report.ok,
            checks: report.checks,
            version: current.map(|v| v.id.clone()),
        }),
    )
}

/// The checks of `/health/ready` as they are answered: one line each.
struct Report {
    ok: bool,
    checks: BTreeMap<String, String>,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            ok: true,
            checks: BTreeMap::new(),
        }
    }
}

impl Report {
    fn pass(&mut self, name: &str, detail: impl Into<String>) {
        self.checks.insert(name.to_string(), detail.into());
    }

    fn fail(&mut self, name: &str, why: impl std::fmt::Display) {
        self.ok = false;
        self.checks.insert(name.to_string(), why.to_string());
    }

    /// One line for a connector: `not configured`, `ok (details)`, or its first failed check.
    fn connector(&mut self, connector: Connector, checks: &[Check]) {
        let mine: Vec<&Check> = checks.iter().filter(|c| c.connector == connector).collect();
        if let Some(failed) = mine.iter().find(|c| c.outcome.is_err()) {
            if let Err(e) = &failed.outcome {
                self.fail(connector.key(), format!("{}: {e}", failed.title()));
            }
        } else if mine.is_empty() {
            self.pass(connector.key(), "not configured");
        } else {
            let details: Vec<&str> = mine
                .iter()
                .filter_map(|c| c.outcome.as_deref().ok())
                .collect();
            self.pass(connector.key(), format!("ok ({})", details.join("; ")));
        }
    }
}

/// Why the lakehouse root cannot be used.
#[derive(Debug, thiserror::Error)]
enum LakehouseError {
    #[error(transparent)]
    Project(#[from] crate::Error),
    #[error("{}: {source}", dir.display())]
    Folder {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn lakehouse_ready(project: &crate::pipeline::Project) -> Result<String, LakehouseError> {
    let params = project.config_params(None)?;
    let Some(root) = params.get("lakehouse_root").and_then(|v| v.as_str()) else {
        return Ok("not configured".into());
    };
    if root.contains("://") {
        return Ok(format!("{root} (remote, not probed)"));
    }
    let dir = project.resolve(root);
    std::fs::create_dir_all(&dir)
        .map(|_| "ok".to_string())
        .map_err(|source| LakehouseError::Folder { dir, source })
}

/// Prometheus metrics; the events-table figures are cached for a few seconds (see
/// `server::probes`).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(super) async fn metrics(State(state): AppStateRef) -> Result<Response, ApiError> {
    let jobs = Arc::clone(&state.jobs);
    let jobs_by_status = tokio::task::spawn_blocking(move || jobs.counts_by_status())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let events = state.probes.events(state.events.as_ref()).await;
    let events_pending = events.pending.unwrap_or(0);
    let event_lag = match events.oldest_pending {
        Some(created) => (chrono::Utc::now() - created).to_std().unwrap_or_default(),
        None => std::time::Duration::ZERO,
    };
    let text = state.metrics.render(Scrape {
        jobs_by_status,
        event_lag,
        events_pending,
        config_valid: state.versions.error().is_none() && state.versions.current().is_some(),
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
