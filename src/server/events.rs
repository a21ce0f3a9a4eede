//! The server's side of the events poller: who may apply an event (its `created_by` must be a
//! user of the permissions file whose grants cover everything the event's plan reads and
//! writes: the lakehouse source and the SQL Server target), and audit lines and metrics.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::auth::{AccessPolicy, Authorized, PermissionsStore, authorize};
use crate::error::BoxError;
use crate::pipeline::Plan;
use crate::server::audit::{AuditEntry, AuditLog, AuditResult};
use crate::server::metrics::ServerMetrics;
use crate::server::{AppState, ServeOptions};
use crate::sync::{ApplyLimits, Event, Outcome, Poller, PollerHooks, PollerOptions};

/// Runs the events poller until `stop` fires.
pub async fn run_poller(state: Arc<AppState>, options: ServeOptions, stop: CancellationToken) {
    let policy_state = Arc::clone(&state);
    let hooks = Arc::new(ServerHooks {
        policy: Box::new(move |_plan: &Plan| {
            let project = policy_state
                .versions
                .current()
                .map(|v| v.project.clone())
                .unwrap_or_else(|| policy_state.versions.base().clone());
            policy_state.policy(&project)
        }),
        permissions: Arc::clone(&state.permissions),
        audit: Arc::clone(&state.audit),
        metrics: Arc::clone(&state.metrics),
        refused: Mutex::new(HashSet::new()),
        slots: Mutex::new(HashMap::new()),
        state: Arc::clone(&state),
    });
    let versions = Arc::clone(&state.versions);
    let project = move || {
        versions
            .current()
            .map(|v| v.project.clone())
            .unwrap_or_else(|| versions.base().clone())
    };
    let poller = Poller::new(
        Arc::clone(&state.events),
        project,
        hooks,
        PollerOptions {
            interval: options.poll_interval,
            lease: options.event_lease,
            shutdown_grace: options.shutdown_grace,
            retention: Some(options.event_retention),
            max_concurrent: options.event_workers,
            ..PollerOptions::default()
        },
    );
    poller.run(stop).await;
}

/// The access policy an event's plan is authorised against (from the current project version).
type PolicyOf = Box<dyn Fn(&Plan) -> crate::Result<AccessPolicy> + Send + Sync>;

struct ServerHooks {
    policy: PolicyOf,
    permissions: Arc<PermissionsStore>,
    audit: Arc<AuditLog>,
    metrics: Arc<ServerMetrics>,
    /// Events `authorize` refused (and audited as `refused`) whose outcome is not recorded yet:
    /// their failure gets no second audit line.
    refused: Mutex<HashSet<String>>,
    /// The schedule slot of each claimed item without a creator (`None`: not a slot), decided
    /// once per item against the files of its claim, so its authorisation, job and audit lines
    /// agree even when the files change meanwhile.
    slots: Mutex<HashMap<String, Option<DateTime<Utc>>>>,
    /// What RUN events run with (project versions, job store, runner).
    state: Arc<AppState>,
}

impl ServerHooks {
    fn audit(&self, entry: AuditEntry) {
        if let Err(e) = self.audit.append(&entry) {
            tracing::error!(error = %e, "audit log write failed");
        }
    }

    fn refused_ids(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `created_by` may do what the event's `plan` reads and writes; a refusal is
    /// audited (once) and fails the event.
    fn authorized(
        &self,
        event: &Event,
        plan: &Plan,
    ) -> Result<(Authorized, Option<DateTime<Utc>>), BoxError> {
        let slot = self.slot(event);
        let refused = |refusal: EventRefusal| {
            self.refused_ids().insert(event.event_id.clone());
            self.audit(AuditEntry {
                result: AuditResult::Refused,
                error: Some(refusal.to_string()),
                ..self.entry(event)
            });
            Err(refusal.into())
        };
        // A schedule's own item runs as the scheduler (the operator's, like every scheduled
        // run); any other event must name a user.
        let caller = match event.created_by.as_deref() {
            None if slot.is_some() => None,
            None => return refused(EventRefusal::NoCreator),
            Some(name) => match self.permissions.current().caller(name) {
                Some(caller) => Some(caller),
                None => return refused(EventRefusal::UnknownUser(name.to_string())),
            },
        };
        let policy = match (self.policy)(plan) {
            Ok(policy) => policy,
            Err(e) => return refused(EventRefusal::Policy(e)),
        };
        let authorized = match authorize(caller.as_ref(), plan, &policy) {
            Ok(authorized) => authorized,
            Err(refusal) => return refused(EventRefusal::Access(refusal)),
        };
        self.refused_ids().remove(&event.event_id);
        Ok((authorized, slot))
    }

    /// The schedule slot `event` is the item of, among the current pipelines' schedules.
    fn slot(&self, event: &Event) -> Option<DateTime<Utc>> {
        if event.created_by.is_some() {
            return None;
        }
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slots.entry(event.event_id.clone()).or_insert_with(|| {
            self.state
                .versions
                .current()
                .and_then(|version| crate::server::schedule::slot_of(&version, event))
        })
    }

    /// The audit line of an event (a schedule's item is the scheduler's `schedule` action).
    fn entry(&self, event: &Event) -> AuditEntry {
        let scheduled = self.slot(event).is_some();
        AuditEntry {
            request_id: format!("event-{}", event.event_id),
            caller: if scheduled {
                Some("scheduler".into())
            } else {
                event.created_by.clone()
            },
            action: if scheduled { "schedule" } else { "event" }.into(),
            tables: [event.target_table.clone()]
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect(),
            event_id: Some(event.event_id.clone()),
            pipeline: event.pipeline.clone(),
            ..AuditEntry::default()
        }
    }
}

#[async_trait::async_trait]
impl PollerHooks for ServerHooks {
    async fn authorize(&self, event: &Event, plan: &Plan) -> Result<ApplyLimits, BoxError> {
        let (authorized, _) = self.authorized(event, plan)?;
        Ok(ApplyLimits {
            max_delete_rows: authorized.delete_caps.values().min().copied(),
        })
    }

    fn has_room_for_a_run(&self) -> bool {
        self.state.runner.has_room()
    }

    async fn run_pipeline(&self, event: &Event, cancel: &CancellationToken) -> Option<Outcome> {
        let authorize = |event: &Event, plan: &Plan| self.authorized(event, plan);
        crate::server::run_events::run_event(&self.state, event, &authorize, cancel).await
    }

    async fn on_finished(&self, event: &Event, outcome: &Outcome, took: Duration) {
        let (result, rows, error) = audited(outcome);
        let ok = result == AuditResult::Ok;
        self.metrics
            .event_finished(&event.operation.to_string(), ok, rows.unwrap_or(0), took);
        // A refusal was audited when it was decided: one line per event, not `refused` then
        // `failed`.
        let entry = self.entry(event);
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&event.event_id);
        if self.refused_ids().remove(&event.event_id) && !ok {
            return;
        }
        self.audit(AuditEntry {
            result,
            rows,
            error,
            ..entry
        });
    }
}

/// Why the server does not apply an event (audited as `refused`; the event fails with it).
#[derive(Debug, thiserror::Error)]
enum EventRefusal {
    #[error("created_by is empty: events must name a user of the permissions file")]
    NoCreator,
    #[error("created_by `{0}` is not a user of the permissions file")]
    UnknownUser(String),
    #[error("the access policy cannot be read: {0}")]
    Policy(#[source] crate::Error),
    #[error(transparent)]
    Access(crate::auth::Refusal),
}

/// The audit result, rows and error of an event's outcome.
fn audited(outcome: &Outcome) -> (AuditResult, Option<u64>, Option<String>) {
    match outcome {
        Outcome::Completed { rows_affected, .. } => (AuditResult::Ok, Some(*rows_affected), None),
        // A delete over the caller's limit is a refusal, like a missing right.
        Outcome::Failed {
            error,
            refusal: Some(_),
            ..
        } => (AuditResult::Refused, None, Some(error.clone())),
        Outcome::Failed {
            error,
            refusal: None,
            ..
        } => (AuditResult::Failed, None, Some(error.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Refusal;

    #[test]
    fn a_delete_over_the_cap_is_audited_as_refused_by_its_type_not_its_text() {
        let refused = Outcome::Failed {
            error: "the write was stopped".into(),
            refusal: Some(Refusal::DeleteCap {
                table: "dbo.Target".into(),
                deleted: 3,
                limit: 2,
            }),
            job_id: None,
        };
        assert_eq!(audited(&refused).0, AuditResult::Refused);
        let lookalike = Outcome::failed(
            "would delete 3 rows from dbo.T, over max_delete_rows 2; nothing was changed",
        );
        assert_eq!(audited(&lookalike).0, AuditResult::Failed);
        let done = Outcome::completed(4);
        assert_eq!(audited(&done), (AuditResult::Ok, Some(4), None));
    }
}
