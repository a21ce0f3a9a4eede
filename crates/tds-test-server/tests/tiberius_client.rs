//! End-to-end tests: tiberius 0.12 over plaintext TCP against the SQLite-backed server.
//! Covers login, type round-trips, results, transactions, temp tables, bulk load, joins and faults.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use tds_test_server::{FaultPlan, TdsServer, TdsServerConfig};
use tiberius::numeric::Numeric;
use tiberius::{Row, Uuid};
use tokio::net::TcpStream;

mod common;

use common::{Conn, server};

async fn connect_as(server: &TdsServer, user: &str) -> tiberius::Result<Conn> {
    common::connect_as(server, "testdb", user).await
}

async fn connect(server: &TdsServer) -> Conn {
    connect_as(server, "sa").await.expect("login succeeds")
}

async fn rows(client: &mut Conn, sql: &str) -> Vec<Row> {
    client
        .simple_query(sql)
        .await
        .expect("query sent")
        .into_first_result()
        .await
        .expect("query succeeds")
}

async fn batch(client: &mut Conn, sql: &str) -> tiberius::Result<Vec<Vec<Row>>> {
    client.simple_query(sql).await?.into_results().await
}

async fn scalar_i64(client: &mut Conn, sql: &str) -> i64 {
    let r = rows(client, sql).await;
    r[0].try_get::<i64, _>(0)
        .ok()
        .flatten()
        .or_else(|| r[0].try_get::<i32, _>(0).ok().flatten().map(i64::from))
        .expect("integer scalar")
}

#[tokio::test]
async fn login_ok_and_failure() {
    let s = server().await;
    let mut c = connect(&s).await;
    let r = rows(
        &mut c,
        "SELECT @@VERSION AS v, SERVERPROPERTY('ProductVersion') AS pv, DB_NAME() AS db",
    )
    .await;
    assert!(r[0].get::<&str, _>("v").unwrap().contains("SQL Server"));
    assert_eq!(r[0].get::<&str, _>("pv"), Some("15.0.2000.5"));
    assert_eq!(r[0].get::<&str, _>("db"), Some("testdb"));
    let err = connect_as(&s, "bad").await.expect_err("login must fail");
    match err {
        tiberius::error::Error::Server(e) => assert_eq!(e.code(), 18456),
        other => panic!("unexpected error {other:?}"),
    }
    // The server keeps serving after a failed login.
    let mut c2 = connect(&s).await;
    assert_eq!(scalar_i64(&mut c2, "SELECT 1").await, 1);
    s.shutdown().await;
}

const CREATE_ALL: &str = "CREATE TABLE dbo.alltypes (
    id INT NOT NULL PRIMARY KEY,
    c_bit BIT, c_tiny TINYINT, c_small SMALLINT, c_int INT, c_big BIGINT,
    c_real REAL, c_float FLOAT, c_dec DECIMAL(38,10), c_num NUMERIC(9,2),
    c_money MONEY, c_smallmoney SMALLMONEY,
    c_date DATE, c_time TIME(7), c_dt DATETIME, c_sdt SMALLDATETIME,
    c_dt2 DATETIME2(7), c_dto DATETIMEOFFSET(7),
    c_char CHAR(10), c_varchar VARCHAR(50), c_nchar NCHAR(5), c_nvarchar NVARCHAR(100),
    c_nvmax NVARCHAR(MAX), c_vmax VARCHAR(MAX), c_text TEXT, c_ntext NTEXT,
    c_bin BINARY(4), c_varbin VARBINARY(100), c_vbmax VARBINARY(MAX),
    c_guid UNIQUEIDENTIFIER, c_xml XML)";

struct Expected {
    dec: Numeric,
    time: NaiveTime,
    dt2: NaiveDateTime,
    dto: DateTime<FixedOffset>,
    nvmax: String,
    vmax: String,
    vbmax: Vec<u8>,
    guid: Uuid,
}

fn expected() -> Expected {
    Expected {
        dec: Numeric::new_with_scale(12_345_678_901_234_567_890_123_456_780_123_456_789, 10),
        time: NaiveTime::from_hms_nano_opt(13, 14, 15, 123_456_700).unwrap(),
        dt2: NaiveDate::from_ymd_opt(2024, 2, 29)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 999_999_900)
            .unwrap(),
        dto: DateTime::parse_from_rfc3339("2024-05-06T07:08:09.1234567+05:30").unwrap(),
        nvmax: "Ñandú 日本 ".repeat(900),
        vmax: "plain ascii ".repeat(800),
        vbmax: (0..100_000u32).map(|i| (i % 251) as u8).collect(),
        guid: Uuid::parse_str("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0").unwrap(),
    }
}

fn check_row(r: &Row, e: &Expected) {
    assert_eq!(r.get::<bool, _>("c_bit"), Some(true));
    assert_eq!(r.get::<u8, _>("c_tiny"), Some(255));
    assert_eq!(r.get::<i16, _>("c_small"), Some(-32768));
    assert_eq!(r.get::<i32, _>("c_int"), Some(2_147_483_647));
    assert_eq!(r.get::<i64, _>("c_big"), Some(-9_223_372_036_854_775_808));
    assert_eq!(r.get::<f32, _>("c_real"), Some(1.5f32));
    assert_eq!(r.get::<f64, _>("c_float"), Some(-2.25e100));
    let dec: Numeric = r.get("c_dec").unwrap();
    assert_eq!((dec.value(), dec.scale()), (e.dec.value(), 10));
    let num: Numeric = r.get("c_num").unwrap();
    assert_eq!((num.value(), num.scale()), (-1234567, 2));
    // The vendored tiberius reads money exactly, as a Numeric of scale 4.
    let money: Numeric = r.get("c_money").unwrap();
    assert_eq!((money.value(), money.scale()), (123_456_789, 4));
    let smallmoney: Numeric = r.get("c_smallmoney").unwrap();
    assert_eq!(
        (smallmoney.value(), smallmoney.scale()),
        (-2_147_483_648, 4)
    );
    assert_eq!(
        r.get::<NaiveDate, _>("c_date"),
        NaiveDate::from_ymd_opt(1, 1, 1)
    );
    assert_eq!(r.get::<NaiveTime, _>("c_time"), Some(e.time));
    // datetime keeps 1/300 s: .123 is stored as 37 ticks = .123333333.
    assert_eq!(
        r.get::<NaiveDateTime, _>("c_dt"),
        NaiveDate::from_ymd_opt(2024, 1, 2)
            .unwrap()
            .and_hms_nano_opt(3, 4, 5, 123_333_333)
    );
    assert_eq!(
        r.get::<NaiveDateTime, _>("c_sdt"),
        NaiveDate::from_ymd_opt(2024, 1, 2)
            .unwrap()
            .and_hms_opt(3, 5, 0)
    );
    assert_eq!(r.get::<NaiveDateTime, _>("c_dt2"), Some(e.dt2));
    let dto: DateTime<FixedOffset> = r.get("c_dto").unwrap();
    assert_eq!(dto, e.dto);
    assert_eq!(dto.offset().local_minus_utc(), 5 * 3600 + 30 * 60);
    assert_eq!(r.get::<&str, _>("c_char"), Some("abc       "));
    assert_eq!(r.get::<&str, _>("c_varchar"), Some("hello é €"));
    assert_eq!(r.get::<&str, _>("c_nchar"), Some("日本   "));
    assert_eq!(r.get::<&str, _>("c_nvarchar"), Some("Ñandú 日本"));
    assert_eq!(r.get::<&str, _>("c_nvmax"), Some(e.nvmax.as_str()));
    assert_eq!(r.get::<&str, _>("c_vmax"), Some(e.vmax.as_str()));
    assert_eq!(r.get::<&str, _>("c_text"), Some("legacy text"));
    assert_eq!(r.get::<&str, _>("c_ntext"), Some("legacy ñ 日"));
    assert_eq!(r.get::<&[u8], _>("c_bin"), Some(&[1u8, 2, 0, 0][..]));
    assert_eq!(
        r.get::<&[u8], _>("c_varbin"),
        Some(&[0xDEu8, 0xAD, 0xBE, 0xEF][..])
    );
    assert_eq!(r.get::<&[u8], _>("c_vbmax"), Some(e.vbmax.as_slice()));
    assert_eq!(r.get::<Uuid, _>("c_guid"), Some(e.guid));
    let xml: &tiberius::xml::XmlData = r.get("c_xml").unwrap();
    assert_eq!(xml.as_ref(), "<a b=\"1\">x</a>");
}

fn check_null_row(r: &Row) {
    assert_eq!(r.get::<bool, _>("c_bit"), None);
    assert_eq!(r.get::<u8, _>("c_tiny"), None);
    assert_eq!(r.get::<i16, _>("c_small"), None);
    assert_eq!(r.get::<i32, _>("c_int"), None);
    assert_eq!(r.get::<i64, _>("c_big"), None);
    assert_eq!(r.get::<f32, _>("c_real"), None);
    assert_eq!(r.get::<f64, _>("c_float"), None);
    assert_eq!(r.get::<Numeric, _>("c_dec"), None);
    assert_eq!(r.get::<Numeric, _>("c_num"), None);
    assert_eq!(r.get::<Numeric, _>("c_money"), None);
    assert_eq!(r.get::<Numeric, _>("c_smallmoney"), None);
    assert_eq!(r.get::<NaiveDate, _>("c_date"), None);
    assert_eq!(r.get::<NaiveTime, _>("c_time"), None);
    assert_eq!(r.get::<NaiveDateTime, _>("c_dt"), None);
    assert_eq!(r.get::<NaiveDateTime, _>("c_sdt"), None);
    assert_eq!(r.get::<NaiveDateTime, _>("c_dt2"), None);
    assert_eq!(r.get::<DateTime<FixedOffset>, _>("c_dto"), None);
    for c in [
        "c_char",
        "c_varchar",
        "c_nchar",
        "c_nvarchar",
        "c_nvmax",
        "c_vmax",
        "c_text",
        "c_ntext",
    ] {
        assert_eq!(r.get::<&str, _>(c), None, "{c}");
    }
    for c in ["c_bin", "c_varbin", "c_vbmax"] {
        assert_eq!(r.get::<&[u8], _>(c), None, "{c}");
    }
    assert_eq!(r.get::<Uuid, _>("c_guid"), None);
    assert!(r.get::<&tiberius::xml::XmlData, _>("c_xml").is_none());
}

#[tokio::test]
async fn every_type_round_trips_through_parameters() {
    let s = server().await;
    let mut c = connect(&s).await;
    c.execute(CREATE_ALL, &[]).await.unwrap();
    let e = expected();
    let insert = "INSERT INTO alltypes VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P9, @P10,
        @P11, @P12, @P13, @P14, @P15, @P16, @P17, @P18, @P19, @P20, @P21, @P22, @P23, @P24,
        @P25, @P26, @P27, @P28, @P29, @P30, @P31)";
    let dt = NaiveDate::from_ymd_opt(2024, 1, 2)
        .unwrap()
        .and_hms_milli_opt(3, 4, 5, 123)
        .unwrap();
    let sdt = NaiveDate::from_ymd_opt(2024, 1, 2)
        .unwrap()
        .and_hms_opt(3, 4, 30)
        .unwrap();
    let money = Numeric::new_with_scale(123_456_789, 4);
    let smallmoney = Numeric::new_with_scale(-2_147_483_648, 4);
    let num = Numeric::new_with_scale(-1_234_567, 2);
    let res = c
        .execute(
            insert,
            &[
                &1i32,
                &true,
                &255u8,
                &-32768i16,
                &2_147_483_647i32,
                &i64::MIN,
                &1.5f32,
                &-2.25e100f64,
                &e.dec,
                &num,
                &money,
                &smallmoney,
                &NaiveDate::from_ymd_opt(1, 1, 1).unwrap(),
                &e.time,
                &dt,
                &sdt,
                &e.dt2,
                &e.dto,
                &"abc",
                &"hello é €",
                &"日本",
                &"Ñandú 日本",
                &e.nvmax.as_str(),
                &e.vmax.as_str(),
                &"legacy text",
                &"legacy ñ 日",
                &[1u8, 2].as_slice(),
                &[0xDEu8, 0xAD, 0xBE, 0xEF].as_slice(),
                &e.vbmax.as_slice(),
                &e.guid,
                &"<a b=\"1\">x</a>",
            ],
        )
        .await
        .unwrap();
    assert_eq!(res.total(), 1);
    // A row of NULLs, sent as typed NULL parameters.
    let nulls: Vec<Option<i32>> = vec![None; 30];
    let mut params: Vec<&dyn tiberius::ToSql> = vec![&2i32];
    params.extend(nulls.iter().map(|n| n as &dyn tiberius::ToSql));
    c.execute(insert, &params).await.unwrap();

    let r = c
        .query("SELECT * FROM alltypes WHERE id = @P1", &[&1i32])
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(r.len(), 1);
    check_row(&r[0], &e);
    let r = rows(&mut c, "SELECT * FROM alltypes WHERE id = 2").await;
    check_null_row(&r[0]);

    // Storage encoding in SQLite.
    let stored = s
        .query_sqlite("SELECT c_dec, typeof(c_dec), c_money, c_dt2, c_dto, c_guid, c_time FROM alltypes WHERE id = 1")
        .unwrap();
    assert_eq!(
        stored[0],
        vec![
            Some("1234567890123456789012345678.0123456789".to_string()),
            Some("text".to_string()),
            Some("12345.6789".to_string()),
            Some("2024-02-29 23:59:59.9999999".to_string()),
            Some("2024-05-06 07:08:09.1234567 +05:30".to_string()),
            Some("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0".to_string()),
            Some("13:14:15.1234567".to_string()),
        ]
    );
    s.shutdown().await;
}

#[tokio::test]
async fn every_type_round_trips_through_literals() {
    let s = server().await;
    let mut c = connect(&s).await;
    batch(&mut c, CREATE_ALL).await.unwrap();
    let e = expected();
    let sql = format!(
        "INSERT INTO [dbo].[alltypes] VALUES (1, 1, 255, -32768, 2147483647, -9223372036854775808,
          1.5, -2.25e100, 1234567890123456789012345678.0123456789, -12345.67, 12345.6789, -214748.3648,
          '0001-01-01', '13:14:15.1234567', '2024-01-02 03:04:05.123', '2024-01-02T03:04:30',
          '2024-02-29 23:59:59.9999999', '2024-05-06 07:08:09.1234567 +05:30',
          'abc', 'hello é €', N'日本', N'Ñandú 日本', N'{}', '{}', 'legacy text', N'legacy ñ 日',
          0x0102, 0xDEADBEEF, 0x{}, '0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0', '<a b=\"1\">x</a>');
         INSERT INTO alltypes (id) VALUES (2)",
        e.nvmax,
        e.vmax,
        e.vbmax.iter().map(|b| format!("{b:02X}")).collect::<String>()
    );
    let res = c.execute(sql, &[]).await.unwrap();
    assert_eq!(res.rows_affected(), &[1, 1]);
    let r = rows(&mut c, "SELECT * FROM alltypes ORDER BY id").await;
    check_row(&r[0], &e);
    check_null_row(&r[1]);
    s.shutdown().await;
}

#[tokio::test]
async fn computed_columns_and_multiple_result_sets() {
    let s = server().await;
    let mut c = connect(&s).await;
    let results = c
        .simple_query(
            "CREATE TABLE t (a INT, b NVARCHAR(20));
             INSERT INTO t VALUES (1, N'x'), (2, N'y'), (3, NULL)
             SELECT a, b FROM t ORDER BY a
             SELECT COUNT(*) AS n, COUNT_BIG(*) AS nb, SUM(a) AS total, CAST(2.5 AS DECIMAL(10,3)) AS d,
                    ISNULL(MAX(b), N'none') AS mb, LEN(N'abc  ') AS l FROM t;
             SELECT TOP 1 a FROM t ORDER BY a DESC",
        )
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].len(), 3);
    assert_eq!(results[0][2].get::<&str, _>(1), None);
    let agg = &results[1][0];
    assert_eq!(agg.get::<i32, _>("n"), Some(3));
    assert_eq!(agg.get::<i64, _>("nb"), Some(3));
    assert_eq!(agg.get::<i64, _>("total"), Some(6));
    let d: Numeric = agg.get("d").unwrap();
    assert_eq!((d.value(), d.scale()), (2500, 3));
    assert_eq!(agg.get::<&str, _>("mb"), Some("y"));
    assert_eq!(agg.get::<i32, _>("l"), Some(3));
    assert_eq!(results[2][0].get::<i32, _>(0), Some(3));
    // OFFSET / FETCH and an unaliased expression (empty column name, like SQL Server).
    let r = rows(
        &mut c,
        "SELECT a * 10 FROM t ORDER BY a OFFSET 1 ROWS FETCH NEXT 1 ROWS ONLY",
    )
    .await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].columns()[0].name(), "");
    assert_eq!(r[0].get::<i64, _>(0), Some(20));
    s.shutdown().await;
}

#[tokio::test]
async fn transactions_commit_and_rollback() {
    let s = server().await;
    let mut c = connect(&s).await;
    batch(&mut c, "CREATE TABLE acct (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    batch(&mut c, "BEGIN TRAN").await.unwrap();
    c.execute("INSERT INTO acct VALUES (@P1, @P2)", &[&1i32, &10i32])
        .await
        .unwrap();
    assert_eq!(scalar_i64(&mut c, "SELECT @@TRANCOUNT").await, 1);
    batch(&mut c, "COMMIT TRAN").await.unwrap();
    assert_eq!(scalar_i64(&mut c, "SELECT @@TRANCOUNT").await, 0);

    batch(&mut c, "BEGIN TRANSACTION").await.unwrap();
    c.execute("INSERT INTO acct VALUES (@P1, @P2)", &[&2i32, &20i32])
        .await
        .unwrap();
    c.execute("UPDATE acct SET v = 99 WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(scalar_i64(&mut c, "SELECT COUNT(*) FROM acct").await, 2);
    batch(&mut c, "ROLLBACK").await.unwrap();
    let r = rows(&mut c, "SELECT id, v FROM acct").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get::<i32, _>("v"), Some(10));
    // Another connection sees the committed state.
    let mut c2 = connect(&s).await;
    assert_eq!(scalar_i64(&mut c2, "SELECT SUM(v) FROM acct").await, 10);
    // COMMIT without BEGIN is an error (3902).
    let err = batch(&mut c, "COMMIT").await.expect_err("no txn");
    assert_eq!(err.code(), Some(3902));
    s.shutdown().await;
}

#[tokio::test]
async fn an_open_write_transaction_does_not_block_readers() {
    let s = server().await;
    let mut w = connect(&s).await;
    batch(
        &mut w,
        "CREATE TABLE a (id INT); CREATE TABLE b (id INT); INSERT INTO b VALUES (7)",
    )
    .await
    .unwrap();
    batch(&mut w, "BEGIN TRAN; INSERT INTO a VALUES (1)")
        .await
        .unwrap();
    // As on SQL Server, another session reads other tables (and the catalog) at once, and sees
    // only committed rows; it does not wait for the writer.
    let mut r = connect(&s).await;
    let read = async {
        let b = scalar_i64(&mut r, "SELECT SUM(id) FROM b").await;
        let a = scalar_i64(&mut r, "SELECT COUNT(*) FROM a").await;
        let cols = scalar_i64(
            &mut r,
            "SELECT COUNT(*) FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'a'",
        )
        .await;
        (b, a, cols)
    };
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("reader is not blocked by the open transaction");
    assert_eq!(got, (7, 0, 1));
    batch(&mut w, "COMMIT").await.unwrap();
    assert_eq!(scalar_i64(&mut r, "SELECT COUNT(*) FROM a").await, 1);
    s.shutdown().await;
}

#[tokio::test]
async fn temp_tables_are_per_connection() {
    let s = server().await;
    let mut c = connect(&s).await;
    c.simple_query(
        "CREATE TABLE src (id INT, amount DECIMAL(18,4), name NVARCHAR(30));
         INSERT INTO src VALUES (1, 1.5, N'a'), (2, 2.25, N'b');
         IF OBJECT_ID('tempdb..#stage') IS NOT NULL DROP TABLE #stage;
         SELECT * INTO #stage FROM src WHERE 1 = 0;
         INSERT INTO #stage SELECT * FROM src WHERE id = 2;
         CREATE TABLE #other (x INT)",
    )
    .await
    .unwrap()
    .into_results()
    .await
    .unwrap();
    let r = rows(&mut c, "SELECT id, amount, name FROM #stage").await;
    assert_eq!(r.len(), 1);
    let amount: Numeric = r[0].get("amount").unwrap();
    assert_eq!((amount.value(), amount.scale()), (22500, 4));
    // Running the guarded drop again works now that the table exists.
    batch(
        &mut c,
        "IF OBJECT_ID('tempdb..#stage') IS NOT NULL DROP TABLE #stage",
    )
    .await
    .unwrap();
    let mut c2 = connect(&s).await;
    let err = batch(&mut c2, "SELECT * FROM #other")
        .await
        .expect_err("temp table is private");
    assert_eq!(err.code(), Some(208));
    s.shutdown().await;
}

#[tokio::test]
async fn bulk_insert_ten_thousand_rows() {
    let s = server().await;
    let mut c = connect(&s).await;
    batch(&mut c, "CREATE TABLE bulk_t (id INT NOT NULL, name NVARCHAR(50), amount DECIMAL(18,4), at DATETIME2(7), flag BIT, blob VARBINARY(MAX))").await.unwrap();
    let base = NaiveDate::from_ymd_opt(2024, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let mut req = c.bulk_insert("bulk_t").await.unwrap();
    for i in 0..10_000i32 {
        let mut row = tiberius::TokenRow::new();
        row.push(tiberius::ColumnData::I32(Some(i)));
        row.push(tiberius::ColumnData::String(if i % 10 == 0 {
            None
        } else {
            Some(format!("name {i} ñ").into())
        }));
        row.push(tiberius::ColumnData::Numeric(Some(
            Numeric::new_with_scale(i as i128 * 10_001, 4),
        )));
        let at = base + chrono::Duration::seconds(i as i64);
        row.push(tiberius::IntoSql::into_sql(at));
        row.push(tiberius::ColumnData::Bit(Some(i % 2 == 0)));
        row.push(tiberius::ColumnData::Binary(Some(
            vec![(i % 256) as u8; 3].into(),
        )));
        req.send(row).await.unwrap();
    }
    let res = req.finalize().await.unwrap();
    assert_eq!(res.total(), 10_000);
    assert_eq!(
        scalar_i64(&mut c, "SELECT COUNT(*) FROM bulk_t").await,
        10_000
    );
    let r = rows(
        &mut c,
        "SELECT id, name, amount, at, flag, blob FROM bulk_t WHERE id = 1234",
    )
    .await;
    assert_eq!(r[0].get::<&str, _>("name"), Some("name 1234 ñ"));
    let amount: Numeric = r[0].get("amount").unwrap();
    assert_eq!(amount.value(), 1234 * 10_001);
    assert_eq!(
        r[0].get::<NaiveDateTime, _>("at"),
        Some(base + chrono::Duration::seconds(1234))
    );
    assert_eq!(r[0].get::<bool, _>("flag"), Some(true));
    assert_eq!(r[0].get::<&[u8], _>("blob"), Some(&[210u8, 210, 210][..]));
    assert_eq!(
        scalar_i64(&mut c, "SELECT COUNT(*) FROM bulk_t WHERE name IS NULL").await,
        1000
    );
    s.shutdown().await;
}

#[tokio::test]
async fn update_and_delete_with_joins() {
    let s = server().await;
    let mut c = connect(&s).await;
    c.simple_query(
        "CREATE TABLE target (id INT PRIMARY KEY, v NVARCHAR(10), n INT);
         CREATE TABLE source (id INT, v NVARCHAR(10), del BIT);
         INSERT INTO target VALUES (1, 'a', 0), (2, 'b', 0), (3, 'c', 0);
         INSERT INTO source VALUES (1, 'A', 0), (2, 'B', 1), (4, 'D', 1)",
    )
    .await
    .unwrap()
    .into_results()
    .await
    .unwrap();
    let res = c
        .execute(
            "UPDATE t SET t.v = s.v, t.n = t.n + 1 FROM dbo.target AS t INNER JOIN source s ON t.id = s.id WHERE s.id < @P1",
            &[&10i32],
        )
        .await
        .unwrap();
    assert_eq!(res.total(), 2);
    let res = c
        .execute(
            "DELETE target FROM target JOIN source ON target.id = source.id WHERE source.del = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(res.total(), 1);
    let r = rows(&mut c, "SELECT id, v, n FROM target ORDER BY id").await;
    let got: Vec<(i32, String, i32)> = r
        .iter()
        .map(|r| {
            (
                r.get::<i32, _>(0).unwrap(),
                r.get::<&str, _>(1).unwrap().to_string(),
                r.get::<i32, _>(2).unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![(1, "A".to_string(), 1), (3, "c".to_string(), 0)]);
    batch(&mut c, "TRUNCATE TABLE target").await.unwrap();
    assert_eq!(scalar_i64(&mut c, "SELECT COUNT(*) FROM target").await, 0);
    s.shutdown().await;
}

#[tokio::test]
async fn fault_plan_drops_connection_after_rows() {
    let s = server().await;
    s.execute_sqlite("CREATE TABLE big (id INTEGER, pad TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) INSERT INTO big SELECT i, 'padding padding padding' FROM n;")
        .unwrap();
    let mut c = connect(&s).await;
    assert_eq!(scalar_i64(&mut c, "SELECT COUNT(*) FROM big").await, 5000);
    s.set_faults(FaultPlan {
        drop_after_rows: Some(100),
        drop_after_packets: None,
    });
    let res = async {
        let stream = c.simple_query("SELECT id, pad FROM big").await?;
        stream.into_first_result().await
    }
    .await;
    match res {
        Err(tiberius::error::Error::Io { .. }) => {}
        other => panic!("expected an I/O error, got {other:?}"),
    }
    // The fault disarmed itself: a new connection reads everything.
    let mut c2 = connect(&s).await;
    assert_eq!(rows(&mut c2, "SELECT id FROM big").await.len(), 5000);

    // Packet fault: the login needs 2 packets (prelogin + login), the query then breaks.
    s.set_faults(FaultPlan {
        drop_after_rows: None,
        drop_after_packets: Some(4),
    });
    let mut c3 = connect(&s).await;
    let res = async {
        c3.simple_query("SELECT id, pad FROM big")
            .await?
            .into_first_result()
            .await
    }
    .await;
    assert!(res.is_err(), "packet fault must break the query");
    s.shutdown().await;
}

#[tokio::test]
async fn errors_are_reported_not_panics() {
    let s = server().await;
    let mut c = connect(&s).await;
    let err = batch(&mut c, "DECLARE @x INT = 1")
        .await
        .expect_err("DECLARE is unsupported");
    assert!(err.to_string().contains("does not support"), "{err}");
    let err = batch(&mut c, "SELEC 1").await.expect_err("syntax");
    assert_eq!(err.code(), Some(102));
    let err = batch(&mut c, "SELECT * FROM nope")
        .await
        .expect_err("missing");
    assert_eq!(err.code(), Some(208));
    batch(&mut c, "CREATE TABLE u (id INT PRIMARY KEY)")
        .await
        .unwrap();
    c.execute("INSERT INTO u VALUES (1)", &[]).await.unwrap();
    let err = c
        .execute("INSERT INTO u VALUES (1)", &[])
        .await
        .expect_err("duplicate");
    assert_eq!(err.code(), Some(2627));
    // The connection is still usable.
    assert_eq!(scalar_i64(&mut c, "SELECT COUNT(*) FROM u").await, 1);
    s.shutdown().await;
}

#[tokio::test]
async fn malformed_packets_close_only_that_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = server().await;
    // A packet header announcing a length shorter than the header itself.
    let mut raw = TcpStream::connect(s.addr()).await.unwrap();
    raw.write_all(&[0x12, 0x01, 0x00, 0x02, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(raw.read(&mut buf).await.unwrap_or(0), 0);
    // A LOGIN7 packet full of garbage before any prelogin.
    let mut raw = TcpStream::connect(s.addr()).await.unwrap();
    let mut pkt = vec![0x10, 0x01, 0x00, 0x20, 0, 0, 1, 0];
    pkt.extend_from_slice(&[0xFF; 24]);
    raw.write_all(&pkt).await.unwrap();
    assert_eq!(raw.read(&mut buf).await.unwrap_or(0), 0);
    // The server still serves well-behaved clients.
    let mut c = connect(&s).await;
    assert_eq!(scalar_i64(&mut c, "SELECT 42").await, 42);
    s.shutdown().await;
}

#[tokio::test]
async fn merge_upserts_and_deletes() {
    let s = server().await;
    let mut c = connect(&s).await;
    batch(
        &mut c,
        "CREATE TABLE tgt (id INT PRIMARY KEY, v NVARCHAR(10), n INT);
         CREATE TABLE #src (id INT, v NVARCHAR(10), gone BIT);
         INSERT INTO tgt VALUES (1, N'a', 0), (2, N'b', 0), (3, N'c', 0), (5, N'e', 0);
         INSERT INTO #src VALUES (1, N'A', 0), (2, N'B', 1), (4, N'D', 0)",
    )
    .await
    .unwrap();
    let res = c
        .execute(
            "MERGE INTO dbo.tgt AS t
             USING (SELECT id, v, gone FROM #src) AS s ON t.id = s.id
             WHEN MATCHED AND s.gone = 1 THEN DELETE
             WHEN MATCHED THEN UPDATE SET t.v = s.v, t.n = t.n + 1
             WHEN NOT MATCHED BY TARGET THEN INSERT (id, v, n) VALUES (s.id, s.v, @P1)
             WHEN NOT MATCHED BY SOURCE AND t.id = 5 THEN DELETE;",
            &[&7i32],
        )
        .await
        .unwrap();
    assert_eq!(res.total(), 4);
    let r = rows(&mut c, "SELECT id, v, n FROM tgt ORDER BY id").await;
    let got: Vec<(i32, String, i32)> = r
        .iter()
        .map(|r| {
            (
                r.get::<i32, _>(0).unwrap(),
                r.get::<&str, _>(1).unwrap().to_string(),
                r.get::<i32, _>(2).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(1, "A".into(), 1), (3, "c".into(), 0), (4, "D".into(), 7)]
    );
    s.shutdown().await;
}

/// The extended column query of the bridge's `sqlserver` sink runs as on SQL Server:
/// `COLUMNPROPERTY(OBJECT_ID(QUOTENAME(…) + N'.' + …), …)` tells the IDENTITY key apart, and
/// `QUOTENAME`, `OBJECT_ID` of an expression and string `+` behave as T-SQL's.
#[tokio::test]
async fn the_sink_column_query_reports_identity_columns() {
    let s = server().await;
    let mut c = connect(&s).await;
    batch(
        &mut c,
        "CREATE TABLE dbo.keyed (id INT IDENTITY(1,1) PRIMARY KEY, name NVARCHAR(20) NOT NULL, n INT NULL);
         CREATE TABLE [odd]]name] (a VARCHAR(5) NULL);
         CREATE TABLE #temp_keyed (id INT IDENTITY(1,1) PRIMARY KEY, v INT NULL);",
    )
    .await
    .unwrap();
    // The bridge's query (src/sinks/sqlserver/target.rs, `read_columns`), verbatim.
    let object = "OBJECT_ID(QUOTENAME(TABLE_CATALOG) + N'.' + QUOTENAME(TABLE_SCHEMA) + N'.' + QUOTENAME(TABLE_NAME))";
    let sql = format!(
        "SELECT COLUMN_NAME, DATA_TYPE, IS_NULLABLE, COLUMN_DEFAULT, CHARACTER_MAXIMUM_LENGTH, \
         NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION, COLLATION_NAME, \
         COLUMNPROPERTY({object}, COLUMN_NAME, 'IsIdentity'), \
         COLUMNPROPERTY({object}, COLUMN_NAME, 'IsComputed'), \
         CAST(COLLATIONPROPERTY(COLLATION_NAME, 'CodePage') AS int) \
         FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = @P1 AND TABLE_NAME = @P2 \
         ORDER BY ORDINAL_POSITION"
    );
    // `name|IsIdentity|IsComputed|code page`.
    let columns = |r: &[Row]| -> Vec<String> {
        let int = |row: &Row, i: usize| {
            row.get::<i32, _>(i)
                .map_or("NULL".to_string(), |v| v.to_string())
        };
        r.iter()
            .map(|row| {
                format!(
                    "{}|{}|{}|{}",
                    row.get::<&str, _>(0).unwrap(),
                    int(row, 9),
                    int(row, 10),
                    int(row, 11)
                )
            })
            .collect()
    };
    let r = c
        .query(sql.as_str(), &[&"dbo", &"keyed"])
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(columns(&r), ["id|1|0|NULL", "name|0|0|1252", "n|0|0|NULL"]);
    let r = c
        .query(sql.as_str(), &[&"dbo", &"odd]name"])
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(columns(&r), ["a|0|0|1252"]);

    let r = rows(
        &mut c,
        "SELECT QUOTENAME('a]b') AS q, QUOTENAME('x', '\"') AS dq, QUOTENAME(NULL) AS n,
                N'a' + N'.' + QUOTENAME('b') AS joined, 1 + 2 AS three, '2' + 3 AS five,
                OBJECT_ID('dbo.keyed') AS literal,
                OBJECT_ID(N'[' + DB_NAME() + N'].[dbo].[keyed]') AS expr,
                OBJECT_ID('dbo.keyed', 'U') AS as_table, OBJECT_ID('dbo.keyed', 'V') AS as_view,
                OBJECT_ID('dbo.missing') AS missing,
                OBJECT_ID('tempdb..#temp_keyed') AS temp,
                COLUMNPROPERTY(OBJECT_ID('tempdb..#temp_keyed'), 'id', 'IsIdentity') AS temp_identity,
                COLUMNPROPERTY(OBJECT_ID('dbo.keyed'), 'NAME', 'AllowsNull') AS allows_null,
                COLUMNPROPERTY(OBJECT_ID('dbo.keyed'), 'n', 'ColumnId') AS column_id,
                COLUMNPROPERTY(OBJECT_ID('dbo.keyed'), 'nope', 'IsIdentity') AS no_column,
                COLUMNPROPERTY(OBJECT_ID('dbo.keyed'), 'id', 'NoSuchProperty') AS no_property",
    )
    .await;
    let row = &r[0];
    assert_eq!(row.get::<&str, _>("q"), Some("[a]]b]"));
    assert_eq!(row.get::<&str, _>("dq"), Some("\"x\""));
    assert_eq!(row.get::<&str, _>("n"), None);
    assert_eq!(row.get::<&str, _>("joined"), Some("a.[b]"));
    assert_eq!(row.get::<i64, _>("three"), Some(3));
    assert_eq!(row.get::<i64, _>("five"), Some(5));
    let id = row.get::<i32, _>("literal").expect("an id");
    assert!(id > 0, "{id}");
    assert_eq!(row.get::<i32, _>("expr"), Some(id));
    assert_eq!(row.get::<i32, _>("as_table"), Some(id));
    assert_eq!(row.get::<i32, _>("as_view"), None);
    assert_eq!(row.get::<i32, _>("missing"), None);
    assert!(row.get::<i32, _>("temp").expect("a temp id") < 0);
    assert_eq!(row.get::<i32, _>("temp_identity"), Some(1));
    assert_eq!(row.get::<i32, _>("allows_null"), Some(0));
    assert_eq!(row.get::<i32, _>("column_id"), Some(3));
    assert_eq!(row.get::<i32, _>("no_column"), None);
    assert_eq!(row.get::<i32, _>("no_property"), None);
    s.shutdown().await;
}

#[tokio::test]
async fn information_schema_and_date_functions() {
    let s = server().await;
    let mut c = connect(&s).await;
    batch(
        &mut c,
        "CREATE TABLE dbo.orders (id BIGINT NOT NULL, amount DECIMAL(12,2), note NVARCHAR(200), at DATETIME2(3))",
    )
    .await
    .unwrap();
    let r = c
        .query(
            "SELECT COLUMN_NAME, DATA_TYPE, ORDINAL_POSITION, IS_NULLABLE, CHARACTER_MAXIMUM_LENGTH,
                    NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION
             FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = 'dbo' AND TABLE_NAME = @P1
             ORDER BY ORDINAL_POSITION",
            &[&"orders"],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(r[0].get::<&str, _>("DATA_TYPE"), Some("bigint"));
    assert_eq!(r[0].get::<&str, _>("IS_NULLABLE"), Some("NO"));
    assert_eq!(r[1].get::<&str, _>("DATA_TYPE"), Some("decimal"));
    assert_eq!(r[1].get::<u8, _>("NUMERIC_PRECISION"), Some(12));
    assert_eq!(r[1].get::<i32, _>("NUMERIC_SCALE"), Some(2));
    assert_eq!(r[2].get::<i32, _>("CHARACTER_MAXIMUM_LENGTH"), Some(200));
    assert_eq!(r[3].get::<i32, _>("ORDINAL_POSITION"), Some(4));
    assert_eq!(r[3].get::<i16, _>("DATETIME_PRECISION"), Some(3));
    // Character columns report the server's collation, and its code page.
    let r = c
        .query(
            "SELECT COLUMN_NAME, COLLATION_NAME,
                    CAST(COLLATIONPROPERTY(COLLATION_NAME, 'CodePage') AS int) AS cp
             FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = @P1 ORDER BY ORDINAL_POSITION",
            &[&"orders"],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(r[0].get::<&str, _>("COLLATION_NAME"), None);
    assert_eq!(r[0].get::<i32, _>("cp"), None);
    assert_eq!(
        r[2].get::<&str, _>("COLLATION_NAME"),
        Some("SQL_Latin1_General_CP1_CI_AS")
    );
    assert_eq!(r[2].get::<i32, _>("cp"), Some(1252));
    let tables = rows(
        &mut c,
        "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_TYPE = 'BASE TABLE'",
    )
    .await;
    assert_eq!(tables.len(), 1);

    let r = rows(
        &mut c,
        "SELECT DATEADD(day, 1, CAST('2024-02-28T10:00:00' AS DATETIME2)) AS a,
                DATEDIFF(month, '2023-11-15', '2024-02-01') AS b,
                DATEPART(year, '2024-05-06') AS c,
                CAST('2024-05-06 07:08:09' AS DATE) AS d,
                YEAR(GETDATE()) AS y",
    )
    .await;
    assert_eq!(
        r[0].get::<NaiveDateTime, _>("a"),
        NaiveDate::from_ymd_opt(2024, 2, 29)
            .unwrap()
            .and_hms_opt(10, 0, 0)
    );
    assert_eq!(r[0].get::<i32, _>("b"), Some(3));
    assert_eq!(r[0].get::<i32, _>("c"), Some(2024));
    assert_eq!(
        r[0].get::<NaiveDate, _>("d"),
        NaiveDate::from_ymd_opt(2024, 5, 6)
    );
    assert!(r[0].get::<i32, _>("y").unwrap() >= 2024);
    s.shutdown().await;
}

#[tokio::test]
async fn file_database_persists_across_restarts() {
    let path = std::env::temp_dir().join(format!("tds-test-server-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let config = TdsServerConfig {
        sqlite_path: Some(path.clone()),
        ..Default::default()
    };
    let s = TdsServer::start(config.clone()).await.unwrap();
    let mut c = connect(&s).await;
    batch(
        &mut c,
        "CREATE TABLE kept (id INT); INSERT INTO kept VALUES (1), (2)",
    )
    .await
    .unwrap();
    drop(c);
    s.shutdown().await;
    let s = TdsServer::start(config).await.unwrap();
    let mut c = connect(&s).await;
    assert_eq!(scalar_i64(&mut c, "SELECT COUNT(*) FROM kept").await, 2);
    assert_eq!(
        s.query_sqlite("SELECT SUM(id) FROM kept").unwrap(),
        vec![vec![Some("3".to_string())]]
    );
    drop(c);
    s.shutdown().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Values far larger than a packet (and than the patched tiberius' 64 KiB PLP reads) come back
/// whole, in order, next to short values that share their packets.
#[tokio::test]
async fn large_values_cross_packet_and_chunk_boundaries() {
    let s = server().await;
    let mut c = connect(&s).await;
    batch(
        &mut c,
        "CREATE TABLE big (id INT, t NVARCHAR(MAX), b VARBINARY(MAX), v VARCHAR(200))",
    )
    .await
    .expect("create");
    let text: String = (0..150_000u32)
        .map(|i| char::from_u32(0x41 + (i % 26)).unwrap_or('?'))
        .chain("ñ日本".chars())
        .collect();
    let bytes: Vec<u8> = (0..200_003u32).map(|i| (i % 251) as u8).collect();
    for id in 0..3i32 {
        c.execute(
            "INSERT INTO big VALUES (@P1, @P2, @P3, @P4)",
            &[
                &id,
                &text.as_str(),
                &bytes.as_slice(),
                &format!("short {id}"),
            ],
        )
        .await
        .expect("insert");
    }
    let got = rows(&mut c, "SELECT id, t, b, v FROM big ORDER BY id").await;
    assert_eq!(got.len(), 3);
    for (id, r) in got.iter().enumerate() {
        assert_eq!(r.get::<i32, _>(0), Some(id as i32));
        assert_eq!(r.get::<&str, _>(1), Some(text.as_str()));
        assert_eq!(r.get::<&[u8], _>(2), Some(bytes.as_slice()));
        assert_eq!(r.get::<&str, _>(3), Some(format!("short {id}").as_str()));
    }
}
