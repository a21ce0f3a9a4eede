//! Spark is part of the test suite (issue 11): Spark 4 (pyspark, as Databricks' runtime) reads
//! what the bridge writes for Databricks, and the bridge loads what Spark writes into SQL Server,
//! value for value and type for type, against the project's TDS test server.
//!
//! One Spark worker process serves the whole binary ([`session`]); its settings (session time
//! zone UTC, ANSI mode, ...) are documented in `tests/spark/worker.py`. The expected values are
//! written out literally from the output type policy (README, issue 11): a wrong value or a wrong
//! Spark type in any reader fails the test, and every difference is listed at once.
//!
//! Needs Java 17 and the venv `.ci/setup-spark` prepares (`BRIDGE_SPARK_PYTHON`); without them
//! the tests fail saying so, they never pass by skipping.

mod common;
#[path = "spark/expect.rs"]
mod expect;
#[path = "spark/session.rs"]
mod session;
#[path = "spark/tds.rs"]
mod tds;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Instant;

use common::*;
use expect::{Expected, Table, delta_type, differences};
use serde_json::{Value, json};
use session::{spark, warm_up};
use tds_test_server::{TdsServer, TdsServerConfig};

/// A TDS test server with the runtime serving it, and a scratch project.
struct Fixture {
    rt: tokio::runtime::Runtime,
    server: TdsServer,
    scratch: Scratch,
}

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

    fn port(&self) -> u16 {
        self.server.addr().port()
    }

    fn tsql(&self, sql: &str) {
        self.rt.block_on(tds::execute(self.port(), sql));
    }

    fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.rt.block_on(tds::rows(self.port(), sql))
    }

    /// `bridge --output json run <pipeline>` against the test server.
    fn run(&self, name: &str, pipeline: &str) -> Output {
        let file = format!("pipelines/{name}.yaml");
        self.scratch.write(&file, pipeline);
        let env = [
            ("SQLSERVER_HOST", "127.0.0.1".to_string()),
            ("SQLSERVER_PORT", self.port().to_string()),
            ("SQLSERVER_DATABASE", "bridge".to_string()),
            ("SQLSERVER_USERNAME", "sa".to_string()),
            ("SQLSERVER_PASSWORD", "not-a-real-secret".to_string()),
            ("SQLSERVER_ENCRYPT", "danger_plaintext".to_string()),
        ];
        self.scratch
            .bridge_env(&["--output", "json", "run", &file], &env)
    }
}

/// Problems of a run: a failure, and any ERROR log line (a normal run logs none).
fn run_problems(what: &str, o: &Output) -> Vec<String> {
    let err = stderr(o);
    let mut out = Vec::new();
    if !o.status.success() {
        out.push(format!(
            "{what}: bridge failed ({:?}); stderr:\n{err}",
            o.status.code()
        ));
    }
    for line in err.lines().filter(|l| l.contains("ERROR")) {
        out.push(format!("{what}: ERROR line on stderr: {line}"));
    }
    out
}

/// Fails with every problem, one per line.
fn assert_none(test: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{test}: {} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Reads through the worker; a missing output or a failing read is one problem.
fn read(cmd: &str, path: &std::path::Path, problems: &mut Vec<String>) -> Option<(Table, Value)> {
    if !path.exists() {
        problems.push(format!(
            "{cmd}: the run wrote nothing at {}",
            path.display()
        ));
        return None;
    }
    let started = Instant::now();
    let answer = spark().call(json!({"cmd": cmd, "path": path}));
    eprintln!("spark {cmd}: {:?}", started.elapsed());
    match answer.and_then(|a| Table::from_answer(&a).map(|t| (t, a))) {
        Ok(got) => Some(got),
        Err(e) => {
            problems.push(format!("{cmd} {}: {e}", path.display()));
            None
        }
    }
}

// ---- SQL Server -> volume and Delta -> Spark ---------------------------------------------------

/// One SQL Server column: its type, the Spark type the policy gives it, and for rows 1..=3 the
/// T-SQL literal inserted and the value Spark must read (worker encoding). Row 4 is all NULL.
struct SqlColumn {
    name: &'static str,
    sql: &'static str,
    spark: &'static str,
    cells: Vec<(String, String)>,
}

fn col(
    name: &'static str,
    sql: &'static str,
    spark: &'static str,
    cells: [(&str, &str); 3],
) -> SqlColumn {
    SqlColumn {
        name,
        sql,
        spark,
        cells: cells
            .iter()
            .map(|(l, e)| (l.to_string(), e.to_string()))
            .collect(),
    }
}

/// Every type the test server supports, at its range and precision limits (row 1: minimum,
/// row 2: maximum, row 3: an ordinary or awkward value), with non-ASCII text.
fn every_type() -> Vec<SqlColumn> {
    let x50 = "x".repeat(50);
    // 50 UTF-16 code units: 48 BMP characters and one surrogate pair.
    let wide50 = format!("{}🚀", "字".repeat(48));
    let long = "Ñandú 日本 🚀 long ".repeat(1000);
    let ff50 = "ff".repeat(50);
    let bytes10k = "00ff".repeat(5000);
    let owned = |name, sql, spark, cells: [(String, String); 3]| SqlColumn {
        name,
        sql,
        spark,
        cells: cells.to_vec(),
    };
    vec![
        col(
            "c_bit",
            "BIT",
            "boolean",
            [("0", "false"), ("1", "true"), ("1", "true")],
        ),
        col(
            "c_tinyint",
            "TINYINT",
            "smallint",
            [("0", "0"), ("255", "255"), ("42", "42")],
        ),
        col(
            "c_smallint",
            "SMALLINT",
            "smallint",
            [("-32768", "-32768"), ("32767", "32767"), ("-1", "-1")],
        ),
        col(
            "c_int",
            "INT",
            "int",
            [
                ("-2147483648", "-2147483648"),
                ("2147483647", "2147483647"),
                ("0", "0"),
            ],
        ),
        col(
            "c_bigint",
            "BIGINT",
            "bigint",
            [
                ("-9223372036854775808", "-9223372036854775808"),
                ("9223372036854775807", "9223372036854775807"),
                ("1", "1"),
            ],
        ),
        col(
            "c_real",
            "REAL",
            "float",
            [
                ("-3.4028235E+38", "-3.4028235e38"),
                ("3.4028235E+38", "3.4028235e38"),
                ("1.1754944E-38", "1.1754944e-38"),
            ],
        ),
        col(
            "c_float",
            "FLOAT",
            "double",
            [
                ("-1.7976931348623157E+308", "-1.7976931348623157e308"),
                ("1.7976931348623157E+308", "1.7976931348623157e308"),
                ("2.2250738585072014E-308", "2.2250738585072014e-308"),
            ],
        ),
        // Exact numerics are inserted as quoted literals (implicitly converted, as SQL Server
        // does): the test server would store a number literal as a SQLite REAL.
        col(
            "c_dec38_0",
            "DECIMAL(38,0)",
            "decimal(38,0)",
            [
                (
                    "'-99999999999999999999999999999999999999'",
                    "-99999999999999999999999999999999999999",
                ),
                (
                    "'99999999999999999999999999999999999999'",
                    "99999999999999999999999999999999999999",
                ),
                ("0", "0"),
            ],
        ),
        col(
            "c_dec38_38",
            "DECIMAL(38,38)",
            "decimal(38,38)",
            [
                (
                    "'-0.99999999999999999999999999999999999999'",
                    "-0.99999999999999999999999999999999999999",
                ),
                (
                    "'0.99999999999999999999999999999999999999'",
                    "0.99999999999999999999999999999999999999",
                ),
                (
                    "'0.00000000000000000000000000000000000001'",
                    "0.00000000000000000000000000000000000001",
                ),
            ],
        ),
        col(
            "c_dec18_4",
            "DECIMAL(18,4)",
            "decimal(18,4)",
            [
                ("'-99999999999999.9999'", "-99999999999999.9999"),
                ("'99999999999999.9999'", "99999999999999.9999"),
                ("'1.5'", "1.5000"),
            ],
        ),
        col(
            "c_numeric",
            "NUMERIC(10,2)",
            "decimal(10,2)",
            [
                ("'-99999999.99'", "-99999999.99"),
                ("'99999999.99'", "99999999.99"),
                ("'0.01'", "0.01"),
            ],
        ),
        // money over its whole range: the vendored tiberius reads it exactly (not as f64).
        col(
            "c_money",
            "MONEY",
            "decimal(19,4)",
            [
                ("'-922337203685477.5808'", "-922337203685477.5808"),
                ("'922337203685477.5807'", "922337203685477.5807"),
                ("'0.0001'", "0.0001"),
            ],
        ),
        col(
            "c_smallmoney",
            "SMALLMONEY",
            "decimal(10,4)",
            [
                ("'-214748.3648'", "-214748.3648"),
                ("'214748.3647'", "214748.3647"),
                ("'1'", "1.0000"),
            ],
        ),
        col(
            "c_date",
            "DATE",
            "date",
            [
                ("'0001-01-01'", "0001-01-01"),
                ("'9999-12-31'", "9999-12-31"),
                // Missing from the Julian-Gregorian hybrid calendar: proleptic Gregorian only.
                ("'1582-10-10'", "1582-10-10"),
            ],
        ),
        col(
            "c_time0",
            "TIME(0)",
            "string",
            [
                ("'00:00:00'", "00:00:00"),
                ("'23:59:59'", "23:59:59"),
                ("'12:34:56'", "12:34:56"),
            ],
        ),
        col(
            "c_time3",
            "TIME(3)",
            "string",
            [
                ("'00:00:00.000'", "00:00:00.000"),
                ("'23:59:59.999'", "23:59:59.999"),
                ("'12:34:56.789'", "12:34:56.789"),
            ],
        ),
        col(
            "c_time7",
            "TIME(7)",
            "string",
            [
                ("'00:00:00.0000000'", "00:00:00.0000000"),
                ("'23:59:59.9999999'", "23:59:59.9999999"),
                ("'12:34:56.1234567'", "12:34:56.1234567"),
            ],
        ),
        col(
            "c_datetime",
            "DATETIME",
            "timestamp_ntz",
            [
                ("'1753-01-01 00:00:00.000'", "1753-01-01T00:00:00.000000"),
                ("'9999-12-31 23:59:59.997'", "9999-12-31T23:59:59.997000"),
                ("'2024-02-29 12:34:56.007'", "2024-02-29T12:34:56.007000"),
            ],
        ),
        col(
            "c_smalldatetime",
            "SMALLDATETIME",
            "timestamp_ntz",
            [
                ("'1900-01-01 00:00:00'", "1900-01-01T00:00:00.000000"),
                ("'2079-06-06 23:59:00'", "2079-06-06T23:59:00.000000"),
                ("'2024-02-29 12:35:00'", "2024-02-29T12:35:00.000000"),
            ],
        ),
        col(
            "c_dt2_0",
            "DATETIME2(0)",
            "timestamp_ntz",
            [
                ("'0001-01-01 00:00:00'", "0001-01-01T00:00:00.000000"),
                ("'9999-12-31 23:59:59'", "9999-12-31T23:59:59.000000"),
                ("'2024-02-29 12:34:56'", "2024-02-29T12:34:56.000000"),
            ],
        ),
        col(
            "c_dt2_3",
            "DATETIME2(3)",
            "timestamp_ntz",
            [
                ("'0001-01-01 00:00:00.000'", "0001-01-01T00:00:00.000000"),
                ("'9999-12-31 23:59:59.999'", "9999-12-31T23:59:59.999000"),
                ("'1582-10-10 12:34:56.789'", "1582-10-10T12:34:56.789000"),
            ],
        ),
        // The 7th digit is truncated (the default `sub_microsecond: truncate`) and counted.
        col(
            "c_dt2_7",
            "DATETIME2(7)",
            "timestamp_ntz",
            [
                (
                    "'0001-01-01 00:00:00.0000000'",
                    "0001-01-01T00:00:00.000000",
                ),
                (
                    "'9999-12-31 23:59:59.9999999'",
                    "9999-12-31T23:59:59.999999",
                ),
                (
                    "'2024-02-29 12:34:56.1234567'",
                    "2024-02-29T12:34:56.123456",
                ),
            ],
        ),
        // The UTC instant; the offsets are the extremes, the instants the range's ends.
        col(
            "c_dto7",
            "DATETIMEOFFSET(7)",
            "timestamp",
            [
                (
                    "'0001-01-01 14:00:00.0000000 +14:00'",
                    "0001-01-01T00:00:00.000000Z",
                ),
                (
                    "'9999-12-31 09:59:59.9999990 -14:00'",
                    "9999-12-31T23:59:59.999999Z",
                ),
                (
                    "'2024-02-29 12:34:56.1234560 +05:30'",
                    "2024-02-29T07:04:56.123456Z",
                ),
            ],
        ),
        col(
            "c_dto0",
            "DATETIMEOFFSET(0)",
            "timestamp",
            [
                (
                    "'2024-02-29 23:59:59 -14:00'",
                    "2024-03-01T13:59:59.000000Z",
                ),
                (
                    "'2024-03-01 00:00:00 +14:00'",
                    "2024-02-29T10:00:00.000000Z",
                ),
                (
                    "'1900-01-01 00:00:00 +00:00'",
                    "1900-01-01T00:00:00.000000Z",
                ),
            ],
        ),
        col(
            "c_char",
            "CHAR(5)",
            "string",
            [("''", "     "), ("'abcde'", "abcde"), ("'é'", "é    ")],
        ),
        owned(
            "c_varchar",
            "VARCHAR(50)",
            "string",
            [
                ("''".into(), String::new()),
                (format!("'{x50}'"), x50.clone()),
                ("'café Ñandú'".into(), "café Ñandú".into()),
            ],
        ),
        col(
            "c_nchar",
            "NCHAR(3)",
            "string",
            [("N''", "   "), ("N'日本語'", "日本語"), ("N'ñ'", "ñ  ")],
        ),
        owned(
            "c_nvarchar",
            "NVARCHAR(50)",
            "string",
            [
                ("N''".into(), String::new()),
                (format!("N'{wide50}'"), wide50.clone()),
                ("N'Ñandú 日本 🚀'".into(), "Ñandú 日本 🚀".into()),
            ],
        ),
        owned(
            "c_nvarchar_max",
            "NVARCHAR(MAX)",
            "string",
            [
                ("N''".into(), String::new()),
                (format!("N'{long}'"), long.clone()),
                ("N'ü'".into(), "ü".into()),
            ],
        ),
        col(
            "c_text",
            "TEXT",
            "string",
            [
                ("''", ""),
                ("'plain text'", "plain text"),
                ("'café'", "café"),
            ],
        ),
        col(
            "c_ntext",
            "NTEXT",
            "string",
            [("N''", ""), ("N'日本 ntext'", "日本 ntext"), ("N'ñ'", "ñ")],
        ),
        col(
            "c_xml",
            "XML",
            "string",
            [
                ("N'<a/>'", "<a/>"),
                ("N'<a>1</a>'", "<a>1</a>"),
                ("N'<r k=\"ñ\">日本</r>'", "<r k=\"ñ\">日本</r>"),
            ],
        ),
        col(
            "c_binary",
            "BINARY(4)",
            "binary",
            [
                ("0x00000000", "00000000"),
                ("0xFFFFFFFF", "ffffffff"),
                ("0x0102", "01020000"),
            ],
        ),
        owned(
            "c_varbinary",
            "VARBINARY(50)",
            "binary",
            [
                ("0x".into(), String::new()),
                (format!("0x{ff50}"), ff50.clone()),
                ("0xCAFEBABE".into(), "cafebabe".into()),
            ],
        ),
        owned(
            "c_varbinary_max",
            "VARBINARY(MAX)",
            "binary",
            [
                ("0x".into(), String::new()),
                (format!("0x{bytes10k}"), bytes10k.clone()),
                ("0x00".into(), "00".into()),
            ],
        ),
        col(
            "c_image",
            "IMAGE",
            "binary",
            [("0x", ""), ("0x00FF", "00ff"), ("0xCAFE", "cafe")],
        ),
        col(
            "c_guid",
            "UNIQUEIDENTIFIER",
            "string",
            [
                (
                    "'00000000-0000-0000-0000-000000000000'",
                    "00000000-0000-0000-0000-000000000000",
                ),
                (
                    "'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF'",
                    "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
                ),
                (
                    "'6f9619ff-8b86-d011-b42d-00c04fc964ff'",
                    "6F9619FF-8B86-D011-B42D-00C04FC964FF",
                ),
            ],
        ),
    ]
}

/// `CREATE TABLE` and the four `INSERT`s of [`every_type`].
fn every_type_sql(columns: &[SqlColumn]) -> String {
    let defs: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {} NULL", c.name, c.sql))
        .collect();
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let mut sql = format!(
        "CREATE TABLE dbo.every_type (id INT NOT NULL PRIMARY KEY, {});\n",
        defs.join(", ")
    );
    for row in 0..3 {
        let values: Vec<&str> = columns.iter().map(|c| c.cells[row].0.as_str()).collect();
        sql.push_str(&format!(
            "INSERT INTO dbo.every_type (id, {}) VALUES ({}, {});\n",
            names.join(", "),
            row + 1,
            values.join(", ")
        ));
    }
    sql.push_str("INSERT INTO dbo.every_type (id) VALUES (4);\n");
    sql
}

/// What every reader must see: `id`, then each column with its three values and a NULL.
fn every_type_expected(columns: &[SqlColumn]) -> Vec<Expected> {
    let mut out = vec![Expected {
        name: "id".into(),
        ty: "int".into(),
        values: (1..=4).map(|i| Some(i.to_string())).collect(),
    }];
    out.extend(columns.iter().map(|c| {
        Expected {
            name: c.name.into(),
            ty: c.spark.into(),
            values: c
                .cells
                .iter()
                .map(|(_, e)| Some(e.clone()))
                .chain([None])
                .collect(),
        }
    }));
    out
}

/// Values per `datetime2(7)` column whose 7th fraction digit is not 0 (lost by truncation).
fn expected_truncations(columns: &[SqlColumn]) -> BTreeMap<String, u64> {
    columns
        .iter()
        .filter(|c| c.sql == "DATETIME2(7)")
        .map(|c| {
            let n = c
                .cells
                .iter()
                .filter(|(lit, _)| {
                    let digits = lit.trim_matches('\'').rsplit('.').next().unwrap_or("");
                    digits.len() == 7 && !digits.ends_with('0')
                })
                .count() as u64;
            (c.name.to_string(), n)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The counts of truncated values a report holds in `field` (`truncated` of a run summary's
/// step, `truncated_sub_microsecond` of a `_SUCCESS` manifest); `None` when it has none.
fn truncations(report: &Value, field: &str) -> Option<BTreeMap<String, u64>> {
    serde_json::from_value(report.get(field)?.clone()).ok()
}

/// The Delta table's protocol has the features its column types need.
fn protocol_problems(answer: &Value, expected: &[Expected]) -> Vec<String> {
    let mut out = Vec::new();
    if expected.iter().any(|c| c.ty == "timestamp_ntz") {
        for side in ["reader_features", "writer_features"] {
            let has = answer["protocol"][side]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "timestampNtz"));
            if !has {
                out.push(format!(
                    "delta via deltalake: a timestamp_ntz column needs the timestampNtz table \
                     feature, protocol {} has {side} {}",
                    answer["protocol"], answer["protocol"][side]
                ));
            }
        }
    }
    out
}

/// A table with every SQL Server type at its limits goes through `bridge run` to a volume folder
/// and a Delta table; Spark reads the folder, Spark reads the Delta table's files, the
/// `deltalake` package reads the table, and each sees exactly the policy's types and values.
/// The run reports the truncated `datetime2(7)` values per column and logs no ERROR.
#[test]
fn every_sql_server_type_reads_back_in_spark() {
    let started = Instant::now();
    warm_up();
    let f = Fixture::new();
    let columns = every_type();
    f.tsql(&every_type_sql(&columns));
    let expected = every_type_expected(&columns);
    let pipeline = "name: every_type
steps:
  - id: t
    source: {type: sqlserver, table: dbo.every_type}
  - id: volume
    sink: {type: volume, from: t, destination: out, path: every_type}
  - id: lake
    sink: {type: delta, from: t, path: lake/every_type, mode: overwrite}
";
    let run_started = Instant::now();
    let o = f.run("every_type", pipeline);
    eprintln!("bridge run: {:?}", run_started.elapsed());
    let mut problems = run_problems("bridge run", &o);

    // The run summary and the manifest count the truncated values, per sink and column.
    let want = expected_truncations(&columns);
    if o.status.success() {
        let summary: Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| {
            panic!("--output json is not JSON ({e}):\n{}", stdout(&o));
        });
        // The source counts per column; each sink per `step.column` of what reached it.
        let per_source: BTreeMap<String, u64> =
            want.iter().map(|(c, n)| (format!("t.{c}"), *n)).collect();
        for (step_id, want) in [("t", &want), ("volume", &per_source), ("lake", &per_source)] {
            let step = summary["steps"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["id"] == step_id));
            match step.map(|s| (s, truncations(s, "truncated"))) {
                Some((_, Some(got))) if &got == want => {}
                Some((_, None)) if want.is_empty() => {}
                Some((s, got)) => problems.push(format!(
                    "run summary: step {step_id} reports truncations {got:?}, expected {want:?}: {s}"
                )),
                None => problems.push(format!("run summary has no step {step_id}: {summary}")),
            }
        }
        let manifest_path = f.scratch.path("out/every_type/_SUCCESS");
        let manifest: Value = std::fs::read(&manifest_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let reported = truncations(&manifest, "truncated_sub_microsecond");
        if reported.as_ref() != Some(&per_source) && !(reported.is_none() && per_source.is_empty())
        {
            problems.push(format!(
                "_SUCCESS manifest reports truncations {reported:?}, expected {per_source:?}: {manifest}"
            ));
        }
    }

    let volume = f.scratch.path("out/every_type");
    let lake = f.scratch.path("lake/every_type");
    let same = |t: &str| t.to_string();
    if let Some((table, _)) = read("read_parquet", &volume, &mut problems) {
        problems.extend(differences("volume via Spark", &table, &expected, &same));
    }
    if let Some((table, _)) = read("read_delta_files", &lake, &mut problems) {
        problems.extend(differences(
            "delta files via Spark",
            &table,
            &expected,
            &same,
        ));
    }
    if let Some((table, answer)) = read("read_delta", &lake, &mut problems) {
        problems.extend(differences(
            "delta via deltalake",
            &table,
            &expected,
            &delta_type,
        ));
        problems.extend(protocol_problems(&answer, &expected));
    }
    eprintln!(
        "every_sql_server_type_reads_back_in_spark: {:?} (Spark start-up {:?})",
        started.elapsed(),
        spark().startup
    );
    assert_none("every_sql_server_type_reads_back_in_spark", &problems);
}

// ---- Spark -> Parquet and Delta -> SQL Server --------------------------------------------------

/// The columns Spark writes: name, Spark type, SQL Server target type.
const SPARK_COLUMNS: [(&str, &str, &str); 10] = [
    ("id", "int", "INT NOT NULL PRIMARY KEY"),
    ("instant", "timestamp", "DATETIMEOFFSET(7) NULL"),
    ("wall", "timestamp_ntz", "DATETIME2(7) NULL"),
    ("day", "date", "DATE NULL"),
    ("amount", "decimal(38,10)", "DECIMAL(38,10) NULL"),
    ("tiny", "tinyint", "TINYINT NULL"),
    ("small", "smallint", "SMALLINT NULL"),
    ("label_n", "string", "NVARCHAR(200) NULL"),
    ("label_v", "string", "VARCHAR(200) NULL"),
    ("payload", "binary", "VARBINARY(MAX) NULL"),
];

/// Rows Spark writes (worker encoding): the limits of each type that fit the target columns
/// (bytes 0..127: tinyint is 0..255), pre-Gregorian dates, non-ASCII text, a row of NULLs.
fn spark_rows() -> Vec<Vec<Option<String>>> {
    let text = |s: &str| Some(s.to_string());
    vec![
        vec![
            text("1"),
            text("0001-01-01T00:00:00.000000Z"),
            text("0001-01-01T00:00:00.000000"),
            text("0001-01-01"),
            text("-9999999999999999999999999999.9999999999"),
            text("0"),
            text("-32768"),
            text(""),
            text(""),
            text(""),
        ],
        vec![
            text("2"),
            text("9999-12-31T23:59:59.999999Z"),
            text("9999-12-31T23:59:59.999999"),
            text("9999-12-31"),
            text("9999999999999999999999999999.9999999999"),
            text("127"),
            text("32767"),
            Some("Ñandú 日本 🚀 ".repeat(10)),
            Some("café Ñ ".repeat(20)),
            Some("ff".repeat(1000)),
        ],
        vec![
            text("3"),
            text("2024-02-29T12:34:56.123456Z"),
            text("2024-02-29T12:34:56.123456"),
            text("2024-02-29"),
            text("0.0000000001"),
            text("7"),
            text("-1"),
            text("Ñandú 日本 🚀"),
            text("café"),
            text("cafebabe"),
        ],
        vec![
            text("4"),
            text("1582-10-04T23:59:59.999999Z"),
            text("1582-10-10T00:00:00.000001"),
            text("1582-10-10"),
            text("1.0000000000"),
            text("1"),
            text("1"),
            text("x"),
            text("x"),
            text("00"),
        ],
        std::iter::once(text("5"))
            .chain(std::iter::repeat_n(None, 9))
            .collect(),
    ]
}

/// How SQL Server shows a value Spark wrote (see `tds.rs`): TIMESTAMP as the UTC instant with
/// offset +00:00, TIMESTAMP_NTZ as datetime2(7), the rest as written.
fn in_sql_server(spark_type: &str, value: &str) -> String {
    match spark_type {
        "timestamp" => format!(
            "{}0 +00:00",
            value.trim_end_matches('Z').replacen('T', " ", 1)
        ),
        "timestamp_ntz" => format!("{}0", value.replacen('T', " ", 1)),
        _ => value.to_string(),
    }
}

/// Spark writes Parquet (its default INT96 timestamps, and TIMESTAMP_MICROS) and a Delta table;
/// `bridge run` loads each through a `parquet` or `delta` source into a `sqlserver` sink table;
/// the rows read back over TDS are exactly what Spark wrote.
#[test]
fn what_spark_writes_loads_into_sql_server() {
    let started = Instant::now();
    warm_up();
    let f = Fixture::new();
    let rows = spark_rows();
    let spark_dir = f.scratch.path("spark");
    let request = json!({
        "cmd": "write",
        "columns": SPARK_COLUMNS.iter().map(|(n, t, _)| json!({"name": n, "type": t})).collect::<Vec<_>>(),
        "rows": rows,
        "parquet": [
            {"path": spark_dir.join("int96"), "timestamp_type": null},
            {"path": spark_dir.join("micros"), "timestamp_type": "TIMESTAMP_MICROS"},
        ],
        "delta": spark_dir.join("delta"),
    });
    let write_started = Instant::now();
    let written = spark().call(request).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("spark write: {:?}", write_started.elapsed());
    // The harness writes what it says: INT96 in the default set, INT64 micros in the other.
    let physical = |set: &str| -> Vec<String> {
        written["parquet"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["path"].as_str().unwrap().contains(&format!("/{set}/")))
            .map(|p| p["columns"]["instant"]["physical"].as_str().unwrap().into())
            .collect()
    };
    assert_eq!(physical("int96"), ["INT96"], "{written}");
    assert_eq!(physical("micros"), ["INT64"], "{written}");

    let defs: Vec<String> = SPARK_COLUMNS
        .iter()
        .map(|(n, _, sql)| format!("{n} {sql}"))
        .collect();
    let names: Vec<&str> = SPARK_COLUMNS.iter().map(|(n, _, _)| *n).collect();
    let expected: Vec<Vec<Option<String>>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .zip(SPARK_COLUMNS)
                .map(|(v, (_, ty, _))| v.as_deref().map(|v| in_sql_server(ty, v)))
                .collect()
        })
        .collect();
    let mut problems = Vec::new();
    for (set, source) in [
        ("int96", "{type: parquet, path: spark/int96}"),
        ("micros", "{type: parquet, path: spark/micros}"),
        ("delta", "{type: delta, path: spark/delta}"),
    ] {
        let table = format!("dbo.from_spark_{set}");
        f.tsql(&format!("CREATE TABLE {table} ({})", defs.join(", ")));
        let pipeline = format!(
            "name: from_spark_{set}\nsteps:\n  - id: src\n    source: {source}\n  - id: out\n    sink: {{type: sqlserver, from: src, table: {table}, mode: insert}}\n"
        );
        let run_started = Instant::now();
        let o = f.run(&format!("from_spark_{set}"), &pipeline);
        eprintln!("bridge run {set}: {:?}", run_started.elapsed());
        // A failure, or any ERROR line (the sink's column query runs as on SQL Server).
        let run = run_problems(&format!("bridge run ({set})"), &o);
        let failed = !o.status.success();
        problems.extend(run);
        if failed {
            continue;
        }
        let got = f.rows(&format!(
            "SELECT {} FROM {table} ORDER BY id",
            names.join(", ")
        ));
        if got.len() != expected.len() {
            problems.push(format!(
                "{table}: {} rows, expected {}",
                got.len(),
                expected.len()
            ));
            continue;
        }
        for (got_row, want_row) in got.iter().zip(&expected) {
            let id = want_row[0].as_deref().unwrap_or("?");
            for ((name, (g, w)), (_, spark_type, _)) in names
                .iter()
                .zip(got_row.iter().zip(want_row))
                .zip(SPARK_COLUMNS)
            {
                if g != w {
                    problems.push(format!(
                        "{table} ({spark_type} from {set}): row {id}, column {name}: got {}, expected {}",
                        g.as_deref().map_or("NULL".into(), expect::show),
                        w.as_deref().map_or("NULL".into(), expect::show)
                    ));
                }
            }
        }
    }
    eprintln!(
        "what_spark_writes_loads_into_sql_server: {:?} (Spark start-up {:?})",
        started.elapsed(),
        spark().startup
    );
    assert_none("what_spark_writes_loads_into_sql_server", &problems);
}

// ---- Change tracking merged into Delta -> Spark ------------------------------------------------

/// A Delta table kept by change tracking and `mode: merge` with soft deletes, after a snapshot
/// and a run of changes: Spark (the table's data files) and the `deltalake` package read the
/// table's columns without the change columns, each key once, the deleted key flagged.
#[test]
fn a_change_tracked_merge_reads_back_in_spark() {
    warm_up();
    let f = Fixture::new();
    f.tsql(
        "CREATE TABLE dbo.ct_items (id INT NOT NULL PRIMARY KEY, name NVARCHAR(20) NULL, qty INT NULL);
         INSERT INTO dbo.ct_items VALUES (1, N'a', 10), (2, N'b', 20), (3, N'c', 30);
         ALTER DATABASE bridge SET ALLOW_SNAPSHOT_ISOLATION ON;
         ALTER DATABASE bridge SET CHANGE_TRACKING = ON;
         ALTER TABLE dbo.ct_items ENABLE CHANGE_TRACKING;",
    );
    let pipeline = "name: ct
steps:
  - id: t
    source: {type: sqlserver, table: dbo.ct_items, incremental: {mode: change_tracking}}
  - id: lake
    sink: {type: delta, from: t, path: lake/ct, mode: merge, keys: [id], deletes: soft}
";
    let mut problems = run_problems("first run", &f.run("ct", pipeline));
    f.tsql(
        "UPDATE dbo.ct_items SET qty = 11 WHERE id = 1;
         DELETE FROM dbo.ct_items WHERE id = 2;
         INSERT INTO dbo.ct_items VALUES (4, N'd', NULL);",
    );
    problems.extend(run_problems("second run", &f.run("ct", pipeline)));
    // id|name|qty|deleted: the deleted key keeps its last values.
    let want = [
        "1|a|11|false",
        "2|b|20|true",
        "3|c|30|false",
        "4|d|NULL|false",
    ];
    let lake = f.scratch.path("lake/ct");
    for cmd in ["read_delta_files", "read_delta"] {
        let Some((table, _)) = read(cmd, &lake, &mut problems) else {
            continue;
        };
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        if names != ["id", "name", "qty", "_deleted_at"] {
            problems.push(format!("{cmd}: columns are {names:?}"));
            continue;
        }
        let text = |v: &Value| match v {
            Value::Null => "NULL".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut got: Vec<String> = table
            .rows
            .iter()
            .map(|r| {
                format!(
                    "{}|{}|{}|{}",
                    text(&r[0]),
                    text(&r[1]),
                    text(&r[2]),
                    !r[3].is_null()
                )
            })
            .collect();
        got.sort();
        if got != want {
            problems.push(format!("{cmd}: rows {got:?}, expected {want:?}"));
        }
    }
    assert_none("a_change_tracked_merge_reads_back_in_spark", &problems);
}
