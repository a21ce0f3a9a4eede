//! `POST /sync` (a Databricks -> SQL Server sync event, authorised from its plan and audited
//! before it is stored) and `GET /events/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{Authed, Body};
use super::{Accepted, AppStateRef, version};
use crate::auth::{SqlTable, authorize};
use crate::server::AppState;
use crate::server::audit::{AuditEntry, AuditResult};
use crate::server::visibility;
use crate::sync::apply::plan_event;
use crate::sync::{ApplyLimits, Event, NewEvent, Operation};

/// A Databricks -> SQL Server sync, applied by the events poller.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SyncRequest {
    /// INSERT, UPSERT, UPDATE or DELETE.
    pub operation: Operation,
    /// The Databricks table rows come from (`catalog.schema.table`).
    pub source_table: String,
    /// The SQL Server table written (`schema.table`).
    pub target_table: String,
    /// Key columns (UPSERT, UPDATE and DELETE need them).
    #[serde(default)]
    pub primary_keys: Vec<String>,
    /// A SQL condition on the source's rows.
    #[serde(default)]
    pub filter: Option<String>,
}

/// Submit a sync event.
#[utoipa::path(post, path = "/sync", request_body = SyncRequest, security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub(super) async fn submit_sync(
    State(state): AppStateRef,
    authed: Authed,
    Body(request): Body<SyncRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    if request.operation == Operation::Run {
        return Err(ApiError::bad_request(
            "operation",
            "operation: RUN runs a pipeline; send it to POST /events",
        ));
    }
    let event = NewEvent {
        operation: request.operation,
        source_table: request.source_table,
        target_table: request.target_table,
        primary_keys: request.primary_keys,
        filter: request.filter,
        created_by: Some(authed.caller.name.clone()),
        pipeline: None,
        country: None,
        params: None,
    };
    event.validate().map_err(|e| {
        let field = e.field().unwrap_or("body");
        ApiError::bad_request(field, e.to_string())
    })?;
    let event_id = uuid::Uuid::new_v4().hyphenated().to_string();
    let version = version(&state)?;
    let policy = state.policy(&version.project)?;
    // A target that is not exactly one table of the configured database is refused like a
    // missing grant (and audited): `master.dbo.Audit`, `dbo .Audit`, look-alike letters.
    if let Err(e) = SqlTable::parse(&event.target_table, policy.database.as_deref()) {
        let entry = AuditEntry {
            request_id: authed.request_id.clone(),
            caller: Some(authed.caller.name.clone()),
            action: "sync".into(),
            tables: vec![event.target_table.clone()],
            ..AuditEntry::default()
        };
        let detail = format!("target_table: {e}");
        return Err(state
            .refuse(entry, StatusCode::FORBIDDEN, "forbidden", detail)
            .await);
    }
    // Authorised from what the event's plan reads (the lakehouse source) and writes (the SQL
    // Server target), exactly as the poller will authorise it again when it applies it.
    let plan = plan_event(
        &version.project,
        &event.pending(&event_id),
        &ApplyLimits::default(),
        state.events.source_catalog(),
    )
    .map_err(|e| match e.field() {
        Some(field) => ApiError::bad_request(field, e.to_string()),
        None => ApiError::from(crate::Error::from(e)),
    })?;
    let entry = AuditEntry {
        request_id: authed.request_id.clone(),
        caller: Some(authed.caller.name.clone()),
        action: "sync".into(),
        tables: plan.resources.table_names(),
        ..AuditEntry::default()
    };
    if let Err(refusal) = authorize(Some(&authed.caller), &plan, &policy) {
        return Err(state
            .refuse(
                entry,
                StatusCode::FORBIDDEN,
                "forbidden",
                refusal.to_string(),
            )
            .await);
    }
    store_audited(&state, entry, &event_id, event).await
}

/// Audits `entry` as started under `event_id`, then stores the event and answers 202 with it:
/// no poller can apply an event the audit log does not show. A failure to store it is audited
/// as failed.
pub(super) async fn store_audited(
    state: &Arc<AppState>,
    entry: AuditEntry,
    event_id: &str,
    event: NewEvent,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let started = AuditEntry {
        result: AuditResult::Started,
        event_id: Some(event_id.to_string()),
        ..entry
    };
    state.audit(started.clone()).await?;
    let event = match state.events.submit_as(event_id, event).await {
        Ok(event) => event,
        Err(e) => {
            let failed = AuditEntry {
                result: AuditResult::Failed,
                error: Some(format!("not stored: {e}")),
                ..started
            };
            // A failure to write this one is logged (as every internal error is).
            let _ = state.audit(failed).await;
            return Err(ApiError::internal(e));
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            id: event.event_id.clone(),
            status: event.status.to_string(),
            href: format!("/events/{}", event.event_id),
        }),
    ))
}

/// A sync event and its outcome. 404 for an event the caller neither created nor may read the
/// target table of (as for one that does not exist).
#[utoipa::path(get, path = "/events/{id}", params(("id" = String, Path, description = "Event id")), security(("bearer" = [])),
    responses((status = 200, body = Event), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_event(
    State(state): AppStateRef,
    authed: Authed,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Event>, ApiError> {
    state
        .events
        .get(&id)
        .await
        .map_err(ApiError::internal)?
        .filter(|event| visibility::may_see_event(&authed.caller, event))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no event `{id}`")))
}
