//! What an event's `filter` may contain: an allow-list of expressions and functions whose result
//! is no larger than their input (a row's values and the filter's own literals), so a filter can
//! select rows but never make DataFusion build huge values or tables.
//!
//! Allowed: column names, literals (also `DATE '…'`, `INTERVAL '…'`), `( )`, arithmetic
//! (`+ - * / %`), `||`, comparisons, `AND`/`OR`/`NOT`, `IS [NOT] NULL/TRUE/FALSE/UNKNOWN/DISTINCT
//! FROM`, `[NOT] IN (list)`, `[NOT] BETWEEN`, `[NOT] LIKE`/`ILIKE`, `CAST`/`TRY_CAST`/`::`,
//! `CASE`, `EXTRACT`, `CEIL`/`FLOOR`, `POSITION`, `SUBSTRING`, `TRIM`, `AT TIME ZONE`, and the
//! scalar functions of [`ALLOWED_FUNCTIONS`]. Everything else is refused naming it: functions
//! that produce rows or sizes from an argument (`range`, `generate_series`, `repeat`, `lpad`,
//! `rpad`, `replace`, array and map builders, …), aggregates, window functions (`OVER`),
//! regular expressions (`~`, `SIMILAR TO`, `regexp_*`), arrays, structs, maps and lambdas.

use std::ops::ControlFlow;

use deltalake::datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArguments, UnaryOperator, visit_expressions,
};

/// Scalar functions a filter may call (DataFusion names, unquoted, any case): each result is
/// bounded by the size of its arguments.
pub const ALLOWED_FUNCTIONS: &[&str] = &[
    // Strings.
    "lower",
    "upper",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "substr",
    "substring",
    "left",
    "right",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "strpos",
    "starts_with",
    "ends_with",
    "concat",
    // NULL handling.
    "coalesce",
    "nullif",
    "nvl",
    "ifnull",
    // Numbers.
    "abs",
    "round",
    "ceil",
    "floor",
    "trunc",
    "signum",
    "greatest",
    "least",
    // Dates and times.
    "date_trunc",
    "date_part",
    "datepart",
    "to_date",
    "to_timestamp",
    "now",
    "current_date",
    "current_timestamp",
];

/// Checks that `expr` uses only allowed expressions and functions; the error names the first
/// one that is not (the caller prefixes `filter: `).
pub fn check_bounded(expr: &Expr) -> Result<(), FilterRefusal> {
    let found = visit_expressions(expr, |e| match refusal(e) {
        Some(message) => ControlFlow::Break(message),
        None => ControlFlow::Continue(()),
    });
    match found {
        ControlFlow::Break(message) => Err(message),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Why one expression node is not allowed (its children are checked on their own).
fn refusal(e: &Expr) -> Option<FilterRefusal> {
    match e {
        Expr::Identifier(_)
        | Expr::CompoundIdentifier(_)
        | Expr::Value(_)
        | Expr::TypedString(_)
        | Expr::Interval(_)
        | Expr::Nested(_)
        | Expr::IsFalse(_)
        | Expr::IsNotFalse(_)
        | Expr::IsTrue(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotUnknown(_)
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::InList { .. }
        | Expr::Between { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::Cast { .. }
        | Expr::AtTimeZone { .. }
        | Expr::Extract { .. }
        | Expr::Ceil { .. }
        | Expr::Floor { .. }
        | Expr::Position { .. }
        | Expr::Substring { .. }
        | Expr::Trim { .. }
        | Expr::Case { .. } => None,
        Expr::UnaryOp { op, .. } => match op {
            UnaryOperator::Plus | UnaryOperator::Minus | UnaryOperator::Not => None,
            other => Some(FilterRefusal::Operator(other.to_string())),
        },
        Expr::BinaryOp { op, .. } => match op {
            BinaryOperator::Plus
            | BinaryOperator::Minus
            | BinaryOperator::Multiply
            | BinaryOperator::Divide
            | BinaryOperator::Modulo
            | BinaryOperator::StringConcat
            | BinaryOperator::Gt
            | BinaryOperator::Lt
            | BinaryOperator::GtEq
            | BinaryOperator::LtEq
            | BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::And
            | BinaryOperator::Or => None,
            other => Some(FilterRefusal::Operator(other.to_string())),
        },
        Expr::Function(f) => function_refusal(f),
        other => Some(FilterRefusal::Expression(shortened(&other.to_string()))),
    }
}

fn function_refusal(f: &Function) -> Option<FilterRefusal> {
    let name = f.name.to_string();
    if !ALLOWED_FUNCTIONS.contains(&name.to_ascii_lowercase().as_str()) {
        return Some(FilterRefusal::Function(name));
    }
    let clause = |what| {
        Some(FilterRefusal::FunctionClause {
            name: name.clone(),
            what,
        })
    };
    if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
        return clause("OVER, FILTER or WITHIN GROUP");
    }
    if !matches!(f.parameters, FunctionArguments::None) {
        return clause("parameters");
    }
    if let FunctionArguments::List(list) = &f.args
        && (list.duplicate_treatment.is_some() || !list.clauses.is_empty())
    {
        return clause("DISTINCT/ALL or argument clauses");
    }
    if matches!(f.args, FunctionArguments::Subquery(_)) {
        return Some(FilterRefusal::Subquery);
    }
    None
}

/// Why a filter is refused: the first expression or function it may not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterRefusal {
    /// An operator other than arithmetic, comparison, AND/OR/NOT and `||`.
    #[error("operator `{0}` is not allowed in a filter")]
    Operator(String),
    /// An expression other than a row condition (shown shortened).
    #[error("`{0}` is not allowed in a filter; use conditions on the source's columns")]
    Expression(String),
    /// A function not in [`ALLOWED_FUNCTIONS`].
    #[error(
        "function `{0}` is not allowed in a filter; allowed functions: {allowed}",
        allowed = ALLOWED_FUNCTIONS.join(", ")
    )]
    Function(String),
    /// An allowed function with a clause that is not (`what`: `parameters`, ...).
    #[error("function `{name}` may not have {what} in a filter")]
    FunctionClause { name: String, what: &'static str },
    /// A subquery.
    #[error("subqueries are not allowed; use a condition on the source's columns")]
    Subquery,
}

/// The first 80 characters of an expression, for messages.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use deltalake::datafusion::sql::sqlparser::dialect::GenericDialect;
    use deltalake::datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn check(filter: &str) -> Result<(), String> {
        check_typed(filter).map_err(|e| e.to_string())
    }

    fn check_typed(filter: &str) -> Result<(), FilterRefusal> {
        let expr = Parser::new(&GenericDialect {})
            .try_with_sql(filter)
            .unwrap()
            .parse_expr()
            .unwrap();
        check_bounded(&expr)
    }

    #[test]
    fn row_conditions_and_bounded_functions_are_allowed() {
        for filter in [
            "region = 'north' AND amount > 10",
            "id IN (1, 2, 3) OR id BETWEEN 10 AND 20",
            "NOT (name LIKE 'a%') AND name ILIKE '%B' AND note IS NULL",
            "lower(trim(name)) = 'x' AND length(name) < 20 AND substr(name, 1, 2) <> 'zz'",
            "coalesce(amount, 0) * 2 + abs(delta) >= round(1.5) % 3",
            "CAST(day AS DATE) >= DATE '2024-01-01' AND date_trunc('month', at) = at",
            "EXTRACT(YEAR FROM at) = 2024 AND at > now() - INTERVAL '1 day'",
            "CASE WHEN a IS DISTINCT FROM b THEN 1 ELSE 0 END = 1",
            "UPPER(code) || '-' || code = 'A-a' AND id::BIGINT > -1",
        ] {
            assert_eq!(check(filter), Ok(()), "{filter}");
        }
    }

    #[test]
    fn unbounded_functions_are_refused_by_name() {
        for (filter, name) in [
            ("id IN (SELECT * FROM range(0, 1500000000))", None),
            ("length(repeat('x', 1000000000)) > 0", Some("repeat")),
            ("cardinality(range(0, 1500000000)) > 0", Some("cardinality")),
            ("id = ANY(generate_series(1, 1000000000))", None),
            ("lpad(name, 1000000000) = 'x'", Some("lpad")),
            ("replace(name, 'a', 'bbbbbbbb') = 'x'", Some("replace")),
            ("regexp_like(name, '(a+)+$')", Some("regexp_like")),
            ("count(*) > 1", Some("count")),
            ("\"lower\"(name) = 'x'", Some("\"lower\"")),
        ] {
            let err = check(filter).expect_err(filter);
            if let Some(name) = name {
                assert!(
                    err.starts_with(&format!("function `{name}` is not allowed in a filter")),
                    "{filter}: {err}"
                );
            }
        }
        assert_eq!(
            check_typed("count(*) > 1"),
            Err(FilterRefusal::Function("count".into()))
        );
        let err = check("row_number() OVER () = 1").unwrap_err();
        assert!(err.contains("`row_number`"), "{err}");
        let err = check("lower(name) OVER () = 'x'").unwrap_err();
        assert!(err.contains("OVER"), "{err}");
    }

    #[test]
    fn other_constructs_are_refused() {
        for (filter, what) in [
            ("name ~ '^a'", "operator `~`"),
            ("name SIMILAR TO 'a%'", "SIMILAR TO"),
            ("make_array(1, 2) = [1, 2]", "function `make_array`"),
            ("[1, 2] = x", "[1, 2]"),
            ("id & 1 = 1", "operator `&`"),
        ] {
            let err = check(filter).expect_err(filter);
            assert!(err.contains(what), "{filter}: {err}");
        }
    }
}
