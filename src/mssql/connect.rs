//! Connecting to SQL Server with tiberius: one connection, a bb8 pool, and what failed when it fails.
//! Errors are classified so transient faults (resets, deadlocks, Azure throttling) can be retried.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::mssql::settings::SqlServerSettings;

/// A tiberius client over tokio.
pub type Client = tiberius::Client<Compat<TcpStream>>;

/// Server error numbers that are worth retrying: deadlock victim, Azure throttling and failover.
pub const TRANSIENT_SERVER_ERRORS: &[u32] = &[
    1205, 4060, 4221, 10053, 10054, 10060, 10928, 10929, 40143, 40197, 40501, 40540, 40613, 49918,
    49919, 49920, 233, 64,
];

/// The connection phase that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Config,
    Dns,
    Tcp,
    Tls,
    Login,
    Database,
    Query,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Config => "configuration",
            Phase::Dns => "DNS lookup",
            Phase::Tcp => "TCP connection",
            Phase::Tls => "TLS handshake",
            Phase::Login => "login",
            Phase::Database => "opening the database",
            Phase::Query => "query",
        })
    }
}

/// A SQL Server failure: which phase, whether retrying may help, and the server's message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("SQL Server {target}: {phase} failed: {message}")]
pub struct MssqlError {
    pub phase: Phase,
    pub target: String,
    pub message: String,
    /// Server error number, when the server sent one.
    pub code: Option<u32>,
    pub transient: bool,
}

impl MssqlError {
    /// Classifies a tiberius error raised during `phase`.
    pub fn from_tiberius(phase: Phase, target: &str, e: &tiberius::error::Error) -> Self {
        use tiberius::error::Error as T;
        match e {
            T::Server(token) => Self::server(phase, target, token.code(), token.message()),
            T::Io { .. } => Self::new(phase, target, e.to_string(), true),
            T::Tls(_) => Self::new(Phase::Tls, target, e.to_string(), false),
            _ => Self::new(phase, target, e.to_string(), false),
        }
    }

    /// Classifies an `mssql-tds` error raised during `phase`, as [`Self::from_tiberius`] does.
    pub fn from_mssql_tds(phase: Phase, target: &str, e: &mssql_tds::error::Error) -> Self {
        use mssql_tds::error::Error as M;
        match e {
            M::SqlServerError { diagnostics } => match diagnostics.errors.first() {
                Some(first) => Self::server(phase, target, first.number, &first.message),
                None => Self::new(phase, target, e.to_string(), false),
            },
            M::Io(_)
            | M::TimeoutError(_)
            | M::ConnectionError(_)
            | M::ConnectionClosed(_)
            | M::SessionRecoveryFailed { .. }
            | M::SessionNotRecoverable(_) => Self::new(phase, target, e.to_string(), true),
            M::TlsError(_)
            | M::TlsHandshakeError { .. }
            | M::CertificateExpired
            | M::CertificateMismatch
            | M::NoServerCertificate => Self::new(Phase::Tls, target, e.to_string(), false),
            _ => Self::new(phase, target, e.to_string(), false),
        }
    }

    /// A server error number and message raised during `phase`: a failed login or a database
    /// that cannot be opened name their own phase, and the number says whether retrying may help.
    fn server(phase: Phase, target: &str, code: u32, message: &str) -> Self {
        let phase = match code {
            18456 | 18452 | 18486 | 18487 | 18488 => Phase::Login,
            4060 if phase != Phase::Query => Phase::Database,
            _ => phase,
        };
        MssqlError {
            phase,
            target: target.to_string(),
            message: format!("error {code}: {message}"),
            code: Some(code),
            transient: TRANSIENT_SERVER_ERRORS.contains(&code),
        }
    }

    /// A failure without a server error number.
    pub(crate) fn new(
        phase: Phase,
        target: &str,
        message: impl Into<String>,
        transient: bool,
    ) -> Self {
        MssqlError {
            phase,
            target: target.to_string(),
            message: message.into(),
            code: None,
            transient,
        }
    }
}

/// Opens one connection, naming the phase that failed.
pub async fn connect(settings: &SqlServerSettings) -> Result<Client, MssqlError> {
    let target = settings.describe();
    let config = settings
        .to_tiberius()
        .map_err(|e| MssqlError::new(Phase::Config, &target, e.to_string(), false))?;
    let timeout = Duration::from_secs(settings.connect_timeout_secs.unwrap_or(15));
    let addr = config.get_addr();
    let resolved = tokio::time::timeout(timeout, tokio::net::lookup_host(addr.clone()))
        .await
        .map_err(|_| MssqlError::new(Phase::Dns, &target, "timed out", true))?
        .map_err(|e| MssqlError::new(Phase::Dns, &target, e.to_string(), false))?
        .collect::<Vec<_>>();
    let first = resolved
        .first()
        .ok_or_else(|| MssqlError::new(Phase::Dns, &target, "no address found", false))?;
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(first))
        .await
        .map_err(|_| MssqlError::new(Phase::Tcp, &target, "timed out", true))?
        .map_err(|e| MssqlError::new(Phase::Tcp, &target, e.to_string(), true))?;
    tcp.set_nodelay(true)
        .map_err(|e| MssqlError::new(Phase::Tcp, &target, e.to_string(), true))?;
    tokio::time::timeout(
        timeout,
        tiberius::Client::connect(config, tcp.compat_write()),
    )
    .await
    .map_err(|_| MssqlError::new(Phase::Login, &target, "timed out", true))?
    .map_err(|e| MssqlError::from_tiberius(Phase::Login, &target, &e))
}

/// What `bridge test-connection` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionReport {
    pub target: String,
    pub server_version: String,
    pub round_trip_ms: f64,
}

/// Connects, asks the server's version and measures a round trip.
pub async fn test_connection(settings: &SqlServerSettings) -> Result<ConnectionReport, MssqlError> {
    let target = settings.describe();
    let mut client = connect(settings).await?;
    let fail = |e: tiberius::error::Error| MssqlError::from_tiberius(Phase::Query, &target, &e);
    let version: Option<String> = client
        .simple_query("SELECT @@VERSION")
        .await
        .map_err(fail)?
        .into_row()
        .await
        .map_err(fail)?
        .and_then(|row| row.get::<&str, _>(0).map(str::to_string));
    let started = Instant::now();
    client
        .simple_query("SELECT 1")
        .await
        .map_err(fail)?
        .into_results()
        .await
        .map_err(fail)?;
    let round_trip_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(ConnectionReport {
        target,
        server_version: version
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        round_trip_ms,
    })
}

/// A pooled connection. Whoever reads a result marks it `in_doubt` until the result is fully
/// read; a connection still in doubt when it returns (an error or an abandoned stream) is dropped
/// instead of being reused with unread data on the wire.
pub struct PooledClient {
    pub client: Client,
    pub in_doubt: bool,
}

impl std::ops::Deref for PooledClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for PooledClient {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Creates pooled connections.
#[derive(Debug, Clone)]
pub struct Manager {
    settings: SqlServerSettings,
}

impl bb8::ManageConnection for Manager {
    type Connection = PooledClient;
    type Error = MssqlError;

    async fn connect(&self) -> Result<PooledClient, MssqlError> {
        Ok(PooledClient {
            client: connect(&self.settings).await?,
            in_doubt: false,
        })
    }

    async fn is_valid(&self, conn: &mut PooledClient) -> Result<(), MssqlError> {
        let target = self.settings.describe();
        conn.simple_query("SELECT 1")
            .await
            .map_err(|e| MssqlError::from_tiberius(Phase::Query, &target, &e))?
            .into_results()
            .await
            .map_err(|e| MssqlError::from_tiberius(Phase::Query, &target, &e))?;
        Ok(())
    }

    fn has_broken(&self, conn: &mut PooledClient) -> bool {
        conn.in_doubt
    }
}

/// A pool of connections to one server.
pub type Pool = bb8::Pool<Manager>;

/// Builds a pool (connections open lazily, on first use).
pub fn pool(settings: &SqlServerSettings) -> Pool {
    bb8::Pool::builder()
        .max_size(settings.pool_size.unwrap_or(4).max(1))
        .connection_timeout(Duration::from_secs(
            settings.connect_timeout_secs.unwrap_or(15),
        ))
        .test_on_check_out(false)
        .build_unchecked(Manager {
            settings: settings.clone(),
        })
}

/// Builds a pool and opens its first connection now, so an unset host, a closed port or a failed
/// login is reported at once with its phase (the pool on its own only says "timed out" once its
/// connection timeout has passed).
pub async fn open_pool(settings: &SqlServerSettings) -> Result<Pool, MssqlError> {
    let pool = pool(settings);
    let client = connect(settings).await?;
    // A new pool has room for its first connection; if it had none, the pool connects later.
    let _ = pool.add(PooledClient {
        client,
        in_doubt: false,
    });
    Ok(pool)
}
