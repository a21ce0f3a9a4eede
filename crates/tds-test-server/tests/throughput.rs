//! Throughput smoke check (ignored by default): streams and bulk-loads many rows through tiberius.
//! Run with `cargo test --release -p tds-test-server --test throughput -- --ignored --nocapture`.

use std::time::Instant;

use tds_test_server::{TdsServer, TdsServerConfig};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow; run explicitly to measure throughput"]
async fn stream_and_bulk_load_throughput() {
    let n: i64 = std::env::var("TDS_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let s = TdsServer::start(TdsServerConfig::default()).await.unwrap();
    s.execute_sqlite(&format!(
        "CREATE TABLE big (id \"BIGINT\", name \"NVARCHAR(50)\", amount \"DECIMAL(18,4) TEXT\", at \"DATETIME2(7)\");
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n})
         INSERT INTO big SELECT i, 'name ' || i, (i % 1000) || '.1234', '2024-01-01 00:00:00.0000000' FROM c;"
    ))
    .unwrap();
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(s.addr().port());
    config.authentication(AuthMethod::sql_server("sa", "x"));
    config.encryption(EncryptionLevel::NotSupported);
    let tcp = TcpStream::connect(s.addr()).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut c = Client::connect(config, tcp.compat_write()).await.unwrap();

    let t = Instant::now();
    let mut stream = c
        .simple_query("SELECT id, name, amount, at FROM big")
        .await
        .unwrap();
    let mut rows = 0u64;
    use futures_util::TryStreamExt;
    while let Some(item) = stream.try_next().await.unwrap() {
        if item.into_row().is_some() {
            rows += 1;
        }
    }
    drop(stream);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "streamed {rows} rows in {secs:.2}s ({:.0} rows/s)",
        rows as f64 / secs
    );
    assert_eq!(rows, n as u64);

    c.simple_query("CREATE TABLE sink (id BIGINT, name NVARCHAR(50))")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let t = Instant::now();
    let mut req = c.bulk_insert("sink").await.unwrap();
    for i in 0..n / 5 {
        let mut row = tiberius::TokenRow::new();
        row.push(tiberius::ColumnData::I64(Some(i)));
        row.push(tiberius::ColumnData::String(Some(
            format!("name {i}").into(),
        )));
        req.send(row).await.unwrap();
    }
    let total = req.finalize().await.unwrap().total();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "bulk-loaded {total} rows in {secs:.2}s ({:.0} rows/s)",
        total as f64 / secs
    );
    assert_eq!(total, (n / 5) as u64);
    s.shutdown().await;
}
