//! The one canonical form of a table name, used by every grant check (API, events, schedules,
//! pipeline sources and sinks), so that a grant matches a table exactly when SQL Server (or Unity
//! Catalog) would resolve the name to that table.
//!
//! SQL Server names ([`SqlTable::parse`]):
//! - one to three dot-separated parts, each bare, `[bracketed]` (with `]]` for `]`) or
//!   `"quoted"` (with `""` for `"`); quotes and brackets are removed;
//! - a one-part name is in schema `dbo`; a three-part name is accepted only when its database is
//!   the configured one (`sqlserver.database`), and is then the same as its two-part name; four
//!   parts (a linked server) and an empty part (`db..table`) are refused;
//! - parts are compared case-insensitively (SQL Server's default collations), folded to
//!   lowercase;
//! - refused: spaces before or after a part (`dbo .Audit`, `[Audit ]`; SQL Server ignores the
//!   first and keeps the second, so neither can mean what a grant says), and characters other
//!   than ASCII letters, digits, `_`, `$`, `#`, inner spaces and the accented Latin letters of
//!   Latin-1 and Latin Extended-A (so no Cyrillic or Greek look-alikes, full-width forms,
//!   zero-width or combining characters, dotless `ı` or long `ſ`).
//!
//! Lakehouse (Unity Catalog) names ([`LakehouseTable::parse`]): one to three parts
//! (`catalog.schema.table`), bare or in backticks, the same character rules, case folded.

use std::fmt;

/// The schema of one-part SQL Server table names (`Sales` is `dbo.Sales`).
pub const DEFAULT_SCHEMA: &str = "dbo";

/// Why a name is not a table name a grant can be checked against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` {reason}")]
pub struct NameError {
    /// The name as given.
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

fn refuse(name: &str, reason: impl Into<String>) -> NameError {
    NameError {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// A SQL Server table in canonical form: `schema.table`, lowercase for matching. Two spellings
/// of one table (`DBO.target`, `[dbo].[Target]`) are equal: equality, hashing and order use the
/// folded parts only.
#[derive(Debug, Clone)]
pub struct SqlTable {
    /// The parts as written (quotes removed), for messages: `["dbo", "Sales"]`.
    shown: Vec<String>,
    /// The parts folded to lowercase: `["dbo", "sales"]`.
    key: Vec<String>,
}

impl PartialEq for SqlTable {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for SqlTable {}

impl std::hash::Hash for SqlTable {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl PartialOrd for SqlTable {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SqlTable {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

impl SqlTable {
    /// Resolves `name` the way SQL Server does in database `database` (the configured one, if
    /// any; without one, three-part names are refused).
    pub fn parse(name: &str, database: Option<&str>) -> Result<SqlTable, NameError> {
        let mut parts = split_parts(name, Quotes::SqlServer)?;
        if parts.len() > 3 {
            return Err(refuse(
                name,
                "has more than three parts (a linked server is never granted)",
            ));
        }
        if parts.len() == 3 {
            let db = parts.remove(0);
            match database {
                Some(configured) if fold(&db) == fold(configured) => {}
                Some(configured) => {
                    return Err(refuse(
                        name,
                        format!(
                            "names database `{db}`; grants cover only the configured database `{configured}` (write `schema.table`)"
                        ),
                    ));
                }
                None => {
                    return Err(refuse(
                        name,
                        "names a database, but no `sqlserver.database` is configured; write `schema.table`",
                    ));
                }
            }
        }
        if parts.len() == 1 {
            parts.insert(0, DEFAULT_SCHEMA.to_string());
        }
        Ok(SqlTable {
            key: parts.iter().map(|p| fold(p)).collect(),
            shown: parts,
        })
    }

    /// Lowercase parts `[schema, table]`.
    pub fn key(&self) -> &[String] {
        &self.key
    }

    /// `schema.table` as written, quoted for SQL Server: `[dbo].[Sales]`.
    pub fn quoted(&self) -> String {
        self.shown
            .iter()
            .map(|p| format!("[{}]", p.replace(']', "]]")))
            .collect::<Vec<_>>()
            .join(".")
    }
}

impl fmt::Display for SqlTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown.join("."))
    }
}

/// A lakehouse (Unity Catalog, or local Delta under `lakehouse_root`) table in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LakehouseTable {
    /// Lowercase parts, `catalog.schema.table` (fewer for shorter names).
    key: Vec<String>,
}

impl LakehouseTable {
    /// Parses `catalog.schema.table` (one to three parts, bare or in backticks).
    pub fn parse(name: &str) -> Result<LakehouseTable, NameError> {
        let parts = split_parts(name, Quotes::Backtick)?;
        if parts.len() > 3 {
            return Err(refuse(name, "has more than three parts"));
        }
        Ok(LakehouseTable {
            key: parts.iter().map(|p| fold(p)).collect(),
        })
    }

    /// Lowercase parts.
    pub fn key(&self) -> &[String] {
        &self.key
    }
}

impl fmt::Display for LakehouseTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key.join("."))
    }
}

/// A grant's pattern: a table (canonical parts), `prefix.*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// Lowercase parts; the last is `*` for wildcards.
    pub(crate) key: Vec<String>,
    /// As shown in messages: `dbo.Sales`, `staging.*`, `*`.
    pub(crate) shown: String,
}

impl Pattern {
    /// A SQL Server grant: `*`, `schema.*` or a table name (one or two parts; `dbo` added).
    pub(crate) fn sqlserver(text: &str) -> Result<Pattern, NameError> {
        let text = text.trim();
        if text == "*" {
            return Ok(Pattern::star());
        }
        if let Some(schema) = text.strip_suffix(".*") {
            let parts = split_parts(schema, Quotes::SqlServer)?;
            if parts.len() != 1 {
                return Err(refuse(
                    text,
                    "is not a table: a wildcard grant is `*` or `schema.*`",
                ));
            }
            return Ok(Pattern::prefixed(&parts));
        }
        let table = SqlTable::parse(text, None).map_err(|e| {
            if e.reason.contains("database") {
                refuse(
                    text,
                    "names a database; grants are `schema.table`, `schema.*` or `*`",
                )
            } else {
                e
            }
        })?;
        Ok(Pattern {
            shown: table.to_string(),
            key: table.key,
        })
    }

    /// A lakehouse grant: `*`, `catalog.*`, `catalog.schema.*` or a table name.
    pub(crate) fn lakehouse(text: &str) -> Result<Pattern, NameError> {
        let text = text.trim();
        if text == "*" {
            return Ok(Pattern::star());
        }
        if let Some(prefix) = text.strip_suffix(".*") {
            let parts = split_parts(prefix, Quotes::Backtick)?;
            if parts.len() > 2 {
                return Err(refuse(
                    text,
                    "is not a table: a wildcard grant is `*`, `catalog.*` or `catalog.schema.*`",
                ));
            }
            return Ok(Pattern::prefixed(&parts));
        }
        let table = LakehouseTable::parse(text)?;
        Ok(Pattern {
            shown: table.to_string(),
            key: table.key,
        })
    }

    fn star() -> Pattern {
        Pattern {
            key: vec!["*".into()],
            shown: "*".into(),
        }
    }

    fn prefixed(parts: &[String]) -> Pattern {
        let mut key: Vec<String> = parts.iter().map(|p| fold(p)).collect();
        key.push("*".into());
        Pattern {
            shown: format!("{}.*", parts.join(".")),
            key,
        }
    }

    /// How specifically the pattern matches `table` (higher wins), or `None` if it does not:
    /// an exact table beats a longer prefix, which beats a shorter one and `*`.
    pub(crate) fn specificity(&self, table: &[String]) -> Option<usize> {
        match self.key.split_last() {
            Some((last, prefix)) if last == "*" => {
                (table.len() > prefix.len() && table.starts_with(prefix)).then_some(prefix.len())
            }
            _ => (self.key == table).then_some(usize::MAX),
        }
    }

    /// Whether this is the `*` pattern.
    pub(crate) fn is_star(&self) -> bool {
        self.key == ["*"]
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quotes {
    /// `[x]` and `"x"`.
    SqlServer,
    /// `` `x` ``.
    Backtick,
}

/// Splits a dotted name into its unquoted parts, refusing what cannot be granted.
fn split_parts(name: &str, quotes: Quotes) -> Result<Vec<String>, NameError> {
    if name.is_empty() {
        return Err(refuse(name, "is empty"));
    }
    let mut parts = Vec::new();
    let mut chars = name.chars().peekable();
    loop {
        let close = match (quotes, chars.peek()) {
            (Quotes::SqlServer, Some('[')) => Some(']'),
            (Quotes::SqlServer, Some('"')) => Some('"'),
            (Quotes::Backtick, Some('`')) => Some('`'),
            _ => None,
        };
        let mut part = String::new();
        if let Some(close) = close {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(refuse(name, format!("has an unclosed `{close}`"))),
                    Some(c) if c == close => {
                        if chars.peek() == Some(&close) {
                            chars.next();
                            part.push(close);
                        } else {
                            break;
                        }
                    }
                    Some(c) => part.push(c),
                }
            }
            match chars.peek() {
                None | Some('.') => {}
                Some(c) => {
                    return Err(refuse(
                        name,
                        format!("has `{c}` right after a quoted part; parts are separated by `.`"),
                    ));
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c);
                chars.next();
            }
        }
        check_part(name, &part)?;
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(c) => return Err(refuse(name, format!("has an unexpected `{c}`"))),
        }
    }
    Ok(parts)
}

fn check_part(name: &str, part: &str) -> Result<(), NameError> {
    if part.is_empty() {
        return Err(refuse(name, "has an empty part"));
    }
    if part.chars().count() > 128 {
        return Err(refuse(name, "has a part longer than 128 characters"));
    }
    if part.starts_with(char::is_whitespace) || part.ends_with(char::is_whitespace) {
        return Err(refuse(
            name,
            "has a space at the start or end of a part; write the name without it",
        ));
    }
    if part.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(refuse(name, "has a part that starts with a digit"));
    }
    if let Some(c) = part.chars().find(|c| !allowed(*c)) {
        return Err(refuse(
            name,
            format!(
                "contains {} (U+{:04X}), which is not allowed in a table name (letters, digits, `_`, `$`, `#` and inner spaces)",
                if c.is_control() || c.is_whitespace() {
                    "a control or space character".to_string()
                } else {
                    format!("`{c}`")
                },
                c as u32
            ),
        ));
    }
    Ok(())
}

/// ASCII letters and digits, `_ $ #`, the space, and the accented letters of Latin-1 and Latin
/// Extended-A, without the look-alikes `ı` (U+0131), `İ` (U+0130) and `ſ` (U+017F).
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '_' | '$' | '#' | ' ')
        || (('\u{C0}'..='\u{17F}').contains(&c)
            && !matches!(c, '\u{D7}' | '\u{F7}' | '\u{130}' | '\u{131}' | '\u{17F}'))
}

fn fold(part: &str) -> String {
    part.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Vec<String> {
        SqlTable::parse(name, Some("Sales_DB"))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .key
    }

    #[test]
    fn spellings_of_one_table_are_equal() {
        use std::collections::BTreeSet;
        let a = SqlTable::parse("DBO.target", Some("db")).unwrap();
        let b = SqlTable::parse("[dbo].[Target]", Some("db")).unwrap();
        let c = SqlTable::parse("Db.dbo.TARGET", Some("db")).unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(BTreeSet::from([a.clone(), b, c]).len(), 1);
        assert_ne!(a, SqlTable::parse("dbo.other", Some("db")).unwrap());
        // Messages keep the spelling.
        assert_eq!(a.quoted(), "[DBO].[target]");
    }

    #[test]
    fn resolves_names_as_sql_server_does() {
        for name in [
            "dbo.Audit",
            "Audit",
            "AUDIT",
            "[dbo].[Audit]",
            "\"dbo\".\"Audit\"",
            "[DBO].audit",
            "sales_db.dbo.Audit",
            "[Sales_DB].[dbo].[Audit]",
        ] {
            assert_eq!(key(name), ["dbo", "audit"], "{name}");
        }
        assert_eq!(key("[my schema].[Sales 2024]"), ["my schema", "sales 2024"]);
        // A dot or bracket inside a quoted part would make one name look like another.
        assert!(SqlTable::parse("[dbo.Audit]", None).is_err());
        assert!(SqlTable::parse("[a]]b]", None).is_err());
        assert_eq!(
            SqlTable::parse("[x].[Sales 2024]", None).unwrap().quoted(),
            "[x].[Sales 2024]"
        );
    }

    #[test]
    fn refuses_names_a_grant_cannot_mean() {
        for bad in [
            "master.dbo.Audit",
            "dbo .Audit",
            "dbo. Audit",
            " dbo.Audit",
            "[dbo ].Audit",
            "[ Audit]",
            "srv.db.dbo.Audit",
            "db..Audit",
            "",
            ".Audit",
            "dbo.",
            "dbo.Audit; DROP TABLE x",
            "dbo.Аudit",         // Cyrillic А
            "dbo.Audit\u{200B}", // zero-width space
            "dbo.Ａudit",        // full-width A
            "dbo.Audıt",         // dotless i
            "dbo.Aud\u{0301}it", // combining accent
            "[dbo].[Audit]x",
            "[dbo",
            "1table",
        ] {
            assert!(
                SqlTable::parse(bad, Some("sales_db")).is_err(),
                "{bad:?} was accepted"
            );
        }
        let e = SqlTable::parse("master.dbo.Audit", Some("sales_db")).unwrap_err();
        assert!(e.to_string().contains("`sales_db`"), "{e}");
        assert!(SqlTable::parse("x.dbo.Audit", None).is_err());
        // Accented Latin letters are ordinary table names.
        assert_eq!(key("dbo.Año"), ["dbo", "año"]);
    }

    #[test]
    fn patterns_and_specificity() {
        let t = key("staging.Foo");
        let star = Pattern::sqlserver("*").unwrap();
        let schema = Pattern::sqlserver("[Staging].*").unwrap();
        let exact = Pattern::sqlserver("staging.foo").unwrap();
        assert_eq!(star.specificity(&t), Some(0));
        assert_eq!(schema.specificity(&t), Some(1));
        assert_eq!(exact.specificity(&t), Some(usize::MAX));
        assert_eq!(schema.specificity(&key("dbo.Foo")), None);
        assert!(Pattern::sqlserver("a.b.*").is_err());
        assert!(Pattern::sqlserver("db.dbo.x").is_err());
        let lake = LakehouseTable::parse("Main.`Sales`.orders").unwrap();
        assert_eq!(lake.to_string(), "main.sales.orders");
        let catalog = Pattern::lakehouse("main.*").unwrap();
        let schema = Pattern::lakehouse("main.sales.*").unwrap();
        assert_eq!(catalog.specificity(lake.key()), Some(1));
        assert_eq!(schema.specificity(lake.key()), Some(2));
        assert!(Pattern::lakehouse("a.b.c.*").is_err());
    }
}
