//! `run_pipeline`: a pipeline file planned and run in-process, as `bridge run` does, returning
//! the run's summary (the CLI's `--output json`).

use std::path::{Path, PathBuf};

use bridge::pipeline::{Plan, PlanOptions, Project, RunOptions};
use pyo3::prelude::*;

use crate::connection::Connection;
use crate::errors::to_py;
use crate::runtime::runtime;

/// The project a pipeline file belongs to: the folder above `pipelines/` when the file is in
/// one, else the current directory (as `bridge run` without `--root`).
fn project_root(pipeline: &Path) -> PathBuf {
    let folder = pipeline.parent().filter(|p| !p.as_os_str().is_empty());
    match folder {
        Some(f) if f.file_name().is_some_and(|n| n == "pipelines") => f
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        _ => PathBuf::from("."),
    }
}

/// Runs the pipeline at `path`; returns its summary as JSON text.
#[pyfunction]
#[pyo3(signature = (path, country=None, params=Vec::new(), root=None, connection=None))]
pub fn run_pipeline(
    py: Python<'_>,
    path: PathBuf,
    country: Option<String>,
    params: Vec<(String, String)>,
    root: Option<PathBuf>,
    connection: Option<PyRef<'_, Connection>>,
) -> PyResult<String> {
    let mut project = Project::new(root.unwrap_or_else(|| project_root(&path)));
    if let Some(c) = &connection {
        project = project.with_sqlserver(c.settings.clone());
    }
    let options = PlanOptions { country, params };
    py.detach(|| {
        runtime().block_on(async {
            let plan = Plan::from_file(&project, &path, &options)?;
            let summary =
                bridge::pipeline::run::run(&project, &plan, &RunOptions::default()).await?;
            Ok(serde_json::to_string(&summary).expect("a run summary serialises"))
        })
    })
    .map_err(to_py)
}
