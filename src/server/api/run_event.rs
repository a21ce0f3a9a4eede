//! `POST /events`: a RUN event (a pipeline run through the events queue), checked against the
//! project, planned and authorised as the caller, audited, then stored for the poller.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{Authed, Body};
use super::runs::{params_of, plan_run};
use super::sync::store_audited;
use super::{Accepted, AppStateRef, version};
use crate::auth::authorize;
use crate::server::audit::AuditEntry;
use crate::sync::{NewEvent, Operation};

/// A pipeline run, queued as an event and run by a server's events poller as the caller.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RunEventRequest {
    /// `RUN` (table syncs go to `POST /sync`).
    pub operation: Operation,
    /// Pipeline name, or its file name under `pipelines/`.
    pub pipeline: String,
    /// Country whose parameters and queries are used.
    #[serde(default)]
    pub country: Option<String>,
    /// Parameter overrides (strings, numbers or booleans) the pipeline declares.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// Queue a pipeline run as an event.
#[utoipa::path(post, path = "/events", request_body = RunEventRequest, security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn submit_run_event(
    State(state): AppStateRef,
    authed: Authed,
    Body(request): Body<RunEventRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    if request.operation != Operation::Run {
        return Err(ApiError::bad_request(
            "operation",
            format!(
                "operation: {} is a table sync; send it to POST /sync (POST /events takes RUN)",
                request.operation
            ),
        ));
    }
    let params = params_of(&request.params)?;
    let event = NewEvent::run(
        &request.pipeline,
        request.country.as_deref(),
        &request.params,
        Some(&authed.caller.name),
    );
    event.validate().map_err(|e| {
        let field = e.field().unwrap_or("body");
        ApiError::bad_request(field, e.to_string())
    })?;
    let version = version(&state)?;
    // Checked now so the caller hears at once; the poller checks again against the files of
    // the moment it runs.
    let (name, _, plan) = plan_run(
        &version,
        &request.pipeline,
        request.country.as_deref(),
        params,
    )?;
    let policy = state.policy(&version.project)?;
    let entry = AuditEntry {
        request_id: authed.request_id.clone(),
        caller: Some(authed.caller.name.clone()),
        action: "event".into(),
        tables: plan.resources.table_names(),
        pipeline: Some(name.to_string()),
        ..AuditEntry::default()
    };
    if let Err(refusal) = authorize(Some(&authed.caller), &plan, &policy) {
        return Err(state
            .refuse(
                entry,
                StatusCode::FORBIDDEN,
                "forbidden",
                plan.renderer.redact(&refusal.to_string()),
            )
            .await);
    }
    let event_id = uuid::Uuid::new_v4().hyphenated().to_string();
    store_audited(&state, entry, &event_id, event).await
}
