//! `sp_describe_first_result_set` end to end: as a SQL batch (`EXEC …`, positional, without
//! EXEC, inside `sp_executesql`) through tiberius 0.12, and as an RPC by name through a minimal
//! raw TDS client (tiberius cannot send RPCs other than sp_executesql).

use tds_test_server::TdsServer;
use tiberius::{ColumnData, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

use common::{Conn, server};

async fn connect(server: &TdsServer) -> Conn {
    common::connect_as(server, "testdb", "sa").await.unwrap()
}

async fn batch(c: &mut Conn, sql: &str) -> tiberius::Result<Vec<Vec<Row>>> {
    c.simple_query(sql).await?.into_results().await
}

/// The columns every describe result set has, in order.
const RESULT_COLUMNS: [&str; 39] = [
    "is_hidden",
    "column_ordinal",
    "name",
    "is_nullable",
    "system_type_id",
    "system_type_name",
    "max_length",
    "precision",
    "scale",
    "collation_name",
    "user_type_id",
    "user_type_database",
    "user_type_schema",
    "user_type_name",
    "assembly_qualified_type_name",
    "xml_collection_id",
    "xml_collection_database",
    "xml_collection_schema",
    "xml_collection_name",
    "is_xml_document",
    "is_case_sensitive",
    "is_fixed_length_clr_type",
    "source_server",
    "source_database",
    "source_schema",
    "source_table",
    "source_column",
    "is_identity_column",
    "is_part_of_unique_key",
    "is_updateable",
    "is_computed_column",
    "is_sparse_column_set",
    "ordinal_in_order_by_list",
    "order_by_list_length",
    "order_by_is_descending",
    "tds_type_id",
    "tds_length",
    "tds_collation_id",
    "tds_collation_sort_id",
];

/// The interesting part of one describe row.
#[derive(Debug, Clone, PartialEq)]
struct D {
    name: Option<String>,
    nullable: bool,
    type_id: i32,
    type_name: String,
    max_length: i16,
    precision: u8,
    scale: u8,
    collation: Option<String>,
}

const CI_AS: &str = "SQL_Latin1_General_CP1_CI_AS";

#[allow(clippy::too_many_arguments)]
fn d(
    name: Option<&str>,
    nullable: bool,
    type_id: i32,
    type_name: &str,
    max_length: i16,
    precision: u8,
    scale: u8,
    collated: bool,
) -> D {
    D {
        name: name.map(str::to_string),
        nullable,
        type_id,
        type_name: type_name.to_string(),
        max_length,
        precision,
        scale,
        collation: collated.then(|| CI_AS.to_string()),
    }
}

/// Decode a describe result set read by tiberius, checking the fixed columns on the way.
fn decode(rows: &[Row]) -> Vec<D> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let names: Vec<&str> = r.columns().iter().map(|c| c.name()).collect();
            assert_eq!(names, RESULT_COLUMNS);
            assert_eq!(r.get::<bool, _>("is_hidden"), Some(false));
            assert_eq!(r.get::<i32, _>("column_ordinal"), Some(i as i32 + 1));
            assert_eq!(r.get::<i32, _>("user_type_id"), None);
            D {
                name: r.get::<&str, _>("name").map(str::to_string),
                nullable: r.get::<bool, _>("is_nullable").unwrap(),
                type_id: r.get::<i32, _>("system_type_id").unwrap(),
                type_name: r.get::<&str, _>("system_type_name").unwrap().to_string(),
                max_length: r.get::<i16, _>("max_length").unwrap(),
                precision: r.get::<u8, _>("precision").unwrap(),
                scale: r.get::<u8, _>("scale").unwrap(),
                collation: r.get::<&str, _>("collation_name").map(str::to_string),
            }
        })
        .collect()
}

async fn describe(c: &mut Conn, exec: &str) -> Vec<D> {
    let results = batch(c, exec).await.expect("describe succeeds");
    assert_eq!(results.len(), 1, "one result set");
    decode(&results[0])
}

/// `EXEC sp_describe_first_result_set N'<tsql>'` with quotes doubled.
fn exec_of(tsql: &str) -> String {
    format!(
        "EXEC sp_describe_first_result_set @tsql = N'{}'",
        tsql.replace('\'', "''")
    )
}

const CREATE_ALL: &str = "CREATE TABLE dbo.alltypes (
    c_int INT NOT NULL PRIMARY KEY, c_bigint BIGINT NULL,
    c_dec DECIMAL(18,4) NOT NULL, c_num NUMERIC(10,2),
    c_dt2 DATETIME2(7), c_time TIME(3), c_dto DATETIMEOFFSET(7),
    c_nv NVARCHAR(50) NOT NULL, c_nvmax NVARCHAR(MAX), c_vc VARCHAR(200), c_vbmax VARBINARY(MAX),
    c_guid UNIQUEIDENTIFIER, c_bit BIT NOT NULL, c_money MONEY, c_smallmoney SMALLMONEY,
    c_date DATE, c_datetime DATETIME, c_sdt SMALLDATETIME, c_real REAL, c_float FLOAT,
    c_tiny TINYINT, c_small SMALLINT, c_char CHAR(10), c_nchar NCHAR(10), c_bin BINARY(16),
    c_text TEXT, c_ntext NTEXT, c_xml XML)";

fn alltypes_expected() -> Vec<D> {
    vec![
        d(Some("c_int"), false, 56, "int", 4, 10, 0, false),
        d(Some("c_bigint"), true, 127, "bigint", 8, 19, 0, false),
        d(Some("c_dec"), false, 106, "decimal(18,4)", 9, 18, 4, false),
        d(Some("c_num"), true, 108, "numeric(10,2)", 9, 10, 2, false),
        d(Some("c_dt2"), true, 42, "datetime2(7)", 8, 27, 7, false),
        d(Some("c_time"), true, 41, "time(3)", 4, 12, 3, false),
        d(
            Some("c_dto"),
            true,
            43,
            "datetimeoffset(7)",
            10,
            34,
            7,
            false,
        ),
        d(Some("c_nv"), false, 231, "nvarchar(50)", 100, 0, 0, true),
        d(Some("c_nvmax"), true, 231, "nvarchar(max)", -1, 0, 0, true),
        d(Some("c_vc"), true, 167, "varchar(200)", 200, 0, 0, true),
        d(
            Some("c_vbmax"),
            true,
            165,
            "varbinary(max)",
            -1,
            0,
            0,
            false,
        ),
        d(
            Some("c_guid"),
            true,
            36,
            "uniqueidentifier",
            16,
            0,
            0,
            false,
        ),
        d(Some("c_bit"), false, 104, "bit", 1, 1, 0, false),
        d(Some("c_money"), true, 60, "money", 8, 19, 4, false),
        d(
            Some("c_smallmoney"),
            true,
            122,
            "smallmoney",
            4,
            10,
            4,
            false,
        ),
        d(Some("c_date"), true, 40, "date", 3, 10, 0, false),
        d(Some("c_datetime"), true, 61, "datetime", 8, 23, 3, false),
        d(Some("c_sdt"), true, 58, "smalldatetime", 4, 16, 0, false),
        d(Some("c_real"), true, 59, "real", 4, 24, 0, false),
        d(Some("c_float"), true, 62, "float", 8, 53, 0, false),
        d(Some("c_tiny"), true, 48, "tinyint", 1, 3, 0, false),
        d(Some("c_small"), true, 52, "smallint", 2, 5, 0, false),
        d(Some("c_char"), true, 175, "char(10)", 10, 0, 0, true),
        d(Some("c_nchar"), true, 239, "nchar(10)", 20, 0, 0, true),
        d(Some("c_bin"), true, 173, "binary(16)", 16, 0, 0, false),
        d(Some("c_text"), true, 35, "text", 16, 0, 0, true),
        d(Some("c_ntext"), true, 99, "ntext", 16, 0, 0, true),
        d(Some("c_xml"), true, 241, "xml", -1, 0, 0, false),
    ]
}

#[tokio::test]
async fn describes_every_type_of_a_table() {
    let s = server().await;
    let mut c = connect(&s).await;
    batch(&mut c, CREATE_ALL).await.unwrap();
    let expected = alltypes_expected();
    assert_eq!(
        describe(&mut c, &exec_of("SELECT * FROM dbo.alltypes")).await,
        expected
    );
    // Positional, schema-qualified, bracketed, and without EXEC at the start of a batch.
    for exec in [
        "EXEC sp_describe_first_result_set N'SELECT * FROM [dbo].[alltypes]', NULL, 0",
        "EXECUTE sys.sp_describe_first_result_set N'SELECT * FROM alltypes'",
        "sp_describe_first_result_set @tsql = N'SELECT * FROM alltypes'",
        "SET NOCOUNT ON; EXEC [sys].[sp_describe_first_result_set] N'SET NOCOUNT ON; SELECT * FROM alltypes; SELECT 1 AS x'",
    ] {
        let results = batch(&mut c, exec).await.expect(exec);
        let got = decode(results.last().unwrap());
        assert_eq!(got, expected, "{exec}");
    }
    // The describe is computed without running the statement (it would fail at run time).
    batch(
        &mut c,
        "INSERT INTO alltypes (c_int, c_dec, c_nv, c_bit) VALUES (1, 1, N'x', 1)",
    )
    .await
    .unwrap();
    assert_eq!(
        describe(
            &mut c,
            &exec_of("SELECT CAST('not a date' AS DATE) AS d, c_int FROM alltypes")
        )
        .await,
        vec![
            d(Some("d"), true, 40, "date", 3, 10, 0, false),
            d(Some("c_int"), false, 56, "int", 4, 10, 0, false),
        ]
    );
    // Statements without a result set describe as an empty result set.
    let r = batch(&mut c, &exec_of("UPDATE alltypes SET c_bit = 0"))
        .await
        .unwrap();
    assert_eq!(r.len(), 1);
    assert!(r[0].is_empty());
    assert_eq!(
        batch(&mut c, "SELECT c_bit FROM alltypes").await.unwrap()[0][0].get::<bool, _>(0),
        Some(true),
        "the UPDATE was not executed"
    );
    // Browse mode 1 fills the source columns of table columns.
    let r = batch(
        &mut c,
        "EXEC sp_describe_first_result_set N'SELECT c_int AS k, c_nv, 1 AS one FROM alltypes', NULL, 1",
    )
    .await
    .unwrap();
    type Source<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<bool>,
        Option<bool>,
    );
    let src: Vec<Source<'_>> = r[0]
        .iter()
        .map(|r| {
            (
                r.get::<&str, _>("source_database"),
                r.get::<&str, _>("source_table"),
                r.get::<&str, _>("source_column"),
                r.get::<bool, _>("is_part_of_unique_key"),
                r.get::<bool, _>("is_updateable"),
            )
        })
        .collect();
    assert_eq!(
        src,
        vec![
            (
                Some("testdb"),
                Some("alltypes"),
                Some("c_int"),
                Some(true),
                Some(true)
            ),
            (
                Some("testdb"),
                Some("alltypes"),
                Some("c_nv"),
                Some(false),
                Some(true)
            ),
            (None, None, None, None, Some(false)),
        ]
    );
    s.shutdown().await;
}

const CREATE_SHOP: &str = "CREATE TABLE dbo.customers (id INT NOT NULL PRIMARY KEY,
        name NVARCHAR(100) NOT NULL, region VARCHAR(20));
    CREATE TABLE dbo.orders (id INT IDENTITY(1,1) PRIMARY KEY, customer_id INT NOT NULL,
        qty INT NOT NULL, price DECIMAL(12,2) NOT NULL, placed DATETIME2(3) NOT NULL,
        note NVARCHAR(MAX));
    INSERT INTO customers VALUES (1, N'Ann', 'north'), (2, N'Bob', NULL);
    INSERT INTO orders (customer_id, qty, price, placed, note)
        VALUES (1, 3, 2.50, '2024-01-02 03:04:05.123', NULL), (1, 1, 10.00, '2024-02-03 00:00:00.000', N'gift')";

/// The tiberius value kind a described type arrives as.
fn kind_of_type(type_name: &str) -> &'static str {
    match type_name.split('(').next().unwrap() {
        "bigint" => "i64",
        "int" => "i32",
        "float" => "f64",
        "decimal" | "numeric" => "numeric",
        "nvarchar" | "varchar" => "string",
        "datetime2" => "datetime2",
        other => panic!("unexpected type {other}"),
    }
}

fn kind_of_value(v: &ColumnData<'_>) -> &'static str {
    match v {
        ColumnData::I64(_) => "i64",
        ColumnData::I32(_) => "i32",
        ColumnData::F64(_) => "f64",
        ColumnData::Numeric(_) => "numeric",
        ColumnData::String(_) => "string",
        ColumnData::DateTime2(_) => "datetime2",
        other => panic!("unexpected value {other:?}"),
    }
}

/// Run `sql` and check that every column arrives as the type the describe announced.
async fn assert_rows_match(c: &mut Conn, sql: &str, described: &[D]) {
    let rows = batch(c, sql).await.unwrap().remove(0);
    assert!(!rows.is_empty(), "{sql}");
    for row in rows {
        let kinds: Vec<&str> = row.into_iter().map(|v| kind_of_value(&v)).collect();
        let expected: Vec<&str> = described
            .iter()
            .map(|d| kind_of_type(&d.type_name))
            .collect();
        assert_eq!(kinds, expected, "{sql}");
    }
}

#[tokio::test]
async fn describes_joins_and_expressions() {
    let s = server().await;
    let mut c = connect(&s).await;
    batch(&mut c, CREATE_SHOP).await.unwrap();
    let join = "SELECT o.id, c.name AS customer, c.region, o.qty * 2 AS double_qty,
            o.qty * o.price AS total, CAST(o.price AS DECIMAL(18,4)) AS price4,
            UPPER(c.name) AS upper_name, o.qty + 1, N'x' AS lit, ISNULL(o.note, N'') AS note,
            COUNT(*) OVER () AS n
        FROM dbo.orders AS o INNER JOIN [dbo].[customers] c ON c.id = o.customer_id
        ORDER BY o.id";
    let described = describe(&mut c, &exec_of(join)).await;
    assert_eq!(
        described,
        vec![
            // An IDENTITY key is stored as a SQLite rowid and reported as bigint everywhere.
            d(Some("id"), false, 127, "bigint", 8, 19, 0, false),
            d(
                Some("customer"),
                false,
                231,
                "nvarchar(100)",
                200,
                0,
                0,
                true
            ),
            d(Some("region"), true, 167, "varchar(20)", 20, 0, 0, true),
            d(Some("double_qty"), true, 127, "bigint", 8, 19, 0, false),
            d(Some("total"), true, 62, "float", 8, 53, 0, false),
            d(Some("price4"), true, 106, "decimal(18,4)", 9, 18, 4, false),
            d(
                Some("upper_name"),
                true,
                231,
                "nvarchar(100)",
                200,
                0,
                0,
                true
            ),
            d(None, true, 127, "bigint", 8, 19, 0, false),
            d(Some("lit"), false, 231, "nvarchar(4000)", 8000, 0, 0, true),
            d(Some("note"), false, 231, "nvarchar(max)", -1, 0, 0, true),
            d(Some("n"), false, 56, "int", 4, 10, 0, false),
        ]
    );
    assert_rows_match(&mut c, join, &described).await;

    // Outer joins make the NULL-supplying side nullable; aggregates are typed from their input.
    let outer = "SELECT c.id, c.name, o.qty, o.placed, COUNT(*) AS n
        FROM customers c LEFT JOIN orders o ON o.customer_id = c.id
        GROUP BY c.id, c.name, o.qty, o.placed ORDER BY c.id";
    let described = describe(&mut c, &exec_of(outer)).await;
    assert_eq!(
        described,
        vec![
            d(Some("id"), false, 56, "int", 4, 10, 0, false),
            d(Some("name"), false, 231, "nvarchar(100)", 200, 0, 0, true),
            d(Some("qty"), true, 56, "int", 4, 10, 0, false),
            d(Some("placed"), true, 42, "datetime2(3)", 7, 23, 3, false),
            d(Some("n"), false, 56, "int", 4, 10, 0, false),
        ]
    );
    assert_rows_match(&mut c, outer, &described).await;
    let aggregates =
        "SELECT SUM(qty) AS units, MAX(placed) AS last_placed, AVG(price) AS avg_price,
            MIN(price) AS min_price, SUM(price) AS revenue, COUNT_BIG(*) AS n
        FROM orders";
    let described = describe(&mut c, &exec_of(aggregates)).await;
    assert_eq!(
        described,
        vec![
            d(Some("units"), true, 127, "bigint", 8, 19, 0, false),
            d(
                Some("last_placed"),
                true,
                42,
                "datetime2(3)",
                7,
                23,
                3,
                false
            ),
            d(Some("avg_price"), true, 62, "float", 8, 53, 0, false),
            d(
                Some("min_price"),
                true,
                106,
                "decimal(12,2)",
                9,
                12,
                2,
                false
            ),
            d(Some("revenue"), true, 62, "float", 8, 53, 0, false),
            d(Some("n"), false, 127, "bigint", 8, 19, 0, false),
        ]
    );
    assert_rows_match(&mut c, aggregates, &described).await;
    // A computed column is typed even when no row (or a NULL first row) would say so.
    let empty = "SELECT qty * 2 AS q2 FROM orders WHERE 1 = 0";
    let described = describe(&mut c, &exec_of(empty)).await;
    assert_eq!(
        described,
        vec![d(Some("q2"), true, 127, "bigint", 8, 19, 0, false)]
    );
    let mut r = c.simple_query(empty).await.unwrap();
    let cols = r.columns().await.unwrap().unwrap().to_vec();
    // bigint, not the nvarchar(4000) an empty result used to fall back to.
    assert_eq!(cols[0].column_type(), tiberius::ColumnType::Int8);
    r.into_results().await.unwrap();
    // A wildcard next to expressions.
    let star = "SELECT o.*, o.qty * 2 AS d FROM orders o";
    let described = describe(&mut c, &exec_of(star)).await;
    assert_eq!(
        described,
        vec![
            d(Some("id"), false, 127, "bigint", 8, 19, 0, false),
            d(Some("customer_id"), false, 56, "int", 4, 10, 0, false),
            d(Some("qty"), false, 56, "int", 4, 10, 0, false),
            d(Some("price"), false, 106, "decimal(12,2)", 9, 12, 2, false),
            d(Some("placed"), false, 42, "datetime2(3)", 7, 23, 3, false),
            d(Some("note"), true, 231, "nvarchar(max)", -1, 0, 0, true),
            d(Some("d"), true, 127, "bigint", 8, 19, 0, false),
        ]
    );
    assert_rows_match(&mut c, star, &described).await;
    // A CTE and a derived table.
    assert_eq!(
        describe(
            &mut c,
            &exec_of(
                "WITH big AS (SELECT id, qty FROM orders WHERE qty > 1)
                 SELECT b.qty * 1.5 AS q, x.name FROM big b CROSS JOIN (SELECT name FROM customers) x"
            )
        )
        .await,
        vec![
            d(Some("q"), true, 62, "float", 8, 53, 0, false),
            d(Some("name"), false, 231, "nvarchar(100)", 200, 0, 0, true),
        ]
    );
    s.shutdown().await;
}

#[tokio::test]
async fn describes_parameterised_queries() {
    let s = server().await;
    let mut c = connect(&s).await;
    batch(&mut c, CREATE_SHOP).await.unwrap();
    let tsql = "SELECT id, qty * @P1 AS scaled, @P2 AS label, @P4 AS amount FROM orders WHERE customer_id = @P3 AND note = @P2";
    let decl = "@P1 int, @P2 nvarchar(40), @P3 int, @P4 decimal(10, 3)";
    let expected = vec![
        d(Some("id"), false, 127, "bigint", 8, 19, 0, false),
        d(Some("scaled"), true, 127, "bigint", 8, 19, 0, false),
        d(Some("label"), true, 231, "nvarchar(40)", 80, 0, 0, true),
        d(Some("amount"), true, 106, "decimal(10,3)", 9, 10, 3, false),
    ];
    let exec = format!(
        "EXEC sp_describe_first_result_set @tsql = N'{tsql}', @params = N'{decl}', @browse_information_mode = 0"
    );
    assert_eq!(describe(&mut c, &exec).await, expected);
    // Positional.
    let exec = format!("EXEC sp_describe_first_result_set N'{tsql}', N'{decl}'");
    assert_eq!(describe(&mut c, &exec).await, expected);
    // Through sp_executesql, the way a tiberius client passes the text as parameters.
    let rows = c
        .query(
            "EXEC sp_describe_first_result_set @tsql = @P1, @params = @P2",
            &[&tsql, &decl],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(decode(&rows), expected);
    // The same declared types are reported when the statement runs through sp_executesql.
    let rows = c
        .query(
            "SELECT @P1 AS a, @P2 AS b",
            &[&7i32, &tiberius::numeric::Numeric::new_with_scale(12345, 2)],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows[0].get::<i32, _>("a"), Some(7));
    assert_eq!(
        rows[0].get::<tiberius::numeric::Numeric, _>("b"),
        Some(tiberius::numeric::Numeric::new_with_scale(12345, 2))
    );
    // Every parameter must be declared.
    let err = batch(&mut c, &exec_of(tsql)).await.expect_err("undeclared");
    assert_eq!(err.code(), Some(137), "{err}");
    let err = batch(
        &mut c,
        &format!("EXEC sp_describe_first_result_set N'{tsql}', N'@P1 geography'"),
    )
    .await
    .expect_err("bad declaration");
    assert_eq!(err.code(), Some(2715), "{err}");
    s.shutdown().await;
}

#[tokio::test]
async fn describe_errors_are_sql_server_errors() {
    let s = server().await;
    let mut c = connect(&s).await;
    batch(&mut c, CREATE_SHOP).await.unwrap();
    for (tsql, code) in [
        ("SELECT * FROM nosuch", 208),
        ("SELECT nosuch FROM orders", 207),
        ("SELEC 1", 102),
        ("SELECT FROM WHERE", 102),
    ] {
        let err = batch(&mut c, &exec_of(tsql)).await.expect_err(tsql);
        assert_eq!(err.code(), Some(code), "{tsql}: {err}");
    }
    for (exec, code) in [
        ("EXEC sp_describe_first_result_set", 201),
        ("EXEC sp_describe_first_result_set @tsql = 1", 214),
        ("EXEC sp_describe_first_result_set @sql = N'SELECT 1'", 8145),
        (
            "EXEC sp_describe_first_result_set N'SELECT 1', NULL, 7",
            11552,
        ),
        ("EXEC sp_describe_first_result_set @tsql = @nope", 137),
    ] {
        let err = batch(&mut c, exec).await.expect_err(exec);
        assert_eq!(err.code(), Some(code), "{exec}: {err}");
    }
    // Temp tables: fine in a single-statement batch, error 11525 otherwise (as SQL Server).
    batch(&mut c, "CREATE TABLE #tmp (a INT NOT NULL, b NVARCHAR(5))")
        .await
        .unwrap();
    assert_eq!(
        describe(&mut c, &exec_of("SELECT * FROM #tmp")).await,
        vec![
            d(Some("a"), false, 56, "int", 4, 10, 0, false),
            d(Some("b"), true, 231, "nvarchar(5)", 10, 0, 0, true),
        ]
    );
    let err = batch(&mut c, &exec_of("SET NOCOUNT ON; SELECT * FROM #tmp"))
        .await
        .expect_err("temp table in a batch");
    assert_eq!(err.code(), Some(11525), "{err}");
    // The connection keeps working.
    assert_eq!(describe(&mut c, &exec_of("SELECT 1 AS one")).await.len(), 1);
    s.shutdown().await;
}

// ---- A minimal raw TDS client, for RPC requests --------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Columns(Vec<String>),
    Row(Vec<Cell>),
    Error(u32),
    ReturnStatus(i32),
    Done(u8, u16),
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

struct Raw {
    tcp: TcpStream,
}

impl Raw {
    async fn connect(server: &TdsServer) -> Raw {
        let mut raw = Raw {
            tcp: TcpStream::connect(server.addr()).await.unwrap(),
        };
        // LOGIN7: fixed part (94 bytes) with offsets, then user name and database.
        let (user, db) = (utf16("sa"), utf16("testdb"));
        let mut m = vec![0u8; 94];
        m[4..8].copy_from_slice(&0x7400_0004u32.to_le_bytes());
        m[8..12].copy_from_slice(&4096u32.to_le_bytes());
        let put = |m: &mut Vec<u8>, at: usize, off: usize, chars: usize| {
            m[at..at + 2].copy_from_slice(&(off as u16).to_le_bytes());
            m[at + 2..at + 4].copy_from_slice(&(chars as u16).to_le_bytes());
        };
        put(&mut m, 40, 94, 2);
        put(&mut m, 68, 94 + user.len(), 6);
        m.extend(user);
        m.extend(db);
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_le_bytes());
        raw.send(0x10, &m).await;
        let toks = raw.recv().await;
        assert!(matches!(toks.last(), Some(Tok::Done(0xFD, 0))), "{toks:?}");
        raw
    }

    async fn send(&mut self, ty: u8, payload: &[u8]) {
        let chunks: Vec<&[u8]> = payload.chunks(4096 - 8).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let mut p = vec![ty, last as u8];
            p.extend(((chunk.len() + 8) as u16).to_be_bytes());
            p.extend([0, 0, (i + 1) as u8, 0]);
            p.extend_from_slice(chunk);
            self.tcp.write_all(&p).await.unwrap();
        }
    }

    async fn recv(&mut self) -> Vec<Tok> {
        let mut msg = Vec::new();
        loop {
            let mut head = [0u8; 8];
            self.tcp.read_exact(&mut head).await.unwrap();
            let len = u16::from_be_bytes([head[2], head[3]]) as usize;
            let mut body = vec![0u8; len - 8];
            self.tcp.read_exact(&mut body).await.unwrap();
            msg.extend(body);
            if head[1] & 1 != 0 {
                return parse_tokens(&msg);
            }
        }
    }

    /// Call `proc` with (name, value) parameters: Some(text) as nvarchar, None as NULL
    /// nvarchar; a tinyint when the name is `@browse_information_mode`.
    async fn rpc(&mut self, proc: &str, params: &[(&str, Option<&str>)]) -> Vec<Tok> {
        let mut m = Vec::new();
        m.extend(22u32.to_le_bytes());
        m.extend(18u32.to_le_bytes());
        m.extend(2u16.to_le_bytes());
        m.extend(0u64.to_le_bytes());
        m.extend(1u32.to_le_bytes());
        m.extend((proc.encode_utf16().count() as u16).to_le_bytes());
        m.extend(utf16(proc));
        m.extend(0u16.to_le_bytes());
        for (name, value) in params {
            m.push(name.encode_utf16().count() as u8);
            m.extend(utf16(name));
            m.push(0);
            if *name == "@browse_information_mode" {
                m.extend([0x26, 1, 1, value.unwrap().parse::<u8>().unwrap()]);
                continue;
            }
            m.push(0xE7);
            m.extend(8000u16.to_le_bytes());
            m.extend([0x09, 0x04, 0xD0, 0x00, 0x34]);
            match value {
                Some(v) => {
                    let b = utf16(v);
                    m.extend((b.len() as u16).to_le_bytes());
                    m.extend(b);
                }
                None => m.extend(0xFFFFu16.to_le_bytes()),
            }
        }
        self.send(0x03, &m).await;
        self.recv().await
    }
}

fn parse_tokens(b: &[u8]) -> Vec<Tok> {
    let mut at = 0;
    let u8_ = |at: &mut usize| {
        *at += 1;
        b[*at - 1]
    };
    let u16_ = |at: &mut usize| {
        *at += 2;
        u16::from_le_bytes([b[*at - 2], b[*at - 1]])
    };
    let mut types: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    while at < b.len() {
        match u8_(&mut at) {
            0x81 => {
                let n = u16_(&mut at);
                types.clear();
                let mut names = Vec::new();
                for _ in 0..n {
                    at += 6;
                    let code = u8_(&mut at);
                    match code {
                        0x26 | 0x68 => at += 1,
                        0xE7 => at += 7,
                        other => panic!("unexpected type {other:#x}"),
                    }
                    types.push(code);
                    let chars = u8_(&mut at) as usize;
                    let units: Vec<u16> = b[at..at + chars * 2]
                        .chunks(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect();
                    at += chars * 2;
                    names.push(String::from_utf16(&units).unwrap());
                }
                out.push(Tok::Columns(names));
            }
            0xD1 => {
                let mut row = Vec::new();
                for code in &types {
                    if *code == 0xE7 {
                        let n = u16_(&mut at);
                        if n == 0xFFFF {
                            row.push(Cell::Null);
                        } else {
                            let units: Vec<u16> = b[at..at + n as usize]
                                .chunks(2)
                                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                                .collect();
                            at += n as usize;
                            row.push(Cell::Str(String::from_utf16(&units).unwrap()));
                        }
                    } else {
                        let n = u8_(&mut at) as usize;
                        let v = match n {
                            0 => Cell::Null,
                            1 => Cell::Int(b[at] as i64),
                            2 => Cell::Int(i16::from_le_bytes([b[at], b[at + 1]]) as i64),
                            4 => Cell::Int(
                                i32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as i64
                            ),
                            _ => Cell::Int(i64::from_le_bytes(b[at..at + 8].try_into().unwrap())),
                        };
                        at += n;
                        row.push(v);
                    }
                }
                out.push(Tok::Row(row));
            }
            0xAA => {
                let len = u16_(&mut at) as usize;
                out.push(Tok::Error(u32::from_le_bytes(
                    b[at..at + 4].try_into().unwrap(),
                )));
                at += len;
            }
            0xAB | 0xAD | 0xE3 => {
                let len = u16_(&mut at) as usize;
                at += len;
            }
            0x79 => {
                out.push(Tok::ReturnStatus(i32::from_le_bytes(
                    b[at..at + 4].try_into().unwrap(),
                )));
                at += 4;
            }
            t @ 0xFD..=0xFF => {
                let status = u16_(&mut at);
                at += 10;
                out.push(Tok::Done(t, status));
            }
            other => panic!("unexpected token {other:#x} at {at}"),
        }
    }
    out
}

/// A tiberius describe result as raw cells, to compare with the RPC answer.
fn cells(rows: Vec<Row>) -> Vec<Vec<Cell>> {
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| match v {
                    ColumnData::Bit(Some(b)) => Cell::Int(b as i64),
                    ColumnData::U8(Some(i)) => Cell::Int(i as i64),
                    ColumnData::I16(Some(i)) => Cell::Int(i as i64),
                    ColumnData::I32(Some(i)) => Cell::Int(i as i64),
                    ColumnData::String(Some(s)) => Cell::Str(s.into_owned()),
                    ColumnData::Bit(None)
                    | ColumnData::U8(None)
                    | ColumnData::I16(None)
                    | ColumnData::I32(None)
                    | ColumnData::String(None) => Cell::Null,
                    other => panic!("unexpected {other:?}"),
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn rpc_by_name() {
    let s = server().await;
    let mut c = connect(&s).await;
    batch(&mut c, CREATE_ALL).await.unwrap();
    batch(&mut c, CREATE_SHOP).await.unwrap();
    let tsql = "SELECT o.id, c.name, o.qty * @P1 AS scaled FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.qty > @P2";
    let decl = "@P1 int, @P2 int";
    let mut via_batch = batch(
        &mut c,
        &format!("EXEC sp_describe_first_result_set N'{tsql}', N'{decl}'"),
    )
    .await
    .unwrap();
    let expected_rows = cells(via_batch.remove(0));
    assert_eq!(expected_rows.len(), 3);
    // The full row of a direct column, every column as SQL Server lays it out.
    let t = |s: &str| Cell::Str(s.to_string());
    let i = Cell::Int;
    let n = Cell::Null;
    assert_eq!(
        expected_rows[1],
        vec![
            i(0),
            i(2),
            t("name"),
            i(0),
            i(231),
            t("nvarchar(100)"),
            i(200),
            i(0),
            i(0),
            t(CI_AS),
            n.clone(),
            n.clone(),
            n.clone(),
            n.clone(),
            n.clone(),
            n.clone(),
            n.clone(),
            n.clone(),
            n.clone(),
            i(0),
            i(0),
            i(0),
            n.clone(),
            n.clone(),
            n.clone(),
            n.clone(),
            n.clone(),
            i(0),
            n.clone(),
            i(1),
            i(0),
            i(0),
            n.clone(),
            n.clone(),
            n.clone(),
            i(0xE7),
            i(200),
            i(13_632_521),
            i(52),
        ]
    );

    let mut raw = Raw::connect(&s).await;
    for (proc, params) in [
        (
            "sp_describe_first_result_set",
            vec![("@tsql", Some(tsql)), ("@params", Some(decl))],
        ),
        (
            "sys.sp_describe_first_result_set",
            vec![("", Some(tsql)), ("", Some(decl))],
        ),
        (
            "SP_DESCRIBE_FIRST_RESULT_SET",
            vec![
                ("@tsql", Some(tsql)),
                ("@params", Some(decl)),
                ("@browse_information_mode", Some("0")),
            ],
        ),
    ] {
        let toks = raw.rpc(proc, &params).await;
        let Tok::Columns(names) = &toks[0] else {
            panic!("{toks:?}")
        };
        assert_eq!(names, &RESULT_COLUMNS);
        let rows: Vec<Vec<Cell>> = toks
            .iter()
            .filter_map(|t| match t {
                Tok::Row(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(rows, expected_rows, "{proc}");
        assert_eq!(
            &toks[toks.len() - 3..],
            &[
                Tok::Done(0xFF, 0x11),
                Tok::ReturnStatus(0),
                Tok::Done(0xFE, 0)
            ],
            "{proc}"
        );
    }
    // Every type, by RPC.
    let toks = raw
        .rpc(
            "sp_describe_first_result_set",
            &[("@tsql", Some("SELECT * FROM alltypes"))],
        )
        .await;
    let types: Vec<String> = toks
        .iter()
        .filter_map(|t| match t {
            Tok::Row(r) => match &r[5] {
                Cell::Str(s) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let expected: Vec<String> = alltypes_expected()
        .into_iter()
        .map(|d| d.type_name)
        .collect();
    assert_eq!(types, expected);
    // Errors: the statement's error, SQL Server's summary, and the error type as return status.
    for (tsql, errors, status) in [
        ("SELECT * FROM nosuch", [208, 11529], 1),
        ("SELEC 1", [102, 11501], 2),
        ("SELECT nosuch FROM orders", [207, 11501], 2),
    ] {
        let toks = raw
            .rpc("sp_describe_first_result_set", &[("@tsql", Some(tsql))])
            .await;
        assert_eq!(
            toks,
            vec![
                Tok::Error(errors[0]),
                Tok::Error(errors[1]),
                Tok::Done(0xFF, 0x03),
                Tok::ReturnStatus(status),
                Tok::Done(0xFE, 0x02),
            ],
            "{tsql}"
        );
    }
    let toks = raw
        .rpc("sp_describe_first_result_set", &[("@tsql", None)])
        .await;
    assert_eq!(toks[0], Tok::Error(201));
    // An empty result set for statements without results.
    let toks = raw
        .rpc(
            "sp_describe_first_result_set",
            &[("@tsql", Some("DELETE FROM orders"))],
        )
        .await;
    assert!(matches!(&toks[0], Tok::Columns(c) if c.len() == 39));
    assert_eq!(toks[1], Tok::Done(0xFF, 0x11));
    // The connection still answers ordinary requests.
    assert_eq!(
        batch(&mut c, "SELECT COUNT(*) FROM orders").await.unwrap()[0][0].get::<i32, _>(0),
        Some(2)
    );
    s.shutdown().await;
}
