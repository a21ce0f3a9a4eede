//! `bridge test-connection`: checks SQL Server and Databricks, whichever are configured, and
//! reports each check's outcome.

use bridge::Result;

use super::{Context, Outcome, print_json};

#[derive(clap::Args)]
pub struct TestConnectionArgs {
    /// Also check that this volume folder (`/Volumes/catalog/schema/volume/...`) exists.
    #[arg(long)]
    volume: Option<String>,
}

/// Checks what is configured; [`Outcome::Failed`] when a check failed.
pub async fn test_connection(cx: &Context, args: TestConnectionArgs) -> Result<Outcome> {
    let (project, volume, json) = (&cx.project, args.volume.as_deref(), cx.json);
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
        Outcome::Success
    } else {
        Outcome::Failed
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
            Err(e) => Err(e.to_string()),
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
