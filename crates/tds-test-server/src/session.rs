//! The per-connection engine: runs on its own thread, owns one SQLite connection, decodes
//! requests (batch, RPC, bulk load, transaction manager) and streams responses packet by packet.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::types::Value;
use tokio::sync::mpsc;

use crate::describe::{DescribeArgs, Resolver, static_type};
use crate::error::{Error, SqlError, map_sqlite_error};
use crate::login::parse_login7;
use crate::prepared::{Prepared, Statement, SystemProc, handle_of, text_of};
use crate::server::Shared;
use crate::tokens::{done, prelogin_response, tok};
use crate::translate::{ColumnHint, Ctx, Kind, QueryInfo, Step, hint_for};
use crate::types::{Len, SqlType, encode_value, read_type_info, read_value};
use crate::wire::{Input, MessageReader, Outgoing, Packet, ResponseWriter, SliceReader, ptype};

/// Named parameter values (`@P1` -> value) of an RPC call.
type Params = Vec<(String, Value)>;

/// Outcome of one statement.
enum Flow {
    Continue,
    /// A statement failed; the batch continues (SQL Server statement-level abort).
    StatementError,
    /// The batch must stop (compile error or cancel).
    Abort,
    Cancelled,
}

struct Session {
    conn: rusqlite::Connection,
    w: ResponseWriter,
    ctx: Ctx,
    tds_version: u32,
    logged_in: bool,
    attn: Arc<AtomicBool>,
    shared: Arc<Shared>,
    descriptor: u64,
    bulk_target: Option<String>,
    /// DONE token waiting for its MORE bit to be decided (batch mode).
    pending_done: Option<(u16, u64)>,
    /// Inside an RPC: statements end with DONEINPROC.
    in_proc: bool,
    had_error: bool,
    /// Declared parameter types of the running `sp_executesql` call.
    param_types: Vec<(String, SqlType)>,
    /// RETURNSTATUS of the running RPC when it is not the default (0, or 1 after an error).
    proc_status: Option<i32>,
    /// Output parameters of the running RPC (ordinal, name, value), sent after RETURNSTATUS.
    return_values: Vec<(u16, String, i32)>,
    /// Statements prepared by `sp_prepare` / `sp_prepexec`.
    prepared: Prepared,
    /// `SET FMTONLY ON`: queries send their metadata only, other statements do not run.
    fmtonly: bool,
    /// Change tracking transaction token (one version per transaction).
    ct_token: crate::change_tracking::Token64,
    /// `SET TRANSACTION ISOLATION LEVEL SNAPSHOT` is in effect.
    snapshot: bool,
    /// A SNAPSHOT transaction has begun and its first statement has not run yet (error 3952).
    snapshot_check: bool,
}

/// Open a SQLite connection for a session and register the T-SQL helper functions.
pub(crate) fn open_connection(shared: &Shared) -> Result<rusqlite::Connection, Error> {
    let conn = rusqlite::Connection::open(&shared.db_uri)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // WAL with NORMAL sync survives a crash of any process; only an OS crash may lose commits.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    crate::functions::register(&conn)?;
    crate::change_tracking::register(&conn)?;
    Ok(conn)
}

/// Entry point of a connection's engine thread.
pub(crate) fn run(
    mut rx: mpsc::Receiver<Packet>,
    tx: mpsc::Sender<Outgoing>,
    attn: Arc<AtomicBool>,
    shared: Arc<Shared>,
    spid: u16,
) {
    let conn = match open_connection(&shared) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot open sqlite for connection {spid}: {e}");
            let _ = tx.blocking_send(Outgoing::Close);
            return;
        }
    };
    let ct_token = match crate::change_tracking::register(&conn) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("cannot register change tracking for connection {spid}: {e}");
            let _ = tx.blocking_send(Outgoing::Close);
            return;
        }
    };
    let mut s = Session {
        ct_token,
        snapshot: false,
        snapshot_check: false,
        conn,
        w: ResponseWriter::new(tx, spid, shared.faults.clone()),
        ctx: Ctx {
            database: "master".into(),
            spid,
            trancount: 0,
        },
        tds_version: 0x7400_0004,
        logged_in: false,
        attn,
        shared,
        descriptor: 0,
        bulk_target: None,
        pending_done: None,
        in_proc: false,
        had_error: false,
        param_types: Vec::new(),
        proc_status: None,
        return_values: Vec::new(),
        prepared: Prepared::default(),
        fmtonly: false,
    };
    while let Some(p) = rx.blocking_recv() {
        let res = s.handle(&mut rx, p);
        match res {
            Ok(true) => {}
            Ok(false) => break,
            Err(Error::Closed) => break,
            Err(e) => {
                tracing::warn!("connection {spid}: closing: {e}");
                eprintln!("tds-test-server: connection {spid}: closing: {e}");
                break;
            }
        }
    }
    s.w.close();
}

impl Session {
    /// Handle one incoming message; Ok(false) ends the connection.
    fn handle(&mut self, rx: &mut mpsc::Receiver<Packet>, p: Packet) -> Result<bool, Error> {
        match (p.ty, self.logged_in) {
            (ptype::PRELOGIN, false) => {
                MessageReader::new(rx, p).read_to_end()?;
                self.w.put(&prelogin_response());
                self.w.end_message()?;
                Ok(true)
            }
            (ptype::LOGIN7, false) => {
                let msg = MessageReader::new(rx, p).read_to_end()?;
                self.login(&msg)
            }
            (ptype::ATTENTION, _) => {
                if self.attn.swap(false, Ordering::SeqCst) {
                    self.w.done(tok::DONE, done::ATTN, 0);
                    self.w.end_message()?;
                }
                Ok(true)
            }
            (ptype::SQL_BATCH, true) => {
                let msg = MessageReader::new(rx, p).read_to_end()?;
                self.batch(&msg)?;
                Ok(true)
            }
            (ptype::RPC, true) => {
                let msg = MessageReader::new(rx, p).read_to_end()?;
                self.rpc(&msg)?;
                Ok(true)
            }
            (ptype::BULK_LOAD, true) => {
                let mut r = MessageReader::new(rx, p);
                self.bulk_load(&mut r)?;
                Ok(true)
            }
            (ptype::TRANSACTION_MANAGER, true) => {
                let msg = MessageReader::new(rx, p).read_to_end()?;
                self.transaction_manager(&msg)?;
                Ok(true)
            }
            (ty, logged_in) => Err(Error::protocol(format!(
                "unexpected packet type {ty:#x} (logged in: {logged_in})"
            ))),
        }
    }

    fn login(&mut self, msg: &[u8]) -> Result<bool, Error> {
        let login = parse_login7(msg)?;
        if login.user == "bad" || login.password == crate::login::WRONG_PASSWORD {
            self.w.error(&SqlError {
                number: 18456,
                state: 1,
                class: 14,
                message: format!("Login failed for user '{}'.", login.user),
            });
            self.w.done(tok::DONE, done::ERROR, 0);
            self.w.end_message()?;
            return Ok(false);
        }
        // Answer with the highest TDS version both sides know (the values tiberius accepts).
        self.tds_version = [
            0x7400_0004,
            0x730B_0003,
            0x730A_0003,
            0x7209_0002,
            0x7100_0001,
        ]
        .into_iter()
        .find(|v| login.tds_version >= *v)
        .unwrap_or(0x7100_0001);
        let size = match login.packet_size {
            0 => 4096,
            n => (n as usize).clamp(512, 32767),
        };
        if !login.database.is_empty() {
            self.ctx.database = login.database.clone();
        }
        tracing::debug!(
            "login user={} app={} db={} packet_size={size}",
            login.user,
            login.app_name,
            self.ctx.database
        );
        let db = self.ctx.database.clone();
        if let Err(e) = crate::functions::create_system_views(&self.conn, &db) {
            tracing::warn!("cannot create INFORMATION_SCHEMA views: {e}");
        }
        self.w.login_ack(&db, size, self.tds_version);
        self.w.short_done_counts = self.tds_version < 0x7200_0000;
        self.w.done(tok::DONE, done::FINAL, 0);
        self.w.end_message()?;
        self.w.set_packet_size(size);
        self.logged_in = true;
        Ok(true)
    }

    fn skip_all_headers(&self, r: &mut SliceReader<'_>) -> Result<(), Error> {
        if self.tds_version >= 0x7200_0000 {
            let total = r.u32le()? as usize;
            if total < 4 {
                return Err(Error::protocol("ALL_HEADERS length"));
            }
            r.skip(total - 4)?;
        }
        Ok(())
    }

    // ---- DONE bookkeeping -------------------------------------------------------------

    fn flush_pending(&mut self) {
        if let Some((status, rows)) = self.pending_done.take() {
            self.w.done(tok::DONE, status | done::MORE, rows);
        }
    }

    /// End of one statement.
    fn statement_done(&mut self, status: u16, rows: u64) {
        if self.in_proc {
            self.w.done(tok::DONEINPROC, status | done::MORE, rows);
        } else {
            self.flush_pending();
            self.pending_done = Some((status, rows));
        }
    }

    fn send_error(&mut self, e: &SqlError) {
        self.flush_pending();
        self.had_error = true;
        self.w.error(e);
    }

    /// Close the response of a batch or RPC.
    fn finish_request(&mut self, cancelled: bool) -> Result<(), Error> {
        let err = if self.had_error { done::ERROR } else { 0 };
        if self.in_proc {
            let status = self.proc_status.take();
            self.end_proc(status.unwrap_or(if self.had_error { 1 } else { 0 }));
            let status = err | if cancelled { done::ATTN } else { 0 };
            self.w.done(tok::DONEPROC, status, 0);
        } else {
            match self.pending_done.take() {
                Some((status, rows)) if !cancelled => self.w.done(tok::DONE, status, rows),
                Some((status, rows)) => {
                    self.w.done(tok::DONE, status | done::MORE, rows);
                    self.w.done(tok::DONE, done::ATTN, 0);
                }
                None => {
                    let status = err | if cancelled { done::ATTN } else { 0 };
                    self.w.done(tok::DONE, status, 0);
                }
            }
        }
        if cancelled {
            self.attn.store(false, Ordering::SeqCst);
        }
        self.had_error = false;
        self.in_proc = false;
        self.proc_status = None;
        self.param_types.clear();
        self.w.end_message()
    }

    // ---- requests ---------------------------------------------------------------------

    fn batch(&mut self, msg: &[u8]) -> Result<(), Error> {
        let mut r = SliceReader::new(msg);
        self.skip_all_headers(&mut r)?;
        let text = crate::wire::utf16_to_string(r.rest());
        self.in_proc = false;
        let trimmed = text.trim_start();
        if let Some(rest) = strip_insert_bulk(trimmed) {
            self.insert_bulk(rest);
            return self.finish_request(false);
        }
        let text = crate::bulk_copy::rewrite(&text).unwrap_or(text);
        let steps = crate::change_tracking::translate(&self.conn, &text, &self.ctx);
        let flow = self.run_steps(&steps, &Vec::new())?;
        self.finish_request(matches!(flow, Flow::Cancelled))
    }

    fn run_steps(&mut self, steps: &[Step], params: &Params) -> Result<Flow, Error> {
        for step in steps {
            match self.run_step(step, params)? {
                Flow::Continue | Flow::StatementError => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Continue)
    }

    fn run_step(&mut self, step: &Step, params: &Params) -> Result<Flow, Error> {
        if self.attn.load(Ordering::Relaxed) {
            return Ok(Flow::Cancelled);
        }
        // Outside a transaction every statement is its own transaction: a new version.
        if self.ctx.trancount == 0 {
            self.ct_token.renew();
        }
        if self.snapshot_check
            && matches!(
                step,
                Step::Sql { .. } | Step::SelectInto { .. } | Step::If { .. } | Step::Script(_)
            )
        {
            self.snapshot_check = false;
            if let Err(e) = crate::change_tracking::check_snapshot(&self.conn, &self.ctx.database) {
                return Ok(self.statement_failed(&e));
            }
        }
        let flow = match step {
            Step::Sql {
                sql,
                kind,
                hints,
                updateable,
                info,
            } => {
                if let Some(write) = self.shared.take_write_before(sql)
                    && let Err(e) = self.conn.execute_batch(&write)
                {
                    return Ok(self.statement_failed(&map_sqlite_error(&e)));
                }
                self.exec_sql(sql, *kind, hints, *updateable, info, params)?
            }
            Step::Describe(args) => match crate::describe::exec_args(args, params) {
                Ok(args) => self.describe_first_result_set(&args, false)?,
                Err(e) => self.statement_failed(&e),
            },
            Step::SelectInto { table, temp, query } => {
                match self.select_into(table, *temp, query, params) {
                    Ok(n) => {
                        self.statement_done(done::COUNT, n);
                        Flow::Continue
                    }
                    Err(e) => self.statement_failed(&e),
                }
            }
            Step::If {
                cond,
                then,
                otherwise,
            } => {
                let sql = format!("SELECT CASE WHEN {cond} THEN 1 ELSE 0 END");
                let r = self.conn.prepare(&sql).and_then(|mut st| {
                    bind_params(&mut st, params)?;
                    let mut rows = st.raw_query();
                    match rows.next()? {
                        Some(row) => row.get::<_, i64>(0),
                        None => Ok(0),
                    }
                });
                match r {
                    Ok(1) => self.run_steps(then, params)?,
                    Ok(_) => self.run_steps(otherwise, params)?,
                    Err(e) => self.statement_failed(&map_sqlite_error(&e)),
                }
            }
            Step::Script(stmts) => match self.run_script(stmts, params) {
                Ok(n) => {
                    self.statement_done(done::COUNT, n);
                    Flow::Continue
                }
                Err(e) => self.statement_failed(&e),
            },
            Step::Begin => {
                if self.ctx.trancount == 0 {
                    // IMMEDIATE: a transaction takes the write lock when it begins, so two
                    // writing sessions wait for each other (as SQL Server's locks make them)
                    // instead of the later one failing when its read snapshot goes stale.
                    // Under SNAPSHOT isolation a deferred BEGIN: its first read fixes a WAL
                    // snapshot that never blocks other sessions' writers.
                    let begin = if self.snapshot {
                        "BEGIN DEFERRED"
                    } else {
                        "BEGIN IMMEDIATE"
                    };
                    if let Err(e) = self.conn.execute_batch(begin) {
                        return Ok(self.statement_failed(&map_sqlite_error(&e)));
                    }
                    self.snapshot_check = self.snapshot;
                    self.descriptor += 1;
                    self.flush_pending();
                    self.w.env_begin_tran(self.descriptor);
                }
                self.ctx.trancount += 1;
                self.statement_done(0, 0);
                Flow::Continue
            }
            Step::Commit => self.end_transaction(true),
            Step::Rollback => self.end_transaction(false),
            Step::Use(db) => {
                let old = std::mem::replace(&mut self.ctx.database, db.clone());
                self.flush_pending();
                self.w.env_database(db, &old);
                self.statement_done(0, 0);
                Flow::Continue
            }
            Step::Ignore => Flow::Continue,
            Step::FmtOnly(on) => {
                self.fmtonly = *on;
                Flow::Continue
            }
            Step::TableCollations(table) => {
                match crate::bulk_copy::table_collations(&self.conn, table) {
                    Ok(rows) => {
                        self.proc_rows(&crate::bulk_copy::table_collations_columns(), &rows)?
                    }
                    Err(e) => self.statement_failed(&e),
                }
            }
            Step::DatatypeInfo(data_type) => self.proc_rows(
                &crate::datatype_info::columns(),
                &crate::datatype_info::rows(*data_type),
            )?,
            Step::ChangeTracking(crate::change_tracking::Command::Isolation(snapshot)) => {
                self.snapshot = *snapshot;
                self.statement_done(0, 0);
                Flow::Continue
            }
            Step::ChangeTracking(cmd) => {
                match crate::change_tracking::execute(&self.conn, &self.ctx, cmd, params) {
                    Ok(()) => {
                        self.statement_done(0, 0);
                        Flow::Continue
                    }
                    Err(e) => self.statement_failed(&e),
                }
            }
            Step::Fail(e) => {
                self.send_error(e);
                self.statement_done(done::ERROR, 0);
                Flow::Abort
            }
        };
        Ok(flow)
    }

    fn statement_failed(&mut self, e: &SqlError) -> Flow {
        self.send_error(e);
        self.statement_done(done::ERROR, 0);
        self.sync_trancount();
        Flow::StatementError
    }

    /// SQLite may roll back on its own (e.g. on some errors): keep @@TRANCOUNT in step.
    fn sync_trancount(&mut self) {
        if self.ctx.trancount > 0 && self.conn.is_autocommit() {
            self.ctx.trancount = 0;
            self.flush_pending();
            self.w.env_end_tran(false, self.descriptor);
        }
    }

    fn end_transaction(&mut self, commit: bool) -> Flow {
        self.sync_trancount();
        if self.ctx.trancount == 0 {
            let (n, what) = if commit {
                (3902, "COMMIT")
            } else {
                (3903, "ROLLBACK")
            };
            return self.statement_failed(&SqlError::new(
                n,
                format!("The {what} TRANSACTION request has no corresponding BEGIN TRANSACTION."),
            ));
        }
        if commit && self.ctx.trancount > 1 {
            self.ctx.trancount -= 1;
            self.statement_done(0, 0);
            return Flow::Continue;
        }
        let sql = if commit { "COMMIT" } else { "ROLLBACK" };
        if let Err(e) = self.conn.execute_batch(sql) {
            return self.statement_failed(&map_sqlite_error(&e));
        }
        self.ctx.trancount = 0;
        self.snapshot_check = false;
        self.flush_pending();
        self.w.env_end_tran(commit, self.descriptor);
        self.statement_done(0, 0);
        Flow::Continue
    }

    fn run_script(&mut self, stmts: &[(String, bool)], params: &Params) -> Result<u64, SqlError> {
        let sqlerr = |e: rusqlite::Error| map_sqlite_error(&e);
        self.conn
            .execute_batch("SAVEPOINT tds_script")
            .map_err(sqlerr)?;
        let mut total = 0;
        let mut run = || -> Result<(), SqlError> {
            for (sql, counted) in stmts {
                let mut st = self.conn.prepare(sql).map_err(sqlerr)?;
                bind_params(&mut st, params).map_err(sqlerr)?;
                st.raw_execute().map_err(sqlerr)?;
                if *counted {
                    total += self.conn.changes();
                }
            }
            Ok(())
        };
        match run() {
            Ok(()) => {
                self.conn
                    .execute_batch("RELEASE tds_script")
                    .map_err(sqlerr)?;
                Ok(total)
            }
            Err(e) => {
                let _ = self
                    .conn
                    .execute_batch("ROLLBACK TO tds_script; RELEASE tds_script");
                Err(e)
            }
        }
    }

    fn select_into(
        &mut self,
        table: &str,
        temp: bool,
        query: &str,
        params: &Params,
    ) -> Result<u64, SqlError> {
        let ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let cols: Vec<String> = {
            let st = self.conn.prepare(query).map_err(|e| map_sqlite_error(&e))?;
            st.columns()
                .iter()
                .map(|c| match c.decl_type() {
                    Some(d) => format!("{} {}", ident(c.name()), ident(d)),
                    None => ident(c.name()),
                })
                .collect()
        };
        let create = format!(
            "CREATE {}TABLE {} ({})",
            if temp { "TEMP " } else { "" },
            ident(table),
            cols.join(", ")
        );
        self.conn
            .execute_batch(&create)
            .map_err(|e| map_sqlite_error(&e))?;
        let insert = format!("INSERT INTO {} {query}", ident(table));
        let mut st = self
            .conn
            .prepare(&insert)
            .map_err(|e| map_sqlite_error(&e))?;
        bind_params(&mut st, params).map_err(|e| map_sqlite_error(&e))?;
        st.raw_execute().map_err(|e| map_sqlite_error(&e))?;
        Ok(self.conn.changes())
    }

    fn exec_sql(
        &mut self,
        sql: &str,
        kind: Kind,
        hints: &[ColumnHint],
        updateable: bool,
        info: &QueryInfo,
        params: &Params,
    ) -> Result<Flow, Error> {
        let conn = &self.conn;
        let mut st = match conn.prepare_cached(sql) {
            Ok(s) => s,
            Err(e) => {
                let e = map_sqlite_error(&e);
                return Ok(self_statement_failed(
                    &mut self.w,
                    &mut self.pending_done,
                    &mut self.had_error,
                    self.in_proc,
                    &e,
                ));
            }
        };
        if let Err(e) = bind_params(&mut st, params) {
            let e = map_sqlite_error(&e);
            return Ok(self_statement_failed(
                &mut self.w,
                &mut self.pending_done,
                &mut self.had_error,
                self.in_proc,
                &e,
            ));
        }
        if self.fmtonly && (kind != Kind::Query || st.column_count() == 0) {
            drop(st);
            self.statement_done(0, 0);
            return Ok(Flow::Continue);
        }
        if st.column_count() == 0 {
            let r = st.raw_execute();
            drop(st);
            return Ok(match r {
                Ok(_) => {
                    let status = if kind == Kind::Dml { done::COUNT } else { 0 };
                    let n = if kind == Kind::Dml {
                        self.conn.changes()
                    } else {
                        0
                    };
                    self.statement_done(status, n);
                    Flow::Continue
                }
                Err(e) => {
                    let e = map_sqlite_error(&e);
                    self.statement_failed(&e)
                }
            });
        }
        // A result set: column types known before any row (see `describe::static_type`), else
        // the first row's values.
        let ncol = st.column_count();
        let system_view = sql.contains("INFORMATION_SCHEMA.");
        let resolver = Resolver::new(conn, info, &self.param_types);
        let decls: Vec<(String, Option<SqlType>)> = st
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let hint = hint_for(hints, ncol, i);
                let name = if hint.is_some_and(|h| h.blank_name) {
                    String::new()
                } else {
                    c.name().to_string()
                };
                let ty = static_type(hint, c.decl_type(), c.name(), system_view, &resolver);
                (name, ty)
            })
            .collect();
        let mut rows = st.raw_query();
        let first = if self.fmtonly { Ok(None) } else { rows.next() };
        let mut cols = Vec::with_capacity(ncol);
        let mut stmt_error = None;
        match &first {
            Ok(first) => {
                for (i, (name, ty)) in decls.into_iter().enumerate() {
                    let ty = ty.unwrap_or_else(|| match first {
                        Some(r) => r
                            .get_ref(i)
                            .map(SqlType::infer)
                            .unwrap_or(SqlType::NVarChar(Len::N(4000))),
                        None => SqlType::NVarChar(Len::N(4000)),
                    });
                    cols.push((name, ty));
                }
            }
            Err(e) => stmt_error = Some(map_sqlite_error(e)),
        }
        let w = &mut self.w;
        if let Some(e) = stmt_error {
            drop(rows);
            drop(st);
            return Ok(self.statement_failed(&e));
        }
        // Emit pending DONE, then COLMETADATA.
        if !self.in_proc
            && let Some((status, n)) = self.pending_done.take()
        {
            w.done(tok::DONE, status | done::MORE, n);
        }
        w.col_metadata(&cols, updateable);
        let types: Vec<SqlType> = cols.iter().map(|c| c.1).collect();
        let row_limit = self.shared.faults.row_limit();
        let mut count: u64 = 0;
        let mut failure: Option<SqlError> = None;
        let mut cancelled = false;
        let mut current = first.unwrap_or_default();
        while let Some(row) = current {
            let cp = w.begin_row();
            w.put_u8(tok::ROW);
            let mut ok = true;
            for (i, ty) in types.iter().enumerate() {
                let v = match row.get_ref(i) {
                    Ok(v) => v,
                    Err(e) => {
                        failure = Some(map_sqlite_error(&e));
                        ok = false;
                        break;
                    }
                };
                if let Err(e) = encode_value(w, ty, v) {
                    failure = Some(e);
                    ok = false;
                    break;
                }
            }
            if !ok {
                w.rollback_row(cp);
                break;
            }
            w.commit_row();
            count += 1;
            if w.is_dropped() {
                return Err(Error::Closed);
            }
            if let Some(limit) = row_limit
                && count >= limit
                && self.shared.faults.fire_rows(limit)
            {
                tracing::info!("fault plan: closing connection after {count} rows");
                w.drop_mid_message();
                return Err(Error::Closed);
            }
            if self.attn.load(Ordering::Relaxed) {
                cancelled = true;
                break;
            }
            current = match rows.next() {
                Ok(r) => r,
                Err(e) => {
                    failure = Some(map_sqlite_error(&e));
                    None
                }
            };
        }
        drop(rows);
        drop(st);
        if cancelled {
            self.statement_done(done::COUNT, count);
            return Ok(Flow::Cancelled);
        }
        if let Some(e) = failure {
            self.send_error(&e);
            self.statement_done(done::ERROR | done::COUNT, count);
            return Ok(Flow::StatementError);
        }
        self.statement_done(done::COUNT, count);
        Ok(Flow::Continue)
    }

    fn rpc(&mut self, msg: &[u8]) -> Result<(), Error> {
        let mut r = SliceReader::new(msg);
        self.skip_all_headers(&mut r)?;
        self.in_proc = true;
        let mut cancelled = false;
        loop {
            let name_len = r.u16le()?;
            // SQL Server has no procedure id for sp_describe_first_result_set: by name only.
            let (proc, name) = if name_len == 0xFFFF {
                let id = r.u16le()?;
                (SystemProc::from_id(id), format!("procedure id {id}"))
            } else {
                let name = r.utf16(name_len as usize)?;
                (SystemProc::from_name(&name), name)
            };
            let _options = r.u16le()?;
            self.param_types.clear();
            let mut params: Vec<(String, Value)> = Vec::new();
            while !r.at_end()? && !matches!(r.rest().first(), Some(0x80 | 0xFF | 0xFE)) {
                let name = r.b_varchar()?;
                let _status = r.u8()?;
                let t = read_type_info(&mut r)?;
                let v = read_value(&mut r, &t, false)?;
                params.push((name, v));
            }
            let flow = match proc {
                Some(proc) => self.system_proc(proc, params)?,
                None if crate::translate::is_describe_proc(&name) => {
                    let args = params
                        .into_iter()
                        .map(|(n, v)| ((!n.is_empty()).then_some(n), v))
                        .collect();
                    match crate::describe::bind_args(args) {
                        Ok(args) => self.describe_first_result_set(&args, true)?,
                        Err(e) => {
                            self.send_error(&e);
                            self.proc_status = Some(crate::describe::ERROR_MISC);
                            Flow::Continue
                        }
                    }
                }
                None => {
                    self.send_error(&SqlError::unsupported(format!("RPC {name}")));
                    Flow::Continue
                }
            };
            if matches!(flow, Flow::Cancelled) {
                cancelled = true;
                break;
            }
            if r.at_end()? {
                break;
            }
            r.skip(1)?;
            // Each batched RPC answers with its own RETURNSTATUS + DONEPROC(MORE).
            let status = self.proc_status.take().unwrap_or(0);
            self.end_proc(status);
            self.w.done(tok::DONEPROC, done::MORE, 0);
        }
        self.finish_request(cancelled)
    }

    /// RETURNSTATUS, then the RETURNVALUE of each output parameter, as SQL Server orders them.
    fn end_proc(&mut self, status: i32) {
        self.w.return_status(status);
        for (ordinal, name, value) in std::mem::take(&mut self.return_values) {
            self.w.return_value_int(ordinal, &name, value);
        }
    }

    /// `sp_executesql` and the prepared-statement procedures (`prepared.rs`).
    fn system_proc(&mut self, proc: SystemProc, params: Params) -> Result<Flow, Error> {
        let arg = |i: usize| params.get(i).map(|(_, v)| v);
        let prepared = match proc {
            SystemProc::ExecuteSql => return self.execute_sql_rpc(params),
            SystemProc::Prepare | SystemProc::PrepExec => text_of(arg(1), "@params")
                .and_then(|decl| Ok((decl, text_of(arg(2), "@stmt")?)))
                .map(|(decl, sql)| {
                    let handle = self.prepared.insert(Statement { sql, decl });
                    let name = params.first().map(|(n, _)| n.clone()).unwrap_or_default();
                    self.return_values.push((0, name, handle));
                    handle
                }),
            SystemProc::Execute => handle_of(proc, arg(0)),
            SystemProc::Unprepare => {
                handle_of(proc, arg(0)).and_then(|h| self.prepared.remove(h).map(|()| h))
            }
        };
        let handle = match prepared {
            Ok(h) => h,
            Err(e) => {
                self.send_error(&e);
                return Ok(Flow::Abort);
            }
        };
        let first_value = match proc {
            SystemProc::PrepExec => 3,
            SystemProc::Execute => 1,
            _ => return Ok(Flow::Continue),
        };
        let statement = match self.prepared.get(handle) {
            Ok(st) => st.clone(),
            Err(e) => {
                self.send_error(&e);
                return Ok(Flow::Abort);
            }
        };
        let mut call = vec![
            (String::new(), Value::Text(statement.sql)),
            (String::new(), Value::Text(statement.decl)),
        ];
        call.extend(params.into_iter().skip(first_value));
        self.execute_sql_rpc(call)
    }

    fn execute_sql_rpc(&mut self, params: Params) -> Result<Flow, Error> {
        let mut it = params.into_iter();
        let stmt = match it.next() {
            Some((_, Value::Text(s))) => s,
            _ => {
                self.send_error(&SqlError::new(
                    214,
                    "Procedure expects parameter '@statement' of type 'ntext/nchar/nvarchar'.",
                ));
                return Ok(Flow::Abort);
            }
        };
        let decl = match it.next() {
            Some((_, Value::Text(s))) => s,
            Some(_) | None => String::new(),
        };
        let decl_names = declared_names(&decl);
        self.param_types = crate::describe::param_decls(&decl, false).unwrap_or_default();
        let named: Params = it
            .enumerate()
            .map(|(i, (n, v))| {
                let n = if n.is_empty() {
                    decl_names
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("@P{}", i + 1))
                } else {
                    n
                };
                (n, v)
            })
            .collect();
        let trimmed = stmt.trim_start();
        if let Some(rest) = strip_insert_bulk(trimmed) {
            self.insert_bulk(rest);
            return Ok(Flow::Continue);
        }
        let steps = crate::change_tracking::translate(&self.conn, &stmt, &self.ctx);
        self.run_steps(&steps, &named)
    }

    /// `sp_describe_first_result_set`: the describe result set, or its errors. Called as an RPC
    /// (`rpc`), a failure sets the return status to the error type, as SQL Server does.
    fn describe_first_result_set(&mut self, args: &DescribeArgs, rpc: bool) -> Result<Flow, Error> {
        match crate::describe::describe(&self.conn, &self.ctx, args) {
            Ok(rows) => self.send_rows(&crate::describe::result_columns(), &rows),
            Err(failure) => {
                for e in &failure.errors {
                    self.send_error(e);
                }
                if rpc {
                    self.proc_status = Some(failure.error_type);
                }
                self.statement_done(done::ERROR, 0);
                Ok(Flow::StatementError)
            }
        }
    }

    /// The result set of a system procedure run from a batch: DONEINPROC, RETURNSTATUS 0 and
    /// DONEPROC, as SQL Server ends an `EXEC`.
    fn proc_rows(
        &mut self,
        columns: &[(&str, SqlType, bool)],
        rows: &[Vec<Value>],
    ) -> Result<Flow, Error> {
        let in_proc = std::mem::replace(&mut self.in_proc, true);
        self.flush_pending();
        let flow = self.send_rows(columns, rows)?;
        self.in_proc = in_proc;
        if !in_proc {
            self.w.return_status(0);
            self.w.done(tok::DONEPROC, done::MORE, 0);
        }
        Ok(flow)
    }

    /// Send a result set computed by the server itself.
    fn send_rows(
        &mut self,
        columns: &[(&str, SqlType, bool)],
        rows: &[Vec<Value>],
    ) -> Result<Flow, Error> {
        let cols: Vec<(String, SqlType)> = columns
            .iter()
            .map(|(n, t, _)| (n.to_string(), *t))
            .collect();
        self.flush_pending();
        self.w.col_metadata(&cols, false);
        let mut count = 0;
        for row in rows {
            let cp = self.w.begin_row();
            self.w.put_u8(tok::ROW);
            let res = row
                .iter()
                .zip(&cols)
                .try_for_each(|(v, (_, ty))| encode_value(&mut self.w, ty, v.into()));
            if let Err(e) = res {
                self.w.rollback_row(cp);
                self.send_error(&e);
                self.statement_done(done::ERROR | done::COUNT, count);
                return Ok(Flow::StatementError);
            }
            self.w.commit_row();
            count += 1;
            if self.w.is_dropped() {
                return Err(Error::Closed);
            }
        }
        self.statement_done(done::COUNT, count);
        Ok(Flow::Continue)
    }

    fn insert_bulk(&mut self, rest: &str) {
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '(')
            .collect();
        let table = name
            .rsplit('.')
            .next()
            .unwrap_or(&name)
            .trim_matches(|c| c == '[' || c == ']' || c == '"')
            .to_string();
        if table.is_empty() {
            self.send_error(&SqlError::syntax("INSERT BULK without a table name"));
            return;
        }
        self.bulk_target = Some(table);
        self.statement_done(0, 0);
    }

    fn bulk_load(&mut self, r: &mut MessageReader<'_>) -> Result<(), Error> {
        self.in_proc = false;
        let Some(table) = self.bulk_target.take() else {
            while !r.at_end()? {
                r.skip(1)?;
            }
            self.send_error(&SqlError::new(
                4804,
                "Bulk load data received without INSERT BULK.",
            ));
            return self.finish_request(false);
        };
        if r.u8()? != tok::COLMETADATA {
            return Err(Error::protocol("bulk load must start with COLMETADATA"));
        }
        let n = r.u16le()? as usize;
        let mut cols = Vec::with_capacity(n);
        for _ in 0..n {
            let _user = r.u32le()?;
            let _flags = r.u16le()?;
            let t = read_type_info(r)?;
            let name = r.b_varchar()?;
            cols.push((name, t));
        }
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            q(&table),
            cols.iter().map(|c| q(&c.0)).collect::<Vec<_>>().join(", "),
            (1..=n)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut failure: Option<SqlError> = None;
        let mut count: u64 = 0;
        if self.ctx.trancount == 0 {
            self.ct_token.renew();
        }
        if let Err(e) = self.conn.execute_batch("SAVEPOINT tds_bulk") {
            failure = Some(map_sqlite_error(&e));
        }
        {
            let mut st = match self.conn.prepare(&sql) {
                Ok(s) => Some(s),
                Err(e) => {
                    failure.get_or_insert(map_sqlite_error(&e));
                    None
                }
            };
            let mut values: Vec<Value> = Vec::with_capacity(n);
            // Rows until DONE (tiberius, mssql-python) or the end of the message (FreeTDS'
            // freebcp sends no DONE).
            while !r.at_end()? {
                let token = r.u8()?;
                match token {
                    tok::ROW => {
                        values.clear();
                        for (_, t) in &cols {
                            values.push(read_value(r, t, true)?);
                        }
                        if failure.is_some() {
                            continue;
                        }
                        if let Some(st) = st.as_mut() {
                            let res = values
                                .iter()
                                .enumerate()
                                .try_for_each(|(i, v)| st.raw_bind_parameter(i + 1, v))
                                .and_then(|_| st.raw_execute());
                            match res {
                                Ok(_) => count += 1,
                                Err(e) => failure = Some(map_sqlite_error(&e)),
                            }
                        }
                    }
                    // The rest of the message (DONE's status, command and row count: 8 bytes
                    // from mssql-python, 12 from tiberius) is drained below.
                    tok::DONE => break,
                    other => {
                        return Err(Error::protocol(format!(
                            "unexpected token {other:#x} in bulk load"
                        )));
                    }
                }
            }
            while !r.at_end()? {
                r.skip(1)?;
            }
        }
        let end = if failure.is_some() {
            "ROLLBACK TO tds_bulk; RELEASE tds_bulk"
        } else {
            "RELEASE tds_bulk"
        };
        if let Err(e) = self.conn.execute_batch(end) {
            failure.get_or_insert(map_sqlite_error(&e));
        }
        match failure {
            Some(e) => {
                self.send_error(&e);
                self.statement_done(done::ERROR, 0);
            }
            None => self.statement_done(done::COUNT, count),
        }
        self.finish_request(false)
    }

    fn transaction_manager(&mut self, msg: &[u8]) -> Result<(), Error> {
        let mut r = SliceReader::new(msg);
        self.skip_all_headers(&mut r)?;
        self.in_proc = false;
        let step = match r.u16le()? {
            5 => Step::Begin,
            7 => Step::Commit,
            8 => Step::Rollback,
            other => Step::Fail(SqlError::unsupported(format!(
                "transaction manager request {other}"
            ))),
        };
        let flow = self.run_step(&step, &Vec::new())?;
        self.finish_request(matches!(flow, Flow::Cancelled))
    }
}

/// Same as `Session::statement_failed`, usable while a statement borrows the connection.
fn self_statement_failed(
    w: &mut ResponseWriter,
    pending: &mut Option<(u16, u64)>,
    had_error: &mut bool,
    in_proc: bool,
    e: &SqlError,
) -> Flow {
    if let Some((status, rows)) = pending.take() {
        w.done(tok::DONE, status | done::MORE, rows);
    }
    *had_error = true;
    w.error(e);
    if in_proc {
        w.done(tok::DONEINPROC, done::ERROR | done::MORE, 0);
    } else {
        *pending = Some((done::ERROR, 0));
    }
    Flow::StatementError
}

/// The text after a leading `INSERT BULK`, if the batch is one.
fn strip_insert_bulk(sql: &str) -> Option<&str> {
    let head = sql.get(..11)?;
    let rest = sql.get(11..)?;
    (head.eq_ignore_ascii_case("INSERT BULK") && rest.starts_with(char::is_whitespace))
        .then_some(rest)
}

/// Parameter names in a declaration list like `@P1 int,@P2 decimal(18,2)`.
fn declared_names(decl: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in decl.chars().chain(std::iter::once(',')) {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                if let Some(n) = cur.split_whitespace().next() {
                    names.push(n.to_string());
                }
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    names
}

fn bind_params(st: &mut rusqlite::Statement<'_>, params: &Params) -> rusqlite::Result<()> {
    for (name, v) in params {
        if let Some(i) = st.parameter_index(name)? {
            st.raw_bind_parameter(i, v)?;
        }
    }
    Ok(())
}
