//! The `bridge` command line: parses arguments, sets up logging and the runtime, calls one
//! command of [`cli`] and decides the exit code.
//! Exit codes: 0 success, 1 the run failed, 2 invalid input (pipeline, config, query, arguments).

mod cli;

use std::process::ExitCode;

use bridge::{Error, Result};
use clap::Parser;

use cli::{Cli, Command, Context, Outcome};

fn main() -> ExitCode {
    return_freed_memory();
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Serve(_)));
    let _ = dotenvy::from_path(cli.root.join(".env"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    exit_code(runtime.block_on(run(cli)))
}

/// Makes glibc give freed memory back to the system instead of keeping it for reuse. By default
/// its trim and mmap thresholds grow with the largest block freed, so the buffers of each Parquet
/// row group stayed in the process: peak RSS of a 10M-row extraction was 1.25-1.3x that of 1M
/// rows. A fixed 1 MiB trim threshold (what `MALLOC_TRIM_THRESHOLD_=1048576` does) keeps it flat
/// (benches/RESULTS.md, 2026-12-07). mimalloc was measured too and held more.
///
/// Fixing the trim threshold also fixes the mmap threshold at its 128 KiB start, so every Arrow
/// buffer above that was a fresh mapping, faulted in page by page and unmapped again for every
/// batch: a third of an extraction's CPU was the kernel's. A 4 MiB mmap threshold keeps batch
/// buffers on the heap, where they are reused (page faults 3x fewer, system CPU halved on 1.5M
/// rows), while row-group-sized blocks are still mapped and returned.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called first thing in main, before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

/// Runs the command of `cli`.
async fn run(cli: Cli) -> Result<Outcome> {
    let cx = Context::new(cli.root, cli.output, cli.profile);
    match cli.command {
        Command::Run(args) => cli::run::run(&cx, args).await,
        Command::Plan(args) => cli::run::plan(&cx, args),
        Command::Validate(args) => cli::run::validate(&cx, args),
        Command::ListQueries(args) => cli::info::list_queries(&cx, args),
        Command::ShowParams(args) => cli::info::show_params(&cx, args),
        Command::Extract(args) => cli::extract::extract(&cx, args).await,
        Command::TestConnection(args) => cli::connection::test_connection(&cx, args).await,
        Command::SetupEventsTable(args) => cli::events::setup_events_table(&cx, args).await,
        Command::Serve(args) => cli::serve::serve(&cx, args).await,
        Command::HashToken => cli::info::hash_token(),
        Command::Schema => cli::info::schema(),
        Command::Version => cli::info::version(),
    }
}

/// Logs to stderr, filtered by RUST_LOG or else: warnings, and what `bridge` does when `serving`
/// (a server logs what it does; a command prints its result instead).
fn init_logging(serving: bool) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                let bridge = if serving { "info" } else { "warn" };
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
}

/// The exit code of a command's outcome; an error is printed, with a hint when one helps.
fn exit_code(result: Result<Outcome>) -> ExitCode {
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Ok(Outcome::Invalid) => ExitCode::from(2),
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
        Error::Plan { .. } | Error::StepSql(_) => {
            Some("`bridge plan PIPELINE` shows the steps and their rendered SQL")
        }
        _ => None,
    }
}
