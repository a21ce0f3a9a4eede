//! `bridge run`, `plan` and `validate`: a pipeline run (or dry run), its plan, the checks of
//! pipelines and queries; and how a plan and a run summary print.

use std::io::IsTerminal;
use std::path::PathBuf;

use bridge::Result;
use bridge::pipeline::{Plan, PlanOptions, Project, RunOptions, RunSummary};

use super::{Context, Outcome, parse_param, print_json};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The pipeline file.
    pipeline: PathBuf,
    #[command(flatten)]
    plan: PlanFlags,
    /// Open sources and plan every step, but write nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
pub struct PlanArgs {
    /// The pipeline file.
    pipeline: PathBuf,
    #[command(flatten)]
    plan: PlanFlags,
}

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// Pipeline files or folders to check instead of the whole project.
    paths: Vec<PathBuf>,
}

// The flags a pipeline is planned with: the country and parameter overrides (a plain comment:
// a doc comment on a flattened struct would become the command's about).
#[derive(clap::Args)]
struct PlanFlags {
    /// Country whose parameters and queries are used.
    #[arg(long)]
    country: Option<String>,
    /// Parameter override, `name=value`; repeatable.
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, String)>,
}

impl PlanFlags {
    fn options(&self) -> PlanOptions {
        PlanOptions {
            country: self.country.clone(),
            params: self.params.clone(),
        }
    }
}

/// `bridge run`: runs (or with `--dry-run` plans) a pipeline and prints its summary.
pub async fn run(cx: &Context, args: RunArgs) -> Result<Outcome> {
    let plan = Plan::from_file(
        &cx.project,
        &cx.input_path(args.pipeline),
        &args.plan.options(),
    )?;
    run_plan(&cx.project, &plan, args.dry_run, cx.json).await
}

/// `bridge plan`: prints a pipeline's steps and rendered SQL.
pub fn plan(cx: &Context, args: PlanArgs) -> Result<Outcome> {
    let plan = Plan::from_file(
        &cx.project,
        &cx.input_path(args.pipeline),
        &args.plan.options(),
    )?;
    let mut summary = plan.summary();
    plan.incremental_state(&cx.project, &mut summary)?;
    if cx.json {
        print_json(&summary);
    } else {
        print_plan(summary);
    }
    Ok(Outcome::Success)
}

/// `bridge validate`: checks pipelines and queries, reporting every error.
pub fn validate(cx: &Context, args: ValidateArgs) -> Result<Outcome> {
    let paths: Vec<PathBuf> = args.paths.into_iter().map(|p| cx.input_path(p)).collect();
    let report = bridge::pipeline::validate::validate(&cx.project, &paths)?;
    if cx.json {
        print_json(&serde_json::json!({
            "pipelines": report.pipelines,
            "queries": report.queries,
            "errors": report.errors,
        }));
    } else {
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        println!(
            "{} pipeline(s), {} query file(s) checked: {}",
            report.pipelines.len(),
            report.queries,
            if report.errors.is_empty() {
                "ok".to_string()
            } else {
                format!("{} error(s)", report.errors.len())
            }
        );
    }
    Ok(if report.errors.is_empty() {
        Outcome::Success
    } else {
        Outcome::Invalid
    })
}

/// Runs `plan` and prints its summary.
pub async fn run_plan(
    project: &Project,
    plan: &Plan,
    dry_run: bool,
    json: bool,
) -> Result<Outcome> {
    let options = RunOptions {
        dry_run,
        progress: !json && std::io::stderr().is_terminal(),
        ..RunOptions::default()
    };
    let summary = bridge::pipeline::run(project, plan, &options).await?;
    if json {
        print_json(&summary);
    } else {
        print_summary(&summary);
    }
    Ok(Outcome::Success)
}

fn print_plan(summary: bridge::pipeline::plan::PlanSummary<'_>) {
    println!(
        "pipeline {}{}",
        summary.pipeline,
        summary
            .country
            .map(|c| format!(" (country {c})"))
            .unwrap_or_default()
    );
    for step in summary.steps {
        let deps = if step.depends_on.is_empty() {
            String::new()
        } else {
            format!(" <- {}", step.depends_on.join(", "))
        };
        println!("\n[{}] {}{deps}", step.kind, step.id);
        if let Some(file) = step.query_file {
            println!("  query file: {file}");
        }
        if let Some(writes) = step.writes {
            println!("  writes: {writes}");
        }
        if let Some(incremental) = step.incremental {
            println!("  incremental: {incremental}");
        }
        if let Some(sql) = step.sql {
            for line in sql.trim_end().lines() {
                println!("    {line}");
            }
            for (i, p) in step.sql_params.iter().enumerate() {
                println!("  param {}: {p}", i + 1);
            }
        }
    }
}

fn print_summary(summary: &RunSummary) {
    println!(
        "{} {} run {} in {:.2}s{}",
        if summary.dry_run {
            "planned"
        } else {
            "finished"
        },
        summary.pipeline,
        summary.run_id,
        summary.duration_ms as f64 / 1000.0,
        if summary.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    println!(
        "{:<24} {:<9} {:>12} {:>12} {:>10}",
        "step", "kind", "rows", "bytes", "ms"
    );
    for s in &summary.steps {
        println!(
            "{:<24} {:<9} {:>12} {:>12} {:>10}",
            s.id,
            s.kind.to_string(),
            s.rows,
            s.bytes,
            s.duration_ms
        );
        for o in &s.outputs {
            println!("    -> {o}");
        }
        if !s.truncated.is_empty() {
            let counts: Vec<String> = s
                .truncated
                .iter()
                .map(|(column, n)| format!("{column}: {n}"))
                .collect();
            println!("    truncated below the microsecond: {}", counts.join(", "));
        }
        for change in &s.schema_changes {
            println!("    schema: {change}");
        }
    }
}
