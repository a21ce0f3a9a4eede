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

/// Ready to take work: project files valid, permissions valid, SQL Server and lakehouse reachable.
/// The SQL Server and events-table probes are cached for a few seconds (see `server::probes`).
#[utoipa::path(get, path = "/health/ready",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub(super) async fn ready(State(state): AppStateRef) -> (StatusCode, Json<Readiness>) {
    let mut checks = BTreeMap::new();
    let mut ok = true;
    let mut check = |name: &str, result: Result<String, String>| {
        ok &= result.is_ok();
        checks.insert(name.to_string(), result.unwrap_or_else(|e| e));
    };
    let current = state.versions.current();
    check(
        "config",
        match (state.versions.error(), &current) {
            (Some(e), _) => Err(format!("invalid, previous version kept: {e}")),
            (None, None) => Err("no valid version loaded".into()),
            (None, Some(_)) => Ok("ok".into()),
        },
    );
    check(
        "permissions",
        state.permissions.error().map_or(Ok("ok".into()), |e| {
            Err(format!("invalid, previous set kept: {e}"))
        }),
    );
    if let Some(version) = &current {
        check(
            "sqlserver",
            state.probes.sqlserver(&version.id, &version.project).await,
        );
        check("lakehouse", lakehouse_ready(&version.project));
    }
    check(
        "events",
        state
            .probes
            .events(state.events.as_ref())
            .await
            .pending
            .map(|n| format!("ok ({n} pending)")),
    );
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready: ok,
            checks,
            version: current.map(|v| v.id.clone()),
        }),
    )
}

fn lakehouse_ready(project: &crate::pipeline::Project) -> Result<String, String> {
    let params = project.config_params(None).map_err(|e| e.to_string())?;
    let Some(root) = params.get("lakehouse_root").and_then(|v| v.as_str()) else {
        return Ok("not configured".into());
    };
    if root.contains("://") {
        return Ok(format!("{root} (remote, not probed)"));
    }
    let dir = project.resolve(root);
    std::fs::create_dir_all(&dir)
        .map(|_| "ok".to_string())
        .map_err(|e| format!("{}: {e}", dir.display()))
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
