//! Per-step counters: rows and bytes streamed out of a step, and when it started and finished.
//! A [`CountingTable`] wraps a step's table so every scan of it is counted without buffering.
//!
//! A step read by several later steps is scanned once per reader (nothing is buffered); its
//! figures are those of its largest scan, and `scans` says how many there were.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::tree_node::TreeNodeRecursion;
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::error::{DataFusionError, Result as DfResult};
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use deltalake::datafusion::physical_expr::PhysicalExpr;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
};
use futures::{Stream, StreamExt};
use std::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Counters of one scan.
#[derive(Debug, Default)]
struct ScanCounter {
    rows: AtomicU64,
    bytes: AtomicU64,
}

impl ScanCounter {
    fn add(&self, rows: usize, bytes: usize) {
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Counters of one step: its direct writes (sinks) and each scan of it (sources, transforms).
#[derive(Debug, Default)]
pub struct StepMetrics {
    direct: ScanCounter,
    scans: Mutex<Vec<Arc<ScanCounter>>>,
    window: Mutex<Option<(Instant, Instant)>>,
    /// Cancels every scan of the step: the next batch becomes an error, so a sink fails (and
    /// cleans up) instead of committing a truncated stream.
    cancel: CancellationToken,
    /// A sink found its write applied before (its idempotency key recorded) and changed nothing.
    already_applied: std::sync::atomic::AtomicBool,
    /// How a sink's target schema changed, or differs from its input, in words (`added column
    /// `email` (string)`): listed in the run summary.
    schema_changes: Mutex<Vec<String>>,
}

impl StepMetrics {
    /// Counters whose scans fail once `cancel` fires.
    pub fn with_cancel(cancel: CancellationToken) -> Self {
        StepMetrics {
            cancel,
            ..StepMetrics::default()
        }
    }

    /// Adds rows and bytes a sink wrote.
    pub fn record(&self, rows: usize, bytes: usize) {
        self.direct.add(rows, bytes);
        self.touch();
    }

    /// Forgets what a failed attempt of a sink wrote.
    pub fn reset_direct(&self) {
        self.direct.rows.store(0, Ordering::Relaxed);
        self.direct.bytes.store(0, Ordering::Relaxed);
        self.already_applied.store(false, Ordering::Relaxed);
    }

    /// Records that the sink's write was applied before (its idempotency key is recorded), so
    /// this run changed nothing; the rows recorded are the first application's.
    pub fn mark_already_applied(&self) {
        self.already_applied.store(true, Ordering::Relaxed);
    }

    /// Records how the sink's target schema changed (or what of it the input lacks).
    pub fn note_schema_change(&self, change: impl Into<String>) {
        self.schema_changes
            .lock()
            .expect("metrics lock")
            .push(change.into());
    }

    /// What [`StepMetrics::note_schema_change`] recorded, in order.
    pub fn schema_changes(&self) -> Vec<String> {
        self.schema_changes.lock().expect("metrics lock").clone()
    }

    /// Whether the sink found its write applied before ([`StepMetrics::mark_already_applied`]).
    pub fn already_applied(&self) -> bool {
        self.already_applied.load(Ordering::Relaxed)
    }

    fn new_scan(&self) -> Arc<ScanCounter> {
        let scan = Arc::new(ScanCounter::default());
        self.scans
            .lock()
            .expect("metrics lock")
            .push(Arc::clone(&scan));
        scan
    }

    fn largest(&self, f: impl Fn(&ScanCounter) -> u64) -> u64 {
        let scans = self.scans.lock().expect("metrics lock");
        scans
            .iter()
            .map(|s| f(s))
            .chain(std::iter::once(f(&self.direct)))
            .max()
            .unwrap_or(0)
    }

    /// How many times the step's output was scanned.
    pub fn scans(&self) -> usize {
        self.scans.lock().expect("metrics lock").len()
    }

    /// Marks activity now (extends the step's time window).
    pub fn touch(&self) {
        let now = Instant::now();
        let mut window = self.window.lock().expect("metrics lock");
        *window = Some(match *window {
            Some((start, _)) => (start, now),
            None => (now, now),
        });
    }

    /// Rows written (sinks) or rows of the largest scan (sources, transforms).
    pub fn rows(&self) -> u64 {
        self.largest(|s| s.rows.load(Ordering::Relaxed))
    }

    /// Bytes written (sinks) or Arrow bytes of the largest scan (sources, transforms).
    pub fn bytes(&self) -> u64 {
        self.largest(|s| s.bytes.load(Ordering::Relaxed))
    }

    /// Time between the first and the last activity.
    pub fn duration(&self) -> Duration {
        self.window
            .lock()
            .expect("metrics lock")
            .map(|(a, b)| b - a)
            .unwrap_or_default()
    }
}

/// A table that counts what its scans produce.
#[derive(Debug)]
pub struct CountingTable {
    inner: Arc<dyn TableProvider>,
    metrics: Arc<StepMetrics>,
}

impl CountingTable {
    /// Wraps a table; its scans add to `metrics`.
    pub fn new(inner: Arc<dyn TableProvider>, metrics: Arc<StepMetrics>) -> Self {
        CountingTable { inner, metrics }
    }
}

#[async_trait]
impl TableProvider for CountingTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = self.inner.scan(state, projection, filters, limit).await?;
        Ok(Arc::new(CountingExec {
            input,
            scan: self.metrics.new_scan(),
            metrics: Arc::clone(&self.metrics),
        }))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
}

/// Passes batches through and counts them. It is a leaf for the optimizer: the input was planned
/// and optimized on its own when the step was scanned, so an outer query cannot, for example,
/// drop the `ORDER BY` of a transform whose output a sink writes.
#[derive(Debug)]
struct CountingExec {
    input: Arc<dyn ExecutionPlan>,
    scan: Arc<ScanCounter>,
    metrics: Arc<StepMetrics>,
}

impl DisplayAs for CountingExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingExec")
    }
}

impl ExecutionPlan for CountingExec {
    fn name(&self) -> &str {
        "CountingExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let stream = self.input.execute(partition, context)?;
        let schema = stream.schema();
        let metrics = Arc::clone(&self.metrics);
        let scan = Arc::clone(&self.scan);
        metrics.touch();
        let cancel = metrics.cancel.clone();
        let counted = stream.inspect(move |batch| {
            if let Ok(batch) = batch {
                scan.add(batch.num_rows(), batch.get_array_memory_size());
                metrics.touch();
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            cancellable(counted, cancel),
        )))
    }
}

/// Ends `stream` with an error as soon as `cancel` fires, even while it waits for its next batch.
fn cancellable<S, T>(
    stream: S,
    cancel: CancellationToken,
) -> impl Stream<Item = DfResult<T>> + Send + 'static
where
    S: Stream<Item = DfResult<T>> + Send + Unpin + 'static,
    T: Send + 'static,
{
    futures::stream::unfold(Some((stream, cancel)), |state| async move {
        let (mut stream, cancel) = state?;
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Some((
                Err(DataFusionError::External(Box::new(crate::Error::Cancelled))),
                None,
            )),
            item = stream.next() => item.map(|item| (item, Some((stream, cancel)))),
        }
    })
}
