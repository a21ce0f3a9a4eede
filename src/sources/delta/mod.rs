//! `delta` source: a Delta table (latest or a given version) read through delta-rs' DataFusion provider.
//! Only the files of the snapshot are scanned, with projection and partition pruning. INT96
//! timestamps in the table's files (Spark's default) are read as microseconds, exact over
//! 0001..9999 (see [`read_int96_as_spark`]).

pub mod config;

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::prelude::SessionContext;

use crate::error::{Error, Result};
use crate::pipeline::project::Project;
use crate::sources::{Source, read_int96_as_spark};
use config::DeltaSourceSpec;

/// Reads a Delta table.
#[derive(Debug)]
pub struct DeltaSource {
    step: String,
    location: String,
    version: Option<u64>,
}

impl DeltaSource {
    /// A Delta source for a step.
    pub fn new(project: &Project, step: &str, spec: &DeltaSourceSpec) -> Self {
        DeltaSource {
            step: step.to_string(),
            location: project.location(&spec.path),
            version: spec.version,
        }
    }
}

#[async_trait]
impl Source for DeltaSource {
    async fn open(&self, ctx: &SessionContext) -> Result<Arc<dyn TableProvider>> {
        read_int96_as_spark(ctx);
        let fail = |e: &dyn std::fmt::Display| {
            Error::step(
                &self.step,
                format!("cannot open Delta table {}: {e}", self.location),
            )
        };
        let url = deltalake::ensure_table_uri(&self.location).map_err(|e| fail(&e))?;
        let table = match self.version {
            Some(v) => deltalake::open_table_with_version(url, v).await,
            None => deltalake::open_table(url).await,
        }
        .map_err(|e| fail(&e))?;
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| fail(&e))?;
        table.table_provider().await.map_err(|e| fail(&e))
    }
}
