//! Bad input through the real binary: each error names the file, line and field, exits non-zero,
//! and nothing is written (no volume files, no Delta table, no staging left behind).

mod common;

use common::*;

/// A scratch project with a seeded database outside `output/` and a pipeline under test.
fn project(pipeline: &str) -> Scratch {
    let s = Scratch::new();
    let db = s.path("data/sales.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(&std::fs::read_to_string(s.path("config/demo/sales_seed.sql")).unwrap())
        .unwrap();
    s.write("pipelines/test.yaml", pipeline);
    s
}

/// Runs the test pipeline, expects exit code `code`, returns stderr, and checks nothing was written.
fn fails(s: &Scratch, code: i32) -> String {
    let o = s.bridge(&["run", "pipelines/test.yaml", "--country", "colombia"]);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(&o)
    );
    assert!(err.starts_with("error: "), "{err}");
    let written: Vec<String> = list_files(&s.path("output"))
        .into_iter()
        .filter(|f| !f.starts_with("demo/"))
        .collect();
    assert!(written.is_empty(), "files were written: {written:?}");
    err
}

const GOOD_HEAD: &str = "name: t
steps:
  - id: sales
    source:
      type: sqlite
      database: data/sales.db
      query: sales.sql
";

#[test]
fn malformed_yaml_names_line() {
    let s = project("name: t\nsteps:\n  - id: a\n    source: {type: sqlite\n");
    let err = fails(&s, 2);
    assert!(err.contains("pipelines/test.yaml:5:1"), "{err}");
}

#[test]
fn unknown_field_names_field_and_expected() {
    let s = project(&format!("{GOOD_HEAD}      batchsize: 10\n"));
    let err = fails(&s, 2);
    assert!(
        err.contains("pipelines/test.yaml:8:7: steps[0]: unknown field `batchsize`"),
        "{err}"
    );
    assert!(
        err.contains("batch_size"),
        "expected fields are listed: {err}"
    );
}

#[test]
fn unknown_step_kind_lists_kinds() {
    let s = project("name: t\nsteps:\n  - id: a\n    extract:\n      type: sqlite\n");
    let err = fails(&s, 2);
    assert!(
        err.contains("pipelines/test.yaml:4:5: steps[0]: unknown field `extract`"),
        "{err}"
    );
    assert!(err.contains("`source`, `transform`, `sink`"), "{err}");
}

#[test]
fn unknown_source_type_lists_types() {
    let s = project("name: t\nsteps:\n  - id: a\n    source:\n      type: oracle\n      path: x\n");
    let err = fails(&s, 2);
    assert!(
        err.contains("pipelines/test.yaml:5:7: steps[0].source.type: unknown variant `oracle`"),
        "{err}"
    );
    assert!(err.contains("`sqlite`, `parquet`, `csv`, `delta`"), "{err}");
}

#[test]
fn missing_parameter_names_it_and_the_line() {
    let s = project(&format!(
        "{GOOD_HEAD}  - id: out\n    sink:\n      type: volume\n      from: sales\n      destination: output/v\n      path: \"{{{{ regionn }}}}/x\"\n"
    ));
    let err = fails(&s, 2);
    assert!(err.contains("pipelines/test.yaml:8:"), "{err}");
    assert!(
        err.contains("step `out`.sink.path: missing parameter `regionn`"),
        "{err}"
    );
}

#[test]
fn missing_parameter_in_query_file_names_the_query_line() {
    let s = project(GOOD_HEAD);
    s.write(
        "queries/colombia/sales.sql",
        "SELECT *\nFROM sales\nWHERE sale_date >= {{ since | bind }}\n",
    );
    let err = fails(&s, 2);
    assert!(err.contains("queries/colombia/sales.sql:3:"), "{err}");
    assert!(err.contains("missing parameter `since`"), "{err}");
}

#[test]
fn missing_query_file_names_where_it_looked() {
    let s = project(&GOOD_HEAD.replace("sales.sql", "nope.sql"));
    let err = fails(&s, 2);
    assert!(err.contains("pipelines/test.yaml:3:"), "{err}");
    assert!(
        err.contains("query `nope.sql`: query file not found"),
        "{err}"
    );
    assert!(
        err.contains("queries/colombia/nope.sql and queries/common/nope.sql"),
        "{err}"
    );
}

#[test]
fn cycle_is_named() {
    let s = project(&format!(
        "{GOOD_HEAD}  - id: a\n    transform:\n      sql: SELECT * FROM b\n  - id: b\n    transform:\n      sql: SELECT * FROM a\n"
    ));
    let err = fails(&s, 2);
    assert!(
        err.contains("pipelines/test.yaml:8: dependency cycle: a -> b -> a"),
        "{err}"
    );
}

#[test]
fn unknown_reference_names_step_file_and_line() {
    let s = project(&format!(
        "{GOOD_HEAD}  - id: out\n    sink:\n      type: delta\n      from: sale\n      path: output/d\n"
    ));
    let err = fails(&s, 2);
    assert!(
        err.contains("pipelines/test.yaml:8: step `out` refers to `sale`, which is not a step"),
        "{err}"
    );
}

#[test]
fn sql_error_in_transform_names_step_and_writes_nothing() {
    let s = project(&format!(
        "{GOOD_HEAD}  - id: agg\n    transform:\n      sql: SELECT regionn, COUNT(*) FROM sales GROUP BY regionn\n  - id: raw_out\n    sink:\n      type: volume\n      from: sales\n      destination: output/v\n      path: raw\n  - id: out\n    sink:\n      type: delta\n      from: agg\n      path: output/d\n"
    ));
    let err = fails(&s, 2);
    assert!(
        err.contains("pipelines/test.yaml:8: step `agg`: SQL error"),
        "{err}"
    );
    assert!(err.contains("regionn"), "{err}");
}

#[test]
fn text_pasted_into_sql_is_refused() {
    let s = project(GOOD_HEAD);
    s.write(
        "queries/colombia/sales.sql",
        "SELECT * FROM sales\nWHERE region_id IN (SELECT region_id FROM regions WHERE country = '{{ country }}')\n",
    );
    let err = fails(&s, 2);
    assert!(err.contains("queries/colombia/sales.sql:2:"), "{err}");
    assert!(err.contains("| bind"), "{err}");
}

#[test]
fn failure_while_streaming_publishes_nothing() {
    // `good` stages fine; `bad` fails mid-stream (a cast error on real data): neither is published.
    let s = project(&format!(
        "{GOOD_HEAD}  - id: broken\n    transform:\n      sql: SELECT CAST(region AS INT) AS r FROM sales\n  - id: good\n    sink:\n      type: volume\n      from: sales\n      destination: output/v\n      path: good\n  - id: bad\n    sink:\n      type: volume\n      from: broken\n      destination: output/v\n      path: bad\n  - id: lake\n    sink:\n      type: delta\n      from: sales\n      path: output/d\n"
    ));
    let err = fails(&s, 1);
    assert!(err.contains("step `bad` failed"), "{err}");
}

#[test]
fn unknown_country_lists_known_ones() {
    let s = project(GOOD_HEAD);
    let o = s.bridge(&["run", "pipelines/test.yaml", "--country", "peru"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("config/countries/peru.yaml: unknown country `peru`"),
        "{err}"
    );
    assert!(err.contains("known countries: colombia, mexico"), "{err}");
}

#[test]
fn validate_checks_schedule_and_countries() {
    let s = Scratch::new();
    s.write(
        "pipelines/nightly.yaml",
        "name: nightly\nschedule: \"every night\"\ncountries: [colombia, atlantis]\nsteps:\n  - id: a\n    source:\n      type: csv\n      path: data/a.csv\n",
    );
    let o = s.bridge(&["validate"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("pipelines/nightly.yaml:2: schedule: `every night` is not a cron expression"),
        "{err}"
    );
    assert!(
        err.contains(
            "pipelines/nightly.yaml:3: countries: `atlantis` has no config/countries/atlantis.yaml"
        ),
        "{err}"
    );
}

/// A volume sink's `path` is the folder each run empties: `.`, an empty path or one escaping with
/// `..` would make a run delete everything else under the destination (a whole volume). Refused
/// before anything runs, naming the file, line and field; the destination is untouched.
#[test]
fn a_volume_sink_path_that_is_the_destination_itself_is_refused() {
    for path in [".", "./", "\"\"", "a/../..", "/Volumes/main/raw"] {
        let s = project(&format!(
            "{GOOD_HEAD}  - id: out\n    sink:\n      type: volume\n      from: sales\n      destination: keep\n      path: {path}\n"
        ));
        s.write("keep/precious.csv", "id\n1\n");
        let err = fails(&s, 2);
        assert!(err.contains("pipelines/test.yaml:8:"), "{path}: {err}");
        assert!(
            err.contains("step `out`: sink.path: path "),
            "{path}: {err}"
        );
        assert!(s.path("keep/precious.csv").is_file(), "{path}");
        // `bridge validate` says the same without running anything.
        let out = s.bridge(&["validate"]);
        assert_eq!(out.status.code(), Some(2), "{path}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("sink.path") || stdout(&out).contains("sink.path"),
            "{path}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn validate_refuses_a_sink_table_that_is_not_an_identifier() {
    let s = project(&format!(
        "{GOOD_HEAD}  - id: out\n    sink:\n      type: sqlserver\n      from: sales\n      table: \"dbo.x; DROP TABLE dbo.y--\"\n      mode: insert\n"
    ));
    let o = s.bridge(&["validate", "pipelines/test.yaml"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("pipelines/test.yaml:")
            && err.contains("step `out`: sink: invalid table name"),
        "{err}"
    );
    // The run refuses it the same way (invalid input, exit 2), before anything runs.
    let err = fails(&s, 2);
    assert!(err.contains("invalid table name"), "{err}");
    for (field, value) in [
        ("primary_keys", "[\"id; --\"]"),
        ("primary_keys", "[\"a.b\"]"),
    ] {
        let s = project(&format!(
            "{GOOD_HEAD}  - id: out\n    sink:\n      type: sqlserver\n      from: sales\n      table: dbo.T\n      mode: upsert\n      {field}: {value}\n"
        ));
        let o = s.bridge(&["validate", "pipelines/test.yaml"]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("sink.primary_keys"), "{}", stderr(&o));
    }
}

#[test]
fn env_is_refused_outside_connection_fields() {
    let s = project(&format!(
        "{GOOD_HEAD}  - id: out\n    sink:\n      type: volume\n      from: sales\n      destination: output/v\n      path: \"x{{{{ env('HOME') }}}}\"\n"
    ));
    let o = s.bridge(&["validate", "pipelines/test.yaml"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("sink.path") && err.contains("connection:"),
        "{err}"
    );
    let home = std::env::var("HOME").unwrap_or_default();
    assert!(home.is_empty() || !err.contains(&home), "{err}");
}

#[test]
fn a_type_databricks_cannot_read_is_refused_before_anything_is_staged() {
    // An untyped NULL column (Arrow Null) and an interval reach a volume sink and a Delta sink:
    // both refuse at prepare time, in one paragraph naming the step, the column and the cast.
    for (sink, column, cast) in [
        (
            "type: volume\n      from: odd\n      destination: output/v\n      path: odd",
            "nothing",
            "CAST(NULL AS",
        ),
        (
            "type: delta\n      from: odd\n      path: output/d",
            "nothing",
            "CAST(NULL AS",
        ),
    ] {
        let s = project(&format!(
            "{GOOD_HEAD}  - id: odd\n    transform:\n      sql: SELECT sale_id, NULL AS nothing FROM sales\n  - id: out\n    sink:\n      {sink}\n"
        ));
        let err = fails(&s, 2);
        assert!(
            err.contains("`out`") && err.contains(&format!("`{column}`")) && err.contains(cast),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "one paragraph: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
        assert!(!s.path("output/v/.bridge-staging").exists());
        assert!(!s.path("output/d").exists());
    }
    let s = project(&format!(
        "{GOOD_HEAD}  - id: odd\n    transform:\n      sql: SELECT sale_id, INTERVAL '1 day' AS span FROM sales\n  - id: out\n    sink:\n      type: volume\n      from: odd\n      destination: output/v\n      path: odd\n"
    ));
    let err = fails(&s, 2);
    assert!(
        err.contains("`span`") && err.contains("CAST it to a string"),
        "{err}"
    );
}

#[test]
fn two_sinks_writing_one_folder_are_refused_when_planning() {
    let s = project(&format!(
        "{GOOD_HEAD}  - id: first\n    sink:\n      type: volume\n      from: sales\n      destination: output/v\n      path: same\n  - id: second\n    sink:\n      type: volume\n      from: sales\n      destination: output/v/\n      path: same\n"
    ));
    let err = fails(&s, 2);
    assert!(
        err.contains("pipelines/test.yaml:14: step `second` writes")
            && err.contains("output/v/same, which step `first` of this run already writes"),
        "{err}"
    );
    let o = s.bridge(&["validate"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// The Databricks kinds say at once why they cannot reach a workspace, naming the step: nothing
/// configured is a plan error at the step's line (exit 2) that says what to set; a port nobody
/// listens on fails the step in well under the client's minutes of retries.
#[test]
fn databricks_kinds_that_cannot_reach_a_workspace_say_why_at_once() {
    let s = Scratch::empty();
    s.write("data/x.csv", "a,b\n1,2\n");
    s.write(
        "pipelines/from_databricks.yaml",
        "name: from_databricks\nsteps:\n  - id: sales\n    source: {type: databricks, sql: SELECT 1 AS x}\n  - id: out\n    sink: {type: volume, from: sales, destination: out, path: x}\n",
    );
    s.write(
        "pipelines/to_volume.yaml",
        "name: to_volume\nsteps:\n  - id: sales\n    source: {type: csv, path: data/x.csv}\n  - id: out\n    sink: {type: volume, from: sales, destination: /Volumes/main/raw/landing, path: x}\n",
    );
    // No workspace anywhere: no variables, no ~/.databrickscfg, no proxy.
    let base: Vec<(&str, String)> = [
        "DATABRICKS_HOST",
        "DATABRICKS_TOKEN",
        "DATABRICKS_CLIENT_ID",
        "DATABRICKS_CLIENT_SECRET",
        "DATABRICKS_CONFIG_PROFILE",
        "DATABRICKS_CONFIG_FILE",
        "DATABRICKS_WAREHOUSE_ID",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .map(|k| (k, String::new()))
    .chain([("HOME", s.root().display().to_string())])
    .collect();
    let run = |pipeline: &str, extra: &[(&'static str, String)]| {
        let mut env = base.clone();
        env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        env.extend_from_slice(extra);
        let started = std::time::Instant::now();
        let out = s.bridge_env(&["run", &format!("pipelines/{pipeline}.yaml")], &env);
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(10),
            "{pipeline} took {took:?}: {}",
            stderr(&out)
        );
        out
    };
    for (pipeline, step, line) in [("from_databricks", "sales", 3), ("to_volume", "out", 5)] {
        let out = run(pipeline, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!(
                "error: pipelines/{pipeline}.yaml:{line}: step `{step}` failed: Databricks is not configured"
            )) && err.contains("set DATABRICKS_HOST"),
            "{err}"
        );
    }
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = [
        ("DATABRICKS_HOST", format!("http://127.0.0.1:{port}")),
        ("DATABRICKS_TOKEN", "dapi-x".to_string()),
        ("DATABRICKS_WAREHOUSE_ID", "wh".to_string()),
    ];
    for (pipeline, step, line) in [("from_databricks", "sales", 3), ("to_volume", "out", 5)] {
        let out = run(pipeline, &closed);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "error: pipelines/{pipeline}.yaml:{line}: step `{step}` failed: cannot connect to 127.0.0.1:{port}"
            ))
                && err.to_lowercase().contains("connection refused"),
            "{err}"
        );
    }
    assert!(!s.path("out/x").exists());
    // The one-shot command that creates the events table says it at once too.
    let mut env = base.clone();
    env.retain(|(k, _)| !closed.iter().any(|(e, _)| e == k));
    env.extend_from_slice(&closed);
    let started = std::time::Instant::now();
    let out = s.bridge_env(&["setup-events-table", "--apply"], &env);
    let err = stderr(&out);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot use the Databricks workspace")
            && err.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{err}"
    );
}
