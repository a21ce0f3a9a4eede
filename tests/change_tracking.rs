//! Incremental reads with deletes: the `sqlserver` source's `incremental: {mode:
//! change_tracking}` against the TDS test server's change tracking, written as change sets to a
//! volume folder and merged into Delta tables, compared value by value with the source table.

mod common;

use common::tds::{bridge_with, tsql};
use common::*;
use tds_test_server::{TdsServer, TdsServerConfig};

/// A tracked table `dbo.items` with rows 1..=3, in a database that allows snapshot isolation.
async fn tracked_server() -> TdsServer {
    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    tsql(
        &server,
        "CREATE TABLE dbo.items (id INT NOT NULL PRIMARY KEY, name NVARCHAR(20) NULL, amount DECIMAL(10,2) NULL);
         INSERT INTO dbo.items VALUES (1, N'one', 1.50), (2, N'two', 2.00), (3, N'three', 3.25);
         ALTER DATABASE bridge SET ALLOW_SNAPSHOT_ISOLATION ON;
         ALTER DATABASE bridge SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON);
         ALTER TABLE dbo.items ENABLE CHANGE_TRACKING;",
    )
    .await;
    server
}

/// A project whose pipeline `ct` reads `dbo.items` by change tracking into `out/run-{n}`.
fn volume_project(incremental: &str) -> Scratch {
    let s = Scratch::empty();
    s.write(
        "pipelines/ct.yaml",
        &format!(
            "name: ct\nparams: {{n: 0}}\nsteps:\n  - id: items\n    source:\n      type: sqlserver\n      table: dbo.items\n      incremental: {incremental}\n  - id: sorted\n    transform: {{sql: SELECT * FROM items ORDER BY id}}\n  - id: out\n    sink: {{type: volume, from: sorted, destination: out, path: \"run-{{{{ n }}}}\"}}\n"
        ),
    );
    s
}

/// The rows run `n` wrote, one `id|name|amount|op|version` line each, in id order.
fn change_lines(s: &Scratch, n: u32) -> Vec<String> {
    batch_lines(&read_parquet(&part(
        &s.path(&format!("out/run-{n}")),
        "out-00000.parquet",
    )))
}

async fn run(s: &Scratch, server: &TdsServer, n: u32) -> String {
    ok(bridge_with(
        s,
        server,
        &["run", "pipelines/ct.yaml", "--param", &format!("n={n}")],
    )
    .await)
}

/// The lines without their version (the server numbers versions; tests compare their order).
fn ops(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let fields: Vec<&str> = l.split('|').collect();
            fields[..fields.len() - 1].join("|")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_run_reads_a_snapshot_and_later_runs_read_changes_with_deletes() {
    let server = tracked_server().await;
    let s = volume_project("{mode: change_tracking}");
    let plan = ok(s.bridge(&["plan", "pipelines/ct.yaml"]));
    assert!(
        plan.contains("incremental: change_tracking, no saved version"),
        "{plan}"
    );

    run(&s, &server, 1).await;
    let first = change_lines(&s, 1);
    assert_eq!(
        ops(&first),
        [
            "1|one|1.50|insert",
            "2|two|2.00|insert",
            "3|three|3.25|insert"
        ]
    );
    let snapshot_version: i64 = first[0].rsplit('|').next().unwrap().parse().unwrap();
    let plan = ok(s.bridge(&["plan", "pipelines/ct.yaml"]));
    assert!(
        plan.contains(&format!("saved version {snapshot_version}")),
        "{plan}"
    );

    // Changes: an update, a delete, an insert, and a key inserted then updated.
    tsql(
        &server,
        "UPDATE dbo.items SET amount = 20.00 WHERE id = 2;
         DELETE FROM dbo.items WHERE id = 3;
         INSERT INTO dbo.items VALUES (4, N'four', 4.00);
         INSERT INTO dbo.items VALUES (5, N'five', 5.00);
         UPDATE dbo.items SET name = N'FIVE' WHERE id = 5;",
    )
    .await;
    // A dry run reads them but saves nothing.
    ok(bridge_with(
        &s,
        &server,
        &["run", "pipelines/ct.yaml", "--param", "n=0", "--dry-run"],
    )
    .await);
    run(&s, &server, 2).await;
    let second = change_lines(&s, 2);
    assert_eq!(
        ops(&second),
        [
            "2|two|20.00|update",
            "3|NULL|NULL|delete",
            "4|four|4.00|insert",
            "5|FIVE|5.00|insert"
        ],
        "a deleted key carries its key, the rest null"
    );
    for line in &second {
        let version: i64 = line.rsplit('|').next().unwrap().parse().unwrap();
        assert!(version > snapshot_version, "{line}");
    }

    // Nothing changed: nothing read.
    run(&s, &server, 3).await;
    assert!(change_lines(&s, 3).is_empty());
    tsql(&server, "DELETE FROM dbo.items WHERE id = 1;").await;
    run(&s, &server, 4).await;
    assert_eq!(ops(&change_lines(&s, 4)), ["1|NULL|NULL|delete"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untracked_database_or_table_fails_naming_the_statements_to_run() {
    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    tsql(
        &server,
        "CREATE TABLE dbo.items (id INT NOT NULL PRIMARY KEY, name NVARCHAR(20) NULL, amount DECIMAL(10,2) NULL);",
    )
    .await;
    let s = volume_project("{mode: change_tracking}");
    let failed = |out: std::process::Output| {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(!s.path("out/run-1").exists(), "nothing written");
        stderr(&out)
    };
    let err =
        failed(bridge_with(&s, &server, &["run", "pipelines/ct.yaml", "--param", "n=1"]).await);
    assert!(
        err.contains("change tracking is not enabled on database `bridge`")
            && err.contains("ALTER DATABASE [bridge] SET CHANGE_TRACKING = ON")
            && err.contains("ALTER TABLE [dbo].[items] ENABLE CHANGE_TRACKING")
            && err.contains("pipelines/ct.yaml:"),
        "{err}"
    );
    tsql(&server, "ALTER DATABASE bridge SET CHANGE_TRACKING = ON;").await;
    let err =
        failed(bridge_with(&s, &server, &["run", "pipelines/ct.yaml", "--param", "n=1"]).await);
    assert!(
        err.contains("change tracking is not enabled on table [dbo].[items]")
            && err.contains("ALTER TABLE [dbo].[items] ENABLE CHANGE_TRACKING"),
        "{err}"
    );
    tsql(&server, "ALTER TABLE dbo.items ENABLE CHANGE_TRACKING;").await;
    let err =
        failed(bridge_with(&s, &server, &["run", "pipelines/ct.yaml", "--param", "n=1"]).await);
    assert!(
        err.contains("snapshot isolation is not allowed in database `bridge`")
            && err.contains("ALTER DATABASE [bridge] SET ALLOW_SNAPSHOT_ISOLATION ON"),
        "{err}"
    );
    tsql(
        &server,
        "ALTER DATABASE bridge SET ALLOW_SNAPSHOT_ISOLATION ON;",
    )
    .await;
    run(&s, &server, 1).await;
    assert!(change_lines(&s, 1).is_empty(), "an empty table's snapshot");

    // A configuration change tracking cannot serve is refused before anything runs.
    let s = volume_project("{mode: change_tracking, column: id}");
    let out = s.bridge(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("incremental.column") || stderr(&out).contains("incremental.column"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_version_fails_and_full_refresh_reads_a_new_snapshot() {
    let server = tracked_server().await;
    let s = volume_project("{mode: change_tracking}");
    run(&s, &server, 1).await;
    // Changes made, then cleaned up before any run read them.
    tsql(
        &server,
        "DELETE FROM dbo.items WHERE id = 1;
         INSERT INTO dbo.items VALUES (9, N'nine', 9.00);
         ALTER DATABASE bridge SET CHANGE_TRACKING (CHANGE_RETENTION = 0 MINUTES);
         EXEC sys.sp_flush_CT_internal_table_on_demand @TableToClean = N'dbo.items';",
    )
    .await;
    let out = bridge_with(&s, &server, &["run", "pipelines/ct.yaml", "--param", "n=2"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the changes of [dbo].[items] since version")
            && err.contains("CHANGE_TRACKING_MIN_VALID_VERSION is")
            && err.contains("on_expired: full_refresh"),
        "{err}"
    );
    assert!(!s.path("out/run-2").exists());

    s.write(
        "pipelines/ct.yaml",
        &std::fs::read_to_string(s.path("pipelines/ct.yaml"))
            .unwrap()
            .replace(
                "{mode: change_tracking}",
                "{mode: change_tracking, on_expired: full_refresh}",
            ),
    );
    run(&s, &server, 2).await;
    assert_eq!(
        ops(&change_lines(&s, 2)),
        [
            "2|two|2.00|insert",
            "3|three|3.25|insert",
            "9|nine|9.00|insert"
        ]
    );
    // And then changes again.
    tsql(&server, "UPDATE dbo.items SET name = N'deux' WHERE id = 2;").await;
    run(&s, &server, 3).await;
    assert_eq!(ops(&change_lines(&s, 3)), ["2|deux|2.00|update"]);
    server.shutdown().await;
}
