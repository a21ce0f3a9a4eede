//! `bridge validate`: plans every pipeline for every country and renders every query, offline.
//! Collects all problems instead of stopping at the first, so one run lists everything to fix.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Location, Result};
use crate::pipeline::plan::{Plan, PlanOptions};
use crate::pipeline::project::{Project, pipeline_files_in};
use crate::pipeline::render::Renderer;
use crate::pipeline::schedule::Schedule;
use crate::pipeline::spec::parse_pipeline;
use crate::sql::Dialect;

/// What validation looked at and what it found.
#[derive(Debug, Default)]
pub struct ValidationReport {
    /// Pipeline files checked.
    pub pipelines: Vec<PathBuf>,
    /// Query files checked.
    pub queries: usize,
    /// Problems, each once, as printed.
    pub errors: Vec<String>,
}

/// Validates the given pipeline files (or folders of them); with no paths, every pipeline under
/// `pipelines/` and every query under `queries/`.
pub fn validate(project: &Project, paths: &[PathBuf]) -> Result<ValidationReport> {
    let mut report = ValidationReport::default();
    let countries = project.countries()?;
    let runs: Vec<Option<String>> = if countries.is_empty() {
        vec![None]
    } else {
        countries.iter().cloned().map(Some).collect()
    };
    let mut files = Vec::new();
    if paths.is_empty() {
        files = project.pipeline_files()?;
    } else {
        for path in paths {
            if path.is_dir() {
                files.extend(pipeline_files_in(path)?);
            } else {
                files.push(path.clone());
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut push = |report: &mut ValidationReport, e: Error| {
        let text = e.to_string();
        if seen.insert(text.clone()) {
            report.errors.push(text);
        }
    };
    for file in &files {
        for country in &runs {
            let options = PlanOptions {
                country: country.clone(),
                params: Vec::new(),
            };
            if let Err(e) = Plan::from_file(project, file, &options) {
                push(&mut report, e);
            }
        }
        for e in check_serve_fields(project, file, &countries) {
            push(&mut report, e);
        }
        report.pipelines.push(file.clone());
    }
    if paths.is_empty() {
        let mut checked = BTreeSet::new();
        for country in &runs {
            let renderer = match project.config_params(country.as_deref()) {
                Ok(mut params) => {
                    params.insert("run_date".into(), "2000-01-01".into());
                    if let Some(c) = country {
                        params.insert("country".into(), c.clone().into());
                    }
                    Renderer::new(params)
                }
                Err(e) => {
                    push(&mut report, e);
                    continue;
                }
            };
            for path in query_files(project, country.as_deref()) {
                checked.insert(path.clone());
                if let Err(e) = check_query(project, &renderer, &path) {
                    push(&mut report, e);
                }
            }
        }
        report.queries = checked.len();
    }
    Ok(report)
}

/// Checks what only serve mode reads: `schedule:` parses, `countries:` have parameter files.
fn check_serve_fields(project: &Project, file: &Path, known: &[String]) -> Vec<Error> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new(); // reported by planning
    };
    let display = project.display_path(file);
    let Ok(spec) = parse_pipeline(&display, &text) else {
        return Vec::new();
    };
    let at = |key: &str| {
        let line = text.lines().position(|l| l.starts_with(key));
        Location::at(&display, line.map(|l| l + 1))
    };
    let mut errors = Vec::new();
    if let Some(expr) = &spec.schedule
        && let Err(message) = Schedule::parse(expr)
    {
        errors.push(Error::Spec {
            location: at("schedule:"),
            message: format!("schedule: {message}"),
        });
    }
    for country in &spec.countries {
        if !known.iter().any(|k| k.eq_ignore_ascii_case(country)) {
            errors.push(Error::Spec {
                location: at("countries:"),
                message: format!(
                    "countries: `{country}` has no config/countries/{country}.yaml (countries: {})",
                    known.join(", ")
                ),
            });
        }
    }
    errors
}

/// Every `.sql` file under `queries/common/` and the country's folder, subfolders included.
fn query_files(project: &Project, country: Option<&str>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["common"]
        .into_iter()
        .chain(country)
        .flat_map(|dir| walkdir::WalkDir::new(project.queries_dir().join(dir)))
        .filter_map(std::result::Result::ok)
        .map(walkdir::DirEntry::into_path)
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
}

fn check_query(project: &Project, renderer: &Renderer, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let location = Location::at(project.display_path(path), Some(1));
    renderer
        .render_sql(&location, &text, Dialect::Sqlite)
        .map(|_| ())
}
