//! The `sqlserver` sink through the real `bridge` binary, against the project's TDS test server:
//! exact table state after insert, upsert, delete and replace; limits, mismatches and failures
//! roll back and leave the table as it was.

mod common;

use common::*;
use tds_test_server::{TdsServer, TdsServerConfig};

/// A TDS test server (kept alive by its runtime while the binary runs) and a scratch project.
struct Fixture {
    rt: tokio::runtime::Runtime,
    server: TdsServer,
    scratch: Scratch,
}

const TARGET: &str = "CREATE TABLE dbo.Target (
    id INT NOT NULL PRIMARY KEY,
    name NVARCHAR(20) NULL,
    amount DECIMAL(18,2) NULL
)";

/// Three rows every test starts from (unless it creates its own table).
const SEED: &str = "INSERT INTO dbo.Target (id, name, amount) VALUES
    (1, N'one', 1.25), (2, N'two', 2.75), (3, N'three', 3.35)";

/// The rows of `dbo.Target` as `id|name|amount`, read straight from SQLite.
const TARGET_ROWS: &str = "SELECT id, name, amount FROM Target ORDER BY id";

impl Fixture {
    fn new() -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt
            .block_on(TdsServer::start(TdsServerConfig::default()))
            .expect("test server starts");
        Fixture {
            rt,
            server,
            scratch: Scratch::empty(),
        }
    }

    /// A fixture with `dbo.Target` holding the three seed rows.
    fn seeded() -> Fixture {
        let f = Fixture::new();
        f.tsql(TARGET);
        f.tsql(SEED);
        f
    }

    /// Runs T-SQL through the bridge's own connection code.
    fn tsql(&self, sql: &str) {
        self.rt.block_on(common::tds::tsql(&self.server, sql));
    }

    /// Rows of a SQLite query on the server's database as `a|b|c` lines (`NULL` for nulls).
    fn rows(&self, sql: &str) -> Vec<String> {
        self.server
            .query_sqlite(sql)
            .unwrap()
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| v.unwrap_or_else(|| "NULL".into()))
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }

    /// Runs a pipeline with `--output json`.
    fn run(&self, pipeline: &str) -> std::process::Output {
        self.scratch.write("pipelines/p.yaml", pipeline);
        let env = [
            ("SQLSERVER_HOST", "127.0.0.1".to_string()),
            ("SQLSERVER_PORT", self.server.addr().port().to_string()),
            ("SQLSERVER_USERNAME", "sa".to_string()),
            ("SQLSERVER_PASSWORD", "x".to_string()),
            ("SQLSERVER_ENCRYPT", "danger_plaintext".to_string()),
        ];
        self.scratch
            .bridge_env(&["--output", "json", "run", "pipelines/p.yaml"], &env)
    }

    /// Runs a pipeline that must succeed; returns the sink step's JSON report.
    fn run_ok(&self, pipeline: &str) -> serde_json::Value {
        let out = ok(self.run(pipeline));
        let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
        summary["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "out")
            .cloned()
            .expect("a step `out`")
    }

    /// Runs a pipeline that must fail with exit code 1; returns stderr.
    fn run_fails(&self, pipeline: &str) -> String {
        let o = self.run(pipeline);
        let err = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(1),
            "stdout:\n{}\nstderr:\n{err}",
            stdout(&o)
        );
        // tiberius logs server errors (and, against the test server, the column query that falls
        // back to portable columns) before the bridge's own error paragraph.
        err.lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no error line in: {err}"))
            .to_string()
    }
}

/// A pipeline: CSV `data/in.csv` → `sql` (a transform over `src`) → sqlserver sink `out`.
fn pipeline(sql: &str, sink: &str) -> String {
    format!(
        "name: t
steps:
  - id: src
    source: {{type: csv, path: data/in.csv}}
  - id: rows
    transform:
      sql: \"{sql}\"
  - id: out
    sink:
      type: sqlserver
      from: rows
{sink}"
    )
}

/// The usual transform: typed columns, non-nullable key.
const TYPED: &str = "SELECT COALESCE(CAST(id AS INT), 0) AS id, name, CAST(amount AS DECIMAL(18,2)) AS amount FROM src";

fn with_csv(f: &Fixture, csv: &str) {
    f.scratch.write("data/in.csv", csv);
}

#[test]
fn insert_bulk_loads_every_type_exactly() {
    let f = Fixture::new();
    f.tsql(
        "CREATE TABLE dbo.Typed (
            id INT NOT NULL PRIMARY KEY, name NVARCHAR(20) NULL, code VARCHAR(5) NULL,
            amount DECIMAL(18,4) NULL, day DATE NULL, at DATETIME2(3) NULL, flag BIT NULL,
            ratio FLOAT NULL, small SMALLINT NULL, big BIGINT NULL)",
    );
    with_csv(
        &f,
        "id,name,code,amount,day,at,flag,ratio,small,big
1,alpha ñ,AB,10.5,2024-01-05,2024-01-05T10:30:00.123,true,0.5,-7,9007199254740993
2,beta,CDE,-20.25,2024-02-29,2024-02-29T23:59:59.999,false,1.25,32767,-1
3,,,,,,,,,
",
    );
    let sql = "SELECT COALESCE(CAST(id AS INT), 0) AS id, name, code, CAST(amount AS DECIMAL(18,2)) AS amount, \
               CAST(day AS DATE) AS day, CAST(at AS TIMESTAMP) AS at, flag, ratio, small, big FROM src";
    let step = f.run_ok(&pipeline(
        sql,
        "      table: dbo.Typed\n      mode: insert\n",
    ));
    assert_eq!(step["rows"], 3, "{step}");
    assert_eq!(step["outputs"][0], "dbo.Typed (insert: 3 rows)", "{step}");
    assert_eq!(
        f.rows(
            "SELECT id, name, code, amount, day, at, flag, ratio, small, big FROM Typed ORDER BY id"
        ),
        vec![
            "1|alpha ñ|AB|10.5000|2024-01-05|2024-01-05 10:30:00.1230000|1|0.5|-7|9007199254740993",
            "2|beta|CDE|-20.2500|2024-02-29|2024-02-29 23:59:59.9990000|0|1.25|32767|-1",
            "3|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL",
        ]
    );
}

#[test]
fn insert_through_staging_fills_defaults_and_money() {
    let f = Fixture::new();
    // `status` is left to its default and `price` is money: tiberius cannot bulk-load this table
    // directly, so rows go through a staging table and INSERT … SELECT.
    f.tsql(
        "CREATE TABLE dbo.Priced (
            id INT NOT NULL PRIMARY KEY, price MONEY NULL,
            status NVARCHAR(10) NOT NULL DEFAULT 'new')",
    );
    f.tsql("INSERT INTO dbo.Priced (id, price, status) VALUES (1, 1.5, N'old')");
    with_csv(&f, "id,amount\n2,19.99\n3,\n");
    let step = f.run_ok(&pipeline("SELECT COALESCE(CAST(id AS INT), 0) AS id, CAST(amount AS DECIMAL(10,2)) AS price FROM src",
        "      table: dbo.Priced\n      mode: insert\n",
    ));
    assert_eq!(step["outputs"][0], "dbo.Priced (insert: 2 rows)", "{step}");
    assert_eq!(
        f.rows("SELECT id, price, status FROM Priced ORDER BY id"),
        vec!["1|1.5|old", "2|19.9900|new", "3|NULL|new"]
    );
}

#[test]
fn upsert_updates_matches_and_inserts_the_rest() {
    let f = Fixture::seeded();
    with_csv(&f, "id,name,amount\n2,TWO,22.5\n3,,\n4,four,4.4\n");
    let step = f.run_ok(&pipeline(
        TYPED,
        "      table: dbo.Target\n      mode: upsert\n      primary_keys: [id]\n",
    ));
    assert_eq!(
        step["outputs"][0], "dbo.Target (upsert: 3 rows: 2 updated, 1 inserted)",
        "{step}"
    );
    assert_eq!(step["rows"], 3, "{step}");
    assert_eq!(
        f.rows(TARGET_ROWS),
        vec!["1|one|1.25", "2|TWO|22.50", "3|NULL|NULL", "4|four|4.40"]
    );
}

#[test]
fn upsert_refuses_duplicate_keys_and_changes_nothing() {
    let f = Fixture::seeded();
    with_csv(&f, "id,name,amount\n2,a,1\n2,b,2\n5,c,3\n");
    let err = f.run_fails(&pipeline(
        TYPED,
        "      table: dbo.Target\n      mode: upsert\n      primary_keys: [id]\n",
    ));
    assert!(
        err.contains("1 key value that appears more than once (primary_keys: id)"),
        "{err}"
    );
    assert_eq!(
        f.rows(TARGET_ROWS),
        vec!["1|one|1.25", "2|two|2.75", "3|three|3.35"]
    );
}

#[test]
fn delete_removes_rows_with_matching_keys() {
    let f = Fixture::seeded();
    // Only the key column matters in delete mode; `note` is not in the table and is ignored.
    with_csv(&f, "id,note\n1,x\n3,y\n9,z\n");
    let step = f.run_ok(&pipeline("SELECT CAST(id AS INT) AS id, note FROM src",
        "      table: dbo.Target\n      mode: delete\n      primary_keys: [id]\n      max_delete_rows: 2\n",
    ));
    assert_eq!(step["outputs"][0], "dbo.Target (delete: 2 rows)", "{step}");
    assert_eq!(step["rows"], 2, "{step}");
    assert_eq!(f.rows(TARGET_ROWS), vec!["2|two|2.75"]);
}

#[test]
fn delete_over_the_limit_changes_nothing() {
    let f = Fixture::seeded();
    with_csv(&f, "id\n1\n2\n3\n");
    let err = f.run_fails(&pipeline("SELECT CAST(id AS INT) AS id FROM src",
        "      table: dbo.Target\n      mode: delete\n      primary_keys: [id]\n      max_delete_rows: 2\n",
    ));
    assert!(
        err.contains("would delete 3 rows from dbo.Target, over max_delete_rows 2"),
        "{err}"
    );
    assert_eq!(
        f.rows(TARGET_ROWS),
        vec!["1|one|1.25", "2|two|2.75", "3|three|3.35"]
    );
}

#[test]
fn replace_swaps_the_whole_content() {
    let f = Fixture::seeded();
    with_csv(&f, "id,name,amount\n7,seven,7\n8,eight,8.08\n");
    let step = f.run_ok(&pipeline(
        TYPED,
        "      table: dbo.Target\n      mode: replace\n      max_delete_rows: 3\n",
    ));
    assert_eq!(
        step["outputs"][0], "dbo.Target (replace: 2 rows, 3 rows deleted first)",
        "{step}"
    );
    assert_eq!(f.rows(TARGET_ROWS), vec!["7|seven|7.00", "8|eight|8.08"]);
}

#[test]
fn replace_over_the_limit_changes_nothing() {
    let f = Fixture::seeded();
    with_csv(&f, "id,name,amount\n7,seven,7\n");
    let err = f.run_fails(&pipeline(
        TYPED,
        "      table: dbo.Target\n      mode: replace\n      max_delete_rows: 2\n",
    ));
    assert!(
        err.contains("would delete 3 rows from dbo.Target, over max_delete_rows 2"),
        "{err}"
    );
    assert_eq!(
        f.rows(TARGET_ROWS),
        vec!["1|one|1.25", "2|two|2.75", "3|three|3.35"]
    );
}

/// A table whose `region` is not unique: three `north` rows and one `south`.
const SALES: &str = "CREATE TABLE dbo.Sales (
    region NVARCHAR(10) NOT NULL,
    amount DECIMAL(18,2) NULL,
    note NVARCHAR(10) NULL
)";
const SALES_SEED: &str = "INSERT INTO dbo.Sales (region, amount, note) VALUES
    (N'north', 1, N'a'), (N'north', 2, N'b'), (N'north', 3, N'c'), (N'south', 4, N'd')";
const SALES_ROWS: &str = "SELECT region, amount, note FROM Sales ORDER BY note";
const SALES_BEFORE: [&str; 4] = ["north|1|a", "north|2|b", "north|3|c", "south|4|d"];

fn sales() -> Fixture {
    let f = Fixture::new();
    f.tsql(SALES);
    f.tsql(SALES_SEED);
    f
}

#[test]
fn delete_cap_counts_rows_committed_after_a_count_and_before_the_delete() {
    let f = Fixture::seeded();
    // Keys 1, 2 and 4: only two of them are in the table when the run starts, so a count taken
    // before the DELETE sees 2 rows, within the cap.
    with_csv(&f, "id\n1\n2\n4\n");
    // Another session commits row 4 just before the DELETE runs (READ COMMITTED lets the DELETE
    // see it): the DELETE removes 3 rows, over the cap, and must be rolled back.
    f.server.write_before(
        "DELETE",
        "INSERT INTO Target (id, name, amount) VALUES (4, 'four', '4.00')",
    );
    let err = f.run_fails(&pipeline("SELECT CAST(id AS INT) AS id FROM src",
        "      table: dbo.Target\n      mode: delete\n      primary_keys: [id]\n      max_delete_rows: 2\n",
    ));
    assert!(
        err.contains("would delete 3 rows from dbo.Target, over max_delete_rows 2"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    // The test server can only slip the concurrent row into the sink's own transaction (see
    // `TdsServer::write_before`), so the rollback removes it too: the rows the run started from.
    assert_eq!(
        f.rows(TARGET_ROWS),
        vec!["1|one|1.25", "2|two|2.75", "3|three|3.35"]
    );
}

#[test]
fn replace_cap_counts_rows_committed_before_its_delete() {
    let f = Fixture::seeded();
    with_csv(&f, "id,name,amount\n7,seven,7\n");
    // Three rows when the run starts (the cap), a fourth committed just before the DELETE.
    f.server.write_before(
        "DELETE",
        "INSERT INTO Target (id, name, amount) VALUES (4, 'four', '4.00')",
    );
    let err = f.run_fails(&pipeline(
        TYPED,
        "      table: dbo.Target\n      mode: replace\n      max_delete_rows: 3\n",
    ));
    assert!(
        err.contains("would delete 4 rows from dbo.Target, over max_delete_rows 3"),
        "{err}"
    );
    assert_eq!(
        f.rows(TARGET_ROWS),
        vec!["1|one|1.25", "2|two|2.75", "3|three|3.35"]
    );
}

#[test]
fn delete_by_a_non_unique_key_is_capped_by_the_rows_it_removes() {
    let f = sales();
    // One input row, but its key matches three rows of the table.
    with_csv(&f, "region\nnorth\n");
    let err = f.run_fails(&pipeline("SELECT region FROM src",
        "      table: dbo.Sales\n      mode: delete\n      primary_keys: [region]\n      max_delete_rows: 2\n",
    ));
    assert!(
        err.contains("would delete 3 rows from dbo.Sales, over max_delete_rows 2"),
        "{err}"
    );
    assert_eq!(f.rows(SALES_ROWS), SALES_BEFORE);
}

#[test]
fn update_by_a_key_not_unique_in_the_table_is_refused_and_changes_nothing() {
    let f = sales();
    with_csv(&f, "region,amount\nnorth,9\n");
    let err = f.run_fails(&pipeline(
        "SELECT region, CAST(amount AS DECIMAL(18,2)) AS amount FROM src",
        "      table: dbo.Sales\n      mode: update\n      primary_keys: [region]\n",
    ));
    assert!(
        err.contains(
            "mode `update` would change 3 rows of dbo.Sales for 1 input row whose keys match (primary_keys: region)"
        ),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(f.rows(SALES_ROWS), SALES_BEFORE);
}

#[test]
fn upsert_by_a_key_not_unique_in_the_table_is_refused_and_changes_nothing() {
    let f = sales();
    // `north` matches three rows; `east` matches none and would be inserted.
    with_csv(&f, "region,amount,note\nnorth,9,x\neast,5,y\n");
    let err = f.run_fails(&pipeline(
        "SELECT region, CAST(amount AS DECIMAL(18,2)) AS amount, note FROM src",
        "      table: dbo.Sales\n      mode: upsert\n      primary_keys: [region]\n",
    ));
    assert!(
        err.contains(
            "mode `upsert` would change 3 rows of dbo.Sales for 1 input row whose keys match (primary_keys: region)"
        ),
        "{err}"
    );
    assert_eq!(f.rows(SALES_ROWS), SALES_BEFORE);
}

#[test]
fn update_and_upsert_by_keys_unique_in_the_table_still_write() {
    let f = sales();
    with_csv(&f, "region,amount\nsouth,40\nwest,1\n");
    let step = f.run_ok(&pipeline(
        "SELECT region, CAST(amount AS DECIMAL(18,2)) AS amount FROM src",
        "      table: dbo.Sales\n      mode: update\n      primary_keys: [region]\n",
    ));
    assert_eq!(step["outputs"][0], "dbo.Sales (update: 1 row)", "{step}");
    with_csv(&f, "region,amount,note\nsouth,41,e\nwest,1,f\n");
    let step = f.run_ok(&pipeline(
        "SELECT region, CAST(amount AS DECIMAL(18,2)) AS amount, note FROM src",
        "      table: dbo.Sales\n      mode: upsert\n      primary_keys: [region]\n",
    ));
    assert_eq!(
        step["outputs"][0], "dbo.Sales (upsert: 2 rows: 1 updated, 1 inserted)",
        "{step}"
    );
    assert_eq!(
        f.rows(SALES_ROWS),
        vec![
            "north|1|a",
            "north|2|b",
            "north|3|c",
            "south|41.00|e",
            "west|1.00|f"
        ]
    );
}

#[test]
fn mismatches_are_all_reported_before_any_write() {
    let f = Fixture::new();
    f.tsql(
        "CREATE TABLE dbo.Strict (
            id INT NOT NULL PRIMARY KEY, name NVARCHAR(20) NULL, amount DECIMAL(18,2) NULL,
            created DATE NOT NULL)",
    );
    f.tsql(
        "INSERT INTO dbo.Strict (id, name, amount, created) VALUES (1, N'one', 1, '2024-01-01')",
    );
    with_csv(&f, "id,name,amount,extra\n2,two,2,x\n");
    // `amount` text into decimal, `extra` not in the table, `created` NOT NULL without default
    // and missing: three problems in one error (a nullable `id` may feed NOT NULL).
    let err = f.run_fails(&pipeline(
        "SELECT CAST(id AS INT) AS id, name, CAST(amount AS VARCHAR) AS amount, extra FROM src",
        "      table: dbo.Strict\n      mode: insert\n",
    ));
    assert!(
        err.contains("dbo.Strict does not match the input (3 problems)"),
        "{err}"
    );
    for part in [
        "column `amount`: input type Utf8",
        "cannot be written to dbo.Strict.amount (decimal(18,2))",
        "column `extra` is not in dbo.Strict",
        "dbo.Strict.created is NOT NULL without a default and is not in the input",
        "nothing was written",
    ] {
        assert!(err.contains(part), "missing `{part}` in: {err}");
    }
    assert_eq!(
        f.rows("SELECT id, name, amount, created FROM Strict"),
        vec!["1|one|1|2024-01-01"]
    );
}

#[test]
fn missing_table_is_reported() {
    let f = Fixture::new();
    with_csv(&f, "id\n1\n");
    let err = f.run_fails(&pipeline(
        "SELECT CAST(id AS INT) AS id FROM src",
        "      table: dbo.Nowhere\n      mode: insert\n",
    ));
    assert!(err.contains("table dbo.Nowhere does not exist"), "{err}");
}

#[test]
fn insert_with_a_duplicate_key_rolls_back_every_row() {
    let f = Fixture::seeded();
    // 10 and 11 are new, 2 already exists: the bulk load fails and nothing stays.
    with_csv(&f, "id,name,amount\n10,ten,10\n11,eleven,11\n2,dup,2\n");
    let err = f.run_fails(&pipeline(
        TYPED,
        "      table: dbo.Target\n      mode: insert\n",
    ));
    assert!(err.contains("step `out` failed"), "{err}");
    assert!(err.contains("2627"), "a primary key violation: {err}");
    assert_eq!(
        f.rows(TARGET_ROWS),
        vec!["1|one|1.25", "2|two|2.75", "3|three|3.35"]
    );
}

#[test]
fn replace_failing_after_the_delete_restores_the_old_rows() {
    let f = Fixture::seeded();
    // The DELETE succeeds, then the load hits a duplicate key: the transaction rolls back both.
    with_csv(&f, "id,name,amount\n5,five,5\n5,again,5\n");
    let err = f.run_fails(&pipeline(
        TYPED,
        "      table: dbo.Target\n      mode: replace\n",
    ));
    assert!(err.contains("2627"), "{err}");
    assert_eq!(
        f.rows(TARGET_ROWS),
        vec!["1|one|1.25", "2|two|2.75", "3|three|3.35"]
    );
}

#[test]
fn a_bad_value_mid_stream_rolls_back_and_names_column_and_row() {
    let f = Fixture::seeded();
    // The third row's name is longer than nvarchar(20).
    with_csv(
        &f,
        "id,name,amount\n10,ok,1\n11,fine,2\n12,this name is far too long,3\n",
    );
    let err = f.run_fails(&pipeline(
        TYPED,
        "      table: dbo.Target\n      mode: insert\n",
    ));
    assert!(
        err.contains(
            "column `name`, input row 3: text of 25 characters is longer than the column's 20"
        ),
        "{err}"
    );
    assert_eq!(
        f.rows(TARGET_ROWS),
        vec!["1|one|1.25", "2|two|2.75", "3|three|3.35"]
    );
}

#[test]
fn a_failing_sibling_sink_aborts_the_staged_transaction() {
    let f = Fixture::seeded();
    with_csv(&f, "id,name,amount\n4,four,4\n");
    // `out` stages (its transaction stays open), `other` fails: `out` must be rolled back.
    let p = format!(
        "{}  - id: other
    sink:
      type: sqlserver
      from: rows
      table: dbo.Missing
      mode: insert
",
        pipeline(TYPED, "      table: dbo.Target\n      mode: insert\n",)
    );
    let err = f.run_fails(&p);
    assert!(err.contains("table dbo.Missing does not exist"), "{err}");
    assert_eq!(
        f.rows(TARGET_ROWS),
        vec!["1|one|1.25", "2|two|2.75", "3|three|3.35"]
    );
}

#[test]
fn configuration_errors_fail_before_connecting() {
    let f = Fixture::seeded();
    with_csv(&f, "id,name,amount\n4,four,4\n");
    let err = f.run_fails(&pipeline(
        TYPED,
        "      table: dbo.Target\n      mode: upsert\n",
    ));
    assert!(err.contains("mode `upsert` needs `primary_keys`"), "{err}");
    let err = f.run_fails(&pipeline(
        TYPED,
        "      table: dbo.Target\n      mode: delete\n      primary_keys: [nope]\n",
    ));
    assert!(
        err.contains("primary_keys: column `nope` is not in the input"),
        "{err}"
    );
    // Not a table name: refused when the pipeline is planned (invalid input, exit 2), so
    // `bridge validate` refuses it too.
    let o = f.run(&pipeline(
        TYPED,
        "      table: \"dbo.Target; DROP TABLE x\"\n      mode: insert\n",
    ));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("invalid table name"), "{}", stderr(&o));
    assert_eq!(
        f.rows(TARGET_ROWS),
        vec!["1|one|1.25", "2|two|2.75", "3|three|3.35"]
    );
}

#[test]
fn a_value_the_code_page_cannot_hold_is_refused_and_changes_nothing() {
    let f = Fixture::new();
    f.tsql("CREATE TABLE dbo.Latin (id INT NOT NULL PRIMARY KEY, code VARCHAR(10) NULL)");
    f.tsql("INSERT INTO dbo.Latin (id, code) VALUES (1, 'a')");
    // varchar is sent in the column's code page (1252, from COLLATIONPROPERTY): a character it
    // cannot hold is refused before the row is sent, instead of becoming `?`.
    with_csv(&f, "id,code\n2,ok\n3,日本\n");
    let err = f.run_fails(&pipeline(
        "SELECT COALESCE(CAST(id AS INT), 0) AS id, code FROM src",
        "      table: dbo.Latin\n      mode: insert\n",
    ));
    assert!(
        err.contains("column `code`, input row 2: `日本` cannot be stored in this char/varchar column: its code page 1252 has no `日` (U+65E5)"),
        "{err}"
    );
    assert_eq!(
        f.rows("SELECT id, code FROM Latin ORDER BY id"),
        vec!["1|a"]
    );
    // The server is still usable afterwards.
    with_csv(&f, "id,code\n2,ok\n");
    f.run_ok(&pipeline(
        "SELECT COALESCE(CAST(id AS INT), 0) AS id, code FROM src",
        "      table: dbo.Latin\n      mode: insert\n",
    ));
    assert_eq!(
        f.rows("SELECT id, code FROM Latin ORDER BY id"),
        vec!["1|a", "2|ok"]
    );
}

#[test]
fn empty_input_inserts_nothing() {
    let f = Fixture::seeded();
    with_csv(&f, "id,name,amount\n");
    let step = f.run_ok(&pipeline(
        "SELECT COALESCE(CAST(id AS INT), 0) AS id, CAST(name AS VARCHAR) AS name, CAST(amount AS DECIMAL(18,2)) AS amount FROM src",
        "      table: dbo.Target\n      mode: insert\n",
    ));
    assert_eq!(step["outputs"][0], "dbo.Target (insert: 0 rows)", "{step}");
    assert_eq!(
        f.rows(TARGET_ROWS),
        vec!["1|one|1.25", "2|two|2.75", "3|three|3.35"]
    );
}

#[test]
fn two_steps_writing_one_table_are_refused_when_planning() {
    let f = Fixture::seeded();
    with_csv(&f, "id,name,amount\n4,four,4\n");
    // The second writer would block on the first one's open transaction, which commits only
    // after every sink staged: refused at once, and the staged one is rolled back.
    let p = format!(
        "{}  - id: again
    sink:
      type: sqlserver
      from: rows
      table: DBO.target
      mode: upsert
      primary_keys: [id]
",
        pipeline(TYPED, "      table: dbo.Target\n      mode: insert\n")
    );
    // Refused when planning (exit 2), before anything is written.
    let o = f.run(&p);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("pipelines/p.yaml:14: step `again` writes dbo.Target, which step `out` of this run already writes"),
        "{err}"
    );
    assert_eq!(
        f.rows(TARGET_ROWS),
        vec!["1|one|1.25", "2|two|2.75", "3|three|3.35"]
    );
}

#[test]
fn nullable_input_feeds_not_null_columns_until_a_null_arrives() {
    let f = Fixture::new();
    f.tsql("CREATE TABLE dbo.Keys (id INT NOT NULL PRIMARY KEY, name NVARCHAR(20) NULL)");
    f.tsql("INSERT INTO dbo.Keys (id, name) VALUES (1, N'one')");
    // `id` is nullable by type (CSV) but holds no NULL: accepted.
    with_csv(&f, "id,name\n2,two\n");
    f.run_ok(&pipeline(
        "SELECT CAST(id AS INT) AS id, name FROM src",
        "      table: dbo.Keys\n      mode: insert\n",
    ));
    assert_eq!(
        f.rows("SELECT id, name FROM Keys ORDER BY id"),
        vec!["1|one", "2|two"]
    );
    // A real NULL fails the run, naming column and row, and nothing of it is kept.
    with_csv(&f, "id,name\n3,three\n,nobody\n");
    let err = f.run_fails(&pipeline(
        "SELECT CAST(id AS INT) AS id, name FROM src",
        "      table: dbo.Keys\n      mode: insert\n",
    ));
    assert!(
        err.contains("column `id`, input row 2: NULL cannot go into a NOT NULL column"),
        "{err}"
    );
    assert_eq!(
        f.rows("SELECT id, name FROM Keys ORDER BY id"),
        vec!["1|one", "2|two"]
    );
}
