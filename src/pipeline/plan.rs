//! Compiles a pipeline file into a [`Plan`]: parameters resolved, fields and SQL rendered, steps in a DAG.
//! Planning touches no data and no network; `bridge plan` and `bridge validate` stop here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use deltalake::datafusion::sql::parser::DFParser;
use deltalake::datafusion::sql::resolve::resolve_table_references;
use serde::Serialize;

use crate::auth::Access;
use crate::error::{Error, Location, Result};
use crate::pipeline::project::{Params, Project};
use crate::pipeline::render::{RenderedSql, Renderer, Where};
use crate::pipeline::resources::{DeclareError, Declared, Resource, ResourceContext, Use};
use crate::pipeline::spec::{PipelineSpec, StepKind, StepSpec, parse_pipeline, step_line};
use crate::sql::{Dialect, validate_ident};

/// Default bound on steps running at the same time.
pub const DEFAULT_MAX_PARALLEL: usize = 4;

/// What a run of a pipeline is asked to do.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Country whose `config/countries/{country}.yaml` and `queries/{country}/` are used.
    pub country: Option<String>,
    /// `--param k=v` overrides, applied last.
    pub params: Vec<(String, String)>,
}

/// A compiled pipeline: every field rendered, every SQL text resolved, steps in dependency order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The pipeline's name.
    pub name: String,
    /// The pipeline file, as given.
    pub file: PathBuf,
    /// Cron schedule, for serve mode.
    pub schedule: Option<String>,
    /// Country of the run, if any.
    pub country: Option<String>,
    /// Parameters the templates saw.
    pub params: Params,
    /// Steps in a topological order.
    pub steps: Vec<PlannedStep>,
    /// Bound on concurrently running steps.
    pub max_parallel: usize,
    /// The renderer, kept for redacting secrets from anything printed.
    pub renderer: Renderer,
    /// What every source and sink reads and writes (rendered names and locations).
    pub resources: Declared,
}

/// Whether a spec's text fields are templates (pipeline files) or data (specs built from a
/// request or an event, whose strings are never rendered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fields {
    Templates,
    Data,
}

/// One step of a plan.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    /// Step id (also its table name).
    pub id: String,
    /// Source, transform or sink.
    pub kind: StepKind,
    /// Steps that must finish (sinks) or be registered (sources, transforms) first.
    pub depends_on: Vec<String>,
    /// Where the step is declared.
    pub location: Location,
    /// The step's configuration with every text field rendered.
    pub spec: StepSpec,
    /// The step's SQL, rendered, when it has some.
    pub sql: Option<RenderedSql>,
    /// The SQL file the SQL came from, if any.
    pub query_file: Option<PathBuf>,
}

/// A printable summary of a plan (for `bridge plan --output json`).
#[derive(Debug, Serialize)]
pub struct PlanSummary<'a> {
    pub pipeline: &'a str,
    pub country: Option<&'a str>,
    pub params: &'a Params,
    pub steps: Vec<StepSummary<'a>>,
}

/// A step in a [`PlanSummary`].
#[derive(Debug, Serialize)]
pub struct StepSummary<'a> {
    pub id: &'a str,
    pub kind: StepKind,
    pub depends_on: &'a [String],
    pub sql: Option<String>,
    pub sql_params: Vec<String>,
    pub query_file: Option<String>,
    /// Where a sink writes.
    pub writes: Option<String>,
    /// What an incremental source resumes from (its mode and saved position), filled by
    /// [`Plan::incremental_state`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental: Option<String>,
}

impl Plan {
    /// Reads, renders and plans a pipeline file.
    pub fn from_file(project: &Project, file: &Path, options: &PlanOptions) -> Result<Plan> {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
        let display = project.display_path(file);
        Plan::from_text(project, &display, &text, options)
    }

    /// Plans a pipeline from its text; `file` is used in messages.
    pub fn from_text(
        project: &Project,
        file: &Path,
        text: &str,
        options: &PlanOptions,
    ) -> Result<Plan> {
        let spec = parse_pipeline(file, text).map_err(|e| with_template_hint(e, text))?;
        Plan::from_spec(project, file, text, spec, options)
    }

    /// Plans a pipeline given as a spec (parsed, or built in code). Text fields and SQL of the
    /// spec are rendered as templates like those of a file. `text` is the document the spec was
    /// parsed from, used to find the lines of steps in messages (`""` for specs built in code);
    /// `file` is used in messages.
    pub fn from_spec(
        project: &Project,
        file: &Path,
        text: &str,
        spec: PipelineSpec,
        options: &PlanOptions,
    ) -> Result<Plan> {
        Plan::build(project, file, text, spec, options, Fields::Templates)
    }

    /// Plans a spec built from what a request or an event carries: its text fields (paths,
    /// names, inline SQL) are data and are never rendered as templates; SQL files it names
    /// (under `queries/`, the operator's) are rendered as usual.
    pub fn from_data_spec(
        project: &Project,
        file: &Path,
        spec: PipelineSpec,
        options: &PlanOptions,
    ) -> Result<Plan> {
        Plan::build(project, file, "", spec, options, Fields::Data)
    }

    fn build(
        project: &Project,
        file: &Path,
        text: &str,
        spec: PipelineSpec,
        options: &PlanOptions,
        fields: Fields,
    ) -> Result<Plan> {
        let country = options.country.as_deref().map(str::to_lowercase);
        let params = resolve_params(project, &spec, country.as_deref(), &options.params)?;
        let renderer = Renderer::new(params.clone());

        let mut seen = BTreeMap::new();
        let mut steps = Vec::with_capacity(spec.steps.len());
        for step in &spec.steps {
            let location = Location::at(file, step_line(text, &step.id));
            validate_ident(&step.id)
                .ok()
                .filter(|parts| parts.len() == 1)
                .ok_or_else(|| Error::Spec {
                    location: location.clone(),
                    message: format!(
                        "step id `{}` must be a simple name (letters, digits, `_`); it is used as a table name",
                        step.id
                    ),
                })?;
            if seen.insert(step.id.clone(), ()).is_some() {
                return Err(Error::Plan {
                    location,
                    message: format!("duplicate step id `{}`", step.id),
                });
            }
            let kind = step.kind(file, text)?;
            steps.push(plan_step(
                project,
                &renderer,
                country.as_deref(),
                step,
                kind,
                location,
                fields,
            )?);
        }
        let steps = resolve_dependencies(steps)?;
        let resources = declare_resources(project, &params, &steps)?;
        Ok(Plan {
            name: spec.name,
            file: file.to_path_buf(),
            schedule: spec.schedule,
            country,
            params,
            steps,
            max_parallel: spec.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL).max(1),
            renderer,
            resources,
        })
    }

    /// A step by id.
    pub fn step(&self, id: &str) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The steps whose rows a step reads: a sink's `from`, a transform's tables (not the steps
    /// a sink only waits for).
    fn inputs<'a>(&'a self, step: &'a PlannedStep) -> Vec<&'a str> {
        match (&step.kind, step.spec.sink.as_ref()) {
            (StepKind::Sink, Some(sink)) => vec![sink.config().from()],
            (StepKind::Transform, _) => step
                .depends_on
                .iter()
                .filter(|d| self.step(d).is_some_and(|s| s.kind != StepKind::Sink))
                .map(String::as_str)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The sources whose rows reach a step, through any transforms.
    pub fn upstream_sources(&self, id: &str) -> Vec<String> {
        let mut found = BTreeSet::new();
        let mut todo: Vec<&str> = self.step(id).map(|s| self.inputs(s)).unwrap_or_default();
        let mut seen = BTreeSet::new();
        while let Some(next) = todo.pop() {
            if !seen.insert(next) {
                continue;
            }
            if let Some(step) = self.step(next) {
                if step.kind == StepKind::Source {
                    found.insert(step.id.clone());
                }
                todo.extend(self.inputs(step));
            }
        }
        found.into_iter().collect()
    }

    /// What a source does with digits below the microsecond: the strictest wish of the sinks
    /// its rows reach (`nanoseconds` over `error` over `truncate`).
    pub fn sub_microsecond_for(&self, source: &str) -> crate::output_types::SubMicrosecond {
        self.steps
            .iter()
            .filter(|s| s.kind == StepKind::Sink)
            .filter(|s| self.upstream_sources(&s.id).iter().any(|u| u == source))
            .filter_map(|s| {
                s.spec
                    .sink
                    .as_ref()
                    .and_then(|k| k.config().sub_microsecond())
            })
            .max()
            .unwrap_or_default()
    }

    /// A serializable view of the plan, with secrets redacted.
    pub fn summary(&self) -> PlanSummary<'_> {
        PlanSummary {
            pipeline: &self.name,
            country: self.country.as_deref(),
            params: &self.params,
            steps: self
                .steps
                .iter()
                .map(|s| StepSummary {
                    id: &s.id,
                    kind: s.kind,
                    depends_on: &s.depends_on,
                    sql: s.sql.as_ref().map(|q| self.renderer.redact(&q.text)),
                    sql_params: s
                        .sql
                        .as_ref()
                        .map(|q| {
                            q.params
                                .iter()
                                .map(|p| self.renderer.redact(&p.to_string()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    query_file: s.query_file.as_ref().map(|p| p.display().to_string()),
                    writes: s.spec.sink.as_ref().map(|sink| sink.config().describe()),
                    incremental: None,
                })
                .collect(),
        }
    }

    /// Fills each incremental source's `incremental` in `summary` from the project's saved
    /// state (`change_tracking, saved version 42`), as the next run would resume.
    pub fn incremental_state(
        &self,
        project: &Project,
        summary: &mut PlanSummary<'_>,
    ) -> Result<()> {
        let store = crate::pipeline::state::WatermarkStore::for_project(project.root());
        for step in &mut summary.steps {
            let Some(source) = self.step(step.id).and_then(|s| s.spec.source.as_ref()) else {
                continue;
            };
            step.incremental =
                source
                    .config()
                    .incremental_state(&crate::sources::StateContext {
                        store: &store,
                        pipeline: &self.name,
                        country: self.country.as_deref(),
                        step: step.id,
                    })?;
        }
        Ok(())
    }
}

/// Parameters in increasing precedence: built-ins, the pipeline's `params:`, `config/defaults.yaml`,
/// the country's file, then `--param`.
fn resolve_params(
    project: &Project,
    spec: &PipelineSpec,
    country: Option<&str>,
    overrides: &[(String, String)],
) -> Result<Params> {
    let mut params = Params::new();
    params.insert(
        "run_date".into(),
        chrono::Utc::now().format("%Y-%m-%d").to_string().into(),
    );
    params.insert("pipeline".into(), spec.name.clone().into());
    if let Some(country) = country {
        params.insert("country".into(), country.into());
    }
    params.extend(spec.params.clone());
    params.extend(project.config_params(country)?);
    for (k, v) in overrides {
        let value = serde_yaml::from_str::<serde_yaml::Value>(v)
            .ok()
            .filter(|v| !v.is_mapping() && !v.is_sequence() && !v.is_null())
            .unwrap_or_else(|| serde_yaml::Value::String(v.clone()));
        params.insert(k.clone(), value);
    }
    Ok(params)
}

fn with_template_hint(err: Error, text: &str) -> Error {
    match err {
        Error::Spec { location, message } => {
            let line_has_template = location
                .line
                .and_then(|l| text.lines().nth(l.saturating_sub(1)))
                .is_some_and(|l| l.contains("{{"));
            let message = if line_has_template {
                format!(
                    "{message} (a value that starts with a template must be quoted: `path: \"{{{{ ... }}}}\"`)"
                )
            } else {
                message
            };
            Error::Spec { location, message }
        }
        other => other,
    }
}

/// Renders a step's text fields and SQL, and finds what it reads from.
fn plan_step(
    project: &Project,
    renderer: &Renderer,
    country: Option<&str>,
    step: &StepSpec,
    kind: StepKind,
    location: Location,
    fields: Fields,
) -> Result<PlannedStep> {
    let spec = match fields {
        Fields::Templates => render_fields(renderer, step, &location)?,
        Fields::Data => step.clone(),
    };
    // Query sources name their SQL with exactly one of `query`, `sql` or `table`.
    let query_source = spec.source.as_ref().and_then(|s| s.config().query());
    let table_sql = query_source.and_then(|q| {
        q.table
            .map(|t| format!("SELECT * FROM {{{{ {t:?} | ident }}}}"))
    });
    let (sql_text, dialect) = match (query_source, &spec.transform) {
        (Some(q), _) => {
            if [q.query.is_some(), q.sql.is_some(), q.table.is_some()]
                .iter()
                .filter(|b| **b)
                .count()
                != 1
            {
                return Err(Error::Spec {
                    location,
                    message: format!(
                        "step `{}`: a {} source needs exactly one of `query`, `sql` or `table`",
                        step.id, q.kind
                    ),
                });
            }
            (
                SqlText::pick(q.query, q.sql.or(table_sql.as_deref())),
                q.dialect,
            )
        }
        (_, Some(t)) => {
            if t.sql.is_some() == t.query.is_some() {
                return Err(Error::Spec {
                    location,
                    message: format!(
                        "step `{}`: a transform needs exactly one of `sql` or `query`",
                        step.id
                    ),
                });
            }
            (
                SqlText::pick(t.query.as_deref(), t.sql.as_deref()),
                Dialect::DataFusion,
            )
        }
        _ => (SqlText::None, Dialect::DataFusion),
    };
    let (sql, query_file) = match sql_text {
        SqlText::None => (None, None),
        SqlText::Inline(text) if fields == Fields::Data => (
            Some(RenderedSql {
                text: text.to_string(),
                params: Vec::new(),
            }),
            None,
        ),
        SqlText::Inline(text) => (Some(renderer.render_sql(&location, text, dialect)?), None),
        SqlText::File(name) => {
            let path = project
                .find_query(country, name)
                .map_err(|e| relocate(e, &location, &step.id))?;
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let shown = project.display_path(&path);
            let sql = renderer.render_sql(&Location::at(&shown, Some(1)), &text, dialect)?;
            (Some(sql), Some(shown))
        }
    };
    let checked = match (&spec.source, &spec.sink) {
        (Some(source), _) => source.config().check().map_err(|e| ("source", e)),
        (_, Some(sink)) => sink.config().check().map_err(|e| ("sink", e)),
        _ => Ok(()),
    };
    checked.map_err(|(role, e)| Error::Spec {
        location: location.clone(),
        message: format!("step `{}`: {role}.{e}", step.id),
    })?;
    let mut depends_on = spec.depends_on.clone();
    if let Some(sink) = &spec.sink {
        depends_on.push(sink.config().from().to_string());
    }
    if kind == StepKind::Transform
        && let Some(sql) = &sql
    {
        depends_on.extend(
            sql_table_references(&sql.text).map_err(|message| Error::Plan {
                location: location.clone(),
                message: format!("step `{}`: SQL error: {message}", step.id),
            })?,
        );
    }
    let mut unique = BTreeSet::new();
    depends_on.retain(|d| unique.insert(d.clone()));
    Ok(PlannedStep {
        id: step.id.clone(),
        kind,
        depends_on,
        location,
        spec,
        sql,
        query_file,
    })
}

enum SqlText<'a> {
    None,
    Inline(&'a str),
    File(&'a str),
}

impl<'a> SqlText<'a> {
    fn pick(file: Option<&'a str>, inline: Option<&'a str>) -> Self {
        match (file, inline) {
            (Some(f), _) => SqlText::File(f),
            (None, Some(s)) => SqlText::Inline(s),
            (None, None) => SqlText::None,
        }
    }
}

fn relocate(err: Error, location: &Location, step: &str) -> Error {
    match err {
        Error::Spec {
            location: l,
            message,
        } => Error::Spec {
            location: location.clone(),
            message: format!("step `{step}`: query `{}`: {message}", l.file.display()),
        },
        other => other,
    }
}

/// Renders every text field of a step except SQL text, which is rendered for its dialect.
fn render_fields(renderer: &Renderer, step: &StepSpec, location: &Location) -> Result<StepSpec> {
    let mut value = serde_yaml::to_value(step).expect("step specs serialize");
    render_value(
        renderer,
        &mut value,
        location,
        &format!("step `{}`", step.id),
        false,
    )?;
    serde_yaml::from_value(value).map_err(|e| Error::Spec {
        location: location.clone(),
        message: format!("step `{}`: {e}", step.id),
    })
}

fn render_value(
    renderer: &Renderer,
    value: &mut serde_yaml::Value,
    location: &Location,
    path: &str,
    is_sql: bool,
) -> Result<()> {
    match value {
        serde_yaml::Value::String(s) if !is_sql => {
            let place = if path.contains(".connection.") {
                Where::Connection
            } else {
                Where::Other
            };
            *s = renderer
                .render_text(location, s, place)
                .map_err(|e| match e {
                    Error::Render { location, message } => Error::Render {
                        location,
                        message: format!("{path}: {message}"),
                    },
                    other => other,
                })?;
        }
        serde_yaml::Value::Mapping(map) => {
            for (key, v) in map.iter_mut() {
                let key = key.as_str().unwrap_or_default();
                let child = format!("{path}.{key}");
                render_value(renderer, v, location, &child, key == "sql")?;
            }
        }
        serde_yaml::Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                render_value(renderer, v, location, &format!("{path}[{i}]"), false)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Table names a DataFusion SQL statement reads (CTE names excluded).
pub fn sql_table_references(sql: &str) -> std::result::Result<Vec<String>, String> {
    let statements = DFParser::parse_sql(sql).map_err(|e| e.to_string())?;
    let mut tables = Vec::new();
    for statement in &statements {
        let (refs, _ctes) =
            resolve_table_references(statement, false).map_err(|e| e.to_string())?;
        tables.extend(refs.into_iter().map(|r| r.table().to_string()));
    }
    Ok(tables)
}

/// What every source and sink of the plan reads and writes. An invalid table name or location
/// is a plan error naming the step (so `bridge validate` refuses it); reads that cannot be
/// determined are recorded, and only API callers are refused for them.
fn declare_resources(
    project: &Project,
    params: &Params,
    steps: &[PlannedStep],
) -> Result<Declared> {
    let lakehouse_root = params.get("lakehouse_root").and_then(|v| v.as_str());
    let database = std::cell::OnceCell::new();
    let mut declared = Declared::default();
    for step in steps {
        let cx = ResourceContext {
            project,
            database: &database,
            lakehouse_root,
            sql: step.sql.as_ref().map(|s| s.text.as_str()),
        };
        let (role, result) = match (&step.spec.source, &step.spec.sink) {
            (Some(source), _) => ("source", source.config().resources(&cx)),
            (_, Some(sink)) => ("sink", sink.config().resources(&cx)),
            _ => continue,
        };
        match result {
            Ok(uses) => {
                if role == "sink" {
                    check_single_writer(&declared, step, &uses)?;
                }
                declared
                    .uses
                    .extend(uses.into_iter().map(|(resource, access, deletes)| Use {
                        step: step.id.clone(),
                        resource,
                        access,
                        deletes,
                    }));
            }
            Err(DeclareError::Unknown(why)) => declared.unknown.push((step.id.clone(), why)),
            Err(DeclareError::Settings(e)) => return Err(*e),
            Err(DeclareError::Invalid(why)) => {
                return Err(Error::Spec {
                    location: step.location.clone(),
                    message: format!("step `{}`: {role}: {why}", step.id),
                });
            }
        }
    }
    Ok(declared)
}

/// Refuses a sink that writes an output an earlier sink of the same run writes: the two would
/// interleave (and a second writer of a SQL Server table would wait forever for the first one's
/// transaction, which commits only when the run does).
fn check_single_writer(
    declared: &Declared,
    step: &PlannedStep,
    uses: &[(Resource, Access, bool)],
) -> Result<()> {
    for (resource, access, _) in uses {
        if *access == Access::Read {
            continue;
        }
        if let Some(first) = declared
            .uses
            .iter()
            .find(|u| u.access != Access::Read && u.resource.same_as(resource) && u.step != step.id)
        {
            return Err(Error::Plan {
                location: step.location.clone(),
                message: format!(
                    "step `{}` writes {}, which step `{}` of this run already writes; write \
                     each output from one step (combine the inputs in a transform), or use two \
                     pipelines",
                    step.id, first.resource, first.step
                ),
            });
        }
    }
    Ok(())
}

/// Checks every reference and orders the steps so each comes after what it depends on.
fn resolve_dependencies(steps: Vec<PlannedStep>) -> Result<Vec<PlannedStep>> {
    let kinds: BTreeMap<&str, StepKind> = steps.iter().map(|s| (s.id.as_str(), s.kind)).collect();
    for step in &steps {
        for dep in &step.depends_on {
            let explicit = step.spec.depends_on.contains(dep);
            match kinds.get(dep.as_str()) {
                None => {
                    let known: Vec<&str> = kinds.keys().copied().collect();
                    return Err(Error::Plan {
                        location: step.location.clone(),
                        message: format!(
                            "step `{}` refers to `{dep}`, which is not a step of this pipeline (steps: {})",
                            step.id,
                            known.join(", ")
                        ),
                    });
                }
                Some(StepKind::Sink) if !explicit => {
                    return Err(Error::Plan {
                        location: step.location.clone(),
                        message: format!(
                            "step `{}` reads from `{dep}`, which is a sink and has no output; read from the step the sink writes instead",
                            step.id
                        ),
                    });
                }
                _ => {}
            }
        }
    }
    // Kahn's algorithm; then steps are sorted by depth, declaration order within a depth.
    let mut remaining: Vec<PlannedStep> = steps;
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut ordered = Vec::with_capacity(remaining.len());
    while !remaining.is_empty() {
        let (ready, blocked): (Vec<PlannedStep>, Vec<PlannedStep>) = remaining
            .into_iter()
            .partition(|s| s.depends_on.iter().all(|d| done.contains(d)));
        if ready.is_empty() {
            return Err(cycle_error(&blocked));
        }
        done.extend(ready.iter().map(|s| s.id.clone()));
        ordered.extend(ready);
        remaining = blocked;
    }
    Ok(stable_topological(ordered))
}

/// Sorts an already topological order by depth, then by declaration line.
fn stable_topological(ordered: Vec<PlannedStep>) -> Vec<PlannedStep> {
    let mut level: BTreeMap<String, usize> = BTreeMap::new();
    for step in &ordered {
        let l = step
            .depends_on
            .iter()
            .map(|d| level.get(d).copied().unwrap_or(0) + 1)
            .max()
            .unwrap_or(0);
        level.insert(step.id.clone(), l);
    }
    let mut indexed: Vec<(usize, usize, PlannedStep)> = ordered
        .into_iter()
        .map(|s| {
            let line = s.location.line.unwrap_or(usize::MAX);
            (level[&s.id], line, s)
        })
        .collect();
    indexed.sort_by_key(|(l, line, _)| (*l, *line));
    indexed.into_iter().map(|(_, _, s)| s).collect()
}

fn cycle_error(remaining: &[PlannedStep]) -> Error {
    let deps: BTreeMap<&str, &Vec<String>> = remaining
        .iter()
        .map(|s| (s.id.as_str(), &s.depends_on))
        .collect();
    // Walk dependencies inside the remaining set until a step repeats.
    let mut path: Vec<&str> = vec![remaining[0].id.as_str()];
    loop {
        let current = *path.last().expect("path is never empty");
        let next = deps[current]
            .iter()
            .map(String::as_str)
            .find(|d| deps.contains_key(d))
            .expect("a step left by Kahn's algorithm depends on another one left");
        if let Some(pos) = path.iter().position(|p| *p == next) {
            let mut cycle: Vec<&str> = path[pos..].to_vec();
            cycle.push(next);
            let first = remaining
                .iter()
                .find(|s| s.id == cycle[0])
                .expect("cycle steps are remaining steps");
            return Error::Plan {
                location: first.location.clone(),
                message: format!("dependency cycle: {}", cycle.join(" -> ")),
            };
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Result<Plan> {
        let dir = tempfile::tempdir().unwrap();
        Plan::from_text(
            &Project::new(dir.path()),
            Path::new("p.yaml"),
            text,
            &PlanOptions::default(),
        )
    }

    #[test]
    fn orders_steps_by_dependencies() {
        let p = plan(
            "name: t\nsteps:\n  - id: out\n    sink: {type: delta, from: joined, path: x}\n  - id: joined\n    transform: {sql: 'SELECT * FROM a JOIN b USING (k)'}\n  - id: a\n    source: {type: csv, path: a.csv}\n  - id: b\n    source: {type: csv, path: b.csv}\n",
        )
        .unwrap();
        let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "joined", "out"]);
        assert_eq!(p.step("joined").unwrap().depends_on, ["a", "b"]);
    }

    #[test]
    fn cycle_is_named() {
        let err = plan(
            "name: t\nsteps:\n  - id: a\n    transform: {sql: 'SELECT * FROM b'}\n  - id: b\n    transform: {sql: 'SELECT * FROM a'}\n",
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "p.yaml:3: dependency cycle: a -> b -> a");
    }

    #[test]
    fn unknown_reference_names_step_and_line() {
        let err = plan(
            "name: t\nsteps:\n  - id: a\n    source: {type: csv, path: a.csv}\n  - id: out\n    sink: {type: delta, from: nope, path: x}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.yaml:5: step `out` refers to `nope`, which is not a step of this pipeline (steps: a, out)"
        );
    }

    #[test]
    fn cte_names_are_not_dependencies() {
        let refs =
            sql_table_references("WITH x AS (SELECT * FROM a) SELECT * FROM x JOIN b ON true")
                .unwrap();
        assert_eq!(refs, ["a", "b"]);
    }

    #[test]
    fn each_kind_checks_its_fields_and_the_plan_names_step_role_and_field() {
        let cases = [
            (
                "source: {type: sqlserver, table: dbo.t, partition: {column: 'a-b', partitions: 2}}",
                "step `s`: source.partition.column: ",
            ),
            (
                "source: {type: sqlserver, table: dbo.t, incremental: {column: 'x.y'}}",
                "step `s`: source.incremental.column: `x.y` must be one column name",
            ),
            (
                "sink: {type: volume, from: a, destination: v, path: p, file_name: 'x/y'}",
                "step `s`: sink.file_name: may not contain `/`",
            ),
            (
                "sink: {type: delta, from: a, path: t, partition_by: ['c;d']}",
                "step `s`: sink.partition_by: ",
            ),
            (
                "sink: {type: sqlserver, from: a, table: dbo.t, mode: upsert, primary_keys: ['k]']}",
                "step `s`: sink.primary_keys: ",
            ),
            (
                "source: {type: sqlite, database: x.db, sql: 'select 1', table: t}",
                "step `s`: a sqlite source needs exactly one of `query`, `sql` or `table`",
            ),
        ];
        for (step, expected) in cases {
            let text = format!(
                "name: t\nsteps:\n  - id: a\n    source: {{type: csv, path: a.csv}}\n  - id: s\n    {step}\n"
            );
            let err = plan(&text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("p.yaml:5: {expected}")),
                "{step}: {err}"
            );
        }
    }

    #[test]
    fn volume_paths_are_confined() {
        let err = plan(
            "name: t\nsteps:\n  - id: a\n    source: {type: csv, path: a.csv}\n  - id: out\n    sink: {type: volume, from: a, destination: v, path: ../../etc}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("may not contain `..`"), "{err}");
    }
}
