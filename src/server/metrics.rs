//! Prometheus metrics of the server (`GET /metrics`): jobs by status, rows moved, job and event
//! durations, and the event lag (age of the oldest pending event).

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::server::jobs::JobStatus;

type Labels = Vec<(String, String)>;

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

/// The server's metrics.
pub struct ServerMetrics {
    registry: Mutex<Registry>,
    jobs: Family<Labels, Gauge>,
    jobs_finished: Family<Labels, Counter>,
    rows_moved: Family<Labels, Counter>,
    job_duration: Family<Labels, Histogram, fn() -> Histogram>,
    events: Family<Labels, Counter>,
    event_duration: Histogram,
    event_lag: Gauge<f64, AtomicU64>,
    events_pending: Gauge,
    config_valid: Gauge,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerMetrics {
    /// Registers every metric.
    pub fn new() -> ServerMetrics {
        let mut registry = Registry::with_prefix("bridge");
        let metrics = ServerMetrics {
            registry: Mutex::new(Registry::default()),
            jobs: Family::default(),
            jobs_finished: Family::default(),
            rows_moved: Family::default(),
            job_duration: Family::new_with_constructor(histogram),
            events: Family::default(),
            event_duration: histogram(),
            event_lag: Gauge::default(),
            events_pending: Gauge::default(),
            config_valid: Gauge::default(),
        };
        registry.register(
            "jobs",
            "Jobs in the job store, by status",
            metrics.jobs.clone(),
        );
        registry.register(
            "jobs_finished",
            "Jobs finished since the server started, by pipeline and status",
            metrics.jobs_finished.clone(),
        );
        registry.register(
            "rows_moved",
            "Rows written by sinks of jobs and events, by pipeline",
            metrics.rows_moved.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Duration of finished jobs, by pipeline",
            metrics.job_duration.clone(),
        );
        registry.register(
            "events_processed",
            "Sync events applied or failed, by operation and status",
            metrics.events.clone(),
        );
        registry.register(
            "event_duration_seconds",
            "Time to apply a sync event",
            metrics.event_duration.clone(),
        );
        registry.register(
            "event_lag_seconds",
            "Age of the oldest pending sync event (0 when none is pending)",
            metrics.event_lag.clone(),
        );
        registry.register(
            "events_pending",
            "Sync events waiting to be claimed",
            metrics.events_pending.clone(),
        );
        registry.register(
            "config_valid",
            "1 when the project files on disk are valid and loaded, 0 when the last edit was refused",
            metrics.config_valid.clone(),
        );
        *metrics.registry.lock().expect("metrics lock") = registry;
        metrics
    }

    /// Records a finished job.
    pub fn job_finished(&self, pipeline: &str, status: JobStatus, rows: u64, took: Duration) {
        let p = vec![("pipeline".to_string(), pipeline.to_string())];
        let mut ps = p.clone();
        ps.push(("status".into(), status.to_string()));
        self.jobs_finished.get_or_create(&ps).inc();
        self.rows_moved.get_or_create(&p).inc_by(rows);
        self.job_duration
            .get_or_create(&p)
            .observe(took.as_secs_f64());
    }

    /// Records an applied or failed event.
    pub fn event_finished(&self, operation: &str, ok: bool, rows: u64, took: Duration) {
        let status = if ok { "completed" } else { "failed" };
        self.events
            .get_or_create(&vec![
                ("operation".to_string(), operation.to_string()),
                ("status".to_string(), status.to_string()),
            ])
            .inc();
        self.rows_moved
            .get_or_create(&vec![("pipeline".to_string(), "sync".to_string())])
            .inc_by(rows);
        self.event_duration.observe(took.as_secs_f64());
    }

    /// Renders the metrics in the Prometheus text format, with the gauges read at scrape time.
    pub fn render(&self, snapshot: Scrape) -> String {
        for (status, count) in snapshot.jobs_by_status {
            self.jobs
                .get_or_create(&vec![("status".to_string(), status.to_string())])
                .set(count as i64);
        }
        self.event_lag.set(snapshot.event_lag.as_secs_f64());
        self.events_pending.set(snapshot.events_pending as i64);
        self.config_valid.set(i64::from(snapshot.config_valid));
        let mut out = String::new();
        encode(&mut out, &self.registry.lock().expect("metrics lock"))
            .expect("writing to a String cannot fail");
        out
    }
}

/// Values read from the stores when `/metrics` is scraped.
pub struct Scrape {
    pub jobs_by_status: Vec<(JobStatus, u64)>,
    pub event_lag: Duration,
    pub events_pending: u64,
    pub config_valid: bool,
}
