//! Against a real SQL Server: runs only when `SQLSERVER_HOST` is set (with `SQLSERVER_USERNAME`,
//! `SQLSERVER_PASSWORD`, `SQLSERVER_DATABASE`, and `SQLSERVER_TRUST_CERT=true` for self-signed servers).
//! Without them every test is reported as ignored (skipped), never as passed; `.ci/run` adds
//! `--include-ignored` when `SQLSERVER_HOST` is set, and a test run that way without the
//! variables fails naming the one missing.

mod common;

use common::*;

/// Why these tests are skipped unless asked for.
const NEEDS: &str = "needs a real SQL Server: set SQLSERVER_HOST (and credentials), then run with --include-ignored";

/// Fails the test (run with `--include-ignored`) when no server is configured.
fn require_server() {
    assert!(
        std::env::var("SQLSERVER_HOST").is_ok_and(|h| !h.is_empty()),
        "SQLSERVER_HOST is not set: this test {NEEDS}"
    );
}

#[test]
#[ignore = "needs a real SQL Server (SQLSERVER_HOST)"]
fn real_server_test_connection() {
    require_server();
    let s = Scratch::empty();
    let out = ok(s.bridge(&["test-connection"]));
    assert!(out.contains("Microsoft SQL Server"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real SQL Server (SQLSERVER_HOST)"]
async fn real_server_types_round_trip_to_parquet() {
    require_server();
    let settings = bridge::mssql::SqlServerSettings::from_env().unwrap();
    let mut client = bridge::mssql::connect(&settings).await.unwrap();
    client
        .simple_query(
            "IF OBJECT_ID('dbo.bridge_it_types') IS NOT NULL DROP TABLE dbo.bridge_it_types;
             CREATE TABLE dbo.bridge_it_types (id INT NOT NULL PRIMARY KEY, d DECIMAL(38,10) NULL,
               t DATETIME2(7) NULL, s NVARCHAR(MAX) NULL, g UNIQUEIDENTIFIER NULL);
             INSERT INTO dbo.bridge_it_types VALUES
               (1, 12345678901234567890.0123456789, '2024-01-31 12:34:56.1234567', N'Ñandú 日本',
                '6F9619FF-8B86-D011-B42D-00C04FC964FF'),
               (2, NULL, NULL, NULL, NULL);",
        )
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let s = Scratch::empty();
    s.write(
        "pipelines/x.yaml",
        "name: x\nsteps:\n  - id: t\n    source:\n      type: sqlserver\n      sql: SELECT id, d, t, s, g FROM dbo.bridge_it_types ORDER BY id\n  - id: out\n    sink: {type: volume, from: t, destination: out, path: t}\n",
    );
    let root = s.root().to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_bridge"))
            .arg("--root")
            .arg(root)
            .args(["run", "pipelines/x.yaml"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    ok(o);
    assert_eq!(
        batch_lines(&read_parquet(&part(&s.path("out/t"), "out-00000.parquet"))),
        [
            "1|12345678901234567890.0123456789|2024-01-31T12:34:56.123456700|Ñandú 日本|6F9619FF-8B86-D011-B42D-00C04FC964FF",
            "2|NULL|NULL|NULL|NULL"
        ]
    );
}

/// Change tracking on a real server: enabled on the database and a new table (the login needs
/// ALTER DATABASE, or an administrator enables it beforehand), a snapshot, then changes merged
/// into a Delta table that equals the source table value by value after each run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real SQL Server (SQLSERVER_HOST)"]
async fn real_server_change_tracking_merges_into_delta() {
    require_server();
    let settings = bridge::mssql::SqlServerSettings::from_env().unwrap();
    let exec = |sql: &'static str| common::tds::tsql_on(&settings, sql);
    exec(
        "IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE database_id = DB_ID())
           EXEC (N'ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON)');
         EXEC (N'ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION ON');
         IF OBJECT_ID('dbo.bridge_it_ct') IS NOT NULL DROP TABLE dbo.bridge_it_ct;
         CREATE TABLE dbo.bridge_it_ct (id INT NOT NULL PRIMARY KEY, name NVARCHAR(20) NULL, qty INT NULL);
         INSERT INTO dbo.bridge_it_ct VALUES (1, N'a', 10), (2, N'b', 20), (3, N'c', 30);
         ALTER TABLE dbo.bridge_it_ct ENABLE CHANGE_TRACKING;",
    )
    .await;
    let s = Scratch::empty();
    s.write(
        "pipelines/ct.yaml",
        "name: ct\nsteps:\n  - id: t\n    source:\n      type: sqlserver\n      table: dbo.bridge_it_ct\n      incremental: {mode: change_tracking}\n  - id: lake\n    sink: {type: delta, from: t, path: lake/ct, mode: merge, keys: [id]}\n",
    );
    let run_and_compare = || async {
        let root = s.root().to_path_buf();
        let o = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_bridge"))
                .arg("--root")
                .arg(root)
                .args(["run", "pipelines/ct.yaml"])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        ok(o);
        let url = deltalake::ensure_table_uri(s.path("lake/ct").to_str().unwrap()).unwrap();
        let table = deltalake::open_table(url).await.unwrap();
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let lake = query_lines(&ctx, "SELECT id, name, qty FROM t ORDER BY id").await;
        let source = common::tds::query_lines_on(
            &settings,
            "SELECT id, name, qty FROM dbo.bridge_it_ct ORDER BY id",
        )
        .await;
        assert_eq!(lake, source);
    };
    run_and_compare().await;
    exec(
        "UPDATE dbo.bridge_it_ct SET qty = 11 WHERE id = 1;
         DELETE FROM dbo.bridge_it_ct WHERE id = 2;
         INSERT INTO dbo.bridge_it_ct VALUES (4, N'd', NULL);",
    )
    .await;
    run_and_compare().await;
    exec("DROP TABLE dbo.bridge_it_ct;").await;
}
