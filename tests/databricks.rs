//! The Databricks side through the real `bridge` binary, against the project's Databricks HTTP
//! double: volume uploads, the `databricks` source, retries, OAuth M2M, test-connection, the
//! events table (setup, claims, an end-to-end sync into the TDS test server).

mod common;

use std::sync::Arc;

use common::*;
use databricks_double::{DatabricksDouble, DoubleConfig, RecordedRequest};

const TOKEN: &str = "dapi-test-token";

/// A double on its own runtime (kept alive while the binary runs) and a scratch project whose
/// `bridge` runs point at it.
struct Fixture {
    rt: tokio::runtime::Runtime,
    double: DatabricksDouble,
    scratch: Scratch,
}

impl Fixture {
    fn new(config: DoubleConfig) -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let double = rt.block_on(DatabricksDouble::start(config)).unwrap();
        double.add_volume("main", "raw", "landing");
        let scratch = Scratch::empty();
        scratch.write("config/defaults.yaml", "params: {}\n");
        Fixture {
            rt,
            double,
            scratch,
        }
    }

    /// The environment of a run: the double's host and token, a HOME without ~/.databrickscfg.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABRICKS_HOST", self.double.base_url()),
            ("DATABRICKS_TOKEN", TOKEN.to_string()),
            ("DATABRICKS_WAREHOUSE_ID", "wh-test".to_string()),
            ("HOME", self.scratch.root().display().to_string()),
        ]
    }

    fn bridge(&self, args: &[&str]) -> std::process::Output {
        self.scratch.bridge_env(args, &self.env())
    }

    fn requests(&self, method: &str, path_prefix: &str) -> Vec<RecordedRequest> {
        self.double
            .requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(path_prefix))
            .collect()
    }
}

/// A CSV of `n` rows (id, region, amount) and a pipeline writing it to `destination`.
fn csv_to_volume(f: &Fixture, n: usize, destination: &str) {
    let mut csv = String::from("id,region,amount\n");
    for i in 0..n {
        csv.push_str(&format!("{i},r{},{}.25\n", i % 3, i));
    }
    f.scratch.write("data/sales.csv", &csv);
    f.scratch.write(
        "pipelines/to_volume.yaml",
        &format!(
            "name: to_volume
steps:
  - id: sales
    source:
      type: csv
      path: data/sales.csv
  - id: out
    sink:
      type: volume
      from: sales
      destination: {destination}
      path: sales/2024
      file_name: sales
      max_rows_per_file: 4000
"
        ),
    );
}

#[test]
fn volume_sink_uploads_the_local_layout_byte_for_byte_with_the_manifest_last() {
    let f = Fixture::new(DoubleConfig::default());
    // The same pipeline to a local folder and to the volume.
    csv_to_volume(&f, 10_000, "out/local");
    ok(f.bridge(&["run", "pipelines/to_volume.yaml"]));
    csv_to_volume(&f, 10_000, "/Volumes/main/raw/landing/bridge");
    ok(f.bridge(&["run", "pipelines/to_volume.yaml"]));

    let local = list_untagged(&f.scratch.path("out/local/sales/2024"));
    let remote_names: Vec<String> = f
        .double
        .list_files("/Volumes/main/raw/landing/bridge")
        .into_iter()
        .map(|p| {
            p.strip_prefix("/Volumes/main/raw/landing/bridge/sales/2024/")
                .unwrap_or_else(|| panic!("unexpected file {p}"))
                .to_string()
        })
        .collect();
    let remote: Vec<String> = remote_names.iter().map(|n| untagged(n)).collect();
    assert_eq!(remote, local);
    assert_eq!(
        remote,
        [
            "_SUCCESS",
            "sales-00000.parquet",
            "sales-00001.parquet",
            "sales-00002.parquet"
        ]
    );
    for name in remote_names.iter().filter(|n| n.ends_with(".parquet")) {
        let uploaded = f
            .double
            .file(&format!(
                "/Volumes/main/raw/landing/bridge/sales/2024/{name}"
            ))
            .unwrap();
        let written = std::fs::read(part(
            &f.scratch.path("out/local/sales/2024"),
            &untagged(name),
        ))
        .unwrap();
        assert_eq!(uploaded, written, "{name} differs");
    }
    let manifest: serde_json::Value = serde_json::from_slice(
        &f.double
            .file("/Volumes/main/raw/landing/bridge/sales/2024/_SUCCESS")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["rows"], 10_000);

    // Every request is authenticated and identified; uploads are octet streams; the manifest is
    // the last file written; no Parquet was staged inside the volume (only the run record).
    for r in f.double.requests() {
        assert_eq!(
            r.authorization.as_deref(),
            Some("Bearer dapi-test-token"),
            "{r:?}"
        );
        assert!(
            r.user_agent
                .as_deref()
                .unwrap_or("")
                .starts_with("sql-databricks-bridge/"),
            "{r:?}"
        );
        assert!(
            !(r.path.contains("bridge-staging") && r.path.ends_with(".parquet")),
            "{r:?}"
        );
        // Only the first run's look for a previous manifest (and for staging left by earlier
        // runs) finds nothing.
        let nothing_yet = r.method == "GET"
            && (r.path.ends_with("/_SUCCESS") || r.path.ends_with("/.bridge-staging"))
            && r.status == 404;
        assert!(r.status < 400 || nothing_yet, "{r:?}");
    }
    let puts: Vec<RecordedRequest> = f
        .requests("PUT", "/api/2.0/fs/files/")
        .into_iter()
        .filter(|r| !r.path.ends_with("/_RUN"))
        .collect();
    assert_eq!(puts.len(), 4);
    assert!(puts.last().unwrap().path.ends_with("/_SUCCESS"), "{puts:?}");
    for p in &puts {
        assert_eq!(p.content_type.as_deref(), Some("application/octet-stream"));
        assert_eq!(p.query.as_deref(), Some("overwrite=true"));
    }

    // A second, smaller run replaces the folder's content: the new manifest replaces the old one
    // (never withdrawn), then the previous run's three files go.
    f.double.clear_requests();
    csv_to_volume(&f, 5_000, "/Volumes/main/raw/landing/bridge");
    ok(f.bridge(&["run", "pipelines/to_volume.yaml"]));
    let folder = "/Volumes/main/raw/landing/bridge/sales/2024";
    let now: Vec<String> = f.double.list_files(folder);
    assert_eq!(
        now.iter().map(|p| untagged(p)).collect::<Vec<_>>(),
        [
            format!("{folder}/_SUCCESS"),
            format!("{folder}/sales-00000.parquet"),
            format!("{folder}/sales-00001.parquet"),
        ]
    );
    assert!(
        remote_names
            .iter()
            .filter(|old| old.ends_with(".parquet"))
            .all(|old| !now.contains(&format!("{folder}/{old}")))
    );
    let deletes: Vec<String> = f
        .requests("DELETE", "/api/2.0/fs/files/")
        .into_iter()
        .map(|r| r.path)
        .filter(|p| !p.ends_with("/_RUN"))
        .collect();
    assert_eq!(deletes.len(), 3, "the previous run's files: {deletes:?}");
    assert!(
        deletes.iter().all(|p| p.ends_with(".parquet")),
        "{deletes:?}"
    );
    let manifest_put = f
        .double
        .requests()
        .iter()
        .position(|r| r.method == "PUT" && r.path.ends_with("/_SUCCESS"))
        .unwrap();
    let first_delete = f
        .double
        .requests()
        .iter()
        .position(|r| r.method == "DELETE" && r.path.ends_with(".parquet"))
        .unwrap();
    assert!(
        manifest_put < first_delete,
        "old files go after the new manifest is in"
    );
}

#[test]
fn a_failing_run_changes_nothing_in_the_volume() {
    let f = Fixture::new(DoubleConfig::default());
    csv_to_volume(&f, 100, "/Volumes/main/raw/landing/bridge");
    ok(f.bridge(&["run", "pipelines/to_volume.yaml"]));
    let before = f.double.list_files("/Volumes/main/raw/landing");
    let success = f
        .double
        .file("/Volumes/main/raw/landing/bridge/sales/2024/_SUCCESS");
    f.double.clear_requests();
    // A second sink fails to stage (its volume does not exist): the first must not commit.
    let text = std::fs::read_to_string(f.scratch.path("pipelines/to_volume.yaml")).unwrap();
    f.scratch.write(
        "pipelines/to_volume.yaml",
        &format!(
            "{text}  - id: broken
    sink:
      type: volume
      from: sales
      destination: /Volumes/main/raw/missing
      path: x
"
        ),
    );
    let out = f.bridge(&["run", "pipelines/to_volume.yaml"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("404"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
    assert_eq!(f.double.list_files("/Volumes/main/raw/landing"), before);
    assert_eq!(
        f.double
            .file("/Volumes/main/raw/landing/bridge/sales/2024/_SUCCESS"),
        success
    );
    // What the first sink uploaded while staging was removed again; the old files never were.
    for old in before.iter().filter(|p| p.ends_with(".parquet")) {
        assert!(
            f.requests("DELETE", "/api/2.0/fs/files")
                .iter()
                .all(|r| !r.path.ends_with(old.rsplit('/').next().unwrap())),
            "{old} was deleted"
        );
    }
}

/// A run writing a SQL Server table, a volume folder and a Delta table, whose volume commit
/// fails: the Delta table (committed first) is named as committed, SQL Server (committed last)
/// was rolled back, the volume keeps its previous set.
#[test]
fn a_failed_commit_names_what_was_committed_and_leaves_sql_server_unchanged() {
    use tds_test_server::{TdsServer, TdsServerConfig};
    let f = Fixture::new(DoubleConfig::default());
    let sql =
        f.rt.block_on(TdsServer::start(TdsServerConfig::default()))
            .unwrap();
    f.rt.block_on(async {
        let mut client = bridge::mssql::connect(&tds_settings(sql.addr().port()))
            .await
            .unwrap();
        client
            .simple_query("CREATE TABLE dbo.Items (id BIGINT NOT NULL, region NVARCHAR(10) NULL)")
            .await
            .unwrap()
            .into_results()
            .await
            .unwrap();
    });
    let mut csv = String::from("id,region\n");
    for i in 0..50 {
        csv.push_str(&format!("{i},r{}\n", i % 3));
    }
    f.scratch.write("data/items.csv", &csv);
    // SQL Server's sink comes first in the file: the commit order does not follow it.
    f.scratch.write(
        "pipelines/everywhere.yaml",
        "name: everywhere
steps:
  - id: items
    source: {type: csv, path: data/items.csv}
  - id: to_sqlserver
    sink: {type: sqlserver, from: items, table: dbo.Items, mode: insert}
  - id: to_volume
    sink: {type: volume, from: items, destination: /Volumes/main/raw/landing/bridge, path: items}
  - id: to_delta
    sink: {type: delta, from: items, path: out/items_delta}
",
    );
    let mut env = f.env();
    env.extend([
        ("SQLSERVER_HOST", "127.0.0.1".to_string()),
        ("SQLSERVER_PORT", sql.addr().port().to_string()),
        ("SQLSERVER_USERNAME", "sa".to_string()),
        ("SQLSERVER_PASSWORD", "x".to_string()),
        ("SQLSERVER_ENCRYPT", "danger_plaintext".to_string()),
    ]);
    let run = || {
        f.scratch
            .bridge_env(&["run", "pipelines/everywhere.yaml"], &env)
    };
    let count = || sql.query_sqlite("SELECT COUNT(*) FROM Items").unwrap()[0][0].clone();
    ok(run());
    assert_eq!(count().as_deref(), Some("50"));
    let folder = "/Volumes/main/raw/landing/bridge/items";
    let before = f.double.list_files(folder);
    let manifest = f.double.file(&format!("{folder}/_SUCCESS")).unwrap();

    // The new manifest is refused: the volume's commit fails after its files were uploaded.
    let success = format!("/api/2.0/fs/files{folder}/_SUCCESS");
    f.double.fail_next_method("PUT", &success, 403, 1);
    let out = run();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("failed while committing volume folder {folder}")),
        "{err}"
    );
    let delta = f.scratch.path("out/items_delta").canonicalize().unwrap();
    assert!(
        err.contains(&format!(
            "Committed by this run before the failure: Delta table {}",
            delta.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "Not committed, left as they were: volume folder {folder}, SQL Server table dbo.Items."
        )),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "{err}");
    assert_eq!(count().as_deref(), Some("50"), "SQL Server was rolled back");
    assert_eq!(f.double.list_files(folder), before);
    assert_eq!(
        f.double.file(&format!("{folder}/_SUCCESS")).unwrap(),
        manifest
    );

    // A manifest upload that is written but answered with an error is found in place: committed.
    f.double.fail_next_after_running("PUT", &success, 500, 1);
    ok(run());
    assert_eq!(count().as_deref(), Some("100"));
    let now = f.double.list_files(folder);
    assert!(
        before
            .iter()
            .filter(|p| p.ends_with(".parquet"))
            .all(|p| !now.contains(p))
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&f.double.file(&format!("{folder}/_SUCCESS")).unwrap()).unwrap();
    let listed = manifest["files"][0]["path"].as_str().unwrap();
    assert_eq!(
        now,
        [format!("{folder}/_SUCCESS"), format!("{folder}/{listed}")]
    );
}

/// Seeds `main.sales.orders` with `n` rows.
fn seed_orders(f: &Fixture, n: usize) {
    f.double
        .execute_sql(
            "CREATE TABLE main.sales.orders (id BIGINT, region STRING, amount DECIMAL(18,4), placed_at TIMESTAMP, shipped BOOLEAN)",
        )
        .unwrap();
    let mut values = Vec::new();
    for i in 0..n {
        values.push(format!(
            "({i}, 'r{}', '{}.{:04}', '2024-03-{:02}T10:00:00.000000Z', {})",
            i % 3,
            i,
            i % 10_000,
            1 + i % 28,
            i % 2
        ));
        if values.len() == 500 || i + 1 == n {
            f.double
                .execute_sql(&format!(
                    "INSERT INTO main.sales.orders VALUES {}",
                    values.join(", ")
                ))
                .unwrap();
            values.clear();
        }
    }
}

fn databricks_to_parquet(f: &Fixture, source: &str) {
    f.scratch.write(
        "pipelines/from_databricks.yaml",
        &format!(
            "name: from_databricks
params:
  region: r1
steps:
  - id: orders
    source:
      type: databricks
{source}
  - id: out
    sink:
      type: volume
      from: orders
      destination: out
      path: orders
"
        ),
    );
}

#[test]
fn databricks_source_streams_every_chunk_in_order() {
    let f = Fixture::new(DoubleConfig {
        chunk_rows: 1000,
        pending_polls: 2,
        ..Default::default()
    });
    seed_orders(&f, 2_500);
    databricks_to_parquet(&f, "      table: main.sales.orders");
    let out = ok(f.bridge(&["run", "pipelines/from_databricks.yaml", "--output", "json"]));
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let steps = summary["steps"].as_array().unwrap();
    let orders = steps.iter().find(|s| s["id"] == "orders").unwrap();
    assert_eq!(orders["rows"], 2_500, "{summary}");

    let batches = read_parquet(&part(&f.scratch.path("out/orders"), "out-00000.parquet"));
    let schema = batches[0].schema();
    let types: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        [
            "id:Int64",
            "region:Utf8",
            "amount:Decimal128(18, 4)",
            "placed_at:Timestamp(µs, \"UTC\")",
            "shipped:Boolean"
        ]
    );
    let lines = batch_lines(&batches);
    assert_eq!(lines.len(), 2_500);
    assert_eq!(lines[0], "0|r0|0.0000|2024-03-01T10:00:00Z|false");
    assert_eq!(lines[2_499], "2499|r0|2499.2499|2024-03-08T10:00:00Z|true");
    let ids: Vec<i64> = lines
        .iter()
        .map(|l| l.split('|').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] + 1 == w[1]),
        "rows out of order"
    );

    // One statement, polled while running, as Arrow through external links; chunks 1 and 2
    // were asked for by their internal links.
    let posts = f.requests("POST", "/api/2.0/sql/statements");
    assert_eq!(posts.len(), 1);
    let body = posts[0].json.as_ref().unwrap();
    assert_eq!(body["warehouse_id"], "wh-test");
    assert_eq!(body["disposition"], "EXTERNAL_LINKS");
    assert_eq!(body["format"], "ARROW_STREAM");
    assert_eq!(body["statement"], "SELECT * FROM `main`.`sales`.`orders`");
    assert!(f.requests("GET", "/api/2.0/sql/statements/").len() >= 2 + 2);
    let links = f.requests("GET", "/__external/");
    assert_eq!(links.len(), 3);
    for l in &links {
        assert_eq!(l.authorization, None, "no auth header on presigned URLs");
    }
}

/// Presigned downloads: transient failures are retried; a refused (expired) link is replaced by
/// a fresh one from `GET .../result/chunks/{n}`; a link about to expire is replaced before use;
/// a link refused again is an error that does not show the signed URL.
#[test]
fn presigned_downloads_are_retried_and_refreshed() {
    // One chunk, so which download an injected failure hits is certain.
    let f = Fixture::new(DoubleConfig {
        chunk_rows: 1000,
        ..Default::default()
    });
    seed_orders(&f, 250);
    databricks_to_parquet(&f, "      table: main.sales.orders");
    let rows = |f: &Fixture| {
        batch_lines(&read_parquet(&part(
            &f.scratch.path("out/orders"),
            "out-00000.parquet",
        )))
        .len()
    };
    let statuses = |f: &Fixture| {
        f.requests("GET", "/__external/")
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>()
    };
    let refreshes = |f: &Fixture| {
        f.requests("GET", "/api/2.0/sql/statements/")
            .into_iter()
            .filter(|r| r.path.ends_with("/result/chunks/0"))
            .count()
    };

    // Two 503s from the store: retried with backoff, the run completes.
    f.double.fail_next("/__external/", 503, None, 2);
    ok(f.bridge(&["run", "pipelines/from_databricks.yaml"]));
    assert_eq!(rows(&f), 250);
    assert_eq!(statuses(&f), [503, 503, 200]);
    assert_eq!(refreshes(&f), 0);

    // A 403 (an expired link): chunk 0 is asked for again, its fresh link works.
    f.double.clear_requests();
    f.double.fail_next("/__external/", 403, None, 1);
    ok(f.bridge(&["run", "pipelines/from_databricks.yaml"]));
    assert_eq!(rows(&f), 250);
    assert_eq!(statuses(&f), [403, 200]);
    assert_eq!(refreshes(&f), 1);

    // Refused again after the refresh: the run fails, naming the chunk, not the URL.
    f.double.clear_requests();
    f.double.fail_next("/__external/", 403, None, 2);
    let out = f.bridge(&["run", "pipelines/from_databricks.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("external link of result chunk 0"), "{err}");
    assert!(err.contains("403"), "{err}");
    assert!(
        !err.contains("sig=") && !err.contains("__external"),
        "{err}"
    );
    assert_eq!(refreshes(&f), 1);

    // Links that expire within seconds are replaced before use (several chunks): no download
    // is refused.
    drop(f);
    let f = Fixture::new(DoubleConfig {
        chunk_rows: 100,
        link_ttl: std::time::Duration::from_secs(2),
        ..Default::default()
    });
    seed_orders(&f, 250);
    databricks_to_parquet(&f, "      table: main.sales.orders");
    ok(f.bridge(&["run", "pipelines/from_databricks.yaml"]));
    assert_eq!(rows(&f), 250);
    assert_eq!(statuses(&f), [200, 200, 200]);
    assert_eq!(refreshes(&f), 1);
}

#[test]
fn databricks_query_values_are_bound_parameters() {
    // Inline results in chunks of 3 rows: 7 rows come in 3 chunks.
    let f = Fixture::new(DoubleConfig {
        chunk_rows: 3,
        ..Default::default()
    });
    seed_orders(&f, 30);
    databricks_to_parquet(
        &f,
        "      sql: SELECT id, region FROM main.sales.orders WHERE region = {{ region | bind }} AND id < {{ 20 | bind }} ORDER BY id\n      disposition: inline",
    );
    ok(f.bridge(&["run", "pipelines/from_databricks.yaml"]));
    let lines = batch_lines(&read_parquet(&part(
        &f.scratch.path("out/orders"),
        "out-00000.parquet",
    )));
    assert_eq!(
        lines,
        ["1|r1", "4|r1", "7|r1", "10|r1", "13|r1", "16|r1", "19|r1"]
    );
    let body = f.requests("POST", "/api/2.0/sql/statements")[0]
        .json
        .clone()
        .unwrap();
    assert_eq!(
        body["statement"],
        "SELECT id, region FROM main.sales.orders WHERE region = :p1 AND id < :p2 ORDER BY id"
    );
    assert_eq!(body["disposition"], "INLINE");
    assert_eq!(body["format"], "JSON_ARRAY");
    assert_eq!(
        f.requests("GET", "/api/2.0/sql/statements/").len(),
        2,
        "chunks 1 and 2"
    );
    assert_eq!(
        body["parameters"],
        serde_json::json!([
            {"name": "p1", "value": "r1", "type": "STRING"},
            {"name": "p2", "value": "20", "type": "BIGINT"}
        ])
    );

    // A failing statement names the statement's error, and nothing is written.
    databricks_to_parquet(&f, "      table: main.sales.nope");
    std::fs::remove_dir_all(f.scratch.path("out")).unwrap();
    let out = f.bridge(&["run", "pipelines/from_databricks.yaml"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("step `orders` failed: statement"), "{err}");
    assert!(err.contains("FAILED"), "{err}");
    assert!(!f.scratch.path("out").exists());
}

/// A client of the fixture's double, as a `bridge` run would build it.
fn client_of(
    f: &Fixture,
    statement_timeout: Option<std::time::Duration>,
) -> bridge::databricks::DatabricksClient {
    let env = f.env();
    let mut config = bridge::databricks::DatabricksConfig::resolve_with(None, |k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    if let Some(t) = statement_timeout {
        config.statement_timeout = t;
    }
    bridge::databricks::DatabricksClient::new(&config).unwrap()
}

/// Cancel requests the double received, with their answers.
fn cancels(f: &Fixture) -> Vec<RecordedRequest> {
    f.requests("POST", "/api/2.0/sql/statements/")
        .into_iter()
        .filter(|r| r.path.ends_with("/cancel"))
        .collect()
}

/// A statement that runs past `databricks.statement_timeout_secs` fails the run and is canceled
/// on the warehouse; one whose waiting future is dropped (a job canceled) is canceled too.
#[test]
fn statements_that_time_out_or_are_abandoned_are_canceled() {
    // The warehouse never finishes: every poll answers RUNNING.
    let f = Fixture::new(DoubleConfig {
        pending_polls: u32::MAX,
        ..Default::default()
    });
    seed_orders(&f, 3);
    databricks_to_parquet(&f, "      table: main.sales.orders");
    f.scratch.write(
        "config/defaults.yaml",
        "params: {}\ndatabricks:\n  statement_timeout_secs: 1\n",
    );
    let started = std::time::Instant::now();
    let out = f.bridge(&["run", "pipelines/from_databricks.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("did not finish within 1 s; it was canceled"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let canceled = cancels(&f);
    assert_eq!(canceled.len(), 1, "{canceled:?}");
    assert_eq!(canceled[0].status, 200);
    let id = canceled[0]
        .path
        .trim_end_matches("/cancel")
        .rsplit('/')
        .next()
        .unwrap();
    let polls = f.requests("GET", &format!("/api/2.0/sql/statements/{id}"));
    assert!(
        !polls.is_empty(),
        "the statement was polled before it was canceled"
    );

    // Abandoned: the future waiting for the statement is dropped.
    f.double.clear_requests();
    let client = client_of(&f, None);
    f.rt.block_on(async {
        let waiting = client.execute_statement(
            "wh-test",
            "SELECT * FROM main.sales.orders",
            &[],
            bridge::databricks::Disposition::Inline,
        );
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(600), waiting)
                .await
                .is_err()
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while cancels(&f).is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    let canceled = cancels(&f);
    assert_eq!(canceled.len(), 1, "the abandoned statement was canceled");
    assert_eq!(canceled[0].status, 200);

    // A statement that finishes is not canceled.
    drop(f);
    let f = Fixture::new(DoubleConfig {
        pending_polls: 2,
        ..Default::default()
    });
    seed_orders(&f, 3);
    let client = client_of(&f, Some(std::time::Duration::from_secs(60)));
    let rows = f.rt.block_on(async {
        client
            .execute_statement(
                "wh-test",
                "SELECT id FROM main.sales.orders",
                &[],
                bridge::databricks::Disposition::Inline,
            )
            .await
            .unwrap()
            .into_text_rows()
            .await
            .unwrap()
    });
    assert_eq!(rows.len(), 3);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(cancels(&f).is_empty());
}

#[test]
fn throttled_and_unavailable_answers_are_retried_after_retry_after() {
    let f = Fixture::new(DoubleConfig::default());
    seed_orders(&f, 10);
    databricks_to_parquet(&f, "      table: main.sales.orders");
    // Retry-After: 3 is far above the first backoff delay (0.5 s): a client ignoring it would
    // retry sooner.
    f.double
        .fail_next("/api/2.0/sql/statements", 429, Some(3), 1);
    let started = std::time::Instant::now();
    ok(f.bridge(&["run", "pipelines/from_databricks.yaml"]));
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(3),
        "retried after {waited:?}, before Retry-After: 3"
    );
    let posts = f.requests("POST", "/api/2.0/sql/statements");
    assert_eq!(
        posts.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let lines = batch_lines(&read_parquet(&part(
        &f.scratch.path("out/orders"),
        "out-00000.parquet",
    )));
    assert_eq!(lines.len(), 10);

    // Files API calls too: two 503s, then the run completes and the files land.
    f.double.clear_requests();
    f.double.fail_next(
        "/api/2.0/fs/files/Volumes/main/raw/landing/bridge/sales",
        503,
        Some(2),
        2,
    );
    csv_to_volume(&f, 100, "/Volumes/main/raw/landing/bridge");
    let started = std::time::Instant::now();
    ok(f.bridge(&["run", "pipelines/to_volume.yaml"]));
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(4),
        "two retries after {waited:?}, before 2 x Retry-After: 2"
    );
    // The first two requests under the prefix were refused; the same request was sent again.
    let hits: Vec<RecordedRequest> = f
        .double
        .requests()
        .into_iter()
        .filter(|r| {
            r.path
                .starts_with("/api/2.0/fs/files/Volumes/main/raw/landing/bridge/sales")
        })
        .collect();
    assert_eq!(hits[0].status, 503);
    assert_eq!(hits[1].status, 503);
    assert_ne!(hits[2].status, 503);
    assert_eq!(
        (&hits[0].method, &hits[0].path),
        (&hits[2].method, &hits[2].path)
    );
    assert!(
        f.double
            .list_files("/Volumes/main/raw/landing/bridge/sales/2024")
            .iter()
            .any(|p| untagged(p).ends_with("/sales-00000.parquet"))
    );
}

#[test]
fn oauth_machine_to_machine_tokens_are_fetched_once_and_used() {
    let f = Fixture::new(DoubleConfig {
        oauth_client: Some(("sp-client".into(), "sp-secret".into())),
        ..Default::default()
    });
    csv_to_volume(&f, 100, "/Volumes/main/raw/landing/bridge");
    let env = vec![
        ("DATABRICKS_HOST", f.double.base_url()),
        ("DATABRICKS_CLIENT_ID", "sp-client".to_string()),
        ("DATABRICKS_CLIENT_SECRET", "sp-secret".to_string()),
        ("HOME", f.scratch.root().display().to_string()),
    ];
    ok(f.scratch
        .bridge_env(&["run", "pipelines/to_volume.yaml"], &env));
    let tokens = f.requests("POST", "/oidc/v1/token");
    assert_eq!(tokens.len(), 1);
    let api: Vec<RecordedRequest> = f
        .double
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/"))
        .collect();
    assert!(!api.is_empty());
    let bearer = api[0].authorization.clone().unwrap();
    assert!(bearer.starts_with("Bearer ") && bearer != "Bearer dapi-test-token");
    assert!(
        api.iter()
            .all(|r| r.authorization.as_deref() == Some(bearer.as_str()))
    );

    // A wrong secret is a clear error that does not show the secret.
    let mut bad = env.clone();
    bad[2].1 = "not-the-secret".to_string();
    let out = f
        .scratch
        .bridge_env(&["run", "pipelines/to_volume.yaml"], &bad);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("OAuth token request"), "{err}");
    assert!(err.contains("sp-client"), "{err}");
    assert!(!err.contains("not-the-secret"), "{err}");
}

#[test]
fn profiles_of_databrickscfg_are_used() {
    let f = Fixture::new(DoubleConfig::default());
    f.scratch.write(
        ".databrickscfg",
        &format!(
            "[DEFAULT]\nhost = https://wrong.example\ntoken = nope\n\n[double]\nhost = {}\ntoken = {TOKEN}\nwarehouse_id = wh-test\n",
            f.double.base_url()
        ),
    );
    f.scratch.write(
        "config/defaults.yaml",
        "params: {}\ndatabricks:\n  profile: double\n",
    );
    let env = vec![("HOME", f.scratch.root().display().to_string())];
    let out = ok(f.scratch.bridge_env(
        &["test-connection", "--volume", "/Volumes/main/raw/landing"],
        &env,
    ));
    assert!(
        out.contains("Databricks workspace http://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("signed in as bridge@example.com"), "{out}");
    assert!(
        out.contains("Databricks SQL warehouse wh-test: ok"),
        "{out}"
    );
    assert!(out.contains("RUNNING"), "{out}");
    assert!(
        out.contains("Databricks volume /Volumes/main/raw/landing: ok, exists"),
        "{out}"
    );

    // A missing volume fails the check (exit 1), with JSON naming it.
    let out = f.scratch.bridge_env(
        &[
            "test-connection",
            "--volume",
            "/Volumes/main/raw/nope",
            "--output",
            "json",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(
        report["databricks"]["volume /Volumes/main/raw/nope"]["ok"],
        false
    );
    // A wrong token: the workspace check fails, and the token is not shown.
    let out = f.scratch.bridge_env(
        &["test-connection"],
        &[
            ("HOME", f.scratch.root().display().to_string()),
            ("DATABRICKS_CONFIG_PROFILE", "DEFAULT".to_string()),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains("nope"));

    // `--profile` (anywhere on the line) wins over DATABRICKS_CONFIG_PROFILE and the project's.
    f.scratch.write(
        "config/defaults.yaml",
        "params: {}\ndatabricks:\n  profile: DEFAULT\n",
    );
    let wrong_env = [
        ("HOME", f.scratch.root().display().to_string()),
        ("DATABRICKS_CONFIG_PROFILE", "DEFAULT".to_string()),
    ];
    let out = ok(f
        .scratch
        .bridge_env(&["test-connection", "--profile", "double"], &wrong_env));
    assert!(out.contains("signed in as bridge@example.com"), "{out}");
    let out = ok(f
        .scratch
        .bridge_env(&["--profile", "double", "test-connection"], &wrong_env));
    assert!(out.contains("signed in as bridge@example.com"), "{out}");
    // ... and the environment still wins over the project without it.
    let out = f.scratch.bridge_env(
        &["test-connection"],
        &[
            ("HOME", f.scratch.root().display().to_string()),
            ("DATABRICKS_CONFIG_PROFILE", "double".to_string()),
        ],
    );
    assert!(
        stdout(&out).contains("signed in as bridge@example.com"),
        "{}",
        stderr(&out)
    );
    // An unknown profile is named, with the file and the profiles it has.
    let out = f
        .scratch
        .bridge_env(&["test-connection", "--profile", "staging"], &wrong_env);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no profile [staging]"), "{err}");
    assert!(err.contains(".databrickscfg"), "{err}");
    // A pipeline run uses it too: the `databricks` source reads through the profile's workspace.
    seed_orders(&f, 3);
    databricks_to_parquet(&f, "      table: main.sales.orders");
    ok(f.scratch.bridge_env(
        &[
            "run",
            "pipelines/from_databricks.yaml",
            "--profile",
            "double",
        ],
        &wrong_env,
    ));
    assert!(part(&f.scratch.path("out/orders"), "out-00000.parquet").is_file());
}

mod events {
    use super::*;
    use bridge::databricks::{DatabricksClient, DatabricksConfig};
    use bridge::sync::{DatabricksEvents, EventStore, NewEvent, Operation, Outcome};
    use tds_test_server::{TdsServer, TdsServerConfig};

    fn store(f: &Fixture) -> DatabricksEvents {
        let env = f.env();
        let config = DatabricksConfig::resolve_with(None, |k| {
            env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        })
        .unwrap();
        let client = DatabricksClient::new(&config).unwrap();
        DatabricksEvents::new(client, "wh-test", "bridge.events.bridge_events").unwrap()
    }

    fn insert_event(source: &str, target: &str, keys: &[&str], by: &str) -> NewEvent {
        NewEvent {
            operation: if keys.is_empty() {
                Operation::Insert
            } else {
                Operation::Upsert
            },
            source_table: source.into(),
            target_table: target.into(),
            primary_keys: keys.iter().map(std::string::ToString::to_string).collect(),
            filter: None,
            created_by: Some(by.into()),
            pipeline: None,
            country: None,
            params: None,
        }
    }

    #[test]
    fn setup_prints_and_applies_the_ddl() {
        let f = Fixture::new(DoubleConfig::default());
        let printed = ok(f.bridge(&["setup-events-table", "--table", "ops.sync.events"]));
        assert!(printed.contains("CREATE TABLE IF NOT EXISTS `ops`.`sync`.`events` ("));
        assert!(f.requests("POST", "/api/2.0/sql/statements").is_empty());
        let applied = ok(f.bridge(&["setup-events-table", "--apply"]));
        assert!(
            applied.contains("bridge.events.bridge_events is ready"),
            "{applied}"
        );
        let statements: Vec<String> = f
            .requests("POST", "/api/2.0/sql/statements")
            .iter()
            .map(|r| {
                r.json.as_ref().unwrap()["statement"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        // The schema, the table, a look at its columns (nothing to add to a new table), and its
        // clustering on status (set again: a no-op).
        assert_eq!(statements.len(), 4, "{statements:?}");
        assert!(
            statements[1]
                .starts_with("CREATE TABLE IF NOT EXISTS `bridge`.`events`.`bridge_events`")
        );
        assert!(statements[2].starts_with("SELECT * FROM"), "{statements:?}");
        assert_eq!(
            statements[3],
            "ALTER TABLE `bridge`.`events`.`bridge_events` CLUSTER BY (status)"
        );
        // Applying twice is harmless.
        ok(f.bridge(&["setup-events-table", "--apply"]));
        assert!(
            f.double
                .query_sql("SELECT COUNT(*) FROM \"bridge.events.bridge_events\"")
                .is_ok()
        );
    }

    /// A table made before RUN events gains their columns in place (once); its rows and old
    /// writers keep working, and a server runs the RUN rows a Databricks job writes, writing back
    /// status, rows and the job id; a row whose params are not a JSON object fails, unrun.
    #[test]
    fn an_old_events_table_is_upgraded_in_place_and_runs_run_events() {
        let f = Fixture::new(DoubleConfig::default());
        f.double
            .execute_sql(
                "CREATE TABLE bridge.events.bridge_events (event_id STRING NOT NULL, operation STRING NOT NULL, \
                 source_table STRING NOT NULL, target_table STRING NOT NULL, primary_keys ARRAY<STRING>, filter STRING, \
                 status STRING NOT NULL, rows_affected BIGINT, error_message STRING, created_at TIMESTAMP NOT NULL, \
                 started_at TIMESTAMP, completed_at TIMESTAMP, created_by STRING, claimed_by STRING) USING DELTA",
            )
            .unwrap();
        let old_writer = |id: &str| {
            f.double
                .execute_sql(&format!(
                    "INSERT INTO bridge.events.bridge_events (event_id, operation, source_table, target_table, status, created_at, created_by) \
                     VALUES ('{id}', 'INSERT', 'main.s.t', 'dbo.T', 'completed', current_timestamp(), 'alice')"
                ))
                .unwrap();
        };
        let old = "0b9e8c1e-3f7a-4d0e-9d7e-1c2b3a4d5e6f";
        old_writer(old);
        let printed = ok(f.bridge(&["setup-events-table"]));
        assert!(
            printed.contains(
                "-- ALTER TABLE `bridge`.`events`.`bridge_events` ADD COLUMNS (pipeline STRING"
            ),
            "{printed}"
        );
        let applied = ok(f.bridge(&["setup-events-table", "--apply"]));
        assert!(applied.contains("added the RUN columns"), "{applied}");
        f.double.clear_requests();
        let again = ok(f.bridge(&["setup-events-table", "--apply"]));
        assert!(!again.contains("added"), "{again}");
        assert!(
            f.requests("POST", "/api/2.0/sql/statements")
                .iter()
                .all(|r| !r.json.as_ref().unwrap()["statement"]
                    .as_str()
                    .unwrap()
                    .contains("ADD COLUMNS")),
            "columns are added once"
        );
        let store = store(&f);
        let before = f.rt.block_on(store.get(old)).unwrap().unwrap();
        assert_eq!(before.source_table, "main.s.t");
        assert!(before.pipeline.is_none() && before.job_id.is_none());
        old_writer("1c9e8c1e-3f7a-4d0e-9d7e-1c2b3a4d5e6f");

        // A Databricks job asks for runs: one good, one whose params are not an object.
        f.scratch.write("data/x.csv", "a,b\n1,2\n3,4\n");
        f.scratch.write("config/countries/colombia.yaml", "{}\n");
        f.scratch.write(
            "pipelines/copy.yaml",
            "name: copy\ncountries: [colombia]\nsteps:\n  - id: x\n    source: {type: csv, path: data/x.csv}\n  - id: out\n    sink: {type: volume, from: x, destination: output/copy, path: \"{{ country }}\"}\n",
        );
        f.scratch.write(
            "config/permissions.yaml",
            "users:\n  - name: alice\n    token: alice-token\n    permissions: []\n",
        );
        let run_row = |id: &str, params: &str| {
            f.double
                .execute_sql(&format!(
                    "INSERT INTO bridge.events.bridge_events (event_id, operation, source_table, target_table, status, created_at, created_by, pipeline, country, params) \
                     VALUES ('{id}', 'RUN', '', '', 'pending', current_timestamp(), 'alice', 'copy', 'colombia', {params})"
                ))
                .unwrap();
        };
        let (good, bad) = (
            "2c9e8c1e-3f7a-4d0e-9d7e-1c2b3a4d5e6f",
            "3c9e8c1e-3f7a-4d0e-9d7e-1c2b3a4d5e6f",
        );
        run_row(good, "NULL");
        run_row(bad, "'[1, 2]'");
        let (mut child, _base) = serve(&f, &["--poll-interval", "0.2"]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let ended = loop {
            let rows = f
                .double
                .query_sql(&format!(
                    "SELECT event_id, status, rows_affected, job_id, error_message FROM \"bridge.events.bridge_events\" \
                     WHERE event_id IN ('{good}', '{bad}') ORDER BY event_id"
                ))
                .unwrap();
            if rows
                .iter()
                .all(|r| matches!(r[1].as_deref(), Some("completed" | "failed")))
            {
                break rows;
            }
            assert!(std::time::Instant::now() < deadline, "{rows:?}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(ended[0][1].as_deref(), Some("completed"), "{ended:?}");
        assert_eq!(ended[0][2].as_deref(), Some("2"), "{ended:?}");
        assert!(
            ended[0][3].is_some(),
            "the job id is written back: {ended:?}"
        );
        assert_eq!(ended[1][1].as_deref(), Some("failed"), "{ended:?}");
        assert!(ended[1][3].is_none(), "{ended:?}");
        let error = ended[1][4].as_deref().unwrap();
        assert!(error.contains("params: must be a JSON object"), "{error}");
        assert!(
            !common::list_files(&f.scratch.path("output/copy/colombia")).is_empty(),
            "the run wrote its output"
        );
    }

    /// Retention deletes only events finished before the cut-off: pending, running and recent
    /// ones stay.
    #[test]
    fn retention_deletes_only_old_finished_events() {
        let f = Fixture::new(DoubleConfig::default());
        ok(f.bridge(&["setup-events-table", "--apply"]));
        let row = |id: &str, status: &str, completed: &str| {
            f.double
                .execute_sql(&format!(
                    "INSERT INTO bridge.events.bridge_events (event_id, operation, source_table, target_table, status, created_at, completed_at, created_by) \
                     VALUES ('{id}', 'INSERT', 'main.s.t', 'dbo.T', '{status}', '2024-01-01T00:00:00.000000Z', {completed}, 'alice')"
                ))
                .unwrap();
        };
        let old = "'2024-01-02T00:00:00.000000Z'";
        let recent = "'2024-03-01T00:00:00.000000Z'";
        row("00000000-0000-4000-8000-000000000001", "completed", old);
        row("00000000-0000-4000-8000-000000000002", "failed", old);
        row("00000000-0000-4000-8000-000000000003", "completed", recent);
        row("00000000-0000-4000-8000-000000000004", "pending", "NULL");
        row("00000000-0000-4000-8000-000000000005", "running", "NULL");
        let store = store(&f);
        let cut = chrono::DateTime::parse_from_rfc3339("2024-02-01T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(f.rt.block_on(store.prune(cut)).unwrap(), 2);
        let left = f
            .double
            .query_sql("SELECT event_id FROM \"bridge.events.bridge_events\" ORDER BY event_id")
            .unwrap();
        let left: Vec<&str> = left.iter().filter_map(|r| r[0].as_deref()).collect();
        assert_eq!(
            left,
            [
                "00000000-0000-4000-8000-000000000003",
                "00000000-0000-4000-8000-000000000004",
                "00000000-0000-4000-8000-000000000005"
            ]
        );
    }

    /// A 502 after the warehouse ran an INSERT must not make the client send it again: the
    /// error is surfaced and the event exists once. Reads are still retried on 502.
    #[test]
    fn a_statement_is_not_replayed_after_a_bad_gateway() {
        let f = Fixture::new(DoubleConfig::default());
        ok(f.bridge(&["setup-events-table", "--apply"]));
        f.double.clear_requests();
        f.double
            .fail_next_after_running("POST", "/api/2.0/sql/statements", 502, 1);
        let store = store(&f);
        let err =
            f.rt.block_on(store.submit(insert_event("main.s.t", "dbo.T", &[], "alice")))
                .unwrap_err()
                .to_string();
        assert!(err.contains("502"), "{err}");
        let posts = f.requests("POST", "/api/2.0/sql/statements");
        assert_eq!(
            posts.iter().map(|r| r.status).collect::<Vec<_>>(),
            [502],
            "the INSERT was sent once"
        );
        let rows = f
            .double
            .query_sql("SELECT COUNT(*) FROM \"bridge.events.bridge_events\"")
            .unwrap();
        assert_eq!(rows[0][0].as_deref(), Some("1"), "the INSERT ran once");

        // A 503 (refused before running) is retried, and so is a 502 on a read.
        f.double.clear_requests();
        f.double
            .fail_next_after_running("GET", "/api/2.0/preview/scim/v2/Me", 502, 1);
        f.double.fail_next("/api/2.0/sql/statements", 503, None, 1);
        f.rt.block_on(async {
            let env = f.env();
            let config = DatabricksConfig::resolve_with(None, |k| {
                env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
            })
            .unwrap();
            let client = DatabricksClient::new(&config).unwrap();
            assert_eq!(client.current_user().await.unwrap(), "bridge@example.com");
            store
                .submit(insert_event("main.s.u", "dbo.T", &[], "alice"))
                .await
                .unwrap();
        });
        assert_eq!(
            f.requests("GET", "/api/2.0/preview/scim/v2/Me")
                .iter()
                .map(|r| r.status)
                .collect::<Vec<_>>(),
            [502, 200]
        );
        assert_eq!(
            f.requests("POST", "/api/2.0/sql/statements")
                .iter()
                .map(|r| r.status)
                .collect::<Vec<_>>(),
            [503, 200]
        );
    }

    #[test]
    fn the_databricks_store_keeps_the_store_contract() {
        let f = Fixture::new(DoubleConfig::default());
        ok(f.bridge(&["setup-events-table", "--apply"]));
        let store = store(&f);
        f.rt.block_on(crate::common::store_contract::check(
            &store,
            std::time::Duration::from_millis(1500),
        ));
    }

    #[test]
    fn each_event_is_claimed_by_exactly_one_of_two_pollers() {
        let f = Fixture::new(DoubleConfig::default());
        ok(f.bridge(&["setup-events-table", "--apply"]));
        let (a, b) = (Arc::new(store(&f)), Arc::new(store(&f)));
        f.rt.block_on(async {
            let mut ids = Vec::new();
            for i in 0..12 {
                // Some events carry keys: the ARRAY<STRING> column comes back as they were.
                let keys: &[&str] = if i % 3 == 0 { &["id", "period"] } else { &[] };
                // Each its own target: the syncs of one target are claimed one at a time.
                let e = a
                    .submit(insert_event(
                        &format!("main.s.t{i}"),
                        &format!("dbo.T{i}"),
                        keys,
                        "alice",
                    ))
                    .await
                    .unwrap();
                ids.push(e.event_id);
            }
            let t0 = ids[0].clone();
            // Held back while a sync of its target runs (compared case-insensitively).
            let later = a
                .submit(insert_event("main.s.t0", "DBO.t0", &[], "alice"))
                .await
                .unwrap();
            let keyed = a.get(&ids[0]).await.unwrap().unwrap();
            assert_eq!(keyed.primary_keys, ["id", "period"]);
            assert!(
                a.get(&ids[1])
                    .await
                    .unwrap()
                    .unwrap()
                    .primary_keys
                    .is_empty()
            );
            assert_eq!(a.pending_count().await.unwrap(), 13);
            let claim_all = |s: Arc<DatabricksEvents>, worker: &'static str| async move {
                let mut got = Vec::new();
                while let Some(e) = s.claim_next(worker).await.unwrap() {
                    assert_eq!(e.claimed_by.as_deref(), Some(worker));
                    let n: usize = e.source_table["main.s.t".len()..].parse().unwrap();
                    assert_eq!(
                        e.primary_keys.len(),
                        if n.is_multiple_of(3) { 2 } else { 0 }
                    );
                    got.push(e.event_id);
                }
                got
            };
            let (x, y) = tokio::join!(
                tokio::spawn(claim_all(a.clone(), "server-a")),
                tokio::spawn(claim_all(b.clone(), "server-b"))
            );
            let (x, y) = (x.unwrap(), y.unwrap());
            let mut all: Vec<String> = x.iter().chain(y.iter()).cloned().collect();
            all.sort();
            ids.sort();
            assert_eq!(all, ids, "every event claimed exactly once");
            assert_eq!(a.pending_count().await.unwrap(), 1, "dbo.T0 is busy");
            let t0_claimer = if x.contains(&t0) {
                "server-a"
            } else {
                "server-b"
            };
            assert!(
                a.finish(&t0, t0_claimer, &Outcome::completed(1))
                    .await
                    .unwrap()
            );
            let next = b.claim_next("server-b").await.unwrap().unwrap();
            assert_eq!(
                next.event_id, later.event_id,
                "claimable once dbo.T0 is free"
            );
            assert_eq!(a.pending_count().await.unwrap(), 0);
            // Only the claimer can finish an event; a finished event cannot be finished again.
            let first = &x.iter().chain(&y).find(|id| **id != t0).unwrap().clone();
            let owner = if x.contains(first) {
                "server-a"
            } else {
                "server-b"
            };
            let other = if owner == "server-a" {
                "server-b"
            } else {
                "server-a"
            };
            let done = Outcome::completed(3);
            assert!(!b.finish(first, other, &done).await.unwrap());
            assert!(a.finish(first, owner, &done).await.unwrap());
            assert!(!a.finish(first, owner, &done).await.unwrap());
            let e = a.get(first).await.unwrap().unwrap();
            assert_eq!(e.rows_affected, Some(3));
            assert_eq!(e.status.as_str(), "completed");
            assert_eq!(e.created_by.as_deref(), Some("alice"));
            // A claim older than the lease is taken over by the other server, once.
            std::thread::sleep(std::time::Duration::from_millis(50));
            let lease = std::time::Duration::from_millis(10);
            let taken = b.reclaim_stale("server-c", lease).await.unwrap();
            assert_eq!(taken.len(), 11);
            assert!(
                a.reclaim_stale("server-d", std::time::Duration::from_secs(60))
                    .await
                    .unwrap()
                    .is_empty()
            );
        });
        // Every claim was a conditional UPDATE on the warehouse.
        let updates = f
            .requests("POST", "/api/2.0/sql/statements")
            .into_iter()
            .filter(|r| {
                r.json.as_ref().unwrap()["statement"]
                    .as_str()
                    .unwrap()
                    .starts_with("UPDATE `bridge`.`events`.`bridge_events` SET status = 'running'")
            })
            .count();
        assert!(updates >= 12, "{updates}");
    }

    /// `bridge serve --databricks-events` on the double with `extra` arguments; the child and
    /// the base URL it listens on.
    fn serve(f: &Fixture, extra: &[&str]) -> (std::process::Child, String) {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bridge"))
            .arg("--root")
            .arg(f.scratch.root())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--databricks-events",
                "--no-schedules",
            ])
            .args(extra)
            .env_remove("SQLSERVER_HOST")
            .envs(f.env().iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("server prints its address").unwrap();
        std::thread::spawn(move || for _ in lines {});
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        (child, base)
    }

    /// With the Databricks events table too, an event is audited before it is stored: when its
    /// audit line cannot be written, POST /sync fails and no row reaches the table.
    #[test]
    fn serve_stores_no_event_without_its_audit_line() {
        let f = Fixture::new(DoubleConfig::default());
        ok(f.bridge(&["setup-events-table", "--apply"]));
        f.scratch.write(
            "config/permissions.yaml",
            "users:\n  - name: alice\n    token: alice-token\n    permissions:\n      - table: dbo.Orders\n        access: read_write\n      - lakehouse_table: main.sales.*\n        access: read\n",
        );
        let sync = serde_json::json!({"operation": "INSERT",
            "source_table": "main.sales.orders", "target_table": "dbo.Orders"});
        let post = |base: &str| {
            f.rt.block_on(async {
                let response = reqwest::Client::new()
                    .post(format!("{base}/sync"))
                    .bearer_auth("alice-token")
                    .json(&sync)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                (status, response.text().await.unwrap())
            })
        };
        let events = || {
            f.double
                .query_sql("SELECT event_id FROM \"bridge.events.bridge_events\"")
                .unwrap()
        };

        // Every write to /dev/full fails (ENOSPC): no audit line can be written.
        let (mut child, base) = serve(&f, &["--audit-log", "/dev/full"]);
        let (status, body) = post(&base);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(status, 500, "{body}");
        assert!(
            events().is_empty(),
            "an event the audit log does not show was stored"
        );

        // With a writable log the same request is stored under the id its audit line shows.
        let (mut child, base) = serve(&f, &[]);
        let (status, body) = post(&base);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(status, 202, "{body}");
        let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(events(), [[Some(id.clone())]]);
        let log = std::fs::read_to_string(f.scratch.path(".bridge/audit.log")).unwrap();
        assert!(
            log.lines()
                .any(|l| l.contains("\"started\"") && l.contains(&id)),
            "{log}"
        );
    }

    #[test]
    fn serve_applies_an_event_from_the_databricks_table_to_sql_server() {
        let f = Fixture::new(DoubleConfig {
            chunk_rows: 400,
            ..Default::default()
        });
        ok(f.bridge(&["setup-events-table", "--apply"]));
        seed_orders(&f, 1_000);
        let sql =
            f.rt.block_on(TdsServer::start(TdsServerConfig::default()))
                .unwrap();
        f.rt.block_on(async {
            let settings = tds_settings(sql.addr().port());
            let mut client = bridge::mssql::connect(&settings).await.unwrap();
            client
                .simple_query(
                    "CREATE TABLE dbo.Orders (id BIGINT NOT NULL PRIMARY KEY, region NVARCHAR(10) NULL, amount DECIMAL(18,4) NULL, placed_at DATETIME2 NULL, shipped BIT NULL)",
                )
                .await
                .unwrap()
                .into_results()
                .await
                .unwrap();
        });
        f.scratch.write(
            "config/permissions.yaml",
            "users:\n  - name: alice\n    token: alice-token\n    permissions:\n      - table: dbo.Orders\n        access: read_write\n      - lakehouse_table: main.sales.*\n        access: read\n",
        );
        let event = f.rt.block_on(async {
            store(&f)
                .submit(insert_event(
                    "main.sales.orders",
                    "dbo.Orders",
                    &["id"],
                    "alice",
                ))
                .await
                .unwrap()
        });
        let mut env = f.env();
        env.extend([
            ("SQLSERVER_HOST", "127.0.0.1".to_string()),
            ("SQLSERVER_PORT", sql.addr().port().to_string()),
            ("SQLSERVER_USERNAME", "sa".to_string()),
            ("SQLSERVER_PASSWORD", "x".to_string()),
            ("SQLSERVER_ENCRYPT", "danger_plaintext".to_string()),
        ]);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bridge"))
            .arg("--root")
            .arg(f.scratch.root())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--databricks-events",
                "--poll-interval",
                "0.2",
                "--no-schedules",
            ])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let finished = loop {
            let e =
                f.rt.block_on(async { store(&f).get(&event.event_id).await.unwrap().unwrap() });
            if matches!(e.status.as_str(), "completed" | "failed") {
                break e;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "event not applied: {e:?}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(finished.status.as_str(), "completed", "{finished:?}");
        assert_eq!(finished.rows_affected, Some(1_000));
        let rows = sql
            .query_sqlite("SELECT COUNT(*), SUM(id), MIN(region), MAX(amount) FROM Orders")
            .unwrap();
        assert_eq!(
            rows[0],
            [
                Some("1000".to_string()),
                Some("499500".to_string()),
                Some("r0".to_string()),
                Some("999.0999".to_string())
            ]
        );
        // The source was read through the warehouse as Arrow.
        let reads: Vec<RecordedRequest> = f
            .requests("POST", "/api/2.0/sql/statements")
            .into_iter()
            .filter(|r| r.json.as_ref().unwrap()["format"] == "ARROW_STREAM")
            .collect();
        assert_eq!(reads.len(), 1);
        assert_eq!(
            reads[0].json.as_ref().unwrap()["statement"],
            "SELECT * FROM `main`.`sales`.`orders`"
        );
    }
    /// `/metrics` and `/health/ready` need no token: a burst of them reads the Databricks
    /// events table at most once per probe TTL, not once per call.
    #[test]
    fn serve_probes_the_databricks_events_table_at_most_every_few_seconds() {
        let f = Fixture::new(DoubleConfig::default());
        ok(f.bridge(&["setup-events-table", "--apply"]));
        // Polls rarely: the poller's own statements stay out of the way.
        let (mut child, base) = serve(&f, &["--poll-interval", "600"]);
        let probes = || {
            f.requests("POST", "/api/2.0/sql/statements")
                .into_iter()
                .filter(|r| {
                    let statement = r.json.as_ref().unwrap()["statement"].as_str().unwrap();
                    statement.contains("WHERE status = 'pending'")
                        && (statement.starts_with("SELECT COUNT(*)")
                            || statement.starts_with("SELECT MIN(created_at)"))
                })
                .count()
        };
        let started = std::time::Instant::now();
        let before = probes();
        let bodies = f.rt.block_on(async {
            let client = reqwest::Client::new();
            let mut calls = tokio::task::JoinSet::new();
            for i in 0..40 {
                let url = format!(
                    "{base}{}",
                    if i % 2 == 0 {
                        "/metrics"
                    } else {
                        "/health/ready"
                    }
                );
                let client = client.clone();
                calls.spawn(
                    async move { client.get(url).send().await.unwrap().text().await.unwrap() },
                );
            }
            let mut bodies = Vec::new();
            while let Some(body) = calls.join_next().await {
                bodies.push(body.unwrap());
            }
            bodies
        });
        let took = started.elapsed();
        let statements = probes() - before;
        let _ = child.kill();
        let _ = child.wait();
        // Every answer carries the figures of a probe.
        assert!(
            bodies
                .iter()
                .all(|b| b.contains("bridge_events_pending 0") || b.contains("ok (0 pending)")),
            "{bodies:?}"
        );
        let ttl = bridge::server::probes::PROBE_TTL.as_secs_f64();
        // A probe is the count (and, were an event pending, the age of the oldest).
        let allowed = 2 * ((started.elapsed().as_secs_f64() / ttl).ceil() as usize + 1);
        assert!(
            statements <= allowed,
            "{statements} events-table statements for 40 calls in {took:?}"
        );
        eprintln!("40 calls in {took:?}: {statements} events-table statements");
    }
}

/// `VolumeStore` as an `object_store`: multipart writes of several parts, ranged reads, listing
/// across pages and folders, copy and delete.
#[test]
fn volume_store_behaves_as_an_object_store() {
    use futures::TryStreamExt;
    use object_store::path::Path as ObjPath;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

    let f = Fixture::new(DoubleConfig::default());
    let env = f.env();
    let config = bridge::databricks::DatabricksConfig::resolve_with(None, |k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    let client = bridge::databricks::DatabricksClient::new(&config).unwrap();
    let (store, prefix) =
        bridge::databricks::VolumeStore::for_destination(client, "/Volumes/main/raw/landing/os")
            .unwrap();
    let at = |rel: &str| ObjPath::parse(format!("{prefix}/{rel}")).unwrap();
    f.rt.block_on(async {
        // 3 MB in parts of 1 MB, uploaded on complete.
        let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let upload = store.put_multipart(&at("big/file.bin")).await.unwrap();
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 1024 * 1024);
        writer.write(&data);
        writer.finish().await.unwrap();
        assert_eq!(
            f.double
                .file("/Volumes/main/raw/landing/os/big/file.bin")
                .unwrap(),
            data
        );
        let range = store.get_range(&at("big/file.bin"), 10..20).await.unwrap();
        assert_eq!(&range[..], &data[10..20]);
        let head = store.head(&at("big/file.bin")).await.unwrap();
        assert_eq!(head.size, data.len() as u64);
        for i in 0..5 {
            store
                .put(
                    &at(&format!("small/{i}.txt")),
                    PutPayload::from(format!("n{i}")),
                )
                .await
                .unwrap();
        }
        let listed: Vec<String> = store
            .list(Some(&prefix))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 6, "{listed:?}");
        assert!(listed.contains(&"Volumes/main/raw/landing/os/small/4.txt".to_string()));
        store
            .copy(&at("small/0.txt"), &at("copied.txt"))
            .await
            .unwrap();
        let copied = store
            .get(&at("copied.txt"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&copied[..], b"n0");
        store.delete(&at("copied.txt")).await.unwrap();
        assert!(matches!(
            store.get(&at("copied.txt")).await,
            Err(object_store::Error::NotFound { .. })
        ));
    });
}

/// `bridge serve --profile NAME`: the profile reaches the projects the server loads (no
/// process-global state), so `/health/ready` probes that profile's workspace.
#[test]
fn serve_uses_the_profile_of_its_command_line() {
    let f = Fixture::new(DoubleConfig::default());
    f.scratch.write(
        ".databrickscfg",
        &format!(
            "[DEFAULT]\nhost = http://127.0.0.1:1\ntoken = nope\n\n[double]\nhost = {}\ntoken = {TOKEN}\n",
            f.double.base_url()
        ),
    );
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bridge"))
        .arg("--root")
        .arg(f.scratch.root())
        .args(["serve", "--listen", "127.0.0.1:0", "--no-schedules"])
        .args(["--profile", "double"])
        .env_remove("SQLSERVER_HOST")
        .env_remove("DATABRICKS_HOST")
        .env_remove("DATABRICKS_TOKEN")
        .env("HOME", f.scratch.root())
        .env("DATABRICKS_CONFIG_PROFILE", "DEFAULT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("server prints its address").unwrap();
    std::thread::spawn(move || for _ in lines {});
    let base = line.strip_prefix("listening on ").unwrap().to_string();
    let ready: serde_json::Value = f.rt.block_on(async {
        reqwest::get(format!("{base}/health/ready"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let _ = child.kill();
    let _ = child.wait();
    let databricks = ready["checks"]["databricks"].as_str().unwrap_or_default();
    assert!(
        databricks.starts_with("ok (signed in as bridge@example.com"),
        "{ready}"
    );
}
