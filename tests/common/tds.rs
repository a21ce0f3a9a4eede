//! Helpers for tests against the TDS test server: the `bridge` binary pointed at it, and T-SQL
//! run through the bridge's own connection code.

use tds_test_server::TdsServer;

use super::Scratch;

/// Environment pointing the `bridge` binary at the test server.
pub fn env_for(server: &TdsServer) -> Vec<(String, String)> {
    vec![
        ("SQLSERVER_HOST".into(), "127.0.0.1".into()),
        ("SQLSERVER_PORT".into(), server.addr().port().to_string()),
        ("SQLSERVER_DATABASE".into(), "bridge".into()),
        ("SQLSERVER_USERNAME".into(), "sa".into()),
        ("SQLSERVER_PASSWORD".into(), "not-a-real-secret".into()),
        ("SQLSERVER_ENCRYPT".into(), "danger_plaintext".into()),
    ]
}

/// Runs T-SQL on the test server through the bridge's own connection code.
pub async fn tsql(server: &TdsServer, sql: &str) {
    tsql_on(&super::tds_settings(server.addr().port()), sql).await;
}

/// Runs T-SQL on any SQL Server through the bridge's own connection code; a failure panics
/// with the statement and the server's message.
pub async fn tsql_on(settings: &bridge::mssql::SqlServerSettings, sql: &str) {
    let mut client = bridge::mssql::connect(settings).await.unwrap();
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_results()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Runs the binary on a blocking thread so the server keeps serving.
pub async fn bridge_with(s: &Scratch, server: &TdsServer, args: &[&str]) -> std::process::Output {
    bridge_with_env(s, server, &[], args).await
}

/// [`bridge_with`] with more environment variables.
pub async fn bridge_with_env(
    s: &Scratch,
    server: &TdsServer,
    extra: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    let mut env = env_for(server);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let root = s.root().to_path_buf();
    let args: Vec<String> = args.iter().map(std::string::ToString::to_string).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_bridge"))
            .arg("--root")
            .arg(&root)
            .args(&args)
            .envs(env)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Rows of a query on the test server as `a|b|c` lines (NULL for nulls), read over TDS: the
/// source side of a comparison.
pub async fn tds_lines(server: &TdsServer, sql: &str) -> Vec<String> {
    query_lines_on(&super::tds_settings(server.addr().port()), sql).await
}

/// Rows of a query on any SQL Server as `a|b|c` lines (NULL for nulls).
pub async fn query_lines_on(settings: &bridge::mssql::SqlServerSettings, sql: &str) -> Vec<String> {
    use tiberius::ColumnData;
    let mut client = bridge::mssql::connect(settings).await.unwrap();
    let rows = client
        .simple_query(sql)
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    rows.into_iter()
        .map(|row| {
            row.into_iter()
                .map(|value| match value {
                    ColumnData::U8(Some(v)) => v.to_string(),
                    ColumnData::I16(Some(v)) => v.to_string(),
                    ColumnData::I32(Some(v)) => v.to_string(),
                    ColumnData::I64(Some(v)) => v.to_string(),
                    ColumnData::Bit(Some(v)) => v.to_string(),
                    ColumnData::String(Some(v)) => v.to_string(),
                    ColumnData::F64(Some(v)) => v.to_string(),
                    other if format!("{other:?}").ends_with("(None)") => "NULL".to_string(),
                    other => panic!("tds_lines: add a rendering for {other:?}"),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}
