//! driver-probe: tiberius (patched, vendored) against Microsoft's `mssql-tds`, reading rows and
//! bulk-loading them, against a plaintext TDS server on 127.0.0.1. See README.md.
//!
//! ```text
//! driver-probe read --driver tiberius|mssql-tds|mssql-tds-rows --port P --query Q [--packet-size N] [--encrypt off|on|strict]
//! driver-probe bulk --driver tiberius|mssql-tds|none --port P --rows N [--table T] [--prepare-port P2|0]
//! driver-probe prepare --port P [--table T]    # (re)creates the bulk target table only
//! ```
//!
//! Prints one JSON line per run. `rows`, `seconds` and `cpu_s` cover the query (or bulk load)
//! only, from sending it to the last row (or the server's DONE); `connect_s` is the login.
//! `checksum` is a driver-independent, order-independent hash of the normalised values (every
//! driver must print the same one for the same rows).

use std::borrow::Cow;
use std::time::{Duration, Instant};

type Res<T> = Result<T, String>;

// ---------------------------------------------------------------- arguments

struct Args {
    cmd: String,
    driver: String,
    port: u16,
    query: String,
    rows: u64,
    table: String,
    packet_size: Option<u16>,
    encrypt: String,
    /// `bulk`: where to (re)create the target table first (0: skip); default `--port`.
    prepare_port: Option<u16>,
}

fn parse_args() -> Res<Args> {
    let mut it = std::env::args().skip(1);
    let cmd = it
        .next()
        .ok_or("usage: driver-probe read|bulk --driver D --port P ...")?;
    let mut a = Args {
        cmd,
        driver: "tiberius".into(),
        port: 14500,
        query: "SELECT * FROM bench".into(),
        rows: 1_000_000,
        table: "bench_load".into(),
        packet_size: None,
        encrypt: "off".into(),
        prepare_port: None,
    };
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--driver" => a.driver = v,
            "--port" => a.port = v.parse().map_err(|e| format!("--port: {e}"))?,
            "--query" => a.query = v,
            "--rows" => a.rows = v.parse().map_err(|e| format!("--rows: {e}"))?,
            "--table" => a.table = v,
            "--packet-size" => {
                a.packet_size = Some(v.parse().map_err(|e| format!("--packet-size: {e}"))?)
            }
            "--encrypt" => a.encrypt = v,
            "--prepare-port" => {
                a.prepare_port = Some(v.parse().map_err(|e| format!("--prepare-port: {e}"))?)
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

// ---------------------------------------------------------------- measuring

fn cpu_seconds() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

struct Clock {
    wall: Instant,
    cpu: f64,
}

impl Clock {
    fn start() -> Self {
        Clock {
            wall: Instant::now(),
            cpu: cpu_seconds(),
        }
    }
    fn stop(&self) -> (f64, f64) {
        (self.wall.elapsed().as_secs_f64(), cpu_seconds() - self.cpu)
    }
}

fn report(
    a: &Args,
    what: &str,
    connect_s: f64,
    rows: u64,
    (seconds, cpu_s): (f64, f64),
    checksum: u64,
) {
    println!(
        "{{\"driver\":\"{}\",\"op\":\"{what}\",\"rows\":{rows},\"seconds\":{seconds:.3},\"cpu_s\":{cpu_s:.3},\
         \"rows_per_s\":{:.0},\"cpu_s_per_million\":{:.3},\"connect_s\":{connect_s:.3},\"checksum\":\"{checksum:016x}\"}}",
        a.driver,
        rows as f64 / seconds,
        cpu_s * 1e6 / rows.max(1) as f64,
    );
}

// ---------------------------------------------------------------- driver-independent value hash
//
// Normalised forms: integers and bits as i64, decimals as (sign-applied scaled i128, scale),
// text as UTF-8 bytes, datetime2 as (days since 0001-01-01, 100 ns increments), date as days,
// GUID as its canonical u128, floats as IEEE-754 bits, NULL as a marker.

const K: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(K).rotate_left(31)
}

#[derive(Default)]
struct RowHash {
    h: u64,
    sum: u64,
    rows: u64,
}

impl RowHash {
    #[inline]
    fn col(&mut self, col: usize, tag: u64, v: u64) {
        self.h = mix(mix(self.h, ((col as u64) << 8) | tag), v);
    }
    #[inline]
    fn null(&mut self, col: usize) {
        self.col(col, 0, 0)
    }
    #[inline]
    fn int(&mut self, col: usize, v: i64) {
        self.col(col, 1, v as u64)
    }
    #[inline]
    fn f64(&mut self, col: usize, v: f64) {
        self.col(col, 2, v.to_bits())
    }
    #[inline]
    fn decimal(&mut self, col: usize, scaled: i128, scale: u8) {
        self.col(col, 3, scaled as u64);
        self.h = mix(mix(self.h, (scaled >> 64) as u64), scale as u64);
    }
    #[inline]
    fn text(&mut self, col: usize, s: &str) {
        let b = s.as_bytes();
        self.col(col, 4, b.len() as u64);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.h = mix(self.h, u64::from_le_bytes(c.try_into().unwrap()));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.h = mix(self.h, u64::from_le_bytes(last));
    }
    #[inline]
    fn datetime2(&mut self, col: usize, days: u32, increments: u64) {
        self.col(col, 5, days as u64);
        self.h = mix(self.h, increments);
    }
    #[inline]
    fn date(&mut self, col: usize, days: u32) {
        self.col(col, 6, days as u64)
    }
    #[inline]
    fn guid(&mut self, col: usize, g: u128) {
        self.col(col, 7, g as u64);
        self.h = mix(self.h, (g >> 64) as u64);
    }
    #[inline]
    fn end_row(&mut self) {
        self.sum = self.sum.wrapping_add(self.h);
        self.h = 0;
        self.rows += 1;
    }
}

// ---------------------------------------------------------------- tiberius

mod tib {
    use super::*;
    use tiberius::{AuthMethod, Client, ColumnData, Config, EncryptionLevel};
    use tokio::net::TcpStream;
    use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

    pub async fn connect(port: u16) -> Res<Client<Compat<TcpStream>>> {
        let mut config = Config::new();
        config.host("127.0.0.1");
        config.port(port);
        config.database("master");
        config.authentication(AuthMethod::sql_server("sa", "x"));
        config.encryption(EncryptionLevel::NotSupported);
        let tcp = TcpStream::connect(config.get_addr())
            .await
            .map_err(|e| format!("tcp: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        Client::connect(config, tcp.compat_write())
            .await
            .map_err(|e| format!("tiberius connect: {e}"))
    }

    /// What the bridge does (src/sources/sqlserver/mod.rs): a row stream, each row taken apart
    /// with `into_iter()` into `ColumnData` values.
    pub async fn read(a: &Args) -> Res<()> {
        use futures::TryStreamExt;
        let c0 = Clock::start();
        let mut client = connect(a.port).await?;
        let connect_s = c0.stop().0;
        let clock = Clock::start();
        let mut stream = client
            .simple_query(a.query.as_str())
            .await
            .map_err(|e| format!("query: {e}"))?
            .into_row_stream();
        let mut h = RowHash::default();
        while let Some(row) = stream.try_next().await.map_err(|e| format!("row: {e}"))? {
            for (i, v) in row.into_iter().enumerate() {
                hash_value(&mut h, i, v);
            }
            h.end_row();
        }
        drop(stream);
        report(a, "read", connect_s, h.rows, clock.stop(), h.sum);
        Ok(())
    }

    #[inline]
    fn hash_value(h: &mut RowHash, i: usize, v: ColumnData<'_>) {
        match v {
            ColumnData::U8(Some(x)) => h.int(i, x as i64),
            ColumnData::I16(Some(x)) => h.int(i, x as i64),
            ColumnData::I32(Some(x)) => h.int(i, x as i64),
            ColumnData::I64(Some(x)) => h.int(i, x),
            ColumnData::F32(Some(x)) => h.f64(i, x as f64),
            ColumnData::F64(Some(x)) => h.f64(i, x),
            ColumnData::Bit(Some(x)) => h.int(i, x as i64),
            ColumnData::String(Some(s)) => h.text(i, &s),
            ColumnData::Guid(Some(g)) => h.guid(i, g.as_u128()),
            ColumnData::Binary(Some(b)) => h.col(i, 8, b.len() as u64),
            ColumnData::Numeric(Some(n)) => h.decimal(i, n.value(), n.scale()),
            ColumnData::DateTime2(Some(dt)) => {
                // normalise to 100 ns increments
                let t = dt.time();
                let inc = t.increments() * 10u64.pow(7 - t.scale() as u32);
                h.datetime2(i, dt.date().days(), inc)
            }
            ColumnData::Date(Some(d)) => h.date(i, d.days()),
            ColumnData::DateTime(Some(d)) => h.col(i, 9, d.days() as u64),
            _ => h.null(i),
        }
    }

    pub async fn bulk(a: &Args) -> Res<()> {
        use tiberius::TokenRow;
        use tiberius::numeric::Numeric;
        use tiberius::time::{Date, DateTime2, Time};
        let c0 = Clock::start();
        let mut client = connect(a.port).await?;
        let connect_s = c0.stop().0;
        let clock = Clock::start();
        let mut req = client
            .bulk_insert(&a.table)
            .await
            .map_err(|e| format!("bulk_insert: {e}"))?;
        for i in 0..a.rows {
            let r = gen_row(i);
            let mut row = TokenRow::with_capacity(10);
            row.push(ColumnData::I32(Some(r.id)));
            row.push(ColumnData::I64(Some(r.big)));
            row.push(ColumnData::Numeric(
                r.amount.map(|v| Numeric::new_with_scale(v, 4)),
            ));
            row.push(ColumnData::String(r.name.map(Cow::Owned)));
            row.push(ColumnData::DateTime2(Some(DateTime2::new(
                Date::new(r.ts_days),
                Time::new(r.ts_increments, 7),
            ))));
            row.push(ColumnData::Bit(r.flag));
            row.push(ColumnData::Guid(Some(tiberius::Uuid::from_u128(r.guid))));
            row.push(ColumnData::F64(Some(r.score)));
            row.push(ColumnData::Date(Some(Date::new(r.d_days))));
            row.push(ColumnData::String(Some(Cow::Owned(r.note))));
            req.send(row)
                .await
                .map_err(|e| format!("bulk send row {i}: {e}"))?;
        }
        let done = req
            .finalize()
            .await
            .map_err(|e| format!("bulk finalize: {e}"))?;
        let n = done.total();
        if n != a.rows {
            return Err(format!(
                "server reported {n} rows inserted, sent {}",
                a.rows
            ));
        }
        report(a, "bulk", connect_s, n, clock.stop(), 0);
        Ok(())
    }

    /// Drops and re-creates the bulk target table (not timed).
    pub async fn prepare_table(port: u16, table: &str) -> Res<()> {
        let mut client = connect(port).await?;
        let sql = format!(
            "IF OBJECT_ID('{table}') IS NOT NULL DROP TABLE {table}; \
             CREATE TABLE {table} (id INT NOT NULL, big BIGINT, amount DECIMAL(18,4), name NVARCHAR(50), \
             ts DATETIME2, flag BIT, guid UNIQUEIDENTIFIER, score FLOAT, d DATE, note VARCHAR(200))"
        );
        client
            .simple_query(sql)
            .await
            .map_err(|e| format!("prepare: {e}"))?
            .into_results()
            .await
            .map_err(|e| format!("prepare: {e}"))?;
        Ok(())
    }
}

// ---------------------------------------------------------------- mssql-tds

mod mtds {
    use super::*;
    use mssql_tds::connection::bulk_copy::{BulkCopy, BulkLoadRow};
    use mssql_tds::connection::client_context::ClientContext;
    use mssql_tds::connection::tds_client::{ResultSet, StatementResult, TdsClient};
    use mssql_tds::connection_provider::tds_connection_provider::TdsConnectionProvider;
    use mssql_tds::core::{EncryptionSetting, TdsResult};
    use mssql_tds::datatypes::column_values::{
        ColumnValues, SqlDate, SqlDateTime, SqlDateTime2, SqlDateTimeOffset, SqlMoney,
        SqlSmallDateTime, SqlSmallMoney, SqlTime, SqlXml,
    };
    use mssql_tds::datatypes::decoder::DecimalParts;
    use mssql_tds::datatypes::row_writer::RowWriter;
    use mssql_tds::datatypes::sql_json::SqlJson;
    use mssql_tds::datatypes::sql_string::{EncodingType, SqlString};
    use mssql_tds::datatypes::sql_vector::SqlVector;
    use mssql_tds::message::bulk_load::StreamingBulkLoadWriter;

    pub async fn connect(a: &Args) -> Res<TdsClient> {
        let mut ctx = ClientContext::default();
        ctx.user_name = "sa".into();
        ctx.password = "x".into();
        ctx.database = "master".into();
        ctx.encryption_options.mode = match a.encrypt.as_str() {
            "off" => EncryptionSetting::PreferOff,
            "on" => EncryptionSetting::On,
            "strict" => EncryptionSetting::Strict,
            other => return Err(format!("--encrypt {other}: off|on|strict")),
        };
        if let Some(p) = a.packet_size {
            ctx.packet_size = p;
        }
        TdsConnectionProvider {}
            .create_client(ctx, &format!("tcp:127.0.0.1,{}", a.port), None)
            .await
            .map_err(|e| format!("mssql-tds connect: {e} ({e:?})"))
    }

    fn decimal_scaled(d: &DecimalParts) -> i128 {
        let m = d.magnitude() as i128;
        if d.is_positive { m } else { -m }
    }

    /// Push path (`next_row_into`): the decoder calls these methods with each value, strings as
    /// wire bytes + encoding. Text is transcoded into one reusable buffer, as an Arrow
    /// `StringBuilder` would append it.
    struct Hasher {
        h: RowHash,
        buf: String,
    }

    impl Hasher {
        fn string(&mut self, col: usize, bytes: &[u8], enc: EncodingType) {
            self.buf.clear();
            match enc {
                EncodingType::Utf16 => {
                    let units = bytes
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]));
                    for ch in char::decode_utf16(units) {
                        self.buf.push(ch.unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                }
                other => {
                    let enc = other
                        .encoding()
                        .unwrap_or(mssql_tds::encoding_rs::WINDOWS_1252);
                    let (s, _) = enc.decode_without_bom_handling(bytes);
                    self.buf.push_str(&s);
                }
            }
            self.h.text(col, &self.buf);
        }
    }

    impl RowWriter for Hasher {
        fn write_null(&mut self, col: usize) {
            self.h.null(col)
        }
        fn write_bool(&mut self, col: usize, val: bool) {
            self.h.int(col, val as i64)
        }
        fn write_u8(&mut self, col: usize, val: u8) {
            self.h.int(col, val as i64)
        }
        fn write_i16(&mut self, col: usize, val: i16) {
            self.h.int(col, val as i64)
        }
        fn write_i32(&mut self, col: usize, val: i32) {
            self.h.int(col, val as i64)
        }
        fn write_i64(&mut self, col: usize, val: i64) {
            self.h.int(col, val)
        }
        fn write_f32(&mut self, col: usize, val: f32) {
            self.h.f64(col, val as f64)
        }
        fn write_f64(&mut self, col: usize, val: f64) {
            self.h.f64(col, val)
        }
        fn write_string(&mut self, col: usize, bytes: Cow<'_, [u8]>, encoding_type: EncodingType) {
            self.string(col, &bytes, encoding_type)
        }
        fn write_bytes(&mut self, col: usize, bytes: Cow<'_, [u8]>) {
            self.h.col(col, 8, bytes.len() as u64)
        }
        fn write_decimal(&mut self, col: usize, val: DecimalParts) {
            self.h.decimal(col, decimal_scaled(&val), val.scale)
        }
        fn write_numeric(&mut self, col: usize, val: DecimalParts) {
            self.h.decimal(col, decimal_scaled(&val), val.scale)
        }
        fn write_date(&mut self, col: usize, val: SqlDate) {
            self.h.date(col, val.get_days())
        }
        fn write_time(&mut self, col: usize, val: SqlTime) {
            self.h.col(col, 10, val.time_nanoseconds)
        }
        fn write_datetime(&mut self, col: usize, _val: SqlDateTime) {
            self.h.col(col, 9, 0)
        }
        fn write_smalldatetime(&mut self, col: usize, _val: SqlSmallDateTime) {
            self.h.col(col, 11, 0)
        }
        fn write_datetime2(&mut self, col: usize, val: SqlDateTime2) {
            // `time_nanoseconds` is in 100 ns units despite its name (decoder.rs `scale_time_value`)
            self.h.datetime2(col, val.days, val.time.time_nanoseconds)
        }
        fn write_datetimeoffset(&mut self, col: usize, _val: SqlDateTimeOffset) {
            self.h.col(col, 12, 0)
        }
        fn write_money(&mut self, col: usize, _val: SqlMoney) {
            self.h.col(col, 13, 0)
        }
        fn write_smallmoney(&mut self, col: usize, _val: SqlSmallMoney) {
            self.h.col(col, 14, 0)
        }
        fn write_uuid(&mut self, col: usize, val: tiberius::Uuid) {
            self.h.guid(col, val.as_u128())
        }
        fn write_xml(&mut self, col: usize, _val: SqlXml) {
            self.h.col(col, 15, 0)
        }
        fn write_json(&mut self, col: usize, _val: SqlJson) {
            self.h.col(col, 16, 0)
        }
        fn write_vector(&mut self, col: usize, _val: SqlVector) {
            self.h.col(col, 17, 0)
        }
        fn end_row(&mut self) {
            self.h.end_row()
        }
    }

    /// Pull path (`ResultSet::next_row`): one `Vec<ColumnValues>` per row, strings as owned
    /// `SqlString`s decoded with `to_utf8_string()` (the crate's convenience API, like
    /// tiberius' `Row`).
    fn hash_values(h: &mut RowHash, row: Vec<ColumnValues>) {
        for (i, v) in row.into_iter().enumerate() {
            match v {
                ColumnValues::TinyInt(x) => h.int(i, x as i64),
                ColumnValues::SmallInt(x) => h.int(i, x as i64),
                ColumnValues::Int(x) => h.int(i, x as i64),
                ColumnValues::BigInt(x) => h.int(i, x),
                ColumnValues::Real(x) => h.f64(i, x as f64),
                ColumnValues::Float(x) => h.f64(i, x),
                ColumnValues::Decimal(d) | ColumnValues::Numeric(d) => {
                    h.decimal(i, decimal_scaled(&d), d.scale)
                }
                ColumnValues::Bit(b) => h.int(i, b as i64),
                ColumnValues::String(s) => h.text(i, &s.to_utf8_string()),
                ColumnValues::DateTime2(dt) => h.datetime2(i, dt.days, dt.time.time_nanoseconds),
                ColumnValues::Date(d) => h.date(i, d.get_days()),
                ColumnValues::Uuid(g) => h.guid(i, g.as_u128()),
                ColumnValues::Bytes(b) => h.col(i, 8, b.len() as u64),
                ColumnValues::Null => h.null(i),
                _ => h.col(i, 18, 0),
            }
        }
        h.end_row();
    }

    pub async fn read(a: &Args) -> Res<()> {
        let c0 = Clock::start();
        let mut client = connect(a).await?;
        let connect_s = c0.stop().0;
        let clock = Clock::start();
        let first = client
            .execute(a.query.clone(), ())
            .await
            .map_err(|e| format!("execute: {e}"))?;
        if !matches!(first, StatementResult::Rows) {
            return Err(format!("the query returned no result set ({first:?})"));
        }
        let h = if a.driver == "mssql-tds-rows" {
            let mut h = RowHash::default();
            while let Some(row) = client.next_row().await.map_err(|e| format!("row: {e}"))? {
                hash_values(&mut h, row);
            }
            h
        } else {
            let mut w = Hasher {
                h: RowHash::default(),
                buf: String::with_capacity(256),
            };
            while client
                .next_row_into(&mut w)
                .await
                .map_err(|e| format!("row: {e}"))?
            {}
            w.h
        };
        client
            .close_query()
            .await
            .map_err(|e| format!("close_query: {e}"))?;
        report(a, "read", connect_s, h.rows, clock.stop(), h.sum);
        Ok(())
    }

    /// One generated row for `BulkCopy::write_to_server_zerocopy`: each value is handed to the
    /// writer as a `ColumnValues`, in table column order.
    struct BenchRow(GenRow);

    #[async_trait::async_trait]
    impl BulkLoadRow for BenchRow {
        async fn write_to_packet(
            &self,
            w: &mut StreamingBulkLoadWriter<'_>,
            col: &mut usize,
        ) -> TdsResult<()> {
            let r = &self.0;
            let values = [
                ColumnValues::Int(r.id),
                ColumnValues::BigInt(r.big),
                match r.amount {
                    Some(v) => {
                        ColumnValues::Decimal(DecimalParts::new(v >= 0, 18, 4, v.unsigned_abs()))
                    }
                    None => ColumnValues::Null,
                },
                match &r.name {
                    Some(s) => ColumnValues::String(SqlString::from_utf8_string(s.clone())),
                    None => ColumnValues::Null,
                },
                ColumnValues::DateTime2(SqlDateTime2 {
                    days: r.ts_days,
                    // 100 ns units despite the field's name
                    time: SqlTime {
                        time_nanoseconds: r.ts_increments,
                        scale: 7,
                    },
                }),
                match r.flag {
                    Some(b) => ColumnValues::Bit(b),
                    None => ColumnValues::Null,
                },
                ColumnValues::Uuid(tiberius::Uuid::from_u128(r.guid)),
                ColumnValues::Float(r.score),
                ColumnValues::Date(SqlDate::create(r.d_days)?),
                ColumnValues::String(SqlString::from_utf8_string(r.note.clone())),
            ];
            for v in &values {
                w.write_column_value(*col, v).await?;
                *col += 1;
            }
            Ok(())
        }
    }

    pub async fn bulk(a: &Args) -> Res<()> {
        let c0 = Clock::start();
        let mut client = connect(a).await?;
        let connect_s = c0.stop().0;
        let clock = Clock::start();
        let rows = (0..a.rows).map(|i| BenchRow(gen_row(i)));
        let result = BulkCopy::new(&mut client, a.table.clone())
            .timeout(Duration::ZERO)
            .write_to_server_zerocopy(rows)
            .await
            .map_err(|e| format!("bulk copy: {e} ({e:?})"))?;
        report(a, "bulk", connect_s, result.rows_affected, clock.stop(), 0);
        Ok(())
    }
}

// ---------------------------------------------------------------- generated rows (benchlib.py)

/// Row i of benches/benchlib.py `generate(0, n)` (variant 0), in wire-ready units.
struct GenRow {
    id: i32,
    big: i64,
    amount: Option<i128>, // scaled by 10^4
    name: Option<String>,
    ts_days: u32,       // since 0001-01-01
    ts_increments: u64, // 100 ns since midnight
    flag: Option<bool>,
    guid: u128,
    score: f64,
    d_days: u32,
    note: String,
}

/// Days from 0001-01-01 to y-m-d (proleptic Gregorian).
fn days_from_ce(y: i64, m: i64, d: i64) -> u32 {
    // Howard Hinnant's days_from_civil, shifted from 1970-01-01 to 0001-01-01.
    let civil = |y: i64, m: i64, d: i64| {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146097 + doe
    };
    (civil(y, m, d) - civil(1, 1, 1)) as u32
}

fn gen_row(i: u64) -> GenRow {
    let ii = i as i64;
    let null = i % 10 == 7;
    let a = (ii * 7) % 10_000_000 - 5_000_000;
    let f = (ii % 10_000) as i128;
    let amount = (a as i128) * 10_000 + if a < 0 { -f } else { f };
    let total_us = i * 1_000_000 + (i * 7919) % 1_000_000;
    let day_us = 86_400_000_000u64;
    let h1 = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let h2 = i.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut g = [0u8; 16];
    g[..8].copy_from_slice(&h1.to_le_bytes());
    g[8..].copy_from_slice(&h2.to_le_bytes());
    GenRow {
        id: i as i32,
        big: ii * 1_000_003,
        amount: (!null).then_some(amount),
        name: (!null).then(|| format!("name-{i}-ñ")),
        ts_days: days_from_ce(2024, 1, 1) + (total_us / day_us) as u32,
        ts_increments: (total_us % day_us) * 10,
        flag: (i % 10 != 5).then_some(i % 3 == 0),
        guid: u128::from_be_bytes(g),
        score: i as f64 * (1.0 / 7.0), // as polars computes `/ 7.0` in benchlib
        d_days: days_from_ce(2020, 1, 1) + (i % 3650) as u32,
        note: format!("note {i} {}", &"x".repeat(50)[..(i % 50) as usize]),
    }
}

// ---------------------------------------------------------------- main

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let r = async {
        let a = parse_args()?;
        match (a.cmd.as_str(), a.driver.as_str()) {
            ("read", "tiberius") => tib::read(&a).await,
            ("read", "mssql-tds" | "mssql-tds-rows") => mtds::read(&a).await,
            ("bulk", d @ ("tiberius" | "mssql-tds")) => {
                match a.prepare_port.unwrap_or(a.port) {
                    0 => {}
                    port => tib::prepare_table(port, &a.table).await?,
                }
                if d == "tiberius" {
                    tib::bulk(&a).await
                } else {
                    mtds::bulk(&a).await
                }
            }
            ("bulk", "none") => {
                // the rows alone, as both drivers' bulk runs build them (baseline for their cpu_s)
                let clock = Clock::start();
                let mut n = 0u64;
                for i in 0..a.rows {
                    let r = std::hint::black_box(gen_row(i));
                    n += r.note.len() as u64 & 1;
                }
                std::hint::black_box(n);
                report(&a, "bulk", 0.0, a.rows, clock.stop(), 0);
                Ok(())
            }
            ("prepare", _) => tib::prepare_table(a.port, &a.table).await,
            ("connect", "mssql-tds") => mtds::connect(&a)
                .await
                .map(|_| println!("{{\"driver\":\"mssql-tds\",\"connected\":true}}")),
            (cmd, d) => Err(format!("unknown command/driver: {cmd} {d}")),
        }
    }
    .await;
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
