//! The `parquet` source's configuration: a file, a folder or a glob of Parquet files.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Access;
use crate::error::Result;
use crate::pipeline::resources::{Declaring, Resource, ResourceContext, glob_base};
use crate::sources::{Source, SourceConfig, SourceContext};

/// A Parquet source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceSpec {
    /// File, directory or glob, relative to the project root.
    pub path: String,
}

impl SourceConfig for FileSourceSpec {
    /// The files, or the folder a glob reads under.
    fn resources(&self, cx: &ResourceContext<'_>) -> Declaring {
        let place = cx.place(glob_base(&self.path))?;
        Ok(vec![(Resource::Location(place), Access::Read, false)])
    }

    fn build(&self, cx: &SourceContext<'_>) -> Result<Box<dyn Source>> {
        Ok(Box::new(super::ParquetSource::new(
            cx.project,
            &cx.step.id,
            self,
        )))
    }
}
