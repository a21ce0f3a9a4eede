//! `bridge extract`, the original CLI's command: every query of a country to a destination folder.
//! It writes an ordinary pipeline (one source and one volume sink per query) and plans it.
//!
//! The queries run on SQL Server when `extract_source: sqlserver` is set in `config/` (as the
//! original system did), otherwise on the embedded SQLite database `extract_database`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Location, Result};
use crate::pipeline::plan::{Plan, PlanOptions};
use crate::pipeline::project::Project;
use crate::pipeline::spec::{
    Compression, PipelineSpec, SinkSpec, SourceSpec, SqlServerSourceSpec, SqliteSourceSpec,
    StepSpec, VolumeSchemaEvolution, VolumeSinkSpec,
};

/// Parameter choosing where `extract` runs the queries: `sqlite` (default) or `sqlserver`.
pub const EXTRACT_SOURCE_PARAM: &str = "extract_source";

/// Parameter naming the SQLite database `extract` reads (set in `config/defaults.yaml`).
pub const EXTRACT_DATABASE_PARAM: &str = "extract_database";

/// Optional parameter naming a SQL script that creates that database when it is missing.
pub const EXTRACT_SEED_PARAM: &str = "extract_seed";

/// Builds the extraction pipeline of a country: `{destination}/{country}/{query}/{query}-{run}-00000.parquet`.
pub fn extract_pipeline(
    project: &Project,
    country: &str,
    destination: &str,
) -> Result<PipelineSpec> {
    let country = country.to_lowercase();
    let queries = project.list_queries(Some(&country))?;
    if queries.is_empty() {
        return Err(Error::Spec {
            location: Location::file(project.display_path(&project.queries_dir().join(&country))),
            message: format!("no .sql files for country `{country}` (nor in queries/common/)"),
        });
    }
    let params = project.config_params(Some(&country))?;
    let defaults =
        || Location::file(project.display_path(&project.config_dir().join("defaults.yaml")));
    let source: Box<dyn Fn(&str) -> SourceSpec> = match params
        .get(EXTRACT_SOURCE_PARAM)
        .map(|v| v.as_str().unwrap_or_default())
    {
        Some("sqlserver") => Box::new(|query: &str| {
            SourceSpec::Sqlserver(SqlServerSourceSpec {
                query: Some(query.to_string()),
                sql: None,
                table: None,
                batch_size: None,
                partition: None,
                incremental: None,
                connection: None,
                keep_offsets: false,
            })
        }),
        None | Some("sqlite") => {
            let database = params
                .get(EXTRACT_DATABASE_PARAM)
                .and_then(|v| v.as_str())
                .ok_or_else(|| Error::Spec {
                    location: defaults(),
                    message: format!(
                        "missing parameter `{EXTRACT_DATABASE_PARAM}`: the SQLite database to extract from (or set `{EXTRACT_SOURCE_PARAM}: sqlserver`)"
                    ),
                })?
                .to_string();
            let seed = params
                .get(EXTRACT_SEED_PARAM)
                .and_then(|v| v.as_str())
                .map(str::to_string);
            Box::new(move |query: &str| {
                SourceSpec::Sqlite(SqliteSourceSpec {
                    database: database.clone(),
                    query: Some(query.to_string()),
                    sql: None,
                    table: None,
                    batch_size: None,
                    seed: seed.clone(),
                })
            })
        }
        Some(other) => {
            return Err(Error::Spec {
                location: defaults(),
                message: format!(
                    "parameter `{EXTRACT_SOURCE_PARAM}` is `{other}`; expected `sqlite` or `sqlserver`"
                ),
            });
        }
    };
    let mut steps = Vec::new();
    for (name, _) in &queries {
        let stem = Path::new(name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.clone());
        let id: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let id = if id.starts_with(|c: char| c.is_ascii_digit()) {
            format!("q_{id}")
        } else {
            id
        };
        steps.push(StepSpec {
            id: id.clone(),
            description: Some(format!("query {name}")),
            depends_on: Vec::new(),
            source: Some(source(name)),
            transform: None,
            sink: None,
        });
        steps.push(StepSpec {
            id: format!("{id}_to_volume"),
            description: None,
            depends_on: Vec::new(),
            source: None,
            transform: None,
            sink: Some(SinkSpec::Volume(VolumeSinkSpec {
                from: id.clone(),
                destination: destination.to_string(),
                path: format!("{country}/{stem}"),
                file_name: Some(stem.clone()),
                compression: Compression::Zstd,
                row_group_size: None,
                max_rows_per_file: None,
                partition_by: None,
                sub_microsecond: Default::default(),
                // An extract folder follows its query: a changed column is written (and listed
                // in the run summary), not refused.
                schema_evolution: VolumeSchemaEvolution::Replace,
            })),
        });
    }
    Ok(PipelineSpec {
        name: format!("extract-{country}"),
        description: Some(format!("every query of {country} to {destination}")),
        schedule: None,
        countries: Vec::new(),
        params: BTreeMap::new(),
        max_parallel: None,
        steps,
    })
}

/// Plans the extraction of a country.
pub fn extract_plan(
    project: &Project,
    country: &str,
    destination: &str,
    params: Vec<(String, String)>,
) -> Result<Plan> {
    let spec = extract_pipeline(project, country, destination)?;
    let text = serde_yaml::to_string(&spec).expect("pipeline specs serialize");
    let options = PlanOptions {
        country: Some(country.to_lowercase()),
        params,
    };
    Plan::from_text(project, Path::new("<extract>"), &text, &options)
}
