//! The `delta` sink's `mode: merge` and schema drift, through `bridge run` on a small project
//! whose source is a CSV file (with `_change_op` / `_change_version` columns where a test needs
//! change rows); the table is read back with delta-rs and DataFusion and compared row by row.

mod common;

use std::path::Path;

use common::{Scratch, list_files, ok, query_lines, stderr, stdout};

/// A project reading `data/in.csv` into a Delta sink at `lake/t` with `sink` (YAML flow fields).
fn project(sink: &str) -> Scratch {
    let s = Scratch::empty();
    set_sink(&s, sink);
    s
}

fn set_sink(s: &Scratch, sink: &str) {
    s.write(
        "pipelines/m.yaml",
        &format!(
            "name: m\nsteps:\n  - id: src\n    source: {{type: csv, path: data/in.csv}}\n  - id: lake\n    sink: {{type: delta, from: src, path: lake/t, {sink}}}\n"
        ),
    );
}

/// Runs the pipeline over `csv` and returns the run's JSON summary (panics on failure).
fn run(s: &Scratch, csv: &str) -> serde_json::Value {
    let out = ok(try_run(s, csv));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn try_run(s: &Scratch, csv: &str) -> std::process::Output {
    s.write("data/in.csv", csv);
    s.bridge(&["--output", "json", "run", "pipelines/m.yaml"])
}

/// The sink step's report of a summary.
fn sink_report(summary: &serde_json::Value) -> &serde_json::Value {
    summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "lake")
        .unwrap()
}

async fn open(path: &Path) -> deltalake::DeltaTable {
    let url = deltalake::ensure_table_uri(path.to_str().unwrap()).unwrap();
    deltalake::open_table(url).await.unwrap()
}

/// Rows of `SELECT {columns} FROM t ORDER BY id, name` over the table.
async fn rows(s: &Scratch, columns: &str) -> Vec<String> {
    let table = open(&s.path("lake/t")).await;
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    table.update_datafusion_session(&ctx.state()).unwrap();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    query_lines(&ctx, &format!("SELECT {columns} FROM t ORDER BY id, name")).await
}

/// The table's columns as `name type nullable`.
async fn columns(s: &Scratch) -> Vec<String> {
    let table = open(&s.path("lake/t")).await;
    let schema = table.snapshot().unwrap().schema();
    schema
        .fields()
        .map(|f| {
            format!(
                "{} {} {}",
                f.name(),
                serde_json::to_value(f.data_type()).unwrap(),
                f.is_nullable()
            )
        })
        .collect()
}

/// The table's version and files (what "nothing was written" compares).
async fn state(s: &Scratch) -> (u64, Vec<String>) {
    let table = open(&s.path("lake/t")).await;
    (
        table.version().unwrap() as u64,
        list_files(&s.path("lake/t")),
    )
}

/// Runs `csv` through the project and expects it refused: exit 1, an error line of the `lake`
/// step holding every one of `needles`, and the table as it was (same version, same rows).
async fn assert_refused(s: &Scratch, csv: &str, needles: &[&str], context: &str) {
    let before = state(s).await;
    let out = try_run(s, csv);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{context}: {err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: step `lake`") && needles.iter().all(|n| l.contains(n))),
        "{context}: {err}"
    );
    assert_eq!(state(s).await, before, "{context}: the table changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_without_an_op_column_upserts_every_row_and_creates_the_table() {
    let s = project("mode: merge, keys: [id]");
    let summary = run(&s, "id,name\n1,a\n2,b\n");
    assert_eq!(rows(&s, "*").await, ["1|a", "2|b"]);
    assert_eq!(sink_report(&summary)["rows"], 2);
    let summary = run(&s, "id,name\n2,B\n3,c\n");
    assert_eq!(rows(&s, "*").await, ["1|a", "2|B", "3|c"]);
    let report = sink_report(&summary);
    assert_eq!(report["rows"], 2, "{report}");
    let output = report["outputs"][0].as_str().unwrap();
    assert!(
        output.ends_with("(version 1: 1 inserted, 1 updated, 0 deleted)"),
        "{output}"
    );
    assert!(report.get("schema_changes").is_none(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_rows_insert_update_and_delete_by_key_without_writing_the_change_columns() {
    let s = project("mode: merge, keys: [id]");
    run(
        &s,
        "id,name,_change_op,_change_version\n1,a,insert,1\n2,b,insert,1\n3,c,insert,1\n",
    );
    let summary = run(
        &s,
        "id,name,_change_op,_change_version\n4,d,insert,2\n2,B,update,2\n1,a,delete,2\n",
    );
    assert_eq!(rows(&s, "*").await, ["2|B", "3|c", "4|d"]);
    assert_eq!(
        columns(&s).await,
        ["id \"long\" true", "name \"string\" true"]
    );
    let report = sink_report(&summary);
    assert_eq!(report["rows"], 3, "{report}");
    assert!(
        report["outputs"][0]
            .as_str()
            .unwrap()
            .ends_with("1 inserted, 1 updated, 1 deleted)"),
        "{report}"
    );
    // A delete of a key the table does not have changes nothing; an update of a missing key
    // inserts it.
    run(
        &s,
        "id,name,_change_op,_change_version\n9,x,delete,3\n5,e,update,3\n",
    );
    assert_eq!(rows(&s, "*").await, ["2|B", "3|c", "4|d", "5|e"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_changes_of_one_key_resolve_to_the_last_by_version_then_by_order() {
    let s = project("mode: merge, keys: [id]");
    // On a new table: the last change of each key is inserted, a key deleted last is not.
    run(
        &s,
        "id,name,_change_op,_change_version\n\
         1,third,update,3\n1,first,insert,1\n1,second,update,2\n\
         2,b,insert,1\n2,b,delete,2\n\
         3,gone,delete,1\n3,back,insert,2\n",
    );
    assert_eq!(rows(&s, "*").await, ["1|third", "3|back"]);
    // On an existing table, by version: the highest wins wherever it is in the input.
    run(
        &s,
        "id,name,_change_op,_change_version\n\
         1,x,delete,9\n1,y,update,5\n\
         2,re-inserted,insert,7\n2,z,delete,6\n\
         3,old,update,4\n3,new,update,8\n",
    );
    assert_eq!(rows(&s, "*").await, ["2|re-inserted", "3|new"]);
    // Without a version column, by input order (an insert after a delete re-inserts).
    run(
        &s,
        "id,name,_change_op\n2,a,update\n2,b,update\n2,last,update\n\
         3,c,delete\n1,d,delete\n1,again,insert\n",
    );
    assert_eq!(rows(&s, "*").await, ["1|again", "2|last"]);
    // Without either: plain upserts, the last row of a key wins.
    run(&s, "id,name\n1,p\n1,q\n1,r\n");
    assert_eq!(rows(&s, "*").await, ["1|r", "2|last"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_deletes_keep_the_row_with_its_deletion_time_and_a_reinsert_clears_it() {
    let s = project("mode: merge, keys: [id], deletes: soft");
    run(
        &s,
        "id,name,_change_op,_change_version\n1,a,insert,1\n2,b,insert,1\n3,c,delete,1\n",
    );
    assert_eq!(
        rows(&s, "id, name, _deleted_at IS NULL").await,
        ["1|a|true", "2|b|true"]
    );
    assert!(
        columns(&s)
            .await
            .contains(&"_deleted_at \"timestamp\" true".to_string())
    );
    let before = chrono::Utc::now().timestamp_micros();
    // The delete row carries only its key: the row keeps its other columns.
    let deletion = "id,name,_change_op,_change_version\n1,,delete,2\n2,B,update,2\n";
    run(&s, deletion);
    let after = chrono::Utc::now().timestamp_micros();
    let deleted = rows(&s, "id, name, CAST(_deleted_at AS BIGINT)").await;
    assert_eq!(deleted[1], "2|B|NULL");
    let (row, at) = deleted[0].rsplit_once('|').unwrap();
    assert_eq!(row, "1|a");
    let at: i64 = at.parse().unwrap();
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
    // Repeated, the delete keeps the first deletion time.
    run(&s, deletion);
    assert_eq!(
        rows(&s, "id, name, CAST(_deleted_at AS BIGINT)").await,
        deleted
    );
    // A later insert of the key clears `_deleted_at`.
    run(&s, "id,name,_change_op,_change_version\n1,back,insert,3\n");
    assert_eq!(
        rows(&s, "id, name, _deleted_at").await,
        ["1|back|NULL", "2|B|NULL"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_deletes_on_a_table_without_deleted_at_add_the_column() {
    let s = project("mode: merge, keys: [id]");
    run(&s, "id,name\n1,a\n2,b\n");
    set_sink(&s, "mode: merge, keys: [id], deletes: soft");
    let summary = run(&s, "id,name,_change_op\n1,a,delete\n");
    assert_eq!(
        rows(&s, "id, name, _deleted_at IS NULL").await,
        ["1|a|false", "2|b|true"]
    );
    assert_eq!(
        sink_report(&summary)["schema_changes"],
        serde_json::json!(["added column `_deleted_at` (timestamp)"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_merge_gives_the_same_table() {
    let s = project("mode: merge, keys: [id]");
    run(&s, "id,name\n1,a\n2,b\n");
    let input = "id,name,_change_op,_change_version\n2,B,update,2\n3,c,insert,2\n1,a,delete,2\n3,C,update,3\n";
    run(&s, input);
    let once = rows(&s, "*").await;
    assert_eq!(once, ["2|B", "3|C"]);
    // A run killed after staging and repeated applies the same input again: same table.
    let summary = run(&s, input);
    assert_eq!(rows(&s, "*").await, once);
    let output = sink_report(&summary)["outputs"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        output.ends_with("0 inserted, 2 updated, 0 deleted)"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_source_column_is_added_as_nullable_and_listed_in_the_summary() {
    for sink in ["mode: merge, keys: [id]", "mode: append", "mode: overwrite"] {
        let s = project(sink);
        run(&s, "id,name\n1,a\n");
        let summary = run(&s, "id,name,email\n2,b,b@x\n");
        assert_eq!(
            sink_report(&summary)["schema_changes"],
            serde_json::json!(["added column `email` (string)"]),
            "{sink}"
        );
        let expected: &[&str] = if sink == "mode: overwrite" {
            &["2|b|b@x"]
        } else {
            &["1|a|NULL", "2|b|b@x"]
        };
        assert_eq!(rows(&s, "id, name, email").await, expected, "{sink}");
        assert!(
            columns(&s)
                .await
                .contains(&"email \"string\" true".to_string()),
            "{sink}"
        );
        // The text summary lists it too.
        let out = ok(s.bridge(&["run", "pipelines/m.yaml"]));
        assert!(
            !out.contains("schema:"),
            "nothing new the second time: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_evolution_fail_refuses_new_and_missing_columns_with_nothing_written() {
    for sink in [
        "mode: merge, keys: [id], schema_evolution: fail",
        "mode: append, schema_evolution: fail",
    ] {
        let s = project(sink);
        run(&s, "id,name,note\n1,a,n\n");
        assert_refused(
            &s,
            "id,name,email,phone\n2,b,b@x,5\n",
            &[
                "error: step `lake`: Delta table ",
                "the step's output has columns the table does not have: `email` (string), \
                 `phone` (bigint); and the table's columns `note` (string) are not in the \
                 step's output (nothing was written)",
                "set `schema_evolution: add_columns`",
            ],
            sink,
        )
        .await;
        assert_eq!(rows(&s, "*").await, ["1|a|n"], "{sink}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retyped_column_is_refused_with_nothing_written() {
    for sink in ["mode: merge, keys: [id]", "mode: overwrite"] {
        let s = project(sink);
        run(&s, "id,name\n1,a\n");
        assert_refused(
            &s,
            "id,name,extra\n1,42,x\n",
            &[
                "error: step `lake`: Delta table ",
                "column `name` is string in the table but bigint in the step's output",
                "`CAST(\"name\" AS VARCHAR) AS \"name\"`",
            ],
            sink,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_nullable_column_is_written_as_null_and_noted() {
    for sink in ["mode: merge, keys: [id]", "mode: append"] {
        let s = project(sink);
        run(&s, "id,name,note\n1,a,n1\n2,b,n2\n");
        let summary = run(&s, "id,name\n2,B\n3,c\n");
        assert_eq!(
            sink_report(&summary)["schema_changes"],
            serde_json::json!(["column `note` is missing from the input; written as null"]),
            "{sink}"
        );
        let expected: &[&str] = if sink == "mode: append" {
            &["1|a|n1", "2|B|NULL", "2|b|n2", "3|c|NULL"]
        } else {
            &["1|a|n1", "2|B|NULL", "3|c|NULL"]
        };
        assert_eq!(rows(&s, "id, name, note").await, expected, "{sink}");
    }
}

#[test]
fn merge_keys_are_checked_against_the_input_before_anything_is_written() {
    let s = project("mode: merge, keys: [id, region]");
    let out = try_run(&s, "id,name\n1,a\n");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("keys: column `region` is not in the input (columns: id, name)"),
        "{err}"
    );
    assert!(!s.path("lake/t").exists(), "{}", stdout(&out));
    set_sink(&s, "mode: merge");
    let out = s.bridge(&["validate", "pipelines/m.yaml"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("`mode: merge` needs `keys`"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_change_operation_fails_the_merge_with_nothing_written() {
    let s = project("mode: merge, keys: [id]");
    run(&s, "id,name\n1,a\n");
    assert_refused(
        &s,
        "id,name,_change_op\n1,b,update\n2,c,upsert\n",
        &["column `_change_op` has the value `upsert`"],
        "unknown operation",
    )
    .await;
    assert_eq!(rows(&s, "*").await, ["1|a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_key_fails_the_merge_with_nothing_written() {
    let s = project("mode: merge, keys: [id]");
    run(&s, "id,name\n1,a\n");
    assert_refused(
        &s,
        "id,name\n1,b\n,c\n",
        &["key column `id` is null"],
        "null key",
    )
    .await;
    assert_eq!(rows(&s, "*").await, ["1|a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_file_size_is_the_new_tables_property_and_splits_its_files() {
    let s = project("mode: merge, keys: [id], target_file_size: 1024");
    let mut csv = String::from("id,name\n");
    for i in 0..5000 {
        csv.push_str(&format!("{i},name number {i}\n"));
    }
    run(&s, &csv);
    let table = open(&s.path("lake/t")).await;
    let snapshot = table.snapshot().unwrap();
    assert_eq!(
        snapshot
            .metadata()
            .configuration()
            .get("delta.targetFileSize")
            .map(String::as_str),
        Some("1024")
    );
    let files = list_files(&s.path("lake/t"))
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .count();
    assert!(files > 1, "{files} data files");
}
