//! Runs pipelines with a `schedule:` while serving: one job per country listed in `countries:`
//! at each cron time (UTC), each skipped while the previous scheduled run of the same pipeline
//! for the same country is still going. Servers sharing a job store run each slot once: its job
//! id is derived from the pipeline, the country and the scheduled time.

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
                    start_scheduled(&state, &version, name, entry, due).await;
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
    slot: DateTime<Utc>,
) {
    let countries: Vec<Option<String>> = if entry.countries.is_empty() {
        vec![None]
    } else {
        entry.countries.iter().cloned().map(Some).collect()
    };
    for country in countries {
        if let Err(e) = start_one(state, version, name, entry, country.clone(), slot).await {
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
    slot: DateTime<Utc>,
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
        request: serde_json::json!({
            "pipeline": name, "country": country,
            "slot": slot.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }),
        tables: tables.clone(),
    };
    let jobs = Arc::clone(&state.jobs);
    // One job per (pipeline, country, scheduled time), whichever server stores it first.
    let id = slot_job_id(name, plan.country.as_deref(), slot);
    let job = tokio::task::spawn_blocking(move || jobs.insert_as(&id, &new))
        .await
        .map_err(|e| crate::Error::internal("a background task of the scheduler failed", e))??;
    let Some(job) = job else {
        tracing::info!(pipeline = %name, country = ?plan.country, %slot, "another server started this scheduled run");
        return Ok(());
    };
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

/// The id of the job of a schedule slot: the same on every server sharing the job store, so the
/// slot runs once.
fn slot_job_id(pipeline: &str, country: Option<&str>, slot: DateTime<Utc>) -> String {
    let key = format!(
        "schedule/{pipeline}/{}/{}",
        country.unwrap_or_default(),
        slot.timestamp_millis()
    );
    crate::server::jobs::derived_id(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_has_one_job_id_on_every_server() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let later = DateTime::from_timestamp(1_700_000_060, 0).unwrap();
        assert_eq!(
            slot_job_id("demo", Some("colombia"), at),
            slot_job_id("demo", Some("colombia"), at)
        );
        assert!(uuid::Uuid::parse_str(&slot_job_id("demo", None, at)).is_ok());
        for other in [
            slot_job_id("demo", Some("mexico"), at),
            slot_job_id("demo", None, at),
            slot_job_id("demo", Some("colombia"), later),
            slot_job_id("other", Some("colombia"), at),
        ] {
            assert_ne!(slot_job_id("demo", Some("colombia"), at), other);
        }
    }
}
