//! Databricks types through the `databricks` source, against the project's Databricks HTTP
//! double (which answers as the Statement Execution API does): a table of every type the bridge
//! reads, at its range limits and with NULLs, lands in a volume folder as Parquet with the
//! policy's engine types, value for value, by Arrow chunks and by inline JSON alike; intervals,
//! nested types and VOID are refused when the source opens, naming each column and what to
//! select instead, before anything is written.

mod common;

use common::*;
use databricks_double::{DatabricksDouble, DoubleConfig};
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::{Decimal128Type, Int8Type, TimestampMicrosecondType};

const TOKEN: &str = "dapi-test-token";

/// A double on its own runtime (alive while the binary runs) and a scratch project.
struct Fixture {
    _rt: tokio::runtime::Runtime,
    double: DatabricksDouble,
    scratch: Scratch,
}

impl Fixture {
    fn new() -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // Two rows per chunk: the three rows span two chunks (row numbers cross chunks).
        let double = rt
            .block_on(DatabricksDouble::start(DoubleConfig {
                chunk_rows: 2,
                ..Default::default()
            }))
            .unwrap();
        let scratch = Scratch::empty();
        scratch.write("config/defaults.yaml", "params: {}\n");
        Fixture {
            _rt: rt,
            double,
            scratch,
        }
    }

    fn bridge(&self, args: &[&str]) -> std::process::Output {
        let env = vec![
            ("DATABRICKS_HOST", self.double.base_url()),
            ("DATABRICKS_TOKEN", TOKEN.to_string()),
            ("DATABRICKS_WAREHOUSE_ID", "wh-test".to_string()),
            ("HOME", self.scratch.root().display().to_string()),
        ];
        self.scratch.bridge_env(args, &env)
    }

    /// A pipeline `pipelines/{name}.yaml`: `sql` from Databricks into the volume folder
    /// `out/{name}`, fetched with `disposition`.
    fn pipeline(&self, name: &str, disposition: &str, sql: &str) {
        self.scratch.write(
            &format!("pipelines/{name}.yaml"),
            &format!(
                "name: {name}
steps:
  - id: rows
    source:
      type: databricks
      disposition: {disposition}
      sql: |
        {sql}
  - id: out
    sink:
      type: volume
      from: rows
      destination: out
      path: {name}
"
            ),
        );
    }

    fn parquet(&self, name: &str) -> Vec<RecordBatch> {
        read_parquet(&part(
            &self.scratch.path(&format!("out/{name}")),
            "out-00000.parquet",
        ))
    }
}

/// Every type the bridge reads, at its limits: row 1 the minimums, row 2 the maximums
/// (non-ASCII text, empty binary), row 3 NULL everywhere.
fn seed_all_types(f: &Fixture) {
    f.double
        .execute_sql(
            "CREATE TABLE main.s.all_types (id INT, b BOOLEAN, t TINYINT, sm SMALLINT, i INT, l BIGINT, \
             f FLOAT, d DOUBLE, dec DECIMAL(38,18), s STRING, bin BINARY, dt DATE, ts TIMESTAMP, \
             ntz TIMESTAMP_NTZ, v VARIANT)",
        )
        .unwrap();
    f.double
        .execute_sql(
            "INSERT INTO main.s.all_types VALUES \
             (1, true, -128, -32768, -2147483648, -9223372036854775808, -3.5, -1e300, \
              '-99999999999999999999.999999999999999999', 'Grüße, 東京 ✓', X'00FF10', '0001-01-01', \
              '0001-01-01T00:00:00Z', '0001-01-01T00:00:00', parse_json('{\"k\": [1, \"ü\"]}')), \
             (2, false, 127, 32767, 2147483647, 9223372036854775807, 0.1, 1.7976931348623157e308, \
              '99999999999999999999.999999999999999999', '', X'', '9999-12-31', \
              '9999-12-31T23:59:59.999999Z', '9999-12-31T23:59:59.999999', parse_json('null')), \
             (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        )
        .unwrap();
}

const SELECT_ALL: &str = "SELECT * FROM main.s.all_types ORDER BY id";

fn field_types(batches: &[RecordBatch]) -> Vec<String> {
    batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect()
}

#[test]
fn every_databricks_type_lands_in_parquet_value_for_value() {
    let f = Fixture::new();
    seed_all_types(&f);
    f.pipeline("by_arrow", "external_links", SELECT_ALL);
    f.pipeline("by_json", "inline", SELECT_ALL);
    ok(f.bridge(&["run", "pipelines/by_arrow.yaml"]));
    ok(f.bridge(&["run", "pipelines/by_json.yaml"]));

    let arrow = f.parquet("by_arrow");
    let json = f.parquet("by_json");
    assert_eq!(
        field_types(&arrow),
        [
            "id:Int32",
            "b:Boolean",
            "t:Int8",
            "sm:Int16",
            "i:Int32",
            "l:Int64",
            "f:Float32",
            "d:Float64",
            "dec:Decimal128(38, 18)",
            "s:Utf8",
            "bin:Binary",
            "dt:Date32",
            "ts:Timestamp(µs, \"UTC\")",
            "ntz:Timestamp(µs)",
            "v:Utf8",
        ]
    );
    assert_eq!(field_types(&json), field_types(&arrow));

    let lines = batch_lines(&arrow);
    assert_eq!(
        lines,
        [
            "1|true|-128|-32768|-2147483648|-9223372036854775808|-3.5|-1e300|\
             -99999999999999999999.999999999999999999|Grüße, 東京 ✓|00ff10|0001-01-01|\
             0001-01-01T00:00:00Z|0001-01-01T00:00:00|{\"k\":[1,\"ü\"]}",
            "2|false|127|32767|2147483647|9223372036854775807|0.1|1.7976931348623157e308|\
             99999999999999999999.999999999999999999|||9999-12-31|\
             9999-12-31T23:59:59.999999Z|9999-12-31T23:59:59.999999|null",
            "3|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL",
        ]
    );
    assert_eq!(batch_lines(&json), lines);

    // The limits as numbers, not only as text.
    let rows: Vec<&RecordBatch> = arrow.iter().collect();
    let column = |i: usize| {
        rows.iter()
            .flat_map(|b| (0..b.num_rows()).map(move |r| (b.column(i).clone(), r)))
            .collect::<Vec<_>>()
    };
    let tiny: Vec<Option<i8>> = column(2)
        .iter()
        .map(|(a, r)| {
            let a = a.as_primitive::<Int8Type>();
            (!a.is_null(*r)).then(|| a.value(*r))
        })
        .collect();
    assert_eq!(tiny, [Some(-128), Some(127), None]);
    let max = 10i128.pow(38) - 1;
    let dec: Vec<Option<i128>> = column(8)
        .iter()
        .map(|(a, r)| {
            let a = a.as_primitive::<Decimal128Type>();
            (!a.is_null(*r)).then(|| a.value(*r))
        })
        .collect();
    assert_eq!(dec, [Some(-max), Some(max), None]);
    for i in [12, 13] {
        let ts: Vec<Option<i64>> = column(i)
            .iter()
            .map(|(a, r)| {
                let a = a.as_primitive::<TimestampMicrosecondType>();
                (!a.is_null(*r)).then(|| a.value(*r))
            })
            .collect();
        assert_eq!(
            ts,
            [
                Some(-62_135_596_800_000_000),
                Some(253_402_300_799_999_999),
                None
            ],
            "column {i}"
        );
    }
    let bin = column(10);
    let (a, r) = &bin[1];
    assert!(!a.is_null(*r), "empty binary is not NULL");
    assert_eq!(a.as_binary::<i32>().value(*r), b"");
    let s = column(9);
    let (a, r) = &s[1];
    assert!(!a.is_null(*r), "empty string is not NULL");
}

#[test]
fn intervals_nested_types_and_void_are_refused_naming_column_and_cast() {
    let f = Fixture::new();
    f.double
        .execute_sql(
            "CREATE TABLE main.s.odd (id BIGINT, tags ARRAY<STRING>, wait INTERVAL DAY TO SECOND, span INTERVAL YEAR TO MONTH)",
        )
        .unwrap();
    f.double
        .execute_sql(
            "INSERT INTO main.s.odd VALUES (1, array('a', 'b'), 273600000000, 14), (2, NULL, NULL, NULL)",
        )
        .unwrap();
    for disposition in ["external_links", "inline"] {
        f.pipeline(
            "odd",
            disposition,
            "SELECT id, tags, wait, span, NULL AS no_value FROM main.s.odd ORDER BY id",
        );
        let out = f.bridge(&["run", "pipelines/odd.yaml"]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        for expected in [
            "step `rows` failed: the result has columns the bridge cannot read as they are:",
            "`tags` is ARRAY<STRING> (a nested type; the bridge writes flat columns), select `to_json(tags)` instead",
            "`wait` is INTERVAL DAY TO SECOND (an interval, which Parquet files for Databricks and SQL Server tables cannot hold), select `CAST(wait AS STRING)` instead",
            "`span` is INTERVAL YEAR TO MONTH",
            "select `CAST(span AS STRING)` instead",
            "`no_value` is VOID (the NULL type",
            "select `CAST(no_value AS STRING)` instead",
            "no rows were read and nothing was written",
        ] {
            assert!(
                err.contains(expected),
                "{disposition}: missing {expected:?} in\n{err}"
            );
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !f.scratch.path("out").exists(),
            "{disposition}: nothing written"
        );
    }

    // As the message says: the same columns, selected as text, are read.
    f.pipeline(
        "odd",
        "external_links",
        "SELECT id, to_json(tags) AS tags, CAST(wait AS STRING) AS wait, CAST(span AS STRING) AS span FROM main.s.odd ORDER BY id",
    );
    ok(f.bridge(&["run", "pipelines/odd.yaml"]));
    let batches = f.parquet("odd");
    assert_eq!(
        field_types(&batches),
        ["id:Int64", "tags:Utf8", "wait:Utf8", "span:Utf8"]
    );
    let lines = batch_lines(&batches);
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("1|[\"a\",\"b\"]|"), "{lines:?}");
    assert_eq!(lines[1], "2|NULL|NULL|NULL");
}
