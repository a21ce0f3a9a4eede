//! `POST /runs` (a pipeline of the project) and `POST /extract` (a country's queries): the
//! request is checked and planned, the plan authorised and audited, then the job is queued: a
//! run as a RUN item of the events store, which any server sharing the store may claim and run
//! (`run_events`); an extraction in this server's runner.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody, UNAUDITED};
use super::extract::{Authed, Body};
use super::{Accepted, AppStateRef, version};
use crate::auth::authorize;
use crate::pipeline::extract::extract_pipeline;
use crate::pipeline::project::{check_country, check_relative};
use crate::pipeline::{Plan, PlanOptions};
use crate::server::AppState;
use crate::server::audit::{AuditEntry, AuditResult};
use crate::server::jobs::{Job, NewJob};
use crate::server::run_events::{close_failed, first_job_id};
use crate::server::runner::JobWork;
use crate::server::versions::{PipelineEntry, ProjectVersion};
use crate::sync::NewEvent;

/// Run a pipeline of the project.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RunRequest {
    /// Pipeline name, or its file name under `pipelines/` (`demo`, `demo.yaml`).
    pub pipeline: String,
    /// Country whose parameters and queries are used.
    #[serde(default)]
    pub country: Option<String>,
    /// Parameter overrides (strings, numbers or booleans).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// Extract every query of a country (the original system's request).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ExtractRequest {
    /// Country whose queries and parameters are used.
    pub country: String,
    /// Where the Parquet files go: a folder under the project root, or a cloud URL.
    pub destination: String,
    /// Only these queries (file names without `.sql`); all of the country's by default.
    #[serde(default)]
    pub queries: Option<Vec<String>>,
    /// Folder of SQL files, relative to the project root (default `queries`).
    #[serde(default)]
    pub queries_path: Option<String>,
    /// Folder of parameter files, relative to the project root (default `config`).
    #[serde(default)]
    pub config_path: Option<String>,
}

pub(super) fn params_of(
    params: &BTreeMap<String, serde_json::Value>,
) -> Result<Vec<(String, String)>, ApiError> {
    crate::sync::event::param_pairs(params.iter().map(|(k, v)| (k.clone(), v.clone())))
        .map_err(|e| ApiError::bad_request(&e.field, e.message))
}

/// Why a run request does not fit the project's current files: the request field at fault.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct RunRequestError {
    /// `pipeline`, `country` or `params.<name>`.
    pub field: String,
    pub message: String,
    /// The pipeline does not exist (the API answers 404).
    pub not_found: bool,
}

impl RunRequestError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        RunRequestError {
            field: field.into(),
            message: message.into(),
            not_found: false,
        }
    }
}

impl From<RunRequestError> for ApiError {
    fn from(e: RunRequestError) -> Self {
        if e.not_found {
            ApiError::not_found(e.message).field(&e.field)
        } else {
            ApiError::bad_request(&e.field, e.message)
        }
    }
}

/// A run request (from the API or a RUN event) checked against a project version: the pipeline
/// exists, the country is one it lists, and every parameter is one it declares. Returns the
/// pipeline's name and entry.
pub(crate) fn check_run<'v>(
    version: &'v ProjectVersion,
    pipeline: &str,
    country: Option<&str>,
    params: &[(String, String)],
) -> Result<(&'v str, &'v PipelineEntry), RunRequestError> {
    let (name, entry) = version.pipeline(pipeline).ok_or_else(|| {
        let known: Vec<&str> = version.pipelines.keys().map(String::as_str).collect();
        RunRequestError {
            not_found: true,
            ..RunRequestError::new(
                "pipeline",
                format!(
                    "pipeline `{pipeline}` does not exist (pipelines: {})",
                    known.join(", ")
                ),
            )
        }
    })?;
    check_declared(&entry.file, name, params)?;
    if let Some(country) = country {
        check_country(country).map_err(|e| RunRequestError::new("country", e.to_string()))?;
        if !entry.countries.is_empty()
            && !entry
                .countries
                .iter()
                .any(|c| c.eq_ignore_ascii_case(country))
        {
            return Err(RunRequestError::new(
                "country",
                format!(
                    "country: `{country}` is not one of pipeline `{name}`'s countries ({})",
                    entry.countries.join(", ")
                ),
            ));
        }
    }
    Ok((name, entry))
}

/// Why a run request was not planned: it does not fit the project's files, or it does not plan.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlanRunError {
    #[error(transparent)]
    Request(#[from] RunRequestError),
    #[error(transparent)]
    Plan(#[from] crate::Error),
}

impl From<PlanRunError> for ApiError {
    fn from(e: PlanRunError) -> Self {
        match e {
            PlanRunError::Request(e) => e.into(),
            PlanRunError::Plan(e) => e.into(),
        }
    }
}

/// A run request checked against a project version ([`check_run`]), then planned with its
/// country and params. Returns the pipeline's name and entry, and the plan.
pub(crate) fn plan_run<'v>(
    version: &'v ProjectVersion,
    pipeline: &str,
    country: Option<&str>,
    params: Vec<(String, String)>,
) -> Result<(&'v str, &'v PipelineEntry, Plan), PlanRunError> {
    let (name, entry) = check_run(version, pipeline, country, &params)?;
    let options = PlanOptions {
        country: country.map(str::to_string),
        params,
    };
    let plan = Plan::from_file(&version.project, &entry.file, &options)?;
    Ok((name, entry, plan))
}

/// Only parameters a pipeline declares in its own `params:` may be overridden by a request:
/// those of `config/` (output roots, databases) are the operator's, not the caller's.
fn check_declared(
    file: &Path,
    pipeline: &str,
    params: &[(String, String)],
) -> Result<(), RunRequestError> {
    if params.is_empty() {
        return Ok(());
    }
    let spec = std::fs::read_to_string(file)
        .map_err(|e| crate::Error::io(file, e))
        .and_then(|text| crate::pipeline::spec::parse_pipeline(file, &text))
        .map_err(|e| RunRequestError::new("pipeline", e.to_string()))?;
    for (name, _) in params {
        if !spec.params.contains_key(name) {
            let declared: Vec<&str> = spec.params.keys().map(String::as_str).collect();
            return Err(RunRequestError::new(
                format!("params.{name}"),
                format!(
                    "params.{name}: not a parameter of pipeline `{pipeline}`; a request may set only those the pipeline declares (params: {})",
                    if declared.is_empty() {
                        "none".to_string()
                    } else {
                        declared.join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// Start a run of a pipeline.
#[utoipa::path(post, path = "/runs", request_body = RunRequest, security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn start_run(
    State(state): AppStateRef,
    authed: Authed,
    Body(request): Body<RunRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let params = params_of(&request.params)?;
    let version = version(&state)?;
    let (name, entry, plan) = plan_run(
        &version,
        &request.pipeline,
        request.country.as_deref(),
        params,
    )?;
    let request_json = serde_json::json!({
        "pipeline": name, "country": request.country, "params": request.params,
    });
    let job = NewJob {
        kind: "run".into(),
        pipeline: name.to_string(),
        pipeline_file: Some(entry.display.display().to_string()),
        country: plan.country.clone(),
        params: serde_json::to_value(&request.params).unwrap_or_default(),
        submitted_by: Some(authed.caller.name.clone()),
        request: request_json,
        tables: Vec::new(),
    };
    enqueue_run(&state, &authed, &request, plan, job, &version.project).await
}

/// Start the extraction of a country's queries (the original `/extract`).
#[utoipa::path(post, path = "/extract", request_body = ExtractRequest, security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub(super) async fn start_extract(
    State(state): AppStateRef,
    authed: Authed,
    Body(request): Body<ExtractRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let version = version(&state)?;
    let mut project = version.project.clone();
    // Folders are taken from the validated version's copy of the project, never the live tree.
    let base = version
        .project
        .snapshot()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| state.root.clone());
    for (field, value) in [
        ("queries_path", &request.queries_path),
        ("config_path", &request.config_path),
    ] {
        if let Some(dir) = value {
            check_relative(dir)
                .map_err(|e| ApiError::bad_request(field, format!("{field}: {e}")))?;
            let dir = base.join(dir);
            let inside = dir
                .canonicalize()
                .ok()
                .zip(base.canonicalize().ok())
                .is_some_and(|(d, b)| d.starts_with(b));
            if !dir.is_dir() || !inside {
                return Err(ApiError::bad_request(
                    field,
                    format!(
                        "{field}: `{}` is not a folder of the project",
                        value.as_deref().unwrap_or_default()
                    ),
                ));
            }
            project = if field == "queries_path" {
                project.with_queries_dir(dir)
            } else {
                project.with_config_dir(dir)
            };
        }
    }
    if !request.destination.contains("://") {
        check_relative(&request.destination)
            .map_err(|e| ApiError::bad_request("destination", format!("destination: {e}")))?;
    }
    check_country(&request.country).map_err(|e| ApiError::bad_request("country", e.to_string()))?;
    let mut spec = extract_pipeline(&project, &request.country, &request.destination)?;
    if let Some(wanted) = &request.queries {
        let available: Vec<String> = spec
            .steps
            .iter()
            .filter(|s| s.source.is_some())
            .map(|s| s.id.clone())
            .collect();
        if let Some(missing) = wanted.iter().find(|q| !available.contains(q)) {
            return Err(ApiError::bad_request(
                "queries",
                format!(
                    "queries: `{missing}` is not a query of {} (queries: {})",
                    request.country,
                    available.join(", ")
                ),
            ));
        }
        spec.steps.retain(|s| match (&s.source, &s.sink) {
            (Some(_), _) => wanted.contains(&s.id),
            (_, Some(sink)) => wanted.iter().any(|q| q == sink.config().from()),
            _ => true,
        });
    }
    let options = PlanOptions {
        country: Some(request.country.to_lowercase()),
        params: Vec::new(),
    };
    // The request's strings are data: the spec is planned without rendering its fields.
    let plan = Plan::from_data_spec(&project, Path::new("<extract>"), spec, &options)?;
    let request_json = serde_json::json!({
        "country": request.country, "destination": request.destination, "queries": request.queries,
        "queries_path": request.queries_path, "config_path": request.config_path,
    });
    let job = NewJob {
        kind: "extract".into(),
        pipeline: plan.name.clone(),
        pipeline_file: None,
        country: plan.country.clone(),
        params: serde_json::json!({}),
        submitted_by: Some(authed.caller.name.clone()),
        request: request_json,
        tables: Vec::new(),
    };
    submit(&state, &authed, (version, project), plan, job).await
}

/// Caps the deletes of a plan's SQL Server sinks by the caller's `max_delete_rows`.
pub(crate) fn cap_deletes(plan: &mut Plan, caps: &BTreeMap<String, u64>) {
    for step in &mut plan.steps {
        if let Some(sink) = &mut step.spec.sink
            && let Some(limit) = caps.get(&step.id)
        {
            sink.config_mut().cap_deletes(*limit);
        }
    }
}

/// Authorises `plan` as the caller (a refusal is audited and answered 403), caps its deletes by
/// the caller's limits and records the tables it touches in `job`.
async fn authorize_plan(
    state: &Arc<AppState>,
    authed: &Authed,
    project: &crate::pipeline::Project,
    plan: &mut Plan,
    job: &mut NewJob,
) -> Result<crate::auth::Authorized, ApiError> {
    let policy = state.policy(project)?;
    let authorized = match authorize(Some(&authed.caller), plan, &policy) {
        Ok(authorized) => authorized,
        Err(refusal) => {
            let entry = AuditEntry {
                request_id: authed.request_id.clone(),
                caller: Some(authed.caller.name.clone()),
                action: job.kind.clone(),
                tables: plan.resources.table_names(),
                pipeline: Some(job.pipeline.clone()),
                ..AuditEntry::default()
            };
            return Err(state
                .refuse(
                    entry,
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    plan.renderer.redact(&refusal.to_string()),
                )
                .await);
        }
    };
    job.tables = authorized.tables.clone();
    cap_deletes(plan, &authorized.delete_caps);
    Ok(authorized)
}

/// Stores `job` queued (under `id`, or a fresh id) and audits its start; a job whose audit line
/// cannot be written is closed as failed and the error returned.
async fn store_audited(
    state: &Arc<AppState>,
    authed: &Authed,
    id: Option<String>,
    job: NewJob,
    event_id: Option<String>,
) -> Result<Job, ApiError> {
    let jobs = Arc::clone(&state.jobs);
    let job = tokio::task::spawn_blocking(move || match id {
        Some(id) => jobs.insert_as(&id, &job).and_then(|stored| {
            stored.ok_or_else(|| crate::Error::Invalid(format!("a job with id {id} exists")))
        }),
        None => jobs.insert(&job),
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    // The job is stored `queued` but runs only once its audit line is on disk; without one it
    // is closed as failed, never started.
    let audited = state
        .audit(AuditEntry {
            request_id: authed.request_id.clone(),
            caller: Some(authed.caller.name.clone()),
            action: job.kind.clone(),
            tables: job.tables.clone(),
            result: AuditResult::Started,
            job_id: Some(job.id.clone()),
            event_id,
            pipeline: Some(job.pipeline.clone()),
            ..AuditEntry::default()
        })
        .await;
    if let Err(e) = audited {
        close_failed(state, &job.id, UNAUDITED.to_string()).await;
        return Err(e);
    }
    Ok(job)
}

/// `202 Accepted` for a queued job.
fn accepted(job: &Job) -> (StatusCode, Json<Accepted>) {
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            id: job.id.clone(),
            status: job.status.to_string(),
            href: format!("/jobs/{}", job.id),
        }),
    )
}

/// Queues an accepted run as a RUN item of the events store, the queue every server claims work
/// from: its first attempt's job is stored (queued) and audited now, so the caller can follow
/// and cancel it; the server that claims the item runs it (`run_events`), after checking and
/// authorising it again against its current files.
async fn enqueue_run(
    state: &Arc<AppState>,
    authed: &Authed,
    request: &RunRequest,
    mut plan: Plan,
    mut job: NewJob,
    project: &crate::pipeline::Project,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    authorize_plan(state, authed, project, &mut plan, &mut job).await?;
    let event_id = uuid::Uuid::new_v4().hyphenated().to_string();
    job.request["event_id"] = event_id.clone().into();
    let item = NewEvent::run(
        &job.pipeline,
        request.country.as_deref(),
        &request.params,
        Some(&authed.caller.name),
    );
    let job = store_audited(
        state,
        authed,
        Some(first_job_id(&event_id)),
        job,
        Some(event_id.clone()),
    )
    .await?;
    if let Err(e) = state.events.submit_as(&event_id, item).await {
        let error = format!("the run could not be queued: {e}");
        close_failed(state, &job.id, error.clone()).await;
        return Err(ApiError::internal(error));
    }
    Ok(accepted(&job))
}

async fn submit(
    state: &Arc<AppState>,
    authed: &Authed,
    (version, project): (Arc<ProjectVersion>, crate::pipeline::Project),
    mut plan: Plan,
    mut job: NewJob,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let authorized = authorize_plan(state, authed, &project, &mut plan, &mut job).await?;
    let job = store_audited(state, authed, None, job, None).await?;
    let answer = accepted(&job);
    state.runner.start(
        job,
        JobWork {
            version,
            project,
            plan,
            tables: authorized.tables,
        },
    );
    Ok(answer)
}
