//! Incremental reads with deletes: the `sqlserver` source's `incremental: {mode:
//! change_tracking}` against the TDS test server's change tracking, written as change sets to a
//! volume folder and merged into Delta tables, compared value by value with the source table.

mod common;

use common::tds::{bridge_with, tds_lines, tsql};
use common::*;
use tds_test_server::{TdsServer, TdsServerConfig};

/// A tracked table `dbo.items` with rows 1..=3, in a database that allows snapshot isolation.
async fn tracked_server() -> TdsServer {
    tracked(
        "CREATE TABLE dbo.items (id INT NOT NULL PRIMARY KEY, name NVARCHAR(20) NULL, amount DECIMAL(10,2) NULL);
         INSERT INTO dbo.items VALUES (1, N'one', 1.50), (2, N'two', 2.00), (3, N'three', 3.25);",
    )
    .await
}

/// A server where `create` made `dbo.items`, then tracked.
async fn tracked(create: &str) -> TdsServer {
    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    tsql(&server, create).await;
    tsql(
        &server,
        "ALTER DATABASE bridge SET ALLOW_SNAPSHOT_ISOLATION ON;
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

    // Keys other than the primary key are refused: CHANGETABLE reports changes by primary key.
    let s = volume_project("{mode: change_tracking, keys: [name]}");
    let out = bridge_with(&s, &server, &["run", "pipelines/ct.yaml", "--param", "n=1"]).await;
    assert!(
        stderr(&out)
            .contains("incremental.keys: [name] are not the primary key of [dbo].[items] ([id])"),
        "{}",
        stderr(&out)
    );
    assert!(!s.path("out/run-1").exists());

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

/// A project merging `dbo.items` by change tracking into the Delta table `lake/items`; with
/// `blocker`, a second sink (a volume folder partitioned by `name`) whose commit fails when
/// `out/items/name=<blocker>` is a file in the way: the Delta merge commits first, the run fails
/// after it, and the version is not saved.
fn merge_project(incremental: &str) -> Scratch {
    let s = Scratch::empty();
    s.write(
        "pipelines/ct.yaml",
        &format!(
            "name: ct\nsteps:\n  - id: items\n    source:\n      type: sqlserver\n      table: dbo.items\n      incremental: {incremental}\n  - id: lake\n    sink: {{type: delta, from: items, path: lake/items, mode: merge, keys: [id]}}\n  - id: copy\n    sink: {{type: volume, from: items, destination: out, path: items, partition_by: name}}\n"
        ),
    );
    s
}

/// The Delta table's rows, `columns` in id order.
async fn lake_lines(s: &Scratch, columns: &str) -> Vec<String> {
    let url = deltalake::ensure_table_uri(s.path("lake/items").to_str().unwrap()).unwrap();
    let table = deltalake::open_table(url).await.unwrap();
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    table.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    query_lines(&ctx, &format!("SELECT {columns} FROM t ORDER BY id")).await
}

/// Runs the merge pipeline, then compares the Delta table with the source, value by value.
async fn run_and_compare(s: &Scratch, server: &TdsServer, columns: &str) {
    ok(bridge_with(s, server, &["run", "pipelines/ct.yaml"]).await);
    let source = tds_lines(
        server,
        &format!("SELECT {columns} FROM dbo.items ORDER BY id"),
    )
    .await;
    assert_eq!(lake_lines(s, columns).await, source);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_runs_of_changes_keep_a_delta_table_equal_to_the_source() {
    let server = tracked(
        "CREATE TABLE dbo.items (id INT NOT NULL PRIMARY KEY, name NVARCHAR(20) NULL, qty INT NULL);
         INSERT INTO dbo.items VALUES (1, N'a', 10), (2, N'b', 20), (3, N'c', 30), (4, N'd', NULL);",
    )
    .await;
    let s = merge_project("{mode: change_tracking}");
    run_and_compare(&s, &server, "id, name, qty").await;
    assert_eq!(lake_lines(&s, "id").await.len(), 4);

    // Run 2: updates, deletes, inserts, a key deleted and inserted again, one updated twice.
    tsql(
        &server,
        "UPDATE dbo.items SET qty = 11 WHERE id = 1;
         UPDATE dbo.items SET qty = 12 WHERE id = 1;
         DELETE FROM dbo.items WHERE id = 2;
         DELETE FROM dbo.items WHERE id = 3;
         INSERT INTO dbo.items VALUES (3, N'c again', 33);
         INSERT INTO dbo.items VALUES (5, N'e', 50), (6, N'f', NULL);
         UPDATE dbo.items SET name = NULL WHERE id = 4;",
    )
    .await;
    run_and_compare(&s, &server, "id, name, qty").await;

    // Run 3 fails after the Delta merge committed (another sink's commit fails), so the version
    // is not saved; the repeat reads the same changes and merges them again without duplicates.
    tsql(
        &server,
        "DELETE FROM dbo.items WHERE id = 5;
         INSERT INTO dbo.items VALUES (7, N'g', 70);
         UPDATE dbo.items SET name = N'blocked' WHERE id = 6;",
    )
    .await;
    s.write("out/items/name=blocked", "in the way");
    let failed = bridge_with(&s, &server, &["run", "pipelines/ct.yaml"]).await;
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    std::fs::remove_file(s.path("out/items/name=blocked")).unwrap();
    run_and_compare(&s, &server, "id, name, qty").await;
    let ids = lake_lines(&s, "id").await;
    assert_eq!(ids, ["1", "3", "4", "6", "7"], "each key once");

    // A new source column: added to the Delta table in the merge's commit.
    tsql(
        &server,
        "ALTER TABLE dbo.items ADD note NVARCHAR(10) NULL;
         UPDATE dbo.items SET note = N'hi' WHERE id = 7;",
    )
    .await;
    let out = ok(bridge_with(
        &s,
        &server,
        &["--output", "json", "run", "pipelines/ct.yaml"],
    )
    .await);
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lake = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["id"] == "lake")
        .unwrap()
        .clone();
    assert!(
        lake["schema_changes"]
            .to_string()
            .contains("added column `note`"),
        "{lake}"
    );
    let source = tds_lines(
        &server,
        "SELECT id, name, qty, note FROM dbo.items ORDER BY id",
    )
    .await;
    assert_eq!(lake_lines(&s, "id, name, qty, note").await, source);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_refresh_after_lost_deletes_leaves_the_delta_table_equal_to_the_source() {
    let server = tracked(
        "CREATE TABLE dbo.items (id INT NOT NULL PRIMARY KEY, name NVARCHAR(20) NULL, qty INT NULL);
         INSERT INTO dbo.items VALUES (1, N'a', 10), (2, N'b', 20), (3, N'c', 30);",
    )
    .await;
    let s = merge_project("{mode: change_tracking, on_expired: full_refresh}");
    run_and_compare(&s, &server, "id, name, qty").await;
    // A delete and an insert whose changes are cleaned up before any run reads them.
    tsql(
        &server,
        "DELETE FROM dbo.items WHERE id = 1;
         INSERT INTO dbo.items VALUES (9, N'i', 90);
         ALTER DATABASE bridge SET CHANGE_TRACKING (CHANGE_RETENTION = 0 MINUTES);
         EXEC sys.sp_flush_CT_internal_table_on_demand @TableToClean = N'dbo.items';",
    )
    .await;
    // The snapshot merge removes key 1, which no change row reports any more.
    run_and_compare(&s, &server, "id, name, qty").await;
    assert_eq!(lake_lines(&s, "id").await, ["2", "3", "9"]);
    server.shutdown().await;
}
