//! `delta` sink: appends to or overwrites a Delta table in one delta-rs commit.
//! The write streams the input plan; it runs in the commit phase, after every other sink staged,
//! and first among the commits ([`CommitPhase::WritesData`]). Columns are written as the output
//! type policy says ([`crate::output_types`]): `timestamp` for instants, `timestamp_ntz` (with
//! its table feature, on new tables) for wall-clock times, no unsigned or nanosecond types.

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::datatypes::Schema;
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use deltalake::protocol::SaveMode;

use crate::error::{Error, Result};
use crate::output_types::{OutputSchema, Target};
use crate::pipeline::metrics::{CountingTable, StepMetrics};
use crate::pipeline::project::Project;
use crate::pipeline::spec::{DeltaSinkSpec, DeltaWriteMode};
use crate::sinks::lock::canonical_local;
use crate::sinks::typed::TypedTable;
use crate::sinks::{CommitPhase, RunInfo, Sink, StagedOutput, check_columns};
use crate::sources::location_string;

/// Writes a Delta table.
#[derive(Debug)]
pub struct DeltaSink {
    step: String,
    spec: DeltaSinkSpec,
    location: String,
    run: RunInfo,
}

impl DeltaSink {
    /// A Delta sink for a step.
    pub fn new(project: &Project, step: &str, spec: &DeltaSinkSpec, run: &RunInfo) -> Self {
        DeltaSink {
            step: step.to_string(),
            spec: spec.clone(),
            location: location_string(project, &spec.path),
            run: run.clone(),
        }
    }
}

#[async_trait]
impl Sink for DeltaSink {
    fn check(&self, schema: &Schema) -> Result<()> {
        OutputSchema::plan(&self.step, schema, Target::Delta, self.spec.sub_microsecond)?;
        check_columns(
            &self.step,
            schema,
            "partition_by",
            self.spec.partition_by.iter(),
        )
    }

    fn output(&self) -> Result<String> {
        Ok(if self.location.contains("://") {
            format!("delta:{}", self.location.trim_end_matches('/'))
        } else {
            format!(
                "delta:file://{}",
                canonical_local(std::path::Path::new(&self.location)).display()
            )
        })
    }

    async fn stage(
        &self,
        ctx: &SessionContext,
        input: DataFrame,
        metrics: Arc<StepMetrics>,
    ) -> Result<Box<dyn StagedOutput>> {
        // The input as Databricks reads it; counting wraps it so rows written are known without
        // reading the table back.
        let typed = TypedTable::new(
            input.into_view(),
            &self.step,
            Target::Delta,
            self.spec.sub_microsecond,
            Arc::clone(&self.run.truncations),
        )?;
        let counted = ctx
            .read_table(Arc::new(CountingTable::new(
                Arc::new(typed),
                Arc::clone(&metrics),
            )))
            .map_err(|e| Error::step(&self.step, e))?;
        Ok(Box::new(PendingDeltaWrite {
            step: self.step.clone(),
            location: self.location.clone(),
            mode: self.spec.mode,
            partition_by: self.spec.partition_by.clone(),
            ctx: ctx.clone(),
            input: counted,
        }))
    }
}

/// A Delta write that happens when the run commits.
struct PendingDeltaWrite {
    step: String,
    location: String,
    mode: DeltaWriteMode,
    partition_by: Vec<String>,
    ctx: SessionContext,
    input: DataFrame,
}

#[async_trait]
impl StagedOutput for PendingDeltaWrite {
    fn commit_phase(&self) -> CommitPhase {
        CommitPhase::WritesData
    }

    fn target(&self) -> String {
        format!("Delta table {}", self.location)
    }

    async fn commit(self: Box<Self>) -> Result<Vec<String>> {
        // The Delta kernel's errors can carry a backtrace after their first line: people see
        // the first line only.
        let fail = |e: &dyn std::fmt::Display| {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default().trim_end();
            Error::step(
                &self.step,
                format!("Delta table {}: {first}", self.location),
            )
        };
        if !self.location.contains("://") {
            std::fs::create_dir_all(&self.location).map_err(|e| Error::io(&self.location, e))?;
        }
        let url = deltalake::ensure_table_uri(&self.location).map_err(|e| fail(&e))?;
        let mut table = deltalake::DeltaTableBuilder::from_url(url)
            .and_then(|b| b.build())
            .map_err(|e| fail(&e))?;
        // Load only a table that exists: loading a new location logs the kernel's "No files in
        // log segment" as an error before delta-rs treats it as "create".
        if table
            .verify_deltatable_existence()
            .await
            .map_err(|e| fail(&e))?
        {
            table.load().await.map_err(|e| fail(&e))?;
        }
        let mode = match self.mode {
            DeltaWriteMode::Append => SaveMode::Append,
            DeltaWriteMode::Overwrite => SaveMode::Overwrite,
        };
        let mut write = table
            .write(Vec::new())
            .with_input_plan(self.input.logical_plan().clone())
            .with_session_state(Arc::new(self.ctx.state()))
            .with_save_mode(mode);
        if !self.partition_by.is_empty() {
            write = write.with_partition_columns(self.partition_by.clone());
        }
        let table = write.await.map_err(|e| fail(&e))?;
        let version = table.version().unwrap_or_default();
        Ok(vec![format!("{} (version {version})", self.location)])
    }

    async fn abort(self: Box<Self>) {}
}
