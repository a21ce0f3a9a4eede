//! A dev-only local HTTP double of the Databricks REST APIs, backed by SQLite and a temp dir.
//! Tests point a real Databricks client at [`DatabricksDouble::base_url`]; every request is checked and recorded.
//!
//! # Usage
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use databricks_double::{DatabricksDouble, DoubleConfig};
//! let dbx = DatabricksDouble::start(DoubleConfig::default()).await?;
//! dbx.add_volume("main", "raw", "landing");
//! dbx.execute_sql("CREATE TABLE main.sales.orders (id BIGINT, amount DECIMAL(18,4))").unwrap();
//! println!("workspace at {}", dbx.base_url());
//! dbx.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Endpoints
//!
//! | endpoint | notes |
//! |---|---|
//! | `POST /oidc/v1/token` | OAuth M2M client credentials (Basic auth or form credentials), `scope=all-apis` |
//! | `GET /oidc/.well-known/oauth-authorization-server` | OIDC discovery (token endpoint) |
//! | `GET /api/2.0/preview/scim/v2/Me` | current user |
//! | `GET /api/2.0/sql/warehouses/{id}` | the one configured warehouse, always RUNNING |
//! | `PUT/GET/HEAD/DELETE /api/2.0/fs/files{path}` | Files API; uploads and downloads stream to/from disk; `Range` supported |
//! | `PUT/GET/HEAD/DELETE /api/2.0/fs/directories{path}` | create (with parents), exists, list (paginated), delete empty |
//! | `POST /api/2.0/sql/statements` | Statement Execution on SQLite; INLINE+JSON_ARRAY, EXTERNAL_LINKS+JSON_ARRAY/ARROW_STREAM |
//! | `GET /api/2.0/sql/statements/{id}` | status, manifest and first chunk (after `pending_polls` RUNNING answers) |
//! | `GET /api/2.0/sql/statements/{id}/result/chunks/{n}` | chunk `n` (inline rows or one external link) |
//! | `POST /api/2.0/sql/statements/{id}/cancel` | cancels a PENDING/RUNNING statement; terminal states are kept |
//! | `GET /__external/{id}/{n}?exp=..&sig=..` | the presigned-URL stand-in: refuses any `Authorization` header (400), a wrong signature or an expired link (`link_ttl`) with 403 |
//!
//! Everything else answers 404 `ENDPOINT_NOT_FOUND`; a known path with the wrong method answers 405.
//! Errors are `{"error_code": ..., "message": ...}` (OAuth errors use RFC 6749 `error`/`error_description`).
//!
//! # SQL
//!
//! One SQLite connection (statements are atomic, like Delta's conditional UPDATE). Before SQLite sees a
//! statement: dotted names (`` `main`.`sales`.`orders` ``, `main.sales.orders`; two-part names and, with
//! `catalog`+`schema`, bare names in table positions) become one identifier `"main.sales.orders"`;
//! double-quoted text is a string literal; Databricks DDL clauses (`USING`, `TBLPROPERTIES`, `COMMENT`,
//! `CLUSTER BY`, `PARTITIONED BY`, `LOCATION`, `OPTIONS`) are dropped; `STRING` becomes `TEXT` (so SQLite keeps
//! text as text); `CREATE OR REPLACE` becomes DROP + CREATE; `TRUNCATE TABLE` becomes DELETE;
//! `CREATE SCHEMA/CATALOG`, `DROP SCHEMA/CATALOG` and `USE` are accepted no-ops; `CREATE VOLUME` creates a
//! Files API volume; `current_timestamp()`/`now()`/`current_date()` become literals; `<=>` becomes `IS`.
//! `MERGE INTO` (WHEN [NOT] MATCHED [BY SOURCE|TARGET] [AND ..] THEN UPDATE SET ..|* / DELETE / INSERT ..|*)
//! runs as several statements in a savepoint and reports Delta's four counters.
//!
//! # Storage encoding in SQLite, and what results carry
//!
//! The manifest (`schema.columns[]`: `name`, `type_text`, `type_name`, `position`, and
//! `type_precision`/`type_scale` for DECIMAL, `type_interval_type` for INTERVAL) and the Arrow
//! types of ARROW_STREAM chunks are those the real API sends: recorded answers of a SQL warehouse
//! (the `sqlexecapi`/`cloudfetchapi` WireMock recordings of
//! <https://github.com/databricks/databricks-jdbc>, `src/test/resources`), and Spark's Arrow
//! mapping (`ArrowUtils.toArrowType`, <https://github.com/apache/spark>,
//! `sql/api/src/main/scala/org/apache/spark/sql/util/ArrowUtils.scala`) for the types the
//! recordings do not show.
//!
//! | Databricks type | SQLite storage | `type_name` / `type_text` | ARROW_STREAM Arrow | JSON_ARRAY text |
//! |---|---|---|---|---|
//! | BOOLEAN | INTEGER 0/1 | BOOLEAN / BOOLEAN | Boolean | `true` |
//! | TINYINT, SMALLINT, INT, BIGINT | INTEGER | BYTE, SHORT, INT, LONG / TINYINT, SMALLINT, INT, BIGINT | Int8, Int16, Int32, Int64 | `-128` |
//! | FLOAT, DOUBLE | REAL | FLOAT, DOUBLE / same | Float32, Float64 | `0.1`, `NaN`, `Infinity` |
//! | DECIMAL(p,s) | p ≤ 15: text or number (NUMERIC affinity, exact to 15 digits); p > 15: exact text, declared `DECIMAL_TEXT(p,s)` (TEXT affinity: compare such columns with quoted literals) | DECIMAL / `DECIMAL(p,s)`, with `type_precision`, `type_scale` | Decimal128(p,s) | exactly `s` decimals |
//! | STRING, VARCHAR(n) | TEXT | STRING / STRING | Utf8 | as is |
//! | BINARY | BLOB | BINARY / BINARY | Binary | base64 |
//! | DATE | TEXT `YYYY-MM-DD` | DATE / DATE | Date32 | `2024-01-02` |
//! | TIMESTAMP | TEXT ISO 8601 (no offset = UTC) | TIMESTAMP / TIMESTAMP | Timestamp(µs, "Etc/UTC"): the session time zone, which the warehouse names `Etc/UTC` by default | `2024-01-02T03:04:05.123Z` |
//! | TIMESTAMP_NTZ | TEXT ISO 8601 wall clock | TIMESTAMP_NTZ / TIMESTAMP_NTZ | Timestamp(µs, None) | `2024-01-02T03:04:05.123` |
//! | VARIANT | compact JSON text (`parse_json(text)` builds it) | VARIANT / VARIANT | Utf8 (the JSON text, as the warehouse sends it) | the JSON text |
//! | INTERVAL YEAR [TO MONTH], INTERVAL MONTH | INTEGER months (or text `Y-M`) | INTERVAL / `INTERVAL YEAR TO MONTH`, `type_interval_type` `YEAR TO MONTH` | Interval(YearMonth) | `1-2` |
//! | INTERVAL DAY/HOUR/MINUTE/SECOND [TO ...] | INTEGER microseconds (or text `D HH:MM:SS.f`) | INTERVAL / `INTERVAL DAY TO SECOND`, `type_interval_type` `DAY TO SECOND` | Duration(µs) | `3 12:30:15.000000000` |
//! | ARRAY<T> (T simple, not DECIMAL) | JSON text in a column declared `ARRAY_OF_T` (`array(a, b)` builds it; `from_json(text, 'array<...>')` keeps it; `to_json(col)` gives it back as a STRING) | ARRAY / `ARRAY<INT>` | List<T> (child `element`) | compact JSON `["a","b"]` |
//! | NULL (`SELECT NULL`) | NULL | NULL / VOID | Null | null |
//!
//! Expression columns without declared type are typed from their values (integer → LONG, real → DOUBLE,
//! text → STRING). ARRAY columns of tables are reported as Databricks does (`type_name` `ARRAY`, `type_text`
//! `ARRAY<STRING>`); `array(...)` expressions, having no declared type, report STRING. Not modelled: MAP and
//! STRUCT columns, a session time zone other than `Etc/UTC`, LZ4 `result_compression`, and NOT NULL
//! columns (the real API marks them non-nullable in the Arrow schema; the double's fields are all nullable).
//! The JSON_ARRAY text of TIMESTAMP_NTZ and INTERVAL values is the double's best guess (the recordings
//! do not show it).

mod engine;
mod error;
mod files;
mod server;
mod statements;
mod translate;
mod types;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use error::Error;
use server::{Injection, Shared, lock};

/// Configuration of a [`DatabricksDouble`].
#[derive(Debug, Clone)]
pub struct DoubleConfig {
    /// The accepted personal access token (`Authorization: Bearer <token>`).
    pub token: String,
    /// `(client_id, client_secret)` accepted at `/oidc/v1/token`; `None` refuses every client.
    pub oauth_client: Option<(String, String)>,
    /// The one SQL warehouse id that exists.
    pub warehouse_id: String,
    /// Rows per result chunk.
    pub chunk_rows: usize,
    /// `GET /statements/{id}` answers RUNNING this many times before the statement runs; the POST then answers PENDING.
    pub pending_polls: u32,
    /// `userName` of SCIM Me.
    pub user_name: String,
    /// How long an external link (presigned URL) works; later it answers 403, as cloud storage
    /// does. Databricks' links last about 15 minutes.
    pub link_ttl: std::time::Duration,
}

impl Default for DoubleConfig {
    fn default() -> Self {
        DoubleConfig {
            token: "dapi-test-token".into(),
            oauth_client: None,
            warehouse_id: "wh-test".into(),
            chunk_rows: 1000,
            pending_polls: 0,
            user_name: "bridge@example.com".into(),
            link_ttl: std::time::Duration::from_secs(15 * 60),
        }
    }
}

/// One request as received, with the status it was answered with.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// Raw (still percent-encoded) path.
    pub path: String,
    pub query: Option<String>,
    /// Raw `Authorization` header value.
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    /// Body bytes received (for uploads: streamed bytes).
    pub body_len: usize,
    /// The body parsed as JSON, when it is JSON (never for uploads).
    pub json: Option<serde_json::Value>,
    pub status: u16,
}

/// A running double on `127.0.0.1:<random port>`. Dropping it stops the server and removes its files.
pub struct DatabricksDouble {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl DatabricksDouble {
    /// Starts the double on 127.0.0.1 with a random port.
    pub async fn start(config: DoubleConfig) -> std::io::Result<DatabricksDouble> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let root = tempfile::Builder::new()
            .prefix("databricks-double-")
            .tempdir()?;
        std::fs::create_dir_all(root.path().join("Volumes"))?;
        let conn = Connection::open_in_memory().map_err(std::io::Error::other)?;
        register_functions(&conn).map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            config,
            base_url: format!("http://{addr}"),
            root,
            db: Mutex::new(conn),
            requests: Mutex::new(Vec::new()),
            injections: Mutex::new(Vec::new()),
            tokens: Mutex::new(HashMap::new()),
            statements: Mutex::new(HashMap::new()),
            volumes: Mutex::new(BTreeSet::new()),
            fs_lock: Mutex::new(()),
        });
        let app = axum::Router::new()
            .fallback(server::dispatch)
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!("databricks double server stopped: {e}");
            }
        });
        Ok(DatabricksDouble {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Answers the next `times` requests whose path starts with `path_prefix` with `status`
    /// (429 → `TOO_MANY_REQUESTS`, 503 → `TEMPORARILY_UNAVAILABLE`), with `Retry-After` when given.
    pub fn fail_next(
        &self,
        path_prefix: &str,
        status: u16,
        retry_after_secs: Option<u64>,
        times: u32,
    ) {
        if times == 0 {
            return;
        }
        lock(&self.shared.injections).push(Injection {
            method: None,
            prefix: path_prefix.to_string(),
            status,
            retry_after: retry_after_secs,
            remaining: times,
            after_running: false,
        });
    }

    /// As [`Self::fail_next`], for `method` requests only (e.g. refuse the `PUT` of a file but
    /// not its `GET`).
    pub fn fail_next_method(&self, method: &str, path_prefix: &str, status: u16, times: u32) {
        if times == 0 {
            return;
        }
        lock(&self.shared.injections).push(Injection {
            method: Some(method.to_ascii_uppercase()),
            prefix: path_prefix.to_string(),
            status,
            retry_after: None,
            remaining: times,
            after_running: false,
        });
    }

    /// Carries out the next `times` `method` requests whose path starts with `path_prefix`, then
    /// answers them with `status` instead of their result: a gateway that timed out (502, 504)
    /// after the workspace did the work. A client that replays such a request does it twice.
    pub fn fail_next_after_running(
        &self,
        method: &str,
        path_prefix: &str,
        status: u16,
        times: u32,
    ) {
        if times == 0 {
            return;
        }
        lock(&self.shared.injections).push(Injection {
            method: Some(method.to_ascii_uppercase()),
            prefix: path_prefix.to_string(),
            status,
            retry_after: None,
            remaining: times,
            after_running: true,
        });
    }

    /// Runs one statement directly (SQLite syntax after the same rewriting as the Statement API).
    pub fn execute_sql(&self, sql: &str) -> Result<(), Error> {
        self.run_direct(sql).map(|_| ())
    }

    /// Runs a query directly and returns its rows rendered like JSON_ARRAY (strings or NULL).
    pub fn query_sql(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, Error> {
        let rs = self.run_direct(sql)?;
        Ok((0..rs.rows)
            .map(|r| {
                rs.columns
                    .iter()
                    .zip(&rs.data)
                    .map(|(c, d)| types::render(&d[r], c.kind))
                    .collect()
            })
            .collect())
    }

    fn run_direct(&self, sql: &str) -> Result<engine::ResultSet, Error> {
        let outcome = {
            let db = lock(&self.shared.db);
            engine::run(&db, sql, None, None, &[], None).map_err(|e| Error::Statement {
                code: e.code.to_string(),
                message: e.message,
            })?
        };
        match outcome {
            engine::Outcome::Rows(rs) => Ok(rs),
            engine::Outcome::CreateVolume { path, .. } => {
                self.shared.add_volume_path(&path);
                Ok(engine::ResultSet::default())
            }
        }
    }

    /// Content of a Files API file, e.g. `/Volumes/main/raw/landing/a.parquet`.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        let vp = files::parse_path(path, 4, false).ok()?;
        std::fs::read(vp.local(self.shared.root.path())).ok()
    }

    /// All file paths under `prefix` (a plain string prefix of `/Volumes/...` paths), sorted.
    pub fn list_files(&self, prefix: &str) -> Vec<String> {
        files::list_all(self.shared.root.path(), prefix)
    }

    /// Writes a file (creating parent directories). Does not create the volume: see [`Self::add_volume`].
    ///
    /// # Panics
    /// On an invalid path (not `/Volumes/c/s/v/...`) or a local write error.
    pub fn put_file(&self, path: &str, bytes: &[u8]) {
        let vp = match files::parse_path(path, 4, false) {
            Ok(vp) => vp,
            Err(e) => panic!("put_file: invalid path {path:?}: {}", e.message),
        };
        let local = vp.local(self.shared.root.path());
        let _g = lock(&self.shared.fs_lock);
        if let Some(parent) = local.parent()
            && let Err(e) = std::fs::create_dir_all(parent)
        {
            panic!("put_file: cannot create {}: {e}", parent.display());
        }
        if let Err(e) = std::fs::write(&local, bytes) {
            panic!("put_file: cannot write {}: {e}", local.display());
        }
    }

    /// Creates a Unity Catalog volume; only paths inside a volume are accepted by the Files API.
    pub fn add_volume(&self, catalog: &str, schema: &str, volume: &str) {
        self.shared
            .add_volume_path(&format!("/Volumes/{catalog}/{schema}/{volume}"));
    }

    /// Stops the server (waiting up to 5 s for in-flight requests) and removes its files.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for DatabricksDouble {
    /// Signals a graceful shutdown; the temp dir goes when the last connection task ends.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Shared {
    /// Registers a volume and creates its root directory; false if it already existed.
    pub(crate) fn add_volume_path(&self, path: &str) -> bool {
        let created = lock(&self.volumes).insert(path.to_string());
        if let Ok(vp) = files::parse_path(path, 3, false) {
            let _ = std::fs::create_dir_all(vp.local(self.root.path()));
        }
        created
    }
}

/// Databricks functions the bridge and notebooks use, over SQLite: `array(a, b, ...)` gives the
/// JSON text `["a","b"]` (how ARRAY<STRING> columns are stored), `from_json(text, 'array<...>')`
/// keeps the JSON text, `to_json(array)` gives it as compact JSON text; `parse_json(text)` checks
/// and compacts JSON text (how VARIANT values are stored).
fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "array",
        -1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            use rusqlite::types::ValueRef;
            let items = (0..ctx.len())
                .map(|i| match ctx.get_raw(i) {
                    ValueRef::Null => serde_json::Value::Null,
                    ValueRef::Integer(n) => n.into(),
                    ValueRef::Real(f) => f.into(),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned().into()
                    }
                })
                .collect::<Vec<serde_json::Value>>();
            Ok(serde_json::Value::Array(items).to_string())
        },
    )?;
    conn.create_scalar_function(
        "from_json",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| ctx.get::<Option<String>>(0),
    )?;
    conn.create_scalar_function(
        "parse_json",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let Some(text) = ctx.get::<Option<String>>(0)? else {
                return Ok(None);
            };
            serde_json::from_str::<serde_json::Value>(&text)
                .map(|v| Some(v.to_string()))
                .map_err(|e| {
                    rusqlite::Error::UserFunctionError(
                        format!("[MALFORMED_RECORD_IN_PARSING] parse_json: {e}").into(),
                    )
                })
        },
    )?;
    conn.create_scalar_function(
        "to_json",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let Some(text) = ctx.get::<Option<String>>(0)? else {
                return Ok(None);
            };
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v @ (serde_json::Value::Array(_) | serde_json::Value::Object(_))) => {
                    Ok(Some(v.to_string()))
                }
                _ => Err(rusqlite::Error::UserFunctionError(
                    "[DATATYPE_MISMATCH] to_json needs an ARRAY, MAP or STRUCT".into(),
                )),
            }
        },
    )
}
