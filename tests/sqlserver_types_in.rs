//! What Spark writes, loaded through the `sqlserver` sink by the real `bridge` binary against the
//! TDS test server, and read back over TDS value for value: Parquet files with Spark's Arrow
//! types (`timestamp`, `timestamp_ntz`, `date`, `decimal(p,s)`, `byte`/`short`, `binary`,
//! non-ASCII `string`, NULLs), Spark's physical layout with INT96 timestamps at 0001-01-01 and
//! 9999-12-31, and a Delta table over such a file. Values out of a column's range are refused
//! before the table changes, naming step, column, row and value.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use deltalake::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray,
    Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray, UInt8Array,
};
use deltalake::arrow::datatypes::{Field, Schema};
use tds_test_server::{TdsServer, TdsServerConfig};
use tiberius::ColumnData;

/// Microseconds from 1970-01-01 to 0001-01-01 00:00:00.
const MICROS_0001: i64 = -62_135_596_800_000_000;
/// Microseconds from 1970-01-01 to 9999-12-31 23:59:59.999999.
const MICROS_9999: i64 = 253_402_300_799_999_999;
/// Days from 1970-01-01 to 0001-01-01 and to 9999-12-31.
const DAYS_0001: i32 = -719_162;
const DAYS_9999: i32 = 2_932_896;
/// 2024-02-29 12:34:56.789012 UTC.
const MICROS_2024: i64 = 1_709_210_096_789_012;
/// 2024-02-29.
const DAYS_2024: i32 = 19_782;

/// A TDS test server (kept alive by its runtime while the binary runs) and a scratch project.
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

    /// Runs T-SQL through the bridge's own connection code.
    fn tsql(&self, sql: &str) {
        self.rt.block_on(common::tds::tsql(&self.server, sql));
    }

    /// The rows of a query, read back over TDS, as `a|b|c` lines ([`render`]).
    fn tds_rows(&self, sql: &str) -> Vec<String> {
        self.rt.block_on(async {
            let mut client = bridge::mssql::connect(&tds_settings(self.server.addr().port()))
                .await
                .unwrap();
            let rows = client
                .simple_query(sql)
                .await
                .unwrap()
                .into_first_result()
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.iter()
                .map(|r| {
                    r.cells()
                        .map(|(_, v)| render(v))
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect()
        })
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

    /// Runs a pipeline that must succeed without an ERROR log line (the sink's extended column
    /// query runs against the test server as against SQL Server); returns the sink step's
    /// output line.
    fn run_ok(&self, pipeline: &str) -> String {
        let o = self.run(pipeline);
        let err = stderr(&o);
        let errors: Vec<&str> = err.lines().filter(|l| l.contains("ERROR")).collect();
        assert!(
            errors.is_empty(),
            "ERROR lines on stderr:\n{}",
            errors.join("\n")
        );
        let out = ok(o);
        let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
        let step = summary["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "out")
            .cloned()
            .expect("a step `out`");
        step["outputs"][0].as_str().unwrap_or_default().to_string()
    }

    /// Runs a pipeline that must fail with exit code 1; returns the error paragraph.
    fn run_fails(&self, pipeline: &str) -> String {
        let o = self.run(pipeline);
        let err = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(1),
            "stdout:\n{}\nstderr:\n{err}",
            stdout(&o)
        );
        err.lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no error line in: {err}"))
            .to_string()
    }
}

/// A value read back over TDS: numbers as SQL Server prints them, dates `YYYY-MM-DD`,
/// date-times `YYYY-MM-DD HH:MM:SS.fffffff` (7 digits whatever the column's scale; offsets as
/// ` +HH:MM` after the UTC time), binary as `0x…`, NULL as `NULL`.
fn render(value: &ColumnData<'_>) -> String {
    use chrono::NaiveDate;
    let date = |days_from_0001: u32| {
        NaiveDate::from_num_days_from_ce_opt(days_from_0001 as i32 + 1)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string()
    };
    let time = |t: tiberius::time::Time| {
        let ticks = t.increments() * 10u64.pow(7 - u32::from(t.scale()));
        let secs = ticks / 10_000_000;
        format!(
            "{:02}:{:02}:{:02}.{:07}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            ticks % 10_000_000
        )
    };
    let text = match value {
        ColumnData::U8(v) => v.map(|v| v.to_string()),
        ColumnData::I16(v) => v.map(|v| v.to_string()),
        ColumnData::I32(v) => v.map(|v| v.to_string()),
        ColumnData::I64(v) => v.map(|v| v.to_string()),
        ColumnData::F32(v) => v.map(|v| v.to_string()),
        ColumnData::F64(v) => v.map(|v| v.to_string()),
        ColumnData::Bit(v) => v.map(|v| v.to_string()),
        ColumnData::Guid(v) => v.map(|v| v.to_string()),
        ColumnData::Numeric(v) => v.map(|n| {
            let digits = format!(
                "{:0>width$}",
                n.value().unsigned_abs(),
                width = usize::from(n.scale()) + 1
            );
            let (int, frac) = digits.split_at(digits.len() - usize::from(n.scale()));
            let sign = if n.value() < 0 { "-" } else { "" };
            if frac.is_empty() {
                format!("{sign}{int}")
            } else {
                format!("{sign}{int}.{frac}")
            }
        }),
        ColumnData::String(v) => v.as_ref().map(std::string::ToString::to_string),
        ColumnData::Binary(v) => v.as_ref().map(|b| format!("0x{}", hex::encode_upper(b))),
        ColumnData::Date(v) => v.map(|d| date(d.days())),
        ColumnData::DateTime2(v) => {
            v.map(|dt| format!("{} {}", date(dt.date().days()), time(dt.time())))
        }
        ColumnData::DateTimeOffset(v) => v.map(|dto| {
            let dt = dto.datetime2();
            let off = dto.offset();
            format!(
                "{} {} {}{:02}:{:02}",
                date(dt.date().days()),
                time(dt.time()),
                if off < 0 { "-" } else { "+" },
                off.abs() / 60,
                off.abs() % 60
            )
        }),
        other => panic!("unexpected value {other:?}"),
    };
    text.unwrap_or_else(|| "NULL".to_string())
}

/// Writes one Parquet file of `batches` with arrow-rs (as a Spark DataFrame's Arrow types come
/// out), `rows_per_group` rows per row group (each one its own batch when read).
fn write_parquet(path: &Path, batches: &[RecordBatch], rows_per_group: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), Some(props)).unwrap();
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), *name != "id"))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

fn utc(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

fn decimal(values: Vec<Option<i128>>, p: u8, s: i8) -> ArrayRef {
    Arc::new(
        Decimal128Array::from(values)
            .with_precision_and_scale(p, s)
            .unwrap(),
    )
}

/// A pipeline: `source` → `sql` (a transform over `src`) → sqlserver sink `out` with `sink`.
fn pipeline(source: &str, sql: &str, sink: &str) -> String {
    format!(
        "name: t
steps:
  - id: src
    source: {source}
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

const PARQUET: &str = "{type: parquet, path: data/spark.parquet}";

/// Spark's types at their limits, ordinary values and NULLs.
fn spark_rows() -> RecordBatch {
    let bin: Vec<Option<&[u8]>> = vec![
        Some(b""),
        Some(&[0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]),
        Some(b"bridge"),
        None,
    ];
    batch(vec![
        ("id", Arc::new(Int32Array::from(vec![1, 2, 3, 4]))),
        (
            "ts",
            utc(vec![
                Some(MICROS_0001),
                Some(MICROS_9999),
                Some(MICROS_2024),
                None,
            ]),
        ),
        (
            "ntz",
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(MICROS_0001),
                Some(MICROS_9999),
                Some(MICROS_2024),
                None,
            ])),
        ),
        (
            "day",
            Arc::new(Date32Array::from(vec![
                Some(DAYS_0001),
                Some(DAYS_9999),
                Some(DAYS_2024),
                None,
            ])),
        ),
        (
            "amount",
            decimal(
                vec![
                    Some(-999_999_999_999_999_999),
                    Some(999_999_999_999_999_999),
                    Some(12_345),
                    None,
                ],
                18,
                4,
            ),
        ),
        (
            "price",
            decimal(vec![Some(-150_000), Some(99_999_900), Some(0), None], 10, 4),
        ),
        (
            "b",
            Arc::new(Int8Array::from(vec![Some(0), Some(127), Some(7), None])),
        ),
        (
            "b2",
            Arc::new(Int8Array::from(vec![Some(-128), Some(127), Some(-7), None])),
        ),
        (
            "s",
            Arc::new(Int16Array::from(vec![Some(0), Some(255), Some(42), None])),
        ),
        (
            "s2",
            Arc::new(Int16Array::from(vec![
                Some(i16::MIN),
                Some(i16::MAX),
                Some(-42),
                None,
            ])),
        ),
        ("bin", Arc::new(BinaryArray::from(bin))),
        (
            "name",
            Arc::new(StringArray::from(vec![
                Some("São Paulo"),
                Some("東京 😀"),
                Some(""),
                None,
            ])),
        ),
        (
            "latin",
            Arc::new(StringArray::from(vec![
                Some("São Paulo"),
                Some("Zürich €"),
                Some(""),
                None,
            ])),
        ),
    ])
}

const SPARK_TABLE: &str = "(id INT NOT NULL PRIMARY KEY, ts_utc DATETIMEOFFSET(7) NULL,
    ts_wall DATETIME2(7) NULL, ntz DATETIME2(6) NULL, ntz_utc DATETIMEOFFSET(7) NULL,
    day DATE NULL, day_wall DATETIME2 NULL, amount DECIMAL(18,4) NULL, wider DECIMAL(24,6) NULL,
    price DECIMAL(8,2) NULL, b TINYINT NULL, b2 SMALLINT NULL, s TINYINT NULL, s2 SMALLINT NULL,
    bin VARBINARY(16) NULL, bin_large VARBINARY(16) NULL, bin_plain VARBINARY(MAX) NULL,
    name NVARCHAR(50) NULL, name_large NVARCHAR(50) NULL, latin VARCHAR(50) NULL,
    latin_plain VARCHAR(50) NULL)";

/// Every target column from the Spark columns; arrow_cast covers every Arrow string and binary
/// type (DataFusion reads Parquet strings as Utf8View and binary as BinaryView).
const SPARK_SELECT: &str = "SELECT id, ts AS ts_utc, ts AS ts_wall, ntz, ntz AS ntz_utc, day, \
    day AS day_wall, amount, amount AS wider, price, b, b2, s, s2, bin, \
    arrow_cast(bin, 'LargeBinary') AS bin_large, arrow_cast(bin, 'Binary') AS bin_plain, name, \
    arrow_cast(name, 'LargeUtf8') AS name_large, latin, arrow_cast(latin, 'Utf8') AS latin_plain \
    FROM src";

const SPARK_COLUMNS: &str = "id, ts_utc, ts_wall, ntz, ntz_utc, day, day_wall, amount, wider, \
    price, b, b2, s, s2, bin, bin_large, bin_plain, name, name_large, latin, latin_plain";

fn spark_expected() -> Vec<String> {
    let rows = [
        [
            "1",
            "0001-01-01 00:00:00.0000000 +00:00",
            "0001-01-01 00:00:00.0000000",
            "0001-01-01 00:00:00.0000000",
            "0001-01-01 00:00:00.0000000 +00:00",
            "0001-01-01",
            "0001-01-01 00:00:00.0000000",
            "-99999999999999.9999",
            "-99999999999999.999900",
            "-15.00",
            "0",
            "-128",
            "0",
            "-32768",
            "0x",
            "0x",
            "0x",
            "São Paulo",
            "São Paulo",
            "São Paulo",
            "São Paulo",
        ],
        [
            "2",
            "9999-12-31 23:59:59.9999990 +00:00",
            "9999-12-31 23:59:59.9999990",
            "9999-12-31 23:59:59.9999990",
            "9999-12-31 23:59:59.9999990 +00:00",
            "9999-12-31",
            "9999-12-31 00:00:00.0000000",
            "99999999999999.9999",
            "99999999999999.999900",
            "9999.99",
            "127",
            "127",
            "255",
            "32767",
            "0x00017F80FEFF",
            "0x00017F80FEFF",
            "0x00017F80FEFF",
            "東京 😀",
            "東京 😀",
            "Zürich €",
            "Zürich €",
        ],
        [
            "3",
            "2024-02-29 12:34:56.7890120 +00:00",
            "2024-02-29 12:34:56.7890120",
            "2024-02-29 12:34:56.7890120",
            "2024-02-29 12:34:56.7890120 +00:00",
            "2024-02-29",
            "2024-02-29 00:00:00.0000000",
            "1.2345",
            "1.234500",
            "0.00",
            "7",
            "-7",
            "42",
            "-42",
            "0x627269646765",
            "0x627269646765",
            "0x627269646765",
            "",
            "",
            "",
            "",
        ],
    ];
    let mut lines: Vec<String> = rows.iter().map(|r| r.join("|")).collect();
    lines.push(format!("4{}", "|NULL".repeat(20)));
    lines
}

#[test]
fn spark_types_load_value_for_value_directly_and_through_staging() {
    let f = Fixture::new();
    write_parquet(&f.scratch.path("data/spark.parquet"), &[spark_rows()], 1024);

    // Every column written, nvarchar(50): a direct bulk load into the table.
    f.tsql(&format!("CREATE TABLE dbo.Direct {SPARK_TABLE}"));
    let out = f.run_ok(&pipeline(
        PARQUET,
        SPARK_SELECT,
        "      table: dbo.Direct\n      mode: insert\n",
    ));
    assert_eq!(out, "dbo.Direct (insert: 4 rows)");
    assert_eq!(
        f.tds_rows(&format!(
            "SELECT {SPARK_COLUMNS} FROM dbo.Direct ORDER BY id"
        )),
        spark_expected()
    );

    // upsert goes through a staging table of the target's column types.
    f.tsql(&format!("CREATE TABLE dbo.Staged {SPARK_TABLE}"));
    let out = f.run_ok(&pipeline(
        PARQUET,
        SPARK_SELECT,
        "      table: dbo.Staged\n      mode: upsert\n      primary_keys: [id]\n",
    ));
    assert_eq!(out, "dbo.Staged (upsert: 4 rows: 0 updated, 4 inserted)");
    assert_eq!(
        f.tds_rows(&format!(
            "SELECT {SPARK_COLUMNS} FROM dbo.Staged ORDER BY id"
        )),
        spark_expected()
    );
}

/// The `parquet` crate's low-level writer, laying out columns as Spark does with its defaults:
/// `timestamp` as INT96, `timestamp_ntz` as INT64 TIMESTAMP(MICROS,false), `date` as INT32 DATE,
/// `decimal(18,4)` as INT64 DECIMAL, `byte`/`short` as INT32 INT(8/16), `binary` and `string`
/// as BYTE_ARRAY. Rows: (id, ts µs, ntz µs, day, amount unscaled, byte, short, binary, string).
type SparkRow = (
    i32,
    Option<i64>,
    Option<i64>,
    Option<i32>,
    Option<i64>,
    Option<i32>,
    Option<i32>,
    Option<&'static [u8]>,
    Option<&'static str>,
);

fn write_spark_layout(path: &Path, rows: &[SparkRow]) {
    use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type, Int96, Int96Type};
    use parquet::file::writer::SerializedFileWriter;

    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = parquet::schema::parser::parse_message_type(
        "message spark_schema {
            required int32 id;
            optional int96 ts;
            optional int64 ntz (TIMESTAMP(MICROS,false));
            optional int32 day (DATE);
            optional int64 amount (DECIMAL(18,4));
            optional int32 b (INTEGER(8,true));
            optional int32 s (INTEGER(16,true));
            optional binary bin;
            optional binary name (STRING);
        }",
    )
    .unwrap();
    let props = Arc::new(parquet::file::properties::WriterProperties::builder().build());
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    fn levels<T: Clone>(values: impl Iterator<Item = Option<T>>) -> (Vec<T>, Vec<i16>) {
        let mut out = Vec::new();
        let mut defs = Vec::new();
        for v in values {
            defs.push(i16::from(v.is_some()));
            out.extend(v);
        }
        (out, defs)
    }
    let int96 = |micros: i64| {
        // Julian day and nanoseconds of the day, as Spark writes them.
        let mut v = Int96::new();
        let days = micros.div_euclid(86_400_000_000);
        let nanos = micros.rem_euclid(86_400_000_000) * 1_000;
        v.set_data(
            nanos as u32,
            (nanos >> 32) as u32,
            (days + 2_440_588) as u32,
        );
        v
    };
    let mut index = 0;
    while let Some(mut column) = group.next_column().unwrap() {
        match index {
            0 => {
                let ids: Vec<i32> = rows.iter().map(|r| r.0).collect();
                column
                    .typed::<Int32Type>()
                    .write_batch(&ids, None, None)
                    .unwrap();
            }
            1 => {
                let (v, d) = levels(rows.iter().map(|r| r.1.map(int96)));
                column
                    .typed::<Int96Type>()
                    .write_batch(&v, Some(&d), None)
                    .unwrap();
            }
            2 | 4 => {
                let (v, d) = levels(rows.iter().map(|r| if index == 2 { r.2 } else { r.4 }));
                column
                    .typed::<Int64Type>()
                    .write_batch(&v, Some(&d), None)
                    .unwrap();
            }
            3 | 5 | 6 => {
                let (v, d) = levels(rows.iter().map(|r| match index {
                    3 => r.3,
                    5 => r.5,
                    _ => r.6,
                }));
                column
                    .typed::<Int32Type>()
                    .write_batch(&v, Some(&d), None)
                    .unwrap();
            }
            _ => {
                let (v, d) = levels(rows.iter().map(|r| {
                    if index == 7 {
                        r.7.map(ByteArray::from)
                    } else {
                        r.8.map(|s| ByteArray::from(s.as_bytes()))
                    }
                }));
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&v, Some(&d), None)
                    .unwrap();
            }
        }
        column.close().unwrap();
        index += 1;
    }
    group.close().unwrap();
    writer.close().unwrap();
}

/// Spark-layout rows at the limits of every type, an ordinary one and NULLs.
const SPARK_LAYOUT_ROWS: [SparkRow; 4] = [
    (
        1,
        Some(MICROS_0001),
        Some(MICROS_0001),
        Some(DAYS_0001),
        Some(-999_999_999_999_999_999),
        Some(-128),
        Some(0),
        Some(b""),
        Some("Zürich"),
    ),
    (
        2,
        Some(MICROS_9999),
        Some(MICROS_9999),
        Some(DAYS_9999),
        Some(999_999_999_999_999_999),
        Some(127),
        Some(255),
        Some(&[0xFF, 0x00]),
        Some("東京 😀"),
    ),
    (
        3,
        Some(MICROS_2024),
        Some(MICROS_2024),
        Some(DAYS_2024),
        Some(12_345),
        Some(7),
        Some(42),
        Some(b"x"),
        Some("São Paulo"),
    ),
    (4, None, None, None, None, None, None, None, None),
];

const LAYOUT_TABLE: &str = "(id INT NOT NULL PRIMARY KEY, ts DATETIMEOFFSET(7) NULL,
    ts_wall DATETIME2(7) NULL, ntz DATETIME2(7) NULL, day DATE NULL, amount DECIMAL(18,4) NULL,
    b SMALLINT NULL, s TINYINT NULL, bin VARBINARY(8) NULL, name NVARCHAR(20) NULL)";

const LAYOUT_SELECT: &str =
    "SELECT id, ts, ts AS ts_wall, ntz, day, amount, b, s, bin, name FROM src";

fn layout_expected() -> Vec<String> {
    vec![
        "1|0001-01-01 00:00:00.0000000 +00:00|0001-01-01 00:00:00.0000000|0001-01-01 00:00:00.0000000|0001-01-01|-99999999999999.9999|-128|0|0x|Zürich".to_string(),
        "2|9999-12-31 23:59:59.9999990 +00:00|9999-12-31 23:59:59.9999990|9999-12-31 23:59:59.9999990|9999-12-31|99999999999999.9999|127|255|0xFF00|東京 😀".to_string(),
        "3|2024-02-29 12:34:56.7890120 +00:00|2024-02-29 12:34:56.7890120|2024-02-29 12:34:56.7890120|2024-02-29|1.2345|7|42|0x78|São Paulo".to_string(),
        "4|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL".to_string(),
    ]
}

#[test]
fn int96_timestamps_load_exactly_at_0001_and_9999() {
    let f = Fixture::new();
    write_spark_layout(&f.scratch.path("data/spark.parquet"), &SPARK_LAYOUT_ROWS);
    f.tsql(&format!("CREATE TABLE dbo.Layout {LAYOUT_TABLE}"));
    let out = f.run_ok(&pipeline(
        PARQUET,
        LAYOUT_SELECT,
        "      table: dbo.Layout\n      mode: insert\n",
    ));
    assert_eq!(out, "dbo.Layout (insert: 4 rows)");
    assert_eq!(
        f.tds_rows(
            "SELECT id, ts, ts_wall, ntz, day, amount, b, s, bin, name FROM dbo.Layout ORDER BY id"
        ),
        layout_expected()
    );
}

#[test]
fn a_delta_table_spark_wrote_loads_value_for_value() {
    let f = Fixture::new();
    let table = f.scratch.path("data/spark_delta");
    let file = "part-00000-6f1a0e1c-0000-4000-8000-000000000000-c000.snappy.parquet";
    write_spark_layout(&table.join(file), &SPARK_LAYOUT_ROWS);
    let size = std::fs::metadata(table.join(file)).unwrap().len();
    // The log Spark writes for such a table: timestamp_ntz needs table features (reader 3,
    // writer 7).
    let field = |name: &str, ty: &str, nullable: bool| serde_json::json!({"name": name, "type": ty, "nullable": nullable, "metadata": {}});
    let schema = serde_json::json!({"type": "struct", "fields": [
        field("id", "integer", false),
        field("ts", "timestamp", true),
        field("ntz", "timestamp_ntz", true),
        field("day", "date", true),
        field("amount", "decimal(18,4)", true),
        field("b", "byte", true),
        field("s", "short", true),
        field("bin", "binary", true),
        field("name", "string", true),
    ]});
    let log = [
        serde_json::json!({"commitInfo": {"timestamp": 1_709_210_096_000i64, "operation": "WRITE",
            "operationParameters": {"mode": "ErrorIfExists", "partitionBy": "[]"},
            "isBlindAppend": true, "engineInfo": "Apache-Spark/3.5.1 Delta-Lake/3.1.0"}}),
        serde_json::json!({"protocol": {"minReaderVersion": 3, "minWriterVersion": 7,
            "readerFeatures": ["timestampNtz"], "writerFeatures": ["timestampNtz"]}}),
        serde_json::json!({"metaData": {"id": "6f1a0e1c-0000-4000-8000-000000000001",
            "format": {"provider": "parquet", "options": {}},
            "schemaString": schema.to_string(), "partitionColumns": [], "configuration": {},
            "createdTime": 1_709_210_096_000i64}}),
        serde_json::json!({"add": {"path": file, "partitionValues": {}, "size": size,
            "modificationTime": 1_709_210_096_000i64, "dataChange": true}}),
    ];
    let text: String = log.iter().map(|l| format!("{l}\n")).collect();
    f.scratch.write(
        "data/spark_delta/_delta_log/00000000000000000000.json",
        &text,
    );
    f.tsql(&format!("CREATE TABLE dbo.FromDelta {LAYOUT_TABLE}"));
    let out = f.run_ok(&pipeline(
        "{type: delta, path: data/spark_delta}",
        LAYOUT_SELECT,
        "      table: dbo.FromDelta\n      mode: insert\n",
    ));
    assert_eq!(out, "dbo.FromDelta (insert: 4 rows)");
    assert_eq!(
        f.tds_rows("SELECT id, ts, ts_wall, ntz, day, amount, b, s, bin, name FROM dbo.FromDelta ORDER BY id"),
        layout_expected()
    );
}

/// A table with two rows every refusal test must leave as they are.
const REFUSAL_TABLE: &str = "CREATE TABLE dbo.Kept (id INT NOT NULL PRIMARY KEY,
    tiny TINYINT NULL, day DATE NULL, at DATETIME2(7) NULL, amount DECIMAL(5,2) NULL,
    latin VARCHAR(20) NULL, r REAL NULL)";
const REFUSAL_SEED: &str = "INSERT INTO dbo.Kept (id, tiny, day, at, amount, latin) VALUES
    (1, 1, '2024-01-01', '2024-01-01 00:00:00.0000000', 1.50, 'one'),
    (2, 2, '2024-01-02', '2024-01-02 00:00:00.0000000', 2.50, 'two')";
const KEPT: [&str; 2] = [
    "1|1|2024-01-01|2024-01-01 00:00:00.0000000|1.50|one",
    "2|2|2024-01-02|2024-01-02 00:00:00.0000000|2.50|two",
];

/// Loads `column` (one Arrow array of 4 rows, ids 10..13) into `dbo.Kept.<target>`, expecting a
/// refusal; returns the error paragraph after checking the table did not change. Row groups of
/// `rows_per_group` rows make that many rows per input batch.
fn refused(target: &str, column: ArrayRef, rows_per_group: usize) -> String {
    let f = Fixture::new();
    f.tsql(REFUSAL_TABLE);
    f.tsql(REFUSAL_SEED);
    let rows = batch(vec![
        ("id", Arc::new(Int32Array::from(vec![10, 11, 12, 13]))),
        ("v", column),
    ]);
    write_parquet(
        &f.scratch.path("data/spark.parquet"),
        &[rows],
        rows_per_group,
    );
    let err = f.run_fails(&pipeline(
        PARQUET,
        &format!("SELECT id, v AS {target} FROM src"),
        "      table: dbo.Kept\n      mode: insert\n",
    ));
    assert!(err.contains(": step `out` failed: "), "{err}");
    assert!(err.contains("nothing was written to dbo.Kept"), "{err}");
    assert_eq!(
        f.tds_rows("SELECT id, tiny, day, at, amount, latin FROM dbo.Kept ORDER BY id"),
        KEPT,
        "after: {err}"
    );
    err
}

#[test]
fn a_short_of_300_into_tinyint_is_refused_naming_column_row_and_value() {
    let err = refused(
        "tiny",
        Arc::new(Int16Array::from(vec![Some(0), Some(255), Some(300), None])),
        1024,
    );
    assert!(
        err.contains(
            "column `tiny`, input row 3: 300 is out of range for tinyint (0 to 255); filter such \
             values out or replace them in a transform, or write them to a wider column"
        ),
        "{err}"
    );
}

#[test]
fn a_negative_byte_into_tinyint_is_refused_in_a_later_batch_and_rolled_back() {
    // Two rows per batch: rows 1 and 2 are sent before row 3 is refused, and rolled back.
    let err = refused(
        "tiny",
        Arc::new(Int8Array::from(vec![Some(5), Some(127), Some(-1), Some(1)])),
        2,
    );
    assert!(
        err.contains("column `tiny`, input row 3: -1 is out of range for tinyint (0 to 255)"),
        "{err}"
    );
}

#[test]
fn a_date_of_year_0_is_refused() {
    let err = refused(
        "day",
        Arc::new(Date32Array::from(vec![
            Some(DAYS_2024),
            None,
            Some(DAYS_0001),
            Some(DAYS_0001 - 1),
        ])),
        1024,
    );
    assert!(
        err.contains(
            "column `day`, input row 4: date 0000-12-31 is outside the range of date \
             (0001-01-01 to 9999-12-31)"
        ),
        "{err}"
    );
}

#[test]
fn a_timestamp_of_year_10000_into_datetime2_is_refused() {
    let err = refused(
        "at",
        utc(vec![Some(MICROS_9999), Some(MICROS_9999 + 1), None, None]),
        1024,
    );
    assert!(
        err.contains(
            "column `at`, input row 2: 10000-01-01 00:00:00 is outside the range of \
             datetime2(7) (0001-01-01 00:00:00 to 9999-12-31 23:59:59.9999999)"
        ),
        "{err}"
    );
}

#[test]
fn a_timestamp_of_year_0_into_datetime2_is_refused() {
    let err = refused(
        "at",
        utc(vec![None, Some(MICROS_0001), Some(MICROS_0001 - 1), None]),
        1024,
    );
    assert!(
        err.contains("column `at`, input row 3: 0000-12-31 23:59:59.999999")
            && err.contains("is outside the range of datetime2(7)"),
        "{err}"
    );
}

#[test]
fn a_decimal_with_more_integer_digits_than_the_column_is_refused() {
    // decimal(5,2) holds 999.99; 1000.00 has four integer digits.
    let err = refused(
        "amount",
        decimal(
            vec![Some(99_999), Some(-99_999), Some(100_000), None],
            10,
            2,
        ),
        1024,
    );
    assert!(
        err.contains(
            "column `amount`, input row 3: 1000.00 does not fit decimal(5,2), which holds at \
             most 3 digits before the decimal point"
        ),
        "{err}"
    );
}

#[test]
fn a_decimal_that_would_lose_digits_is_refused() {
    let err = refused(
        "amount",
        decimal(vec![Some(12_300), Some(12_345), None, None], 10, 4),
        1024,
    );
    assert!(
        err.contains(
            "column `amount`, input row 2: 1.2345 has more decimals than the column's scale 2"
        ),
        "{err}"
    );
}

#[test]
fn text_the_varchar_code_page_cannot_hold_is_refused_naming_column_and_row() {
    let err = refused(
        "latin",
        Arc::new(StringArray::from(vec![
            Some("São Paulo"),
            Some("Zürich €"),
            Some("東京"),
            None,
        ])),
        1024,
    );
    assert!(
        err.contains(
            "column `latin`, input row 3: `東京` cannot be stored in this char/varchar column: \
             its code page 1252 has no `東` (U+6771), which SQL Server would store as `?`"
        ),
        "{err}"
    );
}

#[test]
fn a_double_beyond_real_is_refused_not_sent_as_infinity() {
    let err = refused(
        "r",
        Arc::new(Float64Array::from(vec![
            Some(3.4e38),
            Some(-1e39),
            None,
            None,
        ])),
        1024,
    );
    assert!(
        err.contains(
            "column `r`, input row 2: -1000000000000000000000000000000000000000 is outside the \
             range of real (-3.40E+38 to 3.40E+38)"
        ),
        "{err}"
    );
}

#[test]
fn text_longer_than_the_varchar_is_refused() {
    let err = refused(
        "latin",
        Arc::new(StringArray::from(vec![
            Some("exactly twenty chars"),
            Some("twenty-one characters"),
            None,
            None,
        ])),
        1024,
    );
    assert!(
        err.contains(
            "column `latin`, input row 2: text of 21 characters is longer than the column's 20 \
             (`twenty-one characters`)"
        ),
        "{err}"
    );
}

/// Every type the sink writes straight from Arrow (`src/sinks/sqlserver/rows.rs`) that the Spark
/// tables above do not have, at its limits and NULL. The debug `bridge` also encodes each value
/// through tiberius and panics if the bytes differ; the values are then read back.
#[test]
fn direct_writers_load_value_for_value() {
    let f = Fixture::new();
    let big = 10i128.pow(37);
    let rows = batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
        (
            "i",
            Arc::new(Int64Array::from(vec![
                Some(i64::from(i32::MIN)),
                Some(i64::from(i32::MAX)),
                None,
            ])),
        ),
        (
            "s",
            Arc::new(Int32Array::from(vec![Some(-32_768), Some(32_767), None])),
        ),
        (
            "t",
            Arc::new(UInt8Array::from(vec![Some(0), Some(255), None])),
        ),
        (
            "flag",
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
        ),
        (
            "f",
            Arc::new(Float64Array::from(vec![Some(1.5), Some(-2.5e-5), None])),
        ),
        (
            "r",
            Arc::new(Float32Array::from(vec![Some(0.25), Some(-3.0), None])),
        ),
        (
            "g",
            Arc::new(StringArray::from(vec![
                Some(" 6F9619FF-8B86-D011-B42D-00C04FC964FF "),
                Some("00000000-0000-0000-0000-000000000001"),
                None,
            ])),
        ),
        (
            "nc",
            Arc::new(StringArray::from(vec![Some("añbc"), Some("abcd"), None])),
        ),
        (
            "c",
            Arc::new(StringArray::from(vec![Some("abcd"), Some("wxyz"), None])),
        ),
        (
            "vb",
            Arc::new(BinaryArray::from(vec![
                Some(&b""[..]),
                Some(&[0u8, 1, 254][..]),
                None,
            ])),
        ),
        (
            "fb",
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    vec![Some(vec![1u8, 2, 3, 4]), Some(vec![255u8; 4]), None].into_iter(),
                    4,
                )
                .unwrap(),
            ),
        ),
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(MICROS_2024),
                Some(MICROS_0001),
                None,
            ])),
        ),
        (
            "ts_n",
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(MICROS_2024),
                Some(-1),
                None,
            ])),
        ),
        ("dto", utc(vec![Some(MICROS_2024), Some(MICROS_0001), None])),
        (
            "n",
            Arc::new(StringArray::from(vec![
                Some("😀ñ"),
                Some("abcdefghij"),
                None,
            ])),
        ),
        (
            "dec",
            decimal(vec![Some(big), Some(-(10i128.pow(38) - 1)), None], 38, 0),
        ),
    ]);
    write_parquet(&f.scratch.path("data/w.parquet"), &[rows], 1024);
    f.tsql(
        "CREATE TABLE dbo.Writers (id BIGINT NOT NULL PRIMARY KEY, i INT NULL, s SMALLINT NULL, \
         t TINYINT NULL, flag BIT NULL, f FLOAT NULL, r REAL NULL, g UNIQUEIDENTIFIER NULL, \
         nc NCHAR(4) NULL, c CHAR(4) NULL, vb VARBINARY(8) NULL, fb BINARY(4) NULL, \
         d0 DATETIME2(0) NULL, d3 DATETIME2(3) NULL, dn DATETIME2(7) NULL, \
         dto DATETIMEOFFSET(3) NULL, n NVARCHAR(10) NULL, dec DECIMAL(38,0) NULL)",
    );
    let out = f.run_ok(&pipeline(
        "{type: parquet, path: data/w.parquet}",
        "SELECT id, i, s, t, flag, f, r, g, nc, c, vb, fb, \
         arrow_cast(ts, 'Timestamp(Second, None)') AS d0, \
         arrow_cast(ts, 'Timestamp(Millisecond, None)') AS d3, \
         arrow_cast(ts_n, 'Timestamp(Nanosecond, None)') AS dn, dto, n, dec FROM src",
        "      table: dbo.Writers\n      mode: insert\n",
    ));
    assert_eq!(out, "dbo.Writers (insert: 3 rows)");
    let nulls = ["NULL"; 17].join("|");
    assert_eq!(
        f.tds_rows("SELECT * FROM dbo.Writers ORDER BY id"),
        vec![
            "1|-2147483648|-32768|0|true|1.5|0.25|6f9619ff-8b86-d011-b42d-00c04fc964ff|añbc|abcd|0x\
             |0x01020304|2024-02-29 12:34:56.0000000|2024-02-29 12:34:56.7890000\
             |2024-02-29 12:34:56.7890120|2024-02-29 12:34:56.7890000 +00:00|😀ñ\
             |10000000000000000000000000000000000000"
                .to_string(),
            "2|2147483647|32767|255|false|-0.000025|-3|00000000-0000-0000-0000-000000000001|abcd\
             |wxyz|0x0001FE|0xFFFFFFFF|0001-01-01 00:00:00.0000000|0001-01-01 00:00:00.0000000\
             |1969-12-31 23:59:59.9999990|0001-01-01 00:00:00.0000000 +00:00|abcdefghij\
             |-99999999999999999999999999999999999999"
                .to_string(),
            format!("3|{nulls}"),
        ]
    );
}
