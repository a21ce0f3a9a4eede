//! `sp_describe_first_result_set`: the metadata of a batch's first result set, found by
//! preparing (never running) its first result-returning statement in SQLite. Also the static
//! typing of result columns shared with the normal result path, so a described type is the type
//! the rows later arrive with.

use rusqlite::Connection;
use rusqlite::types::Value;

use crate::error::{SqlError, map_sqlite_error};
use crate::translate::{
    ColumnHint, Ctx, DESCRIBE_PROC, DescribeArg, Kind, QueryInfo, Shape, Step, hint_for,
};
use crate::types::{COLLATION_NAME, Len, SqlType};

/// `types::COLLATION` as SQL Server reports it: LCID and flags, then the sort id.
const TDS_COLLATION_ID: i64 = 0x00D0_0409;
const TDS_COLLATION_SORT_ID: i64 = 0x34;

/// `error_type` values of `sys.dm_exec_describe_first_result_set`, the RPC return status on error.
pub(crate) const ERROR_MISC: i32 = 1;
pub(crate) const ERROR_SYNTAX: i32 = 2;
pub(crate) const ERROR_TEMPORARY_TABLE: i32 = 10;

/// Arguments of one call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DescribeArgs {
    pub tsql: String,
    pub params: Option<String>,
    pub browse: u8,
}

/// Why a call failed: the errors to send, in order, and the RPC return status.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub errors: Vec<SqlError>,
    pub error_type: i32,
}

impl Failure {
    fn misc(e: SqlError) -> Self {
        Failure {
            errors: vec![e],
            error_type: ERROR_MISC,
        }
    }

    /// A statement that does not compile: its own error, then SQL Server's summary (11529 when a
    /// missing object makes every path fail, 11501 otherwise).
    fn compile(e: SqlError) -> Self {
        let (summary, error_type) = if e.number == 208 {
            (
                SqlError::new(
                    11529,
                    "The metadata could not be determined because every code path results in an error; see previous errors for some of these.",
                ),
                ERROR_MISC,
            )
        } else {
            (
                SqlError::new(
                    11501,
                    "The batch could not be analyzed because of compile errors.",
                ),
                ERROR_SYNTAX,
            )
        };
        Failure {
            errors: vec![e, summary],
            error_type,
        }
    }
}

/// Bind call arguments (`(name, value)`, empty/None name = positional) to the parameters.
pub(crate) fn bind_args(args: Vec<(Option<String>, Value)>) -> Result<DescribeArgs, SqlError> {
    const NAMES: [&str; 3] = ["@tsql", "@params", "@browse_information_mode"];
    let mut slots: [Option<Value>; 3] = [None, None, None];
    let mut named_seen = false;
    for (i, (name, v)) in args.into_iter().enumerate() {
        let slot = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                named_seen = true;
                NAMES
                    .iter()
                    .position(|p| p.eq_ignore_ascii_case(&n))
                    .ok_or_else(|| {
                        SqlError::new(
                            8145,
                            format!("{n} is not a parameter for procedure {DESCRIBE_PROC}."),
                        )
                    })?
            }
            None if named_seen => {
                return Err(SqlError::new(
                    119,
                    format!(
                        "Must pass parameter number {} and subsequent parameters as '@name = value'. After the form '@name = value' has been used, all subsequent parameters must be passed in the form '@name = value'.",
                        i + 1
                    ),
                ));
            }
            None if i < NAMES.len() => i,
            None => {
                return Err(SqlError::new(
                    8144,
                    format!(
                        "Procedure or function {DESCRIBE_PROC} has too many arguments specified."
                    ),
                ));
            }
        };
        slots[slot] = Some(v);
    }
    let [tsql, params, browse] = slots;
    let tsql = match tsql {
        Some(Value::Text(s)) => s,
        None | Some(Value::Null) => {
            return Err(SqlError::new(
                201,
                format!(
                    "Procedure or function '{DESCRIBE_PROC}' expects parameter '@tsql', which was not supplied."
                ),
            ));
        }
        Some(_) => {
            return Err(SqlError::new(
                214,
                "Procedure expects parameter '@tsql' of type 'nvarchar(max)'.",
            ));
        }
    };
    let params = match params {
        None | Some(Value::Null) => None,
        Some(Value::Text(s)) => Some(s),
        Some(_) => {
            return Err(SqlError::new(
                214,
                "Procedure expects parameter '@params' of type 'nvarchar(max)'.",
            ));
        }
    };
    let browse = match browse {
        None | Some(Value::Null) => Some(0),
        Some(Value::Integer(i)) => u8::try_from(i).ok(),
        Some(Value::Text(t)) => t.trim().parse::<u8>().ok(),
        Some(_) => None,
    };
    let browse = browse.filter(|b| *b <= 2).ok_or_else(|| {
        SqlError::new(
            11552,
            "The @browse_information_mode parameter expects a tinyint with values 0, 1 or 2.",
        )
    })?;
    Ok(DescribeArgs {
        tsql,
        params,
        browse,
    })
}

/// Resolve the arguments of `EXEC sp_describe_first_result_set` in a batch: `@name` values come
/// from the parameters of the enclosing `sp_executesql` call.
pub(crate) fn exec_args(
    args: &[(Option<String>, DescribeArg)],
    params: &[(String, Value)],
) -> Result<DescribeArgs, SqlError> {
    let mut out = Vec::with_capacity(args.len());
    for (name, a) in args {
        let v = match a {
            DescribeArg::Value(v) => v.clone(),
            DescribeArg::Param(p) => params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(p))
                .map(|(_, v)| v.clone())
                .ok_or_else(|| {
                    SqlError::new(137, format!("Must declare the scalar variable \"{p}\"."))
                })?,
        };
        out.push((name.clone(), v));
    }
    bind_args(out)
}

/// Parameter declarations like `@P1 int, @P2 nvarchar(4000) OUTPUT`. `strict` reports unknown
/// types and duplicates as SQL Server does; otherwise such entries are skipped.
pub(crate) fn param_decls(decl: &str, strict: bool) -> Result<Vec<(String, SqlType)>, SqlError> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in decl.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    if parts.len() == 1 && parts[0].trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut out: Vec<(String, SqlType)> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let part = part.trim();
        let mut words = part.splitn(2, char::is_whitespace);
        let name = words.next().unwrap_or_default().to_string();
        let mut rest = words.next().unwrap_or_default().trim().to_string();
        if !name.starts_with('@') || name.len() < 2 {
            if strict {
                let near = if name.is_empty() { "," } else { name.as_str() };
                return Err(SqlError::syntax(format!("Incorrect syntax near '{near}'.")));
            }
            continue;
        }
        // `= default`, `OUTPUT`/`OUT`, `READONLY` and a leading `AS` do not change the type.
        if let Some(eq) = rest.find('=') {
            rest.truncate(eq);
        }
        let mut words: Vec<&str> = rest.split_whitespace().collect();
        while words.last().is_some_and(|w| {
            ["OUTPUT", "OUT", "READONLY"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k))
        }) {
            words.pop();
        }
        if words.first().is_some_and(|w| w.eq_ignore_ascii_case("AS")) {
            words.remove(0);
        }
        let type_text = words.join(" ");
        let Some(t) = SqlType::parse(&type_text, true) else {
            if strict {
                return Err(SqlError::new(
                    2715,
                    format!(
                        "Column, parameter, or variable #{}: Cannot find data type {type_text}.",
                        i + 1
                    ),
                ));
            }
            continue;
        };
        if out.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            if strict {
                return Err(SqlError::new(
                    134,
                    format!(
                        "The variable name '{name}' has already been declared. Variable names must be unique within a query batch or stored procedure."
                    ),
                ));
            }
            continue;
        }
        out.push((name, t));
    }
    Ok(out)
}

/// How SQLite values of a type behave in arithmetic.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Always INTEGER.
    Int,
    /// REAL, or decimal text that SQLite reads as INTEGER or REAL.
    Other,
}

fn class(t: SqlType) -> Option<Class> {
    match t {
        SqlType::Bit | SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            Some(Class::Int)
        }
        SqlType::Real
        | SqlType::Float
        | SqlType::Decimal(..)
        | SqlType::Numeric(..)
        | SqlType::Money
        | SqlType::SmallMoney => Some(Class::Other),
        _ => None,
    }
}

/// Result type of arithmetic over these operand types: bigint when every operand is an integer
/// type, float when all are numeric, unknown otherwise.
fn numeric_result(types: &[SqlType]) -> Option<SqlType> {
    let mut all_int = true;
    for t in types {
        match class(*t)? {
            Class::Int => {}
            Class::Other => all_int = false,
        }
    }
    Some(if all_int {
        SqlType::BigInt
    } else {
        SqlType::Float
    })
}

/// Character length of a string type (`None` = MAX/LOB), and whether it is single-byte.
fn char_len(t: SqlType) -> Option<(Option<u32>, bool)> {
    Some(match t {
        SqlType::Char(n) => (Some(n as u32), true),
        SqlType::VarChar(Len::N(n)) => (Some(n as u32), true),
        SqlType::VarChar(Len::Max) | SqlType::Text => (None, true),
        SqlType::NChar(n) => (Some(n as u32), false),
        SqlType::NVarChar(Len::N(n)) => (Some(n as u32), false),
        SqlType::NVarChar(Len::Max) | SqlType::NText => (None, false),
        _ => return None,
    })
}

/// Common type of several candidates (CASE branches, COALESCE arguments).
fn common_type(types: &[SqlType]) -> Option<SqlType> {
    let first = *types.first()?;
    if types.iter().all(|t| *t == first) {
        return Some(first);
    }
    if let Some(t) = numeric_result(types) {
        return Some(t);
    }
    let mut longest = Some(0u32);
    let mut single = true;
    for t in types {
        let (len, sb) = char_len(*t)?;
        single &= sb;
        longest = match (longest, len) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    Some(match (single, longest) {
        (true, Some(n)) if n <= 8000 => SqlType::VarChar(Len::N(n.max(1) as u16)),
        (true, _) => SqlType::VarChar(Len::Max),
        (false, Some(n)) if n <= 4000 => SqlType::NVarChar(Len::N(n.max(1) as u16)),
        (false, _) => SqlType::NVarChar(Len::Max),
    })
}

/// Types computed expressions against the catalog and the declared parameters.
pub(crate) struct Resolver<'a> {
    conn: &'a Connection,
    info: &'a QueryInfo,
    params: &'a [(String, SqlType)],
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(
        conn: &'a Connection,
        info: &'a QueryInfo,
        params: &'a [(String, SqlType)],
    ) -> Self {
        Resolver { conn, info, params }
    }

    /// The declared type of a column reference, by preparing `SELECT <col> FROM <from clause>`.
    fn column(&self, col: &str) -> Option<SqlType> {
        let (with, from) = self.info.probe.as_ref()?;
        let probe = format!("{with}SELECT {col} FROM {from}");
        let st = self.conn.prepare_cached(&probe).ok()?;
        let decl = st.columns().first()?.decl_type()?.to_string();
        SqlType::parse(&decl, false)
    }

    /// Non-NULL candidates, all typed, or None.
    fn all(&self, shapes: &[Shape]) -> Option<Vec<SqlType>> {
        shapes
            .iter()
            .filter(|s| **s != Shape::Null)
            .map(|s| self.resolve(s))
            .collect()
    }

    pub(crate) fn resolve(&self, s: &Shape) -> Option<SqlType> {
        match s {
            Shape::Int => Some(SqlType::BigInt),
            Shape::Real => Some(SqlType::Float),
            Shape::Text(n) if *n > 4000 => Some(SqlType::NVarChar(Len::Max)),
            Shape::Text(_) => Some(SqlType::NVarChar(Len::N(4000))),
            Shape::Null | Shape::Unknown => None,
            Shape::Column(c) => self.column(c),
            Shape::Param(p) => self
                .params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(p))
                .map(|(_, t)| *t),
            Shape::Num(x) => numeric_result(&[self.resolve(x)?]),
            Shape::Arith(a, b) => numeric_result(&[self.resolve(a)?, self.resolve(b)?]),
            Shape::Merge(v) => common_type(&self.all(v)?),
            Shape::First(v) => v
                .first()
                .and_then(|f| self.resolve(f))
                .or_else(|| common_type(&self.all(v)?)),
            Shape::Same(x) => self.resolve(x),
            Shape::SameText(x) => self.resolve(x).filter(|t| char_len(*t).is_some()),
        }
    }
}

/// The type reported for a result column before looking at any row: the projection's T-SQL
/// hint, the declared type, the INFORMATION_SCHEMA column type, the computed expression's
/// static type. The result path falls back to the first row's value, sp_describe_first_result_set
/// to nvarchar(4000) (what the result path reports for a NULL or missing first row).
pub(crate) fn static_type(
    hint: Option<&ColumnHint>,
    decl: Option<&str>,
    name: &str,
    system_view: bool,
    resolver: &Resolver<'_>,
) -> Option<SqlType> {
    hint.and_then(|h| h.ty)
        .or_else(|| decl.and_then(|d| SqlType::parse(d, false)))
        .or_else(|| {
            system_view
                .then(|| crate::functions::information_schema_type(name))
                .flatten()
        })
        .or_else(|| {
            hint.and_then(|h| h.shape.as_ref())
                .and_then(|s| resolver.resolve(s))
        })
}

/// The table column a result column comes from.
struct Origin {
    table: String,
    column: String,
    nullable: bool,
    identity: bool,
    key: bool,
}

/// One described result column.
struct Described {
    name: Option<String>,
    ty: SqlType,
    nullable: bool,
    origin: Option<Origin>,
}

/// The first statement that returns rows, along every path (IF: THEN branch first).
fn first_query(steps: &[Step]) -> Option<Result<&Step, SqlError>> {
    for s in steps {
        match s {
            Step::Sql {
                kind: Kind::Query, ..
            }
            | Step::Describe(_) => return Some(Ok(s)),
            Step::Fail(e) => return Some(Err(e.clone())),
            Step::If {
                then, otherwise, ..
            } => {
                if let Some(r) = first_query(then).or_else(|| first_query(otherwise)) {
                    return Some(r);
                }
            }
            _ => {}
        }
    }
    None
}

/// Describe the first result set of `args.tsql`: one row per column, in the layout of
/// [`result_columns`].
pub(crate) fn describe(
    conn: &Connection,
    ctx: &Ctx,
    args: &DescribeArgs,
) -> Result<Vec<Vec<Value>>, Failure> {
    let params =
        param_decls(args.params.as_deref().unwrap_or(""), true).map_err(Failure::compile)?;
    let steps = crate::change_tracking::translate(conn, &args.tsql, ctx);
    let found = match first_query(&steps) {
        None => return Ok(Vec::new()),
        Some(r) => r.map_err(Failure::compile)?,
    };
    let (sql, hints, info) = match found {
        Step::Sql {
            sql, hints, info, ..
        } => (sql, hints, info),
        // Describing a describe: its own fixed result set.
        _ => {
            let cols = result_columns()
                .into_iter()
                .map(|(name, ty, nullable)| Described {
                    name: Some(name.to_string()),
                    ty,
                    nullable,
                    origin: None,
                })
                .collect::<Vec<_>>();
            return Ok(rows(&cols, args.browse, &ctx.database));
        }
    };
    if steps.len() > 1 && info.uses_temp {
        return Err(Failure {
            errors: vec![SqlError::new(
                11525,
                format!(
                    "The metadata could not be determined because statement '{sql}' uses a temp table. Metadata discovery only supports temp tables when analyzing a single-statement batch."
                ),
            )],
            error_type: ERROR_TEMPORARY_TABLE,
        });
    }
    let st = conn
        .prepare(sql)
        .map_err(|e| Failure::compile(map_sqlite_error(&e)))?;
    for i in 1..=st.parameter_count() {
        if let Some(p) = st.parameter_name(i)
            && !params.iter().any(|(n, _)| n.eq_ignore_ascii_case(p))
        {
            return Err(Failure::compile(SqlError::new(
                137,
                format!("Must declare the scalar variable \"{p}\"."),
            )));
        }
    }
    let columns: Vec<(String, Option<String>)> = st
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.decl_type().map(str::to_string)))
        .collect();
    let ncol = columns.len();
    let system_view = sql.contains("INFORMATION_SCHEMA.");
    let resolver = Resolver::new(conn, info, &params);
    let mut cols = Vec::with_capacity(ncol);
    for (i, (name, decl)) in columns.iter().enumerate() {
        let hint = hint_for(hints, ncol, i);
        let ty = static_type(hint, decl.as_deref(), name, system_view, &resolver)
            .unwrap_or(SqlType::NVarChar(Len::N(4000)));
        let computed = hint.is_some_and(|h| h.computed);
        let origin = if computed {
            None
        } else {
            origin(&st, i, info).map_err(|e| Failure::misc(map_sqlite_error(&e)))?
        };
        let nullable = if hint.is_some_and(|h| h.not_null) {
            false
        } else {
            origin.as_ref().is_none_or(|o| o.nullable)
        };
        cols.push(Described {
            name: (!hint.is_some_and(|h| h.blank_name)).then(|| name.clone()),
            ty,
            nullable,
            origin,
        });
    }
    Ok(rows(&cols, args.browse, &ctx.database))
}

/// Origin of result column `i` from SQLite's column metadata.
fn origin(
    st: &rusqlite::Statement<'_>,
    i: usize,
    info: &QueryInfo,
) -> rusqlite::Result<Option<Origin>> {
    let Some((_db, table, column, decl, _coll, not_null, primary_key, autoinc)) =
        st.column_metadata(i)?
    else {
        return Ok(None);
    };
    let text = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    let table = text(table);
    // IDENTITY columns are created as `INTEGER` (a rowid alias when they are the key).
    let identity = autoinc
        || (primary_key
            && decl.is_some_and(|d| d.to_string_lossy().eq_ignore_ascii_case("INTEGER")));
    let outer = info
        .nullable_tables
        .iter()
        .any(|t| t.eq_ignore_ascii_case(&table));
    Ok(Some(Origin {
        nullable: !(not_null || primary_key) || outer,
        column: text(column),
        table,
        identity,
        key: primary_key,
    }))
}

/// The columns of the describe result set: name, type, nullable.
pub(crate) fn result_columns() -> Vec<(&'static str, SqlType, bool)> {
    let sysname = SqlType::NVarChar(Len::N(128));
    vec![
        ("is_hidden", SqlType::Bit, false),
        ("column_ordinal", SqlType::Int, false),
        ("name", sysname, true),
        ("is_nullable", SqlType::Bit, false),
        ("system_type_id", SqlType::Int, false),
        ("system_type_name", SqlType::NVarChar(Len::N(256)), true),
        ("max_length", SqlType::SmallInt, false),
        ("precision", SqlType::TinyInt, false),
        ("scale", SqlType::TinyInt, false),
        ("collation_name", sysname, true),
        ("user_type_id", SqlType::Int, true),
        ("user_type_database", sysname, true),
        ("user_type_schema", sysname, true),
        ("user_type_name", sysname, true),
        (
            "assembly_qualified_type_name",
            SqlType::NVarChar(Len::N(4000)),
            true,
        ),
        ("xml_collection_id", SqlType::Int, true),
        ("xml_collection_database", sysname, true),
        ("xml_collection_schema", sysname, true),
        ("xml_collection_name", sysname, true),
        ("is_xml_document", SqlType::Bit, false),
        ("is_case_sensitive", SqlType::Bit, false),
        ("is_fixed_length_clr_type", SqlType::Bit, false),
        ("source_server", sysname, true),
        ("source_database", sysname, true),
        ("source_schema", sysname, true),
        ("source_table", sysname, true),
        ("source_column", sysname, true),
        ("is_identity_column", SqlType::Bit, true),
        ("is_part_of_unique_key", SqlType::Bit, true),
        ("is_updateable", SqlType::Bit, true),
        ("is_computed_column", SqlType::Bit, true),
        ("is_sparse_column_set", SqlType::Bit, true),
        ("ordinal_in_order_by_list", SqlType::SmallInt, true),
        ("order_by_list_length", SqlType::SmallInt, true),
        ("order_by_is_descending", SqlType::SmallInt, true),
        ("tds_type_id", SqlType::Int, false),
        ("tds_length", SqlType::Int, false),
        ("tds_collation_id", SqlType::Int, true),
        ("tds_collation_sort_id", SqlType::TinyInt, true),
    ]
}

/// sys.types / sp_describe_first_result_set facts of a type.
struct TypeFacts {
    system_type_id: i64,
    max_length: i64,
    precision: i64,
    scale: i64,
    collated: bool,
    /// TYPE_INFO code and length as this server sends them in COLMETADATA.
    tds_type_id: i64,
    tds_length: i64,
}

fn decimal_len(p: u8) -> i64 {
    match p {
        1..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

fn time_len(scale: u8) -> i64 {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

/// Digits of a time with `scale` fractional digits (`hh:mm:ss[.f…]`).
fn time_precision(base: i64, scale: u8) -> i64 {
    if scale == 0 {
        base
    } else {
        base + 1 + scale as i64
    }
}

fn type_facts(t: SqlType) -> TypeFacts {
    const PLP: i64 = 0xFFFF;
    let f =
        |system_type_id: i64, max_length: i64, precision: i64, scale: i64, tds: i64| TypeFacts {
            system_type_id,
            max_length,
            precision,
            scale,
            collated: false,
            tds_type_id: tds,
            tds_length: max_length,
        };
    let chars = |system_type_id: i64, len: Option<i64>, tds: i64| TypeFacts {
        system_type_id,
        max_length: len.unwrap_or(-1),
        precision: 0,
        scale: 0,
        collated: true,
        tds_type_id: tds,
        tds_length: len.unwrap_or(PLP),
    };
    let bytes = |system_type_id: i64, len: Option<i64>, tds: i64| TypeFacts {
        collated: false,
        ..chars(system_type_id, len, tds)
    };
    let n = |l: Len, unit: i64| match l {
        Len::N(n) => Some(n as i64 * unit),
        Len::Max => None,
    };
    match t {
        SqlType::Bit => f(104, 1, 1, 0, 0x68),
        SqlType::TinyInt => f(48, 1, 3, 0, 0x26),
        SqlType::SmallInt => f(52, 2, 5, 0, 0x26),
        SqlType::Int => f(56, 4, 10, 0, 0x26),
        SqlType::BigInt => f(127, 8, 19, 0, 0x26),
        SqlType::Real => f(59, 4, 24, 0, 0x6D),
        SqlType::Float => f(62, 8, 53, 0, 0x6D),
        SqlType::Decimal(p, s) => f(106, decimal_len(p), p as i64, s as i64, 0x6A),
        SqlType::Numeric(p, s) => f(108, decimal_len(p), p as i64, s as i64, 0x6C),
        SqlType::Money => f(60, 8, 19, 4, 0x6E),
        SqlType::SmallMoney => f(122, 4, 10, 4, 0x6E),
        SqlType::Date => f(40, 3, 10, 0, 0x28),
        SqlType::Time(s) => f(41, time_len(s), time_precision(8, s), s as i64, 0x29),
        SqlType::DateTime => f(61, 8, 23, 3, 0x6F),
        SqlType::SmallDateTime => f(58, 4, 16, 0, 0x6F),
        SqlType::DateTime2(s) => f(42, time_len(s) + 3, time_precision(19, s), s as i64, 0x2A),
        SqlType::DateTimeOffset(s) => f(43, time_len(s) + 5, time_precision(26, s), s as i64, 0x2B),
        SqlType::Char(c) => chars(175, Some(c as i64), 0xAF),
        SqlType::VarChar(l) => chars(167, n(l, 1), 0xA7),
        SqlType::NChar(c) => chars(239, Some(c as i64 * 2), 0xEF),
        SqlType::NVarChar(l) => chars(231, n(l, 2), 0xE7),
        SqlType::Text => TypeFacts {
            max_length: 16,
            tds_length: 0x7FFF_FFFF,
            ..chars(35, None, 0x23)
        },
        SqlType::NText => TypeFacts {
            max_length: 16,
            tds_length: 0x7FFF_FFFE,
            ..chars(99, None, 0x63)
        },
        SqlType::Image => TypeFacts {
            max_length: 16,
            tds_length: 0x7FFF_FFFF,
            ..bytes(34, None, 0x22)
        },
        SqlType::Binary(c) => bytes(173, Some(c as i64), 0xAD),
        SqlType::VarBinary(l) => bytes(165, n(l, 1), 0xA5),
        SqlType::UniqueIdentifier => f(36, 16, 0, 0, 0x24),
        SqlType::Xml => bytes(241, None, 0xF1),
    }
}

/// The describe rows, in the layout of [`result_columns`].
fn rows(cols: &[Described], browse: u8, database: &str) -> Vec<Vec<Value>> {
    let int = |v: i64| Value::Integer(v);
    let bit = |b: bool| Value::Integer(b as i64);
    let text = |s: &str| Value::Text(s.to_string());
    let opt = |v: Option<Value>| v.unwrap_or(Value::Null);
    cols.iter()
        .enumerate()
        .map(|(i, c)| {
            let f = type_facts(c.ty);
            let browsed = c.origin.as_ref().filter(|_| browse > 0);
            let identity = c.origin.as_ref().is_some_and(|o| o.identity);
            vec![
                bit(false),
                int(i as i64 + 1),
                opt(c.name.as_deref().map(text)),
                bit(c.nullable),
                int(f.system_type_id),
                text(&c.ty.tsql_name()),
                int(f.max_length),
                int(f.precision),
                int(f.scale),
                opt(f.collated.then(|| text(COLLATION_NAME))),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                bit(false),
                bit(false),
                bit(false),
                Value::Null,
                opt(browsed.map(|_| text(database))),
                opt(browsed.map(|_| text("dbo"))),
                opt(browsed.map(|o| text(&o.table))),
                opt(browsed.map(|o| text(&o.column))),
                bit(identity),
                opt(browsed.map(|o| bit(o.key))),
                bit(c.origin.is_some() && !identity),
                bit(false),
                bit(false),
                Value::Null,
                Value::Null,
                Value::Null,
                int(f.tds_type_id),
                int(f.tds_length),
                opt(f.collated.then(|| int(TDS_COLLATION_ID))),
                opt(f.collated.then(|| int(TDS_COLLATION_SORT_ID))),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_named_and_positional_arguments() {
        let t = |s: &str| Value::Text(s.into());
        let a = bind_args(vec![
            (None, t("SELECT 1")),
            (Some("@browse_information_mode".into()), Value::Integer(1)),
        ])
        .unwrap();
        assert_eq!(
            a,
            DescribeArgs {
                tsql: "SELECT 1".into(),
                params: None,
                browse: 1
            }
        );
        assert_eq!(
            bind_args(vec![(Some("@TSQL".into()), t("x")), (None, t("y"))])
                .unwrap_err()
                .number,
            119
        );
        assert_eq!(bind_args(vec![]).unwrap_err().number, 201);
        assert_eq!(
            bind_args(vec![(Some("@nope".into()), t("x"))])
                .unwrap_err()
                .number,
            8145
        );
        assert_eq!(
            bind_args(vec![
                (None, t("x")),
                (None, Value::Null),
                (None, Value::Integer(3))
            ])
            .unwrap_err()
            .number,
            11552
        );
    }

    #[test]
    fn parses_parameter_declarations() {
        assert_eq!(
            param_decls(
                "@P1 int, @P2 decimal(18, 4) OUTPUT,@p3 AS nvarchar(max) = N'x'",
                true
            )
            .unwrap(),
            vec![
                ("@P1".to_string(), SqlType::Int),
                ("@P2".to_string(), SqlType::Decimal(18, 4)),
                ("@p3".to_string(), SqlType::NVarChar(Len::Max)),
            ]
        );
        assert_eq!(param_decls("  ", true).unwrap(), vec![]);
        assert_eq!(param_decls("@a geography", true).unwrap_err().number, 2715);
        assert_eq!(param_decls("@a int, @A int", true).unwrap_err().number, 134);
        assert_eq!(param_decls("a int", true).unwrap_err().number, 102);
        assert_eq!(
            param_decls("@a geography, @b bit", false).unwrap(),
            vec![("@b".to_string(), SqlType::Bit)]
        );
    }

    #[test]
    fn common_types() {
        use SqlType::*;
        assert_eq!(common_type(&[Int, Int]), Some(Int));
        assert_eq!(common_type(&[Int, BigInt, TinyInt]), Some(BigInt));
        assert_eq!(common_type(&[Int, Decimal(10, 2)]), Some(Float));
        assert_eq!(
            common_type(&[VarChar(Len::N(10)), Char(20)]),
            Some(VarChar(Len::N(20)))
        );
        assert_eq!(
            common_type(&[VarChar(Len::N(10)), NVarChar(Len::N(4000))]),
            Some(NVarChar(Len::N(4000)))
        );
        assert_eq!(
            common_type(&[NVarChar(Len::N(10)), NVarChar(Len::Max)]),
            Some(NVarChar(Len::Max))
        );
        assert_eq!(common_type(&[Int, Date]), None);
    }
}
