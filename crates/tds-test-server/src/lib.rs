//! A dev-only TDS (SQL Server wire protocol, TDS 7.4, plaintext) test server backed by SQLite.
//! Integration tests and benchmarks talk to it with real SQL Server clients (tiberius, pymssql,
//! python-tds, ConnectorX; Microsoft's mssql-python with its ODBC driver and bulk copy,
//! arrow-odbc over FreeTDS' ODBC driver, FreeTDS' `freebcp`). `clients/check_clients.py`
//! (run by `benches/check.sh` in CI) is where the real clients judge this double.
//!
//! # Usage
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use tds_test_server::{TdsServer, TdsServerConfig};
//! let server = TdsServer::start(TdsServerConfig::default()).await?;
//! println!("listening on {}", server.addr());
//! server.execute_sqlite("CREATE TABLE t (a INTEGER)").unwrap();
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Clients must connect without TLS (tiberius: `EncryptionLevel::NotSupported`). Credentials are
//! ignored, except that the user name `bad` is rejected with error 18456.
//!
//! # Architecture
//!
//! Each TCP connection has a reader task, a writer task and an engine thread owning its own
//! SQLite connection. Results are streamed row by row from SQLite and encoded straight into
//! packets of the size negotiated in LOGIN7; bulk-load rows are decoded straight into a prepared
//! INSERT inside one savepoint. All connections share one database in WAL mode: the file given as
//! `sqlite_path`, or a scratch file in the system temp folder that is deleted with the server.
//! WAL is what makes the locking close to SQL Server's for tests: one writer at a time, but a
//! reader is never blocked by another session's open write transaction.
//!
//! # Storage encoding in SQLite
//!
//! | SQL Server type | SQLite storage |
//! |---|---|
//! | bit, tinyint, smallint, int, bigint | INTEGER (bit as 0/1) |
//! | real, float | REAL |
//! | decimal/numeric(p,s), money, smallmoney | TEXT holding the exact decimal (`-12.3400`) |
//! | date | TEXT `YYYY-MM-DD` |
//! | time(n) | TEXT `HH:MM:SS.fffffff` |
//! | datetime, smalldatetime, datetime2(n) | TEXT `YYYY-MM-DD HH:MM:SS.fffffff` |
//! | datetimeoffset(n) | TEXT `YYYY-MM-DD HH:MM:SS.fffffff +HH:MM` (local time and offset) |
//! | uniqueidentifier | TEXT, uppercase canonical form |
//! | char, varchar, nchar, nvarchar, text, ntext, xml | TEXT (UTF-8) |
//! | binary, varbinary, image | BLOB |
//!
//! Values written by clients (parameters, bulk rows, `CAST` to a date/time type) are stored in
//! exactly these forms; literals are stored as written, and comparisons on date/time columns are
//! textual, so prefer full `YYYY-MM-DD HH:MM:SS.fffffff` literals when comparing. Text read
//! back for date/time columns is parsed leniently (`YYYY-MM-DD[ |T]HH:MM[:SS[.f…]][ ±HH:MM|Z]`,
//! `YYYYMMDD`), so rows inserted with literals work too.
//!
//! Column types are kept in SQLite's declared types: `CREATE TABLE` through TDS rewrites every
//! column type to a quoted canonical T-SQL name (`"DECIMAL(18,4) TEXT"`, `"NVARCHAR(MAX)"`,
//! `"DATETIME2(7)"`, `"FLOAT(24)"` for real, `"TEXT(2147483647)"` for legacy text). The ` TEXT`
//! suffix on exact numerics and xml forces TEXT affinity so SQLite never rounds decimals. Result
//! column types come from `sqlite3_column_decltype`; tables created directly in SQLite map
//! `INTEGER`→bigint, `REAL`→float, `TEXT`→nvarchar(max), `BLOB`→varbinary(max). Computed columns
//! use, in this order, the T-SQL hint of the expression (CAST target, COUNT→int,
//! COUNT_BIG→bigint, LEN→int, …), the static type of the expression (below), or else the first
//! row's value (INTEGER→bigint, REAL→float, TEXT→nvarchar(4000), BLOB→varbinary(max),
//! NULL or no row→nvarchar(4000)).
//!
//! Static expression types follow what SQLite computes, not SQL Server's rules: integer
//! literals→bigint, real literals→float, string literals→nvarchar(4000) (nvarchar(max) beyond
//! 4000 characters), `@P1`→its declared type (`sp_executesql` / `@params` declaration), a column
//! reference→its declared type; `+ - * / %`, unary minus, `SUM`, `ABS`→bigint when every operand
//! is an integer type, float when they are numeric (decimal and money, stored as text, compute
//! as REAL or INTEGER; both are sent as float); `AVG`→float; `MIN`/`MAX`→the argument's type; `UPPER`/`LOWER`/`LTRIM`/`RTRIM`/
//! `TRIM`→the argument's character type; `ISNULL`→the first argument's type; `CASE`/`COALESCE`/
//! `IIF`→the common type of the branches (identical type, bigint, float, or the widest
//! varchar/nvarchar). Anything else (date arithmetic, string functions, …) is untyped.
//!
//! # T-SQL support (translated with sqlparser's MsSqlDialect, then executed by SQLite)
//!
//! | T-SQL | Translation / behaviour |
//! |---|---|
//! | several statements per batch, with or without `;` | one result / DONE each (DONE_MORE on all but the last) |
//! | `[ident]`, `#temp` names, `N'…'` | `"ident"`, `"#temp"`, `'…'` |
//! | `dbo.t`, `db.dbo.t` | `t` (schemas are dropped) |
//! | `WITH (NOLOCK)` table hints, `CLUSTERED`/`NONCLUSTERED`, `COLLATE` in DDL | removed |
//! | `SELECT TOP n` / `TOP (expr)` | `LIMIT n` (`TOP 0 *` also marks columns updateable for bulk insert) |
//! | `OFFSET x ROWS FETCH NEXT y ROWS ONLY` | `LIMIT y OFFSET x` |
//! | `CREATE TABLE` with T-SQL types, `#t` | types rewritten as above; `#t` → `CREATE TEMP TABLE "#t"` |
//! | `IDENTITY(s,i)` column | `INTEGER` (auto-numbered when it is the PRIMARY KEY; reported as bigint) |
//! | `ALTER TABLE … ADD col type`, `DROP TABLE`, `CREATE INDEX`, `CREATE VIEW` | passed through (types rewritten) |
//! | `SELECT … INTO t|#t FROM …` | `CREATE [TEMP] TABLE` with the query's declared column types + `INSERT … SELECT` |
//! | `INSERT … VALUES / SELECT` | passed through |
//! | `UPDATE t SET t.c = … FROM t JOIN s ON …` | `UPDATE t SET c = … FROM s WHERE …` (inner joins only) |
//! | `DELETE t FROM t JOIN s ON … WHERE …` | `DELETE FROM t WHERE EXISTS (SELECT 1 FROM s WHERE …)` |
//! | `TRUNCATE TABLE t` | `DELETE FROM t`; a change-tracked table is refused (4711) |
//! | `MERGE INTO t USING src ON … WHEN [NOT] MATCHED [BY TARGET/SOURCE] [AND …] THEN UPDATE/DELETE/INSERT` | script in a savepoint: stage the inserts against the initial state, BY SOURCE actions, MATCHED actions in clause order, insert staged rows; DONE counts all affected rows |
//! | `INFORMATION_SCHEMA.TABLES`, `INFORMATION_SCHEMA.COLUMNS` | per-connection temp views over `sqlite_master`/`pragma_table_info` with SQL Server column types (`COLLATION_NAME` SQL_Latin1_General_CP1_CI_AS for char/varchar/nchar/nvarchar/text/ntext); internal `__ct_*` tables are hidden |
//! | `INFORMATION_SCHEMA.TABLE_CONSTRAINTS`, `INFORMATION_SCHEMA.KEY_COLUMN_USAGE` | per-connection temp views listing each table's PRIMARY KEY only (named `PK_<table>`, schema `dbo`, `ORDINAL_POSITION` = position in the key); UNIQUE/FOREIGN KEY/CHECK constraints are not listed |
//! | `ALTER DATABASE …`, `ALTER TABLE … ENABLE/DISABLE CHANGE_TRACKING`, `CHANGETABLE(CHANGES …)`, `CHANGE_TRACKING_*`, `sys.change_tracking_*`, `sp_flush_CT_internal_table_on_demand`, `SET TRANSACTION ISOLATION LEVEL` | see "Change tracking" below |
//! | `DB_ID()`, `DB_ID(name)` | 1 (there is one database) |
//! | `COLLATIONPROPERTY(name, 'CodePage' / 'LCID' / 'ComparisonStyle' / 'Version')` | 1252 / 1033 / 196609 / 0 for SQL_Latin1_General_CP1_CI_AS, NULL for other names |
//! | `IF cond stmt [ELSE stmt]` (incl. `BEGIN … END`) | condition evaluated by SQLite, branch executed |
//! | `OBJECT_ID(name [, 'U'/'V'/'TR'])`, name a literal (`'x'`, `'tempdb..#t'`, `'[db].[dbo].[x]'`) or an expression | lookup of the name's last part in `sqlite_master` (tables, views, triggers: id = rowid) / `sqlite_temp_master` (id = -rowid, negative as SQL Server's temp objects) |
//! | `COLUMNPROPERTY(id, column, 'IsIdentity' / 'IsComputed' / 'AllowsNull' / 'ColumnId')` | from `pragma_table_xinfo`: IsIdentity 1 for an IDENTITY column (created as the table's single `INTEGER` primary key), IsComputed 1 for a generated column; NULL for an unknown object, column or property |
//! | `QUOTENAME(s [, q])` | `[s]` with `]` doubled (or `"`, `'`, `()`, `<>`, `{}`, `` ` ``); NULL beyond 128 characters |
//! | `a + b` where one side is a string literal or a string function (`QUOTENAME`, `UPPER`, …, or such a concatenation) and the other is not a number | `a \|\| b` (concatenation); every other `+` adds |
//! | `BEGIN TRAN[SACTION]`, `COMMIT [TRAN]`, `ROLLBACK [TRAN]`, TM requests | SQLite transaction, ENVCHANGE 8/9/10, nesting via `@@TRANCOUNT` |
//! | `SET …` (NOCOUNT, ANSI_*, …), `USE db` | accepted and ignored (`USE` sends ENVCHANGE) |
//! | `CAST`/`CONVERT(type, x)` | numeric/string/binary targets: SQLite cast to the storage class; date/time/GUID targets: normalised to the storage text (`CAST(x AS DATE)` drops the time); the T-SQL type is reported |
//! | `DATEADD`, `DATEDIFF`, `DATEDIFF_BIG`, `DATEPART`, `DATENAME`, `YEAR`, `MONTH`, `DAY` | SQLite functions registered by the server (date part names as in T-SQL, DATEFIRST 7) |
//! | `ISNULL`, `LEN`, `DATALENGTH`, `CHARINDEX`, `NEWID()` | SQLite functions registered by the server |
//! | `GETDATE()`, `GETUTCDATE()`, `SYSDATETIME()`, `SYSUTCDATETIME()` | current UTC time as storage text |
//! | `COUNT_BIG(*)` | `COUNT(*)` reported as bigint; `COUNT(*)` is reported as int |
//! | `@@VERSION`, `SERVERPROPERTY('ProductVersion')`, `@@SPID`, `@@TRANCOUNT`, `@@ROWCOUNT`, `ROWCOUNT_BIG()`, `DB_NAME()`, `SCOPE_IDENTITY()` | fixed / session values |
//! | `sp_executesql` RPC (id 10 or by name) with `@P1…` parameters | parameters bound by name (SQLite accepts `@P1`); `SELECT @P1` reports the declared type |
//! | `sp_describe_first_result_set` RPC (by name only, as SQL Server has no proc id for it; `sys.` prefix allowed) with `@tsql`, `@params`, `@browse_information_mode` (named or positional) | metadata of the first result-returning statement of `@tsql` (THEN branch first for `IF`; none → empty result set), computed by preparing it in SQLite, never running it; see below |
//! | `EXEC[UTE] [sys.]sp_describe_first_result_set @tsql = N'…', @params = N'@P1 int', @browse_information_mode = 0`, positional (`EXEC sp_describe_first_result_set N'…'`), or without `EXEC` as the first statement of a batch | same; inside `sp_executesql` the arguments may be its parameters (`@tsql = @P1`) |
//! | `sp_prepare` (11), `sp_execute` (12), `sp_prepexec` (13), `sp_unprepare` (15) RPCs, by id or name (ODBC drivers, mssql-python) | statements kept per connection under handles 1, 2, …; the handle goes back as a RETURNVALUE after RETURNSTATUS; unknown handle → 8179 (`prepared.rs`) |
//! | `sp_datatype_info_100 @data_type, @ODBCVer` (what ODBC drivers send for `SQLGetTypeInfo`, FreeTDS at connect) | SQL Server's rows for that ODBC type (0: all types) |
//! | `SET FMTONLY ON\|OFF` | queries send COLMETADATA and no rows; other statements do not run |
//! | SqlBulkCopy's metadata batch (SqlClient, mssql-python `bulkcopy`: `SELECT @@TRANCOUNT`, column list from `sys.all_columns`, `SET FMTONLY ON; EXEC(N'SELECT … FROM t')`, `EXEC sp_tablecollations_100 N't'`) | recognised as a whole and answered as SQL Server does for an ordinary table (`bulk_copy.rs`) |
//! | `INSERT BULK t (…)` + BulkLoad packets | rows inserted in one savepoint, DONE with the row count; the message may end with DONE (12 or 8 bytes) or without it (freebcp); DATE's TYPE_INFO has no length byte, as MS-TDS says |
//!
//! Not supported (answered with an ERROR token, never a panic): `MERGE … OUTPUT`, `DECLARE`/variables,
//! `EXEC` of procedures other than `sp_describe_first_result_set`, `sp_tablecollations_100`, `sp_datatype_info_100` and `sp_flush_CT_internal_table_on_demand`, `ELSE IF`, `TOP … PERCENT/WITH TIES`, `FOR XML/JSON`, `OUTPUT`, outer
//! joins in `UPDATE/DELETE … FROM`, savepoints, RPCs other than `sp_executesql`, the prepared
//! statement procedures and `sp_describe_first_result_set`, `sys.*`
//! catalog views other than `sys.change_tracking_databases`/`sys.change_tracking_tables`, MARS, TLS, SSPI. T-SQL functions SQLite does not know (`FORMAT`, …) fail with SQLite's
//! "no such function" message. SQLite errors map to SQL Server numbers: UNIQUE/PRIMARY KEY →
//! 2627, NOT NULL → 515, other constraints → 547, syntax → 102, missing table → 208, missing
//! column → 207, existing table → 2714, anything else → 50000.
//!
//! # Change tracking
//!
//! SQL Server's Change Tracking is emulated with SQLite triggers and internal tables (`__ct_*`,
//! hidden from INFORMATION_SCHEMA; code in `change_tracking.rs`):
//!
//! | T-SQL | Behaviour |
//! |---|---|
//! | `ALTER DATABASE name\|CURRENT SET CHANGE_TRACKING = ON [(CHANGE_RETENTION = n DAYS\|HOURS\|MINUTES, AUTO_CLEANUP = ON\|OFF)]` | enables tracking (default retention 2 DAYS); any database name; already on → 5088 |
//! | `ALTER DATABASE … SET CHANGE_TRACKING = OFF` | disables; 22115 while a table is still tracked |
//! | `ALTER DATABASE … SET ALLOW_SNAPSHOT_ISOLATION ON\|OFF` | allows SNAPSHOT transactions (off by default) |
//! | `ALTER TABLE t ENABLE CHANGE_TRACKING [WITH (TRACK_COLUMNS_UPDATED = ON\|OFF)]` | creates the table's change log and triggers; errors: no table 4902, database not enabled 4996, no primary key 4997, already tracked 4995 |
//! | `ALTER TABLE t DISABLE CHANGE_TRACKING` | drops the log and triggers; not tracked → 4998 |
//! | `CHANGE_TRACKING_CURRENT_VERSION()` | bigint: version of the last committed change (0 before any), NULL while the database is not enabled |
//! | `CHANGE_TRACKING_MIN_VALID_VERSION(id)` | bigint: the version current when tracking was enabled on the table, raised by cleanup; NULL for an untracked or unknown table or a disabled database |
//! | `CHANGETABLE(CHANGES t, last)` (`last` a literal, parameter or NULL) | one row per key changed after `last`: `SYS_CHANGE_VERSION` bigint (its last change), `SYS_CHANGE_CREATION_VERSION` bigint (its last insert after `last`, else NULL), `SYS_CHANGE_OPERATION` nchar(1), `SYS_CHANGE_COLUMNS` varbinary(max) and `SYS_CHANGE_CONTEXT` varbinary(128) (always NULL), then the key columns with their declared types; untracked table → 4998 |
//! | `sys.change_tracking_databases` | `database_id`, `is_auto_cleanup_on`, `retention_period`, `retention_period_units` (1 MINUTES, 2 HOURS, 3 DAYS), `retention_period_units_desc`, `max_cleanup_version`; one row while enabled |
//! | `sys.change_tracking_tables` | `object_id` (as `OBJECT_ID`), `is_track_columns_updated_on`, `min_valid_version`, `begin_version`, `cleanup_version` |
//! | `EXEC [sys.]sp_flush_CT_internal_table_on_demand [@TableToClean =] N'dbo.t'` (literal or parameter) | cleanup of that table, see below |
//! | `SET TRANSACTION ISOLATION LEVEL SNAPSHOT` / `READ COMMITTED` (or another level) | the session's isolation for its next `BEGIN TRAN` |
//!
//! Operations: the last change of a key decides: a delete → `D`; otherwise `I` when the key was
//! inserted after `last` (so insert then update → `I`, and delete then re-insert → `I`), else `U`.
//! Insert then delete after `last` → `D`. An UPDATE that changes a primary key is recorded as a
//! delete of the old key and an insert of the new one. Every write path is tracked: INSERT,
//! UPDATE, DELETE, MERGE, `INSERT BULK`; `TRUNCATE TABLE` of a tracked table is refused (4711).
//!
//! Versions are global to the database and, as in SQL Server, one per transaction: an
//! autocommit statement is its own transaction, an explicit `BEGIN TRAN … COMMIT` gets one
//! version for all its changes, a rollback leaves neither changes nor a version. The version is
//! taken when the transaction first writes to a tracked table, not at commit; since SQLite has
//! one writer at a time the order is the commit order. Writes made straight through SQLite
//! ([`TdsServer::execute_sqlite`]) share one version per admin connection until a session writes.
//!
//! Cleanup happens only on `sp_flush_CT_internal_table_on_demand` (there is no background task,
//! whatever `AUTO_CLEANUP` says): it deletes the table's changes whose version was committed at
//! least the retention period ago and raises the table's minimum valid version (and
//! `cleanup_version`) to the newest expired version; a client whose `last` is at least that
//! version has lost nothing. Retention is measured from the time the version was first written.
//! Extension: `CHANGE_RETENTION = 0 MINUTES` is accepted (SQL Server requires at least 1 minute)
//! so a test can expire every change at once.
//!
//! SNAPSHOT isolation: `BEGIN TRAN` under SNAPSHOT is a deferred SQLite transaction, whose first
//! read fixes a WAL snapshot: later commits of other sessions are not seen, and writers are not
//! blocked. Its first statement fails with 3952 when the database does not allow snapshot
//! isolation. A write in it that conflicts with a newer commit fails with SQLite's busy error
//! (1222), not SQL Server's 3960.
//!
//! Not supported: `CHANGETABLE(VERSION …)`, `CHANGE_TRACKING_IS_COLUMN_IN_MASK`,
//! `WITH CHANGE_TRACKING_CONTEXT`, column-level tracking (`SYS_CHANGE_COLUMNS` is always NULL),
//! change tracking statements in a batch without `;` between them and their neighbours.
//!
//! # sp_describe_first_result_set
//!
//! One row per result column with SQL Server's 39 columns: `is_hidden` (0), `column_ordinal`,
//! `name` (NULL for unnamed expressions), `is_nullable`, `system_type_id`, `system_type_name`
//! (`decimal(18,4)`, `nvarchar(max)`, `datetime2(7)`, …), `max_length` (bytes; nvarchar(50)→100,
//! MAX types and xml→-1, text/ntext→16), `precision`/`scale` (as SQL Server: int 10,0,
//! decimal(p,s) p,s, money 19,4, datetime 23,3, datetime2(n)/time(n)/datetimeoffset(n)
//! 19/8/26 + n + 1 (n = 0: 19/8/26), n; float 53, real 24, bit 1), `collation_name`
//! (SQL_Latin1_General_CP1_CI_AS for char types), `user_type_*`/`xml_collection_*`/
//! `assembly_qualified_type_name` NULL, `is_identity_column`, `is_updateable` (table columns),
//! `source_database`/`source_schema` (dbo)/`source_table`/`source_column` and
//! `is_part_of_unique_key` (PRIMARY KEY) only when `@browse_information_mode` is 1 or 2 (no
//! hidden key columns are added), ORDER BY columns NULL, `tds_type_id`/`tds_length`/
//! `tds_collation_*` as this server sends the column in COLMETADATA.
//!
//! Types are the ones the statement's rows arrive with (see the storage section), so they
//! diverge from SQL Server for expressions (`qty * 2` is bigint, `N'x'` nvarchar(4000),
//! IDENTITY keys bigint). A column reference (also through views, derived tables and CTEs) is
//! nullable unless declared NOT NULL or PRIMARY KEY, and always nullable on the NULL-supplying
//! side of an outer join; expressions are nullable except COUNT/COUNT_BIG, non-NULL literals and
//! ISNULL with such a fallback; parameters are nullable.
//!
//! Errors, like SQL Server: a statement that does not compile sends its own error (208, 207,
//! 102, …) followed by 11529 (missing object) or 11501 (anything else); a parameter used but not
//! declared in `@params` → 137; a bad `@params` → 2715 (unknown type), 134 (duplicate) or 102;
//! a `#temp` table in a batch of several statements → 11525; bad arguments → 201, 214, 8145,
//! 8144, 119 or 11552. As an RPC the return status is the `error_type` (1 MISC, 2 SYNTAX,
//! 10 TEMPORARY_TABLE), from a batch it is always 0.
//!
//! # Protocol notes
//!
//! PRELOGIN answers ENCRYPTION=NOT_SUP (clients that require TLS cannot connect; mssql-python
//! needs `Encrypt=no`, which with NOT_SUP means no TLS at all, as MS-TDS specifies); LOGIN7 is answered with ENVCHANGE (database, collation
//! SQL_Latin1_General_CP1_CI_AS, language, packet size), LOGINACK with the highest common TDS
//! version (7.4 for tiberius) and DONE. Clients older than 7.2 get 4-byte DONE row counts, but
//! date/time and MAX types are always sent in their 7.3/7.2 forms. Result columns are always
//! sent as nullable (INTN, FLTN, …) types with ROW tokens (no NBCROW). varchar/char/text data is
//! sent in code page 1252 (unmappable characters become `?`); nvarchar in UTF-16. An ATTENTION
//! stops the running result at the next row and is answered with DONE(ATTN).
//!
//! # Faults
//!
//! [`FaultPlan`] closes a connection after N ROW tokens of one result, or after N packets sent
//! (counted over all connections from the moment the plan is armed). Each fault fires once.
//! [`TdsServer::write_before`] slips a write in just before a given statement (a concurrent
//! commit as READ COMMITTED would show it).

mod bulk_copy;
mod change_tracking;
mod datatype_info;
mod describe;
mod error;
mod functions;
mod login;
mod prepared;
mod server;
mod session;
mod tokens;
mod translate;
mod types;
mod values;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU16;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub use error::{Error, SqlError};
pub use types::{Len, SqlType};

/// Faults to inject; each fires once and then disarms itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Close the TCP connection right after sending this many ROW tokens of one result set.
    pub drop_after_rows: Option<u64>,
    /// Close the TCP connection that sends the N-th response packet after arming.
    pub drop_after_packets: Option<u64>,
}

/// Server configuration.
#[derive(Debug, Clone, Default)]
pub struct TdsServerConfig {
    /// SQLite database file; `None` = a scratch file private to this server, deleted with it.
    pub sqlite_path: Option<PathBuf>,
    /// Faults armed at start.
    pub faults: FaultPlan,
}

/// A running TDS test server.
pub struct TdsServer {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
    admin: Mutex<rusqlite::Connection>,
    _scratch: Option<ScratchDb>,
}

/// A scratch database folder, removed when the server is dropped.
struct ScratchDb(PathBuf);

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::fmt::Debug for TdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TdsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

static NEXT_SCRATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl TdsServer {
    /// Start a server on 127.0.0.1 with an OS-assigned port.
    pub async fn start(config: TdsServerConfig) -> std::io::Result<TdsServer> {
        Self::start_at(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Start a server listening on `addr`.
    pub async fn start_at(config: TdsServerConfig, addr: SocketAddr) -> std::io::Result<TdsServer> {
        let (db_uri, scratch) = match &config.sqlite_path {
            Some(p) => (p.to_string_lossy().into_owned(), None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "tds-test-server-{}-{}",
                    std::process::id(),
                    NEXT_SCRATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)?;
                let scratch = ScratchDb(dir);
                let uri = scratch.0.join("db.sqlite").to_string_lossy().into_owned();
                (uri, Some(scratch))
            }
        };
        let shared = Arc::new(server::Shared {
            db_uri,
            faults: Arc::new(server::FaultState::new(&config.faults)),
            next_spid: AtomicU16::new(51),
            write_before: Mutex::new(None),
            connections: std::sync::atomic::AtomicU64::new(0),
        });
        let admin = session::open_connection(&shared).map_err(std::io::Error::other)?;
        admin
            .query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .map_err(std::io::Error::other)?;
        change_tracking::create_catalog(&admin).map_err(std::io::Error::other)?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let accept = tokio::spawn(server::accept_loop(listener, shared.clone(), stop_rx));
        tracing::info!("tds-test-server listening on {addr} (db {})", shared.db_uri);
        Ok(TdsServer {
            addr,
            shared,
            stop,
            accept,
            admin: Mutex::new(admin),
            _scratch: scratch,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted since the server started (a client opens one per login), for
    /// tests that bound how often a client connects.
    pub fn connections(&self) -> u64 {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Re-arm the fault plan (replaces the current one and restarts the packet count).
    pub fn set_faults(&self, faults: FaultPlan) {
        self.shared.faults.arm(&faults);
    }

    /// Simulates a write another session commits just before a statement runs, as SQL Server's
    /// READ COMMITTED lets a transaction's later statements see it: the next statement (of any
    /// session) whose SQLite translation starts with `prefix` (case-insensitive, e.g. `DELETE`)
    /// first runs `sqlite` (SQLite SQL) on its own connection. A real concurrent commit cannot be
    /// shown this way, because SQLite transactions are snapshots and the statement would fail
    /// instead; so the write joins the session's transaction, and its rollback undoes it too.
    /// Fires once; calling it again re-arms it.
    pub fn write_before(&self, prefix: &str, sqlite: &str) {
        *self
            .shared
            .write_before
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((prefix.to_string(), sqlite.to_string()));
    }

    fn admin(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run SQLite SQL (one or more statements, SQLite syntax) directly on the database.
    pub fn execute_sqlite(&self, sql: &str) -> Result<(), Error> {
        self.admin().execute_batch(sql)?;
        Ok(())
    }

    /// Run a SQLite query directly and return every value as text (`None` for NULL, blobs as
    /// uppercase hex).
    pub fn query_sqlite(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, Error> {
        use rusqlite::types::ValueRef;
        let conn = self.admin();
        let mut st = conn.prepare(sql)?;
        let n = st.column_count();
        let mut rows = st.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i)? {
                    ValueRef::Null => None,
                    ValueRef::Integer(v) => Some(v.to_string()),
                    ValueRef::Real(v) => Some(v.to_string()),
                    ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Some(b.iter().map(|x| format!("{x:02X}")).collect()),
                });
            }
            out.push(row);
        }
        Ok(out)
    }

    /// Stop accepting, close every connection and wait for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
    }
}
