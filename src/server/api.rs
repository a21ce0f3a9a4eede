//! The HTTP API: request and response types (also the OpenAPI document), handlers, and the
//! mapping of failures to `{error, detail, field}` JSON with the right status.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path as UrlPath, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{Access, Caller, SqlTable, authorize};
use crate::pipeline::extract::extract_pipeline;
use crate::pipeline::project::{check_country, check_relative};
use crate::pipeline::spec::SinkSpec;
use crate::pipeline::{Plan, PlanOptions};
use crate::server::AppState;
use crate::server::audit::{AuditEntry, AuditResult};
use crate::server::jobs::{Job, JobFilter, JobStatus, NewJob, Page};
use crate::server::metrics::Scrape;
use crate::server::runner::{CancelOutcome, JobWork};
use crate::server::versions::ProjectVersion;
use crate::server::visibility;
use crate::sync::apply::plan_event;
use crate::sync::{ApplyLimits, Event, NewEvent, Operation};

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
    paths(start_run, start_extract, list_jobs, get_job, cancel_job, submit_sync, get_event, live, ready, metrics),
    components(schemas(RunRequest, ExtractRequest, SyncRequest, Accepted, Job, JobStatus, Event, Operation, ErrorBody, Readiness)),
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

// ---------------------------------------------------------------------------------------------
// Errors

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A short code: `invalid_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `invalid_pipeline`, `not_ready`, `internal`.
    pub error: String,
    /// What is wrong, for people (file:line for pipeline problems).
    pub detail: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, error: &str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                detail: detail.into(),
                field: None,
            },
        }
    }

    fn field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    fn bad_request(field: &str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", detail).field(field)
    }

    fn not_found(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        match e {
            E::Spec { .. } | E::Render { .. } | E::Plan { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_pipeline",
                e.to_string(),
            ),
            E::Unsupported(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unsupported", m),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /openapi.json")
}

// ---------------------------------------------------------------------------------------------
// Request ids, bodies and callers

/// The id of a request: the caller's `x-request-id` when it is sane, else a new uuid.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// A JSON body whose errors name the field at fault.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request("body", e.body_text()))?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(Body).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = field_at_fault(&path, &inner.to_string());
            ApiError::bad_request(&field, format!("{field}: {inner}"))
        })
    }
}

/// The request field a JSON error is about: the path where it happened, plus the field serde
/// names for a missing or unknown field (which the path stops short of); `body` for JSON that
/// does not parse.
fn field_at_fault(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
        .filter(|name| !name.is_empty());
    // `.` is the whole body; `?` a place the parser never reached (truncated JSON).
    let path = (path != "." && path != "?").then_some(path);
    match (path, named) {
        (Some(path), Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            path.to_string()
        }
        (Some(path), Some(name)) => format!("{path}.{name}"),
        (Some(path), None) => path.to_string(),
        (None, Some(name)) => name.to_string(),
        (None, None) => "body".to_string(),
    }
}

/// The authenticated caller of a request.
pub struct Authed {
    pub caller: Caller,
    pub request_id: String,
}

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(bearer_token);
        let refusal = match token {
            None => "no bearer token",
            Some(token) => match state.permissions.authenticate(token) {
                Some(caller) => return Ok(Authed { caller, request_id }),
                None => "unknown token",
            },
        };
        // Rate-limited and cut short: a refused request costs its sender nothing.
        let request = format!("{} {}", parts.method, parts.uri.path());
        let log = Arc::clone(&state.refused_auth);
        tokio::task::spawn_blocking(move || log.record(request_id, refusal, &request))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "{refusal}: send `Authorization: Bearer <token>` with a token from the permissions file"
            ),
        ))
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case, RFC 7235).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl AppState {
    /// Appends an audit line; the response waits for it (a lost audit line fails the request).
    pub async fn audit(&self, entry: AuditEntry) -> Result<(), ApiError> {
        let audit = Arc::clone(&self.audit);
        tokio::task::spawn_blocking(move || audit.append(&entry))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)
    }

    /// Audits `entry` as refused with `detail`, then gives the error to answer with (or the
    /// audit log's own error when the line could not be written).
    pub async fn refuse(
        &self,
        entry: AuditEntry,
        status: StatusCode,
        code: &str,
        detail: String,
    ) -> ApiError {
        let line = AuditEntry {
            result: AuditResult::Refused,
            error: Some(detail.clone()),
            ..entry
        };
        match self.audit(line).await {
            Ok(()) => ApiError::new(status, code, detail),
            Err(e) => e,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Jobs

/// Run a pipeline of the project.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
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
pub struct ExtractRequest {
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

/// A job or event was accepted and runs in the background.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The job id (for `/jobs/{id}`) or event id (for `/events/{id}`).
    pub id: String,
    /// Its status now.
    pub status: String,
    /// Where to follow it.
    pub href: String,
}

fn params_of(
    params: &BTreeMap<String, serde_json::Value>,
) -> Result<Vec<(String, String)>, ApiError> {
    params
        .iter()
        .map(|(k, v)| {
            let field = format!("params.{k}");
            if k.is_empty() || !k.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(ApiError::bad_request(
                    &field,
                    format!("`{k}` is not a parameter name (letters, digits, `_`)"),
                ));
            }
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(ApiError::bad_request(
                        &field,
                        format!("{field}: expected a string, number or boolean"),
                    ));
                }
            };
            Ok((k.clone(), value))
        })
        .collect()
}

/// Over the API, only parameters a pipeline declares in its own `params:` may be overridden:
/// those of `config/` (output roots, databases) are the operator's, not the caller's.
fn check_declared(
    file: &Path,
    pipeline: &str,
    params: &[(String, String)],
) -> Result<(), ApiError> {
    if params.is_empty() {
        return Ok(());
    }
    let text = std::fs::read_to_string(file).map_err(ApiError::internal)?;
    let spec = crate::pipeline::spec::parse_pipeline(file, &text)?;
    for (name, _) in params {
        if !spec.params.contains_key(name) {
            let declared: Vec<&str> = spec.params.keys().map(String::as_str).collect();
            return Err(ApiError::bad_request(
                &format!("params.{name}"),
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

/// Start a run of a pipeline.
#[utoipa::path(post, path = "/runs", request_body = RunRequest, security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn start_run(
    State(state): AppStateRef,
    authed: Authed,
    Body(request): Body<RunRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let params = params_of(&request.params)?;
    let version = version(&state)?;
    let (name, entry) = version.pipeline(&request.pipeline).ok_or_else(|| {
        let known: Vec<&str> = version.pipelines.keys().map(String::as_str).collect();
        ApiError::not_found(format!(
            "pipeline `{}` does not exist (pipelines: {})",
            request.pipeline,
            known.join(", ")
        ))
        .field("pipeline")
    })?;
    check_declared(&entry.file, name, &params)?;
    if let Some(country) = &request.country {
        check_country(country).map_err(|e| ApiError::bad_request("country", e.to_string()))?;
    }
    if let Some(country) = &request.country
        && !entry.countries.is_empty()
        && !entry
            .countries
            .iter()
            .any(|c| c.eq_ignore_ascii_case(country))
    {
        return Err(ApiError::bad_request(
            "country",
            format!(
                "country: `{country}` is not one of pipeline `{name}`'s countries ({})",
                entry.countries.join(", ")
            ),
        ));
    }
    let options = PlanOptions {
        country: request.country.clone(),
        params,
    };
    let plan = Plan::from_file(&version.project, &entry.file, &options)?;
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
    let project = version.project.clone();
    submit(&state, &authed, (version, project), plan, job).await
}

/// Start the extraction of a country's queries (the original `/extract`).
#[utoipa::path(post, path = "/extract", request_body = ExtractRequest, security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
async fn start_extract(
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
            (_, Some(sink)) => wanted.iter().any(|q| q == sink.from()),
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
fn cap_deletes(plan: &mut Plan, caps: &BTreeMap<String, u64>) {
    for step in &mut plan.steps {
        if let Some(SinkSpec::Sqlserver(sink)) = &mut step.spec.sink
            && let Some(limit) = caps.get(&step.id)
        {
            sink.max_delete_rows = Some(sink.max_delete_rows.map_or(*limit, |l| l.min(*limit)));
        }
    }
}

async fn submit(
    state: &Arc<AppState>,
    authed: &Authed,
    (version, project): (Arc<ProjectVersion>, crate::pipeline::Project),
    mut plan: Plan,
    mut job: NewJob,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let policy = state.policy(&project)?;
    let authorized = match authorize(Some(&authed.caller), &plan, &policy) {
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
    let tables = authorized.tables.clone();
    job.tables = tables.clone();
    cap_deletes(&mut plan, &authorized.delete_caps);
    let jobs = Arc::clone(&state.jobs);
    let job = tokio::task::spawn_blocking(move || jobs.insert(&job))
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
            tables,
            result: AuditResult::Started,
            job_id: Some(job.id.clone()),
            pipeline: Some(job.pipeline.clone()),
            ..AuditEntry::default()
        })
        .await;
    if let Err(e) = audited {
        let jobs = Arc::clone(&state.jobs);
        let id = job.id.clone();
        let closed = tokio::task::spawn_blocking(move || {
            jobs.finish(&id, JobStatus::Failed, None, Some(UNAUDITED.to_string()))
        })
        .await;
        if !matches!(closed, Ok(Ok(true))) {
            tracing::error!(job = %job.id, "could not close a job whose audit line failed");
        }
        return Err(e);
    }
    let accepted = Accepted {
        id: job.id.clone(),
        status: job.status.to_string(),
        href: format!("/jobs/{}", job.id),
    };
    state.runner.start(
        job,
        JobWork {
            version,
            project,
            plan,
            tables: authorized.tables,
        },
    );
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Who may cancel a job: the caller who submitted it, or one with write access to every SQL
/// Server table it touches (to every table at all, for a job that touches none).
fn may_cancel(caller: &Caller, job: &Job, tables: &[String]) -> Result<(), String> {
    if job.submitted_by.as_deref() == Some(caller.name.as_str()) {
        return Ok(());
    }
    let whose = job
        .submitted_by
        .as_deref()
        .map_or("the scheduler".to_string(), |s| format!("`{s}`"));
    let refuse = |why: String| {
        Err(format!(
            "`{}` may not cancel job `{}` of {whose}: {why}; only its submitter or a caller with write access to every table it touches may",
            caller.name, job.id
        ))
    };
    if tables.is_empty() {
        if caller.may_write_every_table() {
            return Ok(());
        }
        return refuse("it touches no SQL Server table, so that takes write access to `*`".into());
    }
    for table in tables {
        if let Err(denied) = caller.check(table, Access::Write) {
            return refuse(denied.to_string());
        }
    }
    Ok(())
}

/// Error of a job or event not started because its audit line could not be written.
pub const UNAUDITED: &str =
    "not started: the audit log could not be written (see the server log); resubmit it";

/// Filters of `GET /jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
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
async fn list_jobs(
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
    tokio::task::spawn_blocking(move || jobs.get(&key))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .ok_or_else(|| no_job(id))
}

fn no_job(id: &str) -> ApiError {
    ApiError::not_found(format!("no job `{id}`"))
}

/// A job: status, per-step rows/bytes/duration and outputs, error. 404 for a job the caller may
/// not see (as for one that does not exist).
#[utoipa::path(get, path = "/jobs/{id}", params(("id" = String, Path, description = "Job id")), security(("bearer" = [])),
    responses((status = 200, body = Job), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_job(
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
async fn cancel_job(
    State(state): AppStateRef,
    authed: Authed,
    UrlPath(id): UrlPath<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let job = load_job(&state, &id).await?;
    let tables = state.runner.tables(&id);
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
            .refuse(entry, StatusCode::FORBIDDEN, "forbidden", detail)
            .await);
    }
    let outcome = match tables {
        Some(_) => state.runner.cancel(&id),
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

// ---------------------------------------------------------------------------------------------
// Sync events

/// A Databricks -> SQL Server sync, applied by the events poller.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
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
async fn submit_sync(
    State(state): AppStateRef,
    authed: Authed,
    Body(request): Body<SyncRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let event = NewEvent {
        operation: request.operation,
        source_table: request.source_table,
        target_table: request.target_table,
        primary_keys: request.primary_keys,
        filter: request.filter,
        created_by: Some(authed.caller.name.clone()),
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
    // Audited before it is stored: no poller can apply an event the log does not show.
    let started = AuditEntry {
        result: AuditResult::Started,
        event_id: Some(event_id.clone()),
        ..entry
    };
    state.audit(started.clone()).await?;
    let event = match state.events.submit_as(&event_id, event).await {
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
async fn get_event(
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

// ---------------------------------------------------------------------------------------------
// Health, metrics, OpenAPI

/// The process is up.
#[utoipa::path(get, path = "/health/live", responses((status = 200, description = "Alive")))]
async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// What `/health/ready` checked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
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
async fn ready(State(state): AppStateRef) -> (StatusCode, Json<Readiness>) {
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
async fn metrics(State(state): AppStateRef) -> Result<Response, ApiError> {
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

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of<T: DeserializeOwned>(json: &str) -> String {
        let de = &mut serde_json::Deserializer::from_str(json);
        match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(_) => panic!("`{json}` parsed"),
            Err(e) => field_at_fault(&e.path().to_string(), &e.into_inner().to_string()),
        }
    }

    #[test]
    fn a_bad_body_names_the_field_at_fault() {
        assert_eq!(field_of::<RunRequest>("{}"), "pipeline");
        assert_eq!(field_of::<RunRequest>(r#"{"pipline": "demo"}"#), "pipline");
        assert_eq!(
            field_of::<RunRequest>(r#"{"pipeline": "demo", "country": 7}"#),
            "country"
        );
        assert_eq!(field_of::<RunRequest>("{"), "body");
        assert_eq!(field_of::<RunRequest>("[]"), "body");
        assert_eq!(
            field_of::<ExtractRequest>(r#"{"country": "x"}"#),
            "destination"
        );
        assert_eq!(
            field_of::<SyncRequest>(r#"{"operation": "MERGE"}"#),
            "operation"
        );
    }

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
        let e = may_cancel(&alice, &job(Some("bob")), &results).unwrap_err();
        assert!(
            e.contains("`alice` may not cancel job `j1` of `bob`") && e.contains("dbo.Results"),
            "{e}"
        );
        assert!(may_cancel(&bob, &job(Some("alice")), &results).is_ok());
        let e = may_cancel(&bob, &job(Some("alice")), &both).unwrap_err();
        assert!(e.contains("dbo.Sales") && e.contains("write"), "{e}");
        assert!(may_cancel(&ops, &job(Some("alice")), &both).is_ok());
        // A job touching no table, or a scheduled one: only a writer of every table.
        assert!(may_cancel(&bob, &job(Some("alice")), &[]).is_err());
        assert!(may_cancel(&ops, &job(Some("alice")), &[]).is_ok());
        let e = may_cancel(&alice, &job(None), &[]).unwrap_err();
        assert!(e.contains("the scheduler"), "{e}");
        assert!(may_cancel(&ops, &job(None), &results).is_ok());
    }

    #[test]
    fn the_bearer_scheme_matches_in_any_case() {
        for header in ["Bearer t0k", "bearer t0k", "BEARER  t0k ", "bEaReR t0k"] {
            assert_eq!(bearer_token(header), Some("t0k"), "{header}");
        }
        for header in ["Basic dXNlcg==", "Bearer", "Bearer  ", "Bearert0k", "t0k"] {
            assert_eq!(bearer_token(header), None, "{header}");
        }
    }

    #[test]
    fn fields_inside_objects_keep_their_path() {
        assert_eq!(field_at_fault("a", "missing field `b`"), "a.b");
        assert_eq!(
            field_at_fault("a.b", "unknown field `b`, expected `c`"),
            "a.b"
        );
        assert_eq!(field_at_fault("a", "invalid type: integer"), "a");
        assert_eq!(field_at_fault(".", "EOF while parsing"), "body");
        assert_eq!(field_at_fault("?", "EOF while parsing"), "body");
    }
}
