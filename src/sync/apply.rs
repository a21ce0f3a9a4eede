//! Applies one sync event to SQL Server as a pipeline run built in code: the source table, an
//! optional filter transform, then a `sqlserver` sink whose idempotency key is the event id.
//!
//! Nothing from the event reaches the template renderer: the spec is planned as data
//! ([`Plan::from_data_spec`]), table and column names are validated identifiers, the event id is
//! a UUID, and the filter is parsed as one SQL expression and put into the planned transform
//! after planning, so `{{ ... }}` in a filter stays literal text.
//!
//! Bounded work: the filter may use only bounded expressions and functions (see
//! [`crate::sync::filter`]), and the run's DataFusion operators share a memory pool of
//! [`EVENT_MEMORY_LIMIT`] bytes, so an event that still needs more fails on its own ("needed more
//! than … of working memory") with nothing written, instead of exhausting the server.
//!
//! Crash safety: the sink writes and records the event id in `dbo.bridge_applied_keys` in one
//! transaction. An event interrupted after its claim is either fully applied with its key
//! committed, or not applied at all; applying it again (after a reclaim) then either writes it
//! once or changes nothing and reports the first application's rows.

use std::path::Path;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, is_resources_exhausted};
use crate::pipeline::plan::{Plan, PlanOptions};
use crate::pipeline::project::Project;
use crate::pipeline::render::RenderedSql;
use crate::pipeline::run::{RunOptions, run};
use crate::pipeline::spec::{
    DatabricksSourceSpec, DeltaSourceSpec, PipelineSpec, SinkSpec, SourceSpec, SqlServerSinkSpec,
    SqlServerWriteMode,
};
use crate::sync::event::{Event, Operation, parse_event_id, parse_filter, source_table_parts};
use crate::sync::{Result, SyncError};

/// How long a cancelled run may take to stop by itself before it is dropped.
const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Step ids of the pipeline an event becomes (they appear in error messages).
const SOURCE_STEP: &str = "source";
const FILTER_STEP: &str = "filtered";
const WRITE_STEP: &str = "write";

/// Bytes of memory DataFusion's tracked operators (sorts, joins, aggregations, repartitions) may
/// use while one event is applied (256 MiB).
pub const EVENT_MEMORY_LIMIT: usize = 256 * 1024 * 1024;

/// What the server allows one event to do (decided from its permissions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyLimits {
    /// DELETE events: refuse, and change nothing, when more rows than this would be deleted.
    pub max_delete_rows: Option<u64>,
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedEvent {
    /// Rows inserted, updated or deleted.
    pub rows_affected: u64,
    /// The event was applied before (its id is in `dbo.bridge_applied_keys`): nothing was
    /// written now, and `rows_affected` is what the first application recorded.
    pub already_applied: bool,
}

/// Where the tables named by `source_table` are read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SourceCatalog {
    /// Delta tables under the project's `lakehouse_root` parameter: `catalog.schema.table` is
    /// `{lakehouse_root}/catalog/schema/table` (names with fewer parts, fewer folders).
    #[default]
    LocalDelta,
    /// Unity Catalog tables read through a Databricks SQL warehouse (`databricks` source).
    Databricks,
}

impl SourceCatalog {
    /// The source step reading `table`; a name that does not resolve is a `source_table` error.
    /// Whether the table exists is not looked at ([`SourceCatalog::check_exists`]).
    pub fn source(self, project: &Project, table: &str) -> Result<SourceSpec> {
        let parts = source_table_parts(table)?;
        match self {
            SourceCatalog::Databricks => Ok(SourceSpec::Databricks(DatabricksSourceSpec {
                query: None,
                sql: None,
                table: Some(parts.join(".")),
                warehouse_id: None,
                disposition: Default::default(),
            })),
            SourceCatalog::LocalDelta => Ok(SourceSpec::Delta(DeltaSourceSpec {
                path: local_path(project, table, &parts)?,
                version: None,
            })),
        }
    }

    /// Fails with a `source_table` error when a local Delta table does not exist (remote
    /// tables are found missing when they are read).
    pub fn check_exists(self, project: &Project, table: &str) -> Result<()> {
        if self != SourceCatalog::LocalDelta {
            return Ok(());
        }
        let path = local_path(project, table, &source_table_parts(table)?)?;
        if !path.contains("://") {
            let local = project.resolve(&path);
            if !local.join("_delta_log").is_dir() {
                return Err(SyncError::invalid(
                    "source_table",
                    format!(
                        "`{table}` not found: no Delta table at {}",
                        project.display_path(&local).display()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `{lakehouse_root}/catalog/schema/table` of a local Delta table.
fn local_path(project: &Project, table: &str, parts: &[&str]) -> Result<String> {
    let params = project.config_params(None)?;
    let root = params
        .get("lakehouse_root")
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            SyncError::invalid(
                "source_table",
                format!(
                    "cannot resolve `{table}`: the `lakehouse_root` parameter is not set in config/defaults.yaml"
                ),
            )
        })?;
    Ok(format!(
        "{}/{}",
        root.trim_end_matches('/'),
        parts.join("/")
    ))
}

/// The sink mode of a sync operation; `None` for RUN, which writes no table itself.
pub fn write_mode(operation: Operation) -> Option<SqlServerWriteMode> {
    match operation {
        Operation::Insert => Some(SqlServerWriteMode::Insert),
        Operation::Upsert => Some(SqlServerWriteMode::Upsert),
        Operation::Update => Some(SqlServerWriteMode::Update),
        Operation::Delete => Some(SqlServerWriteMode::Delete),
        Operation::Run => None,
    }
}

/// Applies an event to SQL Server: reads `source_table` (filtered), writes `target_table` with
/// the operation's mode, in one transaction keyed by the event id. `cancel` stops the run and
/// returns [`Error::Cancelled`] with nothing committed; a run already committing when it fires
/// finishes and reports normally (if it is dropped mid-commit, the key makes a later re-apply a
/// no-op).
pub async fn apply_event(
    project: &Project,
    event: &Event,
    limits: &ApplyLimits,
    catalog: SourceCatalog,
    cancel: &CancellationToken,
) -> Result<AppliedEvent> {
    let mut plan = plan_event(project, event, limits, catalog)?;
    apply_planned(project, event, &mut plan, limits, catalog, cancel).await
}

/// [`apply_event`] of the event's `plan` (from [`plan_event`], e.g. the one its authorisation
/// looked at): `limits` cap its deletes before it runs.
pub async fn apply_planned(
    project: &Project,
    event: &Event,
    plan: &mut Plan,
    limits: &ApplyLimits,
    catalog: SourceCatalog,
    cancel: &CancellationToken,
) -> Result<AppliedEvent> {
    if event.operation == Operation::Delete
        && let Some(limit) = limits.max_delete_rows
    {
        for step in &mut plan.steps {
            if let Some(sink) = step.spec.sink.as_mut() {
                sink.config_mut().cap_deletes(limit);
            }
        }
    }
    let plan = &*plan;
    catalog.check_exists(project, &event.source_table)?;
    let options = RunOptions {
        cancel: Some(cancel.clone()),
        memory_limit: Some(EVENT_MEMORY_LIMIT),
        ..RunOptions::default()
    };
    let running = run(project, plan, &options);
    tokio::pin!(running);
    // The run stops by itself when cancelled before its commit; one stuck (waiting on a lock)
    // is dropped after a grace period, which closes its connection and rolls it back.
    let stuck = async {
        cancel.cancelled().await;
        tokio::time::sleep(CANCEL_GRACE).await;
    };
    let summary = tokio::select! {
        result = &mut running => match result {
            Ok(summary) => summary,
            Err(_) if cancel.is_cancelled() => return Err(SyncError::Apply(Error::Cancelled)),
            Err(e) => return Err(filter_error(e)),
        },
        _ = stuck => return Err(SyncError::Apply(Error::Cancelled)),
    };
    let step = summary
        .steps
        .iter()
        .find(|s| s.id == WRITE_STEP)
        .ok_or_else(|| SyncError::Apply(Error::step(WRITE_STEP, "the run reported no write")))?;
    Ok(AppliedEvent {
        rows_affected: step.rows,
        already_applied: step.already_applied,
    })
}

/// The plan of an event: source -> optional filter -> `sqlserver` sink. Fails on anything
/// invalid in the event, naming the field.
pub fn plan_event(
    project: &Project,
    event: &Event,
    limits: &ApplyLimits,
    catalog: SourceCatalog,
) -> Result<Plan> {
    event.request().validate()?;
    let mode = write_mode(event.operation).ok_or_else(|| {
        SyncError::invalid("operation", "RUN runs a pipeline; it is not a table sync")
    })?;
    let key = parse_event_id(&event.event_id)?;
    let filter = event.filter.as_deref().map(parse_filter).transpose()?;
    let source = catalog.source(project, &event.source_table)?;
    let sink = SinkSpec::Sqlserver(SqlServerSinkSpec {
        from: if filter.is_some() {
            FILTER_STEP
        } else {
            SOURCE_STEP
        }
        .to_string(),
        table: event.target_table.clone(),
        mode,
        primary_keys: event.primary_keys.clone(),
        max_delete_rows: match event.operation {
            Operation::Delete => limits.max_delete_rows,
            _ => None,
        },
        idempotency_key: Some(key.clone()),
        connection: None,
    });
    // Built as a document so fields other modules add to specs keep their defaults. The filter
    // step's SQL is a neutral placeholder here; the filter goes in after planning.
    let mut steps = vec![serde_json::json!({ "id": SOURCE_STEP, "source": source })];
    if filter.is_some() {
        steps.push(serde_json::json!({
            "id": FILTER_STEP,
            "transform": { "sql": format!("SELECT * FROM {SOURCE_STEP}") },
        }));
    }
    steps.push(serde_json::json!({ "id": WRITE_STEP, "sink": sink }));
    let spec: PipelineSpec = serde_json::from_value(serde_json::json!({
        "name": format!("sync-{key}"),
        "description": "a sync event applied to SQL Server",
        "steps": steps,
    }))
    .map_err(|e| SyncError::Apply(Error::step(WRITE_STEP, e)))?;
    let file = format!("event {key}");
    let mut plan = Plan::from_spec(project, Path::new(&file), "", spec, &PlanOptions::default())?;
    if let Some(filter) = filter {
        let sql = format!("SELECT * FROM {SOURCE_STEP} WHERE ({filter})");
        let step = plan
            .steps
            .iter_mut()
            .find(|s| s.id == FILTER_STEP)
            .expect("the plan has the filter step");
        if let Some(transform) = step.spec.transform.as_mut() {
            transform.sql = Some(sql.clone());
        }
        step.sql = Some(RenderedSql {
            text: sql,
            params: Vec::new(),
        });
    }
    Ok(plan)
}

/// SQL errors of the filter step become `filter:` errors; running out of the memory pool is
/// said in words (the cause is kept).
fn filter_error(e: Error) -> SyncError {
    match e {
        Error::Step { step, source, .. } if is_resources_exhausted(source.as_ref()) => {
            SyncError::Apply(Error::step_from(
                step,
                OutOfMemory {
                    limit_mib: EVENT_MEMORY_LIMIT / (1024 * 1024),
                    source,
                },
            ))
        }
        Error::StepSql(e) if e.step == FILTER_STEP => SyncError::invalid("filter", e.detail),
        other => SyncError::Apply(other),
    }
}

/// An event that needed more memory than [`EVENT_MEMORY_LIMIT`].
#[derive(Debug, thiserror::Error)]
#[error(
    "the event needed more than {limit_mib} MiB of working memory, so nothing was written; \
     narrow its filter or split it into smaller events ({source})"
)]
struct OutOfMemory {
    limit_mib: usize,
    #[source]
    source: crate::error::BoxError,
}
