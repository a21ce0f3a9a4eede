//! `bridge test-connection`: runs the probes of [`bridge::diagnostics`] (SQL Server and
//! Databricks, whichever are configured) and reports each check's outcome, as text or JSON.

use bridge::Result;
use bridge::diagnostics::{Check, CheckError, Connector, Options};

use super::{Context, Outcome, print_json};

#[derive(clap::Args)]
pub struct TestConnectionArgs {
    /// Also check that this volume folder (`/Volumes/catalog/schema/volume/...`) exists.
    #[arg(long)]
    volume: Option<String>,
}

/// Checks what is configured; [`Outcome::Failed`] when a check failed.
pub async fn test_connection(cx: &Context, args: TestConnectionArgs) -> Result<Outcome> {
    let options = Options {
        volume: args.volume,
        ..Options::default()
    };
    let mut checks = bridge::diagnostics::run(&cx.project, &options).await;
    // Unreadable project files are the command's error (exit 2 for a malformed file).
    if let Some(i) = checks
        .iter()
        .position(|c| matches!(c.outcome, Err(CheckError::Project(_))))
        && let Err(CheckError::Project(e)) = checks.swap_remove(i).outcome
    {
        return Err(e);
    }
    let ok = checks.iter().all(|c| c.outcome.is_ok());
    if cx.json {
        print_json(&json_report(&checks, ok));
    } else {
        for check in &checks {
            match &check.outcome {
                Ok(detail) => println!("{}: ok, {detail}", check.title()),
                Err(e) => eprintln!("error: {}: {e}", check.title()),
            }
        }
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

/// `{"sqlserver": {target, server_version, round_trip_ms} or {target, phase, error},
/// "databricks": {check: {ok, detail} or {ok, error}}, "ok": bool}`.
fn json_report(checks: &[Check], ok: bool) -> serde_json::Value {
    let mut report = serde_json::Map::new();
    let mut databricks = serde_json::Map::new();
    for check in checks {
        match check.connector {
            Connector::SqlServer => {
                let value = match (&check.outcome, &check.details) {
                    (Ok(_), Some(details)) => details.clone(),
                    (Ok(detail), None) => {
                        serde_json::json!({"target": check.name, "detail": detail})
                    }
                    (Err(CheckError::SqlServer(e)), _) => serde_json::json!({
                        "target": e.target, "phase": e.phase.to_string(), "error": e.message
                    }),
                    (Err(e), _) => {
                        serde_json::json!({"target": check.name, "error": e.to_string()})
                    }
                };
                report.insert(Connector::SqlServer.key().into(), value);
            }
            Connector::Databricks => {
                let value = match &check.outcome {
                    Ok(detail) => serde_json::json!({"ok": true, "detail": detail}),
                    Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
                };
                databricks.insert(check.name.clone(), value);
            }
        }
    }
    if !databricks.is_empty() {
        report.insert(Connector::Databricks.key().into(), databricks.into());
    }
    report.insert("ok".into(), ok.into());
    serde_json::Value::Object(report)
}
