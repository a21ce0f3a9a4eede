//! `parquet` source: a file, a folder or a glob of Parquet files, read by DataFusion.
//! Row groups stream in batches; projections and filters are pushed into the scan. INT96
//! timestamps (what Spark writes by default) are read as Timestamp(µs, "UTC"), exact over
//! 0001..9999 (see [`read_int96_as_spark`]).

pub mod config;

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::error::{Error, Result};
use crate::pipeline::project::Project;
use crate::sources::{Source, read_int96_as_spark};
use config::FileSourceSpec;

/// Reads Parquet files.
#[derive(Debug)]
pub struct ParquetSource {
    step: String,
    location: String,
}

impl ParquetSource {
    /// A Parquet source for a step.
    pub fn new(project: &Project, step: &str, spec: &FileSourceSpec) -> Self {
        ParquetSource {
            step: step.to_string(),
            location: project.location(&spec.path),
        }
    }
}

#[async_trait]
impl Source for ParquetSource {
    async fn open(&self, ctx: &SessionContext) -> Result<Arc<dyn TableProvider>> {
        read_int96_as_spark(ctx);
        let df = ctx
            .read_parquet(self.location.as_str(), ParquetReadOptions::default())
            .await
            .map_err(|e| Error::step(&self.step, format!("cannot read {}: {e}", self.location)))?;
        Ok(df.into_view())
    }
}
