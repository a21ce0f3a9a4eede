//! Change tracking end to end through tiberius: enabling (and its errors), CHANGETABLE rows and
//! operations between versions, the bridge's join query and its metadata, current and minimum
//! valid versions, cleanup, TRUNCATE, the sys views, the primary key query and SNAPSHOT isolation.

use std::time::Duration;

use tds_test_server::TdsServer;
use tiberius::{Row, ToSql};

mod common;

use common::{Conn, server};

async fn connect(server: &TdsServer) -> Conn {
    common::connect_as(server, "bridge", "sa")
        .await
        .expect("login")
}

async fn exec(c: &mut Conn, sql: &str) {
    c.simple_query(sql)
        .await
        .expect("sent")
        .into_results()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn error_code(c: &mut Conn, sql: &str) -> u32 {
    let r = async { c.simple_query(sql).await?.into_results().await }.await;
    match r {
        Err(tiberius::error::Error::Server(e)) => e.code(),
        other => panic!("{sql}: expected a server error, got {other:?}"),
    }
}

async fn query(c: &mut Conn, sql: &str, params: &[&dyn ToSql]) -> Vec<Row> {
    c.query(sql, params)
        .await
        .expect("sent")
        .into_first_result()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn opt_i64(c: &mut Conn, sql: &str, params: &[&dyn ToSql]) -> Option<i64> {
    let r = query(c, sql, params).await;
    r[0].try_get::<i64, _>(0)
        .or_else(|_| r[0].try_get::<i32, _>(0).map(|v| v.map(i64::from)))
        .expect("integer")
}

async fn current(c: &mut Conn) -> Option<i64> {
    opt_i64(c, "SELECT CHANGE_TRACKING_CURRENT_VERSION()", &[]).await
}

async fn min_valid(c: &mut Conn, table: &str) -> Option<i64> {
    opt_i64(
        c,
        "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@P1))",
        &[&table],
    )
    .await
}

const ENABLE_DB: &str = "ALTER DATABASE [bridge] SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON)";

/// The bridge's changes query for `t(id, name, amount)`.
const CHANGES: &str = "SELECT CASE [ct].[SYS_CHANGE_OPERATION] WHEN N'I' THEN N'insert' WHEN N'U' THEN N'update' ELSE N'delete' END AS [_change_op], [ct].[SYS_CHANGE_VERSION] AS [_change_version], [ct].[id] AS [id], [t].[name] AS [name], [t].[amount] AS [amount] FROM CHANGETABLE(CHANGES [dbo].[t], @P1) AS [ct] LEFT OUTER JOIN [dbo].[t] AS [t] ON [t].[id] = [ct].[id] ORDER BY [ct].[id]";

/// (op, version, id, name) of the bridge query since `since`.
async fn changes(c: &mut Conn, since: i64) -> Vec<(String, i64, i32, Option<String>)> {
    query(c, CHANGES, &[&since])
        .await
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>("_change_op").unwrap().to_string(),
                r.get::<i64, _>("_change_version").unwrap(),
                r.get::<i32, _>("id").unwrap(),
                r.get::<&str, _>("name").map(str::to_string),
            )
        })
        .collect()
}

#[tokio::test]
async fn enabling_needs_the_database_and_a_primary_key() {
    let s = server().await;
    let mut c = connect(&s).await;
    exec(
        &mut c,
        "CREATE TABLE t (id INT PRIMARY KEY, name NVARCHAR(20)); CREATE TABLE nokey (a INT)",
    )
    .await;
    assert_eq!(
        current(&mut c).await,
        None,
        "NULL while the database is off"
    );
    assert_eq!(
        error_code(&mut c, "ALTER TABLE [dbo].[t] ENABLE CHANGE_TRACKING").await,
        4996
    );
    exec(&mut c, "ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON").await;
    assert_eq!(current(&mut c).await, Some(0));
    assert_eq!(
        error_code(&mut c, "ALTER TABLE nokey ENABLE CHANGE_TRACKING").await,
        4997
    );
    assert_eq!(min_valid(&mut c, "dbo.t").await, None, "not tracked yet");
    assert_eq!(
        error_code(&mut c, "SELECT * FROM CHANGETABLE(CHANGES dbo.t, 0) AS ct").await,
        4998
    );
    exec(
        &mut c,
        "ALTER TABLE [dbo].[t] ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF)",
    )
    .await;
    assert_eq!(min_valid(&mut c, "dbo.t").await, Some(0));
    assert_eq!(
        error_code(&mut c, "ALTER DATABASE [bridge] SET CHANGE_TRACKING = OFF").await,
        22115,
        "tables must be disabled first"
    );
    let n = opt_i64(
        &mut c,
        "SELECT COUNT(*) FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(@P1)",
        &[&"dbo.t"],
    )
    .await;
    assert_eq!(n, Some(1));
    let n = opt_i64(
        &mut c,
        "SELECT COUNT(*) FROM sys.change_tracking_databases WHERE database_id = DB_ID()",
        &[],
    )
    .await;
    assert_eq!(n, Some(1));
    // Internal tables stay hidden.
    let names = query(
        &mut c,
        "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES ORDER BY TABLE_NAME",
        &[],
    )
    .await;
    let names: Vec<&str> = names.iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(names, ["nokey", "t"]);
    exec(&mut c, "ALTER TABLE t DISABLE CHANGE_TRACKING").await;
    assert_eq!(min_valid(&mut c, "dbo.t").await, None);
    exec(&mut c, "ALTER DATABASE [bridge] SET CHANGE_TRACKING = OFF").await;
    assert_eq!(current(&mut c).await, None);
    let n = opt_i64(
        &mut c,
        "SELECT COUNT(*) FROM sys.change_tracking_databases WHERE database_id = DB_ID()",
        &[],
    )
    .await;
    assert_eq!(n, Some(0));
    s.shutdown().await;
}

#[tokio::test]
async fn changetable_reports_the_net_change_of_each_key() {
    let s = server().await;
    let mut c = connect(&s).await;
    exec(
        &mut c,
        "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, name NVARCHAR(20), amount DECIMAL(18,2))",
    )
    .await;
    exec(&mut c, ENABLE_DB).await;
    exec(&mut c, "ALTER TABLE dbo.t ENABLE CHANGE_TRACKING").await;
    let v0 = current(&mut c).await.unwrap();
    exec(
        &mut c,
        "INSERT INTO t VALUES (1, N'a', 1.5), (2, N'b', 2.5), (3, N'c', 3.5)",
    )
    .await;
    let v1 = current(&mut c).await.unwrap();
    assert_eq!(
        v1,
        v0 + 1,
        "one version per statement outside a transaction"
    );
    exec(&mut c, "UPDATE t SET name = N'B' WHERE id = 2").await;
    exec(&mut c, "INSERT INTO t VALUES (4, N'd', 4.5)").await;
    exec(&mut c, "UPDATE t SET amount = 5 WHERE id = 4").await;
    exec(&mut c, "DELETE FROM t WHERE id = 3").await;
    exec(&mut c, "UPDATE t SET id = 10 WHERE id = 1").await;
    let v2 = current(&mut c).await.unwrap();
    assert_eq!(v2, v1 + 5);
    let got = changes(&mut c, v1).await;
    let expect = vec![
        ("delete".to_string(), v2, 1, None),
        ("update".to_string(), v1 + 1, 2, Some("B".to_string())),
        ("delete".to_string(), v1 + 4, 3, None),
        ("insert".to_string(), v1 + 3, 4, Some("d".to_string())),
        ("insert".to_string(), v2, 10, Some("a".to_string())),
    ];
    assert_eq!(got, expect);
    // From the start: 1 inserted then deleted -> D; 2 inserted then updated -> I.
    let ops: Vec<(String, i32)> = changes(&mut c, v0)
        .await
        .into_iter()
        .map(|(op, _, id, _)| (op, id))
        .collect();
    assert_eq!(
        ops,
        [
            ("delete".to_string(), 1),
            ("insert".to_string(), 2),
            ("delete".to_string(), 3),
            ("insert".to_string(), 4),
            ("insert".to_string(), 10)
        ]
    );
    assert!(changes(&mut c, v2).await.is_empty());
    // A transaction is one version, whatever it changes.
    exec(
        &mut c,
        "BEGIN TRAN; INSERT INTO t VALUES (20, N'x', 1); UPDATE t SET name = N'y' WHERE id = 2; COMMIT",
    )
    .await;
    assert_eq!(current(&mut c).await, Some(v2 + 1));
    // A rolled back transaction leaves no change and no version.
    exec(&mut c, "BEGIN TRAN; DELETE FROM t WHERE id = 20; ROLLBACK").await;
    assert_eq!(current(&mut c).await, Some(v2 + 1));
    let got = changes(&mut c, v2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], ("update".into(), v2 + 1, 2, Some("y".into())));
    assert_eq!(got[1], ("insert".into(), v2 + 1, 20, Some("x".into())));
    // SYS_CHANGE_CREATION_VERSION: the insert's version when inserted after @last, else NULL.
    let r = query(
        &mut c,
        "SELECT ct.id, ct.SYS_CHANGE_CREATION_VERSION FROM CHANGETABLE(CHANGES t, @P1) AS ct ORDER BY ct.id",
        &[&v2],
    )
    .await;
    assert_eq!(r[0].get::<i64, _>(1), None);
    assert_eq!(r[1].get::<i64, _>(1), Some(v2 + 1));
    // MERGE and bulk-style multi-row statements are tracked too.
    exec(
        &mut c,
        "MERGE INTO t USING (SELECT 2 AS id, N'm' AS name) AS s ON t.id = s.id \
         WHEN MATCHED THEN UPDATE SET t.name = s.name;",
    )
    .await;
    let got = changes(&mut c, v2 + 1).await;
    assert_eq!(got, [("update".into(), v2 + 2, 2, Some("m".into()))]);
    s.shutdown().await;
}

#[tokio::test]
async fn select_star_and_metadata_of_the_changes_query() {
    let s = server().await;
    let mut c = connect(&s).await;
    exec(
        &mut c,
        "CREATE TABLE k (a NVARCHAR(20) NOT NULL, b UNIQUEIDENTIFIER NOT NULL, v INT, \
         CONSTRAINT pk PRIMARY KEY (a, b))",
    )
    .await;
    exec(&mut c, ENABLE_DB).await;
    exec(&mut c, "ALTER TABLE k ENABLE CHANGE_TRACKING").await;
    exec(
        &mut c,
        "INSERT INTO k VALUES (N'x', '6F9619FF-8B86-D011-B42D-00C04FC964FF', 1)",
    )
    .await;
    let r = query(
        &mut c,
        "SELECT * FROM CHANGETABLE(CHANGES dbo.k, 0) AS ct",
        &[],
    )
    .await;
    let names: Vec<&str> = r[0].columns().iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "SYS_CHANGE_VERSION",
            "SYS_CHANGE_CREATION_VERSION",
            "SYS_CHANGE_OPERATION",
            "SYS_CHANGE_COLUMNS",
            "SYS_CHANGE_CONTEXT",
            "a",
            "b"
        ]
    );
    assert_eq!(r[0].get::<i64, _>(0), Some(1));
    assert_eq!(r[0].get::<&str, _>(2), Some("I"));
    assert_eq!(r[0].get::<&str, _>(5), Some("x"));
    assert_eq!(
        r[0].get::<tiberius::Uuid, _>(6)
            .map(|u| u.to_string().to_uppercase()),
        Some("6F9619FF-8B86-D011-B42D-00C04FC964FF".into())
    );
    // sp_describe_first_result_set of the bridge's query shape (composite key).
    let tsql = "SELECT CASE [ct].[SYS_CHANGE_OPERATION] WHEN N'I' THEN N'insert' WHEN N'U' THEN N'update' ELSE N'delete' END AS [_change_op], [ct].[SYS_CHANGE_VERSION] AS [_change_version], [ct].[a] AS [a], [ct].[b] AS [b], [k].[v] AS [v] FROM CHANGETABLE(CHANGES [dbo].[k], @P1) AS [ct] LEFT OUTER JOIN [dbo].[k] AS [k] ON [k].[a] = [ct].[a] AND [k].[b] = [ct].[b]";
    let r = query(
        &mut c,
        "EXEC sp_describe_first_result_set @tsql = @P1, @params = N'@P1 bigint'",
        &[&tsql],
    )
    .await;
    let types: Vec<(&str, &str)> = r
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>("name").unwrap(),
                r.get::<&str, _>("system_type_name").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            ("_change_op", "nvarchar(4000)"),
            ("_change_version", "bigint"),
            ("a", "nvarchar(20)"),
            ("b", "uniqueidentifier"),
            ("v", "int"),
        ]
    );
    let r = query(
        &mut c,
        "EXEC sp_describe_first_result_set N'SELECT * FROM CHANGETABLE(CHANGES k, 0) AS ct'",
        &[],
    )
    .await;
    let types: Vec<&str> = r
        .iter()
        .map(|r| r.get::<&str, _>("system_type_name").unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "bigint",
            "bigint",
            "nchar(1)",
            "varbinary(max)",
            "varbinary(128)",
            "nvarchar(20)",
            "uniqueidentifier"
        ]
    );
    s.shutdown().await;
}

#[tokio::test]
async fn zero_minute_retention_cleanup_raises_the_min_valid_version() {
    let s = server().await;
    let mut c = connect(&s).await;
    exec(
        &mut c,
        "CREATE TABLE t (id INT PRIMARY KEY, name NVARCHAR(20), amount INT)",
    )
    .await;
    exec(
        &mut c,
        "ALTER DATABASE [bridge] SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 0 MINUTES, AUTO_CLEANUP = ON)",
    )
    .await;
    exec(&mut c, "ALTER TABLE t ENABLE CHANGE_TRACKING").await;
    exec(
        &mut c,
        "INSERT INTO t VALUES (1, N'a', 1); INSERT INTO t VALUES (2, N'b', 2)",
    )
    .await;
    let v = current(&mut c).await.unwrap();
    assert_eq!(v, 2);
    assert_eq!(min_valid(&mut c, "dbo.t").await, Some(0));
    assert_eq!(changes(&mut c, 0).await.len(), 2);
    exec(
        &mut c,
        "EXEC sys.sp_flush_CT_internal_table_on_demand @TableToClean = N'dbo.t'",
    )
    .await;
    assert_eq!(min_valid(&mut c, "dbo.t").await, Some(v));
    assert!(changes(&mut c, 0).await.is_empty());
    // The parameter form, through sp_executesql.
    c.execute("EXEC sp_flush_CT_internal_table_on_demand @P1", &[&"t"])
        .await
        .expect("flush with a parameter");
    let n = opt_i64(
        &mut c,
        "SELECT min_valid_version FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.t')",
        &[],
    )
    .await;
    assert_eq!(n, Some(v));
    s.shutdown().await;
}

#[tokio::test]
async fn two_day_retention_keeps_changes() {
    let s = server().await;
    let mut c = connect(&s).await;
    exec(
        &mut c,
        "CREATE TABLE t (id INT PRIMARY KEY, name NVARCHAR(20), amount INT)",
    )
    .await;
    exec(&mut c, ENABLE_DB).await;
    exec(&mut c, "ALTER TABLE t ENABLE CHANGE_TRACKING").await;
    exec(&mut c, "INSERT INTO t VALUES (1, N'a', 1)").await;
    exec(&mut c, "sp_flush_CT_internal_table_on_demand 'dbo.t'").await;
    assert_eq!(min_valid(&mut c, "t").await, Some(0));
    assert_eq!(changes(&mut c, 0).await.len(), 1);
    s.shutdown().await;
}

#[tokio::test]
async fn truncate_is_refused_on_a_tracked_table() {
    let s = server().await;
    let mut c = connect(&s).await;
    exec(
        &mut c,
        "CREATE TABLE t (id INT PRIMARY KEY, name NVARCHAR(20)); CREATE TABLE u (id INT PRIMARY KEY)",
    )
    .await;
    exec(&mut c, ENABLE_DB).await;
    exec(&mut c, "ALTER TABLE t ENABLE CHANGE_TRACKING").await;
    exec(
        &mut c,
        "INSERT INTO t VALUES (1, N'a'); INSERT INTO u VALUES (1)",
    )
    .await;
    assert_eq!(error_code(&mut c, "TRUNCATE TABLE dbo.t").await, 4711);
    assert_eq!(
        opt_i64(&mut c, "SELECT COUNT(*) FROM t", &[]).await,
        Some(1)
    );
    exec(&mut c, "TRUNCATE TABLE u").await;
    assert_eq!(
        opt_i64(&mut c, "SELECT COUNT(*) FROM u", &[]).await,
        Some(0)
    );
    s.shutdown().await;
}

#[tokio::test]
async fn primary_key_columns_from_information_schema() {
    let s = server().await;
    let mut c = connect(&s).await;
    exec(
        &mut c,
        "CREATE TABLE k (b INT NOT NULL, a NVARCHAR(10) NOT NULL, v INT, PRIMARY KEY (a, b)); \
         CREATE TABLE plain (x INT)",
    )
    .await;
    let sql = "SELECT k.COLUMN_NAME FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS AS c JOIN INFORMATION_SCHEMA.KEY_COLUMN_USAGE AS k ON k.CONSTRAINT_NAME = c.CONSTRAINT_NAME AND k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME WHERE c.CONSTRAINT_TYPE = 'PRIMARY KEY' AND c.TABLE_SCHEMA = @P1 AND c.TABLE_NAME = @P2 ORDER BY k.ORDINAL_POSITION";
    let r = query(&mut c, sql, &[&"dbo", &"k"]).await;
    let cols: Vec<&str> = r.iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(cols, ["a", "b"]);
    assert!(query(&mut c, sql, &[&"dbo", &"plain"]).await.is_empty());
    s.shutdown().await;
}

#[tokio::test]
async fn snapshot_transactions_need_the_database_option_and_do_not_block_writers() {
    let s = server().await;
    let mut r = connect(&s).await;
    let mut w = connect(&s).await;
    exec(&mut r, "CREATE TABLE t (id INT PRIMARY KEY)").await;
    exec(&mut r, "INSERT INTO t VALUES (1)").await;
    exec(&mut r, "SET TRANSACTION ISOLATION LEVEL SNAPSHOT").await;
    exec(&mut r, "BEGIN TRANSACTION").await;
    assert_eq!(error_code(&mut r, "SELECT COUNT(*) FROM t").await, 3952);
    exec(&mut r, "ROLLBACK").await;
    exec(
        &mut r,
        "ALTER DATABASE [bridge] SET ALLOW_SNAPSHOT_ISOLATION ON",
    )
    .await;
    exec(&mut r, "BEGIN TRANSACTION").await;
    assert_eq!(
        opt_i64(&mut r, "SELECT COUNT(*) FROM t", &[]).await,
        Some(1)
    );
    // Another session's write completes while the snapshot is open…
    tokio::time::timeout(
        Duration::from_secs(5),
        exec(&mut w, "INSERT INTO t VALUES (2)"),
    )
    .await
    .expect("the writer is not blocked by the snapshot reader");
    // …and the snapshot does not see it.
    assert_eq!(
        opt_i64(&mut r, "SELECT COUNT(*) FROM t", &[]).await,
        Some(1)
    );
    exec(&mut r, "COMMIT").await;
    assert_eq!(
        opt_i64(&mut r, "SELECT COUNT(*) FROM t", &[]).await,
        Some(2)
    );
    exec(&mut r, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED").await;
    exec(
        &mut r,
        "ALTER DATABASE [bridge] SET ALLOW_SNAPSHOT_ISOLATION OFF",
    )
    .await;
    // READ COMMITTED transactions do not need the option.
    exec(&mut r, "BEGIN TRAN").await;
    assert_eq!(
        opt_i64(&mut r, "SELECT COUNT(*) FROM t", &[]).await,
        Some(2)
    );
    exec(&mut r, "COMMIT").await;
    s.shutdown().await;
}

#[tokio::test]
async fn bulk_load_is_tracked_as_one_version() {
    let s = server().await;
    let mut c = connect(&s).await;
    exec(
        &mut c,
        "CREATE TABLE t (id INT NOT NULL PRIMARY KEY, name NVARCHAR(20), amount INT)",
    )
    .await;
    exec(&mut c, ENABLE_DB).await;
    exec(&mut c, "ALTER TABLE t ENABLE CHANGE_TRACKING").await;
    let mut req = c.bulk_insert("t").await.expect("bulk insert starts");
    for i in 1..=3i32 {
        let mut row = tiberius::TokenRow::new();
        row.push(tiberius::ColumnData::I32(Some(i)));
        row.push(tiberius::ColumnData::String(Some(format!("n{i}").into())));
        row.push(tiberius::ColumnData::I32(Some(i)));
        req.send(row).await.expect("row sent");
    }
    assert_eq!(req.finalize().await.expect("bulk load").total(), 3);
    assert_eq!(current(&mut c).await, Some(1));
    let got = changes(&mut c, 0).await;
    assert_eq!(
        got,
        [
            ("insert".into(), 1, 1, Some("n1".into())),
            ("insert".into(), 1, 2, Some("n2".into())),
            ("insert".into(), 1, 3, Some("n3".into())),
        ]
    );
    s.shutdown().await;
}
