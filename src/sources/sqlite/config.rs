//! The `sqlite` source's configuration: a query (or table) on a SQLite file, optionally seeded.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Access;
use crate::error::Result;
use crate::pipeline::resources::{Declaring, Resource, ResourceContext};
use crate::sources::{QueryText, Source, SourceConfig, SourceContext};
use crate::sql::Dialect;

/// A SQLite query source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqliteSourceSpec {
    /// Path of the database file, relative to the project root.
    pub database: String,
    /// SQL file to run (under `queries/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Inline SQL to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// A whole table to read (`SELECT *`), as an alternative to `query`/`sql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Rows per Arrow batch (default 8192).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// SQL script that creates the database when the file does not exist yet (demo and dev databases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
}

impl SourceConfig for SqliteSourceSpec {
    fn query(&self) -> Option<QueryText<'_>> {
        Some(QueryText::new(
            "sqlite",
            Dialect::Sqlite,
            &self.query,
            &self.sql,
            &self.table,
        ))
    }

    /// The database file and the seed script are read; a seeded database may be created.
    fn resources(&self, cx: &ResourceContext<'_>) -> Declaring {
        let database = Resource::Location(cx.place(&self.database)?);
        let mut uses = vec![(database.clone(), Access::Read, false)];
        if let Some(seed) = &self.seed {
            uses.push((Resource::Location(cx.place(seed)?), Access::Read, false));
            // A missing database is created from the seed.
            uses.push((database, Access::Write, false));
        }
        Ok(uses)
    }

    fn build(&self, cx: &SourceContext<'_>) -> Result<Box<dyn Source>> {
        Ok(Box::new(super::SqliteSource::new(
            cx.project, cx.step, self,
        )?))
    }
}
