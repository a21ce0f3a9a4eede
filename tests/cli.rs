//! The other commands through the real binary: validate, list-queries, show-params, extract,
//! schema; and the file sources (CSV, Parquet, Delta) and Delta append mode.

mod common;

use common::*;
use deltalake::datafusion::prelude::SessionContext;

#[test]
fn committed_schema_is_current() {
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/pipeline.schema.json"),
    )
    .expect("schemas/pipeline.schema.json exists");
    assert_eq!(
        committed,
        bridge::pipeline::spec::pipeline_json_schema(),
        "schemas/pipeline.schema.json is stale: run `cargo run -- schema > schemas/pipeline.schema.json`"
    );
}

#[test]
fn repository_pipelines_and_queries_are_valid() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_bridge"))
        .args(["--root", env!("CARGO_MANIFEST_DIR"), "validate"])
        .output()
        .unwrap();
    let out = ok(o);
    assert!(out.contains("checked: ok"), "{out}");
}

#[test]
fn validate_reports_every_error_and_fails() {
    let s = Scratch::new();
    s.write(
        "pipelines/broken.yaml",
        "name: b\nsteps:\n  - id: x\n    sink: {type: delta, from: y, path: p}\n",
    );
    s.write("queries/common/bad.sql", "SELECT {{ nope | bind }}\n");
    s.write("pipelines/typo.yaml", "name: t\nstep: []\n");
    let o = s.bridge(&["validate"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("pipelines/broken.yaml:3: step `x` refers to `y`"),
        "{err}"
    );
    assert!(
        err.contains("queries/common/bad.sql:1: missing parameter `nope`"),
        "{err}"
    );
    assert!(
        err.contains("pipelines/typo.yaml:2:1: unknown field `step`"),
        "{err}"
    );
    assert!(stdout(&o).contains("4 pipeline(s)"), "{}", stdout(&o));
    // A single valid file validates on its own.
    ok(s.bridge(&[
        "validate",
        &s.path("pipelines/demo.yaml").display().to_string(),
    ]));
}

#[test]
fn list_queries_and_show_params() {
    let s = Scratch::new();
    let out = ok(s.bridge(&["list-queries", "--country", "Colombia"]));
    assert_eq!(
        out,
        "products.sql\tqueries/common/products.sql\nsales.sql\tqueries/colombia/sales.sql\n"
    );
    let out = ok(s.bridge(&["--output", "json", "show-params", "--country", "colombia"]));
    let params: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(params["start_date"], "2024-03-01");
    assert_eq!(params["currency"], "COP");
    assert_eq!(params["country"], "colombia");
    let out = ok(s.bridge(&["show-params", "--country", "mexico"]));
    assert!(out.contains("start_date: 2024-01-01"), "{out}");
}

#[test]
fn extract_runs_every_query_of_a_country() {
    let s = Scratch::new();
    let dest = s.path("extracted");
    ok(s.bridge(&[
        "extract",
        "--queries-path",
        &s.path("queries").display().to_string(),
        "--config-path",
        &s.path("config").display().to_string(),
        "--country",
        "Colombia",
        "--destination",
        &dest.display().to_string(),
    ]));
    assert_eq!(
        list_untagged(&dest),
        [
            "colombia/products/_SUCCESS",
            "colombia/products/products-00000.parquet",
            "colombia/sales/_SUCCESS",
            "colombia/sales/sales-00000.parquet",
        ]
    );
    let products = batch_lines(&read_parquet(&part(
        &dest,
        "colombia/products/products-00000.parquet",
    )));
    assert_eq!(
        products,
        sqlite_lines(
            &s.path("output/demo/sales.db"),
            "SELECT product_id, name, category, printf('%.2f', unit_price), CASE active WHEN 1 THEN 'true' ELSE 'false' END FROM products ORDER BY product_id"
        )
    );
}

#[tokio::test]
async fn csv_parquet_and_delta_sources_with_delta_append() {
    let s = Scratch::empty();
    s.write(
        "in/people.csv",
        "id,name,score\n1,Ana,3.5\n2,Luis,4.25\n3,Sofía,\n",
    );
    s.write(
        "pipelines/p1.yaml",
        "name: p1\nsteps:\n  - id: people\n    source: {type: csv, path: in/people.csv}\n  - id: to_parquet\n    sink: {type: volume, from: people, destination: out, path: people, compression: snappy}\n  - id: to_delta\n    sink: {type: delta, from: people, path: out/people_delta, mode: append}\n",
    );
    ok(s.bridge(&["run", "pipelines/p1.yaml"]));
    ok(s.bridge(&["run", "pipelines/p1.yaml"]));
    s.write(
        "pipelines/p2.yaml",
        "name: p2\nsteps:\n  - id: pq\n    source: {type: parquet, path: out/people/}\n  - id: dl\n    source: {type: delta, path: out/people_delta}\n  - id: joined\n    transform:\n      sql: SELECT pq.id, pq.name, COUNT(*) AS copies FROM pq JOIN dl ON pq.id = dl.id GROUP BY pq.id, pq.name ORDER BY pq.id\n  - id: out\n    sink: {type: volume, from: joined, destination: out, path: joined, max_rows_per_file: 2}\n",
    );
    ok(s.bridge(&["run", "pipelines/p2.yaml"]));
    // Appending twice doubled the Delta rows; the volume output was replaced, not duplicated.
    assert_eq!(
        list_untagged(&s.path("out/joined")),
        ["_SUCCESS", "out-00000.parquet", "out-00001.parquet"]
    );
    let mut lines = batch_lines(&read_parquet(&part(
        &s.path("out/joined"),
        "out-00000.parquet",
    )));
    lines.extend(batch_lines(&read_parquet(&part(
        &s.path("out/joined"),
        "out-00001.parquet",
    ))));
    assert_eq!(lines, ["1|Ana|2", "2|Luis|2", "3|Sofía|2"]);
    let ctx = SessionContext::new();
    let people = read_parquet(&part(&s.path("out/people"), "to_parquet-00000.parquet"));
    assert_eq!(
        batch_lines(&people),
        ["1|Ana|3.5", "2|Luis|4.25", "3|Sofía|NULL"]
    );
    drop(ctx);
}

#[test]
fn every_invalid_argument_exits_2() {
    let s = Scratch::new();
    // Refused by clap.
    let o = s.bridge(&["run", "pipelines/demo.yaml", "--param", "no-equals-sign"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // Refused by the commands themselves.
    let o = s.bridge(&["hash-token"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("give the token on stdin"),
        "{}",
        stderr(&o)
    );
    let o = s.bridge(&["setup-events-table", "--table", "not a table; DROP"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--table"), "{}", stderr(&o));
    let o = s.bridge(&["serve", "--listen", "127.0.0.1:0", "--event-lease=-1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--event-lease"), "{}", stderr(&o));
}
