//! The `bridge` command line: parses arguments, calls the library, prints results and errors.
//! Exit codes: 0 success, 1 the run failed, 2 invalid input (pipeline, config, query, arguments).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use bridge::pipeline::extract::extract_plan;
use bridge::pipeline::spec::pipeline_json_schema;
use bridge::pipeline::validate::validate;
use bridge::pipeline::{Plan, PlanOptions, Project, RunOptions, RunSummary, run};
use bridge::{Error, Result};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "bridge",
    version,
    about = "Moves data between SQL Server and Databricks with declarative pipelines"
)]
struct Cli {
    /// Project folder holding pipelines/, queries/ and config/.
    #[arg(long, global = true, default_value = ".", env = "BRIDGE_ROOT")]
    root: PathBuf,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Profile of ~/.databrickscfg to use; wins over DATABRICKS_CONFIG_PROFILE and the
    /// `databricks.profile` of config/defaults.yaml.
    #[arg(long, global = true, value_name = "NAME", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    profile: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline.
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
        #[command(flatten)]
        args: RunArgs,
        /// Open sources and plan every step, but write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a pipeline's DAG and rendered SQL without running anything.
    Plan {
        /// The pipeline file.
        pipeline: PathBuf,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Check pipelines (all under pipelines/ by default) and queries, for every country.
    Validate {
        /// Pipeline files or folders to check instead of the whole project.
        paths: Vec<PathBuf>,
    },
    /// List the SQL files a country uses.
    ListQueries {
        #[arg(long)]
        country: Option<String>,
    },
    /// Show the parameters a country's runs see.
    ShowParams {
        #[arg(long)]
        country: String,
    },
    /// Extract every query of a country to a destination (the original CLI's command).
    Extract {
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
    },
    /// Check what is configured: SQL Server (version and round trip, or what failed: DNS, TCP,
    /// TLS, login, database) and Databricks (the workspace's current user, the SQL warehouse, and
    /// a volume with --volume).
    TestConnection {
        /// Also check that this volume folder (`/Volumes/catalog/schema/volume/...`) exists.
        #[arg(long)]
        volume: Option<String>,
    },
    /// Print the DDL of the Databricks events table; with --apply, run it on the SQL warehouse.
    SetupEventsTable {
        /// The table, `catalog.schema.table`.
        #[arg(long, default_value = bridge::sync::databricks::DEFAULT_EVENTS_TABLE)]
        table: String,
        /// Run the statements instead of printing them.
        #[arg(long)]
        apply: bool,
    },
    /// Run the REST API, the events poller, scheduled pipelines and the GitOps watcher.
    Serve(ServeArgs),
    /// Print the SHA-256 of an API token, for `token_sha256` in config/permissions.yaml. Reads the
    /// token from stdin so it stays out of the shell history.
    HashToken,
    /// Print the JSON Schema of pipeline files.
    Schema,
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8000", env = "BRIDGE_LISTEN")]
    listen: std::net::SocketAddr,
    /// Seconds between polls of the events table.
    #[arg(long, default_value_t = 2.0)]
    poll_interval: f64,
    /// Seconds after which a running event is presumed abandoned by a dead server and retaken.
    #[arg(long, default_value_t = 600.0)]
    event_lease: f64,
    /// The local events Delta table (default .bridge/events/bridge_events).
    #[arg(long, conflicts_with = "databricks_events")]
    events_table: Option<PathBuf>,
    /// Poll the events table in Databricks instead (default bridge.events.bridge_events),
    /// through the SQL warehouse of `databricks:` in config/defaults.yaml or the profile.
    #[arg(long, num_args = 0..=1, default_missing_value = bridge::sync::databricks::DEFAULT_EVENTS_TABLE)]
    databricks_events: Option<String>,
    /// Seconds a shutdown waits for running jobs before interrupting them.
    #[arg(long, default_value_t = 30.0)]
    shutdown_grace: f64,
    /// Jobs that run at the same time; others wait queued.
    #[arg(long, default_value_t = 2)]
    max_jobs: usize,
    /// The permissions file (default config/permissions.yaml).
    #[arg(long)]
    permissions: Option<PathBuf>,
    /// The audit log (default .bridge/audit.log).
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Do not run pipelines on their `schedule:`.
    #[arg(long)]
    no_schedules: bool,
    /// Seconds this server's heartbeat in the job store stays valid (it is refreshed every fifth
    /// of it): another server on the same root takes this one for dead, and its unfinished jobs
    /// for interrupted, once its heartbeat is older than this.
    #[arg(long, default_value_t = 20.0)]
    server_lease: f64,
}

impl ServeArgs {
    fn options(&self) -> Result<bridge::server::ServeOptions> {
        let secs = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(std::time::Duration::from_secs_f64(v))
            } else {
                Err(Error::Unsupported(format!(
                    "--{name}: expected a number of seconds, got {v}"
                )))
            }
        };
        Ok(bridge::server::ServeOptions {
            listen: self.listen,
            poll_interval: match secs("poll-interval", self.poll_interval)? {
                d if d.is_zero() => {
                    return Err(Error::Unsupported(
                        "--poll-interval: must be more than 0 seconds (0 would poll without pause); the default is 2".into(),
                    ));
                }
                d => d,
            },
            event_lease: match secs("event-lease", self.event_lease)? {
                d if d.is_zero() => {
                    return Err(Error::Unsupported(
                        "--event-lease: must be more than 0 seconds (0 would take over running events at once); the default is 600".into(),
                    ));
                }
                d => d,
            },
            events_table: self.events_table.clone(),
            databricks_events: self.databricks_events.clone(),
            shutdown_grace: secs("shutdown-grace", self.shutdown_grace)?,
            max_concurrent_jobs: self.max_jobs,
            permissions: self.permissions.clone(),
            audit_log: self.audit_log.clone(),
            schedules: !self.no_schedules,
            server_lease: match secs("server-lease", self.server_lease)? {
                d if d.is_zero() => {
                    return Err(Error::Unsupported(
                        "--server-lease: must be more than 0 seconds (0 would take every other server for dead); the default is 20".into(),
                    ));
                }
                d => d,
            },
        })
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// Country whose parameters and queries are used.
    #[arg(long)]
    country: Option<String>,
    /// Parameter override, `name=value`; repeatable.
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, String)>,
}

impl RunArgs {
    fn options(&self) -> PlanOptions {
        PlanOptions {
            country: self.country.clone(),
            params: self.params.clone(),
        }
    }
}

fn parse_param(s: &str) -> std::result::Result<(String, String), String> {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(profile) = &cli.profile {
        bridge::databricks::set_cli_profile(profile);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // delta_kernel logs an ERROR when a table does not exist yet; a new table is normal.
                // A server logs what it does; a command prints its result instead.
                let bridge = if matches!(cli.command, Command::Serve(_)) {
                    "info"
                } else {
                    "warn"
                };
                // A lost race for an event is a Delta commit conflict, normal when several
                // servers poll one events table; delta-rs logs it as an error. Only inside the
                // events table's updates (span `events_update`) is that silenced.
                tracing_subscriber::EnvFilter::new(format!(
                    "warn,bridge={bridge},deltalake_core::kernel::transaction[events_update]=off"
                ))
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = dotenvy::from_path(cli.root.join(".env"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match runtime.block_on(execute(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = hint(&e) {
                eprintln!("hint: {hint}");
            }
            if e.is_invalid_input() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn hint(e: &Error) -> Option<&'static str> {
    match e {
        Error::Spec { .. } => Some("`bridge schema` prints every field a pipeline accepts"),
        Error::Plan { .. } => Some("`bridge plan PIPELINE` shows the steps and their rendered SQL"),
        _ => None,
    }
}

async fn execute(cli: Cli) -> Result<ExitCode> {
    let project = Project::new(&cli.root);
    let json = cli.output == Output::Json;
    match cli.command {
        Command::Run {
            pipeline,
            args,
            dry_run,
        } => {
            let plan =
                Plan::from_file(&project, &input_path(&cli.root, pipeline), &args.options())?;
            run_plan(&project, &plan, dry_run, json).await
        }
        Command::Plan { pipeline, args } => {
            let plan =
                Plan::from_file(&project, &input_path(&cli.root, pipeline), &args.options())?;
            if json {
                print_json(&plan.summary());
            } else {
                print_plan(&plan);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { paths } => {
            let paths: Vec<PathBuf> = paths
                .into_iter()
                .map(|p| input_path(&cli.root, p))
                .collect();
            let report = validate(&project, &paths)?;
            if json {
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
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::ListQueries { country } => {
            let country = country.map(|c| c.to_lowercase());
            if let Some(c) = &country {
                project.config_params(Some(c))?;
            }
            let queries = project.list_queries(country.as_deref())?;
            if json {
                let list: Vec<_> = queries
                    .iter()
                    .map(|(name, path)| {
                        serde_json::json!({"name": name, "path": project.display_path(path)})
                    })
                    .collect();
                print_json(&list);
            } else {
                for (name, path) in queries {
                    println!("{name}\t{}", project.display_path(&path).display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ShowParams { country } => {
            let country = country.to_lowercase();
            let mut params = project.config_params(Some(&country))?;
            params.insert("country".into(), country.into());
            if json {
                print_json(&params);
            } else {
                print!(
                    "{}",
                    serde_yaml::to_string(&params).expect("params serialize")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Extract {
            queries_path,
            config_path,
            country,
            destination,
            params,
        } => {
            let mut project = project;
            if let Some(q) = queries_path {
                project = project.with_queries_dir(q);
            }
            if let Some(c) = config_path {
                project = project.with_config_dir(c);
            }
            let plan = extract_plan(&project, &country, &destination, params)?;
            run_plan(&project, &plan, false, json).await
        }
        Command::TestConnection { volume } => {
            test_connection(&project, volume.as_deref(), json).await
        }
        Command::SetupEventsTable { table, apply } => {
            let statements = bridge::sync::DatabricksEvents::create_table_sql(&table)
                .map_err(|e| Error::Unsupported(format!("--table: {e}")))?;
            if !apply {
                for statement in &statements {
                    println!("{statement};\n");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let client = project.databricks_client()?;
            let warehouse = client.warehouse_id().map(str::to_string).ok_or_else(|| {
                Error::Unsupported(
                    "--apply needs a SQL warehouse: set `databricks.warehouse_id` in config/defaults.yaml, the profile's `warehouse_id`, or DATABRICKS_WAREHOUSE_ID".into(),
                )
            })?;
            for statement in &statements {
                client
                    .execute_statement(
                        &warehouse,
                        statement,
                        &[],
                        bridge::databricks::Disposition::Inline,
                    )
                    .await?;
            }
            println!("events table {table} is ready (warehouse {warehouse})");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let options = args.options()?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            bridge::server::serve(&cli.root, options, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::HashToken => {
            let mut token = String::new();
            std::io::stdin()
                .read_line(&mut token)
                .map_err(|e| Error::io("<stdin>", e))?;
            let token = token.trim_end_matches(['\r', '\n']);
            if token.is_empty() {
                return Err(Error::Unsupported(
                    "hash-token: give the token on stdin, e.g. `printf %s \"$TOKEN\" | bridge hash-token`".into(),
                ));
            }
            println!("{}", bridge::auth::hash_token(token));
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            print!("{}", pipeline_json_schema());
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("bridge {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Fires `shutdown` on SIGTERM or Ctrl-C.
async fn stop_on_signal(shutdown: tokio_util::sync::CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("stop signal received");
    shutdown.cancel();
}

/// A path from the command line: as given when it exists, else relative to the project root.
fn input_path(root: &std::path::Path, path: PathBuf) -> PathBuf {
    if path.is_relative() && !path.exists() && root.join(&path).exists() {
        root.join(path)
    } else {
        path
    }
}

async fn run_plan(project: &Project, plan: &Plan, dry_run: bool, json: bool) -> Result<ExitCode> {
    let options = RunOptions {
        dry_run,
        progress: !json && std::io::stderr().is_terminal(),
        ..RunOptions::default()
    };
    let summary = run(project, plan, &options).await?;
    if json {
        print_json(&summary);
    } else {
        print_summary(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

/// `bridge test-connection`: checks SQL Server and Databricks, whichever are configured.
async fn test_connection(project: &Project, volume: Option<&str>, json: bool) -> Result<ExitCode> {
    let mut ok = true;
    let mut report = serde_json::Map::new();
    let settings = project.sqlserver_settings()?;
    let databricks_settings = project.databricks_settings()?;
    let databricks_wanted = bridge::databricks::DatabricksConfig::is_configured()
        || databricks_settings.profile.is_some()
        || volume.is_some();
    if settings.host.is_some() || !databricks_wanted {
        match bridge::mssql::test_connection(&settings).await {
            Ok(r) => {
                if !json {
                    println!(
                        "SQL Server {}: ok, {} (round trip {:.1} ms)",
                        r.target, r.server_version, r.round_trip_ms
                    );
                }
                report.insert("sqlserver".into(), serde_json::json!(r));
            }
            Err(e) => {
                ok = false;
                if !json {
                    eprintln!("error: {e}");
                }
                report.insert(
                    "sqlserver".into(),
                    serde_json::json!({"target": e.target, "phase": e.phase.to_string(), "error": e.message}),
                );
            }
        }
    }
    if databricks_wanted {
        let (passed, checks) = check_databricks(&databricks_settings, volume).await;
        ok &= passed;
        for (check, result) in &checks {
            if !json {
                match result {
                    Ok(detail) => println!("Databricks {check}: ok, {detail}"),
                    Err(e) => eprintln!("error: Databricks {check}: {e}"),
                }
            }
        }
        let checks: serde_json::Map<String, serde_json::Value> = checks
            .into_iter()
            .map(|(check, result)| {
                let value = match result {
                    Ok(detail) => serde_json::json!({"ok": true, "detail": detail}),
                    Err(e) => serde_json::json!({"ok": false, "error": e}),
                };
                (check, value)
            })
            .collect();
        report.insert("databricks".into(), serde_json::Value::Object(checks));
    }
    report.insert("ok".into(), ok.into());
    if json {
        print_json(&report);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The Databricks checks of `test-connection`, each with its outcome; stops at the first failure
/// that makes the next checks meaningless.
async fn check_databricks(
    settings: &bridge::databricks::DatabricksSettings,
    volume: Option<&str>,
) -> (bool, Vec<(String, std::result::Result<String, String>)>) {
    let mut checks = Vec::new();
    let config = match settings.resolve() {
        Ok(c) => c,
        Err(e) => return (false, vec![("configuration".into(), Err(e.to_string()))]),
    };
    let client = match bridge::databricks::DatabricksClient::new(&config) {
        Ok(c) => c,
        Err(e) => return (false, vec![("configuration".into(), Err(e.to_string()))]),
    };
    let workspace = format!("workspace {}", config.host);
    match client.current_user().await {
        Ok(user) => checks.push((
            workspace,
            Ok(format!("signed in as {user} ({})", config.origin)),
        )),
        Err(e) => {
            checks.push((workspace, Err(e.to_string())));
            return (false, checks);
        }
    }
    let mut ok = true;
    if let Some(id) = client.warehouse_id() {
        let name = format!("SQL warehouse {id}");
        match client.warehouse(id).await {
            Ok(w) => checks.push((name, Ok(format!("{} is {}", w.name, w.state)))),
            Err(e) => {
                ok = false;
                checks.push((name, Err(e.to_string())));
            }
        }
    }
    if let Some(path) = volume {
        let name = format!("volume {path}");
        let result = match bridge::databricks::files::check_volume_path(path) {
            Err(e) => Err(e),
            Ok(()) => match client.directory_exists(path).await {
                Ok(true) => Ok("exists".to_string()),
                Ok(false) => Err("not found (or no access)".to_string()),
                Err(e) => Err(e.to_string()),
            },
        };
        ok &= result.is_ok();
        checks.push((name, result));
    }
    (ok, checks)
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("output serializes")
    );
}

fn print_plan(plan: &Plan) {
    let summary = plan.summary();
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
    }
}
