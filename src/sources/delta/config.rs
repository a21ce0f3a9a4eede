//! The `delta` source's configuration: a Delta table by location, optionally at a version.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Access;
use crate::error::Result;
use crate::pipeline::resources::{Declaring, ResourceContext};
use crate::sources::{Source, SourceConfig, SourceContext};

/// A Delta table source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeltaSourceSpec {
    /// Table location: a local path (relative to the project root) or a URL.
    pub path: String,
    /// Read this table version instead of the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

impl SourceConfig for DeltaSourceSpec {
    /// The table: a lakehouse table under `lakehouse_root`, else its location.
    fn resources(&self, cx: &ResourceContext<'_>) -> Declaring {
        Ok(vec![(cx.delta(&self.path)?, Access::Read, false)])
    }

    fn build(&self, cx: &SourceContext<'_>) -> Result<Box<dyn Source>> {
        Ok(Box::new(super::DeltaSource::new(
            cx.project,
            &cx.step.id,
            self,
        )))
    }
}
