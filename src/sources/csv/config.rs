//! The `csv` source's configuration: a file, a folder or a glob of CSV files.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Access;
use crate::error::Result;
use crate::pipeline::resources::{Declaring, Resource, ResourceContext, glob_base};
use crate::sources::{Source, SourceConfig, SourceContext};

/// A CSV source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvSourceSpec {
    /// File, directory or glob, relative to the project root.
    pub path: String,
    /// Whether the first line holds column names (default true).
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// Field delimiter, one ASCII character (default `,`).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
}

fn default_true() -> bool {
    true
}

fn default_delimiter() -> char {
    ','
}

impl SourceConfig for CsvSourceSpec {
    /// The files, or the folder a glob reads under.
    fn resources(&self, cx: &ResourceContext<'_>) -> Declaring {
        let place = cx.place(glob_base(&self.path))?;
        Ok(vec![(Resource::Location(place), Access::Read, false)])
    }

    fn build(&self, cx: &SourceContext<'_>) -> Result<Box<dyn Source>> {
        Ok(Box::new(super::CsvSource::new(
            cx.project,
            &cx.step.id,
            self,
        )?))
    }
}
