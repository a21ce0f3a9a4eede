//! `parquet` source: a file, a folder or a glob of Parquet files, read by DataFusion.
//! Row groups stream in batches; projections and filters are pushed into the scan.

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::error::{Error, Result};
use crate::pipeline::project::Project;
use crate::pipeline::spec::FileSourceSpec;
use crate::sources::{Source, location_string};

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
            location: location_string(project, &spec.path),
        }
    }
}

#[async_trait]
impl Source for ParquetSource {
    async fn open(&self, ctx: &SessionContext) -> Result<Arc<dyn TableProvider>> {
        let df = ctx
            .read_parquet(self.location.as_str(), ParquetReadOptions::default())
            .await
            .map_err(|e| Error::step(&self.step, format!("cannot read {}: {e}", self.location)))?;
        Ok(df.into_view())
    }
}
