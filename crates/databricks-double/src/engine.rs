//! Runs translated statements on the shared SQLite connection and reads typed results.
//! DML answers the Delta-style counters (`num_affected_rows`, ...); MERGE runs as several statements in a savepoint.

use rusqlite::types::Value;
use rusqlite::{Connection, Statement};

use crate::translate::{self, Ctx, MergeAction, MergePlan, Plan, When};
use crate::types::{Cell, Kind, convert};

/// A failed statement, reported as `status.error` (HTTP 200, state FAILED).
#[derive(Debug)]
pub(crate) struct ExecError {
    pub code: &'static str,
    pub message: String,
}

impl ExecError {
    fn bad(message: impl Into<String>) -> Self {
        ExecError {
            code: "BAD_REQUEST",
            message: message.into(),
        }
    }
}

impl From<rusqlite::Error> for ExecError {
    /// SQLite messages get the Databricks error class clients look for, e.g. `[TABLE_OR_VIEW_NOT_FOUND]`.
    fn from(e: rusqlite::Error) -> Self {
        let m = e.to_string();
        let class = if m.starts_with("no such table") {
            "[TABLE_OR_VIEW_NOT_FOUND] "
        } else if m.contains("already exists") {
            "[TABLE_OR_VIEW_ALREADY_EXISTS] "
        } else if m.starts_with("no such column") {
            "[UNRESOLVED_COLUMN] "
        } else if m.contains("syntax error") || m.starts_with("incomplete input") {
            "[PARSE_SYNTAX_ERROR] "
        } else {
            ""
        };
        ExecError::bad(format!("{class}{m}"))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    pub kind: Kind,
}

/// A materialised result: columns and column-major typed cells.
#[derive(Debug, Default)]
pub(crate) struct ResultSet {
    pub columns: Vec<Column>,
    pub data: Vec<Vec<Cell>>,
    pub rows: usize,
    pub truncated: bool,
}

/// What a statement produced.
#[derive(Debug)]
pub(crate) enum Outcome {
    Rows(ResultSet),
    /// `CREATE VOLUME`: the caller registers the volume.
    CreateVolume {
        path: String,
        if_not_exists: bool,
    },
}

/// Translates and runs one Databricks statement. `params` are already typed SQLite values.
pub(crate) fn run(
    conn: &Connection,
    sql: &str,
    catalog: Option<&str>,
    schema: Option<&str>,
    params: &[(String, Value)],
    row_limit: Option<usize>,
) -> Result<Outcome, ExecError> {
    let exists = |name: &str| table_exists(conn, name);
    let ctx = Ctx {
        catalog,
        schema,
        exists: &exists,
        now: now_text(),
    };
    let plan = translate::translate(sql, &ctx).map_err(ExecError::bad)?;
    tracing::debug!(?plan, "databricks double statement");
    match plan {
        Plan::NoOp => Ok(Outcome::Rows(ResultSet::default())),
        Plan::CreateVolume {
            path,
            if_not_exists,
        } => Ok(Outcome::CreateVolume {
            path,
            if_not_exists,
        }),
        Plan::Sql { statements, ddl } => in_savepoint(conn, statements.len() > 1, || {
            let mut last = ResultSet::default();
            for s in &statements {
                last = run_one(conn, s, params, row_limit)?;
            }
            if ddl {
                last = ResultSet::default();
            }
            Ok(Outcome::Rows(last))
        }),
        Plan::Merge(m) => in_savepoint(conn, true, || {
            run_merge(conn, &m, params).map(Outcome::Rows)
        }),
    }
}

fn now_text() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn table_exists(conn: &Connection, name: &str) -> bool {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type IN ('table','view') AND name = ?1 COLLATE NOCASE",
        [name],
        |_| Ok(()),
    )
    .is_ok()
}

fn in_savepoint<T>(
    conn: &Connection,
    use_sp: bool,
    f: impl FnOnce() -> Result<T, ExecError>,
) -> Result<T, ExecError> {
    if !use_sp {
        return f();
    }
    conn.execute_batch("SAVEPOINT dbx_double")?;
    match f() {
        Ok(v) => {
            conn.execute_batch("RELEASE dbx_double")?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO dbx_double; RELEASE dbx_double");
            Err(e)
        }
    }
}

fn bind(stmt: &mut Statement, params: &[(String, Value)]) -> Result<(), ExecError> {
    for (name, value) in params {
        if let Some(idx) = stmt.parameter_index(&format!(":{name}"))? {
            stmt.raw_bind_parameter(idx, value)?;
        }
    }
    Ok(())
}

fn first_word(sql: &str) -> String {
    sql.trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// Runs one SQLite statement: rows when it has result columns, DML counters otherwise.
fn run_one(
    conn: &Connection,
    sql: &str,
    params: &[(String, Value)],
    row_limit: Option<usize>,
) -> Result<ResultSet, ExecError> {
    let mut stmt = conn.prepare(sql)?;
    bind(&mut stmt, params)?;
    if stmt.column_count() > 0 {
        return read_rows(&mut stmt, row_limit);
    }
    let changed = stmt.raw_execute()? as i64;
    Ok(match first_word(sql).as_str() {
        "INSERT" | "REPLACE" => counters(&[
            ("num_affected_rows", changed),
            ("num_inserted_rows", changed),
        ]),
        "UPDATE" | "DELETE" => counters(&[("num_affected_rows", changed)]),
        _ => ResultSet::default(),
    })
}

fn counters(values: &[(&str, i64)]) -> ResultSet {
    ResultSet {
        columns: values
            .iter()
            .map(|(n, _)| Column {
                name: n.to_string(),
                kind: Kind::I64,
            })
            .collect(),
        data: values.iter().map(|(_, v)| vec![Cell::Int(*v)]).collect(),
        rows: 1,
        truncated: false,
    }
}

/// Reads all rows (up to `row_limit`) and types each column from its declared type or its values.
pub(crate) fn read_rows(
    stmt: &mut Statement,
    row_limit: Option<usize>,
) -> Result<ResultSet, ExecError> {
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let decls: Vec<Option<String>> = stmt
        .columns()
        .iter()
        .map(|c| c.decl_type().map(str::to_string))
        .collect();
    let n = names.len();
    let mut raw: Vec<Vec<Value>> = vec![Vec::new(); n];
    let mut count = 0usize;
    let mut truncated = false;
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        if row_limit.is_some_and(|l| count >= l) {
            truncated = true;
            break;
        }
        for (i, col) in raw.iter_mut().enumerate() {
            col.push(row.get::<_, Value>(i)?);
        }
        count += 1;
    }
    let mut columns = Vec::with_capacity(n);
    let mut data = Vec::with_capacity(n);
    for ((name, decl), values) in names.into_iter().zip(decls).zip(raw) {
        let kind = decl
            .as_deref()
            .and_then(Kind::from_decltype)
            .unwrap_or_else(|| Kind::infer(values.iter()));
        let cells = values
            .into_iter()
            .map(|v| convert(v, kind))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| ExecError::bad(format!("{m} (column {name})")))?;
        columns.push(Column { name, kind });
        data.push(cells);
    }
    Ok(ResultSet {
        columns,
        data,
        rows: count,
        truncated,
    })
}

fn exec(conn: &Connection, sql: &str, params: &[(String, Value)]) -> Result<i64, ExecError> {
    tracing::trace!(sql, "merge step");
    let mut stmt = conn.prepare(sql)?;
    bind(&mut stmt, params)?;
    Ok(stmt.raw_execute()? as i64)
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs MERGE INTO: snapshot the source, decide every row's clause against the unmodified target,
/// then apply updates and deletes by rowid, then inserts. Delta's counters are returned.
fn run_merge(
    conn: &Connection,
    m: &MergePlan,
    params: &[(String, Value)],
) -> Result<ResultSet, ExecError> {
    let (t, a, b) = (&m.target, quote(&m.target_alias), quote(&m.source_alias));
    let target_name = t.trim_matches('"').replace("\"\"", "\"");
    let target_cols: Vec<String> = {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
        stmt.query_map([&target_name], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?
    };
    if target_cols.is_empty() {
        return Err(ExecError::bad(format!(
            "[TABLE_OR_VIEW_NOT_FOUND] The table {t} cannot be found"
        )));
    }
    for tmp in ["src", "pairs", "m", "n", "s"] {
        conn.execute_batch(&format!("DROP TABLE IF EXISTS temp.__merge_{tmp}"))?;
    }
    exec(
        conn,
        &format!(
            "CREATE TEMP TABLE __merge_src AS SELECT row_number() OVER () AS __sid, {b}.* FROM {} AS {b}",
            m.source
        ),
        params,
    )?;
    exec(
        conn,
        &format!(
            "CREATE TEMP TABLE __merge_pairs AS SELECT {a}.rowid AS __tid, {b}.__sid AS __sid \
             FROM {t} AS {a} JOIN temp.__merge_src AS {b} ON ({})",
            m.on
        ),
        params,
    )?;
    let has_matched = m.clauses.iter().any(|c| c.when == When::Matched);
    if has_matched
        && conn
            .query_row(
                "SELECT 1 FROM temp.__merge_pairs GROUP BY __tid HAVING count(*) > 1 LIMIT 1",
                [],
                |_| Ok(()),
            )
            .is_ok()
    {
        return Err(ExecError::bad(
            "[DELTA_MULTIPLE_SOURCE_ROW_MATCHING_TARGET_ROW_IN_MERGE] Cannot perform Merge as multiple source rows \
             matched and attempted to modify the same target row in the Delta table",
        ));
    }
    conn.execute_batch(
        "CREATE TEMP TABLE __merge_m (__tid INTEGER, __sid INTEGER, __c INTEGER);
         CREATE TEMP TABLE __merge_n (__sid INTEGER, __c INTEGER);
         CREATE TEMP TABLE __merge_s (__tid INTEGER, __c INTEGER);",
    )?;
    // Decide the clause of every row before anything changes (first matching clause wins).
    for (i, c) in m.clauses.iter().enumerate() {
        let cond = c
            .condition
            .as_deref()
            .map(|x| format!(" AND ({x})"))
            .unwrap_or_default();
        let sql = match c.when {
            When::Matched => format!(
                "INSERT INTO temp.__merge_m SELECT p.__tid, p.__sid, {i} FROM temp.__merge_pairs AS p \
                 JOIN {t} AS {a} ON {a}.rowid = p.__tid JOIN temp.__merge_src AS {b} ON {b}.__sid = p.__sid \
                 WHERE p.__tid NOT IN (SELECT __tid FROM temp.__merge_m){cond}"
            ),
            When::NotMatched => format!(
                "INSERT INTO temp.__merge_n SELECT {b}.__sid, {i} FROM temp.__merge_src AS {b} \
                 WHERE {b}.__sid NOT IN (SELECT __sid FROM temp.__merge_pairs) \
                 AND {b}.__sid NOT IN (SELECT __sid FROM temp.__merge_n){cond}"
            ),
            When::NotMatchedBySource => format!(
                "INSERT INTO temp.__merge_s SELECT {a}.rowid, {i} FROM {t} AS {a} \
                 WHERE {a}.rowid NOT IN (SELECT __tid FROM temp.__merge_pairs) \
                 AND {a}.rowid NOT IN (SELECT __tid FROM temp.__merge_s){cond}"
            ),
        };
        exec(conn, &sql, params)?;
    }
    let (mut updated, mut deleted, mut inserted) = (0i64, 0i64, 0i64);
    let set_all = || {
        target_cols
            .iter()
            .map(|c| format!("{} = {b}.{}", quote(c), quote(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let set_list = |sets: &[(String, String)]| {
        sets.iter()
            .map(|(c, e)| format!("{} = ({e})", quote(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, c) in m.clauses.iter().enumerate() {
        match (&c.when, &c.action) {
            (When::Matched, MergeAction::Update(_) | MergeAction::UpdateAll) => {
                let sets = match &c.action {
                    MergeAction::Update(s) => set_list(s),
                    _ => set_all(),
                };
                updated += exec(
                    conn,
                    &format!(
                        "UPDATE {t} AS {a} SET {sets} FROM temp.__merge_src AS {b}, temp.__merge_m AS __mm \
                         WHERE __mm.__c = {i} AND {a}.rowid = __mm.__tid AND {b}.__sid = __mm.__sid"
                    ),
                    params,
                )?;
            }
            (When::Matched, MergeAction::Delete) => {
                deleted += exec(
                    conn,
                    &format!(
                        "DELETE FROM {t} WHERE rowid IN (SELECT __tid FROM temp.__merge_m WHERE __c = {i})"
                    ),
                    params,
                )?;
            }
            (When::NotMatchedBySource, MergeAction::Update(sets)) => {
                updated += exec(
                    conn,
                    &format!(
                        "UPDATE {t} AS {a} SET {} WHERE {a}.rowid IN (SELECT __tid FROM temp.__merge_s WHERE __c = {i})",
                        set_list(sets)
                    ),
                    params,
                )?;
            }
            (When::NotMatchedBySource, MergeAction::Delete) => {
                deleted += exec(
                    conn,
                    &format!(
                        "DELETE FROM {t} WHERE rowid IN (SELECT __tid FROM temp.__merge_s WHERE __c = {i})"
                    ),
                    params,
                )?;
            }
            _ => {}
        }
    }
    for (i, c) in m.clauses.iter().enumerate() {
        let (cols, vals) = match &c.action {
            MergeAction::InsertAll => (
                target_cols.iter().map(|c| quote(c)).collect::<Vec<_>>(),
                target_cols
                    .iter()
                    .map(|c| format!("{b}.{}", quote(c)))
                    .collect::<Vec<_>>(),
            ),
            MergeAction::Insert { columns, values } => {
                (columns.iter().map(|c| quote(c)).collect(), values.clone())
            }
            _ => continue,
        };
        inserted += exec(
            conn,
            &format!(
                "INSERT INTO {t} ({}) SELECT {} FROM temp.__merge_src AS {b}, temp.__merge_n AS __nn \
                 WHERE __nn.__sid = {b}.__sid AND __nn.__c = {i}",
                cols.join(", "),
                vals.join(", ")
            ),
            params,
        )?;
    }
    conn.execute_batch(
        "DROP TABLE temp.__merge_src; DROP TABLE temp.__merge_pairs; DROP TABLE temp.__merge_m;
         DROP TABLE temp.__merge_n; DROP TABLE temp.__merge_s;",
    )?;
    Ok(counters(&[
        ("num_affected_rows", updated + deleted + inserted),
        ("num_updated_rows", updated),
        ("num_deleted_rows", deleted),
        ("num_inserted_rows", inserted),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(conn: &Connection, sql: &str) -> Vec<Vec<Option<String>>> {
        match run(conn, sql, None, None, &[], None).unwrap() {
            Outcome::Rows(rs) => (0..rs.rows)
                .map(|r| {
                    rs.columns
                        .iter()
                        .zip(&rs.data)
                        .map(|(c, d)| crate::types::render(&d[r], c.kind))
                        .collect()
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn merge_updates_inserts_deletes() {
        let conn = Connection::open_in_memory().unwrap();
        rows(
            &conn,
            "CREATE TABLE main.s.t (id BIGINT, v STRING) USING DELTA",
        );
        rows(
            &conn,
            "CREATE TABLE main.s.src (id BIGINT, v STRING, del BOOLEAN)",
        );
        rows(
            &conn,
            "INSERT INTO main.s.t VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        );
        rows(
            &conn,
            "INSERT INTO main.s.src VALUES (1, 'A', false), (2, 'B', true), (4, 'D', false)",
        );
        let r = rows(
            &conn,
            "MERGE INTO main.s.t AS t USING main.s.src AS s ON t.id = s.id \
             WHEN MATCHED AND s.del THEN DELETE WHEN MATCHED THEN UPDATE SET t.v = s.v \
             WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v)",
        );
        assert_eq!(
            r,
            vec![vec![
                Some("3".into()),
                Some("1".into()),
                Some("1".into()),
                Some("1".into())
            ]]
        );
        let all = rows(&conn, "SELECT id, v FROM main.s.t ORDER BY id");
        let want: Vec<Vec<Option<String>>> = [("1", "A"), ("3", "c"), ("4", "D")]
            .iter()
            .map(|(a, b)| vec![Some(a.to_string()), Some(b.to_string())])
            .collect();
        assert_eq!(all, want);
        let r = rows(
            &conn,
            "MERGE INTO main.s.t t USING main.s.src s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE",
        );
        assert_eq!(r[0][2], Some("1".into()));
    }

    #[test]
    fn dml_counters_and_typed_rows() {
        let conn = Connection::open_in_memory().unwrap();
        rows(
            &conn,
            "CREATE TABLE a.b.c (id INT, amount DECIMAL(10,2), ts TIMESTAMP, code STRING)",
        );
        let r = rows(
            &conn,
            "INSERT INTO a.b.c VALUES (1, 12.5, '2024-01-02 03:04:05', '007')",
        );
        assert_eq!(r, vec![vec![Some("1".into()), Some("1".into())]]);
        let r = rows(&conn, "SELECT * FROM a.b.c");
        assert_eq!(
            r[0],
            vec![
                Some("1".into()),
                Some("12.50".into()),
                Some("2024-01-02T03:04:05.000Z".into()),
                Some("007".into())
            ]
        );
        let r = rows(&conn, "DELETE FROM a.b.c WHERE c.id = 1");
        assert_eq!(r, vec![vec![Some("1".into())]]);
        assert!(rows(&conn, "DROP TABLE a.b.c").is_empty());
    }
}
