//! Sink kinds: each one writes a step's rows in two phases, staged then committed. One folder
//! per kind: its configuration ([`SinkConfig`]) checks itself, declares what it writes and builds
//! the running [`Sink`].
//! A run locks every output ([`lock`]), stages every sink; only when all staged cleanly are they
//! committed, in [`CommitPhase`] order, so a failed run publishes nothing and a run that fails
//! while committing can say exactly which outputs it committed.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::datatypes::Schema;
use deltalake::datafusion::prelude::{DataFrame, SessionContext};

use crate::error::{Error, Result};
use crate::output_types::SubMicrosecond;
use crate::pipeline::metrics::StepMetrics;
use crate::pipeline::plan::PlannedStep;
use crate::pipeline::project::Project;
use crate::pipeline::resources::{Declaring, ResourceContext};
use crate::pipeline::run::RunInfo;
use crate::pipeline::spec::FieldError;

pub mod delta;
pub mod lock;
pub mod sqlserver;
pub mod typed;
pub mod volume;

/// Writes a step's output.
#[async_trait]
pub trait Sink: Send + Sync + Debug {
    /// Checks the configuration against the input's schema before anything is written.
    fn check(&self, schema: &Schema) -> Result<()>;

    /// Canonical id of what this sink writes (e.g. `file:///data/out/sales`,
    /// `sqlserver://host:1433/db/dbo.orders`): the key of its [`lock`].
    fn output(&self) -> Result<String>;

    /// Streams the input somewhere readers cannot see yet and returns what to commit.
    async fn stage(
        &self,
        ctx: &SessionContext,
        input: DataFrame,
        metrics: Arc<StepMetrics>,
    ) -> Result<Box<dyn StagedOutput>>;
}

/// When an output commits, relative to the others of its run: in this order, so the commits most
/// likely to fail come first and SQL Server's `COMMIT`, the one that can still be undone (rolled
/// back) until it is sent, comes last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CommitPhase {
    /// The commit still streams the data (Delta): it may fail for data reasons.
    WritesData,
    /// The data is in place; the commit publishes it (a volume folder's `_SUCCESS`).
    Publishes,
    /// The data is written in an open transaction; the commit sends `COMMIT` (SQL Server).
    Transaction,
}

/// Output written but not yet visible.
#[async_trait]
pub trait StagedOutput: Send + Sync {
    /// When this output commits relative to the others.
    fn commit_phase(&self) -> CommitPhase;

    /// What the commit changes, for messages (e.g. `volume folder /data/out/sales`).
    fn target(&self) -> String;

    /// Makes the output visible; returns the locations written.
    async fn commit(self: Box<Self>) -> Result<Vec<String>>;

    /// Removes what was staged; best effort, errors are logged.
    async fn abort(self: Box<Self>);
}

/// What a sink kind's configuration (the struct behind its `type:` in a pipeline file) does:
/// name its input, check itself, say what it writes, and build the running [`Sink`]. Only
/// [`from`], [`describe`], [`resources`] and [`build`] are required.
///
/// [`from`]: SinkConfig::from
/// [`describe`]: SinkConfig::describe
/// [`resources`]: SinkConfig::resources
/// [`build`]: SinkConfig::build
pub trait SinkConfig: Send + Sync + Debug {
    /// The step whose rows are written.
    fn from(&self) -> &str;

    /// Where and how it writes, for `bridge plan` (e.g. `dbo.orders (sqlserver, Upsert)`).
    fn describe(&self) -> String;

    /// What it does with timestamp digits below the microsecond when it writes for Databricks;
    /// `None` (the default) for sinks that do not write for Databricks.
    fn sub_microsecond(&self) -> Option<SubMicrosecond> {
        None
    }

    /// Checks the rendered fields that need no I/O (column names, relative paths); the error
    /// names the field. `bridge validate` refuses what this refuses.
    fn check(&self) -> std::result::Result<(), FieldError> {
        Ok(())
    }

    /// What the step writes: authorisation and the one-writer-per-output check use only this.
    fn resources(&self, cx: &ResourceContext<'_>) -> Declaring;

    /// Lowers the number of rows the sink may delete to `limit` (an API caller's grant);
    /// sinks that do not delete rows by key ignore it (the default).
    fn cap_deletes(&mut self, limit: u64) {
        let _ = limit;
    }

    /// Builds the running sink.
    fn build(&self, cx: &SinkContext<'_>) -> Result<Box<dyn Sink>>;
}

/// Everything a sink kind needs to build its running [`Sink`].
pub struct SinkContext<'a> {
    /// The project (root, settings).
    pub project: &'a Project,
    /// The planned step (its id and location).
    pub step: &'a PlannedStep,
    /// The run (pipeline, country, run id), recorded in manifests and file names.
    pub run: &'a RunInfo,
}

/// Builds the sink of a planned step.
pub fn build(project: &Project, step: &PlannedStep, run: &RunInfo) -> Result<Box<dyn Sink>> {
    let spec = step
        .spec
        .sink
        .as_ref()
        .ok_or_else(|| Error::step(&step.id, "not a sink step"))?;
    spec.config().build(&SinkContext { project, step, run })
}

/// Checks that the named columns exist in the sink's input.
pub(crate) fn check_columns<'a>(
    step: &str,
    schema: &Schema,
    field: &str,
    columns: impl IntoIterator<Item = &'a String>,
) -> Result<()> {
    for column in columns {
        if schema.field_with_name(column).is_err() {
            let available: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(Error::step(
                step,
                format!(
                    "{field}: column `{column}` is not in the input (columns: {})",
                    available.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
