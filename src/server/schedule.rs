//! Runs pipelines with a `schedule:` while serving: one job per country listed in `countries:`
//! at each cron time (UTC), each skipped while the previous scheduled run of the same pipeline
//! for the same country is still going.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::pipeline::{Plan, PlanOptions};
use crate::server::AppState;
use crate::server::audit::{AuditEntry, AuditResult};
use crate::server::jobs::{JobStatus, NewJob};
use crate::server::runner::JobWork;
use crate::server::versions::{PipelineEntry, ProjectVersion};

/// Longest sleep between looks at the schedules (edits are picked up at least this often).
const TICK: Duration = Duration::from_secs(1);

/// Fires scheduled runs until `stop` fires.
pub async fn run_schedules(state: Arc<AppState>, stop: CancellationToken) {
    // Next fire time of each (pipeline, expression); a changed expression starts afresh.
    let mut next: BTreeMap<(String, String), DateTime<Utc>> = BTreeMap::new();
    loop {
        let now = Utc::now();
        if let Some(version) = state.versions.current() {
            let mut upcoming = BTreeMap::new();
            for (name, entry) in &version.pipelines {
                let Some(schedule) = &entry.schedule else {
                    continue;
                };
                let key = (name.clone(), schedule.expr().to_string());
                let due = next.get(&key).copied().or_else(|| schedule.next_after(now));
                let Some(due) = due else { continue };
                if due <= now {
                    start_scheduled(&state, &version, name, entry).await;
                    if let Some(n) = schedule.next_after(now) {
                        upcoming.insert(key, n);
                    }
                } else {
                    upcoming.insert(key, due);
                }
            }
            next = upcoming;
        }
        let wait = next
            .values()
            .min()
            .map(|due| (*due - Utc::now()).to_std().unwrap_or_default())
            .unwrap_or(TICK)
            .min(TICK);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn start_scheduled(
    state: &Arc<AppState>,
    version: &Arc<ProjectVersion>,
    name: &str,
    entry: &PipelineEntry,
) {
    let countries: Vec<Option<String>> = if entry.countries.is_empty() {
        vec![None]
    } else {
        entry.countries.iter().cloned().map(Some).collect()
    };
    for country in countries {
        if let Err(e) = start_one(state, version, name, entry, country.clone()).await {
            tracing::error!(pipeline = %name, country = ?country, error = %e, "scheduled run not started");
        }
    }
}

async fn start_one(
    state: &Arc<AppState>,
    version: &Arc<ProjectVersion>,
    name: &str,
    entry: &PipelineEntry,
    country: Option<String>,
) -> crate::Result<()> {
    let options = PlanOptions {
        country: country.clone(),
        params: Vec::new(),
    };
    let plan = Plan::from_file(&version.project, &entry.file, &options)?;
    let jobs = Arc::clone(&state.jobs);
    let (pipeline, planned_country) = (name.to_string(), plan.country.clone());
    let busy = tokio::task::spawn_blocking(move || {
        jobs.scheduled_active(&pipeline, planned_country.as_deref())
    })
    .await
    .map_err(|e| crate::Error::internal("a background task of the scheduler failed", e))??;
    if busy {
        tracing::warn!(pipeline = %name, country = ?plan.country, "previous scheduled run for this country still going; skipping this one");
        return Ok(());
    }
    // Scheduled runs are the operator's: their tables need no grant, but what they write must
    // be inside the output roots, like any job's.
    let policy = state.policy(&version.project)?;
    let tables = match crate::auth::authorize(None, &plan, &policy) {
        Ok(authorized) => authorized.tables,
        Err(refusal) => {
            let line = AuditEntry {
                request_id: format!("schedule-{name}"),
                caller: Some("scheduler".into()),
                action: "schedule".into(),
                result: AuditResult::Refused,
                pipeline: Some(name.to_string()),
                error: Some(refusal.to_string()),
                ..AuditEntry::default()
            };
            if let Err(e) = state.audit.append(&line) {
                tracing::error!(error = %e, "audit log write failed");
            }
            return Err(crate::Error::Invalid(format!(
                "scheduled run refused: {refusal}"
            )));
        }
    };
    let new = NewJob {
        kind: "schedule".into(),
        pipeline: name.to_string(),
        pipeline_file: Some(entry.display.display().to_string()),
        country: plan.country.clone(),
        params: serde_json::json!({}),
        submitted_by: None,
        request: serde_json::json!({"pipeline": name, "country": country}),
        tables: tables.clone(),
    };
    let jobs = Arc::clone(&state.jobs);
    let job = tokio::task::spawn_blocking(move || jobs.insert(&new))
        .await
        .map_err(|e| crate::Error::internal("a background task of the scheduler failed", e))??;
    let entry_audit = AuditEntry {
        request_id: format!("schedule-{}", job.id),
        caller: Some("scheduler".into()),
        action: "schedule".into(),
        result: AuditResult::Started,
        job_id: Some(job.id.clone()),
        pipeline: Some(name.to_string()),
        ..AuditEntry::default()
    };
    let audit = Arc::clone(&state.audit);
    let audited = tokio::task::spawn_blocking(move || audit.append(&entry_audit))
        .await
        .map_err(|e| crate::Error::internal("a background task of the scheduler failed", e))
        .and_then(|r| r);
    if let Err(e) = audited {
        // Not run without its audit line; closed, so it does not hold off the next schedule.
        let jobs = Arc::clone(&state.jobs);
        let id = job.id.clone();
        let _ = tokio::task::spawn_blocking(move || {
            jobs.finish(
                &id,
                JobStatus::Failed,
                None,
                Some(crate::server::api::UNAUDITED.to_string()),
            )
        })
        .await;
        return Err(e);
    }
    tracing::info!(pipeline = %name, job = %job.id, "scheduled run started");
    state.runner.start(
        job,
        JobWork {
            version: Arc::clone(version),
            project: version.project.clone(),
            tables,
            plan,
        },
    );
    Ok(())
}
