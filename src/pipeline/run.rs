//! Executes a [`Plan`] on DataFusion: sources and transforms become tables, sinks stream them out.
//! Everything that can fail on bad input (schemas, SQL, sink settings) is checked before the first
//! byte is written; the run locks every output it writes ([`sinks::lock`]) before its sources
//! open (so what they read, such as a watermark, is what the lock's last holder left), sinks stage
//! concurrently, then commit together in [`CommitPhase`] order (Delta writes, then volume folders,
//! then SQL Server's `COMMIT`); a failure while committing names what was and was not committed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::execution::memory_pool::GreedyMemoryPool;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result, StepSqlError};
use crate::output_types::Truncations;
use crate::pipeline::metrics::{CountingTable, StepMetrics};
use crate::pipeline::plan::{Plan, PlannedStep};
use crate::pipeline::project::Project;
use crate::pipeline::spec::StepKind;
use crate::sinks::{self, CommitPhase, Sink, StagedOutput};
use crate::sources;
use crate::sql::SqlValue;

/// How to run a plan.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Open sources and plan every step, but write nothing.
    pub dry_run: bool,
    /// Show progress bars on stderr.
    pub progress: bool,
    /// Use this run id instead of a new one.
    pub run_id: Option<String>,
    /// Retries of a sink after a transient failure (default 3).
    pub retries: Option<usize>,
    /// Cancels the run: until commit starts, scans stop, staged output is removed and the run
    /// returns [`Error::Cancelled`]. Once committing, the run finishes.
    pub cancel: Option<CancellationToken>,
    /// Caps the memory DataFusion's operators track (sorts, joins, aggregations, repartitions)
    /// at this many bytes; an operator needing more fails the run ("Resources exhausted").
    /// `None`: no cap.
    pub memory_limit: Option<usize>,
}

/// Retries of a sink after a transient failure.
pub const DEFAULT_RETRIES: usize = 3;

/// What the sources and sinks of a run know about it.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Unique id of this run.
    pub run_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Country of the run, if any.
    pub country: Option<String>,
    /// What the run's steps dropped below the microsecond.
    pub truncations: Arc<crate::output_types::Truncations>,
    /// What the run's change sources read, and which sinks they feed.
    pub change_feeds: Arc<crate::changes::ChangeFeeds>,
}

/// What a run did, per step.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub pipeline: String,
    pub country: Option<String>,
    pub dry_run: bool,
    pub duration_ms: u64,
    pub steps: Vec<StepReport>,
}

/// One step of a [`RunSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub id: String,
    pub kind: StepKind,
    /// Rows written by a sink, or streamed out of a source or transform (its largest scan).
    pub rows: u64,
    /// Parquet bytes written by a volume sink; Arrow bytes streamed for other steps.
    pub bytes: u64,
    pub duration_ms: u64,
    /// How many times a source or transform was scanned (once per reader; nothing is buffered).
    pub scans: usize,
    /// Files or tables a sink wrote.
    pub outputs: Vec<String>,
    /// Values per column whose timestamp digits below the microsecond were dropped (a SQL
    /// Server source's `datetime2(7)`, a sink's nanosecond input).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub truncated: BTreeMap<String, u64>,
    /// A sink whose write was applied before (its idempotency key is recorded): nothing was
    /// written, `rows` are the first application's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub already_applied: bool,
    /// How a sink changed its target's schema (columns added) or what of the target the input
    /// lacks (columns written as null).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schema_changes: Vec<String>,
}

/// A sink ready to run: built, input planned, schema checked.
struct ReadySink {
    id: String,
    sink: Box<dyn Sink>,
    input: DataFrame,
    /// Sinks before this one in `depends_on` order; 0 for sinks that depend on no sink.
    level: usize,
}

/// Runs a plan to the end and reports what it did. A step's failure names the file and line
/// where the step is declared.
pub async fn run(project: &Project, plan: &Plan, options: &RunOptions) -> Result<RunSummary> {
    run_steps(project, plan, options)
        .await
        .map_err(|e| e.placed(|step| plan.step(step).map(|s| &s.location)))
}

async fn run_steps(project: &Project, plan: &Plan, options: &RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let upstream: BTreeMap<String, Vec<String>> = plan
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Sink)
        .map(|s| (s.id.clone(), plan.upstream_sources(&s.id)))
        .collect();
    let run = RunInfo {
        run_id: options
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        pipeline: plan.name.clone(),
        country: plan.country.clone(),
        truncations: Arc::new(Truncations::new(upstream.clone())),
        change_feeds: Arc::new(crate::changes::ChangeFeeds::new(upstream)),
    };
    // delta-rs' session: DataFusion with the Delta planner (needed by Delta writes) and
    // case-sensitive identifiers, so mixed-case SQL Server column names work unquoted.
    let ctx = match options.memory_limit {
        None => deltalake::delta_datafusion::create_session().into_inner(),
        Some(limit) => {
            let runtime = RuntimeEnvBuilder::new()
                .with_memory_pool(Arc::new(GreedyMemoryPool::new(limit)))
                .build_arc()
                .map_err(|e| {
                    Error::step(
                        &plan.name,
                        format!("cannot set up DataFusion's memory pool of {limit} bytes: {e}"),
                    )
                })?;
            deltalake::delta_datafusion::DeltaSessionContext::with_runtime_env(runtime).into_inner()
        }
    };
    // Scans see this token; it follows `options.cancel` until the commit starts.
    let stop = CancellationToken::new();
    let cancelled = || {
        options
            .cancel
            .as_ref()
            .is_some_and(tokio_util::sync::CancellationToken::is_cancelled)
    };
    let metrics: BTreeMap<String, Arc<StepMetrics>> = plan
        .steps
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                Arc::new(StepMetrics::with_cancel(stop.clone())),
            )
        })
        .collect();

    // Sinks are built and their outputs locked before any source opens: a source reads state
    // that the holder of an output may still change (an incremental watermark saved after its
    // commit), so a run that waited for the lock must read that state after the wait.
    let mut built: BTreeMap<&str, Box<dyn Sink>> = BTreeMap::new();
    for step in plan.steps.iter().filter(|s| s.kind == StepKind::Sink) {
        built.insert(&step.id, sinks::build(project, step, &run)?);
    }
    // Held until the run is over: from before the sources open through the commit (or abort).
    let _locks = if options.dry_run {
        None
    } else {
        let outputs = built
            .values()
            .map(|sink| sink.output())
            .collect::<Result<Vec<_>>>()?;
        let locks = sinks::lock::lock_outputs(
            project.root(),
            outputs,
            &run.run_id,
            sinks::lock::lock_wait(),
            &options.cancel.clone().unwrap_or_default(),
        )
        .await
        .map_err(|e| match e {
            sinks::lock::LockError::Cancelled { .. } => Error::Cancelled,
            other => Error::from(other),
        })?;
        Some(locks)
    };

    let mut ready = Vec::new();
    let mut opened = Vec::new();
    let mut levels: BTreeMap<&str, usize> = BTreeMap::new();
    for step in &plan.steps {
        if cancelled() {
            return Err(Error::Cancelled);
        }
        let level = step
            .depends_on
            .iter()
            .map(|d| {
                let is_sink = plan.step(d).is_some_and(|s| s.kind == StepKind::Sink);
                levels.get(d.as_str()).copied().unwrap_or(0) + usize::from(is_sink)
            })
            .max()
            .unwrap_or(0);
        levels.insert(&step.id, level);
        tracing::debug!(step = %step.id, kind = %step.kind, "planning step");
        match step.kind {
            StepKind::Source => {
                let source =
                    sources::build(project, step, &run, plan.sub_microsecond_for(&step.id))?;
                let table = source.open(&ctx).await?;
                register(&ctx, step, table, &metrics)?;
                opened.push(source);
            }
            StepKind::Transform => {
                let df = transform_frame(&ctx, step).await?;
                register(&ctx, step, df.into_view(), &metrics)?;
            }
            StepKind::Sink => {
                let sink = built
                    .remove(step.id.as_str())
                    .expect("every sink was built");
                let from = step.spec.sink.as_ref().expect("sink step").config().from();
                let input = ctx
                    .table(from)
                    .await
                    .map_err(|e| Error::step(&step.id, e))?;
                sink.check(input.schema().as_arrow())?;
                ready.push(ReadySink {
                    id: step.id.clone(),
                    sink,
                    input,
                    level,
                });
            }
        }
    }

    let mut reports: BTreeMap<String, (Duration, Vec<String>)> = BTreeMap::new();
    if !options.dry_run {
        let progress = options.progress.then(|| Progress::start(&ready, &metrics));
        let forward = options.cancel.clone().map(|cancel| {
            let stop = stop.clone();
            tokio::spawn(async move {
                cancel.cancelled().await;
                stop.cancel();
            })
        });
        let result = stage_and_commit(
            &ctx,
            ready,
            &metrics,
            Staging {
                max_parallel: plan.max_parallel,
                retries: options.retries.unwrap_or(DEFAULT_RETRIES),
                stop: &stop,
                forward,
            },
            &mut reports,
        )
        .await;
        if let Some(progress) = progress {
            progress.finish().await;
        }
        let committed = result?;
        for source in &opened {
            source
                .after_commit()
                .await
                .map_err(|cause| Error::AfterCommit {
                    committed: committed.clone(),
                    cause: Box::new(cause),
                })?;
        }
    }

    Ok(RunSummary {
        run_id: run.run_id,
        pipeline: plan.name.clone(),
        country: plan.country.clone(),
        dry_run: options.dry_run,
        duration_ms: started.elapsed().as_millis() as u64,
        steps: plan
            .steps
            .iter()
            .map(|s| {
                let m = &metrics[&s.id];
                let (duration, outputs) = reports
                    .remove(&s.id)
                    .unwrap_or_else(|| (m.duration(), Vec::new()));
                StepReport {
                    id: s.id.clone(),
                    kind: s.kind,
                    rows: m.rows(),
                    bytes: m.bytes(),
                    duration_ms: duration.as_millis() as u64,
                    scans: m.scans(),
                    outputs,
                    // A source its own columns; a sink `step.column` of what reached it.
                    truncated: match s.kind {
                        StepKind::Sink => run.truncations.for_output(&s.id),
                        _ => run.truncations.of(&s.id),
                    },
                    already_applied: m.already_applied(),
                    schema_changes: m.schema_changes(),
                }
            })
            .collect(),
    })
}

fn register(
    ctx: &SessionContext,
    step: &PlannedStep,
    table: Arc<dyn deltalake::datafusion::catalog::TableProvider>,
    metrics: &BTreeMap<String, Arc<StepMetrics>>,
) -> Result<()> {
    let counted = CountingTable::new(table, Arc::clone(&metrics[&step.id]));
    ctx.register_table(step.id.as_str(), Arc::new(counted))
        .map_err(|e| Error::step(&step.id, e))?;
    Ok(())
}

/// Plans a transform's SQL (read-only: no DDL, DML or SET statements) with its bound parameters.
async fn transform_frame(ctx: &SessionContext, step: &PlannedStep) -> Result<DataFrame> {
    let sql = step.sql.as_ref().expect("transforms have SQL");
    let where_ = step
        .query_file
        .as_ref()
        .map(|f| format!(" (in {})", f.display()))
        .unwrap_or_default();
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx
        .sql_with_options(&sql.text, options)
        .await
        .map_err(|e| {
            let detail = first_line(&e);
            Error::StepSql(Box::new(StepSqlError {
                location: step.location.clone(),
                step: step.id.clone(),
                message: format!("step `{}`: SQL error{where_}: {detail}", step.id),
                detail,
            }))
        })?;
    if sql.params.is_empty() {
        return Ok(df);
    }
    let values: Vec<ScalarValue> = sql.params.iter().map(scalar).collect();
    df.with_param_values(values).map_err(|e| {
        let detail = first_line(&e);
        Error::StepSql(Box::new(StepSqlError {
            location: step.location.clone(),
            step: step.id.clone(),
            message: format!("step `{}`: parameters{where_}: {detail}", step.id),
            detail,
        }))
    })
}

fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

fn scalar(value: &SqlValue) -> ScalarValue {
    match value {
        SqlValue::Null => ScalarValue::Null,
        SqlValue::Bool(b) => ScalarValue::Boolean(Some(*b)),
        SqlValue::Int(i) => ScalarValue::Int64(Some(*i)),
        SqlValue::Float(f) => ScalarValue::Float64(Some(*f)),
        SqlValue::Text(s) => ScalarValue::Utf8(Some(s.clone())),
    }
}

/// Stages one sink, retrying transient failures (connection resets, deadlocks, throttling) with
/// exponential backoff and jitter. A failed attempt leaves nothing staged and its counts are reset,
/// so a retried run writes exactly what an undisturbed one would.
async fn stage_with_retries(
    ctx: &SessionContext,
    sink: &ReadySink,
    metrics: Arc<StepMetrics>,
    retries: usize,
    stop: &CancellationToken,
) -> Result<Box<dyn StagedOutput>> {
    use backon::{ExponentialBuilder, Retryable};
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(retries)
        .with_jitter();
    (|| async {
        metrics.reset_direct();
        sink.sink
            .stage(ctx, sink.input.clone(), Arc::clone(&metrics))
            .await
    })
    .retry(backoff)
    .when(|e| e.is_transient() && !stop.is_cancelled())
    .notify(|e, wait| {
        tracing::warn!(step = %sink.id, error = %e, retry_in = ?wait, "transient failure, retrying");
    })
    .await
}

/// How sinks are staged: concurrency, retries, and the run's cancellation.
struct Staging<'a> {
    max_parallel: usize,
    retries: usize,
    /// Fires when the run is cancelled; scans then fail.
    stop: &'a CancellationToken,
    /// The task that fires `stop` on the caller's cancellation; stopped when the commit starts.
    forward: Option<tokio::task::JoinHandle<()>>,
}

/// A sink's id, how long its staging took, and what it staged.
type StageResult = (String, Duration, Result<Box<dyn StagedOutput>>);

/// Stages every sink (level by level, concurrently within a level), then commits them in order
/// and returns what was committed, in commit order. If any stage fails, everything staged is
/// removed and nothing is committed.
async fn stage_and_commit(
    ctx: &SessionContext,
    mut ready: Vec<ReadySink>,
    metrics: &BTreeMap<String, Arc<StepMetrics>>,
    staging: Staging<'_>,
    reports: &mut BTreeMap<String, (Duration, Vec<String>)>,
) -> Result<Vec<String>> {
    let Staging {
        max_parallel,
        retries,
        stop,
        forward,
    } = staging;
    ready.sort_by_key(|s| s.level);
    let max_level = ready.iter().map(|s| s.level).max().unwrap_or(0);
    let mut staged: Vec<(String, Duration, Box<dyn StagedOutput>)> = Vec::new();
    let mut failure: Option<Error> = None;
    let mut by_level: Vec<Vec<ReadySink>> = (0..=max_level).map(|_| Vec::new()).collect();
    for sink in ready {
        by_level[sink.level].push(sink);
    }
    for level in by_level {
        if failure.is_some() || stop.is_cancelled() {
            break;
        }
        let results: Vec<StageResult> = futures::stream::iter(level.into_iter().map(|s| {
            let m = Arc::clone(&metrics[&s.id]);
            async move {
                let t = Instant::now();
                tracing::info!(step = %s.id, "staging sink");
                let r = stage_with_retries(ctx, &s, m, retries, stop).await;
                (s.id, t.elapsed(), r)
            }
        }))
        .buffered(max_parallel)
        .collect()
        .await;
        for (id, elapsed, result) in results {
            match result {
                Ok(output) => staged.push((id, elapsed, output)),
                Err(e) => {
                    tracing::debug!(step = %id, error = %e, "sink failed");
                    failure.get_or_insert(e);
                }
            }
        }
    }
    // From here on the run commits: a cancellation that arrives now is too late.
    if let Some(forward) = forward {
        forward.abort();
    }
    if stop.is_cancelled() {
        failure = Some(Error::Cancelled);
    }
    if let Some(e) = failure {
        for (_, _, output) in staged {
            output.abort().await;
        }
        return Err(e);
    }
    // Delta writes (which still stream data) first, then volume folders (a manifest each), then
    // SQL Server's COMMIT: an earlier failure leaves every SQL Server transaction to roll back.
    staged.sort_by_key(|(_, _, output)| output.commit_phase());
    let mut committed: Vec<String> = Vec::new();
    let mut staged = staged.into_iter();
    while let Some((id, elapsed, output)) = staged.next() {
        let t = Instant::now();
        let target = output.target();
        let phase = output.commit_phase();
        match output.commit().await {
            Ok(outputs) => {
                tracing::info!(step = %id, "committed");
                committed.push(target);
                reports.insert(id, (elapsed + t.elapsed(), outputs));
            }
            Err(e) => {
                let outcome_unknown =
                    phase == CommitPhase::Transaction || matches!(e, Error::CommitUnknown { .. });
                let mut not_committed = Vec::new();
                if !outcome_unknown {
                    not_committed.push(target.clone());
                }
                for (_, _, rest) in staged {
                    not_committed.push(rest.target());
                    rest.abort().await;
                }
                return Err(Error::CommitFailed {
                    step: id,
                    failed: target,
                    cause: Box::new(e),
                    committed,
                    not_committed,
                    outcome_unknown,
                });
            }
        }
    }
    Ok(committed)
}

/// Progress bars on stderr, one per sink, refreshed from the step counters.
struct Progress {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(ready: &[ReadySink], metrics: &BTreeMap<String, Arc<StepMetrics>>) -> Progress {
        let multi = indicatif::MultiProgress::new();
        let style = indicatif::ProgressStyle::with_template("{spinner} {prefix:>20} {msg}")
            .expect("valid template");
        let bars: Vec<(indicatif::ProgressBar, Arc<StepMetrics>)> = ready
            .iter()
            .map(|s| {
                let bar = multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(s.id.clone());
                (bar, Arc::clone(&metrics[&s.id]))
            })
            .collect();
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(120));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => break,
                }
                for (bar, m) in &bars {
                    bar.set_message(format!("{} rows", m.rows()));
                    bar.tick();
                }
            }
            for (bar, m) in &bars {
                bar.finish_with_message(format!("{} rows", m.rows()));
            }
        });
        Progress { stop, task }
    }

    async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
