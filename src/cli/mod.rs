//! The commands of `bridge`: the clap definitions of the command line and, one file per
//! command or group, what each command does. `main.rs` parses, dispatches one call per command
//! and turns the [`Outcome`] (or the error) into the exit code.

pub mod connection;
pub mod events;
pub mod extract;
pub mod info;
pub mod run;
pub mod serve;

use std::path::PathBuf;

use bridge::pipeline::Project;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "bridge",
    version,
    about = "Moves data between SQL Server and Databricks with declarative pipelines"
)]
pub struct Cli {
    /// Project folder holding pipelines/, queries/ and config/.
    #[arg(long, global = true, default_value = ".", env = "BRIDGE_ROOT")]
    pub root: PathBuf,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Profile of ~/.databrickscfg to use; wins over DATABRICKS_CONFIG_PROFILE and the
    /// `databricks.profile` of config/defaults.yaml.
    #[arg(long, global = true, value_name = "NAME", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub profile: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a pipeline.
    Run(run::RunArgs),
    /// Print a pipeline's DAG and rendered SQL without running anything.
    Plan(run::PlanArgs),
    /// Check pipelines (all under pipelines/ by default) and queries, for every country.
    Validate(run::ValidateArgs),
    /// List the SQL files a country uses.
    ListQueries(info::ListQueriesArgs),
    /// Show the parameters a country's runs see.
    ShowParams(info::ShowParamsArgs),
    /// Extract every query of a country to a destination (the original CLI's command).
    Extract(extract::ExtractArgs),
    /// Check what is configured: SQL Server (version and round trip, or what failed: DNS, TCP,
    /// TLS, login, database) and Databricks (the workspace's current user, the SQL warehouse, and
    /// a volume with --volume).
    TestConnection(connection::TestConnectionArgs),
    /// Print the DDL of the Databricks events table; with --apply, run it on the SQL warehouse.
    SetupEventsTable(events::SetupEventsTableArgs),
    /// Run the REST API, the events poller, scheduled pipelines and the GitOps watcher.
    Serve(serve::ServeArgs),
    /// Print the SHA-256 of an API token, for `token_sha256` in config/permissions.yaml. Reads the
    /// token from stdin so it stays out of the shell history.
    HashToken,
    /// Print the JSON Schema of pipeline files.
    Schema,
    /// Print the version.
    Version,
}

/// How a command ended without an error; `main` turns it into the exit code.
pub enum Outcome {
    /// Exit code 0.
    Success,
    /// Exit code 1: the run or a check failed (already reported).
    Failed,
    /// Exit code 2: the input is invalid (already reported).
    Invalid,
}

/// What every command sees: the project (with the `--profile` of the command line) and the
/// output format.
pub struct Context {
    /// The project root of `--root`.
    pub root: PathBuf,
    pub project: Project,
    /// `--output json`.
    pub json: bool,
}

impl Context {
    pub fn new(root: PathBuf, output: Output, profile: Option<String>) -> Context {
        Context {
            project: Project::new(&root).with_databricks_profile(profile),
            root,
            json: output == Output::Json,
        }
    }

    /// A path from the command line: as given when it exists, else relative to the project root.
    pub fn input_path(&self, path: PathBuf) -> PathBuf {
        if path.is_relative() && !path.exists() && self.root.join(&path).exists() {
            self.root.join(path)
        } else {
            path
        }
    }
}

/// A `--param name=value`.
pub fn parse_param(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not name=value"))?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(format!(
            "`{k}` is not a parameter name (letters, digits, `_`)"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("output serializes")
    );
}
