//! `tds-test-server` binary: runs the SQLite-backed TDS test server in the foreground.
//! Usage: `tds-test-server [--port P] [--host H] [--db FILE]` (no `--db` = a scratch file, deleted on exit).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use tds_test_server::{TdsServer, TdsServerConfig};

fn usage() -> ! {
    eprintln!("usage: tds-test-server [--port PORT] [--host ADDR] [--db FILE.db]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut port: u16 = 1433;
    let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut db: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => port = val().parse().unwrap_or_else(|_| usage()),
            "--host" => host = val().parse().unwrap_or_else(|_| usage()),
            "--db" => db = Some(PathBuf::from(val())),
            _ => usage(),
        }
    }
    let config = TdsServerConfig {
        sqlite_path: db,
        ..Default::default()
    };
    let server = match TdsServer::start_at(config, SocketAddr::new(host, port)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tds-test-server: cannot start: {e}");
            std::process::exit(1);
        }
    };
    println!("tds-test-server listening on {}", server.addr());
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
}
