//! SQL values bound as parameters and identifiers validated before they are quoted.
//! Nothing from user input reaches SQL text except through [`quote_ident`] or a placeholder.

use std::fmt;

/// A value bound to a query as a parameter, never spliced into its text.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl fmt::Display for SqlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlValue::Null => f.write_str("NULL"),
            SqlValue::Bool(b) => write!(f, "{b}"),
            SqlValue::Int(i) => write!(f, "{i}"),
            SqlValue::Float(x) => write!(f, "{x}"),
            SqlValue::Text(s) => write!(f, "'{}'", s.replace('\'', "''")),
        }
    }
}

/// The SQL dialect a query is rendered for: decides placeholders and identifier quoting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: `?1`, `"name"`.
    Sqlite,
    /// DataFusion: `$1`, `"name"`.
    DataFusion,
    /// SQL Server: `@P1`, `[name]`.
    SqlServer,
    /// Databricks SQL: `:p1`, `` `name` ``.
    Databricks,
}

impl Dialect {
    /// The placeholder of the n-th (1-based) bound parameter.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::DataFusion => format!("${n}"),
            Dialect::SqlServer => format!("@P{n}"),
            Dialect::Databricks => format!(":p{n}"),
        }
    }
}

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid identifier `{ident}`: {reason}")]
pub struct IdentError {
    pub ident: String,
    pub reason: &'static str,
}

/// Checks a possibly dotted identifier (`schema.table`, `column`): each part is 1..=128 characters of
/// letters, digits, `_`, `$`, `#` or spaces, not starting with a digit or space.
pub fn validate_ident(ident: &str) -> Result<Vec<&str>, IdentError> {
    let err = |reason| IdentError {
        ident: ident.to_string(),
        reason,
    };
    if ident.is_empty() {
        return Err(err("it is empty"));
    }
    let parts: Vec<&str> = ident.split('.').collect();
    if parts.len() > 3 {
        return Err(err("more than three dotted parts"));
    }
    for part in &parts {
        if part.is_empty() || part.chars().count() > 128 {
            return Err(err("each dotted part must have 1 to 128 characters"));
        }
        let first = part.chars().next().expect("part is not empty");
        if first.is_ascii_digit() || first == ' ' {
            return Err(err("a part starts with a digit or a space"));
        }
        if !part
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | '#' | ' '))
        {
            return Err(err(
                "only letters, digits, `_`, `$`, `#` and spaces are allowed",
            ));
        }
    }
    Ok(parts)
}

/// Validates and quotes an identifier for a dialect (`"a"."b"` or `[a].[b]`).
pub fn quote_ident(ident: &str, dialect: Dialect) -> Result<String, IdentError> {
    let parts = validate_ident(ident)?;
    Ok(parts
        .iter()
        .map(|p| match dialect {
            Dialect::SqlServer => format!("[{p}]"),
            Dialect::Databricks => format!("`{p}`"),
            Dialect::Sqlite | Dialect::DataFusion => format!("\"{p}\""),
        })
        .collect::<Vec<_>>()
        .join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_valid_identifiers() {
        assert_eq!(
            quote_ident("dbo.Sales", Dialect::SqlServer).unwrap(),
            "[dbo].[Sales]"
        );
        assert_eq!(
            quote_ident("main.sales.orders", Dialect::Databricks).unwrap(),
            "`main`.`sales`.`orders`"
        );
        assert_eq!(
            quote_ident("sales_2024", Dialect::Sqlite).unwrap(),
            "\"sales_2024\""
        );
    }

    #[test]
    fn refuses_injection() {
        for bad in [
            "a; DROP TABLE x",
            "a]",
            "a\"b",
            "",
            "1abc",
            "a..b",
            "a.b.c.d",
            "x--",
        ] {
            assert!(quote_ident(bad, Dialect::SqlServer).is_err(), "{bad}");
        }
    }

    #[test]
    fn placeholders_per_dialect() {
        assert_eq!(Dialect::Sqlite.placeholder(2), "?2");
        assert_eq!(Dialect::DataFusion.placeholder(1), "$1");
        assert_eq!(Dialect::SqlServer.placeholder(3), "@P3");
    }
}
