//! The `sqlserver` source over the real TDS protocol, against the project's TDS test server:
//! every type to Parquet with exact values, bound parameters, range partitions, retried faults,
//! and `bridge test-connection`.

mod common;

use common::tds::{bridge_with, bridge_with_env, env_for, tsql};
use common::*;
use deltalake::arrow::datatypes::{DataType, TimeUnit};
use tds_test_server::{FaultPlan, TdsServer, TdsServerConfig};

const ALL_TYPES: &str = "
CREATE TABLE dbo.all_types (
    id INT NOT NULL PRIMARY KEY,
    c_bit BIT NULL, c_tiny TINYINT NULL, c_small SMALLINT NULL, c_big BIGINT NULL,
    c_real REAL NULL, c_float FLOAT NULL,
    c_dec DECIMAL(38,10) NULL, c_num NUMERIC(18,4) NULL,
    c_money MONEY NULL, c_smallmoney SMALLMONEY NULL,
    c_date DATE NULL, c_time TIME(7) NULL, c_dt DATETIME NULL, c_sdt SMALLDATETIME NULL,
    c_dt2 DATETIME2(7) NULL, c_dt2_3 DATETIME2(3) NULL, c_dto DATETIMEOFFSET(7) NULL,
    c_char CHAR(5) NULL, c_varchar VARCHAR(50) NULL, c_nchar NCHAR(3) NULL, c_nvarchar NVARCHAR(50) NULL,
    c_nvmax NVARCHAR(MAX) NULL, c_text TEXT NULL, c_ntext NTEXT NULL,
    c_bin BINARY(4) NULL, c_varbin VARBINARY(MAX) NULL, c_guid UNIQUEIDENTIFIER NULL, c_xml XML NULL
);
INSERT INTO dbo.all_types VALUES (
    1, 1, 255, -32768, 9223372036854775807,
    1.5, 2.25,
    12345678901234567890.0123456789, 99999999999999.9999,
    92233720368.5477, 214748.3647,
    '2024-02-29', '23:59:59.9999999', '2024-01-31 12:34:56.997', '2024-01-31 12:35:00',
    '2024-01-31 12:34:56.1234567', '2024-01-31 12:34:56.123', '2024-01-31 12:34:56.1234567 +05:00',
    'abc', 'plain text', N'ñú', N'Ñandú 日本',
    N'long', 'text', N'ntext',
    0x01020304, 0xCAFEBABE, '6F9619FF-8B86-D011-B42D-00C04FC964FF', N'<a>1</a>'
);
INSERT INTO dbo.all_types (id) VALUES (2);
";

/// Row 1 of `dbo.all_types` as Databricks reads it (`a|b|c` lines), with `c_varchar` given.
fn all_types_row(c_varchar: &str) -> String {
    [
        "1",
        "true",
        "255",
        "-32768",
        "9223372036854775807",
        "1.5",
        "2.25",
        "12345678901234567890.0123456789",
        "99999999999999.9999",
        "92233720368.5477",
        "214748.3647",
        "2024-02-29",
        "23:59:59.9999999",
        "2024-01-31T12:34:56.997",
        "2024-01-31T12:35:00",
        "2024-01-31T12:34:56.123456",
        "2024-01-31T12:34:56.123",
        "2024-01-31T07:34:56.123456Z",
        "abc  ",
        c_varchar,
        "ñú ",
        "Ñandú 日本",
        "long",
        "text",
        "ntext",
        "01020304",
        "cafebabe",
        "6F9619FF-8B86-D011-B42D-00C04FC964FF",
        "<a>1</a>",
    ]
    .join("|")
}

/// Row 2 of `dbo.all_types`: every column NULL but the key.
fn all_types_nulls() -> String {
    std::iter::once("2".to_string())
        .chain(std::iter::repeat_n("NULL".to_string(), 28))
        .collect::<Vec<_>>()
        .join("|")
}

/// Every type, read by each driver (`mssql-tds`, the default, and tiberius): the same values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_to_parquet_exactly() {
    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    tsql(&server, ALL_TYPES).await;
    for driver in ["mssql_tds", "tiberius"] {
        let s = Scratch::empty();
        s.write(
            "pipelines/x.yaml",
            "name: x\nsteps:\n  - id: t\n    source: {type: sqlserver, table: dbo.all_types}\n  - id: out\n    sink: {type: volume, from: t, destination: out, path: t}\n",
        );
        let env = [("SQLSERVER_READ_DRIVER", driver)];
        let o = bridge_with_env(&s, &server, &env, &["run", "pipelines/x.yaml"]).await;
        ok(o);
        check_all_types(
            &read_parquet(&part(&s.path("out/t"), "out-00000.parquet")),
            driver,
        );
    }
    server.shutdown().await;
}

/// The Parquet of `dbo.all_types` has the policy's types and every value exact.
fn check_all_types(batches: &[deltalake::arrow::array::RecordBatch], driver: &str) {
    let schema = batches[0].schema();
    let ty = |name: &str| schema.field_with_name(name).unwrap().data_type().clone();
    assert_eq!(ty("id"), DataType::Int32);
    // The output type policy: what Databricks reads (README "Types").
    assert_eq!(ty("c_tiny"), DataType::Int16);
    assert_eq!(ty("c_dec"), DataType::Decimal128(38, 10));
    assert_eq!(ty("c_num"), DataType::Decimal128(18, 4));
    assert_eq!(ty("c_money"), DataType::Decimal128(19, 4));
    assert_eq!(
        ty("c_dt2"),
        DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    assert_eq!(
        ty("c_dto"),
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(
        ty("c_dt2_3"),
        DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    assert_eq!(ty("c_time"), DataType::Utf8);
    assert_eq!(ty("c_nvarchar"), DataType::Utf8);
    assert_eq!(ty("c_varbin"), DataType::Binary);
    let lines = batch_lines(batches);
    assert_eq!(
        lines,
        [all_types_row("plain text"), all_types_nulls()],
        "{driver}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_bound_and_partitions_cover_every_row_once() {
    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    let mut sql = String::from(
        "CREATE TABLE dbo.facts (id BIGINT NULL, country NVARCHAR(20) NOT NULL, amount DECIMAL(18,2) NOT NULL);\n",
    );
    for chunk in (1..=2000).collect::<Vec<i64>>().chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "({i}, N'{}', {}.{:02})",
                    if i % 3 == 0 { "mexico" } else { "colombia" },
                    i,
                    i % 100
                )
            })
            .collect();
        sql.push_str(&format!(
            "INSERT INTO dbo.facts VALUES {};\n",
            values.join(",")
        ));
    }
    sql.push_str("INSERT INTO dbo.facts VALUES (NULL, N'colombia', 1.00);\n");
    tsql(&server, &sql).await;
    let s = Scratch::empty();
    s.write("config/countries/colombia.yaml", "params:\n  min_id: 100\n");
    s.write(
        "queries/colombia/facts.sql",
        "SELECT id, country, amount FROM dbo.facts\nWHERE country = {{ country | bind }} AND (id >= {{ min_id | bind }} OR id IS NULL)\n",
    );
    s.write(
        "pipelines/x.yaml",
        "name: x\nsteps:\n  - id: facts\n    source:\n      type: sqlserver\n      query: facts.sql\n      batch_size: 100\n      partition: {column: id, partitions: 4}\n  - id: sorted\n    transform: {sql: SELECT * FROM facts ORDER BY id NULLS FIRST}\n  - id: out\n    sink: {type: volume, from: sorted, destination: out, path: facts}\n",
    );
    let plan = ok(bridge_with(
        &s,
        &server,
        &["plan", "pipelines/x.yaml", "--country", "colombia"],
    )
    .await);
    assert!(
        plan.contains("WHERE country = @P1 AND (id >= @P2 OR id IS NULL)"),
        "{plan}"
    );
    ok(bridge_with(
        &s,
        &server,
        &["run", "pipelines/x.yaml", "--country", "colombia"],
    )
    .await);
    let got = batch_lines(&read_parquet(&part(
        &s.path("out/facts"),
        "out-00000.parquet",
    )));
    let mut expected = vec!["NULL|colombia|1.00".to_string()];
    expected.extend(
        (100..=2000i64)
            .filter(|i| i % 3 != 0)
            .map(|i| format!("{i}|colombia|{i}.{:02}", i % 100)),
    );
    assert_eq!(got, expected);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_over_the_whole_bigint_range_read_every_row_once() {
    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    tsql(
        &server,
        "CREATE TABLE dbo.extremes (id BIGINT NULL, label NVARCHAR(10) NOT NULL)",
    )
    .await;
    // Straight into SQLite: the extremes as exact integers.
    server
        .execute_sqlite(
            "INSERT INTO extremes VALUES (-9223372036854775808, 'min'), (-9223372036854775807, 'min+1'), \
             (-1, 'minus'), (0, 'zero'), (1, 'one'), (4611686018427387904, 'quarter'), \
             (9223372036854775806, 'max-1'), (9223372036854775807, 'max'), (NULL, 'null')",
        )
        .unwrap();
    let s = Scratch::empty();
    for partitions in [4, 7] {
        s.write(
            "pipelines/x.yaml",
            &format!(
                "name: x\nsteps:\n  - id: rows\n    source:\n      type: sqlserver\n      sql: SELECT id, label FROM dbo.extremes\n      partition: {{column: id, partitions: {partitions}}}\n  - id: sorted\n    transform: {{sql: SELECT * FROM rows ORDER BY id NULLS FIRST}}\n  - id: out\n    sink: {{type: volume, from: sorted, destination: out, path: p{partitions}}}\n"
            ),
        );
        ok(bridge_with(&s, &server, &["run", "pipelines/x.yaml"]).await);
        let got = batch_lines(&read_parquet(&part(
            &s.path(&format!("out/p{partitions}")),
            "out-00000.parquet",
        )));
        assert_eq!(
            got,
            vec![
                "NULL|null",
                "-9223372036854775808|min",
                "-9223372036854775807|min+1",
                "-1|minus",
                "0|zero",
                "1|one",
                "4611686018427387904|quarter",
                "9223372036854775806|max-1",
                "9223372036854775807|max",
            ],
            "{partitions} partitions"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_mid_stream_is_retried_to_the_same_output() {
    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    let mut sql =
        String::from("CREATE TABLE dbo.big (id INT NOT NULL, label NVARCHAR(40) NOT NULL);\n");
    for chunk in (1..=5000).collect::<Vec<i32>>().chunks(1000) {
        let values: Vec<String> = chunk.iter().map(|i| format!("({i}, N'row {i}')")).collect();
        sql.push_str(&format!(
            "INSERT INTO dbo.big VALUES {};\n",
            values.join(",")
        ));
    }
    tsql(&server, &sql).await;
    let s = Scratch::empty();
    s.write(
        "pipelines/x.yaml",
        "name: x\nsteps:\n  - id: big\n    source:\n      type: sqlserver\n      sql: SELECT id, label FROM dbo.big ORDER BY id\n      batch_size: 256\n  - id: out\n    sink: {type: volume, from: big, destination: out, path: big, max_rows_per_file: 2000}\n",
    );
    ok(bridge_with(&s, &server, &["run", "pipelines/x.yaml"]).await);
    let undisturbed: Vec<String> = list_files(&s.path("out/big"))
        .iter()
        .filter(|f| f.ends_with(".parquet"))
        .flat_map(|f| batch_lines(&read_parquet(&s.path("out/big").join(f))))
        .collect();
    assert_eq!(undisturbed.len(), 5000);

    std::fs::remove_dir_all(s.path("out")).unwrap();
    server.set_faults(FaultPlan {
        drop_after_rows: Some(3000),
        drop_after_packets: None,
    });
    let o = bridge_with(&s, &server, &["run", "pipelines/x.yaml"]).await;
    let err = stderr(&o);
    let out = ok(o);
    assert!(
        err.contains("transient failure, retrying"),
        "the fault happened and was retried: {err}"
    );
    assert!(out.contains("out"), "{out}");
    let files = list_untagged(&s.path("out/big"));
    assert_eq!(
        files,
        [
            "_SUCCESS",
            "out-00000.parquet",
            "out-00001.parquet",
            "out-00002.parquet"
        ]
    );
    let retried: Vec<String> = files
        .iter()
        .filter(|f| f.ends_with(".parquet"))
        .flat_map(|f| batch_lines(&read_parquet(&part(&s.path("out/big"), f))))
        .collect();
    assert_eq!(retried, undisturbed);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("out/big/_SUCCESS")).unwrap()).unwrap();
    assert_eq!(manifest["rows"], 5000);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_reports_version_or_the_failing_phase() {
    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    let s = Scratch::empty();
    let out = ok(bridge_with(&s, &server, &["test-connection"]).await);
    assert!(out.contains("ok,"), "{out}");
    assert!(out.contains("round trip"), "{out}");

    s.write("config/defaults.yaml", "sqlserver:\n  username: bad\n");
    // The environment sets the username; config is overridden by it, so use a step-less check:
    let mut env = env_for(&server);
    env.retain(|(k, _)| k != "SQLSERVER_USERNAME");
    let root = s.root().to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_bridge"))
            .arg("--root")
            .arg(&root)
            .arg("test-connection")
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("login failed"), "{err}");
    assert!(
        !err.contains("not-a-real-secret"),
        "the password never appears: {err}"
    );

    let port = server.addr().port();
    server.shutdown().await;
    let o = bridge_with_port(&s, port).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("TCP connection failed"), "{err}");
}

async fn bridge_with_port(s: &Scratch, port: u16) -> std::process::Output {
    let root = s.root().to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_bridge"))
            .arg("--root")
            .arg(&root)
            .arg("test-connection")
            .env("SQLSERVER_HOST", "127.0.0.1")
            .env("SQLSERVER_PORT", port.to_string())
            .env("SQLSERVER_USERNAME", "sa")
            .env("SQLSERVER_PASSWORD", "x")
            .env("SQLSERVER_ENCRYPT", "danger_plaintext")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_read_only_rows_past_the_watermark() {
    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    tsql(
        &server,
        "CREATE TABLE dbo.events (id INT NOT NULL, changed DATETIME2(7) NOT NULL);
         INSERT INTO dbo.events VALUES (1, '2024-01-01 00:00:00.0000001'), (2, '2024-01-02 00:00:00');",
    )
    .await;
    let s = Scratch::empty();
    s.write(
        "pipelines/x.yaml",
        "name: x\nsteps:\n  - id: ev\n    source:\n      type: sqlserver\n      sql: SELECT id, changed FROM dbo.events\n      incremental: {column: changed}\n  - id: sorted\n    transform: {sql: SELECT * FROM ev ORDER BY id}\n  - id: out\n    sink: {type: volume, from: sorted, destination: out, path: \"run-{{ n }}\"}\n",
    );
    let lines = |n: u32| {
        batch_lines(&read_parquet(&part(
            &s.path(&format!("out/run-{n}")),
            "out-00000.parquet",
        )))
    };
    ok(bridge_with(&s, &server, &["run", "pipelines/x.yaml", "--param", "n=1"]).await);
    assert_eq!(lines(1), ["1|2024-01-01T00:00:00", "2|2024-01-02T00:00:00"]);
    // A dry run and a failed run do not move the watermark.
    ok(bridge_with(
        &s,
        &server,
        &["run", "pipelines/x.yaml", "--param", "n=0", "--dry-run"],
    )
    .await);
    tsql(&server, "INSERT INTO dbo.events VALUES (3, '2024-01-02 00:00:00.0000001'), (4, '2024-02-01 00:00:00.0000005');").await;
    ok(bridge_with(&s, &server, &["run", "pipelines/x.yaml", "--param", "n=2"]).await);
    // The files hold microseconds; the watermark keeps the 7th digit of the highest value, so
    // row 4 is not read again and a row 200 ns later is.
    assert_eq!(lines(2), ["3|2024-01-02T00:00:00", "4|2024-02-01T00:00:00"]);
    ok(bridge_with(&s, &server, &["run", "pipelines/x.yaml", "--param", "n=3"]).await);
    assert!(lines(3).is_empty());
    tsql(
        &server,
        "INSERT INTO dbo.events VALUES (5, '2024-02-01 00:00:00.0000007');",
    )
    .await;
    ok(bridge_with(&s, &server, &["run", "pipelines/x.yaml", "--param", "n=4"]).await);
    assert_eq!(lines(4), ["5|2024-02-01T00:00:00"]);
    server.shutdown().await;
}

/// A source that cannot connect says why at once, naming its step and where it is declared: no
/// host configured, or a port
/// nobody listens on (not "Timed out in bb8" after the pool's 15 s connection timeout).
#[test]
fn a_source_that_cannot_connect_says_why_at_once() {
    let s = Scratch::empty();
    s.write(
        "pipelines/x.yaml",
        "name: x\nsteps:\n  - id: sales\n    source: {type: sqlserver, sql: SELECT 1 AS x}\n  - id: out\n    sink: {type: volume, from: sales, destination: out, path: x}\n",
    );
    let no_host = s.bridge_env(
        &["run", "pipelines/x.yaml"],
        &[("SQLSERVER_HOST", String::new())],
    );
    let err = stderr(&no_host);
    assert_eq!(no_host.status.code(), Some(2), "{err}");
    assert!(
        err.contains("pipelines/x.yaml:")
            && err.contains("`sales`")
            && err.contains("SQL Server host is not set: set SQLSERVER_HOST"),
        "{err}"
    );
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = s.bridge_env(
        &["run", "pipelines/x.yaml"],
        &[
            ("SQLSERVER_HOST", "127.0.0.1".to_string()),
            ("SQLSERVER_PORT", port.to_string()),
            ("SQLSERVER_USERNAME", "sa".to_string()),
            ("SQLSERVER_PASSWORD", "x".to_string()),
        ],
    );
    let err = stderr(&closed);
    assert_eq!(closed.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: pipelines/x.yaml:3: step `sales` failed: ")
            && err.contains(&format!("127.0.0.1:{port}"))
            && err.contains("TCP connection failed")
            && err.to_lowercase().contains("connection refused")
            && !err.contains("bb8"),
        "{err}"
    );
    assert!(!s.path("out/x").exists());
}

/// A run that waits for an output's lock reads its incremental watermark after the wait: the
/// holder's commit may move it. Without that, the waiting run reads rows the holder already took
/// and an `insert` sink writes them twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_for_a_lock_reads_the_watermark_its_holder_left() {
    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    tsql(
        &server,
        "CREATE TABLE dbo.events (id INT NOT NULL, changed DATETIME2(3) NOT NULL);
         INSERT INTO dbo.events VALUES (1, '2024-01-01'), (2, '2024-01-02');",
    )
    .await;
    let s = Scratch::empty();
    // `latest` is locked by the test below; a run with another `latest` does not need that lock
    // but shares the watermark (pipeline, country and step are the same).
    s.write(
        "pipelines/x.yaml",
        "name: x\nparams: {latest: latest}\nsteps:\n  - id: ev\n    source:\n      type: sqlserver\n      sql: SELECT id, changed FROM dbo.events\n      incremental: {column: changed}\n  - id: out\n    sink: {type: volume, from: ev, destination: out, path: \"run-{{ n }}\"}\n  - id: last\n    sink: {type: volume, from: ev, destination: out, path: \"{{ latest }}\"}\n",
    );
    let ids = |n: u32| {
        let dir = s.path(&format!("out/run-{n}"));
        let mut ids: Vec<String> = batch_lines(&read_parquet(&part(&dir, "out-00000.parquet")))
            .iter()
            .map(|line| line.split('|').next().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    ok(bridge_with(&s, &server, &["run", "pipelines/x.yaml", "--param", "n=1"]).await);
    assert_eq!(ids(1), ["1", "2"]);

    // Hold `out/latest` as a run in progress would (the lock file names its output).
    let lock_file = list_files(&s.path(".bridge/locks"))
        .into_iter()
        .map(|f| s.path(&format!(".bridge/locks/{f}")))
        .find(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .any(|l| l.ends_with("/out/latest"))
        })
        .expect("a lock file for out/latest");
    let held = std::fs::File::open(&lock_file).unwrap();
    held.lock().unwrap();
    let env = env_for(&server);
    let root = s.root().to_path_buf();
    let waiting = std::process::Command::new(env!("CARGO_BIN_EXE_bridge"))
        .arg("--root")
        .arg(&root)
        .args(["run", "pipelines/x.yaml", "--param", "n=2"])
        .envs(env)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Time for the waiting run to start (and, were it to open its source before waiting, to
    // read the watermark); meanwhile another run takes row 3 and moves the watermark past it.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    tsql(&server, "INSERT INTO dbo.events VALUES (3, '2024-01-03');").await;
    ok(bridge_with(
        &s,
        &server,
        &[
            "run",
            "pipelines/x.yaml",
            "--param",
            "n=3",
            "--param",
            "latest=other",
        ],
    )
    .await);
    assert_eq!(ids(3), ["3"]);
    held.unlock().unwrap();
    let waited = tokio::task::spawn_blocking(move || waiting.wait_with_output().unwrap())
        .await
        .unwrap();
    ok(waited);
    assert!(
        ids(2).is_empty(),
        "the waiting run read rows its lock's holder had already taken: {:?}",
        ids(2)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colombia_pipeline_extracts_to_the_volume_and_syncs_results_back() {
    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    tsql(
        &server,
        "CREATE TABLE dbo.Sales (SaleID INT NOT NULL PRIMARY KEY, SaleDate DATE NOT NULL,
            RegionCode NVARCHAR(10) NOT NULL, ProductID INT NOT NULL, Quantity INT NOT NULL,
            Amount DECIMAL(14,2) NOT NULL, CountryCode CHAR(2) NOT NULL);
         INSERT INTO dbo.Sales VALUES
            (1, '2024-02-01', N'BOG', 7, 2, 10.50, 'CO'), (2, '2024-03-05', N'MED', 8, 1, 3.25, 'CO'),
            (3, '2024-04-01', N'CDMX', 7, 5, 99.99, 'MX'), (4, '2024-05-01', N'CAL', 9, 3, 7.00, 'CO');
         CREATE TABLE dbo.CalibrationResults (household_id INT NOT NULL, period VARCHAR(7) NOT NULL,
            weight DECIMAL(10,4) NULL, PRIMARY KEY (household_id, period));
         INSERT INTO dbo.CalibrationResults VALUES (1, '2024-05', 1.0000), (9, '2024-05', 9.0000);",
    )
    .await;
    let s = Scratch::new();
    // Results computed "in Databricks": a Delta table in the lakehouse folder.
    s.write(
        "in/results.csv",
        "household_id,period,weight\n1,2024-05,1.2500\n2,2024-05,0.7500\n",
    );
    s.write(
        "pipelines/seed_results.yaml",
        "name: seed\nsteps:\n  - id: csv\n    source: {type: csv, path: in/results.csv}\n  - id: typed\n    transform:\n      sql: SELECT CAST(household_id AS INT) AS household_id, CAST(period AS VARCHAR) AS period, CAST(weight AS DECIMAL(10,4)) AS weight FROM csv\n  - id: lake\n    sink: {type: delta, from: typed, path: \"{{ lakehouse_root }}/{{ country }}/calibration_results\", mode: overwrite}\n",
    );
    ok(bridge_with(
        &s,
        &server,
        &[
            "run",
            "pipelines/seed_results.yaml",
            "--country",
            "colombia",
        ],
    )
    .await);
    ok(bridge_with(
        &s,
        &server,
        &[
            "run",
            "pipelines/colombia.yaml",
            "--country",
            "colombia",
            "--param",
            "run_date=2024-06-01",
        ],
    )
    .await);
    // Colombia's sales since its start_date (2024-03-01), from four key ranges.
    let dir = s.path("output/volume/colombia/sqlserver/sales/2024-06-01");
    let mut sales: Vec<String> = list_files(&dir)
        .iter()
        .filter(|f| f.ends_with(".parquet"))
        .flat_map(|f| batch_lines(&read_parquet(&dir.join(f))))
        .collect();
    sales.sort();
    assert_eq!(
        sales,
        ["2|2024-03-05|MED|8|1|3.25", "4|2024-05-01|CAL|9|3|7.00"]
    );
    // Upserted by (household_id, period): 1 updated, 2 inserted, 9 untouched.
    assert_eq!(
        server
            .query_sqlite(
                "SELECT household_id, period, printf('%.4f', weight) FROM CalibrationResults ORDER BY household_id"
            )
            .unwrap()
            .into_iter()
            .map(|r| r
                .into_iter()
                .map(std::option::Option::unwrap_or_default)
                .collect::<Vec<_>>()
                .join("|"))
            .collect::<Vec<_>>(),
        ["1|2024-05|1.2500", "2|2024-05|0.7500", "9|2024-05|9.0000"]
    );
    server.shutdown().await;
}

/// `bridge extract` runs a country's queries on SQL Server when `extract_source: sqlserver` is
/// configured (the original system's behaviour); an unknown source is refused naming the
/// parameter and the file, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_runs_the_country_queries_on_sql_server_when_configured() {
    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    tsql(
        &server,
        "CREATE TABLE dbo.sales (id INT NOT NULL, amount DECIMAL(10,2) NULL, region NVARCHAR(20) NULL);
         INSERT INTO dbo.sales VALUES (1, 1.50, N'Andina'), (2, 2.25, N'Caribe'), (3, NULL, NULL);",
    )
    .await;
    let s = Scratch::empty();
    s.write(
        "config/defaults.yaml",
        "params:\n  extract_source: sqlserver\n",
    );
    s.write("config/countries/peru.yaml", "params:\n  currency: PEN\n");
    s.write(
        "queries/peru/sales.sql",
        "SELECT id, amount, region FROM dbo.sales WHERE id >= 2 ORDER BY id",
    );
    let args = |config: &str, dest: &str| {
        [
            "extract".to_string(),
            "--queries-path".into(),
            s.path("queries").display().to_string(),
            "--config-path".into(),
            s.path(config).display().to_string(),
            "--country".into(),
            "Peru".into(),
            "--destination".into(),
            s.path(dest).display().to_string(),
        ]
    };
    let a = args("config", "extracted");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    ok(bridge_with(&s, &server, &a).await);
    assert_eq!(
        list_untagged(&s.path("extracted")),
        ["peru/sales/_SUCCESS", "peru/sales/sales-00000.parquet"]
    );
    assert_eq!(
        batch_lines(&read_parquet(&part(
            &s.path("extracted/peru/sales"),
            "sales-00000.parquet"
        ))),
        ["2|2.25|Caribe", "3|NULL|NULL"]
    );

    s.write("bad/defaults.yaml", "params:\n  extract_source: oracle\n");
    s.write("bad/countries/peru.yaml", "params: {}\n");
    let a = args("bad", "extracted2");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = bridge_with(&s, &server, &a).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("defaults.yaml") && err.contains("extract_source") && err.contains("oracle"),
        "{err}"
    );
    assert!(!s.path("extracted2").exists());
}

/// `datetime2(7)` over SQL Server's whole range: the 7th digit is truncated and counted by
/// default (run summary and `_SUCCESS`), refused with `sub_microsecond: error` naming column
/// and row (nothing written); `keep_offsets` keeps a `datetimeoffset`'s offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datetime2_digits_below_the_microsecond_are_counted_or_refused() {
    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    tsql(
        &server,
        "CREATE TABLE dbo.times (id INT NOT NULL, at DATETIME2(7) NULL, dto DATETIMEOFFSET(7) NULL);
         INSERT INTO dbo.times VALUES (1, '0001-01-01 00:00:00', '2024-01-01 00:00:00 -14:00'),
            (2, '9999-12-31 23:59:59.9999999', '2024-01-01 00:00:00 +05:30'),
            (3, '2024-06-01 12:00:00.123456', NULL), (4, NULL, NULL);",
    )
    .await;
    let s = Scratch::empty();
    let pipeline = |sink: &str| {
        format!(
            "name: x\nsteps:\n  - id: t\n    source: {{type: sqlserver, sql: \"SELECT id, at, dto FROM dbo.times\", keep_offsets: true}}\n  - id: sorted\n    transform: {{sql: SELECT * FROM t ORDER BY id}}\n  - id: out\n    sink: {{type: volume, from: sorted, destination: out, {sink}}}\n"
        )
    };
    s.write("pipelines/x.yaml", &pipeline("path: t"));
    let o = bridge_with(
        &s,
        &server,
        &["--output", "json", "run", "pipelines/x.yaml"],
    )
    .await;
    assert!(!stderr(&o).contains("ERROR"), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&ok(o)).unwrap();
    let source = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["id"] == "t")
        .unwrap();
    assert_eq!(
        source["truncated"],
        serde_json::json!({"at": 1}),
        "{summary}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("out/t/_SUCCESS")).unwrap()).unwrap();
    assert_eq!(
        manifest["truncated_sub_microsecond"],
        serde_json::json!({"t.at": 1}),
        "{manifest}"
    );
    let lines = batch_lines(&read_parquet(&part(&s.path("out/t"), "out-00000.parquet")));
    assert_eq!(
        lines,
        [
            "1|0001-01-01T00:00:00|2024-01-01T14:00:00Z|-840",
            "2|9999-12-31T23:59:59.999999|2023-12-31T18:30:00Z|330",
            "3|2024-06-01T12:00:00.123456|NULL|NULL",
            "4|NULL|NULL|NULL",
        ]
    );

    // The text summary says the same, under the source and under the sink.
    s.write("pipelines/x.yaml", &pipeline("path: t_text"));
    let text = ok(bridge_with(&s, &server, &["run", "pipelines/x.yaml"]).await);
    assert!(
        text.contains("    truncated below the microsecond: at: 1\n")
            && text.contains("    truncated below the microsecond: t.at: 1\n"),
        "{text}"
    );

    // `error` refuses the run at the value, naming column and row; nothing is written.
    s.write(
        "pipelines/x.yaml",
        &pipeline("path: t_strict, sub_microsecond: error"),
    );
    let o = bridge_with(&s, &server, &["run", "pipelines/x.yaml"]).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("column `at` row 2") && err.contains("9999-12-31 23:59:59.9999999"),
        "{err}"
    );
    assert!(!s.path("out/t_strict/_SUCCESS").exists());

    // `nanoseconds` keeps them, for readers other than Spark, within 1677..2262 only.
    s.write(
        "pipelines/x.yaml",
        &pipeline("path: t_ns, sub_microsecond: nanoseconds"),
    );
    let o = bridge_with(&s, &server, &["run", "pipelines/x.yaml"]).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("column `at` row 1") && err.contains("1677..2262"),
        "{err}"
    );
    tsql(&server, "DELETE FROM dbo.times WHERE id < 3; INSERT INTO dbo.times VALUES (5, '2024-06-01 12:00:00.1234567', NULL);").await;
    ok(bridge_with(&s, &server, &["run", "pipelines/x.yaml"]).await);
    let batches = read_parquet(&part(&s.path("out/t_ns"), "out-00000.parquet"));
    assert_eq!(
        batches[0].schema().field(1).data_type(),
        &DataType::Timestamp(TimeUnit::Nanosecond, None)
    );
    assert_eq!(
        batch_lines(&batches),
        [
            "3|2024-06-01T12:00:00.123456|NULL|NULL",
            "4|NULL|NULL|NULL",
            "5|2024-06-01T12:00:00.123456700|NULL|NULL"
        ]
    );
    server.shutdown().await;
}

/// Every SQL Server type into a Delta table: a new table (with `timestamp_ntz` and its feature),
/// then append and overwrite on the existing one, every value read back after each run (the
/// overwrite after a source change, so its rows replace the others); no ERROR line on any of
/// these normal runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_writes_a_delta_table_new_appended_and_overwritten() {
    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    tsql(&server, ALL_TYPES).await;
    let s = Scratch::empty();
    let (row, nulls) = (all_types_row("plain text"), all_types_nulls());
    let changed = all_types_row("changed before the overwrite");
    for (mode, expected) in [
        ("append", vec![row.as_str(), &nulls]),
        ("append", vec![row.as_str(), &row, &nulls, &nulls]),
        ("overwrite", vec![changed.as_str(), &nulls]),
    ] {
        if mode == "overwrite" {
            tsql(
                &server,
                "UPDATE dbo.all_types SET c_varchar = 'changed before the overwrite' WHERE id = 1",
            )
            .await;
        }
        s.write(
            "pipelines/x.yaml",
            &format!("name: x\nsteps:\n  - id: t\n    source: {{type: sqlserver, table: dbo.all_types}}\n  - id: lake\n    sink: {{type: delta, from: t, path: lake/all_types, mode: {mode}}}\n"),
        );
        let o = bridge_with(&s, &server, &["run", "pipelines/x.yaml"]).await;
        let err = stderr(&o);
        assert!(!err.contains("ERROR"), "{mode}: {err}");
        ok(o);
        let url = deltalake::ensure_table_uri(s.path("lake/all_types").to_str().unwrap()).unwrap();
        let table = deltalake::open_table(url).await.unwrap();
        let snapshot = table.snapshot().unwrap();
        let schema = snapshot.schema();
        let ty = |name: &str| {
            serde_json::to_value(schema.field(name).unwrap().data_type())
                .unwrap()
                .to_string()
        };
        assert_eq!(ty("c_tiny"), "\"short\"");
        assert_eq!(ty("c_dt2"), "\"timestamp_ntz\"");
        assert_eq!(ty("c_dto"), "\"timestamp\"");
        assert_eq!(ty("c_time"), "\"string\"");
        let features = serde_json::to_value(snapshot.protocol())
            .unwrap()
            .to_string();
        assert!(features.contains("timestampNtz"), "{features}");
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let lines = query_lines(&ctx, "SELECT * FROM t ORDER BY id").await;
        assert_eq!(lines, expected, "{mode}");
    }
    server.shutdown().await;
}

/// The version and files of a local Delta table.
async fn delta_state(path: &std::path::Path) -> (u64, Vec<String>) {
    let url = deltalake::ensure_table_uri(path.to_str().unwrap()).unwrap();
    let table = deltalake::open_table(url).await.unwrap();
    (table.version().unwrap(), list_files(path))
}

/// A Delta table another writer created, whose `at` is an instant (`timestamp`; its `seen` is
/// `timestamp_ntz`, so it has the `timestampNtz` feature and delta-rs alone would convert `at`
/// silently): a step whose `at` is a wall-clock time (`datetime2`, so `timestamp_ntz`) is
/// refused before anything is written, with `append` and with `overwrite`, in one paragraph naming the step, the column,
/// both types and the cast; the table keeps its version and files. The cast it names works.
/// A table whose `timestamp_ntz` column lacks the `timestampNtz` feature is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_delta_table_with_other_column_types_is_refused_before_writing() {
    use deltalake::arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use deltalake::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    let server = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    tsql(
        &server,
        "CREATE TABLE dbo.events (id BIGINT NOT NULL, at DATETIME2(6) NULL, seen DATETIME2(6) NULL,
             note NVARCHAR(50) NULL);
         INSERT INTO dbo.events VALUES (2, '2024-06-01 12:00:00.123456', '2024-06-02 08:00:00',
             N'from SQL Server');",
    )
    .await;
    let s = Scratch::empty();
    let path = s.path("lake/events");
    std::fs::create_dir_all(&path).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new(
            "seen",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("note", DataType::Utf8, true),
    ]));
    let batch = deltalake::arrow::array::RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_704_067_200_000_000]).with_timezone("UTC"),
            ),
            Arc::new(TimestampMicrosecondArray::from(vec![1_704_153_600_000_000])),
            Arc::new(StringArray::from(vec!["from another writer"])),
        ],
    )
    .unwrap();
    let url = deltalake::ensure_table_uri(path.to_str().unwrap()).unwrap();
    deltalake::DeltaTable::try_from_url(url)
        .await
        .unwrap()
        .write(vec![batch])
        .await
        .unwrap();
    let before = delta_state(&path).await;
    assert_eq!(before.0, 0);
    let url = deltalake::ensure_table_uri(path.to_str().unwrap()).unwrap();
    let protocol = deltalake::open_table(url).await.unwrap();
    let protocol = serde_json::to_value(protocol.snapshot().unwrap().protocol()).unwrap();
    assert!(protocol.to_string().contains("timestampNtz"), "{protocol}");

    for mode in ["append", "overwrite"] {
        s.write(
            "pipelines/x.yaml",
            &format!("name: x\nsteps:\n  - id: t\n    source: {{type: sqlserver, table: dbo.events}}\n  - id: lake\n    sink: {{type: delta, from: t, path: lake/events, mode: {mode}}}\n"),
        );
        let o = bridge_with(&s, &server, &["run", "pipelines/x.yaml"]).await;
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{mode}: {err}");
        // One paragraph (one line) with all of it.
        assert!(
            err.lines().any(|l| l.starts_with("error: step `lake`: Delta table ")
                && l.contains("column `at` is timestamp in the table but timestamp_ntz in the step's output")
                && l.contains("does not convert it silently")
                && l.contains("`arrow_cast(\"at\", 'Timestamp(Microsecond, \"UTC\")') AS \"at\"`")),
            "{mode}: {err}"
        );
        assert_eq!(
            delta_state(&path).await,
            before,
            "{mode}: the table changed"
        );
    }

    // The cast the error names: the values are UTC, so the rows append as instants.
    s.write(
        "pipelines/x.yaml",
        "name: x\nsteps:\n  - id: t\n    source: {type: sqlserver, table: dbo.events}\n  - id: utc\n    transform:\n      sql: |\n        SELECT id, arrow_cast(\"at\", 'Timestamp(Microsecond, \"UTC\")') AS \"at\", seen, note FROM t\n  - id: lake\n    sink: {type: delta, from: utc, path: lake/events, mode: append}\n",
    );
    let o = bridge_with(&s, &server, &["run", "pipelines/x.yaml"]).await;
    assert!(!stderr(&o).contains("ERROR"), "{}", stderr(&o));
    ok(o);
    let url = deltalake::ensure_table_uri(path.to_str().unwrap()).unwrap();
    let table = deltalake::open_table(url).await.unwrap();
    assert_eq!(table.version(), Some(1));
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    table.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    assert_eq!(
        query_lines(&ctx, "SELECT * FROM t ORDER BY id").await,
        [
            "1|2024-01-01T00:00:00Z|2024-01-02T00:00:00|from another writer",
            "2|2024-06-01T12:00:00.123456Z|2024-06-02T08:00:00|from SQL Server"
        ]
    );

    // A `timestamp_ntz` column without the `timestampNtz` feature (protocol 1, 2): not a table
    // delta-rs writes; the run is refused naming the feature, and nothing is written.
    let bad = s.path("lake/no_feature");
    std::fs::create_dir_all(bad.join("_delta_log")).unwrap();
    let schema_string = serde_json::json!({"type": "struct", "fields": [
        {"name": "id", "type": "long", "nullable": false, "metadata": {}},
        {"name": "at", "type": "timestamp_ntz", "nullable": true, "metadata": {}},
        {"name": "note", "type": "string", "nullable": true, "metadata": {}},
    ]})
    .to_string();
    let log = [
        serde_json::json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}),
        serde_json::json!({"metaData": {
            "id": "5fba94ed-9794-4965-ba6e-6ee3c0d22af9",
            "format": {"provider": "parquet", "options": {}},
            "schemaString": schema_string,
            "partitionColumns": [],
            "configuration": {},
            "createdTime": 1_704_067_200_000_i64,
        }}),
    ]
    .map(|a| a.to_string())
    .join("\n");
    std::fs::write(bad.join("_delta_log/00000000000000000000.json"), log + "\n").unwrap();
    let files = list_files(&bad);
    s.write(
        "pipelines/x.yaml",
        "name: x\nsteps:\n  - id: t\n    source: {type: sqlserver, table: dbo.events}\n  - id: lake\n    sink: {type: delta, from: t, path: lake/no_feature, mode: append}\n",
    );
    let o = bridge_with(&s, &server, &["run", "pipelines/x.yaml"]).await;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.lines().any(
            |l| l.starts_with("error: pipelines/x.yaml:5: step `lake` failed: ")
                && l.contains("lake/no_feature")
                && l.contains("timestampNtz")
        ),
        "{err}"
    );
    assert_eq!(list_files(&bad), files);
    server.shutdown().await;
}
