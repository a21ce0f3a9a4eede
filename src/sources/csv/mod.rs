//! `csv` source: delimited text files with a header row, schema inferred by DataFusion.
//! Files are read in batches; nothing is loaded whole.

pub mod config;

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::prelude::{CsvReadOptions, SessionContext};

use crate::error::{Error, Result};
use crate::pipeline::project::Project;
use crate::sources::Source;
use config::CsvSourceSpec;

/// Reads CSV files.
#[derive(Debug)]
pub struct CsvSource {
    step: String,
    location: String,
    has_header: bool,
    delimiter: u8,
}

impl CsvSource {
    /// A CSV source for a step; the delimiter must be one ASCII character.
    pub fn new(project: &Project, step: &str, spec: &CsvSourceSpec) -> Result<Self> {
        let delimiter = u8::try_from(spec.delimiter)
            .ok()
            .filter(u8::is_ascii)
            .ok_or_else(|| {
                Error::step(
                    step,
                    format!("delimiter {:?} is not one ASCII character", spec.delimiter),
                )
            })?;
        Ok(CsvSource {
            step: step.to_string(),
            location: project.location(&spec.path),
            has_header: spec.has_header,
            delimiter,
        })
    }
}

#[async_trait]
impl Source for CsvSource {
    async fn open(&self, ctx: &SessionContext) -> Result<Arc<dyn TableProvider>> {
        let options = CsvReadOptions::new()
            .has_header(self.has_header)
            .delimiter(self.delimiter);
        let df = ctx
            .read_csv(self.location.as_str(), options)
            .await
            .map_err(|e| Error::step(&self.step, format!("cannot read {}: {e}", self.location)))?;
        Ok(df.into_view())
    }
}
