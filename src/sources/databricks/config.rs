//! The `databricks` source's configuration: a Databricks SQL query or Unity Catalog table, run
//! on a SQL warehouse.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::{Access, LakehouseTable};
use crate::error::Result;
use crate::pipeline::resources::{Declaring, Resource, ResourceContext};
use crate::sources::{QueryText, Source, SourceConfig, SourceContext};
use crate::sql::Dialect;

/// A Databricks SQL source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabricksSourceSpec {
    /// SQL file to run (under `queries/`); values must use `{{ name | bind }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Inline Databricks SQL to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// A whole table to read (`catalog.schema.table`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// SQL warehouse to run on (default: `databricks.warehouse_id` in config/defaults.yaml, the
    /// profile's `warehouse_id`, or `DATABRICKS_WAREHOUSE_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warehouse_id: Option<String>,
    /// How results come back: `external_links` (default: Arrow files behind presigned links,
    /// any size) or `inline` (JSON chunks in the API answers, at most 25 MiB in all).
    #[serde(default, skip_serializing_if = "is_default")]
    pub disposition: ResultDisposition,
}

/// How a `databricks` source's result is fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultDisposition {
    /// `EXTERNAL_LINKS` + `ARROW_STREAM`.
    #[default]
    ExternalLinks,
    /// `INLINE` + `JSON_ARRAY`.
    Inline,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl SourceConfig for DatabricksSourceSpec {
    fn query(&self) -> Option<QueryText<'_>> {
        Some(QueryText::new(
            "databricks",
            Dialect::Databricks,
            &self.query,
            &self.sql,
            &self.table,
        ))
    }

    /// The table, or every lakehouse table the query reads.
    fn resources(&self, cx: &ResourceContext<'_>) -> Declaring {
        cx.query_tables(self.table.as_ref(), Dialect::Databricks)?
            .iter()
            .map(|n| {
                let table = LakehouseTable::parse(n)?;
                Ok((Resource::LakehouseTable(table), Access::Read, false))
            })
            .collect()
    }

    fn build(&self, cx: &SourceContext<'_>) -> Result<Box<dyn Source>> {
        Ok(Box::new(super::DatabricksSource::new(
            cx.step,
            self,
            cx.project.databricks_settings()?,
        )?))
    }
}
