//! Runs jobs in the background: at most `max_concurrent` at a time, each cancellable until it
//! commits, each recorded in the job store from queued to its final status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Error;
use crate::pipeline::spec::StepKind;
use crate::pipeline::{Plan, RunOptions, RunSummary, run};
use crate::server::audit::{AuditEntry, AuditLog, AuditResult};
use crate::server::jobs::{Job, JobStatus, JobStore};
use crate::server::metrics::ServerMetrics;
use crate::server::versions::ProjectVersion;

/// Error recorded on jobs stopped by a server shutdown.
pub const SHUTDOWN_ERROR: &str = "the server shut down before the job finished; resubmit it";

/// What a job runs: a plan, on the version of the project files it was planned with.
pub struct JobWork {
    /// Kept alive (its copy of the files kept on disk) until the job ends.
    pub version: Arc<ProjectVersion>,
    /// The project the plan reads: the version's, or one with other query/config folders.
    pub project: crate::pipeline::Project,
    pub plan: Plan,
    /// The SQL Server tables the plan reads or writes: a caller other than the submitter needs
    /// write access to each of them to cancel the job.
    pub tables: Vec<String>,
}

/// A job queued or running in this server.
struct Active {
    cancel: CancellationToken,
    tables: Vec<String>,
    /// Fired once the job's final status is stored.
    done: CancellationToken,
}

/// Starts, tracks and cancels jobs.
pub struct JobRunner {
    store: Arc<JobStore>,
    audit: Arc<AuditLog>,
    metrics: Arc<ServerMetrics>,
    active: Mutex<HashMap<String, Active>>,
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    /// Fired when a shutdown begins: queued jobs no longer start (they become `interrupted`).
    stopping: CancellationToken,
    /// Fired when the server stops waiting for jobs; their status becomes `interrupted`.
    shutting_down: CancellationToken,
}

/// How a queued job left the queue.
enum Start {
    /// It got its turn.
    Run(tokio::sync::OwnedSemaphorePermit),
    /// It was cancelled while queued.
    Cancelled,
    /// The server began to shut down first: it never starts.
    ShuttingDown,
}

/// What `cancel` did.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was queued or running; it stops and commits nothing.
    Cancelling,
    /// The job is not running in this server (finished, or unknown).
    NotActive,
}

impl JobRunner {
    /// A runner running at most `max_concurrent` jobs at a time.
    pub fn new(
        store: Arc<JobStore>,
        audit: Arc<AuditLog>,
        metrics: Arc<ServerMetrics>,
        max_concurrent: usize,
    ) -> JobRunner {
        JobRunner {
            store,
            audit,
            metrics,
            active: Mutex::new(HashMap::new()),
            tracker: TaskTracker::new(),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            max_concurrent: max_concurrent.max(1),
            stopping: CancellationToken::new(),
            shutting_down: CancellationToken::new(),
        }
    }

    /// Runs a job (already stored as queued) in the background.
    pub fn start(self: &Arc<Self>, job: Job, work: JobWork) {
        let cancel = CancellationToken::new();
        let done = CancellationToken::new();
        self.active.lock().expect("runner lock").insert(
            job.id.clone(),
            Active {
                cancel: cancel.clone(),
                tables: work.tables.clone(),
                done: done.clone(),
            },
        );
        let runner = Arc::clone(self);
        self.tracker.spawn(async move {
            let id = job.id.clone();
            runner.execute(job, work, cancel).await;
            runner.active.lock().expect("runner lock").remove(&id);
            done.cancel();
        });
    }

    /// A token fired once job `id`, queued or running in this server, has its final status
    /// stored; `None` when the job is not active here (finished, or another server's).
    pub fn finished(&self, id: &str) -> Option<CancellationToken> {
        self.active
            .lock()
            .expect("runner lock")
            .get(id)
            .map(|a| a.done.clone())
    }

    /// Asks a job to stop.
    pub fn cancel(&self, id: &str) -> CancelOutcome {
        match self.active.lock().expect("runner lock").get(id) {
            Some(active) => {
                active.cancel.cancel();
                CancelOutcome::Cancelling
            }
            None => CancelOutcome::NotActive,
        }
    }

    /// The SQL Server tables a job queued or running in this server touches; `None` when the
    /// job is not active here.
    pub fn tables(&self, id: &str) -> Option<Vec<String>> {
        self.active
            .lock()
            .expect("runner lock")
            .get(id)
            .map(|a| a.tables.clone())
    }

    /// Jobs queued or running in this server.
    pub fn active_count(&self) -> usize {
        self.active.lock().expect("runner lock").len()
    }

    /// Whether one more job would start at once (fewer jobs queued or running than slots).
    pub fn has_room(&self) -> bool {
        self.active_count() < self.max_concurrent
    }

    /// Stops taking jobs, lets running ones finish for up to `grace`, then cancels the rest
    /// (recorded as `interrupted`, nothing committed). Queued jobs do not start: they are
    /// recorded as `interrupted` at once.
    pub async fn shutdown(&self, grace: Duration) {
        self.stopping.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                jobs = self.active_count(),
                "jobs still running after the grace period; interrupting them"
            );
            self.shutting_down.cancel();
            for active in self.active.lock().expect("runner lock").values() {
                active.cancel.cancel();
            }
            self.tracker.wait().await;
        }
    }

    async fn execute(&self, job: Job, work: JobWork, cancel: CancellationToken) {
        let start = tokio::select! {
            // A shutdown wins over a free slot: once it began, nothing new starts.
            biased;
            _ = self.stopping.cancelled() => Start::ShuttingDown,
            _ = cancel.cancelled() => Start::Cancelled,
            permit = Arc::clone(&self.permits).acquire_owned() => match permit {
                Ok(permit) => Start::Run(permit),
                Err(_) => Start::ShuttingDown,
            },
        };
        let started = Instant::now();
        let never_started = matches!(start, Start::ShuttingDown);
        let renderer = work.plan.renderer.clone();
        let result = match start {
            Start::ShuttingDown | Start::Cancelled => Err(Error::Cancelled),
            Start::Run(_permit) => {
                match self.store.mark_running(&job.id) {
                    Ok(true) => {}
                    // Cancelled in the store while it waited (a queued run cancelled through
                    // another server), or started elsewhere: its stored status stands.
                    Ok(false) => {
                        tracing::info!(job = %job.id, "the job is no longer queued; not starting it");
                        return;
                    }
                    Err(e) => {
                        tracing::error!(job = %job.id, error = %e, "could not record the job as running");
                    }
                }
                let options = RunOptions {
                    run_id: Some(job.id.clone()),
                    cancel: Some(cancel),
                    ..RunOptions::default()
                };
                run(&work.project, &work.plan, &options).await
            }
        };
        self.record(&job, result, never_started, started.elapsed(), &renderer);
    }

    /// Stores and audits how a job ended; `never_started` for a queued job a shutdown stopped.
    fn record(
        &self,
        job: &Job,
        result: crate::Result<RunSummary>,
        never_started: bool,
        elapsed: Duration,
        renderer: &crate::pipeline::render::Renderer,
    ) {
        // Values read through `env()` (connection fields only) never reach a job record.
        // A delete over the caller's limit is a refusal, like a missing right.
        let refused = matches!(&result, Err(e) if e.refusal().is_some());
        let (status, summary, error, rows) = match result {
            Ok(summary) => {
                let rows = rows_written(&summary);
                let value = serde_json::to_value(&summary)
                    .ok()
                    .map(|v| serde_json::from_str(&renderer.redact(&v.to_string())).unwrap_or(v));
                (JobStatus::Succeeded, value, None, Some(rows))
            }
            Err(Error::Cancelled) if never_started || self.shutting_down.is_cancelled() => (
                JobStatus::Interrupted,
                None,
                Some(SHUTDOWN_ERROR.to_string()),
                None,
            ),
            Err(Error::Cancelled) => (
                JobStatus::Cancelled,
                None,
                Some(Error::Cancelled.to_string()),
                None,
            ),
            Err(e) => (
                JobStatus::Failed,
                None,
                Some(renderer.redact(&e.to_string())),
                None,
            ),
        };
        tracing::info!(job = %job.id, pipeline = %job.pipeline, %status, "job finished");
        // Counted before it is stored: whoever sees the final status sees it counted.
        self.metrics
            .job_finished(&job.pipeline, status, rows.unwrap_or(0), elapsed);
        if let Err(e) = self.store.finish(&job.id, status, summary, error.clone()) {
            tracing::error!(job = %job.id, error = %e, "could not record the job's result");
        }
        let entry = AuditEntry {
            request_id: format!("job-{}", job.id),
            caller: job.submitted_by.clone(),
            action: job.kind.clone(),
            tables: Vec::new(),
            rows,
            result: match (status, &error) {
                (JobStatus::Succeeded, _) => AuditResult::Ok,
                (JobStatus::Failed, _) if refused => AuditResult::Refused,
                _ => AuditResult::Failed,
            },
            error,
            job_id: Some(job.id.clone()),
            pipeline: Some(job.pipeline.clone()),
            ..AuditEntry::default()
        };
        if let Err(e) = self.audit.append(&entry) {
            tracing::error!(error = %e, "audit log write failed");
        }
    }
}

/// Rows written by the sinks of a run.
pub fn rows_written(summary: &RunSummary) -> u64 {
    summary
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Sink)
        .map(|s| s.rows)
        .sum()
}
