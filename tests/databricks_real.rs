//! Against a real Databricks workspace: runs only when `DATABRICKS_HOST` is set with
//! `DATABRICKS_TOKEN` (or `DATABRICKS_CLIENT_ID`/`DATABRICKS_CLIENT_SECRET`). Statement tests also
//! need `DATABRICKS_WAREHOUSE_ID`; volume tests need `DATABRICKS_TEST_VOLUME`, a writable folder
//! such as `/Volumes/main/default/scratch`. Without them each test prints why it was skipped.

mod common;

use common::*;

fn configured(extra: &[&str]) -> bool {
    for var in ["DATABRICKS_HOST"].iter().chain(extra) {
        if std::env::var(var).map_or(true, |v| v.is_empty()) {
            eprintln!("skipped: {var} is not set");
            return false;
        }
    }
    true
}

#[test]
fn real_workspace_test_connection() {
    if !configured(&[]) {
        return;
    }
    let s = Scratch::empty();
    let out = ok(s.bridge(&["test-connection"]));
    assert!(out.contains("signed in as"), "{out}");
}

#[test]
fn real_volume_upload_is_complete_with_its_manifest() {
    if !configured(&["DATABRICKS_TEST_VOLUME"]) {
        return;
    }
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
        let parquet = client
            .file_meta(&format!("{base}/out-00000.parquet"))
            .await
            .unwrap()
            .expect("the Parquet file");
        assert!(parquet.size > 0);
        for name in ["_SUCCESS", "out-00000.parquet"] {
            client.delete_file(&format!("{base}/{name}")).await.unwrap();
        }
        client.delete_directory(&base).await.unwrap();
    });
}

#[test]
fn real_statement_streams_arrow_chunks() {
    if !configured(&["DATABRICKS_WAREHOUSE_ID"]) {
        return;
    }
    let s = Scratch::empty();
    s.write(
        "pipelines/down.yaml",
        "name: down\nsteps:\n  - id: rows\n    source:\n      type: databricks\n      sql: SELECT id, CAST(id AS DECIMAL(18,4)) AS amount, CAST(id AS STRING) AS label FROM range(200000)\n  - id: out\n    sink:\n      type: volume\n      from: rows\n      destination: out\n      path: rows\n",
    );
    ok(s.bridge(&["run", "pipelines/down.yaml"]));
    let batches = read_parquet(&s.path("out/rows/out-00000.parquet"));
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 200_000);
}
