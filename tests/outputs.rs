//! Outputs never interleave, through the real binary on a local volume folder: one run at a time
//! per output (across processes), run-unique file names, a sweep that removes only what the
//! previous `_SUCCESS` lists, a commit that leaves the previous set whole when it fails, and the
//! staging of a killed run swept by the next one.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A project whose `gen` pipeline writes `rows` generated rows to `out/numbers`, 1000 per file.
fn project() -> Scratch {
    let s = Scratch::empty();
    s.write("config/defaults.yaml", "params: {}\n");
    s.write(
        "config/seed.sql",
        "CREATE TABLE IF NOT EXISTS unused (x INTEGER);\n",
    );
    s.write(
        "pipelines/gen.yaml",
        r#"name: gen
params:
  rows: 10
steps:
  - id: numbers
    source:
      type: sqlite
      database: data/gen.db
      seed: config/seed.sql
      sql: "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {{ rows }}) SELECT x, x * 2 AS y FROM n"
  - id: out
    sink:
      type: volume
      from: numbers
      destination: out
      path: numbers
      max_rows_per_file: 1000
"#,
    );
    s
}

fn run_gen(s: &Scratch, rows: u64, env: &[(&str, String)]) -> std::process::Output {
    s.bridge_env(
        &[
            "run",
            "pipelines/gen.yaml",
            "--param",
            &format!("rows={rows}"),
        ],
        env,
    )
}

fn spawn_gen(s: &Scratch, rows: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bridge"))
        .arg("--root")
        .arg(s.root())
        .args([
            "run",
            "pipelines/gen.yaml",
            "--param",
            &format!("rows={rows}"),
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until a run has started staging into `out/` (it then holds the folder's lock).
fn wait_staging(s: &Scratch, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let staged = list_files(&s.path("out/.bridge-staging"));
        if staged.iter().any(|f| f.ends_with(".parquet")) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the slow run ended ({status}) before staging was seen");
        }
        assert!(Instant::now() < deadline, "no staging seen: {staged:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("_SUCCESS")).unwrap()).unwrap()
}

/// The files a folder's manifest lists, sorted.
fn listed(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = manifest(dir)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    files.sort();
    files
}

/// Checks that a folder holds exactly its manifest, the files it lists and `others`.
fn assert_complete(dir: &Path, others: &[&str]) {
    let mut expected = listed(dir);
    expected.push("_SUCCESS".to_string());
    expected.extend(others.iter().map(std::string::ToString::to_string));
    expected.sort();
    assert_eq!(list_files(dir), expected);
}

fn rows_in(dir: &Path) -> usize {
    listed(dir)
        .iter()
        .map(|f| {
            read_parquet(&dir.join(f))
                .iter()
                .map(deltalake::arrow::array::RecordBatch::num_rows)
                .sum::<usize>()
        })
        .sum()
}

#[test]
fn a_run_waits_for_an_output_another_process_holds_then_fails_naming_it() {
    let s = project();
    let dir = s.path("out/numbers");
    ok(run_gen(&s, 2_500, &[]));
    let before = list_files(&dir);
    let before_manifest = std::fs::read(dir.join("_SUCCESS")).unwrap();

    // A long run of the same output, and a second run that may wait only one second for it.
    let mut slow = spawn_gen(&s, 500_000_000);
    wait_staging(&s, &mut slow);
    let started = Instant::now();
    let out = run_gen(&s, 10, &[("BRIDGE_LOCK_WAIT_SECS", "1".to_string())]);
    let waited = started.elapsed();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(err.contains("being written by another run"), "{err}");
    let canonical = s.root().canonicalize().unwrap().join("out/numbers");
    assert!(
        err.contains(&format!("file://{}", canonical.display())),
        "{err}"
    );
    assert!(err.contains("BRIDGE_LOCK_WAIT_SECS"), "{err}");
    assert!(err.contains("wrote nothing"), "{err}");
    assert_eq!(list_files(&dir), before);
    assert_eq!(
        std::fs::read(dir.join("_SUCCESS")).unwrap(),
        before_manifest
    );

    // The slow run dies mid-staging: its staging stays behind, the folder is untouched...
    slow.kill().unwrap();
    slow.wait().unwrap();
    assert!(
        list_files(&s.path("out/.bridge-staging"))
            .iter()
            .any(|f| f.ends_with(".parquet"))
    );
    assert_eq!(list_files(&dir), before);
    // ... and the next run, finding no live owner, removes it.
    ok(run_gen(&s, 1_500, &[]));
    assert!(list_files(&s.path("out/.bridge-staging")).is_empty());
    assert_eq!(
        list_untagged(&dir),
        ["_SUCCESS", "out-00000.parquet", "out-00001.parquet"]
    );
    assert_complete(&dir, &[]);
    assert_eq!(rows_in(&dir), 1_500);
}

#[test]
fn a_run_that_waits_commits_after_the_holder_and_the_sets_never_mix() {
    let s = project();
    let dir = s.path("out/numbers");
    let mut first = spawn_gen(&s, 300_000);
    wait_staging(&s, &mut first);
    // Started while the first run stages: it waits for the first commit, then replaces it.
    let second = run_gen(&s, 1_200, &[]);
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    ok(second);
    assert_complete(&dir, &[]);
    assert_eq!(rows_in(&dir), 1_200);
    assert_eq!(manifest(&dir)["rows"], 1_200);
    assert!(list_files(&s.path("out/.bridge-staging")).is_empty());
}

#[test]
fn file_names_are_run_unique_and_the_sweep_removes_only_what_the_manifest_listed() {
    let s = project();
    let dir = s.path("out/numbers");
    ok(run_gen(&s, 2_500, &[]));
    let first = listed(&dir);
    assert_eq!(first.len(), 3);
    // Files that are not the bridge's: never removed.
    s.write("out/numbers/notes.txt", "kept");
    std::fs::copy(dir.join(&first[0]), dir.join("theirs.parquet")).unwrap();

    ok(run_gen(&s, 1_500, &[]));
    let second = listed(&dir);
    assert_eq!(second.len(), 2);
    assert!(
        second.iter().all(|f| !first.contains(f)),
        "{first:?} {second:?}"
    );
    assert_complete(&dir, &["notes.txt", "theirs.parquet"]);
    assert_eq!(rows_in(&dir), 1_500);
    let run_id = manifest(&dir)["run_id"].as_str().unwrap().to_string();
    assert!(
        second
            .iter()
            .all(|f| f.contains(&format!("-{}-", &run_id[..8])))
    );

    // A run killed after renaming its files in but before its manifest: its record lists them,
    // and the next run removes them (and its staging), leaving every other file.
    let dead = "out-0badc0de-00000.parquet";
    std::fs::copy(dir.join(&second[0]), dir.join(dead)).unwrap();
    s.write(
        "out/.bridge-staging/dead-run/out/_RUN",
        &serde_json::json!({
            "run_id": "dead-run", "step": "out", "path": "numbers",
            "files": [dead], "replaces": second,
        })
        .to_string(),
    );
    ok(run_gen(&s, 700, &[]));
    assert_complete(&dir, &["notes.txt", "theirs.parquet"]);
    assert_eq!(rows_in(&dir), 700);
    assert!(list_files(&s.path("out/.bridge-staging")).is_empty());
}

/// A partitioned pipeline over `data/items.csv`.
fn partitioned(s: &Scratch, categories: &[&str]) {
    let mut csv = String::from("id,category\n");
    for (i, c) in categories.iter().enumerate() {
        csv.push_str(&format!("{i},{c}\n"));
    }
    s.write("data/items.csv", &csv);
    s.write(
        "pipelines/parts.yaml",
        "name: parts
steps:
  - id: items
    source: {type: csv, path: data/items.csv}
  - id: out
    sink: {type: volume, from: items, destination: out, path: items, partition_by: category}
",
    );
}

#[test]
fn a_commit_that_fails_half_way_leaves_the_previous_set_readable_with_its_manifest() {
    let s = project();
    let dir = s.path("out/items");
    partitioned(&s, &["A", "B"]);
    ok(s.bridge(&["run", "pipelines/parts.yaml"]));
    let manifest_before = std::fs::read(dir.join("_SUCCESS")).unwrap();
    // A file where the new partition's folder must go: moving files in fails at `category=C`,
    // after `category=A` and `category=B` got their new files.
    s.write("out/items/category=C", "in the way");
    let before = list_files(&dir);
    partitioned(&s, &["A", "B", "C"]);
    let out = s.bridge(&["run", "pipelines/parts.yaml"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("failed while committing volume folder"),
        "{err}"
    );
    assert!(
        err.contains("Committed by this run before the failure: nothing"),
        "{err}"
    );
    assert_eq!(list_files(&dir), before);
    assert_eq!(
        std::fs::read(dir.join("_SUCCESS")).unwrap(),
        manifest_before
    );
    assert_complete(&dir, &["category=C"]);
    assert_eq!(rows_in(&dir), 2);
    assert!(list_files(&s.path("out/.bridge-staging")).is_empty());

    std::fs::remove_file(dir.join("category=C")).unwrap();
    ok(s.bridge(&["run", "pipelines/parts.yaml"]));
    assert_complete(&dir, &[]);
    assert_eq!(
        list_untagged(&dir),
        [
            "_SUCCESS",
            "category=A/out-00000.parquet",
            "category=B/out-00000.parquet",
            "category=C/out-00000.parquet"
        ]
    );
}

/// A volume folder's columns are recorded in its manifest; the next run's are compared with
/// them: an added column is written and listed in the run summary, a dropped or retyped one
/// fails the run with nothing written (unless `schema_evolution` accepts it).
#[test]
fn a_change_of_a_folders_columns_is_listed_or_refused_never_silent() {
    let s = project();
    let pipeline = |columns: &str, policy: &str| {
        s.write(
            "pipelines/drift.yaml",
            &format!(
                "name: drift
steps:
  - id: items
    source: {{type: csv, path: data/items.csv}}
  - id: picked
    transform: {{sql: 'SELECT {columns} FROM items'}}
  - id: out
    sink: {{type: volume, from: picked, destination: out, path: items{policy}}}
"
            ),
        );
    };
    s.write("data/items.csv", "id,name,price\n1,a,1.5\n2,b,2.5\n");
    pipeline("id, name", "");
    ok(s.bridge(&["run", "pipelines/drift.yaml"]));
    let columns = manifest(&s.path("out/items"))["columns"].clone();
    assert_eq!(
        columns,
        serde_json::json!([{"name": "id", "type": "Int64"}, {"name": "name", "type": "Utf8"}])
    );

    // Added: written and listed.
    pipeline("id, name, price", "");
    let out = ok(s.bridge(&["--output", "json", "run", "pipelines/drift.yaml"]));
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sink = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["id"] == "out")
        .unwrap();
    assert_eq!(
        sink["schema_changes"],
        serde_json::json!(["added `price` (Float64) (since the previous run of out/items)"]),
        "{sink}"
    );
    let run_id = manifest(&s.path("out/items"))["run_id"].clone();

    // Dropped and retyped: refused, nothing written.
    pipeline("CAST(id AS VARCHAR) AS id, name", "");
    let refused = s.bridge(&["run", "pipelines/drift.yaml"]);
    let err = stderr(&refused);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains("dropped `price`")
            && err.contains("retyped `id` from Int64 to Utf8")
            && err.contains("schema_evolution: replace"),
        "{err}"
    );
    assert_eq!(manifest(&s.path("out/items"))["run_id"], run_id);
    // `fail` refuses even an added column.
    pipeline("id, name, price, 1 AS one", ", schema_evolution: fail");
    let refused = s.bridge(&["run", "pipelines/drift.yaml"]);
    assert!(
        stderr(&refused).contains("added `one`"),
        "{}",
        stderr(&refused)
    );
    // `replace` takes any change.
    pipeline(
        "CAST(id AS VARCHAR) AS id, name",
        ", schema_evolution: replace",
    );
    ok(s.bridge(&["run", "pipelines/drift.yaml"]));
    assert_ne!(manifest(&s.path("out/items"))["run_id"], run_id);
}
