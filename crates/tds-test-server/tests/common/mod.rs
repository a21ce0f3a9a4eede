//! What the end-to-end tests share: a server on a free port, and tiberius 0.12 logged in to it
//! over plaintext TCP.

#![allow(dead_code)]

use tds_test_server::{TdsServer, TdsServerConfig};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

pub type Conn = Client<Compat<TcpStream>>;

/// A server with the default configuration.
pub async fn server() -> TdsServer {
    TdsServer::start(TdsServerConfig::default())
        .await
        .expect("server starts")
}

/// Logs `user` in to `database` (the test server takes any password).
pub async fn connect_as(server: &TdsServer, database: &str, user: &str) -> tiberius::Result<Conn> {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(server.addr().port());
    config.database(database);
    config.authentication(AuthMethod::sql_server(user, "secret"));
    config.encryption(EncryptionLevel::NotSupported);
    let tcp = TcpStream::connect(server.addr()).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}
