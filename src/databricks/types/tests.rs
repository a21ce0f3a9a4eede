//! Tests of the Databricks result types: the manifest mapping, Arrow chunks and JSON text.

use super::values::rescale;
use super::*;
use deltalake::arrow::array::{
    Array, Decimal128Array, Int8Array, ListArray, StringArray, TimestampMicrosecondArray,
    TimestampNanosecondArray,
};
use deltalake::arrow::datatypes::Int32Type;

fn column(name: &str, type_name: &str, type_text: &str) -> ColumnInfo {
    ColumnInfo {
        name: name.into(),
        type_name: Some(type_name.into()),
        type_text: Some(type_text.into()),
        type_precision: None,
        type_scale: None,
        position: None,
        type_interval_type: None,
    }
}

fn lines(batch: &RecordBatch) -> Vec<String> {
    deltalake::arrow::util::pretty::pretty_format_batches(std::slice::from_ref(batch))
        .unwrap()
        .to_string()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn manifest_types_map_to_the_policy() {
    let cols = [
        column("b", "BOOLEAN", "BOOLEAN"),
        column("t", "BYTE", "TINYINT"),
        column("s", "SHORT", "SMALLINT"),
        column("i", "INT", "INT"),
        column("l", "LONG", "BIGINT"),
        column("f", "FLOAT", "FLOAT"),
        column("d", "DOUBLE", "DOUBLE"),
        ColumnInfo {
            type_precision: Some(38),
            type_scale: Some(18),
            ..column("dec", "DECIMAL", "DECIMAL(38,18)")
        },
        column("dec2", "DECIMAL", "decimal(7, 2)"),
        column("str", "STRING", "STRING"),
        column("vc", "STRING", "VARCHAR(10)"),
        column("bin", "BINARY", "BINARY"),
        column("dt", "DATE", "DATE"),
        column("ts", "TIMESTAMP", "TIMESTAMP"),
        column("ntz", "TIMESTAMP_NTZ", "TIMESTAMP_NTZ"),
        column("ntz2", "", "TIMESTAMP_NTZ"),
        column("v", "VARIANT", "VARIANT"),
    ];
    let types = ResultTypes::new(&cols).unwrap();
    let got: Vec<String> = types
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    assert_eq!(
        got,
        [
            "b:Boolean",
            "t:Int8",
            "s:Int16",
            "i:Int32",
            "l:Int64",
            "f:Float32",
            "d:Float64",
            "dec:Decimal128(38, 18)",
            "dec2:Decimal128(7, 2)",
            "str:Utf8",
            "vc:Utf8",
            "bin:Binary",
            "dt:Date32",
            "ts:Timestamp(µs, \"UTC\")",
            "ntz:Timestamp(µs)",
            "ntz2:Timestamp(µs)",
            "v:Utf8",
        ]
    );
    assert!(types.schema().fields().iter().all(|f| f.is_nullable()));
}

#[test]
fn intervals_nested_void_and_unknown_types_are_refused_with_what_to_select() {
    let err = ResultTypes::new(&[
        column("id", "LONG", "BIGINT"),
        column("tags", "ARRAY", "ARRAY<STRING>"),
        column("wait time", "INTERVAL", "INTERVAL DAY TO SECOND"),
        column("m", "MAP", "MAP<STRING, STRING>"),
        column("nothing", "NULL", "VOID"),
        column("g", "USER_DEFINED_TYPE", "GEOMETRY"),
        ColumnInfo {
            type_precision: Some(40),
            type_scale: Some(0),
            ..column("huge", "DECIMAL", "DECIMAL(40,0)")
        },
    ])
    .unwrap_err();
    let TypeError::Refused(refused) = &err else {
        panic!("{err}")
    };
    let selects: Vec<(&str, &str)> = refused
        .iter()
        .map(|r| (r.column.as_str(), r.select.as_str()))
        .collect();
    assert_eq!(
        selects,
        [
            ("tags", "to_json(tags)"),
            ("wait time", "CAST(`wait time` AS STRING)"),
            ("m", "to_json(m)"),
            ("nothing", "CAST(nothing AS STRING)"),
            ("g", "CAST(g AS STRING)"),
            ("huge", "CAST(huge AS STRING)"),
        ]
    );
    let text = err.to_string();
    assert!(
        text.contains("`tags` is ARRAY<STRING> (a nested type; the bridge writes flat columns), select `to_json(tags)` instead"),
        "{text}"
    );
    assert!(
        text.contains("`wait time` is INTERVAL DAY TO SECOND"),
        "{text}"
    );
    assert!(!text.contains('\n'), "one paragraph: {text}");
}

#[test]
fn chunks_in_api_types_become_engine_types() {
    // Some servers name TIMESTAMP_NTZ columns TIMESTAMP; type_text tells them apart.
    let ntz = column("ntz", "TIMESTAMP", "TIMESTAMP_NTZ");
    let types = ResultTypes::new(&[
        column("ts", "TIMESTAMP", "TIMESTAMP"),
        column("ns", "TIMESTAMP", "TIMESTAMP"),
        ntz,
        ColumnInfo {
            type_precision: Some(38),
            type_scale: Some(18),
            ..column("dec", "DECIMAL", "DECIMAL(38,18)")
        },
        ColumnInfo {
            type_precision: Some(10),
            type_scale: Some(2),
            ..column("wider", "DECIMAL", "DECIMAL(10,2)")
        },
        column("t", "BYTE", "TINYINT"),
        column("v", "VARIANT", "VARIANT"),
        column("n", "INT", "INT"),
    ])
    .unwrap();
    let wire = Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("America/Los_Angeles".into())),
            true,
        ),
        Field::new(
            "ns",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("Etc/UTC".into())),
            true,
        ),
        Field::new(
            "ntz",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("dec", DataType::Utf8, true),
        Field::new("wider", DataType::Decimal128(12, 4), true),
        Field::new("t", DataType::Int8, false),
        Field::new("v", DataType::Utf8, true),
        Field::new("n", DataType::Null, true),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(wire),
        vec![
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(-62_135_596_800_000_000), None])
                    .with_timezone("America/Los_Angeles"),
            ),
            Arc::new(
                TimestampNanosecondArray::from(vec![Some(1_000), None]).with_timezone("Etc/UTC"),
            ),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(253_402_300_799_999_999),
                None,
            ])),
            Arc::new(StringArray::from(vec![
                Some("-99999999999999999999.999999999999999999"),
                None,
            ])),
            Arc::new(
                Decimal128Array::from(vec![Some(1_234_500), None])
                    .with_precision_and_scale(12, 4)
                    .unwrap(),
            ),
            Arc::new(Int8Array::from(vec![-128, 127])),
            Arc::new(StringArray::from(vec![Some(r#"{"a":1}"#), None])),
            Arc::new(deltalake::arrow::array::NullArray::new(2)),
        ],
    )
    .unwrap();
    let out = types.from_arrow(&batch, 0).unwrap();
    assert_eq!(out.schema(), *types.schema());
    let l = lines(&out);
    assert_eq!(
        l[3],
        "| 0001-01-01T00:00:00Z | 1970-01-01T00:00:00.000001Z | 9999-12-31T23:59:59.999999 | -99999999999999999999.999999999999999999 | 123.45 | -128 | {\"a\":1} |   |"
    );
    assert_eq!(out.column(0).null_count(), 1);
    assert_eq!(out.column(5).null_count(), 0);
    assert_eq!(out.column(7).null_count(), 2);
}

#[test]
fn values_that_do_not_fit_are_errors_naming_column_and_row() {
    let types = ResultTypes::new(&[
        ColumnInfo {
            type_precision: Some(5),
            type_scale: Some(2),
            ..column("amount", "DECIMAL", "DECIMAL(5,2)")
        },
        column("ts", "TIMESTAMP", "TIMESTAMP"),
    ])
    .unwrap();
    let wire = Arc::new(Schema::new(vec![
        Field::new("amount", DataType::Decimal128(6, 3), true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            true,
        ),
    ]));
    let batch = |dec: i128, ns: i64| {
        RecordBatch::try_new(
            wire.clone(),
            vec![
                Arc::new(
                    Decimal128Array::from(vec![Some(1_000), Some(dec)])
                        .with_precision_and_scale(6, 3)
                        .unwrap(),
                ),
                Arc::new(TimestampNanosecondArray::from(vec![0, ns]).with_timezone("UTC")),
            ],
        )
        .unwrap()
    };
    let err = types
        .from_arrow(&batch(1_005, 0), 40)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "column `amount` (DECIMAL(5,2)), row 42 of the result: 1.005 has more than 2 decimals"
    );
    let err = types
        .from_arrow(&batch(0, 1_500), 0)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("column `ts` (TIMESTAMP), row 2 of the result: 1500 nanoseconds"),
        "{err}"
    );

    let wire_list = Arc::new(Schema::new(vec![Field::new(
        "amount",
        DataType::new_list(DataType::Int32, true),
        true,
    )]));
    let single = ResultTypes::new(&[ColumnInfo {
        type_precision: Some(5),
        type_scale: Some(2),
        ..column("amount", "DECIMAL", "DECIMAL(5,2)")
    }])
    .unwrap();
    let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1)])]);
    let err = single
        .from_arrow(
            &RecordBatch::try_new(wire_list, vec![Arc::new(list)]).unwrap(),
            0,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("column `amount` (DECIMAL(5,2)): the result chunk has it as List"),
        "{err}"
    );
}

#[test]
fn json_array_text_becomes_engine_types() {
    let types = ResultTypes::new(&[
        column("id", "LONG", "BIGINT"),
        column("t", "BYTE", "TINYINT"),
        ColumnInfo {
            type_precision: Some(18),
            type_scale: Some(4),
            ..column("amount", "DECIMAL", "DECIMAL(18,4)")
        },
        column("at", "TIMESTAMP", "TIMESTAMP"),
        column("wall", "TIMESTAMP_NTZ", "TIMESTAMP_NTZ"),
        column("day", "DATE", "DATE"),
        column("bin", "BINARY", "BINARY"),
        column("ok", "BOOLEAN", "BOOLEAN"),
        column("x", "DOUBLE", "DOUBLE"),
        column("name", "STRING", "STRING"),
    ])
    .unwrap();
    let row = |v: [&str; 10]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
    let rows = vec![
        row([
            "1",
            "-128",
            "12.3400",
            "2021-01-01T10:00:00.000-08:00",
            "2024-01-02T03:04:05.123",
            "0001-01-01",
            "AP8=",
            "true",
            "NaN",
            "Grüße",
        ]),
        vec![None; 10],
    ];
    let batch = types.from_text(&rows, 0).unwrap();
    let l = lines(&batch);
    assert_eq!(
        l[3],
        "| 1  | -128 | 12.3400 | 2021-01-01T18:00:00Z | 2024-01-02T03:04:05.123 | 0001-01-01 | 00ff | true | NaN | Grüße |"
    );
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(batch.column(9).null_count(), 1);
    let mut bad = rows.clone();
    bad[1] = row([
        "2",
        "128",
        "0",
        "2024-01-01Z",
        "2024-01-01",
        "2024-01-01",
        "",
        "false",
        "1",
        "a",
    ]);
    let err = types.from_text(&bad, 10).unwrap_err().to_string();
    assert_eq!(
        err,
        "column `t` (TINYINT), row 12 of the result: 128 is out of range"
    );
    bad[1][1] = Some("1".into());
    bad[1][2] = Some("1.23456".into());
    let err = types.from_text(&bad, 10).unwrap_err().to_string();
    assert!(err.contains("`1.23456` has more than 4 decimals"), "{err}");
}

#[test]
fn decimal_text_is_read_exactly() {
    assert_eq!(parse_decimal("12.34", 10, 4), Ok(123_400));
    assert_eq!(parse_decimal("-0.5", 3, 1), Ok(-5));
    assert_eq!(parse_decimal("1E+3", 6, 2), Ok(100_000));
    assert_eq!(parse_decimal("1.2000", 5, 2), Ok(120));
    assert_eq!(parse_decimal("000.00", 1, 0), Ok(0));
    let max = "99999999999999999999.999999999999999999";
    assert_eq!(parse_decimal(max, 38, 18), Ok(10i128.pow(38) - 1));
    assert_eq!(
        parse_decimal(&format!("-{max}"), 38, 18),
        Ok(1 - 10i128.pow(38))
    );
    assert!(parse_decimal("100000000000000000000", 38, 18).is_err());
    assert!(
        parse_decimal("0.005", 5, 2)
            .unwrap_err()
            .to_string()
            .contains("more than 2 decimals")
    );
    assert!(parse_decimal("1.2.3", 5, 2).is_err());
    assert!(parse_decimal("", 5, 2).is_err());
    assert!(parse_decimal("1e40", 38, 0).is_err());
    assert_eq!(rescale(1_234_500, 4, 10, 2), Ok(12_345));
    assert_eq!(rescale(5, 0, 3, 2), Ok(500));
    assert!(rescale(5, 0, 2, 2).is_err());
}
