//! `bridge extract`: every query of a country to a destination, the original CLI's command.

use std::path::PathBuf;

use bridge::Result;
use bridge::pipeline::extract::extract_plan;

use super::run::run_plan;
use super::{Context, Outcome, parse_param};

#[derive(clap::Args)]
pub struct ExtractArgs {
    #[arg(long)]
    queries_path: Option<PathBuf>,
    #[arg(long)]
    config_path: Option<PathBuf>,
    #[arg(long)]
    country: String,
    /// Local folder or URL the Parquet files go to.
    #[arg(long)]
    destination: String,
    /// Parameter override, `name=value`; repeatable.
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, String)>,
}

/// Plans the extraction of every query of `--country` and runs it.
pub async fn extract(cx: &Context, args: ExtractArgs) -> Result<Outcome> {
    let mut project = cx.project.clone();
    if let Some(q) = args.queries_path {
        project = project.with_queries_dir(q);
    }
    if let Some(c) = args.config_path {
        project = project.with_config_dir(c);
    }
    let plan = extract_plan(&project, &args.country, &args.destination, args.params)?;
    run_plan(&project, &plan, false, cx.json).await
}
