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

/// Runs T-SQL through the bridge's own connection code.
pub async fn tsql(server: &TdsServer, sql: &str) {
    let settings = bridge::mssql::SqlServerSettings {
        host: Some("127.0.0.1".into()),
        port: Some(server.addr().port()),
        username: Some("sa".into()),
        password_env: Some("PATH".into()), // any set variable; the test server ignores passwords
        encrypt: Some(bridge::mssql::settings::Encrypt::DangerPlaintext),
        ..Default::default()
    };
    let mut client = bridge::mssql::connect(&settings).await.unwrap();
    client
        .simple_query(sql)
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
}

/// Runs the binary on a blocking thread so the server keeps serving.
pub async fn bridge_with(s: &Scratch, server: &TdsServer, args: &[&str]) -> std::process::Output {
    let env = env_for(server);
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
