//! SQL Server Change Tracking emulated on SQLite: the database/table switches, the change log
//! kept by triggers, `CHANGETABLE(CHANGES …)`, cleanup, and the statements that are matched on
//! their tokens because sqlparser cannot parse them (see the crate docs, "Change tracking").

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};
use sqlparser::dialect::MsSqlDialect;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::error::{SqlError, map_sqlite_error};
use crate::translate::{Ctx, Step, translate_batch};

/// Database-wide settings (one row): change tracking, retention, snapshot isolation.
const DATABASE: &str = "__ct_database";
/// The global version counter (one row) and the token of the transaction that last bumped it.
const VERSION: &str = "__ct_version";
/// Commit time (julian day) of every version, for retention.
const COMMITS: &str = "__ct_commits";
/// Tracked tables.
const TABLES: &str = "__ct_tables";
/// `SYS_CHANGE_OPERATION` values, typed nchar(1) (see `changes_sql`).
const OPS: &str = "__ct_ops";

/// Prefix of internal objects, hidden from INFORMATION_SCHEMA.
pub(crate) const INTERNAL_PREFIX: &str = "__ct_";

/// Source of transaction tokens, unique over every connection of the process.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// A connection's current transaction token: the triggers give every change made under one token
/// the same version. The session takes a new token per transaction (autocommit statement or
/// `BEGIN TRAN`).
#[derive(Debug, Clone)]
pub(crate) struct Token64(Arc<AtomicU64>);

impl Token64 {
    /// Start a new transaction: later changes get a new version.
    pub(crate) fn renew(&self) {
        self.0.store(
            NEXT_TOKEN.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }
}

/// Register `__CT_TOKEN()` (the connection's transaction token) and create the internal tables.
pub(crate) fn register(conn: &Connection) -> rusqlite::Result<Token64> {
    let token = Token64(Arc::new(AtomicU64::new(
        NEXT_TOKEN.fetch_add(1, Ordering::Relaxed),
    )));
    let t = token.0.clone();
    conn.create_scalar_function(
        "__CT_TOKEN",
        0,
        rusqlite::functions::FunctionFlags::SQLITE_UTF8,
        move |_| Ok(t.load(Ordering::Relaxed) as i64),
    )?;
    Ok(token)
}

/// Create the internal tables if they are missing (server start).
pub(crate) fn create_catalog(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {DATABASE} (
           id INTEGER PRIMARY KEY CHECK (id = 1),
           database_id \"INT\" NOT NULL DEFAULT 1,
           enabled \"BIT\" NOT NULL DEFAULT 0,
           is_auto_cleanup_on \"BIT\" NOT NULL DEFAULT 1,
           retention_period \"INT\" NOT NULL DEFAULT 2,
           retention_period_units \"TINYINT\" NOT NULL DEFAULT 3,
           retention_period_units_desc \"NVARCHAR(60)\" NOT NULL DEFAULT 'DAYS',
           retention_minutes INTEGER NOT NULL DEFAULT 2880,
           max_cleanup_version \"BIGINT\",
           snapshot_allowed INTEGER NOT NULL DEFAULT 0);
         INSERT OR IGNORE INTO {DATABASE} (id) VALUES (1);
         CREATE TABLE IF NOT EXISTS {VERSION} (
           id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, token INTEGER);
         INSERT OR IGNORE INTO {VERSION} (id, version) VALUES (1, 0);
         CREATE TABLE IF NOT EXISTS {COMMITS} (version INTEGER PRIMARY KEY, at REAL NOT NULL);
         CREATE TABLE IF NOT EXISTS {TABLES} (
           name TEXT PRIMARY KEY COLLATE NOCASE,
           is_track_columns_updated_on \"BIT\" NOT NULL,
           begin_version \"BIGINT\" NOT NULL,
           min_valid_version \"BIGINT\" NOT NULL,
           cleanup_version \"BIGINT\" NOT NULL DEFAULT 0);
         CREATE TABLE IF NOT EXISTS {OPS} (code TEXT PRIMARY KEY, SYS_CHANGE_OPERATION \"NCHAR(1)\");
         INSERT OR IGNORE INTO {OPS} VALUES ('I', 'I'), ('U', 'U'), ('D', 'D');"
    ))
}

/// Per-connection views: `sys.change_tracking_databases`, `sys.change_tracking_tables`.
pub(crate) fn create_views(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "DROP VIEW IF EXISTS temp.\"sys.change_tracking_databases\";
         DROP VIEW IF EXISTS temp.\"sys.change_tracking_tables\";
         CREATE TEMP VIEW \"sys.change_tracking_databases\" AS
           SELECT database_id, is_auto_cleanup_on, retention_period, retention_period_units,
                  retention_period_units_desc, max_cleanup_version
           FROM main.{DATABASE} WHERE enabled;
         CREATE TEMP VIEW \"sys.change_tracking_tables\" AS
           SELECT m.rowid AS object_id, t.is_track_columns_updated_on, t.min_valid_version,
                  t.begin_version, t.cleanup_version
           FROM main.{TABLES} t JOIN main.sqlite_master m
             ON m.type = 'table' AND m.name = t.name COLLATE NOCASE
           WHERE (SELECT enabled FROM main.{DATABASE});"
    ))
}

/// SQL for `CHANGE_TRACKING_CURRENT_VERSION()`: NULL unless the database is enabled.
pub(crate) fn current_version_sql() -> String {
    format!(
        "(SELECT CASE WHEN d.enabled THEN v.version END FROM main.{DATABASE} d, main.{VERSION} v)"
    )
}

/// SQL for `CHANGE_TRACKING_MIN_VALID_VERSION(id)`, `id` already translated.
pub(crate) fn min_valid_version_sql(id: &str) -> String {
    format!(
        "(SELECT t.min_valid_version FROM main.{TABLES} t JOIN main.sqlite_master m \
           ON m.type = 'table' AND m.name = t.name COLLATE NOCASE \
         WHERE m.rowid = ({id}) AND (SELECT enabled FROM main.{DATABASE}))"
    )
}

/// A statement handled here rather than by sqlparser.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// `ALTER DATABASE x SET CHANGE_TRACKING = ON [(CHANGE_RETENTION = n unit, AUTO_CLEANUP = ON|OFF)]`.
    DatabaseOn {
        /// (value, unit name, minutes)
        retention: Option<(i64, String, i64)>,
        auto_cleanup: Option<bool>,
    },
    /// `ALTER DATABASE x SET CHANGE_TRACKING (CHANGE_RETENTION = n unit, AUTO_CLEANUP = ON|OFF)`:
    /// new options for a database that tracks changes.
    DatabaseOptions {
        retention: Option<(i64, String, i64)>,
        auto_cleanup: Option<bool>,
    },
    /// `ALTER DATABASE x SET CHANGE_TRACKING = OFF`.
    DatabaseOff,
    /// `ALTER DATABASE x SET ALLOW_SNAPSHOT_ISOLATION ON|OFF`.
    AllowSnapshot(bool),
    /// `ALTER TABLE t ENABLE CHANGE_TRACKING [WITH (TRACK_COLUMNS_UPDATED = ON|OFF)]`.
    Enable { table: String, track_columns: bool },
    /// `ALTER TABLE t DISABLE CHANGE_TRACKING`.
    Disable { table: String },
    /// `EXEC sys.sp_flush_CT_internal_table_on_demand [@TableToClean =] name`.
    Flush(FlushArg),
    /// `SET TRANSACTION ISOLATION LEVEL …`: true for SNAPSHOT.
    Isolation(bool),
}

/// The table argument of the flush procedure: a literal or a parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FlushArg {
    Literal(String),
    Param(String),
}

/// The tokens of a statement without whitespace and comments.
struct Words<'a>(Vec<&'a Token>);

impl Words<'_> {
    fn word(&self, i: usize) -> Option<String> {
        match self.0.get(i) {
            Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn is(&self, i: usize, kw: &str) -> bool {
        self.word(i).as_deref() == Some(kw)
    }

    fn tok(&self, i: usize) -> Option<&Token> {
        self.0.get(i).copied()
    }

    /// A possibly dotted name starting at `i`: (last part, index after the name).
    fn name(&self, mut i: usize) -> Option<(String, usize)> {
        loop {
            let Some(Token::Word(w)) = self.tok(i) else {
                return None;
            };
            i += 1;
            if self.tok(i) == Some(&Token::Period) {
                i += 1;
                continue;
            }
            return Some((w.value.clone(), i));
        }
    }

    fn on_off(&self, i: usize) -> Option<bool> {
        match self.word(i)?.as_str() {
            "ON" => Some(true),
            "OFF" => Some(false),
            _ => None,
        }
    }
}

fn bad(what: &str) -> SqlError {
    SqlError::syntax(format!("Incorrect syntax near '{what}'."))
}

/// Recognise one statement's tokens as a [`Command`].
fn command(w: &Words<'_>) -> Option<Result<Command, SqlError>> {
    let n = w.0.len();
    if w.is(0, "ALTER") && w.is(1, "DATABASE") {
        // Any database name, or CURRENT.
        let (_, mut i) = w.name(2)?;
        if !w.is(i, "SET") {
            return None;
        }
        i += 1;
        if w.is(i, "ALLOW_SNAPSHOT_ISOLATION") {
            return Some(
                w.on_off(i + 1)
                    .filter(|_| i + 2 == n)
                    .map(Command::AllowSnapshot)
                    .ok_or_else(|| bad("ALLOW_SNAPSHOT_ISOLATION")),
            );
        }
        if !w.is(i, "CHANGE_TRACKING") {
            return None;
        }
        if w.tok(i + 1) == Some(&Token::LParen) {
            return Some(database_options(w, i + 1).and_then(|cmd| match cmd {
                Command::DatabaseOn {
                    retention,
                    auto_cleanup,
                } if retention.is_some() || auto_cleanup.is_some() => {
                    Ok(Command::DatabaseOptions {
                        retention,
                        auto_cleanup,
                    })
                }
                _ => Err(bad("CHANGE_TRACKING")),
            }));
        }
        if w.tok(i + 1) != Some(&Token::Eq) {
            return Some(Err(bad("CHANGE_TRACKING")));
        }
        return Some(match w.on_off(i + 2) {
            Some(false) if i + 3 == n => Ok(Command::DatabaseOff),
            Some(true) => database_options(w, i + 3),
            _ => Err(bad("CHANGE_TRACKING")),
        });
    }
    if w.is(0, "ALTER") && w.is(1, "TABLE") {
        let (table, i) = w.name(2)?;
        let enable = w.is(i, "ENABLE");
        if !(enable || w.is(i, "DISABLE")) || !w.is(i + 1, "CHANGE_TRACKING") {
            return None;
        }
        if !enable {
            return Some(if i + 2 == n {
                Ok(Command::Disable { table })
            } else {
                Err(bad("CHANGE_TRACKING"))
            });
        }
        if i + 2 == n {
            return Some(Ok(Command::Enable {
                table,
                track_columns: false,
            }));
        }
        let j = i + 2;
        let ok = w.is(j, "WITH")
            && w.tok(j + 1) == Some(&Token::LParen)
            && w.is(j + 2, "TRACK_COLUMNS_UPDATED")
            && w.tok(j + 3) == Some(&Token::Eq)
            && w.tok(j + 5) == Some(&Token::RParen)
            && j + 6 == n;
        return Some(match (ok, w.on_off(j + 4)) {
            (true, Some(track_columns)) => Ok(Command::Enable {
                table,
                track_columns,
            }),
            _ => Err(bad("WITH")),
        });
    }
    if w.is(0, "SET") && w.is(1, "TRANSACTION") && w.is(2, "ISOLATION") && w.is(3, "LEVEL") {
        let level: Vec<String> = (4..n).filter_map(|i| w.word(i)).collect();
        return Some(match level.join(" ").as_str() {
            "SNAPSHOT" => Ok(Command::Isolation(true)),
            "READ COMMITTED" | "READ UNCOMMITTED" | "REPEATABLE READ" | "SERIALIZABLE" => {
                Ok(Command::Isolation(false))
            }
            _ => Err(bad("LEVEL")),
        });
    }
    let start = usize::from(w.is(0, "EXEC") || w.is(0, "EXECUTE"));
    let (proc, i) = w.name(start)?;
    if !proc.eq_ignore_ascii_case("sp_flush_CT_internal_table_on_demand") {
        return None;
    }
    let mut i = i;
    if let Some(Token::Word(p)) = w.tok(i)
        && p.value.starts_with('@')
        && w.tok(i + 1) == Some(&Token::Eq)
    {
        if !p.value.eq_ignore_ascii_case("@TableToClean") {
            return Some(Err(SqlError::new(
                8145,
                format!(
                    "{} is not a parameter for procedure sp_flush_CT_internal_table_on_demand.",
                    p.value
                ),
            )));
        }
        i += 2;
    }
    let arg = match w.tok(i) {
        Some(Token::SingleQuotedString(s) | Token::NationalStringLiteral(s)) => {
            FlushArg::Literal(s.clone())
        }
        Some(Token::Word(p)) if p.value.starts_with('@') => FlushArg::Param(p.value.clone()),
        _ => {
            return Some(Err(SqlError::new(
                201,
                "Procedure or function 'sp_flush_CT_internal_table_on_demand' expects parameter '@TableToClean', which was not supplied.",
            )));
        }
    };
    Some(if i + 1 == n {
        Ok(Command::Flush(arg))
    } else {
        Err(bad("sp_flush_CT_internal_table_on_demand"))
    })
}

/// `(CHANGE_RETENTION = n DAYS|HOURS|MINUTES, AUTO_CLEANUP = ON|OFF)` after `= ON`.
fn database_options(w: &Words<'_>, mut i: usize) -> Result<Command, SqlError> {
    let n = w.0.len();
    let mut retention = None;
    let mut auto_cleanup = None;
    if i == n {
        return Ok(Command::DatabaseOn {
            retention,
            auto_cleanup,
        });
    }
    if w.tok(i) != Some(&Token::LParen) {
        return Err(bad("ON"));
    }
    i += 1;
    loop {
        let opt = w.word(i).ok_or_else(|| bad("("))?;
        if w.tok(i + 1) != Some(&Token::Eq) {
            return Err(bad(&opt));
        }
        match opt.as_str() {
            "CHANGE_RETENTION" => {
                let Some(Token::Number(v, _)) = w.tok(i + 2) else {
                    return Err(bad("CHANGE_RETENTION"));
                };
                let v: i64 = v.parse().map_err(|_| bad(v))?;
                let unit = w.word(i + 3).unwrap_or_default();
                let per = match unit.as_str() {
                    "DAYS" | "DAY" => 1440,
                    "HOURS" | "HOUR" => 60,
                    "MINUTES" | "MINUTE" => 1,
                    _ => return Err(bad(&unit)),
                };
                let unit = match per {
                    1440 => "DAYS",
                    60 => "HOURS",
                    _ => "MINUTES",
                };
                // SQL Server requires at least 1 minute; 0 is this server's extension.
                if v < 0 {
                    return Err(SqlError::new(
                        5081,
                        "The value for change retention must be a positive number.",
                    ));
                }
                retention = Some((v, unit.to_string(), v.saturating_mul(per)));
                i += 4;
            }
            "AUTO_CLEANUP" => {
                auto_cleanup = Some(w.on_off(i + 2).ok_or_else(|| bad("AUTO_CLEANUP"))?);
                i += 3;
            }
            other => return Err(bad(other)),
        }
        match w.tok(i) {
            Some(Token::Comma) => i += 1,
            Some(Token::RParen) if i + 1 == n => {
                return Ok(Command::DatabaseOn {
                    retention,
                    auto_cleanup,
                });
            }
            _ => return Err(bad(")")),
        }
    }
}

/// Byte offset in `sql` of a tokenizer location (1-based line and character column).
struct Offsets {
    lines: Vec<usize>,
}

impl Offsets {
    fn new(sql: &str) -> Self {
        let mut lines = vec![0];
        lines.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        Offsets { lines }
    }

    fn at(&self, sql: &str, loc: sqlparser::tokenizer::Location) -> usize {
        let Some(&start) = self.lines.get((loc.line as usize).saturating_sub(1)) else {
            return sql.len();
        };
        sql[start..]
            .char_indices()
            .nth((loc.column as usize).saturating_sub(1))
            .map(|(i, _)| start + i)
            .unwrap_or(sql.len())
    }
}

fn tokenize(sql: &str) -> Option<Vec<TokenWithSpan>> {
    Tokenizer::new(&MsSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()
}

fn significant(t: &Token) -> bool {
    !matches!(t, Token::Whitespace(_))
}

/// Translate a batch, handling the change tracking statements (each must be separated from its
/// neighbours by `;` or be the whole batch) and rewriting `CHANGETABLE(CHANGES …)` first.
pub(crate) fn translate(conn: &Connection, sql: &str, ctx: &Ctx) -> Vec<Step> {
    // Most batches have nothing for this module: skip the tokenizing.
    let upper = sql.to_ascii_uppercase();
    if !["CHANGE", "ISOLATION", "SP_FLUSH_CT"]
        .iter()
        .any(|k| upper.contains(k))
    {
        return translate_batch(sql, ctx);
    }
    let sql = match rewrite_changetable(conn, sql) {
        Ok(s) => s,
        Err(e) => return vec![Step::Fail(e)],
    };
    let Some(tokens) = tokenize(&sql) else {
        return translate_batch(&sql, ctx);
    };
    let mut pieces: Vec<Vec<&TokenWithSpan>> = vec![Vec::new()];
    for t in &tokens {
        if t.token == Token::SemiColon {
            pieces.push(Vec::new());
        } else if significant(&t.token) {
            pieces.last_mut().expect("one piece").push(t);
        }
    }
    pieces.retain(|p| !p.is_empty());
    let commands: Vec<Option<Result<Command, SqlError>>> = pieces
        .iter()
        .map(|p| command(&Words(p.iter().map(|t| &t.token).collect())))
        .collect();
    if commands.iter().all(Option::is_none) {
        return translate_batch(&sql, ctx);
    }
    let offsets = Offsets::new(&sql);
    let mut steps = Vec::new();
    for (piece, cmd) in pieces.iter().zip(commands) {
        match cmd {
            Some(Ok(c)) => steps.push(Step::ChangeTracking(c)),
            Some(Err(e)) => {
                steps.push(Step::Fail(e));
                break;
            }
            None => {
                let (Some(first), Some(last)) = (piece.first(), piece.last()) else {
                    continue;
                };
                let text =
                    &sql[offsets.at(&sql, first.span.start)..offsets.at(&sql, last.span.end)];
                steps.extend(translate_batch(text, ctx));
            }
        }
    }
    steps
}

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn log_table(table: &str) -> String {
    q(&format!("{INTERNAL_PREFIX}log_{table}"))
}

/// Name and declared type of the primary key columns of `table`, in key order.
fn key_columns(conn: &Connection, table: &str) -> Result<Vec<(String, String)>, SqlError> {
    let mut st = conn
        .prepare("SELECT name, type FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")
        .map_err(|e| map_sqlite_error(&e))?;
    let rows = st
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|r| r.collect::<Result<Vec<_>, _>>())
        .map_err(|e| map_sqlite_error(&e))?;
    Ok(rows)
}

/// The stored name of a main-database table (`None` when there is no such table).
fn table_name(conn: &Connection, table: &str) -> Result<Option<String>, SqlError> {
    conn.query_row(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
        [table],
        |r| r.get(0),
    )
    .optional()
    .map_err(|e| map_sqlite_error(&e))
}

fn is_tracked(conn: &Connection, table: &str) -> Result<bool, SqlError> {
    conn.query_row(
        &format!("SELECT count(*) FROM main.{TABLES} WHERE name = ?1"),
        [table],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(|e| map_sqlite_error(&e))
}

fn not_tracked(table: &str) -> SqlError {
    SqlError::new(
        4998,
        format!("Change tracking is not enabled on table '{table}'."),
    )
}

/// The tracked table's stored name, or error 208 / 4998.
fn tracked_table(conn: &Connection, table: &str) -> Result<String, SqlError> {
    let Some(name) = table_name(conn, table)? else {
        return Err(SqlError::new(
            208,
            format!("Invalid object name '{table}'."),
        ));
    };
    if !is_tracked(conn, &name)? {
        return Err(not_tracked(&name));
    }
    Ok(name)
}

/// Replace every `CHANGETABLE(CHANGES name, expr)` by a derived table over the change log.
fn rewrite_changetable<'a>(conn: &Connection, sql: &'a str) -> Result<Cow<'a, str>, SqlError> {
    let Some(tokens) = tokenize(sql) else {
        return Ok(Cow::Borrowed(sql));
    };
    let sig: Vec<&TokenWithSpan> = tokens.iter().filter(|t| significant(&t.token)).collect();
    let is_word = |t: &Token, kw: &str| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw));
    let offsets = Offsets::new(sql);
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < sig.len() {
        if !(is_word(&sig[i].token, "CHANGETABLE")
            && sig.get(i + 1).is_some_and(|t| t.token == Token::LParen))
        {
            i += 1;
            continue;
        }
        if !sig.get(i + 2).is_some_and(|t| is_word(&t.token, "CHANGES")) {
            return Err(SqlError::unsupported(
                "CHANGETABLE other than CHANGETABLE(CHANGES table, version)",
            ));
        }
        let words = Words(sig[i + 3..].iter().map(|t| &t.token).collect());
        let (table, after) = words.name(0).ok_or_else(|| bad("CHANGES"))?;
        let comma = i + 3 + after;
        if sig.get(comma).map(|t| &t.token) != Some(&Token::Comma) {
            return Err(bad(&table));
        }
        let mut depth = 0;
        let mut end = comma + 1;
        loop {
            match sig.get(end).map(|t| &t.token) {
                None => return Err(bad("CHANGETABLE")),
                Some(Token::LParen) => depth += 1,
                Some(Token::RParen) if depth == 0 => break,
                Some(Token::RParen) => depth -= 1,
                _ => {}
            }
            end += 1;
        }
        if end == comma + 1 {
            return Err(bad(","));
        }
        let since = &sql
            [offsets.at(sql, sig[comma + 1].span.start)..offsets.at(sql, sig[end - 1].span.end)];
        let table = tracked_table(conn, &table)?;
        let keys = key_columns(conn, &table)?;
        let start = offsets.at(sql, sig[i].span.start);
        out.push_str(&sql[copied..start]);
        out.push_str(&changes_sql(&table, &keys, since));
        copied = offsets.at(sql, sig[end].span.end);
        i = end + 1;
    }
    if copied == 0 {
        return Ok(Cow::Borrowed(sql));
    }
    out.push_str(&sql[copied..]);
    Ok(Cow::Owned(out))
}

/// The derived table `CHANGETABLE(CHANGES table, since)` stands for. Every output column is a
/// plain column of a table (the log, the insert row of the log, the `__ct_ops` lookup), so
/// SQLite reports the declared types: bigint, nchar(1), varbinary and the key's own types.
fn changes_sql(table: &str, keys: &[(String, String)], since: &str) -> String {
    let log = log_table(table);
    let same = |a: &str, b: &str| {
        keys.iter()
            .map(|(k, _)| format!("{a}.{k} = {b}.{k}", k = q(k)))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let key_list = keys
        .iter()
        .map(|(k, _)| format!("l.{}", q(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let after = format!("IFNULL(({since}), -1)");
    format!(
        "(SELECT l.SYS_CHANGE_VERSION, c.SYS_CHANGE_CREATION_VERSION, o.SYS_CHANGE_OPERATION, \
           l.SYS_CHANGE_COLUMNS, l.SYS_CHANGE_CONTEXT, {key_list} \
         FROM {log} AS l \
         LEFT JOIN {log} AS c ON c.rowid = (SELECT max(i.rowid) FROM {log} AS i \
           WHERE {same_i} AND i.SYS_CHANGE_OPERATION = 'I' AND i.SYS_CHANGE_VERSION > {after}) \
         JOIN {OPS} AS o ON o.code = CASE WHEN l.SYS_CHANGE_OPERATION = 'D' THEN 'D' \
           WHEN c.SYS_CHANGE_VERSION IS NOT NULL THEN 'I' ELSE 'U' END \
         WHERE l.SYS_CHANGE_VERSION > {after} \
           AND l.rowid = (SELECT max(m.rowid) FROM {log} AS m WHERE {same_m}))",
        same_i = same("i", "l"),
        same_m = same("m", "l"),
    )
}

/// Database-level facts.
struct DbState {
    enabled: bool,
    snapshot: bool,
}

fn db_state(conn: &Connection) -> Result<DbState, SqlError> {
    conn.query_row(
        &format!("SELECT enabled, snapshot_allowed FROM main.{DATABASE}"),
        [],
        |r| {
            Ok(DbState {
                enabled: r.get(0)?,
                snapshot: r.get(1)?,
            })
        },
    )
    .map_err(|e| map_sqlite_error(&e))
}

/// Error 3952 when the database does not allow snapshot isolation (first read of a SNAPSHOT
/// transaction).
pub(crate) fn check_snapshot(conn: &Connection, database: &str) -> Result<(), SqlError> {
    if db_state(conn)?.snapshot {
        return Ok(());
    }
    Err(SqlError::new(
        3952,
        format!(
            "Snapshot isolation transaction failed accessing database '{database}' because snapshot isolation is not allowed in this database. Use ALTER DATABASE to allow snapshot isolation."
        ),
    ))
}

/// SQL that fails with error 4711 when `table` is change-tracked (run before a TRUNCATE).
pub(crate) fn truncate_guard_sql(table: &str) -> String {
    format!(
        "SELECT __TDS_RAISE(4711, 'Cannot truncate table ''' || name || ''' because it is published for replication or enabled for Change Data Capture.') \
         FROM main.{TABLES} WHERE name = {}",
        format_args!("'{}'", table.replace('\'', "''"))
    )
}

/// Run a [`Command`] (except `Isolation`, which is session state). `Ok` carries nothing.
pub(crate) fn execute(
    conn: &Connection,
    ctx: &Ctx,
    cmd: &Command,
    params: &[(String, Value)],
) -> Result<(), SqlError> {
    let sqlerr = |e: rusqlite::Error| map_sqlite_error(&e);
    let db = &ctx.database;
    match cmd {
        Command::DatabaseOn {
            retention,
            auto_cleanup,
        } => {
            if db_state(conn)?.enabled {
                return Err(SqlError::new(
                    5088,
                    format!("Change tracking is already enabled for database '{db}'."),
                ));
            }
            let (v, unit, minutes) = retention.clone().unwrap_or((2, "DAYS".into(), 2880));
            let code = match unit.as_str() {
                "MINUTES" => 1,
                "HOURS" => 2,
                _ => 3,
            };
            conn.execute(
                &format!(
                    "UPDATE main.{DATABASE} SET enabled = 1, retention_period = ?1, \
                     retention_period_units = ?2, retention_period_units_desc = ?3, \
                     retention_minutes = ?4, is_auto_cleanup_on = ?5"
                ),
                rusqlite::params![v, code, unit, minutes, auto_cleanup.unwrap_or(true)],
            )
            .map_err(sqlerr)?;
        }
        Command::DatabaseOptions {
            retention,
            auto_cleanup,
        } => {
            if !db_state(conn)?.enabled {
                return Err(SqlError::new(
                    5087,
                    format!(
                        "Change tracking is not enabled for database '{db}'; enable it with SET CHANGE_TRACKING = ON."
                    ),
                ));
            }
            if let Some((v, unit, minutes)) = retention {
                let code = match unit.as_str() {
                    "MINUTES" => 1,
                    "HOURS" => 2,
                    _ => 3,
                };
                conn.execute(
                    &format!(
                        "UPDATE main.{DATABASE} SET retention_period = ?1, retention_period_units = ?2, \
                         retention_period_units_desc = ?3, retention_minutes = ?4"
                    ),
                    rusqlite::params![v, code, unit, minutes],
                )
                .map_err(sqlerr)?;
            }
            if let Some(on) = auto_cleanup {
                conn.execute(
                    &format!("UPDATE main.{DATABASE} SET is_auto_cleanup_on = ?1"),
                    rusqlite::params![on],
                )
                .map_err(sqlerr)?;
            }
        }
        Command::DatabaseOff => {
            let tables: i64 = conn
                .query_row(&format!("SELECT count(*) FROM main.{TABLES}"), [], |r| {
                    r.get(0)
                })
                .map_err(sqlerr)?;
            if tables > 0 {
                return Err(SqlError::new(
                    22115,
                    format!(
                        "Change tracking is enabled for one or more tables in database '{db}'. Disable change tracking on each table before disabling it for the database."
                    ),
                ));
            }
            conn.execute(&format!("UPDATE main.{DATABASE} SET enabled = 0"), [])
                .map_err(sqlerr)?;
        }
        Command::AllowSnapshot(on) => {
            conn.execute(
                &format!("UPDATE main.{DATABASE} SET snapshot_allowed = ?1"),
                [on],
            )
            .map_err(sqlerr)?;
        }
        Command::Enable {
            table,
            track_columns,
        } => enable(conn, db, table, *track_columns)?,
        Command::Disable { table } => {
            let name = tracked_table(conn, table)?;
            let tq = |s: &str| q(&format!("{INTERNAL_PREFIX}{s}_{name}"));
            conn.execute_batch(&format!(
                "SAVEPOINT tds_ct; DROP TRIGGER IF EXISTS {ins}; DROP TRIGGER IF EXISTS {upd}; \
                 DROP TRIGGER IF EXISTS {del}; DROP TABLE IF EXISTS {log}; \
                 DELETE FROM main.{TABLES} WHERE name = '{lit}'; RELEASE tds_ct;",
                ins = tq("ins"),
                upd = tq("upd"),
                del = tq("del"),
                log = log_table(&name),
                lit = name.replace('\'', "''"),
            ))
            .map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK TO tds_ct; RELEASE tds_ct");
                sqlerr(e)
            })?;
        }
        Command::Flush(arg) => {
            let raw = match arg {
                FlushArg::Literal(s) => s.clone(),
                FlushArg::Param(p) => {
                    match params.iter().find(|(n, _)| n.eq_ignore_ascii_case(p)) {
                        Some((_, Value::Text(s))) => s.clone(),
                        _ => {
                            return Err(SqlError::new(
                                137,
                                format!("Must declare the scalar variable \"{p}\"."),
                            ));
                        }
                    }
                }
            };
            let name = crate::functions::object_name(&raw).unwrap_or(raw);
            flush(conn, &name)?;
        }
        Command::Isolation(_) => {}
    }
    Ok(())
}

fn enable(conn: &Connection, db: &str, table: &str, track_columns: bool) -> Result<(), SqlError> {
    let sqlerr = |e: rusqlite::Error| map_sqlite_error(&e);
    let Some(name) = table_name(conn, table)? else {
        return Err(SqlError::new(
            4902,
            format!(
                "Cannot find the object \"{table}\" because it does not exist or you do not have permissions."
            ),
        ));
    };
    if !db_state(conn)?.enabled {
        return Err(SqlError::new(
            4996,
            format!(
                "Cannot enable change tracking on table '{name}'. Change tracking must be enabled on the database '{db}' before it can be enabled on a table."
            ),
        ));
    }
    let keys = key_columns(conn, &name)?;
    if keys.is_empty() {
        return Err(SqlError::new(
            4997,
            format!(
                "Cannot enable change tracking on table '{name}'. Change tracking requires a primary key on the table. Create a primary key on the table before enabling change tracking."
            ),
        ));
    }
    if is_tracked(conn, &name)? {
        return Err(SqlError::new(
            4995,
            format!("Change tracking is already enabled for table '{name}'."),
        ));
    }
    let log = log_table(&name);
    let tq = |s: &str| q(&format!("{INTERNAL_PREFIX}{s}_{name}"));
    let t = q(&name);
    let key_defs = keys
        .iter()
        .map(|(k, ty)| format!("{} {}", q(k), q(ty)))
        .collect::<Vec<_>>()
        .join(", ");
    let key_names = keys
        .iter()
        .map(|(k, _)| q(k))
        .collect::<Vec<_>>()
        .join(", ");
    let of = |row: &str| {
        keys.iter()
            .map(|(k, _)| format!("{row}.{}", q(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unchanged = keys
        .iter()
        .map(|(k, _)| format!("NEW.{k} IS OLD.{k}", k = q(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    // One version per transaction token: the first change under a new token bumps the counter.
    let bump = format!(
        "UPDATE {VERSION} SET version = version + 1, token = __CT_TOKEN() WHERE token IS NOT __CT_TOKEN();
         INSERT OR IGNORE INTO {COMMITS} (version, at) SELECT version, julianday('now') FROM {VERSION};"
    );
    let record = |op: &str, row: &str, cond: &str| {
        let creation = if op == "'I'" { "version" } else { "NULL" };
        format!(
            "INSERT INTO {log} (SYS_CHANGE_VERSION, SYS_CHANGE_CREATION_VERSION, SYS_CHANGE_OPERATION, {key_names}) \
             SELECT version, {creation}, {op}, {} FROM {VERSION}{cond};",
            of(row)
        )
    };
    let script = format!(
        "SAVEPOINT tds_ct;
         CREATE TABLE {log} (SYS_CHANGE_VERSION \"BIGINT\" NOT NULL, SYS_CHANGE_CREATION_VERSION \"BIGINT\",
           SYS_CHANGE_OPERATION \"NCHAR(1)\" NOT NULL, SYS_CHANGE_COLUMNS \"VARBINARY(MAX)\",
           SYS_CHANGE_CONTEXT \"VARBINARY(128)\", {key_defs});
         CREATE INDEX {idx} ON {log} ({key_names});
         CREATE TRIGGER {ins} AFTER INSERT ON {t} BEGIN {bump} {ins_rec} END;
         CREATE TRIGGER {del} AFTER DELETE ON {t} BEGIN {bump} {del_rec} END;
         CREATE TRIGGER {upd} AFTER UPDATE ON {t} BEGIN {bump} {upd_same} {upd_del} {upd_ins} END;
         INSERT INTO {TABLES} (name, is_track_columns_updated_on, begin_version, min_valid_version)
           SELECT '{lit}', {tc}, version, version FROM {VERSION};
         RELEASE tds_ct;",
        idx = tq("idx"),
        ins = tq("ins"),
        del = tq("del"),
        upd = tq("upd"),
        ins_rec = record("'I'", "NEW", ""),
        del_rec = record("'D'", "OLD", ""),
        upd_same = record("'U'", "NEW", &format!(" WHERE {unchanged}")),
        upd_del = record("'D'", "OLD", &format!(" WHERE NOT ({unchanged})")),
        upd_ins = record("'I'", "NEW", &format!(" WHERE NOT ({unchanged})")),
        lit = name.replace('\'', "''"),
        tc = i64::from(track_columns),
    );
    conn.execute_batch(&script).map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK TO tds_ct; RELEASE tds_ct");
        sqlerr(e)
    })
}

/// `sp_flush_CT_internal_table_on_demand`: delete the table's changes committed longer ago than
/// the retention period and raise its minimum valid version to the newest expired version.
fn flush(conn: &Connection, table: &str) -> Result<(), SqlError> {
    let name = tracked_table(conn, table)?;
    let lit = name.replace('\'', "''");
    let expired = format!(
        "SELECT version FROM {COMMITS} WHERE (julianday('now') - at) * 1440.0 >= \
         (SELECT retention_minutes FROM {DATABASE})"
    );
    conn.execute_batch(&format!(
        "SAVEPOINT tds_ct;
         DELETE FROM {log} WHERE SYS_CHANGE_VERSION IN ({expired});
         UPDATE {TABLES} SET
           cleanup_version = max(cleanup_version, IFNULL((SELECT max(version) FROM ({expired})), 0)),
           min_valid_version = max(min_valid_version, IFNULL((SELECT max(version) FROM ({expired})), 0))
         WHERE name = '{lit}';
         UPDATE {DATABASE} SET max_cleanup_version = (SELECT max(cleanup_version) FROM {TABLES});
         RELEASE tds_ct;",
        log = log_table(&name),
    ))
    .map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK TO tds_ct; RELEASE tds_ct");
        map_sqlite_error(&e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(sql: &str) -> Option<Result<Command, SqlError>> {
        let tokens = tokenize(sql).unwrap();
        command(&Words(
            tokens
                .iter()
                .map(|t| &t.token)
                .filter(|t| significant(t))
                .collect(),
        ))
    }

    #[test]
    fn recognises_the_statements() {
        assert_eq!(
            cmd(
                "ALTER DATABASE [x] SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON)"
            ),
            Some(Ok(Command::DatabaseOn {
                retention: Some((2, "DAYS".into(), 2880)),
                auto_cleanup: Some(true)
            }))
        );
        assert_eq!(
            cmd("ALTER DATABASE [x] SET CHANGE_TRACKING (CHANGE_RETENTION = 0 MINUTES)"),
            Some(Ok(Command::DatabaseOptions {
                retention: Some((0, "MINUTES".into(), 0)),
                auto_cleanup: None,
            }))
        );
        assert_eq!(
            cmd("ALTER DATABASE CURRENT SET CHANGE_TRACKING = OFF"),
            Some(Ok(Command::DatabaseOff))
        );
        assert_eq!(
            cmd("ALTER TABLE [dbo].[t] ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = ON)"),
            Some(Ok(Command::Enable {
                table: "t".into(),
                track_columns: true
            }))
        );
        assert_eq!(
            cmd("EXEC sys.sp_flush_CT_internal_table_on_demand @TableToClean = N'dbo.t'"),
            Some(Ok(Command::Flush(FlushArg::Literal("dbo.t".into()))))
        );
        assert_eq!(
            cmd("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"),
            Some(Ok(Command::Isolation(false)))
        );
        assert!(cmd("ALTER TABLE t ADD c INT").is_none());
        assert!(cmd("SELECT 1").is_none());
        assert!(matches!(
            cmd("ALTER DATABASE x SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 WEEKS)"),
            Some(Err(_))
        ));
    }

    #[test]
    fn offsets_follow_lines_and_characters() {
        let sql = "SELECT 'é'\n  , CHANGETABLE";
        let o = Offsets::new(sql);
        let loc = sqlparser::tokenizer::Location { line: 2, column: 5 };
        assert_eq!(&sql[o.at(sql, loc)..], "CHANGETABLE");
    }
}
