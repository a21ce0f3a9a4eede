//! RUN items of the events store, the one queue of pipeline runs: RUN events (a Databricks job's
//! row, `POST /events`), runs accepted by `POST /runs`, and schedule slots. The server whose
//! poller claims an item checks it against its current project files (the pipeline exists,
//! lists the country, declares the params), plans it, authorises the plan as the item's
//! `created_by` (a schedule's item: as the scheduler), and runs it as a job of its runner; the
//! item's outcome is the job's.
//!
//! Once per item: the job's id is derived from the item id (and an attempt number), so a poller
//! that takes the item over finds the job and waits for it instead of starting another. Only a
//! job stopped by a shutdown or crash (`interrupted`) is started again, as the next attempt.
//! `POST /runs` stores the first attempt's job (queued) when it accepts the request, so the
//! caller can follow and cancel it at once; the claimer adopts that job and runs it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::auth::Authorized;
use crate::error::BoxError;
use crate::pipeline::Plan;
use crate::server::AppState;
use crate::server::api::{PlanRunError, cap_deletes, plan_run};
use crate::server::audit::{AuditEntry, AuditResult};
use crate::server::jobs::{Job, JobStatus, NewJob, derived_id};
use crate::server::runner::JobWork;
use crate::server::versions::ProjectVersion;
use crate::sync::event::run_params;
use crate::sync::{Event, Outcome};

/// How often a RUN event's job is looked at while it runs on another server sharing the job
/// store (a job of this server's runner wakes its waiter when it ends).
const JOB_POLL: Duration = Duration::from_millis(500);

/// Attempts of one event looked for before giving up (each was interrupted by a shutdown).
const MAX_ATTEMPTS: u32 = 5;

/// Authorises a plan as an event's `created_by` (auditing a refusal), or as the scheduler for
/// the item of a schedule slot, whose time it returns too.
pub(super) type AuthorizeAs<'a> =
    &'a (dyn Fn(&Event, &Plan) -> Result<(Authorized, Option<DateTime<Utc>>), BoxError> + Sync);

/// Runs a RUN event's pipeline, or waits for the job an earlier claim of it started. `None`
/// when `cancel` fired first (the event stays running and is taken over after its lease).
pub(super) async fn run_event(
    state: &Arc<AppState>,
    event: &Event,
    authorize: AuthorizeAs<'_>,
    cancel: &CancellationToken,
) -> Option<Outcome> {
    let mut attempt = 0;
    loop {
        let id = derived_id(&format!("event/{}/{attempt}", event.event_id));
        let existing = match blocking(state, {
            let id = id.clone();
            move |jobs| jobs.get(&id)
        })
        .await
        {
            Ok(job) => job,
            Err(e) => return Some(Outcome::failed(format!("the job store failed: {e}"))),
        };
        match existing {
            // Not started by anyone: accepted by `POST /runs` (stored queued by the server that
            // took the request), or interrupted before it started. Only the claimer of the item
            // starts it, here.
            Some(job) if never_started(state, &job) => {
                if let Err(error) = start(state, event, authorize, &id, Some(job)).await {
                    return Some(failed_with_job(error, &id));
                }
                return wait_for(state, &id, cancel).await;
            }
            Some(job) if job.status == JobStatus::Interrupted => {
                attempt += 1;
                if attempt == MAX_ATTEMPTS {
                    return Some(Outcome::Failed {
                        error: format!(
                            "the run was interrupted {MAX_ATTEMPTS} times by servers stopping (last job {}); submit the event again",
                            job.id
                        ),
                        refusal: None,
                        job_id: Some(job.id),
                    });
                }
            }
            Some(_) => return wait_for(state, &id, cancel).await,
            None => {
                if let Err(error) = start(state, event, authorize, &id, None).await {
                    return Some(Outcome::failed(error.to_string()));
                }
                return wait_for(state, &id, cancel).await;
            }
        }
    }
}

/// Why a RUN event's run was not started (the event fails with it).
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("the server's project files are invalid (see GET /health/ready); nothing was run")]
    NoValidFiles,
    #[error(transparent)]
    Params(crate::sync::SyncError),
    #[error(transparent)]
    Planning(PlanRunError),
    #[error("{0}")]
    Refused(BoxError),
    #[error("the job store failed: {0}")]
    JobStore(crate::Error),
    #[error("the audit log cannot be written, so the run was not started: {0}")]
    Unaudited(crate::Error),
}

/// Whether `job` was never started by any server (and is not waiting in this server's runner).
fn never_started(state: &AppState, job: &Job) -> bool {
    job.started_at.is_none()
        && match job.status {
            JobStatus::Queued => state.runner.finished(&job.id).is_none(),
            JobStatus::Interrupted => true,
            _ => false,
        }
}

/// The outcome of an item whose run, stored as job `id` by `POST /runs`, could not start: the
/// job is closed as failed with the same message.
fn failed_with_job(error: StartError, id: &str) -> Outcome {
    Outcome::Failed {
        error: error.to_string(),
        refusal: None,
        job_id: Some(id.to_string()),
    }
}

/// The id a queue item's first attempt runs as: `POST /runs` answers with it before any server
/// claims the item.
pub(crate) fn first_job_id(event_id: &str) -> String {
    derived_id(&format!("event/{event_id}/0"))
}

/// Checks, plans, authorises and starts the event's run as job `id` (nothing is started when
/// it fails). `accepted` is the job `POST /runs` stored for it (queued; it was audited then),
/// which this server adopts and runs, or closes as failed when the run cannot start.
async fn start(
    state: &Arc<AppState>,
    event: &Event,
    authorize: AuthorizeAs<'_>,
    id: &str,
    accepted: Option<Job>,
) -> Result<(), StartError> {
    let checked = match check_and_plan(state, event, authorize) {
        Ok(checked) => checked,
        Err(error) => {
            if accepted.is_some() {
                close_failed(state, id, error.to_string()).await;
            }
            return Err(error);
        }
    };
    let job = if accepted.is_some() {
        // `None`: cancelled while it waited; the caller reports that.
        blocking(state, {
            let id = id.to_string();
            move |jobs| jobs.adopt(&id)
        })
        .await
        .map_err(StartError::JobStore)?
    } else {
        let Some(job) = store_audited(state, event, id, &checked).await? else {
            // Another server stored this attempt first; the caller waits for it.
            return Ok(());
        };
        Some(job)
    };
    let Some(job) = job else { return Ok(()) };
    tracing::info!(event_id = %event.event_id, job = %job.id, pipeline = %job.pipeline, "run started");
    state.runner.start(
        job,
        JobWork {
            project: checked.version.project.clone(),
            version: checked.version,
            plan: checked.plan,
            tables: checked.authorized.tables,
        },
    );
    Ok(())
}

/// What starting an item's run needs, once checked.
struct Checked {
    version: Arc<ProjectVersion>,
    /// Deletes capped by the creator's limits.
    plan: Plan,
    authorized: Authorized,
    /// The slot of the schedule the item stands for (run as the scheduler).
    slot: Option<DateTime<Utc>>,
    /// The job to store when no server stored it yet.
    job: NewJob,
}

/// Checks the item against the current project files, plans it and authorises the plan as its
/// creator (or the scheduler, for a schedule's item).
fn check_and_plan(
    state: &Arc<AppState>,
    event: &Event,
    authorize: AuthorizeAs<'_>,
) -> Result<Checked, StartError> {
    let version = state.versions.current().ok_or(StartError::NoValidFiles)?;
    let pipeline = event.pipeline.as_deref().unwrap_or_default();
    let params = match &event.params {
        Some(text) => run_params(text).map_err(StartError::Params)?,
        None => Vec::new(),
    };
    let (name, entry, mut plan) =
        plan_run(&version, pipeline, event.country.as_deref(), params.clone())
            .map_err(StartError::Planning)?;
    let (authorized, slot) = authorize(event, &plan).map_err(StartError::Refused)?;
    cap_deletes(&mut plan, &authorized.delete_caps);
    let params_json: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    let mut request = serde_json::json!({
        "event_id": event.event_id, "pipeline": name, "country": event.country,
        "params": params_json,
    });
    if let Some(slot) = slot {
        request["slot"] = slot
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into();
    }
    let job = NewJob {
        // A schedule's item (authorised as the scheduler) is a scheduled job.
        kind: if slot.is_some() { "schedule" } else { "event" }.into(),
        pipeline: name.to_string(),
        pipeline_file: Some(entry.display.display().to_string()),
        country: plan.country.clone(),
        params: serde_json::Value::Object(params_json),
        submitted_by: event.created_by.clone(),
        request,
        tables: authorized.tables.clone(),
    };
    Ok(Checked {
        version,
        plan,
        authorized,
        slot,
        job,
    })
}

/// Stores the run of an item as job `id` and audits it; `None` when another server stored it
/// first. A job whose audit line cannot be written is closed as failed.
async fn store_audited(
    state: &Arc<AppState>,
    event: &Event,
    id: &str,
    checked: &Checked,
) -> Result<Option<Job>, StartError> {
    let job = blocking(state, {
        let (id, new) = (id.to_string(), checked.job.clone());
        move |jobs| jobs.insert_as(&id, &new)
    })
    .await
    .map_err(StartError::JobStore)?;
    let Some(job) = job else { return Ok(None) };
    let scheduled = checked.slot.is_some();
    let audited = state.audit.append(&AuditEntry {
        request_id: format!("event-{}", event.event_id),
        caller: if scheduled {
            Some("scheduler".into())
        } else {
            event.created_by.clone()
        },
        action: if scheduled { "schedule" } else { "event" }.into(),
        tables: checked.authorized.tables.clone(),
        result: AuditResult::Started,
        job_id: Some(job.id.clone()),
        event_id: Some(event.event_id.clone()),
        pipeline: Some(job.pipeline.clone()),
        ..AuditEntry::default()
    });
    if let Err(e) = audited {
        let error = StartError::Unaudited(e);
        close_failed(state, &job.id, error.to_string()).await;
        return Err(error);
    }
    Ok(Some(job))
}

/// Closes job `id`, which cannot start, as failed with `error` (logged when even that fails).
pub(crate) async fn close_failed(state: &Arc<AppState>, id: &str, error: String) {
    let closed = {
        let id = id.to_string();
        blocking(state, move |jobs| {
            jobs.finish(&id, JobStatus::Failed, None, Some(error))
        })
        .await
    };
    if !matches!(closed, Ok(true)) {
        tracing::error!(job = %id, "could not close a job that cannot start");
    }
}

/// Waits until job `id` ends and returns the event's outcome; `None` when `cancel` fires first
/// or the job was interrupted by this server's shutdown.
async fn wait_for(state: &Arc<AppState>, id: &str, cancel: &CancellationToken) -> Option<Outcome> {
    loop {
        let job = {
            let id = id.to_string();
            blocking(state, move |jobs| jobs.get(&id)).await
        };
        match job {
            Err(e) => return Some(Outcome::failed(format!("the job store failed: {e}"))),
            Ok(None) => return Some(Outcome::failed(format!("job {id} disappeared"))),
            Ok(Some(job)) => {
                if let Some(outcome) = outcome_of(&job) {
                    return outcome;
                }
            }
        }
        let ended = state.runner.finished(id);
        let next_look = async {
            match ended {
                Some(done) => done.cancelled_owned().await,
                None => tokio::time::sleep(JOB_POLL).await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return None,
            () = next_look => {}
        }
    }
}

/// The event's outcome once `job` has ended: `Some(None)` when it was interrupted (the event
/// is taken over and the run started again), `None` while it is queued or running.
fn outcome_of(job: &Job) -> Option<Option<Outcome>> {
    let job_id = Some(job.id.clone());
    let failed = |error: String| Outcome::Failed {
        error,
        refusal: None,
        job_id: job_id.clone(),
    };
    Some(match job.status {
        JobStatus::Queued | JobStatus::Running => return None,
        JobStatus::Interrupted => None,
        JobStatus::Succeeded => Some(Outcome::Completed {
            rows_affected: job.summary.as_ref().map_or(0, rows_written),
            job_id: job_id.clone(),
        }),
        JobStatus::Failed => Some(failed(
            job.error
                .clone()
                .unwrap_or_else(|| format!("job {} failed", job.id)),
        )),
        JobStatus::Cancelled => Some(failed(format!(
            "job {} was cancelled before it committed",
            job.id
        ))),
    })
}

/// Rows the sinks of a run wrote, from its stored summary.
fn rows_written(summary: &serde_json::Value) -> u64 {
    summary["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["kind"] == "sink")
        .filter_map(|s| s["rows"].as_u64())
        .sum()
}

/// Runs a job-store call off the async threads.
async fn blocking<T: Send + 'static>(
    state: &Arc<AppState>,
    call: impl FnOnce(&crate::server::jobs::JobStore) -> crate::Result<T> + Send + 'static,
) -> crate::Result<T> {
    let jobs = Arc::clone(&state.jobs);
    tokio::task::spawn_blocking(move || call(&jobs))
        .await
        .map_err(|e| crate::Error::internal("a job-store task failed", e))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_those_the_sinks_wrote() {
        let summary = serde_json::json!({"steps": [
            {"id": "s", "kind": "source", "rows": 10},
            {"id": "a", "kind": "sink", "rows": 10},
            {"id": "b", "kind": "sink", "rows": 3},
        ]});
        assert_eq!(rows_written(&summary), 13);
        assert_eq!(rows_written(&serde_json::json!({})), 0);
    }
}
