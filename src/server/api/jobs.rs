//! `GET /jobs`, `GET /jobs/{id}` and `DELETE /jobs/{id}`: listing and reading the jobs a caller
//! may see (see `server::visibility`), and cancelling one (its submitter or a writer of every
//! table it touches).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::extract::Authed;
use super::{Accepted, AppStateRef};
use crate::auth::{Access, Caller};
use crate::server::AppState;
use crate::server::audit::{AuditEntry, AuditResult};
use crate::server::jobs::{Job, JobFilter, JobStatus, Page};
use crate::server::runner::CancelOutcome;
use crate::server::visibility;
use crate::sync::EventStatus;

/// Who may cancel a job: the caller who submitted it, or one with write access to every SQL
/// Server table it touches (to every table at all, for a job that touches none).
fn may_cancel(caller: &Caller, job: &Job, tables: &[String]) -> Result<(), CancelRefused> {
    if job.submitted_by.as_deref() == Some(caller.name.as_str()) {
        return Ok(());
    }
    let refuse = |why: CancelDenial| {
        Err(CancelRefused {
            caller: caller.name.clone(),
            job: job.id.clone(),
            submitted_by: job.submitted_by.clone(),
            why: Box::new(why),
        })
    };
    if tables.is_empty() {
        if caller.may_write_every_table() {
            return Ok(());
        }
        return refuse(CancelDenial::NoTable);
    }
    for table in tables {
        if let Err(denied) = caller.check(table, Access::Write) {
            return refuse(CancelDenial::Table(denied));
        }
    }
    Ok(())
}

/// Why a caller other than its submitter may not cancel a job.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{caller}` may not cancel job `{job}` of {whose}: {why}; only its submitter or a caller \
     with write access to every table it touches may",
    whose = whose(.submitted_by)
)]
struct CancelRefused {
    caller: String,
    job: String,
    /// `None` for a scheduled job.
    submitted_by: Option<String>,
    why: Box<CancelDenial>,
}

/// Whose job it is, for messages.
fn whose(submitted_by: &Option<String>) -> String {
    submitted_by
        .as_deref()
        .map_or("the scheduler".to_string(), |s| format!("`{s}`"))
}

/// What the caller lacks to cancel someone else's job.
#[derive(Debug, thiserror::Error)]
enum CancelDenial {
    #[error("it touches no SQL Server table, so that takes write access to `*`")]
    NoTable,
    #[error(transparent)]
    Table(crate::auth::Denied),
}

/// Filters of `GET /jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct JobsQuery {
    /// Only jobs with this status.
    pub status: Option<String>,
    /// Only jobs of this pipeline.
    pub pipeline: Option<String>,
    /// Page size (default 50, at most 500).
    pub limit: Option<usize>,
    /// Jobs to skip (from `next_offset` of the previous page).
    pub offset: Option<usize>,
}

/// List the jobs the caller may see, newest first: its own, those whose every SQL Server table
/// it may read, or all with a `*` read grant.
#[utoipa::path(get, path = "/jobs", params(JobsQuery), security(("bearer" = [])),
    responses((status = 200, description = "A page of jobs: items, total, next_offset"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list_jobs(
    State(state): AppStateRef,
    authed: Authed,
    query: Result<Query<JobsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<Job>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("query", e.body_text()))?;
    let status = query
        .status
        .as_deref()
        .map(str::parse::<JobStatus>)
        .transpose()
        .map_err(|e| ApiError::bad_request("status", format!("status: {e}")))?;
    let filter = JobFilter {
        status,
        pipeline: query.pipeline,
        limit: query.limit.unwrap_or(50),
        offset: query.offset.unwrap_or(0),
    };
    let jobs = Arc::clone(&state.jobs);
    let caller = authed.caller;
    let page = tokio::task::spawn_blocking(move || {
        if visibility::sees_everything(&caller) {
            jobs.list(&filter)
        } else {
            jobs.list_visible(&filter, &|job| visibility::may_see_job(&caller, job))
        }
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(Json(page))
}

async fn load_job(state: &AppState, id: &str) -> Result<Job, ApiError> {
    let jobs = Arc::clone(&state.jobs);
    let key = id.to_string();
    let job = tokio::task::spawn_blocking(move || jobs.get(&key))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .ok_or_else(|| no_job(id))?;
    Ok(with_item_status(state, job).await)
}

/// A run accepted here but claimed from the events store by a server on another machine (which
/// keeps its own job store) stays queued in this one until its item is finished: then the
/// item's outcome is recorded here (a server sharing this job store finishes the job before
/// its item, so this only sees items run elsewhere).
async fn with_item_status(state: &AppState, job: Job) -> Job {
    let item = match job.request.get("event_id").and_then(|v| v.as_str()) {
        Some(item) if job.status == JobStatus::Queued && state.runner.tables(&job.id).is_none() => {
            item.to_string()
        }
        _ => return job,
    };
    let event = match state.events.get(&item).await {
        Ok(Some(event)) => event,
        Ok(None) => return job,
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "could not read the job's queue item");
            return job;
        }
    };
    let (status, summary, error) = match event.status {
        // Claimed but not finished: while it runs on another machine it stays queued here (a
        // server of this machine that claimed it is about to adopt the job).
        EventStatus::Pending | EventStatus::Running => return job,
        EventStatus::Completed => (
            JobStatus::Succeeded,
            Some(serde_json::json!({
                "rows_written": event.rows_affected, "ran_by": event.claimed_by, "job_id": event.job_id,
            })),
            None,
        ),
        EventStatus::Failed => (JobStatus::Failed, None, event.error_message.clone()),
    };
    let jobs = Arc::clone(&state.jobs);
    let id = job.id.clone();
    let recorded = tokio::task::spawn_blocking(move || {
        jobs.finish(&id, status, summary, error)?;
        jobs.get(&id)
    })
    .await;
    match recorded {
        Ok(Ok(Some(stored))) => stored,
        _ => job,
    }
}

fn no_job(id: &str) -> ApiError {
    ApiError::not_found(format!("no job `{id}`"))
}

/// A job: status, per-step rows/bytes/duration and outputs, error. 404 for a job the caller may
/// not see (as for one that does not exist).
#[utoipa::path(get, path = "/jobs/{id}", params(("id" = String, Path, description = "Job id")), security(("bearer" = [])),
    responses((status = 200, body = Job), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_job(
    State(state): AppStateRef,
    authed: Authed,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Job>, ApiError> {
    let job = load_job(&state, &id).await?;
    if !visibility::may_see(&authed.caller, &job) {
        return Err(no_job(&id));
    }
    Ok(Json(job))
}

/// Cancel a queued or running job: its steps stop and nothing it staged is committed. Only the
/// caller who submitted it, or one with write access to every table it touches, may.
#[utoipa::path(delete, path = "/jobs/{id}", params(("id" = String, Path, description = "Job id")), security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "The job has already finished")))]
pub(super) async fn cancel_job(
    State(state): AppStateRef,
    authed: Authed,
    UrlPath(id): UrlPath<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let job = load_job(&state, &id).await?;
    // A run queued in the events store and not started by any server yet is cancelled in the
    // job store: the server that claims its item then finds it cancelled and runs nothing.
    let waiting = job.status == JobStatus::Queued && job.request.get("event_id").is_some();
    let tables = state
        .runner
        .tables(&id)
        .or_else(|| waiting.then(|| job.tables.clone()));
    let entry = AuditEntry {
        request_id: authed.request_id.clone(),
        caller: Some(authed.caller.name.clone()),
        action: "cancel".into(),
        tables: tables.clone().unwrap_or_default(),
        job_id: Some(id.clone()),
        pipeline: Some(job.pipeline.clone()),
        ..AuditEntry::default()
    };
    if let Some(tables) = &tables
        && let Err(detail) = may_cancel(&authed.caller, &job, tables)
    {
        return Err(state
            .refuse(
                entry,
                StatusCode::FORBIDDEN,
                "forbidden",
                detail.to_string(),
            )
            .await);
    }
    let outcome = match tables {
        // Final in the store: the runner may still hold it for the moment after its record.
        _ if job.status.is_final() => CancelOutcome::NotActive,
        Some(_) if state.runner.tables(&id).is_some() => state.runner.cancel(&id),
        Some(_) => {
            let (jobs, job_id) = (Arc::clone(&state.jobs), id.clone());
            let error = format!("cancelled by `{}` before it started", authed.caller.name);
            let cancelled =
                tokio::task::spawn_blocking(move || jobs.cancel_queued(&job_id, &error))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(ApiError::internal)?;
            if cancelled {
                CancelOutcome::Cancelling
            } else {
                CancelOutcome::NotActive
            }
        }
        None => CancelOutcome::NotActive,
    };
    if outcome == CancelOutcome::NotActive {
        // Re-read: the job may have finished between the two looks.
        let job = load_job(&state, &id).await?;
        let detail = format!("job `{id}` is already {}; nothing to cancel", job.status);
        return Err(state
            .refuse(entry, StatusCode::CONFLICT, "conflict", detail)
            .await);
    }
    state
        .audit(AuditEntry {
            result: AuditResult::Ok,
            ..entry
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            id: id.clone(),
            status: "cancelling".into(),
            href: format!("/jobs/{id}"),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn job(submitted_by: Option<&str>) -> Job {
        Job {
            id: "j1".into(),
            kind: "run".into(),
            pipeline: "p".into(),
            pipeline_file: None,
            country: None,
            params: serde_json::json!({}),
            status: JobStatus::Running,
            submitted_by: submitted_by.map(str::to_string),
            created_at: String::new(),
            started_at: None,
            finished_at: None,
            error: None,
            summary: None,
            request: serde_json::json!({}),
            owner: None,
            tables: Vec::new(),
        }
    }

    #[test]
    fn only_the_submitter_or_a_writer_of_every_table_may_cancel() {
        let permissions = crate::auth::Permissions::parse(
            Path::new("permissions.yaml"),
            r#"users:
  - name: alice
    token: alice-token
    permissions: []
  - name: bob
    token: bob-token
    permissions:
      - {table: dbo.Results, access: read_write}
      - {table: dbo.Sales, access: read}
  - name: ops
    token: ops-token
    permissions:
      - {table: "*", access: read_write}
"#,
        )
        .unwrap();
        let caller = |t: &str| permissions.authenticate(t).unwrap();
        let (alice, bob, ops) = (
            caller("alice-token"),
            caller("bob-token"),
            caller("ops-token"),
        );
        let results = ["dbo.Results".to_string()];
        let both = ["dbo.Results".to_string(), "dbo.Sales".to_string()];
        // The submitter, whatever its grants.
        assert!(may_cancel(&alice, &job(Some("alice")), &both).is_ok());
        // Someone else's job: write access to every table it touches.
        let e = may_cancel(&alice, &job(Some("bob")), &results)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`alice` may not cancel job `j1` of `bob`") && e.contains("dbo.Results"),
            "{e}"
        );
        assert!(may_cancel(&bob, &job(Some("alice")), &results).is_ok());
        let e = may_cancel(&bob, &job(Some("alice")), &both)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dbo.Sales") && e.contains("write"), "{e}");
        assert!(may_cancel(&ops, &job(Some("alice")), &both).is_ok());
        // A job touching no table, or a scheduled one: only a writer of every table.
        assert!(may_cancel(&bob, &job(Some("alice")), &[]).is_err());
        assert!(may_cancel(&ops, &job(Some("alice")), &[]).is_ok());
        let e = may_cancel(&alice, &job(None), &[]).unwrap_err().to_string();
        assert!(e.contains("the scheduler"), "{e}");
        assert!(may_cancel(&ops, &job(None), &results).is_ok());
    }
}
