//! T-SQL to SQLite translation: parses a batch with sqlparser's MsSqlDialect and produces steps.
//! See the crate documentation for the table of supported constructs.

use std::ops::ControlFlow;

use rusqlite::types::Value as SqlValue;
use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, CastKind, ColumnOption, DataType, Expr, FromTable, Function,
    FunctionArg, FunctionArgExpr, FunctionArguments, Ident, JoinConstraint, JoinOperator,
    LimitClause, ObjectName, ObjectNamePart, Offset, OffsetRows, Query, SelectItem, SetExpr,
    Statement, TableFactor, TableWithJoins, TopQuantity, UnaryOperator, UpdateTableFromKind, Value,
    Visit, VisitMut, Visitor, VisitorMut,
};
use sqlparser::dialect::MsSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::SqlError;
use crate::functions::object_name;
use crate::types::{Len, SqlType};

/// Kind of statement, deciding what DONE looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// May return rows.
    Query,
    /// INSERT/UPDATE/DELETE: DONE carries a row count.
    Dml,
    /// DDL and the rest: DONE without count.
    Other,
}

/// Per projection item hints derived from the T-SQL select list (see [`hint_for`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct ColumnHint {
    /// Type implied by the expression (CAST target, COUNT -> int, ...).
    pub ty: Option<SqlType>,
    /// Unaliased expression: SQL Server reports an empty column name.
    pub blank_name: bool,
    /// Static shape of a computed expression, typed against the catalog when neither `ty` nor a
    /// declared type is known (`None` for plain column references and wildcards).
    pub shape: Option<Shape>,
    /// The expression can never be NULL (COUNT, non-NULL literal, ISNULL with such a fallback).
    pub not_null: bool,
    /// Not a plain column reference: nullability does not come from a table column.
    pub computed: bool,
    /// `*` or `t.*`: stands for any number of result columns.
    pub wildcard: bool,
}

/// Static shape of a computed projection expression. Resolved to a type with SQLite's storage
/// rules in mind (integer arithmetic stays INTEGER, anything touching a real or a decimal stored
/// as text becomes REAL), so the type is the one the values actually have.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    /// Integer literal (SQLite INTEGER).
    Int,
    /// Real literal (SQLite REAL).
    Real,
    /// String literal of this many UTF-16 units.
    Text(usize),
    /// The NULL literal.
    Null,
    /// Column reference, as SQLite text (`"o"."qty"`), typed by probing the FROM clause.
    Column(String),
    /// Parameter (`@P1`), typed by its declaration.
    Param(String),
    /// Numeric result of one operand: unary minus, ABS, SUM.
    Num(Box<Shape>),
    /// Binary arithmetic.
    Arith(Box<Shape>, Box<Shape>),
    /// Common type of several candidates: CASE branches, COALESCE, IIF.
    Merge(Vec<Shape>),
    /// Type of the first candidate if known, else their common type (ISNULL).
    First(Vec<Shape>),
    /// Same type as the argument (MIN, MAX).
    Same(Box<Shape>),
    /// Same character type as the argument (UPPER, LOWER, LTRIM, RTRIM, TRIM).
    SameText(Box<Shape>),
    /// Not typed statically.
    Unknown,
}

/// Facts about a query used for metadata: how to probe column types, outer-join nullability and
/// temp tables.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueryInfo {
    /// `WITH …` prefix (possibly empty) and FROM clause of the outer SELECT, in SQLite syntax:
    /// `{with}SELECT <column> FROM {from}` yields a column reference's declared type.
    pub probe: Option<(String, String)>,
    /// Tables on the NULL-supplying side of an outer join anywhere in the query.
    pub nullable_tables: Vec<String>,
    /// The query reads a `#temp` table.
    pub uses_temp: bool,
}

/// One argument of `EXEC sp_describe_first_result_set …`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DescribeArg {
    /// A literal.
    Value(SqlValue),
    /// A parameter of the enclosing `sp_executesql` call (`@tsql = @P1`).
    Param(String),
}

/// Name of the metadata procedure, compared case-insensitively after dropping `sys.`/`[…]`.
pub(crate) const DESCRIBE_PROC: &str = "sp_describe_first_result_set";

/// Is `name` (possibly `sys.`/`master.sys.`-qualified, bracketed) sp_describe_first_result_set?
pub(crate) fn is_describe_proc(name: &str) -> bool {
    last_part_of(name).eq_ignore_ascii_case(DESCRIBE_PROC)
}

/// One executable unit of a batch.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// SQLite statement text.
    Sql {
        sql: String,
        kind: Kind,
        hints: Vec<ColumnHint>,
        /// `SELECT TOP 0 * FROM t`: mark columns updateable (bulk insert metadata).
        updateable: bool,
        /// Metadata facts (queries only).
        info: QueryInfo,
    },
    /// `EXEC sp_describe_first_result_set …`: named (`@tsql = …`) or positional arguments.
    Describe(Vec<(Option<String>, DescribeArg)>),
    /// `SELECT ... INTO t FROM ...`: create `t` with the query's declared column types, then fill it.
    SelectInto {
        table: String,
        temp: bool,
        query: String,
    },
    /// `IF cond stmt [ELSE stmt]`.
    If {
        cond: String,
        then: Vec<Step>,
        otherwise: Vec<Step>,
    },
    /// Several SQLite statements run as one T-SQL statement inside a savepoint (MERGE);
    /// the DONE row count sums the statements flagged `true`.
    Script(Vec<(String, bool)>),
    /// BEGIN TRAN / COMMIT / ROLLBACK.
    Begin,
    Commit,
    Rollback,
    /// `USE db`.
    Use(String),
    /// Accepted and ignored (`SET NOCOUNT ON`, ...).
    Ignore,
    /// `SET FMTONLY ON|OFF`: queries answer with their column metadata only (`bulk_copy`).
    FmtOnly(bool),
    /// `EXEC sp_tablecollations_100 N'table'` (`bulk_copy`).
    TableCollations(String),
    /// `EXEC sp_datatype_info_100 @data_type[, @ODBCVer]` (`datatype_info`).
    DatatypeInfo(i64),
    /// A change tracking statement (see `change_tracking`).
    ChangeTracking(crate::change_tracking::Command),
    /// A statement that cannot be executed; reported when reached.
    Fail(SqlError),
}

/// Fixed answers for server metadata functions.
pub(crate) const VERSION_STRING: &str =
    "Microsoft SQL Server 2019 (RTM) - 15.0.2000.5 (X64) \n\ttds-test-server (SQLite backend)";
pub(crate) const PRODUCT_VERSION: &str = "15.0.2000.5";

/// Per-connection context used by translation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ctx {
    pub database: String,
    pub spid: u16,
    pub trancount: u32,
}

/// Translate a whole batch. Parse errors become a single failing step.
/// The last part of a possibly qualified, bracketed name (`sys.[sp_x]` -> `sp_x`).
fn last_part_of(name: &str) -> &str {
    name.rsplit('.')
        .next()
        .unwrap_or(name)
        .trim_matches(|c| c == '[' || c == ']' || c == '"')
}

pub(crate) fn translate_batch(sql: &str, ctx: &Ctx) -> Vec<Step> {
    // T-SQL runs a procedure named by the first word of a batch without EXEC.
    let head: String = sql
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
        .collect();
    let exec;
    let proc = last_part_of(&head);
    let sql = if is_describe_proc(&head)
        || proc.eq_ignore_ascii_case(crate::datatype_info::PROC)
        || proc.eq_ignore_ascii_case(crate::bulk_copy::TABLE_COLLATIONS_PROC)
    {
        exec = format!("EXEC {sql}");
        exec.as_str()
    } else {
        sql
    };
    match parse_batch(sql) {
        Ok(stmts) => stmts
            .into_iter()
            .map(|s| translate_statement(s, ctx))
            .collect(),
        Err(e) => vec![Step::Fail(e)],
    }
}

fn quote_word(w: &mut sqlparser::tokenizer::Word) {
    if w.quote_style == Some('[') || (w.quote_style.is_none() && w.value.starts_with('#')) {
        w.quote_style = Some('"');
        w.keyword = Keyword::NoKeyword;
    }
}

/// Token-level normalisation, then statement-by-statement parsing (T-SQL needs no `;`).
fn parse_batch(sql: &str) -> Result<Vec<Statement>, SqlError> {
    let dialect = MsSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError::syntax(format!("Incorrect syntax: {e}")))?;
    let mut out_tokens = Vec::with_capacity(tokens.len());
    for mut t in tokens {
        match &mut t.token {
            Token::Word(w)
                if w.quote_style.is_none()
                    && (w.value.eq_ignore_ascii_case("CLUSTERED")
                        || w.value.eq_ignore_ascii_case("NONCLUSTERED")) =>
            {
                continue;
            }
            Token::Word(w) => quote_word(w),
            Token::NationalStringLiteral(s) => t.token = Token::SingleQuotedString(s.clone()),
            _ => {}
        }
        out_tokens.push(t);
    }
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(out_tokens);
    let mut stmts = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            break;
        }
        let s = parser
            .parse_statement()
            .map_err(|e| SqlError::syntax(format!("Incorrect syntax: {e}")))?;
        stmts.push(s);
    }
    Ok(stmts)
}

fn ident(s: &str) -> Ident {
    Ident::with_quote('"', s)
}

/// An expression that renders as the given SQL text.
fn raw(sql: impl Into<String>) -> Expr {
    Expr::Identifier(Ident::new(sql.into()))
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn last_part(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => i.value.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Drop database/schema qualifiers (`dbo.t` -> `t`); SQLite has one namespace here.
fn strip_schema(name: &mut ObjectName) {
    if name.0.len() > 1
        && let Some(last) = name.0.pop()
    {
        let schema = name
            .0
            .last()
            .map(|p| p.to_string().trim_matches('"').to_ascii_uppercase());
        if schema.as_deref() == Some("SYS") {
            let view = format!(
                "sys.{}",
                last.to_string().trim_matches('"').to_ascii_lowercase()
            );
            name.0 = vec![ObjectNamePart::Identifier(ident(&view))];
            return;
        }
        if schema.as_deref() == Some("INFORMATION_SCHEMA") {
            let view = format!(
                "INFORMATION_SCHEMA.{}",
                last.to_string().trim_matches('"').to_ascii_uppercase()
            );
            name.0 = vec![ObjectNamePart::Identifier(ident(&view))];
            return;
        }
        name.0 = vec![last];
    }
}

/// The objects `OBJECT_ID` finds, as `(id, name, db, kind)`: tables, views and triggers of the
/// database (positive ids) and of `tempdb` (negative ids, as SQL Server gives temp objects); `db`
/// is the SQLite schema, for `pragma_table_xinfo(name, db)`.
const OBJECTS: &str = "(SELECT rowid AS id, name, 'main' AS db, type AS kind FROM main.sqlite_master \
     WHERE type IN ('table', 'view', 'trigger') \
     UNION ALL SELECT -rowid, name, 'temp', type FROM temp.sqlite_master \
     WHERE type IN ('table', 'view', 'trigger'))";

/// `OBJECT_ID(name [, type])` as SQL: `name_sql` is the object part of the name (SQL text), the
/// type (`U`, `V`, `TR`) restricts what is found, as in SQL Server.
fn object_id_sql(name_sql: &str, object_type: Option<&str>) -> String {
    let kind = match object_type
        .map(|t| t.trim().to_ascii_uppercase())
        .as_deref()
    {
        None => String::new(),
        Some("U") => " AND kind = 'table'".into(),
        Some("V") => " AND kind = 'view'".into(),
        Some("TR") => " AND kind = 'trigger'".into(),
        Some(_) => " AND 0".into(),
    };
    format!("(SELECT id FROM {OBJECTS} WHERE name = {name_sql} COLLATE NOCASE{kind} LIMIT 1)")
}

/// `COLUMNPROPERTY(id, column, property)` as SQL over the column's `pragma_table_xinfo` row:
/// `IsIdentity` (an IDENTITY column is created as the `INTEGER` primary key, SQLite's rowid),
/// `IsComputed` (a generated column), `AllowsNull`, `ColumnId`; NULL for an unknown object,
/// column or property, as in SQL Server.
fn columnproperty_sql(id: &str, column: &str, property: &str) -> String {
    format!(
        "(SELECT CASE lower({property}) \
           WHEN 'isidentity' THEN (upper(p.type) = 'INTEGER' AND p.pk = 1 \
             AND (SELECT count(*) FROM pragma_table_xinfo(o.name, o.db) k WHERE k.pk > 0) = 1) \
           WHEN 'iscomputed' THEN (p.hidden IN (2, 3)) \
           WHEN 'allowsnull' THEN (NOT p.\"notnull\") \
           WHEN 'columnid' THEN p.cid + 1 \
           ELSE NULL END \
         FROM {OBJECTS} o JOIN pragma_table_xinfo(o.name, o.db) p \
         WHERE o.id = {id} AND o.kind IN ('table', 'view') AND p.name = {column} COLLATE NOCASE \
         LIMIT 1)"
    )
}

/// Whether an expression is certainly a character string (T-SQL `+` then concatenates).
fn is_string_expr(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_string_expr(inner),
        Expr::Value(v) => matches!(
            v.value,
            Value::SingleQuotedString(_) | Value::NationalStringLiteral(_)
        ),
        Expr::BinaryOp {
            op: BinaryOperator::StringConcat,
            ..
        } => true,
        Expr::Function(f) => matches!(
            function_name(f).as_str(),
            "QUOTENAME"
                | "UPPER"
                | "LOWER"
                | "LTRIM"
                | "RTRIM"
                | "TRIM"
                | "REPLACE"
                | "SUBSTRING"
                | "LEFT"
                | "RIGHT"
                | "CONCAT"
                | "DB_NAME"
        ),
        _ => false,
    }
}

/// Whether an expression is certainly a number (T-SQL `+` then adds, converting a string).
fn is_number_expr(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_number_expr(inner),
        Expr::Value(v) => matches!(v.value, Value::Number(..)),
        Expr::UnaryOp { expr, .. } => is_number_expr(expr),
        Expr::BinaryOp {
            op:
                BinaryOperator::Plus
                | BinaryOperator::Minus
                | BinaryOperator::Multiply
                | BinaryOperator::Divide
                | BinaryOperator::Modulo,
            ..
        } => true,
        _ => false,
    }
}

fn function_name(f: &Function) -> String {
    last_part(&f.name).to_ascii_uppercase()
}

fn function_args(f: &Function) -> Vec<&Expr> {
    match &f.args {
        FunctionArguments::List(l) => l
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn string_arg(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::NationalStringLiteral(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn server_property(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "productversion" => PRODUCT_VERSION.into(),
        "productlevel" => "RTM".into(),
        "edition" => "Developer Edition (64-bit)".into(),
        "engineedition" => "3".into(),
        "servername" | "machinename" => "tds-test-server".into(),
        "collation" => "SQL_Latin1_General_CP1_CI_AS".into(),
        "productmajorversion" => "15".into(),
        _ => String::new(),
    }
}

/// Type implied by a projection expression.
fn expr_hint(e: &Expr) -> Option<SqlType> {
    match e {
        Expr::Nested(inner) => expr_hint(inner),
        Expr::Cast { data_type, .. } => SqlType::parse(&data_type.to_string(), true),
        Expr::Convert {
            data_type: Some(dt),
            ..
        } => SqlType::parse(&dt.to_string(), true),
        Expr::Identifier(i) if i.value.starts_with("@@") => {
            match i.value.to_ascii_uppercase().as_str() {
                "@@VERSION" => Some(SqlType::NVarChar(Len::N(300))),
                "@@SERVERNAME" => Some(SqlType::NVarChar(Len::N(128))),
                "@@SPID" => Some(SqlType::SmallInt),
                "@@IDENTITY" => Some(SqlType::Decimal(38, 0)),
                _ => Some(SqlType::Int),
            }
        }
        Expr::Function(f) => match function_name(f).as_str() {
            "COUNT" | "LEN" | "DATALENGTH" | "CHARINDEX" | "OBJECT_ID" | "COLUMNPROPERTY" => {
                Some(SqlType::Int)
            }
            "QUOTENAME" => Some(SqlType::NVarChar(Len::N(258))),
            "COUNT_BIG"
            | "DATEDIFF_BIG"
            | "ROWCOUNT_BIG"
            | "CHANGE_TRACKING_CURRENT_VERSION"
            | "CHANGE_TRACKING_MIN_VALID_VERSION" => Some(SqlType::BigInt),
            "DB_ID" => Some(SqlType::Int),
            "DATEDIFF" | "DATEPART" | "YEAR" | "MONTH" | "DAY" => Some(SqlType::Int),
            "DATENAME" => Some(SqlType::NVarChar(Len::N(30))),
            "DATEADD" => function_args(f).get(2).and_then(|a| expr_hint(a)),
            "GETDATE" | "GETUTCDATE" | "CURRENT_TIMESTAMP" => Some(SqlType::DateTime),
            "SYSDATETIME" | "SYSUTCDATETIME" => Some(SqlType::DateTime2(7)),
            "NEWID" => Some(SqlType::UniqueIdentifier),
            "SERVERPROPERTY" | "DB_NAME" => Some(SqlType::NVarChar(Len::N(128))),
            "SCOPE_IDENTITY" => Some(SqlType::Decimal(38, 0)),
            "ISNULL" | "COALESCE" | "MIN" | "MAX" => {
                function_args(f).first().and_then(|a| expr_hint(a))
            }
            _ => None,
        },
        _ => None,
    }
}

/// SQLite cast target for a T-SQL type (None = no cast needed: the text form is the storage form).
fn sqlite_cast_target(t: &SqlType) -> Option<DataType> {
    let name = match t {
        SqlType::Bit | SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            "INTEGER"
        }
        SqlType::Real | SqlType::Float => "REAL",
        SqlType::Decimal(..) | SqlType::Numeric(..) | SqlType::Money | SqlType::SmallMoney => {
            "NUMERIC"
        }
        SqlType::Char(_)
        | SqlType::VarChar(_)
        | SqlType::NChar(_)
        | SqlType::NVarChar(_)
        | SqlType::Text
        | SqlType::NText
        | SqlType::Xml => "TEXT",
        SqlType::Binary(_) | SqlType::VarBinary(_) | SqlType::Image => "BLOB",
        _ => return None,
    };
    Some(DataType::Custom(
        ObjectName::from(vec![Ident::new(name)]),
        vec![],
    ))
}

/// AST rewriter: expressions, TOP/OFFSET-FETCH, table names and hints.
struct Rewriter<'a> {
    ctx: &'a Ctx,
    error: Option<SqlError>,
}

impl Rewriter<'_> {
    fn fail(&mut self, e: SqlError) -> ControlFlow<()> {
        if self.error.is_none() {
            self.error = Some(e);
        }
        ControlFlow::Break(())
    }

    fn rewrite_cast(&mut self, inner: Expr, data_type: &DataType) -> Result<Expr, SqlError> {
        let t = SqlType::parse(&data_type.to_string(), true)
            .ok_or_else(|| SqlError::unsupported(format!("CAST to {data_type}")))?;
        Ok(match sqlite_cast_target(&t) {
            Some(dt) => Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(inner),
                data_type: dt,
                array: false,
                format: None,
            },
            None => raw(format!("__TDS_CONVERT({inner}, '{}')", t.tsql_name())),
        })
    }
}

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        strip_schema(relation);
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { with_hints, .. } = tf {
            with_hints.clear();
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        if q.for_clause.is_some() {
            return self.fail(SqlError::unsupported("FOR XML / FOR JSON"));
        }
        let mut limit = None;
        if let SetExpr::Select(sel) = q.body.as_mut()
            && let Some(top) = sel.top.take()
        {
            if top.percent || top.with_ties {
                return self.fail(SqlError::unsupported("TOP ... PERCENT / WITH TIES"));
            }
            limit = match top.quantity {
                Some(TopQuantity::Constant(n)) => Some(raw(n.to_string())),
                Some(TopQuantity::Expr(e)) => Some(e),
                None => None,
            };
        }
        let fetch = q.fetch.take().and_then(|f| f.quantity);
        let offset = match q.limit_clause.take() {
            Some(LimitClause::LimitOffset {
                limit: l, offset, ..
            }) => {
                if limit.is_none() {
                    limit = l;
                }
                offset
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit: l }) => {
                limit = Some(l);
                Some(Offset {
                    value: offset,
                    rows: OffsetRows::None,
                })
            }
            None => None,
        };
        let limit = fetch.or(limit);
        if limit.is_some() || offset.is_some() {
            q.limit_clause = Some(LimitClause::LimitOffset {
                limit: Some(limit.unwrap_or_else(|| raw("-1"))),
                offset: offset.map(|o| Offset {
                    value: o.value,
                    rows: OffsetRows::None,
                }),
                limit_by: vec![],
            });
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let replacement = match e {
            // Literals SQLite would read as a lossy REAL stay exact as text.
            Expr::Value(v) if matches!(&v.value, Value::Number(n, _) if is_text_number(n)) => {
                let Value::Number(n, _) = &v.value else {
                    return ControlFlow::Continue(());
                };
                raw(sql_string(n))
            }
            Expr::Identifier(i) if i.quote_style.is_none() && i.value.starts_with("@@") => {
                match i.value.to_ascii_uppercase().as_str() {
                    "@@VERSION" => raw(sql_string(VERSION_STRING)),
                    "@@SERVERNAME" => raw("'tds-test-server'"),
                    "@@SPID" => raw(self.ctx.spid.to_string()),
                    "@@ROWCOUNT" => raw("changes()"),
                    "@@TRANCOUNT" => raw(self.ctx.trancount.to_string()),
                    "@@IDENTITY" => raw("last_insert_rowid()"),
                    "@@ERROR" => raw("0"),
                    other => return self.fail(SqlError::unsupported(other)),
                }
            }
            Expr::Cast {
                expr, data_type, ..
            } => {
                let inner = std::mem::replace(expr.as_mut(), raw("NULL"));
                let dt = data_type.clone();
                match self.rewrite_cast(inner, &dt) {
                    Ok(x) => x,
                    Err(err) => return self.fail(err),
                }
            }
            Expr::Convert {
                expr,
                data_type: Some(dt),
                ..
            } => {
                let inner = std::mem::replace(expr.as_mut(), raw("NULL"));
                let dt = dt.clone();
                match self.rewrite_cast(inner, &dt) {
                    Ok(x) => x,
                    Err(err) => return self.fail(err),
                }
            }
            // T-SQL `+` concatenates strings; SQLite's `+` is numeric only.
            Expr::BinaryOp {
                left,
                op: op @ BinaryOperator::Plus,
                right,
            } if (is_string_expr(left) && !is_number_expr(right))
                || (is_string_expr(right) && !is_number_expr(left)) =>
            {
                *op = BinaryOperator::StringConcat;
                return ControlFlow::Continue(());
            }
            Expr::Function(f) => {
                let name = function_name(f);
                let args = function_args(f);
                match name.as_str() {
                    "DATEADD" | "DATEDIFF" | "DATEDIFF_BIG" | "DATEPART" | "DATENAME" => {
                        if let FunctionArguments::List(l) = &mut f.args
                            && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(first))) =
                                l.args.first_mut()
                            && let Expr::Identifier(part) = first
                        {
                            *first = raw(sql_string(&part.value.to_ascii_lowercase()));
                        }
                        return ControlFlow::Continue(());
                    }
                    "COUNT_BIG" | "ISNULL" => {
                        let to = if name == "ISNULL" { "IFNULL" } else { "COUNT" };
                        f.name = ObjectName::from(vec![Ident::new(to)]);
                        return ControlFlow::Continue(());
                    }
                    "SCOPE_IDENTITY" => raw("last_insert_rowid()"),
                    "ROWCOUNT_BIG" => raw("changes()"),
                    "DB_NAME" => raw(sql_string(&self.ctx.database)),
                    // One database: every name is it.
                    "DB_ID" => raw("1"),
                    "CHANGE_TRACKING_CURRENT_VERSION" => {
                        raw(crate::change_tracking::current_version_sql())
                    }
                    "CHANGE_TRACKING_MIN_VALID_VERSION" => {
                        let Some(id) = args.first() else {
                            return self.fail(SqlError::new(
                                174,
                                "The change_tracking_min_valid_version function requires 1 argument(s).",
                            ));
                        };
                        raw(crate::change_tracking::min_valid_version_sql(
                            &id.to_string(),
                        ))
                    }
                    "SERVERPROPERTY" => {
                        let p = args.first().and_then(|a| string_arg(a)).unwrap_or_default();
                        raw(sql_string(&server_property(&p)))
                    }
                    "OBJECT_ID" => {
                        let Some(arg) = args.first() else {
                            return self.fail(SqlError::unsupported("OBJECT_ID without a name"));
                        };
                        let name = match string_arg(arg) {
                            Some(n) => object_name(&n)
                                .map(|n| sql_string(&n))
                                .unwrap_or_else(|| "NULL".into()),
                            None => format!("__TDS_OBJECT_NAME({arg})"),
                        };
                        let kind = args.get(1).and_then(|a| string_arg(a));
                        raw(object_id_sql(&name, kind.as_deref()))
                    }
                    "COLUMNPROPERTY" => {
                        let [id, column, property] = args.as_slice() else {
                            return self.fail(SqlError::unsupported(
                                "COLUMNPROPERTY without three arguments",
                            ));
                        };
                        raw(columnproperty_sql(
                            &id.to_string(),
                            &column.to_string(),
                            &property.to_string(),
                        ))
                    }
                    _ => return ControlFlow::Continue(()),
                }
            }
            _ => return ControlFlow::Continue(()),
        };
        *e = replacement;
        ControlFlow::Continue(())
    }
}

fn rewrite<T: VisitMut>(node: &mut T, ctx: &Ctx) -> Result<(), SqlError> {
    let mut rw = Rewriter { ctx, error: None };
    let _ = node.visit(&mut rw);
    match rw.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn projection_hints(q: &Query) -> (Vec<ColumnHint>, bool) {
    let mut top0_star = false;
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return (Vec::new(), false);
    };
    if let Some(top) = &sel.top
        && matches!(top.quantity, Some(TopQuantity::Constant(0)))
        && sel.projection.len() == 1
        && matches!(sel.projection[0], SelectItem::Wildcard(_))
    {
        top0_star = true;
    }
    let item = |e: &Expr, blank_name: bool| {
        let computed = !is_column_ref(e);
        ColumnHint {
            ty: expr_hint(e),
            blank_name,
            shape: computed.then(|| expr_shape(e)),
            not_null: expr_not_null(e),
            computed,
            wildcard: false,
        }
    };
    let hints = sel
        .projection
        .iter()
        .map(|p| match p {
            SelectItem::UnnamedExpr(e) => item(
                e,
                !matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)),
            ),
            SelectItem::ExprWithAlias { expr, .. } => item(expr, false),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => ColumnHint {
                wildcard: true,
                ..ColumnHint::default()
            },
            _ => ColumnHint::default(),
        })
        .collect();
    (hints, top0_star)
}

/// The hint of result column `i` of `ncol`: a single wildcard item stands for the columns the
/// other items leave over; with several wildcards no column has a hint.
pub(crate) fn hint_for(hints: &[ColumnHint], ncol: usize, i: usize) -> Option<&ColumnHint> {
    let mut wild = hints.iter().enumerate().filter(|(_, h)| h.wildcard);
    let Some((w, _)) = wild.next() else {
        return hints.get(i);
    };
    if wild.next().is_some() {
        return None;
    }
    let span = (ncol + 1).checked_sub(hints.len())?;
    if i < w {
        hints.get(i)
    } else if i < w + span {
        None
    } else {
        hints.get(i + 1 - span)
    }
}

/// A plain (possibly parenthesised) column reference; `@P1` and `@@X` are not.
fn is_column_ref(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_column_ref(inner),
        Expr::Identifier(i) => !i.value.starts_with('@'),
        Expr::CompoundIdentifier(_) => true,
        _ => false,
    }
}

/// A column reference as SQLite text: at most `qualifier.column` (schemas and databases dropped).
fn column_sql(e: &Expr) -> Option<String> {
    match e {
        Expr::Nested(inner) => column_sql(inner),
        Expr::Identifier(i) => Some(i.to_string()),
        Expr::CompoundIdentifier(parts) => {
            let start = parts.len().saturating_sub(2);
            Some(
                parts[start..]
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("."),
            )
        }
        _ => None,
    }
}

/// SQLite stores long exact decimals as text literals (see `post_visit_expr`).
fn is_text_number(n: &str) -> bool {
    n.bytes().filter(u8::is_ascii_digit).count() > 15 && n.contains('.') && !n.contains(['e', 'E'])
}

/// Static shape of a projection expression (T-SQL AST, before rewriting).
fn expr_shape(e: &Expr) -> Shape {
    let boxed = |e: &Expr| Box::new(expr_shape(e));
    match e {
        Expr::Nested(inner) => expr_shape(inner),
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) if is_text_number(n) => Shape::Text(n.len()),
            Value::Number(n, _) if n.parse::<i64>().is_ok() => Shape::Int,
            Value::Number(..) => Shape::Real,
            Value::SingleQuotedString(s) | Value::NationalStringLiteral(s) => {
                Shape::Text(s.encode_utf16().count())
            }
            Value::Null => Shape::Null,
            _ => Shape::Unknown,
        },
        Expr::Identifier(i) if i.value.starts_with("@@") => Shape::Unknown,
        Expr::Identifier(i) if i.value.starts_with('@') => Shape::Param(i.value.clone()),
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
            column_sql(e).map(Shape::Column).unwrap_or(Shape::Unknown)
        }
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => Shape::Num(boxed(expr)),
        Expr::BinaryOp {
            left,
            op:
                BinaryOperator::Plus
                | BinaryOperator::Minus
                | BinaryOperator::Multiply
                | BinaryOperator::Divide
                | BinaryOperator::Modulo,
            right,
        } => Shape::Arith(boxed(left), boxed(right)),
        Expr::Case {
            conditions,
            else_result,
            ..
        } => Shape::Merge(
            conditions
                .iter()
                .map(|c| expr_shape(&c.result))
                .chain(else_result.iter().map(|e| expr_shape(e)))
                .collect(),
        ),
        Expr::Function(f) => {
            let args = function_args(f);
            let all = || args.iter().map(|a| expr_shape(a)).collect::<Vec<_>>();
            let first = || args.first().map(|a| boxed(a));
            match function_name(f).as_str() {
                "MIN" | "MAX" => first().map(Shape::Same).unwrap_or(Shape::Unknown),
                "UPPER" | "LOWER" | "LTRIM" | "RTRIM" | "TRIM" => {
                    first().map(Shape::SameText).unwrap_or(Shape::Unknown)
                }
                "SUM" | "ABS" => first().map(Shape::Num).unwrap_or(Shape::Unknown),
                "AVG" => Shape::Real,
                "ISNULL" => Shape::First(all()),
                "COALESCE" => Shape::Merge(all()),
                "IIF" => Shape::Merge(all().into_iter().skip(1).collect()),
                _ => Shape::Unknown,
            }
        }
        _ => Shape::Unknown,
    }
}

/// Can the expression never be NULL? (SQL Server reports these as NOT NULL.)
fn expr_not_null(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => expr_not_null(inner),
        Expr::Value(v) => matches!(
            v.value,
            Value::Number(..)
                | Value::SingleQuotedString(_)
                | Value::NationalStringLiteral(_)
                | Value::HexStringLiteral(_)
        ),
        Expr::Function(f) => match function_name(f).as_str() {
            "COUNT" | "COUNT_BIG" => true,
            "ISNULL" => function_args(f).iter().any(|a| expr_not_null(a)),
            _ => false,
        },
        _ => false,
    }
}

/// Collects the tables on the NULL-supplying side of outer joins, in every (sub)query.
struct OuterJoins(Vec<String>);

impl OuterJoins {
    fn set_expr(&mut self, body: &SetExpr) {
        match body {
            SetExpr::Select(sel) => sel.from.iter().for_each(|t| self.joins(t)),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left);
                self.set_expr(right);
            }
            _ => {}
        }
    }

    fn joins(&mut self, twj: &TableWithJoins) {
        let mut seen: Vec<&TableFactor> = vec![&twj.relation];
        for j in &twj.joins {
            match &j.join_operator {
                JoinOperator::Left(_) | JoinOperator::LeftOuter(_) | JoinOperator::OuterApply => {
                    self.tables_in(&j.relation)
                }
                JoinOperator::Right(_) | JoinOperator::RightOuter(_) => {
                    seen.iter().for_each(|f| self.tables_in(f))
                }
                JoinOperator::FullOuter(_) => {
                    seen.iter().for_each(|f| self.tables_in(f));
                    self.tables_in(&j.relation);
                }
                _ => {}
            }
            seen.push(&j.relation);
        }
        for f in seen {
            if let TableFactor::NestedJoin {
                table_with_joins, ..
            } = f
            {
                self.joins(table_with_joins);
            }
        }
    }

    fn tables_in(&mut self, tf: &TableFactor) {
        let _ = sqlparser::ast::visit_relations(tf, |name| {
            self.0.push(last_part(name));
            ControlFlow::<()>::Continue(())
        });
    }
}

impl Visitor for OuterJoins {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        self.set_expr(&q.body);
        ControlFlow::Continue(())
    }
}

/// Metadata facts of a rewritten query (SQLite names).
fn query_info(q: &Query) -> QueryInfo {
    let mut outer = OuterJoins(Vec::new());
    let _ = q.visit(&mut outer);
    let mut uses_temp = false;
    let _ = sqlparser::ast::visit_relations(q, |name| {
        uses_temp |= last_part(name).starts_with('#');
        ControlFlow::<()>::Continue(())
    });
    let probe = match q.body.as_ref() {
        SetExpr::Select(sel) if !sel.from.is_empty() => {
            let with = q.with.as_ref().map(|w| format!("{w} ")).unwrap_or_default();
            let from = sel
                .from
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            Some((with, from))
        }
        _ => None,
    };
    QueryInfo {
        probe,
        nullable_tables: outer.0,
        uses_temp,
    }
}

/// `EXEC sp_describe_first_result_set` arguments: literals or `@parameters`, named or positional.
fn describe_step(parameters: &[Expr]) -> Result<Step, SqlError> {
    let mut args = Vec::with_capacity(parameters.len());
    for p in parameters {
        let (name, e) = match p {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => match left.as_ref() {
                Expr::Identifier(i) if i.value.starts_with('@') => {
                    (Some(i.value.clone()), right.as_ref())
                }
                _ => (None, p),
            },
            other => (None, other),
        };
        let arg = match e {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::NationalStringLiteral(s) => {
                    DescribeArg::Value(SqlValue::Text(s.clone()))
                }
                Value::Number(n, _) => match n.parse::<i64>() {
                    Ok(i) => DescribeArg::Value(SqlValue::Integer(i)),
                    Err(_) => DescribeArg::Value(SqlValue::Text(n.clone())),
                },
                Value::Null => DescribeArg::Value(SqlValue::Null),
                other => {
                    return Err(SqlError::unsupported(format!(
                        "{DESCRIBE_PROC} argument {other}"
                    )));
                }
            },
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } if matches!(expr.as_ref(), Expr::Value(v) if matches!(v.value, Value::Number(..))) => {
                let n = expr.to_string().parse::<i64>().map(|n| -n).unwrap_or(-1);
                DescribeArg::Value(SqlValue::Integer(n))
            }
            Expr::Identifier(i) if i.value.starts_with('@') && !i.value.starts_with("@@") => {
                DescribeArg::Param(i.value.clone())
            }
            other => {
                return Err(SqlError::unsupported(format!(
                    "{DESCRIBE_PROC} argument {other} (only literals and parameters)"
                )));
            }
        };
        args.push((name, arg));
    }
    Ok(Step::Describe(args))
}

fn translate_statement(stmt: Statement, ctx: &Ctx) -> Step {
    match translate_inner(stmt, ctx) {
        Ok(s) => s,
        Err(e) => Step::Fail(e),
    }
}

fn sql_step(sql: String, kind: Kind) -> Step {
    Step::Sql {
        sql,
        kind,
        hints: Vec::new(),
        updateable: false,
        info: QueryInfo::default(),
    }
}

fn statement_keyword(s: &Statement) -> String {
    s.to_string()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn translate_inner(mut stmt: Statement, ctx: &Ctx) -> Result<Step, SqlError> {
    match &mut stmt {
        Statement::Query(q) => {
            let (hints, updateable) = projection_hints(q);
            let into = match q.body.as_mut() {
                SetExpr::Select(sel) => sel.into.take(),
                _ => None,
            };
            rewrite(q.as_mut(), ctx)?;
            if let Some(into) = into {
                let mut name = into.name.clone();
                strip_schema(&mut name);
                let table = last_part(&name);
                return Ok(Step::SelectInto {
                    temp: table.starts_with('#') || into.temporary,
                    table,
                    query: q.to_string(),
                });
            }
            Ok(Step::Sql {
                sql: q.to_string(),
                kind: Kind::Query,
                hints,
                updateable,
                info: query_info(q),
            })
        }
        Statement::Execute {
            name: Some(name),
            parameters,
            immediate: false,
            ..
        } if is_describe_proc(&last_part(name)) => describe_step(parameters),
        Statement::Execute {
            name: Some(name),
            parameters,
            immediate: false,
            ..
        } if last_part(name).eq_ignore_ascii_case(crate::datatype_info::PROC) => {
            let data_type = match parameters.first() {
                None => Some(0),
                Some(Expr::Value(v)) => match &v.value {
                    Value::Number(n, _) => n.parse().ok(),
                    _ => None,
                },
                Some(Expr::UnaryOp {
                    op: UnaryOperator::Minus,
                    expr,
                }) => match expr.as_ref() {
                    Expr::Value(v) => match &v.value {
                        Value::Number(n, _) => n.parse::<i64>().ok().map(|n| -n),
                        _ => None,
                    },
                    _ => None,
                },
                Some(_) => None,
            };
            data_type
                .map(Step::DatatypeInfo)
                .ok_or_else(|| SqlError::syntax("sp_datatype_info_100 expects an ODBC type number"))
        }
        Statement::Execute {
            name: Some(name),
            parameters,
            immediate: false,
            ..
        } if last_part(name).eq_ignore_ascii_case(crate::bulk_copy::TABLE_COLLATIONS_PROC) => {
            match parameters.as_slice() {
                [Expr::Value(v)] => match &v.value {
                    Value::NationalStringLiteral(s) | Value::SingleQuotedString(s) => {
                        Ok(Step::TableCollations(s.clone()))
                    }
                    _ => Err(SqlError::syntax(
                        "sp_tablecollations_100 expects a table name",
                    )),
                },
                _ => Err(SqlError::syntax(
                    "sp_tablecollations_100 expects a table name",
                )),
            }
        }
        Statement::Insert(ins) => {
            if ins.output.is_some() {
                return Err(SqlError::unsupported("INSERT ... OUTPUT"));
            }
            rewrite(&mut stmt, ctx)?;
            Ok(sql_step(stmt.to_string(), Kind::Dml))
        }
        Statement::Update(_) => translate_update(stmt, ctx),
        Statement::Delete(_) => translate_delete(stmt, ctx),
        Statement::Merge(_) => translate_merge(stmt, ctx),
        Statement::CreateTable(ct) => {
            strip_schema(&mut ct.name);
            if last_part(&ct.name).starts_with('#') {
                ct.temporary = true;
            }
            for col in ct.columns.iter_mut() {
                let declared = col.data_type.to_string();
                let identity = col
                    .options
                    .iter()
                    .any(|o| matches!(o.option, ColumnOption::Identity(_)));
                col.options.retain(|o| {
                    !matches!(
                        o.option,
                        ColumnOption::Identity(_) | ColumnOption::Collation(_)
                    )
                });
                for o in col.options.iter_mut() {
                    if let ColumnOption::Default(e) = &mut o.option
                        && !matches!(e, Expr::Value(_))
                    {
                        *e = Expr::Nested(Box::new(e.clone()));
                    }
                }
                if identity {
                    col.data_type =
                        DataType::Custom(ObjectName::from(vec![Ident::new("INTEGER")]), vec![]);
                    continue;
                }
                let t = SqlType::parse(&declared, true)
                    .ok_or_else(|| SqlError::unsupported(format!("column type {declared}")))?;
                col.data_type =
                    DataType::Custom(ObjectName::from(vec![ident(&t.ddl_name())]), vec![]);
            }
            rewrite(&mut stmt, ctx)?;
            Ok(sql_step(stmt.to_string(), Kind::Other))
        }
        Statement::AlterTable(at) => {
            strip_schema(&mut at.name);
            for op in at.operations.iter_mut() {
                if let sqlparser::ast::AlterTableOperation::AddColumn { column_def, .. } = op {
                    let declared = column_def.data_type.to_string();
                    let t = SqlType::parse(&declared, true)
                        .ok_or_else(|| SqlError::unsupported(format!("column type {declared}")))?;
                    column_def.data_type =
                        DataType::Custom(ObjectName::from(vec![ident(&t.ddl_name())]), vec![]);
                }
            }
            rewrite(&mut stmt, ctx)?;
            Ok(sql_step(stmt.to_string(), Kind::Other))
        }
        Statement::Drop { names, .. } => {
            names.iter_mut().for_each(strip_schema);
            Ok(sql_step(stmt.to_string(), Kind::Other))
        }
        Statement::CreateIndex(ci) => {
            strip_schema(&mut ci.table_name);
            rewrite(&mut stmt, ctx)?;
            Ok(sql_step(stmt.to_string(), Kind::Other))
        }
        Statement::CreateView { .. } => {
            rewrite(&mut stmt, ctx)?;
            Ok(sql_step(stmt.to_string(), Kind::Other))
        }
        Statement::Truncate(t) => {
            // A change-tracked table is refused first (error 4711), as SQL Server does.
            let mut stmts: Vec<(String, bool)> = Vec::new();
            for n in &t.table_names {
                let mut n = n.name.clone();
                strip_schema(&mut n);
                stmts.push((
                    crate::change_tracking::truncate_guard_sql(&last_part(&n)),
                    false,
                ));
                stmts.push((format!("DELETE FROM {n}"), false));
            }
            Ok(Step::Script(stmts))
        }
        Statement::StartTransaction { .. } => Ok(Step::Begin),
        Statement::Commit { .. } => Ok(Step::Commit),
        Statement::Rollback {
            savepoint: None, ..
        } => Ok(Step::Rollback),
        Statement::Rollback { .. } => Err(SqlError::unsupported("ROLLBACK to a savepoint")),
        Statement::Set(_) => {
            let text = stmt.to_string();
            let upper = text.to_ascii_uppercase();
            if upper.starts_with("SET @") {
                Err(SqlError::unsupported("variables (SET @var)"))
            } else if let Some(on) = upper.strip_prefix("SET FMTONLY ") {
                Ok(Step::FmtOnly(on.trim() == "ON"))
            } else {
                Ok(Step::Ignore)
            }
        }
        Statement::Use(u) => {
            let name = match u {
                sqlparser::ast::Use::Object(n) => last_part(n),
                other => other.to_string(),
            };
            Ok(Step::Use(name))
        }
        Statement::If(ifs) => {
            if !ifs.elseif_blocks.is_empty() {
                return Err(SqlError::unsupported("ELSE IF"));
            }
            let Some(mut cond) = ifs.if_block.condition.clone() else {
                return Err(SqlError::syntax("IF without condition"));
            };
            rewrite(&mut cond, ctx)?;
            let then = ifs
                .if_block
                .conditional_statements
                .statements()
                .iter()
                .map(|s| translate_statement(s.clone(), ctx))
                .collect();
            let otherwise = ifs
                .else_block
                .as_ref()
                .map(|b| {
                    b.conditional_statements
                        .statements()
                        .iter()
                        .map(|s| translate_statement(s.clone(), ctx))
                        .collect()
                })
                .unwrap_or_default();
            Ok(Step::If {
                cond: cond.to_string(),
                then,
                otherwise,
            })
        }
        other => Err(SqlError::unsupported(statement_keyword(other))),
    }
}

/// Relations of a FROM list flattened to (relation, ON-conditions); only inner/cross joins.
fn flatten_from(from: Vec<TableWithJoins>) -> Result<(Vec<TableFactor>, Vec<Expr>), SqlError> {
    let mut rels = Vec::new();
    let mut conds = Vec::new();
    for twj in from {
        rels.push(twj.relation);
        for j in twj.joins {
            match j.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) | JoinOperator::CrossJoin(c) => {
                    match c {
                        JoinConstraint::On(e) => conds.push(e),
                        JoinConstraint::None | JoinConstraint::Natural => {}
                        JoinConstraint::Using(_) => {
                            return Err(SqlError::unsupported("JOIN ... USING in UPDATE/DELETE"));
                        }
                    }
                }
                other => {
                    return Err(SqlError::unsupported(format!(
                        "{other:?} join in UPDATE/DELETE ... FROM (only inner joins are supported)"
                    )
                    .chars()
                    .take(120)
                    .collect::<String>()));
                }
            }
            rels.push(j.relation);
        }
    }
    Ok((rels, conds))
}

/// Does relation `tf` denote `target` (an alias or a table name)?
fn is_target(tf: &TableFactor, target: &str) -> bool {
    if let TableFactor::Table { name, alias, .. } = tf {
        if let Some(a) = alias {
            return a.name.value.eq_ignore_ascii_case(target);
        }
        return last_part(name).eq_ignore_ascii_case(target);
    }
    false
}

fn table_with_alias(tf: &TableFactor) -> String {
    match tf {
        TableFactor::Table { name, alias, .. } => match alias {
            Some(a) => format!("{name} AS {}", a.name),
            None => name.to_string(),
        },
        other => other.to_string(),
    }
}

fn and_all(conds: Vec<String>) -> Option<String> {
    if conds.is_empty() {
        None
    } else {
        Some(
            conds
                .into_iter()
                .map(|c| format!("({c})"))
                .collect::<Vec<_>>()
                .join(" AND "),
        )
    }
}

fn translate_update(mut stmt: Statement, ctx: &Ctx) -> Result<Step, SqlError> {
    rewrite(&mut stmt, ctx)?;
    let Statement::Update(u) = stmt else {
        unreachable!("translate_update called with an UPDATE")
    };
    if u.output.is_some() {
        return Err(SqlError::unsupported("UPDATE ... OUTPUT"));
    }
    let target = match &u.table.relation {
        TableFactor::Table { name, .. } => last_part(name),
        other => return Err(SqlError::unsupported(format!("UPDATE of {other}"))),
    };
    let sets: Vec<String> = u
        .assignments
        .iter()
        .map(|a| {
            let col = match &a.target {
                AssignmentTarget::ColumnName(n) => ident(&last_part(n)).to_string(),
                other => other.to_string(),
            };
            format!("{col} = {}", a.value)
        })
        .collect();
    let from = match u.from {
        Some(UpdateTableFromKind::AfterSet(f)) | Some(UpdateTableFromKind::BeforeSet(f)) => f,
        None => Vec::new(),
    };
    let mut conds: Vec<String> = Vec::new();
    let mut table = table_with_alias(&u.table.relation);
    let mut others = Vec::new();
    if !from.is_empty() {
        let (rels, on) = flatten_from(from)?;
        conds.extend(on.iter().map(|e| e.to_string()));
        let mut found = false;
        for r in rels {
            if !found && is_target(&r, &target) {
                found = true;
                if matches!(&r, TableFactor::Table { alias: Some(_), .. }) {
                    table = table_with_alias(&r);
                }
            } else {
                others.push(table_with_alias(&r));
            }
        }
    }
    if let Some(w) = &u.selection {
        conds.push(w.to_string());
    }
    let mut sql = format!("UPDATE {table} SET {}", sets.join(", "));
    if !others.is_empty() {
        sql.push_str(&format!(" FROM {}", others.join(", ")));
    }
    if let Some(w) = and_all(conds) {
        sql.push_str(&format!(" WHERE {w}"));
    }
    Ok(sql_step(sql, Kind::Dml))
}

fn translate_delete(mut stmt: Statement, ctx: &Ctx) -> Result<Step, SqlError> {
    rewrite(&mut stmt, ctx)?;
    let Statement::Delete(d) = stmt else {
        unreachable!("translate_delete called with a DELETE")
    };
    if d.output.is_some() {
        return Err(SqlError::unsupported("DELETE ... OUTPUT"));
    }
    let from = match d.from {
        FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
    };
    let (rels, on) = flatten_from(from)?;
    let target = match d.tables.first() {
        Some(t) => last_part(t),
        None if rels.len() == 1 => match &rels[0] {
            TableFactor::Table { name, .. } => last_part(name),
            other => return Err(SqlError::unsupported(format!("DELETE FROM {other}"))),
        },
        None => return Err(SqlError::unsupported("DELETE with several tables")),
    };
    let mut table = None;
    let mut others = Vec::new();
    for r in rels {
        if table.is_none() && is_target(&r, &target) {
            table = Some(table_with_alias(&r));
        } else {
            others.push(table_with_alias(&r));
        }
    }
    let table = table.unwrap_or_else(|| ident(&target).to_string());
    let mut conds: Vec<String> = on.iter().map(|e| e.to_string()).collect();
    if let Some(w) = &d.selection {
        conds.push(w.to_string());
    }
    let sql = if others.is_empty() {
        match and_all(conds) {
            Some(w) => format!("DELETE FROM {table} WHERE {w}"),
            None => format!("DELETE FROM {table}"),
        }
    } else {
        let inner = match and_all(conds) {
            Some(w) => format!(" WHERE {w}"),
            None => String::new(),
        };
        format!(
            "DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM {}{inner})",
            others.join(", ")
        )
    };
    Ok(sql_step(sql, Kind::Dml))
}

/// MERGE as a script: stage the inserts (against the initial state), run the BY SOURCE and
/// MATCHED actions, insert the staged rows. Each WHEN MATCHED clause excludes the rows of the
/// clauses before it, as in SQL Server.
fn translate_merge(mut stmt: Statement, ctx: &Ctx) -> Result<Step, SqlError> {
    use sqlparser::ast::{MergeAction, MergeClauseKind, MergeInsertKind};
    rewrite(&mut stmt, ctx)?;
    let Statement::Merge(m) = stmt else {
        unreachable!("translate_merge called with a MERGE")
    };
    if m.output.is_some() {
        return Err(SqlError::unsupported("MERGE ... OUTPUT"));
    }
    let TableFactor::Table { name, .. } = &m.table else {
        return Err(SqlError::unsupported(format!("MERGE into {}", m.table)));
    };
    let table_name = name.to_string();
    let target = table_with_alias(&m.table);
    let source = m.source.to_string();
    let on = m.on.to_string();
    let stage = "\"__tds_merge_ins\"";
    let mut head: Vec<(String, bool)> = Vec::new();
    let mut body: Vec<(String, bool)> = Vec::new();
    let mut tail: Vec<(String, bool)> = Vec::new();
    let mut matched_before: Vec<String> = Vec::new();
    let set_list = |assignments: &[sqlparser::ast::Assignment]| {
        assignments
            .iter()
            .map(|a| {
                let col = match &a.target {
                    AssignmentTarget::ColumnName(n) => ident(&last_part(n)).to_string(),
                    other => other.to_string(),
                };
                format!("{col} = {}", a.value)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    for clause in &m.clauses {
        let pred = clause
            .predicate
            .as_ref()
            .map(|p| format!(" AND ({p})"))
            .unwrap_or_default();
        match (&clause.clause_kind, &clause.action) {
            (
                MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget,
                MergeAction::Insert(ins),
            ) => {
                if !tail.is_empty() {
                    return Err(SqlError::unsupported(
                        "MERGE with two WHEN NOT MATCHED clauses",
                    ));
                }
                let MergeInsertKind::Values(values) = &ins.kind else {
                    return Err(SqlError::unsupported("MERGE ... INSERT ROW"));
                };
                let [row] = values.rows.as_slice() else {
                    return Err(SqlError::syntax(
                        "MERGE INSERT needs exactly one VALUES row",
                    ));
                };
                let exprs = row
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let cols = ins
                    .columns
                    .iter()
                    .map(|c| ident(&last_part(c)).to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                head.push((format!("DROP TABLE IF EXISTS temp.{stage}"), false));
                head.push((
                    format!(
                        "CREATE TEMP TABLE {stage} AS SELECT {exprs} FROM {source} WHERE NOT EXISTS (SELECT 1 FROM {target} WHERE {on}){pred}"
                    ),
                    false,
                ));
                let col_list = if cols.is_empty() {
                    String::new()
                } else {
                    format!(" ({cols})")
                };
                tail.push((
                    format!("INSERT INTO {table_name}{col_list} SELECT * FROM {stage}"),
                    true,
                ));
                tail.push((format!("DROP TABLE {stage}"), false));
            }
            (MergeClauseKind::NotMatchedBySource, MergeAction::Delete { .. }) => {
                body.insert(0, (format!("DELETE FROM {target} WHERE NOT EXISTS (SELECT 1 FROM {source} WHERE {on}){pred}"), true));
            }
            (MergeClauseKind::NotMatchedBySource, MergeAction::Update(u)) => {
                body.insert(0, (format!(
                    "UPDATE {target} SET {} WHERE NOT EXISTS (SELECT 1 FROM {source} WHERE {on}){pred}",
                    set_list(&u.assignments)
                ), true));
            }
            (MergeClauseKind::Matched, action) => {
                let exclude: String = matched_before
                    .iter()
                    .map(|p| format!(" AND NOT ({p})"))
                    .collect();
                match action {
                    MergeAction::Update(u) => body.push((
                        format!(
                            "UPDATE {target} SET {} FROM {source} WHERE ({on}){pred}{exclude}",
                            set_list(&u.assignments)
                        ),
                        true,
                    )),
                    MergeAction::Delete { .. } => body.push((
                        format!("DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM {source} WHERE ({on}){pred}{exclude})"),
                        true,
                    )),
                    MergeAction::Insert(_) => {
                        return Err(SqlError::syntax("INSERT is not allowed in WHEN MATCHED"));
                    }
                }
                if let Some(p) = &clause.predicate {
                    matched_before.push(p.to_string());
                }
            }
            (kind, _) => {
                return Err(SqlError::syntax(format!(
                    "invalid action for WHEN {kind:?}"
                )));
            }
        }
    }
    head.extend(body);
    head.extend(tail);
    Ok(Step::Script(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Step {
        let mut v = translate_batch(sql, &Ctx::default());
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    fn sql_of(sql: &str) -> String {
        match one(sql) {
            Step::Sql { sql, .. } => sql,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn top_and_brackets() {
        assert_eq!(
            sql_of("SELECT TOP 0 * FROM [dbo].[t]"),
            "SELECT * FROM \"t\" LIMIT 0"
        );
        assert_eq!(
            sql_of("SELECT a FROM t ORDER BY a OFFSET 2 ROWS FETCH NEXT 3 ROWS ONLY"),
            "SELECT a FROM t ORDER BY a LIMIT 3 OFFSET 2"
        );
        match one("SELECT TOP 0 * FROM t") {
            Step::Sql { updateable, .. } => assert!(updateable),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn multiple_statements_without_semicolons() {
        assert_eq!(
            translate_batch(
                "SELECT 1 SELECT 2\nINSERT INTO t VALUES (1)",
                &Ctx::default()
            )
            .len(),
            3
        );
    }

    #[test]
    fn create_table_types() {
        let s = sql_of(
            "CREATE TABLE #t (a DECIMAL(18,4) NOT NULL, b NVARCHAR(MAX), c INT IDENTITY(1,1) PRIMARY KEY CLUSTERED)",
        );
        assert!(s.starts_with("CREATE TEMPORARY TABLE \"#t\""), "{s}");
        assert!(s.contains("\"DECIMAL(18,4) TEXT\""), "{s}");
        assert!(s.contains("\"NVARCHAR(MAX)\""), "{s}");
        assert!(s.contains("c INTEGER PRIMARY KEY"), "{s}");
    }

    #[test]
    fn update_from_join() {
        assert_eq!(
            sql_of("UPDATE t SET t.a = s.b FROM t JOIN s ON t.id = s.id WHERE s.x > 1"),
            "UPDATE t SET \"a\" = s.b FROM s WHERE (t.id = s.id) AND (s.x > 1)"
        );
    }

    #[test]
    fn delete_join() {
        assert_eq!(
            sql_of("DELETE t FROM t JOIN s ON t.id = s.id WHERE s.x = 1"),
            "DELETE FROM t WHERE EXISTS (SELECT 1 FROM s WHERE (t.id = s.id) AND (s.x = 1))"
        );
        let Step::Script(stmts) = one("TRUNCATE TABLE dbo.t") else {
            panic!("expected a script");
        };
        assert_eq!(stmts[1].0, "DELETE FROM t");
    }

    #[test]
    fn merge_becomes_a_script() {
        let Step::Script(stmts) = one(
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET t.v = s.v \
             WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v);",
        ) else {
            panic!("expected a script");
        };
        let sql: Vec<&str> = stmts.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(sql.len(), 5, "{sql:?}");
        assert!(sql[1].starts_with("CREATE TEMP TABLE"), "{sql:?}");
        assert_eq!(
            sql[2],
            "UPDATE t SET \"v\" = s.v FROM s WHERE (t.id = s.id)"
        );
        assert!(
            sql[3].starts_with("INSERT INTO t (\"id\", \"v\") SELECT * FROM"),
            "{sql:?}"
        );
    }

    #[test]
    fn unsupported_is_reported() {
        assert!(matches!(one("DECLARE @x INT"), Step::Fail(_)));
        assert!(matches!(one("SELECT FROM WHERE"), Step::Fail(_)));
    }
}
