//! Against a real Databricks workspace: runs only when `DATABRICKS_HOST` is set with
//! `DATABRICKS_TOKEN` (or `DATABRICKS_CLIENT_ID`/`DATABRICKS_CLIENT_SECRET`). Statement tests also
//! need `DATABRICKS_WAREHOUSE_ID`; volume tests need `DATABRICKS_TEST_VOLUME`, a writable folder
//! such as `/Volumes/main/default/scratch`. Without them every test is reported as ignored
//! (skipped), never as passed; `.ci/run` adds `--include-ignored` when `DATABRICKS_HOST` is set,
//! and a test run that way without its variables fails naming the one missing.

mod common;

use common::*;

/// Fails the test (run with `--include-ignored`) when a variable it needs is not set.
fn require(extra: &[&str]) {
    for var in ["DATABRICKS_HOST"].iter().chain(extra) {
        assert!(
            std::env::var(var).is_ok_and(|v| !v.is_empty()),
            "{var} is not set: this test needs a real Databricks workspace"
        );
    }
}

#[test]
#[ignore = "needs a real Databricks workspace (DATABRICKS_HOST)"]
fn real_workspace_test_connection() {
    require(&[]);
    let s = Scratch::empty();
    let out = ok(s.bridge(&["test-connection"]));
    assert!(out.contains("signed in as"), "{out}");
}

#[test]
#[ignore = "needs a real Databricks workspace (DATABRICKS_HOST)"]
fn real_volume_upload_is_complete_with_its_manifest() {
    require(&["DATABRICKS_TEST_VOLUME"]);
    let volume = std::env::var("DATABRICKS_TEST_VOLUME").unwrap();
    let folder = format!("bridge-it-{}", uuid::Uuid::new_v4());
    let s = Scratch::empty();
    let mut csv = String::from("id,name\n");
    for i in 0..5_000 {
        csv.push_str(&format!("{i},name {i}\n"));
    }
    s.write("data/rows.csv", &csv);
    s.write(
        "pipelines/up.yaml",
        &format!(
            "name: up\nsteps:\n  - id: rows\n    source:\n      type: csv\n      path: data/rows.csv\n  - id: out\n    sink:\n      type: volume\n      from: rows\n      destination: {volume}\n      path: {folder}\n"
        ),
    );
    ok(s.bridge(&["run", "pipelines/up.yaml"]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = bridge::databricks::DatabricksConfig::resolve(None).unwrap();
        let client = bridge::databricks::DatabricksClient::new(&config).unwrap();
        let base = format!("{}/{folder}", volume.trim_end_matches('/'));
        let manifest = client.file_meta(&format!("{base}/_SUCCESS")).await.unwrap();
        assert!(manifest.is_some(), "no _SUCCESS under {base}");
        let names: Vec<String> = client
            .list_directory(&base)
            .await
            .unwrap()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.path.rsplit('/').next().unwrap_or_default().to_string())
            .collect();
        let parquet_name = names
            .iter()
            .find(|n| untagged(n) == "out-00000.parquet")
            .unwrap_or_else(|| panic!("no out-<run>-00000.parquet under {base}: {names:?}"));
        let parquet = client
            .file_meta(&format!("{base}/{parquet_name}"))
            .await
            .unwrap()
            .expect("the Parquet file");
        assert!(parquet.size > 0);
        for name in ["_SUCCESS", parquet_name.as_str()] {
            client.delete_file(&format!("{base}/{name}")).await.unwrap();
        }
        client.delete_directory(&base).await.unwrap();
    });
}

#[test]
#[ignore = "needs a real Databricks workspace (DATABRICKS_HOST)"]
fn real_statement_streams_arrow_chunks() {
    require(&["DATABRICKS_WAREHOUSE_ID"]);
    let s = Scratch::empty();
    s.write(
        "pipelines/down.yaml",
        "name: down\nsteps:\n  - id: rows\n    source:\n      type: databricks\n      sql: SELECT id, CAST(id AS DECIMAL(18,4)) AS amount, CAST(id AS STRING) AS label FROM range(200000)\n  - id: out\n    sink:\n      type: volume\n      from: rows\n      destination: out\n      path: rows\n",
    );
    ok(s.bridge(&["run", "pipelines/down.yaml"]));
    let batches = read_parquet(&part(&s.path("out/rows"), "out-00000.parquet"));
    let rows: usize = batches
        .iter()
        .map(deltalake::arrow::array::RecordBatch::num_rows)
        .sum();
    assert_eq!(rows, 200_000);
}

/// The events table on a real warehouse: `primary_keys` is a real ARRAY<STRING> column, read back
/// through the Statement Execution API; a claim and a finish are conditional updates. Needs
/// `DATABRICKS_TEST_SCHEMA`, a `catalog.schema` where tables may be created (one is created and
/// dropped).
#[test]
#[ignore = "needs a real Databricks workspace (DATABRICKS_HOST)"]
fn real_events_table_round_trips_an_event() {
    require(&["DATABRICKS_WAREHOUSE_ID", "DATABRICKS_TEST_SCHEMA"]);
    use bridge::sync::{DatabricksEvents, EventStore, NewEvent, Operation, Outcome};
    let schema = std::env::var("DATABRICKS_TEST_SCHEMA").unwrap();
    let warehouse = std::env::var("DATABRICKS_WAREHOUSE_ID").unwrap();
    let table = format!(
        "{schema}.bridge_events_it_{}",
        uuid::Uuid::new_v4().simple()
    );
    let s = Scratch::empty();
    ok(s.bridge(&["setup-events-table", "--table", &table, "--apply"]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = bridge::databricks::DatabricksConfig::resolve(None).unwrap();
        let client = bridge::databricks::DatabricksClient::new(&config).unwrap();
        let store = DatabricksEvents::new(client.clone(), &warehouse, &table).unwrap();
        let outcome = async {
            let submitted = store
                .submit(NewEvent {
                    operation: Operation::Upsert,
                    source_table: "main.s.t".into(),
                    target_table: "dbo.T".into(),
                    primary_keys: vec!["id".into(), "period".into()],
                    filter: None,
                    created_by: Some("bridge-it".into()),
                    pipeline: None,
                    country: None,
                    params: None,
                })
                .await
                .unwrap();
            let read = store.get(&submitted.event_id).await.unwrap().unwrap();
            assert_eq!(read.primary_keys, ["id", "period"]);
            let claimed = store.claim_next("it-worker").await.unwrap().unwrap();
            assert_eq!(claimed.event_id, submitted.event_id);
            assert_eq!(claimed.primary_keys, ["id", "period"]);
            assert!(store.claim_next("it-other").await.unwrap().is_none());
            let done = Outcome::completed(2);
            assert!(
                store
                    .finish(&submitted.event_id, "it-worker", &done)
                    .await
                    .unwrap()
            );
            let read = store.get(&submitted.event_id).await.unwrap().unwrap();
            assert_eq!(read.status.as_str(), "completed");
            assert_eq!(read.rows_affected, Some(2));
        };
        // The table goes even when an assertion fails.
        let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
        let quoted = bridge::sql::quote_ident(&table, bridge::sql::Dialect::Databricks).unwrap();
        client
            .execute_statement(
                &warehouse,
                &format!("DROP TABLE IF EXISTS {quoted}"),
                &[],
                bridge::databricks::Disposition::Inline,
            )
            .await
            .unwrap();
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
}
