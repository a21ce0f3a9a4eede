//! The HTTP API: the router and its OpenAPI document. Requests, handlers and their errors live
//! by resource: [`runs`] (`/runs`, `/extract`), [`jobs`] (`/jobs`), [`sync`] (`/sync`,
//! `/events/{id}`), [`run_event`] (`POST /events`), [`health`] (`/health/*`, `/metrics`); failures become `{error, detail,
//! field}` JSON with the right status ([`error`]), bodies and callers are read by [`extract`].

mod error;
mod extract;
mod health;
mod jobs;
mod run_event;
mod runs;
mod sync;

pub(crate) use runs::{PlanRunError, cap_deletes, plan_run};

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::server::AppState;
use crate::server::jobs::{Job, JobStatus};
use crate::server::versions::ProjectVersion;
use crate::sync::{Event, Operation};

pub use error::UNAUDITED;
use error::{ApiError, ErrorBody};
use extract::request_id;
use health::{__path_live, __path_metrics, __path_ready, Readiness, live, metrics, ready};
use jobs::{__path_cancel_job, __path_get_job, __path_list_jobs, cancel_job, get_job, list_jobs};
use run_event::{__path_submit_run_event, RunEventRequest, submit_run_event};
use runs::{
    __path_start_extract, __path_start_run, ExtractRequest, RunRequest, start_extract, start_run,
};
use sync::{__path_get_event, __path_submit_sync, SyncRequest, get_event, submit_sync};

type AppStateRef = State<Arc<AppState>>;

/// The routes of the API.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/runs", post(start_run))
        .route("/extract", post(start_extract))
        .route("/jobs", get(list_jobs))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}", delete(cancel_job))
        .route("/sync", post(submit_sync))
        .route("/events", post(submit_run_event))
        .route("/events/{id}", get(get_event))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(request_id))
        .with_state(state)
}

/// The OpenAPI document of the API.
#[derive(OpenApi)]
#[openapi(
    info(title = "sql-databricks-bridge", description = "Runs pipelines and syncs between SQL Server and Databricks"),
    paths(start_run, start_extract, list_jobs, get_job, cancel_job, submit_sync, submit_run_event, get_event, live, ready, metrics),
    components(schemas(RunRequest, ExtractRequest, SyncRequest, RunEventRequest, Accepted, Job, JobStatus, Event, Operation, ErrorBody, Readiness)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /openapi.json")
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// A job or event was accepted and runs in the background.
#[derive(Debug, Serialize, ToSchema)]
struct Accepted {
    /// The job id (for `/jobs/{id}`) or event id (for `/events/{id}`).
    pub id: String,
    /// Its status now.
    pub status: String,
    /// Where to follow it.
    pub href: String,
}

fn version(state: &AppState) -> Result<Arc<ProjectVersion>, ApiError> {
    state.versions.current().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!(
                "no valid version of the project files is loaded: {}",
                state.versions.error().unwrap_or_default()
            ),
        )
    })
}
