//! Runs pipelines with a `schedule:` while serving: one run per country listed in `countries:`
//! at each cron time (UTC), each skipped while the previous scheduled run of the same pipeline
//! for the same country is still going here. A slot is queued as a RUN item of the events store
//! (the one queue of all work) under an id derived from the pipeline, the country and the
//! scheduled time, so servers sharing the store (one machine's SQLite file, or the Databricks
//! events table across machines) queue and run each slot once; the poller that claims the item
//! runs it as the scheduler ([`slot_of`] tells such an item from a forged one).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::pipeline::{Plan, PlanOptions};
use crate::server::AppState;
use crate::server::audit::{AuditEntry, AuditResult};
use crate::server::versions::{PipelineEntry, ProjectVersion};
use crate::sync::{Event, NewEvent, Operation};

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
    // (Checked again, as the scheduler, by the server that runs the item.)
    if let Err(refusal) = crate::auth::authorize(None, &plan, &policy) {
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
    // One item per (pipeline, country, scheduled time) in the events store, whichever server
    // queues it first; the server whose poller claims it runs it (`run_events`).
    let id = slot_job_id(name, plan.country.as_deref(), slot);
    let item = NewEvent::run(name, plan.country.as_deref(), &Default::default(), None);
    match state.events.submit_once(&id, item).await {
        Ok(Some(_)) => {
            tracing::info!(pipeline = %name, country = ?plan.country, %slot, event_id = %id, "scheduled run queued");
        }
        Ok(None) => {
            tracing::info!(pipeline = %name, country = ?plan.country, %slot, "another server queued this scheduled run");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The slot of a schedule a RUN item stands for, when it is one: it names no creator and no
/// params, and its id is the slot id of its pipeline's schedule at one of the schedule's times
/// in the hour before the item was created (and at most a minute after, for clock skew between
/// servers). Such an item runs as the scheduler; any other RUN item needs a `created_by`.
pub(crate) fn slot_of(version: &ProjectVersion, event: &Event) -> Option<DateTime<Utc>> {
    if event.operation != Operation::Run || event.created_by.is_some() || event.params.is_some() {
        return None;
    }
    let (name, entry) = version.pipeline(event.pipeline.as_deref()?)?;
    let schedule = entry.schedule.as_ref()?;
    let until = event.created_at + chrono::Duration::minutes(1);
    let mut after = event.created_at - chrono::Duration::hours(1);
    while let Some(time) = schedule.next_after(after).filter(|t| *t <= until) {
        if slot_job_id(name, event.country.as_deref(), time) == event.event_id {
            return Some(time);
        }
        after = time;
    }
    None
}

/// The id of a schedule slot's item: the same on every server sharing the events store, so the
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
